"""Data sets that work offline and the in-memory loader."""
import pytest
import torch

from intro_dgm.data import (DATASETS, TensorLoader, load_dataset, load_digits_labels,
                            load_digits_split, toy_2d, two_gaussians_split)


def test_digits_split_and_loader(digits):
    assert digits.train.shape == (1000, 64) and digits.val.shape == (350, 64) and digits.test.shape == (447, 64)
    assert digits.train.min() == 0 and digits.train.max() == 16
    assert torch.equal(digits.train, digits.train.round())
    from sklearn.datasets import load_digits
    raw = torch.from_numpy(load_digits().data).float()
    assert torch.equal(digits.test, raw[1350:]) and torch.equal(digits.val[0], raw[1000])
    batches = list(TensorLoader(digits.train, 64, shuffle=True, seed=1))
    assert len(batches) == 16 and batches[-1].shape == (40, 64)
    assert torch.equal(torch.cat(batches).sort(0).values, digits.train.sort(0).values)
    again = list(TensorLoader(digits.train, 64, shuffle=True, seed=1))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    binary = load_digits_split(binary=True)
    assert set(binary.train.unique().tolist()) == {0.0, 1.0} and binary.num_vals == 2
    labels = load_digits_labels()
    assert torch.equal(labels["test"], torch.from_numpy(load_digits().target[1350:]))


def test_toy_2d():
    x = toy_2d("two_gaussians", 20000, seed=0, p=0.8)
    assert x.shape == (20000, 2)
    assert (x[:, 0] < 0).float().mean().item() == pytest.approx(0.8, abs=0.02)
    assert torch.equal(x, toy_2d("two_gaussians", 20000, seed=0, p=0.8))
    ring = toy_2d("eight_gaussians", 4000, seed=0)
    assert ring.norm(dim=1).mean().item() == pytest.approx(4.0, abs=0.05)
    with pytest.raises(ValueError, match="name must be one of"):
        toy_2d("spiral", 10)
    with pytest.raises(ValueError, match="p must be a probability"):
        toy_2d("two_gaussians", 10, p=1.5)


def test_every_named_data_set_loads():
    for name in DATASETS:
        split = load_dataset(name)
        assert split.name == name and split.train.dim() == 2
    toy = load_dataset("two-gaussians")
    assert toy.num_vals == 0 and toy.dim == 2  # real-valued: a Gaussian likelihood
    assert torch.equal(toy.test, two_gaussians_split(0.8).test)
    with pytest.raises(ValueError, match="dataset must be one of digits, digits-binary"):
        load_dataset("mnist-from-the-internet")
    half = load_dataset("two-gaussians", p=0.5)
    assert torch.equal(half.train, two_gaussians_split(0.5).train)
    assert not torch.equal(half.train, toy.train)
    with pytest.raises(ValueError, match="takes the option p only"):
        load_dataset("two-gaussians", q=0.5)
    with pytest.raises(ValueError, match="'digits' takes no options"):
        load_dataset("digits", p=0.5)


def test_loader_rejects_bad_input():
    with pytest.raises(TypeError, match="data must be a torch.Tensor"):
        TensorLoader([[1.0]], 2)
    with pytest.raises(ValueError, match="at least one row"):
        TensorLoader(torch.zeros(0, 3), 2)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        TensorLoader(torch.zeros(4, 3), 0)

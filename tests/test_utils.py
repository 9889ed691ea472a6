"""Helpers at the bottom of the import graph."""
import dataclasses

import pytest
import torch

from intro_dgm.utils import (atomic_write_text, check_fields, check_int, check_tensor, eval_mode,
                             fast_mode, notebook_setup, seed_everything)


def test_eval_mode_restores_the_mode_even_after_an_error():
    model = torch.nn.Linear(2, 2).train()
    with eval_mode(model):
        assert not model.training
    assert model.training
    with pytest.raises(RuntimeError):
        with eval_mode(model):
            raise RuntimeError("boom")
    assert model.training
    with eval_mode(model.eval()):
        pass
    assert not model.training


def test_atomic_write_leaves_the_old_file_or_the_new_one(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old\n")
    with pytest.raises(TypeError):
        atomic_write_text(path, None)  # fails while writing the temporary file
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n"


def test_check_fields_names_the_unknown_ones():
    @dataclasses.dataclass
    class Config:
        depth: int = 1
        width: int = 2

    assert check_fields(Config, {"depth": 3}, "toy") == {"depth": 3}
    with pytest.raises(ValueError, match="unknown toy field.s. dept, wdth; Config has depth, width"):
        check_fields(Config, {"dept": 3, "wdth": 1}, "toy")
    with pytest.raises(ValueError, match="a toy must be a dict"):
        check_fields(Config, [1, 2], "toy")


def test_checks_and_seeding(monkeypatch):
    with pytest.raises(TypeError, match="n must be an integer, got bool True"):
        check_int(True, "n")
    with pytest.raises(ValueError, match="x contains NaN"):
        check_tensor(torch.tensor([float("nan")]), "x")
    seed_everything(3)
    a = torch.rand(3)
    seed_everything(3)
    assert torch.equal(a, torch.rand(3))
    monkeypatch.setenv("INTRO_DGM_FAST", "1")
    assert fast_mode()
    monkeypatch.setenv("INTRO_DGM_FAST", "0")
    assert not fast_mode()


def test_notebook_setup_fixes_threads_and_seed(monkeypatch, capsys):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("INTRO_DGM_FAST", "1")
        fast, device = notebook_setup(seed=5)
        assert fast and torch.get_num_threads() == 1 and device.type in ("cpu", "cuda", "mps")
        assert "fast mode: True, CPU threads: 1" in capsys.readouterr().out
        a = torch.rand(2)
        notebook_setup(seed=5)
        assert torch.equal(a, torch.rand(2))
        with pytest.raises(ValueError, match="threads must be an integer >= 1"):
            notebook_setup(threads=0)
    finally:
        torch.set_num_threads(before)

"""Checkpoints: state_dict + config + spec, loaded with weights_only, written atomically."""
import pytest
import torch

import intro_dgm
from intro_dgm.checkpoints import load_checkpoint, save_checkpoint, write_metrics
from intro_dgm.models import VAEConfig, build_vae
from intro_dgm.protocol import RunSpec


def test_round_trip_gives_the_same_model(tmp_path, digits):
    torch.manual_seed(0)
    config = VAEConfig(latent_dim=2, hidden=(8, 4), prior="mog", prior_kwargs={"num_components": 3})
    model = build_vae(config)
    spec = RunSpec(model_config={"latent_dim": 2}).to_dict()
    save_checkpoint(tmp_path, "vae", config, model, spec=spec, extra={"dataset": "digits"})
    raw = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # plain values only
    assert raw["config"]["hidden"] == [8, 4] and raw["spec"]["train"]["optimizer"] == "adamax"
    loaded = intro_dgm.load_model(tmp_path)
    assert not loaded.training and loaded.decoder.dim == 64
    for (n, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), n
    x = digits.test[:5]
    torch.manual_seed(1)
    a = model.eval().loss(x)["elbo"]
    torch.manual_seed(1)
    assert torch.equal(a, loaded.loss(x)["elbo"])


def test_missing_or_foreign_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint.pt"):
        intro_dgm.load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope")
    torch.save({"model": "gan"}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="not an intro_dgm checkpoint"):
        load_checkpoint(tmp_path)


def test_files_are_written_atomically(tmp_path, monkeypatch):
    write_metrics(tmp_path, {"a": 1})
    assert (tmp_path / "metrics.json").read_text() == '{\n  "a": 1\n}\n'

    def broken(obj, path):
        path.write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    model = build_vae(VAEConfig(latent_dim=2, hidden=(4,)))
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, "vae", VAEConfig(latent_dim=2, hidden=(4,)), model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no half file left


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path):
    """One clear error naming the file, and never torch's advice to load with
    weights_only=False (which would run whatever code the file holds)."""
    import argparse
    import zipfile

    config = VAEConfig(latent_dim=2, hidden=(4,))
    save_checkpoint(tmp_path / "run", "vae", config, build_vae(config))
    data = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:len(data) // 2])
    (tmp_path / "spec.json").write_text('{"id": "abc"}')
    torch.save(argparse.Namespace(model="vae"), tmp_path / "code.pt")
    with zipfile.ZipFile(tmp_path / "other.pt", "w") as z:
        z.writestr("hello.txt", "not a checkpoint")
    for name, match in [("cut.pt", "cut.pt is truncated or damaged"),
                        ("spec.json", "spec.json is not a checkpoint: give the run directory"),
                        ("code.pt", "code.pt holds objects other than tensors and plain values"),
                        ("other.pt", "other.pt is truncated or damaged: torch.load could not")]:
        with pytest.raises(ValueError, match=match) as info:
            load_checkpoint(tmp_path / name)
        assert "weights_only" not in str(info.value) and "\n" not in str(info.value)
    raw = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    raw["config"]["latent_dim"] = 3  # the weights no longer fit the model the config builds
    torch.save(raw, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(ValueError, match="the weights do not fit the model its config describes"):
        intro_dgm.load_model(tmp_path / "run")


def test_build_model_names_the_config_it_wants():
    from intro_dgm.models import DiffusionConfig, build_model

    assert build_model("vae", {"latent_dim": 2, "hidden": [4]}).latent_dim == 2  # a dict: fine
    with pytest.raises(TypeError, match="^config of model 'vae' must be a VAEConfig, got "
                                        "DiffusionConfig$"):
        build_model("vae", DiffusionConfig())
    with pytest.raises(TypeError, match="^config of model 'vae' must be a VAEConfig, got list$"):
        build_model("vae", [2])


def test_a_builder_given_a_dict_names_what_it_wants():
    with pytest.raises(TypeError, match=r"must be a VAEConfig, got dict \(make one: "
                                        r"VAEConfig\(\*\*fields\)\)"):
        build_vae({"latent_dim": 2})

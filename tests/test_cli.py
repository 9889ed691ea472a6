"""The command line: train (options from the configs, or a spec file), evaluate, reproduce,
table; bad input is one line with exit status 2 and writes nothing."""
import json
import math
import sys

import pytest
import torch

import intro_dgm
from intro_dgm import protocol
from intro_dgm.runs import metrics, runner
from intro_dgm.cli import main
from intro_dgm.data import load_digits_split
from intro_dgm.evaluation import iwae_log_likelihood
from intro_dgm.priors import PRIORS
from intro_dgm.protocol import ResultsStore
from intro_dgm.training import NonFiniteLossError


def _tiny(out, seed=0):
    return ["train", "--latent-dim", "2", "--hidden", "16", "--seed", str(seed), "--max-epochs", "2",
            "--k", "5", "--threads", "1", "--out", str(out), "--quiet"]


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_train_evaluate_and_load_model(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--model", "vae", "--latent-dim", "4", "--hidden", "32", "--dataset", "digits",
            "--seed", "0", "--max-epochs", "3", "--k", "20", "--out", str(out), "--quiet"]
    assert main(args) == 0
    row = _json(capsys)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["id"] == row["id"] and set(protocol.METRIC_KEYS) <= set(metrics)
    assert metrics["k"] == 20 and metrics["epochs"] == 3
    assert json.loads((out / "spec.json").read_text())["spec"] == row["spec"]
    model = intro_dgm.load_model(out)
    assert not model.training and model.latent_dim == 4
    assert metrics["num_params"] == sum(p.numel() for p in model.parameters())
    torch.manual_seed(0)
    nll = -iwae_log_likelihood(model, load_digits_split().test, k=20).mean().item()
    assert nll == pytest.approx(metrics["test_nll_iw"], abs=1e-4)  # same seed, same weights
    raw = torch.load(out / "checkpoint.pt", weights_only=True)
    assert raw["config"]["latent_dim"] == 4 and raw["spec"]["train"]["max_epochs"] == 3
    assert main(["evaluate", str(out), "--k", "20"]) == 0
    assert _json(capsys)["test_nll_iw"] == pytest.approx(metrics["test_nll_iw"], abs=1e-4)


def test_same_seed_same_metrics(tmp_path, capsys):
    runs = []
    for name in ("a", "b"):
        assert main(_tiny(tmp_path / name)) == 0
        m = json.loads((tmp_path / name / "metrics.json").read_text())
        runs.append({k: v for k, v in m.items() if "seconds" not in k})
    assert runs[0] == runs[1]


def test_a_spec_file_trains_the_same_run_as_the_options(tmp_path, capsys):
    assert main(_tiny(tmp_path / "a")) == 0
    row = _json(capsys)
    (tmp_path / "spec.json").write_text(json.dumps(row["spec"]))
    assert main(["train", "--spec", str(tmp_path / "spec.json"), "--out", str(tmp_path / "b"),
                 "--quiet"]) == 0
    again = _json(capsys)
    assert again["id"] == row["id"]
    assert again["metrics"]["test_nll_iw"] == row["metrics"]["test_nll_iw"]


def test_results_reproduce_and_table(tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    for seed in (0, 1):
        assert main(_tiny(tmp_path / f"s{seed}", seed) + ["--results", str(results)]) == 0
    capsys.readouterr()
    rows = ResultsStore(results).rows()
    assert [r["spec"]["seed"] for r in rows] == [0, 1]
    assert main(["reproduce", str(results), rows[1]["id"], "--out", str(tmp_path / "rep"),
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "| test_nll_iw | " in text and "MOVED" not in text and "DIFFERS" not in text
    assert "reproduced: every metric within relative 0.0001" in text
    assert (tmp_path / "rep" / "checkpoint.pt").exists()
    assert main(["table", str(results), "--group-by", "model", "--metrics", "test_nll_iw"]) == 0
    table = capsys.readouterr().out.splitlines()
    nll = [r["metrics"]["test_nll_iw"] for r in rows]
    assert table[0] == "| model | runs | test_nll_iw |"
    assert table[2].startswith(f"| vae | 2 | {sum(nll) / 2:.2f} ± ")


@pytest.mark.parametrize("change, verdict, status", [
    # a loss within the tolerance (as another processor's last digits): reproduced
    (lambda m: m.update(test_nll_iw=m["test_nll_iw"] * (1 + 5e-5)), "within tolerance", 0),
    # beyond it: named, with by how much
    (lambda m: m.update(test_nll_iw=m["test_nll_iw"] + 1.0), "MOVED by -1", 1),
    # a count must be equal
    (lambda m: m.update(epochs=m["epochs"] + 1), "DIFFERS by -1 (a count must be equal)", 1),
])
def test_reproduce_tolerates_last_digits_and_names_what_moved(tmp_path, capsys, change,
                                                              verdict, status):
    """A planted perturbation of the stored row (one processor here: the tolerance path is
    tested this way)."""
    results = tmp_path / "results.jsonl"
    assert main(_tiny(tmp_path / "a") + ["--results", str(results)]) == 0
    row = ResultsStore(results).rows()[0]
    change(row["metrics"])
    row["environment"]["cpu"] = "another processor"
    results.write_text(json.dumps(row) + "\n")
    capsys.readouterr()
    assert main(["reproduce", str(results), row["id"], "--out", str(tmp_path / "b"),
                 "--quiet"]) == status
    out = capsys.readouterr().out
    assert verdict in out
    assert "environment: changed: cpu another processor -> " in out
    assert ("NOT reproduced" in out) == bool(status)


def test_a_diverged_run_exits_1_and_is_stored_as_failed(tmp_path, capsys, monkeypatch):
    def diverge(*args, **kwargs):
        raise NonFiniteLossError("the training loss became nan in epoch 1, batch 1")

    monkeypatch.setattr(runner, "fit", diverge)
    results = tmp_path / "results.jsonl"
    assert main(_tiny(tmp_path / "run") + ["--results", str(results)]) == 1
    err = capsys.readouterr().err
    assert "failed" in err and "nan in epoch 1" in err and str(results) in err
    assert ResultsStore(results).rows()[0]["status"] == "failed"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["train", "--dataset", "cifar", "--out", "X"], "argument --dataset: invalid choice: 'cifar'"),
    (["train", "--model", "gan", "--out", "X"], "argument --model: invalid choice: 'gan'"),
    (["train", "--latent-dim", "0", "--out", "X"], "latent_dim must be an integer >= 1, got 0"),
    (["train", "--latent-dim", "abc", "--out", "X"], "--latent-dim must be an integer, got 'abc'"),
    (["train", "--posterior", "planar", "--out", "X"], "posterior must be one of gaussian, householder, sylvester-orthogonal"),
    (["train", "--lr", "-1", "--out", "X"], "lr must be a number > 0"),
    (["evaluate", "X", "--k", "0"], "--k must be > 0"),
    (["train", "--dataset-options", "p=0.5", "--out", "X"], "--dataset-options must be a JSON object"),
    (["train", "--dataset", "digits", "--dataset-options", '{"p": 0.5}', "--out", "X"],
     "'digits' takes no options"),
    (["evaluate", "does-not-exist"], "no checkpoint at does-not-exist"),
    ([], "a command is required"),
    (["train", "--prior", "normal", "--out", "X"], "prior must be one of standard, mog"),
    (["train", "--prior", "mog", "--init", "data", "--out", "X"],
     "--init does not apply to --prior mog"),
    (["train", "--prior", "flow", "--num-components", "4", "--out", "X"],
     "--num-components does not apply to --prior flow"),
    (["train", "--prior", "standard", "--prior-hidden", "4", "--out", "X"],
     "--prior-hidden does not apply to --prior standard"),
    (["train", "--prior", "vampprior", "--num-components", "0", "--out", "X"],
     "num_components must be an integer >= 1, got 0"),
    (["train", "--prior", "gtm", "--num-components", "10", "--latent-dim", "2", "--hidden", "8",
      "--out", "X"], "num_components must be a perfect power"),
    (["train", "--spec", "missing.json", "--out", "X"], "spec file missing.json does not exist"),
    (["train", "--spec", "bad.json", "--out", "X"], "spec file bad.json is not valid JSON"),
    (["train", "--spec", "unknown.json", "--out", "X"], "unknown run spec field(s) sead"),
    (["train", "--spec", "good.json", "--seed", "3", "--out", "X"],
     "do not combine it with --seed"),
    (["reproduce", "results.jsonl", "abc", "--out", "X"], "no row with id 'abc'"),
    (["reproduce", "truncated.jsonl", "abc", "--out", "X"], "line 1 is not a complete JSON row"),
    (["table", "nothing.jsonl"], "results file nothing.jsonl does not exist"),
    (["table", "results.jsonl", "--group-by", "model_config.width"], "unknown key 'model_config.width'"),
])
def test_bad_input_prints_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text('{"model": "vae",')
    (tmp_path / "unknown.json").write_text('{"model": "vae", "sead": 1}')
    (tmp_path / "good.json").write_text('{"model": "vae"}')
    spec = protocol.RunSpec()
    (tmp_path / "results.jsonl").write_text(json.dumps(
        {"id": spec.id, "spec": spec.to_dict(), "status": "ok", "metrics": {"test_nll_iw": 1.0}}) + "\n")
    (tmp_path / "truncated.jsonl").write_text('{"id": "abc", "spec"')
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "X").exists()


def test_writes_nothing_when_the_run_fails(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ValueError("evaluation failed on purpose")

    monkeypatch.setattr(metrics, "evaluate_bound", broken)
    out = tmp_path / "run"
    assert main(_tiny(out)) == 2
    assert "evaluation failed on purpose" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("prior, options, expected_kwargs", [
    ("vampprior", ["--num-components", "4", "--init", "data", "--learn-weights"],
     {"num_components": 4, "init": "data", "learn_weights": True}),
    ("gtm", ["--num-components", "4", "--prior-hidden", "8", "--learn-weights"],
     {"num_components": 4, "hidden": 8, "learn_weights": True}),
    ("gtm-vampprior", ["--num-components", "4", "--grid-dim", "2"], {"num_components": 4, "grid_dim": 2}),
    ("mog", ["--num-components", "3", "--no-learn-weights"], {"num_components": 3, "learn_weights": False}),
    ("flow", ["--num-layers", "2", "--warmup-epochs", "1"], {"num_layers": 2}),
    ("standard", [], {}),
])
def test_every_prior_trains_and_reloads(tmp_path, capsys, prior, options, expected_kwargs):
    out = tmp_path / "run"
    assert main(_tiny(out) + ["--prior", prior] + options) == 0
    row = _json(capsys)
    assert row["spec"]["model_config"]["prior"] == prior
    assert row["spec"]["model_config"].get("prior_kwargs", {}) == expected_kwargs  # options arrived
    assert row["spec"]["train"]["warmup_epochs"] == (1 if "--warmup-epochs" in options else 0)
    model = intro_dgm.load_model(out)  # a data-initialised prior loads without the data
    assert type(model.prior) is PRIORS[prior]
    if "learn_weights" in expected_kwargs:
        assert model.prior.learn_weights == expected_kwargs["learn_weights"]
    assert main(["evaluate", str(out), "--k", "5"]) == 0
    assert _json(capsys)["test_nll_iw"] == pytest.approx(row["metrics"]["test_nll_iw"], abs=1e-4)


def test_posterior_options_reach_the_encoder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_tiny(out) + ["--posterior", "sylvester-orthogonal", "--num-steps", "2",
                              "--num-ortho", "1"]) == 0
    row = _json(capsys)
    assert row["spec"]["model_config"]["posterior_kwargs"] == {"num_steps": 2, "num_ortho": 1}
    model = intro_dgm.load_model(out)
    assert len(model.encoder.steps) == 2 and model.encoder.m == 1
    assert main(_tiny(tmp_path / "x") + ["--posterior", "householder", "--num-ortho", "2"]) == 2
    assert "--num-ortho does not apply to --posterior householder" in capsys.readouterr().err


def test_the_hyperspherical_vae_trains_and_reloads(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_tiny(out) + ["--posterior", "vmf", "--prior", "uniform-sphere",
                              "--latent-dim", "3"]) == 0
    row = _json(capsys)
    assert row["status"] == "ok" and math.isfinite(row["metrics"]["test_nll_iw"])
    model = intro_dgm.load_model(out)
    assert type(model.prior) is PRIORS["uniform-sphere"]
    assert main(_tiny(tmp_path / "x") + ["--posterior", "vmf"]) == 2
    assert "posterior 'vmf' and prior 'uniform-sphere' go together" in capsys.readouterr().err


def test_every_prior_has_a_cli_test():
    tested = {"vampprior", "gtm", "gtm-vampprior", "mog", "flow", "standard", "uniform-sphere"}
    assert tested == set(PRIORS)



@pytest.fixture
def fashion_dir(tmp_path, monkeypatch):
    """Tiny synthetic Fashion-MNIST IDX files (30 train, 6 test images), gzipped; torchvision
    hidden (no download); $INTRO_DGM_DATA_DIR restored after main() sets it."""
    from test_data import synthetic_fashion

    from intro_dgm.data import DATA_DIR_ENV
    monkeypatch.setenv(DATA_DIR_ENV, "set-by-main")
    monkeypatch.setitem(sys.modules, "torchvision", None)
    synthetic_fashion(tmp_path / "fm", n_train=30, n_test=6, compress=True)
    return tmp_path / "fm"


def test_fashion_mnist_data_dir_options(tmp_path, capsys, fashion_dir):
    """--data-dir is not part of the spec (the run's id does not depend on where the files
    are); no files there, or no such directory: one line, exit status 2, nothing written."""
    from intro_dgm.cli import build_parser, spec_from_args
    args = build_parser().parse_args(_tiny(tmp_path / "x") + [
        "--dataset", "fashion-mnist", "--data-dir", str(fashion_dir)])
    spec = spec_from_args(args)
    assert spec.dataset == "fashion-mnist" and spec.dataset_options == {}
    assert spec.id == protocol.RunSpec.from_dict(spec.to_dict()).id
    (tmp_path / "empty").mkdir()
    assert main(_tiny(tmp_path / "x") + ["--dataset", "fashion-mnist", "--data-dir",
                                         str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Fashion-MNIST file not found" in err
    assert "apt-get install dataset-fashion-mnist" in err and not (tmp_path / "x").exists()
    assert main(_tiny(tmp_path / "x") + ["--data-dir", str(tmp_path / "nowhere")]) == 2
    assert f"--data-dir {tmp_path / 'nowhere'} is not a directory" in capsys.readouterr().err


def test_fashion_mnist_trains_and_evaluates_with_a_data_dir(tmp_path, capsys, fashion_dir):
    out = tmp_path / "run"
    args = _tiny(out) + ["--dataset", "fashion-mnist", "--dataset-options", '{"val_size": 10}',
                         "--data-dir", str(fashion_dir)]
    assert main(args) == 0, capsys.readouterr().err
    row = _json(capsys)
    assert row["spec"]["dataset"] == "fashion-mnist" and "fm" not in json.dumps(row["spec"])
    model = intro_dgm.load_model(out)
    assert type(model.decoder).__name__ == "BernoulliDecoder"
    assert main(["evaluate", str(out), "--k", "3", "--data-dir", str(fashion_dir)]) == 0
    assert math.isfinite(_json(capsys)["test_nll_iw"])

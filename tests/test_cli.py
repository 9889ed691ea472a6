"""The command line: train (options from the configs, or a spec file), evaluate, reproduce,
table; bad input is one line with exit status 2 and writes nothing."""
import json
import math
import os
import shlex
import sys
from pathlib import Path

import pytest
import torch

import intro_dgm
from intro_dgm import protocol, training
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


def _snapshot(folder) -> dict:
    """Every file under ``folder``: relative path -> bytes (nothing lost: equal snapshots)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*"))
            if p.is_file()}


def _one_line(capsys, *fragments) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


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
    before = _snapshot(tmp_path / "rep")  # reproduce replaces a run only with --force, too
    assert main(["reproduce", str(results), rows[1]["id"], "--out", str(tmp_path / "rep")]) == 2
    _one_line(capsys, f"--out {tmp_path / 'rep'} holds run {rows[1]['id']} already")
    assert _snapshot(tmp_path / "rep") == before
    assert main(["table", str(results), "--group-by", "model", "--metrics", "test_nll_iw"]) == 0
    table = capsys.readouterr().out.splitlines()
    nll = [r["metrics"]["test_nll_iw"] for r in rows]
    assert table[0] == "| model | runs | test_nll_iw | ids |"
    assert table[2].startswith(f"| vae | 2 | {sum(nll) / 2:.2f} ± ")
    assert table[2].endswith(f" | {rows[0]['id']} {rows[1]['id']} |")  # what reproduce takes


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
    (["train", "--dataset", "cifar", "--out", "X"], "dataset must be one of digits, "),
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


def test_a_bug_is_not_dressed_as_a_users_mistake(tmp_path, monkeypatch, capsys):
    """An error inside the package once the checks have passed is a bug: exit status 1 with
    its traceback, not a one-line 'error' (status 2); the old run directory stays as it was."""
    out = tmp_path / "run"
    assert main(_tiny(out)) == 0
    before = _snapshot(out)

    def broken(*args, **kwargs):
        raise ValueError("evaluation failed on purpose")

    monkeypatch.setattr(metrics, "evaluate_bound", broken)
    assert main(_tiny(out, seed=1) + ["--force"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "evaluation failed on purpose" in err
    assert "intro-dgm: error:" not in err and "a bug in intro_dgm" in err
    assert _snapshot(out) == before


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


# ------------------------------------------------------- issue 25: never lose work, one line
@pytest.fixture
def no_training(monkeypatch):
    """Training must not start: a check that passes reaches fit, which fails the test loudly
    (exit status 1), so status 2 means the mistake was caught before training."""
    def fit(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(runner, "fit", fit)


def _ddgm(*options):
    return ["--model", "ddgm", "--steps", "4", "--hidden", "8", *options]


def _tiny_model(out, *options):
    """:func:`_tiny` for another model than the VAE: without the VAE's options."""
    return ["train", *_tiny(out)[5:], *options]


@pytest.mark.parametrize("options, message", [
    pytest.param(["--device", "cuda"], "--device 'cuda': CUDA is not available on this machine",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here")),
    (["--device", "gpu"], "--device must be cpu, cuda, cuda:N or mps; got 'gpu'"),
    (["--spec", "{dir}"], "--spec: spec file {dir} is a directory"),
    (["--results", "{dir}"], "--results {dir} is a directory, not a results file"),
    (["--results", "{file}/r.jsonl"], "--results {file}/r.jsonl: {file} is a file"),
    (["--out", "{file}"], "--out {file}: {file} is a file, not a directory"),
    (["--out", "{file}/run"], "--out {file}/run: {file} is a file, not a directory"),
    pytest.param(["--out", "/proc/intro-dgm-test/run"], "--out /proc/intro-dgm-test/run: "
                 "cannot write", marks=pytest.mark.skipif(not os.path.isdir("/proc/self"),
                                                          reason="needs Linux's /proc")),
    (["--out", "."], "--out . is the current directory"),
    (_ddgm("--log-snr-1", "5"), "--log-snr-1 does not apply to --schedule linear"),
    (_ddgm("--schedule", "cosine", "--beta-1", "0.01"), "--beta-1 does not apply to --schedule "
                                                        "cosine"),
    (_ddgm("--no-shared", "--embedding-dim", "8"), "--embedding-dim does not apply with "
                                                   "--no-shared"),
    (_ddgm("--free-bits", "0.5"), "--free-bits does not apply to --model ddgm"),
    (["--model", "realnvp", "--couplings", "1", "--warmup-epochs", "5"],
     "--warmup-epochs does not apply to --model realnvp"),
    (["--extras", "sample_quality", "--dataset", "two-gaussians"],
     "--extras sample_quality needs the Digits labels"),
    (["--model", "realnvp", "--couplings", "1", "--extras", "hole_mass"],
     "--extras hole_mass needs a VAE"),
    (["--resume"], "--resume: nothing to resume for run"),
])
def test_what_a_run_needs_is_checked_before_training(tmp_path, capsys, monkeypatch, no_training,
                                                     options, message):
    """Every mistake of issue 25 that used to fail after training, or with a traceback: one
    line naming the option, exit status 2, before training; nothing written and the old run
    in --out X byte-identical, even with --force."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("a file")
    (tmp_path / "X").mkdir()  # an old run
    for name, text in (("spec.json", '{"id": "0123456789ab", "spec": {}}'),
                       ("checkpoint.pt", "weights"), ("metrics.json", '{"test_nll_iw": 1}')):
        (tmp_path / "X" / name).write_text(text)
    before = _snapshot(tmp_path)
    options = [o.format(dir="dir", file="file") for o in options] + ["--force"]
    args = (["train", *options, "--out", "X"] if "--spec" in options  # the spec is the run
            else _tiny_model("X", *options) if "--model" in options else _tiny("X") + options)
    if "--out" in options:  # the option replaces the default output directory
        i = args.index("--out")
        del args[i:i + 2]
    assert main(args) == 2
    _one_line(capsys, message.format(dir="dir", file="file"))
    assert _snapshot(tmp_path) == before and not (tmp_path / "X.partial").exists()


def test_options_without_effect_never_reach_the_id(tmp_path, capsys):
    """A refused option cannot change a stored run's id: the run it would have described is
    the one without it, and an option that acts is kept."""
    from intro_dgm.cli import build_parser, spec_from_args
    acting = spec_from_args(build_parser().parse_args(
        _tiny_model("X", *_ddgm("--schedule", "log-snr", "--log-snr-1", "5"))))
    assert acting.model_config["log_snr_1"] == 5.0
    assert main(_tiny_model(tmp_path / "X", *_ddgm("--log-snr-1", "5"))) == 2
    _one_line(capsys, "--log-snr-1 does not apply to --schedule linear")


def test_an_existing_run_is_replaced_only_with_force(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_tiny(out)) == 0
    first = _json(capsys)["id"]
    before = _snapshot(out)
    assert main(_tiny(out, seed=1)) == 2
    _one_line(capsys, f"--out {out} holds run {first} already: pass --force")
    assert _snapshot(out) == before and not (tmp_path / "run.partial").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert main(_tiny(tmp_path / "other")) == 2
    _one_line(capsys, "holds files already")
    assert main(_tiny(out, seed=1) + ["--force"]) == 0
    second = _json(capsys)["id"]
    assert second != first and json.loads((out / "spec.json").read_text())["id"] == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "run"]  # no staging left
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.json", "spec.json"]


def _interrupt_in_epoch(monkeypatch, epoch: int, batches: int = 16):
    """Ctrl-C in the 5th batch of ``epoch`` (Digits: 16 batches of 64 per epoch)."""
    calls, objective = [0], training.objective

    def interrupted(*args, **kwargs):
        calls[0] += 1
        if calls[0] == (epoch - 1) * batches + 5:
            raise KeyboardInterrupt
        return objective(*args, **kwargs)

    monkeypatch.setattr(training, "objective", interrupted)


def test_ctrl_c_keeps_the_old_run_and_resume_is_bit_identical(tmp_path, capsys, monkeypatch):
    reference = tmp_path / "reference"
    argv = _tiny(reference)
    argv[argv.index("--max-epochs") + 1] = "3"
    assert main(argv) == 0
    expected = _json(capsys)
    out = tmp_path / "run"
    assert main(_tiny(out, seed=1)) == 0  # the old run, which must survive
    capsys.readouterr()
    old = _snapshot(out)
    argv = [str(out) if a == str(reference) else a for a in argv] + ["--force"]
    _interrupt_in_epoch(monkeypatch, 2)
    assert main(argv) == 130
    err = _one_line(capsys, "interrupted after 1 epoch(s), kept in", f"--out {out} is as it was",
                    "continue with: intro-dgm train")
    assert _snapshot(out) == old
    assert (tmp_path / "run.partial" / "training_state.pt").is_file()
    monkeypatch.undo()
    again = shlex.split(err.split("continue with: ", 1)[1])
    assert again[0] == "intro-dgm" and again[-1] == "--resume"
    assert main(again[1:]) == 0
    row = _json(capsys)
    assert row["id"] == expected["id"]
    same = {k: v for k, v in row["metrics"].items() if "seconds" not in k}
    assert same == {k: v for k, v in expected["metrics"].items() if "seconds" not in k}
    new, ref = (torch.load(d / "checkpoint.pt", weights_only=True)["state_dict"]
                for d in (out, reference))
    assert all(torch.equal(new[k], ref[k]) for k in ref)  # bit-identical weights
    assert not (tmp_path / "run.partial").exists()


def test_a_staging_directory_is_resumed_or_restarted_never_overwritten(tmp_path, capsys,
                                                                        monkeypatch):
    out = tmp_path / "run"
    _interrupt_in_epoch(monkeypatch, 2)
    assert main(_tiny(out)) == 130
    capsys.readouterr()
    monkeypatch.undo()
    staged = _snapshot(tmp_path / "run.partial")
    assert main(_tiny(out)) == 2  # neither --resume nor --force
    _one_line(capsys, "run.partial holds an interrupted run", "--resume", "--force")
    assert main(_tiny(out, seed=1) + ["--resume"]) == 2  # other options: another run
    _one_line(capsys, "--resume: nothing to resume for run", "run.partial holds run")
    assert _snapshot(tmp_path / "run.partial") == staged
    assert main(_tiny(out) + ["--force"]) == 0  # start over
    assert not (tmp_path / "run.partial").exists() and (out / "metrics.json").exists()


def test_the_same_run_is_stored_once(tmp_path, capsys, no_training, monkeypatch):
    results = tmp_path / "results.jsonl"
    spec = protocol.RunSpec(model_config={"latent_dim": 2, "hidden": [16]},
                            train=training.TrainConfig(max_epochs=2), k=5, threads=1)
    row = {"id": spec.id, "spec": spec.to_dict(), "status": "ok",
           "metrics": {"test_nll_iw": 1.0}}
    results.write_text(json.dumps(row) + "\n")
    before = _snapshot(tmp_path)
    assert main(_tiny(tmp_path / "b") + ["--results", str(results)]) == 2
    _one_line(capsys, f"--results {results} holds run {spec.id} already (status ok)")
    assert _snapshot(tmp_path) == before


def test_table_counts_a_run_once_shows_ids_and_refuses_unknown_metrics(tmp_path, capsys):
    def row(seed, status, nll=None):
        spec = protocol.RunSpec(model_config={"latent_dim": 2}, seed=seed)
        return {"id": spec.id, "spec": spec.to_dict(), "status": status,
                "metrics": {"test_nll_iw": nll, "test_elbo": -nll} if nll else None}

    rows = [row(0, "failed"), row(0, "ok", 90.0), row(1, "ok", 92.0)]  # a failure, its retry
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["table", str(results), "--group-by", "model"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| model | runs | test_nll_iw | test_elbo | ids |"
    assert table[2] == f"| vae | 2 | 91.00 ± 1.41 | -91.00 ± 1.41 | {rows[1]['id']} {rows[2]['id']} |"
    assert main(["table", str(results), "--metrics", "test_nll"]) == 2
    _one_line(capsys, "got 'test_nll'", "test_elbo, test_nll_iw")
    assert main(["table", str(tmp_path)]) == 2
    _one_line(capsys, f"{tmp_path} is a directory, not a results file")


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("saved") / "run"
    assert main(_tiny(out)) == 0
    return out


def _truncated(run, folder):
    data = (run / "checkpoint.pt").read_bytes()
    (folder / "checkpoint.pt").write_bytes(data[:len(data) // 2])  # a copy cut short
    return folder


def _foreign(run, folder):
    import argparse
    torch.save(argparse.Namespace(model="vae"), folder / "checkpoint.pt")  # runs code to load
    return folder / "checkpoint.pt"


@pytest.mark.parametrize("target, message", [
    (lambda run, folder: run, None),  # the run directory: evaluates
    (lambda run, folder: run / "spec.json", "spec.json is not a checkpoint: give the run "
                                             "directory"),
    (lambda run, folder: run / "metrics.json", "metrics.json is not a checkpoint"),
    (_truncated, "checkpoint.pt is truncated or damaged"),
    (_foreign, "checkpoint.pt holds objects other than tensors and plain values"),
])
def test_evaluate_names_a_file_that_is_not_a_checkpoint(saved_run, tmp_path, capsys, target,
                                                        message):
    path = target(saved_run, tmp_path)
    status = main(["evaluate", str(path)])
    if message is None:  # by default the run's own k and seed: its metrics.json again
        assert status == 0
        stored = json.loads((saved_run / "metrics.json").read_text())
        assert _json(capsys)["test_nll_iw"] == pytest.approx(stored["test_nll_iw"], abs=1e-4)
        return
    assert status == 2
    err = _one_line(capsys, message)
    assert "weights_only" not in err  # never the unsafe advice torch's own message gives


def test_help_is_generated_from_the_configs_and_plain_text(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"intro-dgm {intro_dgm.__version__}"
    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    assert "``" not in top and ":func:" not in top and "train" in top and "--resume" in top
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "config field" not in text
    for expected in ("--prior PRIOR --model vae: one of standard, mog,", "uniform-sphere;",
                     "--model top-down: one of standard, vampprior; default standard",
                     "--latent-dim LATENT_DIM --model vae, two-level, top-down: default 16",
                     "--schedule SCHEDULE --model ddgm: one of linear, constant, cosine",
                     "--posterior POSTERIOR --model vae: one of gaussian,", "vmf; default",
                     "--num-components NUM_COMPONENTS --prior mog,", "--optimizer OPTIMIZER one "
                     "of adam, adamax, adamw; default adamax", "--k K importance samples per "
                     "example; default 1000", "examples: intro-dgm train", "--resume"):
        assert expected in text, expected
    assert main(["evaluate", "--help"]) == 0
    assert "train's default is 1000" in " ".join(capsys.readouterr().out.split())

import json

import pytest
import torch

import intro_dgm
from intro_dgm.checkpoints import load_checkpoint
from intro_dgm.cli import main
from intro_dgm.data import TensorLoader, load_digits_split, toy_2d
from intro_dgm.evaluation import iwae_log_likelihood
from intro_dgm.models import VAEConfig, build_vae
from intro_dgm.training import fit


def _train(digits, seed, epochs=3):
    torch.manual_seed(seed)
    model = build_vae(VAEConfig(latent_dim=4, hidden=(32,)))
    hist = fit(model, TensorLoader(digits.train, 64, shuffle=True, seed=seed),
               TensorLoader(digits.val, 350), max_epochs=epochs, patience=5, seed=seed,
               progress=False, device="cpu")
    return model, hist


def test_fit_reduces_the_loss_and_keeps_the_best_weights(digits):
    model, hist = _train(digits, 0, epochs=8)
    assert hist.epochs == 8
    assert hist.val_loss[-1] < hist.val_loss[0] - 5
    assert hist.best_val_loss == min(hist.val_loss)
    from intro_dgm.training import mean_loss
    torch.manual_seed(0)
    assert mean_loss(model, TensorLoader(digits.val, 350)) == pytest.approx(hist.best_val_loss, abs=3.0)


class _Quadratic(torch.nn.Module):
    """Training pulls w towards 3; the validation loss (w - 1)^2 is best near w = 1."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def loss(self, x):
        target = 3.0 if self.training else 1.0
        return {"loss": ((self.w - target) ** 2).expand(x.shape[0])}


def test_early_stopping_restores_best_epoch():
    model = _Quadratic()
    data = [torch.zeros(4, 1)]
    hist = fit(model, data, data, lr=0.1, optimizer="adam", max_epochs=100, patience=3,
               progress=False)
    assert hist.stopped_early
    best = min(range(hist.epochs), key=lambda i: hist.val_loss[i])
    assert hist.best_epoch == best and hist.epochs == best + 1 + 3
    assert abs(model.w.item() - 1.0) < 0.1  # the best weights came back, not the last ones
    assert (model.w.item() - 1.0) ** 2 == pytest.approx(hist.best_val_loss)


class _Betas(_Quadratic):
    """Records the beta it is trained with; the validation loss rises every epoch."""

    def __init__(self):
        super().__init__()
        self.betas, self.calls = [], 0

    def loss(self, x, beta=1.0):
        if self.training:
            self.betas.append(beta)
            return {"loss": (self.w * 0 + beta).expand(x.shape[0])}
        self.calls += 1
        return {"loss": torch.full((x.shape[0],), float(self.calls))}  # worse every epoch


def test_warmup_raises_beta_linearly_and_spends_no_patience():
    model = _Betas()
    data = [torch.zeros(4, 1)]
    hist = fit(model, data, data, max_epochs=50, patience=3, warmup_epochs=10, progress=False)
    assert model.betas[:10] == pytest.approx([(e + 1) / 10 for e in range(10)])
    assert set(model.betas[10:]) == {1.0}
    # The validation loss is worst-ever every epoch, so without the warm-up rule training
    # would stop after 1 + 3 epochs; with it, patience starts counting after epoch 10.
    assert hist.stopped_early and hist.epochs == 10 + 3 and hist.best_epoch == 0
    with pytest.raises(ValueError, match="warmup_epochs"):
        fit(model, data, data, warmup_epochs=-1, progress=False)


def test_same_seed_same_numbers(digits):
    m1, h1 = _train(digits, 7)
    m2, h2 = _train(digits, 7)
    m3, h3 = _train(digits, 8)
    assert h1.train_loss == h2.train_loss and h1.val_loss == h2.val_loss
    assert h1.train_loss != h3.train_loss
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_fit_rejects_bad_arguments(small_vae, digits):
    loader = TensorLoader(digits.train[:64], 32)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        fit(small_vae, loader, optimizer="sgdd", progress=False)
    with pytest.raises(ValueError, match="max_epochs must be an integer >= 1"):
        fit(small_vae, loader, max_epochs=0, progress=False)
    with pytest.raises(ValueError, match="lr must be > 0"):
        fit(small_vae, loader, lr=0.0, progress=False)


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
    assert set(binary.train.unique().tolist()) == {0.0, 1.0}


def test_toy_2d():
    x = toy_2d("two_gaussians", 20000, seed=0, p=0.8)
    assert x.shape == (20000, 2)
    assert (x[:, 0] < 0).float().mean().item() == pytest.approx(0.8, abs=0.02)
    assert torch.equal(x, toy_2d("two_gaussians", 20000, seed=0, p=0.8))
    with pytest.raises(ValueError, match="name must be one of"):
        toy_2d("spiral", 10)


def test_cli_train_evaluate_and_load_model(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--model", "vae", "--latent-dim", "4", "--hidden", "32", "--dataset", "digits",
            "--seed", "0", "--max-epochs", "3", "--k", "20", "--out", str(out), "--quiet"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_elbo", "test_nll_iw", "k", "epochs", "seconds_per_epoch", "num_params"):
        assert key in metrics
    assert metrics["k"] == 20 and metrics["epochs"] == 3
    assert metrics["test_nll_iw"] <= -metrics["test_elbo"] + 1.0
    model = intro_dgm.load_model(out)
    assert not model.training
    assert metrics["num_params"] == sum(p.numel() for p in model.parameters())
    digits = load_digits_split()
    torch.manual_seed(0)
    nll = -iwae_log_likelihood(model, digits.test, k=20).mean().item()
    assert nll == pytest.approx(metrics["test_nll_iw"], abs=1e-3)  # same seed, same weights
    raw = torch.load(out / "checkpoint.pt", weights_only=True)
    assert raw["config"]["latent_dim"] == 4
    capsys.readouterr()
    assert main(["evaluate", str(out), "--k", "20"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test_nll_iw"] == pytest.approx(metrics["test_nll_iw"], abs=1e-3)


@pytest.mark.parametrize("args, message", [
    (["train", "--dataset", "cifar", "--out", "X"], "argument --dataset: invalid choice: 'cifar'"),
    (["train", "--model", "gan", "--out", "X"], "argument --model: invalid choice: 'gan'"),
    (["train", "--latent-dim", "0", "--out", "X"], "--latent-dim must be > 0"),
    (["train", "--latent-dim", "abc", "--out", "X"], "--latent-dim must be an integer"),
    (["evaluate", "X", "--k", "0"], "--k must be > 0"),
    (["evaluate", "does-not-exist"], "no checkpoint at does-not-exist"),
    ([], "a command is required"),
    (["train", "--prior", "normal", "--out", "X"], "argument --prior: invalid choice: 'normal'"),
    (["train", "--prior", "mog", "--pseudo-init", "data", "--out", "X"],
     "--pseudo-init does not apply to --prior mog"),
    (["train", "--prior", "flow", "--num-components", "4", "--out", "X"],
     "--num-components does not apply to --prior flow"),
    (["train", "--prior", "vampprior", "--num-components", "0", "--out", "X"],
     "--num-components must be > 0"),
    (["train", "--prior", "gtm", "--num-components", "10", "--latent-dim", "2", "--hidden", "8",
      "--out", "X"], "num_components must be a perfect power"),
])
def test_cli_bad_input_prints_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "X").exists()


def test_missing_checkpoint_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint.pt"):
        intro_dgm.load_model(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope")


def _tiny_train_args(out, seed=0):
    return ["train", "--latent-dim", "2", "--hidden", "16", "--seed", str(seed), "--max-epochs", "2",
            "--k", "5", "--out", str(out), "--quiet"]


def test_cli_same_seed_same_metrics(tmp_path, capsys):
    runs = []
    for name in ("a", "b"):
        assert main(_tiny_train_args(tmp_path / name)) == 0
        m = json.loads((tmp_path / name / "metrics.json").read_text())
        runs.append({k: v for k, v in m.items() if "seconds" not in k})
    assert runs[0] == runs[1]


def test_cli_writes_nothing_when_the_run_fails(tmp_path, monkeypatch, capsys):
    import intro_dgm.experiments as experiments

    def broken(*args, **kwargs):
        raise ValueError("evaluation failed on purpose")

    monkeypatch.setattr(experiments, "iwae_log_likelihood", broken)
    out = tmp_path / "run"
    assert main(_tiny_train_args(out)) == 2
    assert "evaluation failed on purpose" in capsys.readouterr().err
    assert not (out / "metrics.json").exists() and not (out / "checkpoint.pt").exists()


@pytest.mark.parametrize("prior_args", [
    ["--prior", "vampprior", "--num-components", "4", "--pseudo-init", "data", "--learn-weights"],
    ["--prior", "gtm-vampprior", "--num-components", "4"],
    ["--prior", "mog", "--num-components", "3", "--no-learn-weights"],
    ["--prior", "flow", "--flow-layers", "2", "--warmup-epochs", "1"],
])
def test_cli_trains_and_reloads_every_kind_of_prior(tmp_path, capsys, prior_args):
    out = tmp_path / "run"
    assert main(_tiny_train_args(out) + prior_args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["prior"] == prior_args[1]
    config = torch.load(out / "checkpoint.pt", weights_only=True)["config"]
    assert config["prior"] == prior_args[1]
    model = intro_dgm.load_model(out)  # a data-initialised prior loads without the data
    assert type(model.prior).__name__.lower().replace("prior", "") == \
        prior_args[1].replace("-", "").replace("prior", "")
    capsys.readouterr()
    assert main(["evaluate", str(out), "--k", "5"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test_nll_iw"] == pytest.approx(metrics["test_nll_iw"], abs=1e-3)
    if prior_args[1] == "vampprior":
        # The data initialisation was used: the options reached the prior.
        assert config["prior_kwargs"] == {"num_components": 4, "init": "data", "learn_weights": True}
    if prior_args[1] == "mog":
        assert not model.prior.learn_weights
    assert metrics["warmup_epochs"] == (1 if "--warmup-epochs" in prior_args else 0)

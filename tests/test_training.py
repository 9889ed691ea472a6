"""fit and TrainConfig: early stopping on the validation -ELBO, warm-up, NaN, same seed."""
import math

import pytest
import torch

from intro_dgm.data import TensorLoader
from intro_dgm.models import GenerativeModel, VAEConfig, build_vae
from intro_dgm.training import NonFiniteLossError, TrainConfig, fit, mean_neg_elbo


def _train(digits, seed, epochs=3):
    torch.manual_seed(seed)
    model = build_vae(VAEConfig(latent_dim=4, hidden=(32,)))
    hist = fit(model, digits.train, digits.val, max_epochs=epochs, patience=5, seed=seed,
               progress=False, device="cpu")
    return model, hist


def test_fit_reduces_the_loss_and_keeps_the_best_weights(digits):
    model, hist = _train(digits, 0, epochs=8)
    assert hist.epochs == 8
    assert hist.val_loss[-1] < hist.val_loss[0] - 5
    assert hist.best_val_loss == min(hist.val_loss)
    torch.manual_seed(0)
    assert mean_neg_elbo(model, TensorLoader(digits.val, 350)) == pytest.approx(hist.best_val_loss, abs=3.0)


def test_tensors_and_loaders_give_the_same_training(digits):
    torch.manual_seed(0)
    a = build_vae(VAEConfig(latent_dim=2, hidden=(8,)))
    torch.manual_seed(0)
    b = build_vae(VAEConfig(latent_dim=2, hidden=(8,)))
    ha = fit(a, digits.train, digits.val, max_epochs=2, seed=3, progress=False, batch_size=50)
    hb = fit(b, TensorLoader(digits.train, 50, shuffle=True, seed=3), TensorLoader(digits.val, 1000),
             max_epochs=2, seed=3, progress=False)
    assert ha.val_loss == hb.val_loss


class _Quadratic(GenerativeModel):
    """Training pulls w towards 3; the validation -ELBO (w - 1)^2 is best near w = 1. What fit
    uses of the model interface: ``loss`` (trained on) and ``bound`` (selects the epoch); the
    rest of the interface is not needed here."""

    def log_weight_terms(self, x, k):
        raise NotImplementedError

    def sample(self, n, mean=False):
        raise NotImplementedError

    def reconstruct(self, x):
        raise NotImplementedError

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def loss(self, x, beta=1.0):
        value = ((self.w - 3.0) ** 2).expand(x.shape[0])
        return {"loss": value, "elbo": -value}

    def bound(self, x):
        return {"elbo": -((self.w - 1.0) ** 2).expand(x.shape[0])}


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


class _Surrogate(_Quadratic):
    """The training objective ("loss") is small everywhere; the -ELBO is what it says."""

    def loss(self, x, beta=1.0):
        terms = super().loss(x, beta)
        return {"loss": 0.0 * terms["loss"] + (self.w - 3.0) ** 2, "elbo": self.bound(x)["elbo"]}


def test_selection_uses_the_elbo_not_the_training_objective():
    model = _Surrogate()
    data = [torch.zeros(4, 1)]
    hist = fit(model, data, data, lr=0.1, optimizer="adam", max_epochs=60, patience=60,
               progress=False)
    # The validation losses are (w - 1)^2, the -ELBO, whatever "loss" says.
    assert hist.best_val_loss == pytest.approx((model.w.item() - 1.0) ** 2)
    assert abs(model.w.item() - 1.0) < 0.1


class _Betas(_Quadratic):
    """Records the beta it is trained with; the validation loss rises every epoch. It has a
    KL term to warm up (else fit refuses warmup_epochs as having no effect)."""

    kl_groups = {"kl": 1}

    def __init__(self):
        super().__init__()
        self.betas, self.calls = [], 0

    def loss(self, x, beta=1.0):
        self.betas.append(beta)
        value = (self.w * 0 + beta).expand(x.shape[0])
        return {"loss": value, "elbo": -value}

    def bound(self, x):
        self.calls += 1
        return {"elbo": torch.full((x.shape[0],), -float(self.calls))}  # worse every epoch


def test_warmup_raises_beta_linearly_and_spends_no_patience():
    model = _Betas()
    data = [torch.zeros(4, 1)]
    hist = fit(model, data, data, max_epochs=50, patience=3, warmup_epochs=10, progress=False)
    assert model.betas[:10] == pytest.approx([(e + 1) / 10 for e in range(10)])
    assert set(model.betas[10:]) == {1.0}
    # The validation loss is worst-ever every epoch, so without the warm-up rule training
    # would stop after 1 + 3 epochs; with it, patience starts counting after epoch 10.
    assert hist.stopped_early and hist.epochs == 10 + 3 and hist.best_epoch == 0


class _Diverges(_Quadratic):
    def loss(self, x, beta=1.0):
        value = (self.w * 0 + math.nan).expand(x.shape[0])
        return {"loss": value, "elbo": -value}


def test_a_nan_loss_is_an_error_not_the_initial_weights():
    data = [torch.zeros(4, 1)]
    with pytest.raises(NonFiniteLossError, match="training loss became nan in epoch 1, batch 1"):
        fit(_Diverges(), data, data, progress=False)


def test_a_model_without_an_elbo_is_refused():
    class NoElbo(_Quadratic):
        def loss(self, x, beta=1.0):
            return {"loss": super().loss(x)["loss"]}

    with pytest.raises(KeyError, match="'loss' and 'elbo'"):
        fit(NoElbo(), [torch.zeros(2, 1)], [torch.zeros(2, 1)], progress=False)


def test_same_seed_same_numbers(digits):
    m1, h1 = _train(digits, 7)
    m2, h2 = _train(digits, 7)
    m3, h3 = _train(digits, 8)
    assert h1.train_loss == h2.train_loss and h1.val_loss == h2.val_loss
    assert h1.train_loss != h3.train_loss
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("fields, match", [
    ({"optimizer": "sgdd"}, "optimizer must be one of"),
    ({"max_epochs": 0}, "max_epochs must be an integer >= 1"),
    ({"lr": 0.0}, "lr must be a number > 0"),
    ({"lr": "fast"}, "lr must be a number > 0"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"patience": 1.5}, "patience must be an integer"),
    ({"warmup_epochs": -1}, "warmup_epochs must be an integer >= 0"),
    ({"grad_clip": 0}, "grad_clip must be None or a number > 0"),
])
def test_train_config_rejects_bad_fields(fields, match):
    with pytest.raises((ValueError, TypeError), match=match):
        TrainConfig(**fields)


def test_fit_rejects_bad_overrides(small_vae, digits):
    with pytest.raises(TypeError, match="unexpected keyword argument 'epochs'"):
        fit(small_vae, digits.train, digits.val, epochs=3, progress=False)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        fit(small_vae, digits.train, digits.val, optimizer="sgdd", progress=False)
    assert TrainConfig(warmup_epochs=4).beta(1) == 0.5 and TrainConfig().beta(0) == 1.0


# ------------------------------------------------------------ issue 25: resume, input named
def _fit_with_interrupt(digits, path, stop_at=None, **kwargs):
    """A small VAE fitted for 4 epochs, checkpointed to ``path``; Ctrl-C at the ``stop_at``-th
    training step (16 steps per epoch)."""
    import intro_dgm.training as training

    torch.manual_seed(0)
    model = build_vae(VAEConfig(latent_dim=2, hidden=(16,)))
    objective, calls = training.objective, [0]

    def step(*args, **kw):
        calls[0] += 1
        if calls[0] == stop_at:
            raise KeyboardInterrupt
        return objective(*args, **kw)

    training.objective = step
    try:
        hist = fit(model, kwargs.pop("train", digits.train), digits.val, max_epochs=4, seed=1,
                   progress=False, device="cpu", checkpoint_path=path, **kwargs)
    finally:
        training.objective = objective
    return model, hist


@pytest.mark.parametrize("loader", [False, True])
def test_an_interrupted_fit_resumes_bit_identically(digits, tmp_path, loader):
    """Ctrl-C in the middle of epoch 3, then resume=True: the history and every weight equal
    an uninterrupted fit's (optimiser, best weights, patience, every generator and the
    loader's shuffling come back from the per-epoch checkpoint)."""
    train = (lambda: TensorLoader(digits.train, 64, shuffle=True, seed=5)) if loader else None
    extra = (lambda: {"train": train()}) if loader else dict
    ref_model, ref = _fit_with_interrupt(digits, None, **extra())
    path = tmp_path / "state.pt"
    with pytest.raises(KeyboardInterrupt):
        _fit_with_interrupt(digits, path, stop_at=2 * 16 + 5, **extra())
    model, hist = _fit_with_interrupt(digits, path, resume=True, **extra())
    assert hist.train_loss == ref.train_loss and hist.val_loss == ref.val_loss
    assert hist.best_epoch == ref.best_epoch and len(hist.epoch_seconds) == 4
    for a, b in zip(model.state_dict().values(), ref_model.state_dict().values()):
        assert torch.equal(a, b)
    again, same = _fit_with_interrupt(digits, path, resume=True, **extra())  # finished: kept
    assert same.val_loss == ref.val_loss


def test_a_checkpoint_of_other_settings_is_refused(digits, tmp_path):
    path = tmp_path / "state.pt"
    _fit_with_interrupt(digits, path)
    with pytest.raises(ValueError, match=r"written with other training settings \(lr\)"):
        _fit_with_interrupt(digits, path, resume=True, lr=0.01)
    path.write_text("{}")
    with pytest.raises(ValueError, match="is not a training state that fit wrote") as info:
        _fit_with_interrupt(digits, path, resume=True)
    assert "weights_only" not in str(info.value)


def test_fit_takes_numpy_arrays_and_float64(digits):
    """NumPy arrays and float64 tensors train exactly as the float32 tensors they hold, and
    batches may be NumPy arrays too."""
    runs = []
    for convert in (lambda x: x, lambda x: x.numpy(), lambda x: x.double(),
                    lambda x: [b.numpy().astype("float64") for b in x.split(200)]):
        torch.manual_seed(0)
        model = build_vae(VAEConfig(latent_dim=2, hidden=(8,)))
        runs.append(fit(model, convert(digits.train), convert(digits.val), max_epochs=1,
                        progress=False, device="cpu").val_loss)
    assert runs[0] == runs[1] == runs[2] and math.isfinite(runs[3][0])


def _nan_in_row(x, row=3):
    x = x.clone()
    x[row, 5] = float("nan")
    return x


@pytest.mark.parametrize("call, error, match", [
    (lambda m, d: fit(m, d.train, TrainConfig()), TypeError,
     r"^val must be the validation data: .*got TrainConfig \(fit\(model, train, val, "
     r"config\): is the validation data missing\?\)$"),
    (lambda m, d: fit(m, d.train, d.val, {"lr": 0.1}), TypeError,
     "config must be a TrainConfig or None, got dict"),
    (lambda m, d: fit(m, _nan_in_row(d.train), d.val), ValueError,
     r"^train contains NaN or infinite values \(first in row 3\)$"),
    (lambda m, d: fit(m, d.train, _nan_in_row(d.val, 7)), ValueError,
     r"^val contains NaN or infinite values \(first in row 7\)$"),
    (lambda m, d: fit(m, [d.train[:10], d.train[:5, :60]], d.val), ValueError,
     r"^train batch 2 of epoch 1 \(shape \(5, 60\)\): x must have size 64"),
    (lambda m, d: fit(m, d.train, [d.val[:10], _nan_in_row(d.val[:10])]), ValueError,
     r"^val batch 2 contains NaN or infinite values \(first in row 3\)$"),
    (lambda m, d: fit(m, d.train, [d.val[:10], "pixels"]), TypeError,
     r"^val batch 2 must be a tensor or NumPy array of numbers, got str$"),
    (lambda m, d: fit(m, d.train[0], d.val), ValueError,
     r"^train must be \(N, D\) with N >= 1, got shape \(64,\)$"),
    (lambda m, d: fit(m, d.train, d.val, device="gpu"), ValueError,
     "^device must be cpu, cuda, cuda:N or mps; got 'gpu'$"),
    (lambda m, d: fit(m, d.train, d.val, resume=True), ValueError,
     "resume=True needs the checkpoint_path"),
    (lambda m, d: fit(m, d.train, d.val, resume="yes", checkpoint_path="x"), TypeError,
     "^resume must be True or False, got str 'yes'$"),
    (lambda m, d: fit(d.train, d.train, d.val), TypeError, "^model must be a GenerativeModel"),
])
def test_fit_names_the_argument_and_the_tensor(small_vae, digits, call, error, match):
    with pytest.raises(error, match=match):
        call(small_vae, digits)


def test_options_a_model_cannot_use_are_refused_before_training():
    from intro_dgm.models import DiffusionConfig, build_ddgm
    from intro_dgm.training import inapplicable

    model = build_ddgm(DiffusionConfig(steps=4, hidden=(8,)))
    assert inapplicable(model, TrainConfig(warmup_epochs=3, free_bits=0.5)) == {
        "warmup_epochs": "DDGM has no KL term to weigh (its kl_groups is empty)",
        "free_bits": "DDGM has no KL term to weigh (its kl_groups is empty)"}
    with pytest.raises(ValueError, match="^warmup_epochs does not apply: DDGM has no KL term"):
        fit(model, torch.zeros(4, 64), torch.zeros(4, 64), warmup_epochs=3, progress=False)

"""fit and TrainConfig: early stopping on the validation -ELBO, warm-up, NaN, same seed."""
import math

import pytest
import torch

from intro_dgm.data import TensorLoader
from intro_dgm.models import VAEConfig, build_vae
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


class _Quadratic(torch.nn.Module):
    """Training pulls w towards 3; the validation -ELBO (w - 1)^2 is best near w = 1. Only what
    fit uses of the model interface: ``loss`` (trained on) and ``bound`` (selects the epoch)."""

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
    """Records the beta it is trained with; the validation loss rises every epoch."""

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

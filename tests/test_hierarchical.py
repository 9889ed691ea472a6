"""Hierarchical VAEs: terms that add up, bounds that order, every network trained, the
top-down KL against the general formula, per-level active units, clear errors."""
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from intro_dgm.evaluation import active_units_per_level, elbo, iwae_log_likelihood
from intro_dgm.models import MODELS, TopDownConfig, TwoLevelConfig, build_model
from intro_dgm.models.hierarchical import relative_kl
from intro_dgm.priors import StandardPrior, VampPrior
from intro_dgm.training import TrainConfig, fit, objective

from helpers import randomise

SMALL = dict(latent_dim=4, top_latent_dim=3, hidden=(32,), top_hidden=(16,))
#: every hierarchical variant: (model name, config fields)
VARIANTS = {
    "two-level (4.76)": ("two-level", {}),
    "two-level (4.77)": ("two-level", {"top_posterior_sees_x": False}),
    "top-down": ("top-down", {}),
    "hierarchical VampPrior": ("top-down", {"prior": "vampprior", "decoder_uses_top": True,
                                            "prior_kwargs": {"num_components": 5}}),
}


def _model(variant, seed=0, perturb=True):
    torch.manual_seed(seed)
    name, fields = VARIANTS[variant]
    model = build_model(name, {**SMALL, **fields})
    # weights far from initialisation: posteriors far from the priors, no term near zero
    return randomise(model, std=0.1) if perturb else model


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_terms_of_each_level_and_the_warm_up(variant, digits):
    model = _model(variant, perturb=False)
    out = model.loss(digits.train[:64])
    assert set(out) == {"loss", "elbo", "rec", "kl", "kl_z1", "kl_z2"}
    assert torch.allclose(out["kl"], out["kl_z1"] + out["kl_z2"])
    assert torch.allclose(out["elbo"], out["rec"] - out["kl"])
    warm = model.loss(digits.train[:64], beta=0.3)
    assert torch.allclose(warm["loss"], -(warm["rec"] - 0.3 * warm["kl"]))


@pytest.mark.parametrize("variant", VARIANTS)
def test_single_sample_loss_agrees_with_the_importance_weights(variant, digits):
    """E[elbo] from ``loss`` equals the mean of the k=1 log-weights (two routes through the
    model), and the IW bound is above the ELBO and grows with k."""
    model = _model(variant).eval()
    x = digits.test[:30]
    torch.manual_seed(0)
    elbos = torch.stack([elbo(model, x) for _ in range(60)]).flatten()
    torch.manual_seed(1)
    ones = iwae_log_likelihood(model, x.repeat(60, 1), k=1)
    error = ((elbos.var() + ones.var()) / elbos.numel()).sqrt().item()
    assert abs(ones.mean().item() - elbos.mean().item()) < 4 * error
    bounds = []
    for k in (10, 100, 400):
        torch.manual_seed(1)
        bounds.append(iwae_log_likelihood(model, x, k=k).mean().item())
    assert elbos.mean().item() < bounds[0] < bounds[1] + 0.01 and bounds[1] < bounds[2] + 0.01


def test_the_two_level_elbo_decomposes_as_derived(digits):
    """(4.82): ELBO = E[ln p(x|z1)] - E[ln q(z1|x) - ln p(z1|z2)] - E[KL(q(z2|z1,x) || p(z2))],
    recomputed here from the model's parts for the very same samples."""
    model = _model("two-level (4.76)").eval()
    x = digits.test[:16]
    torch.manual_seed(4)
    out = model.loss(x)
    torch.manual_seed(4)
    q1 = model.q_z1(x)
    z1, log_q1 = q1.rsample()
    q2 = model.q_z2(z1, x)
    z2, _ = q2.rsample()
    mu_p, log_var_p = model.p_z1(z2)
    log_p1 = Normal(mu_p, torch.exp(0.5 * log_var_p)).log_prob(z1).sum(-1)
    kl2 = kl_divergence(Normal(q2.mu_e, torch.exp(0.5 * q2.log_var_e)),
                        Normal(torch.zeros_like(q2.mu_e), 1.0)).sum(-1)
    rec = model.decoder.log_prob(x, z1)
    assert torch.allclose(out["rec"], rec, atol=1e-4)
    assert torch.allclose(out["kl_z1"], log_q1 - log_p1, atol=1e-4)
    assert torch.allclose(out["kl_z2"], kl2, atol=1e-4)


def test_top_down_kl_formula_against_torch():
    torch.manual_seed(0)
    mu_p, log_var_p = torch.randn(50, 6), torch.randn(50, 6)
    delta_mu, delta_log_var = torch.randn(50, 6), torch.randn(50, 6)
    q = Normal(mu_p + delta_mu, torch.exp(0.5 * (log_var_p + delta_log_var)))
    p = Normal(mu_p, torch.exp(0.5 * log_var_p))
    assert torch.allclose(relative_kl(delta_mu, delta_log_var, log_var_p),
                          kl_divergence(q, p).sum(-1), atol=1e-5)
    # the model uses it: kl_z1 equals the general formula at the model's own numbers
    model = _model("top-down").eval()
    x = torch.randint(0, 17, (8, 64)).float()
    torch.manual_seed(2)
    out = model.loss(x)
    torch.manual_seed(2)
    h1, q2 = model.top_encoder.features(x)
    z2, _ = q2.rsample()
    mp, lvp, dm, dlv = model._level1(h1, z2)
    general = kl_divergence(Normal(mp + dm, torch.exp(0.5 * (lvp + dlv))),
                            Normal(mp, torch.exp(0.5 * lvp))).sum(-1)
    assert torch.allclose(out["kl_z1"], general, atol=1e-4)


def test_the_hierarchical_vampprior_shares_the_bottom_up_path():
    model = _model("hierarchical VampPrior", perturb=False)
    assert isinstance(model.prior, VampPrior) and model.prior.encoder is model.top_encoder
    assert isinstance(_model("top-down").prior, StandardPrior)
    assert model.prior.latent_dim == 3


@pytest.mark.parametrize("variant", VARIANTS)
def test_samples_per_level(variant):
    model = _model(variant).eval()
    torch.manual_seed(0)
    assert model.sample(7).shape == (7, 64)
    z2 = torch.randn(1, 3).expand(5, 3)  # fix z2, vary z1
    images = model.sample(5, mean=True, z2=z2)
    assert images.shape == (5, 64) and images.min() >= 0 and images.max() <= 16
    assert images.std(0).max() > 0  # z1 still varies
    means = model.posterior_means(torch.zeros(4, 64))
    assert means["z1"].shape == (4, 4) and means["z2"].shape == (4, 3)
    with pytest.raises(ValueError, match=r"z2 must have shape \(5, 3\)"):
        model.sample(5, z2=torch.zeros(5, 2))


def test_active_units_per_level_on_a_model_built_to_have_them(digits):
    """Two-level model whose q(z1|x) uses exactly 2 of 4 units and q(z2|.) 1 of 3."""
    model = _model("two-level (4.76)", perturb=False)
    with torch.no_grad():
        last = model.q_z1_net[-1][-1]  # the output layer: (mu, log_var) of z1
        last.weight[2:4].zero_(), last.bias[2:4].zero_()  # mu_3, mu_4 constant
        last.weight[0:2] *= 50.0  # mu_1, mu_2 vary strongly with x
        top = model.q_z2_net[-1]
        top.weight[1:3].zero_(), top.bias[1:3].zero_()
        top.weight[0] *= 50.0
    assert active_units_per_level(model, digits.test) == {"z1": 2, "z2": 1}


def test_free_bits_floor_each_level(digits):
    model = _model("two-level (4.76)", perturb=False)
    x = digits.train[:64]
    terms = model.loss(x)
    plain = objective(model, terms, 1.0, 0.0)
    assert torch.allclose(plain, terms["loss"].mean())
    floored = objective(model, terms, 1.0, 10.0)  # 10 nats per dimension: both levels floored
    assert floored.item() == pytest.approx(-terms["rec"].mean().item() + 10.0 * (4 + 3), rel=1e-6)
    floored.backward()  # below the floor the KL gets no gradient: only rec trains the encoder
    assert model.p_z1_net[0].weight.grad is None or model.p_z1_net[0].weight.grad.abs().sum() == 0
    with pytest.raises(ValueError, match="free_bits must be a number >= 0"):
        TrainConfig(free_bits=-1)
    history = fit(model, digits.train[:200], digits.val[:100], TrainConfig(max_epochs=2,
                                                                          free_bits=0.5),
                  progress=False)
    assert all(math.isfinite(v) for v in history.val_loss)


@pytest.mark.parametrize("fields, match", [
    ({"latent_dim": 0}, "latent_dim must be an integer >= 1"),
    ({"top_latent_dim": 0}, "top_latent_dim must be an integer >= 1"),
    ({"top_hidden": ()}, "top_hidden must be a non-empty sequence"),
    ({"prior": "mog"}, r"prior \(of the top level z2\) must be one of standard, vampprior"),
    ({"decoder_hidden": 32}, "decoder_hidden must be a sequence of layer sizes"),
    ({"decoder_hidden": (32, 0)}, "decoder_hidden must be an integer >= 1"),
])
def test_bad_config_is_named(fields, match):
    for cls in (TwoLevelConfig, TopDownConfig):
        with pytest.raises((ValueError, TypeError), match=match):
            cls(**fields)


def test_mismatched_prior_and_levels_are_named(digits):
    with pytest.raises(ValueError, match="bottom-up two-level VAE does not have"):
        TwoLevelConfig(prior="vampprior")
    model = _model("top-down", perturb=False)
    with pytest.raises(ValueError, match=r"prior.latent_dim \(4\) must equal top_latent_dim"):
        type(model)(model.top_encoder, model.top_down, model.p_head, model.q_head,
                    model.decoder, StandardPrior(4), 4, 3)
    assert {"two-level", "top-down"} <= set(MODELS)


@pytest.mark.parametrize("name", ["two-level", "top-down"])
def test_decoder_hidden_sets_the_decoders_layers(name):
    """None keeps the VAE's decoder (hidden reversed); () is linear; the rest is as given."""
    def linears(decoder_hidden):
        fields = dict(SMALL, decoder_hidden=decoder_hidden)
        model = build_model(name, fields)
        return [m.out_features for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)]
    out = SMALL.get("input_dim", 64) * SMALL.get("num_vals", 17)
    assert linears(None) == [*SMALL["hidden"][::-1], out]
    assert linears(()) == [out]
    assert linears((7, 5)) == [7, 5, out]


def test_the_top_down_posterior_starts_at_the_prior(digits):
    """q_head starts at zero: q(z1|x, z2) = p(z1|z2) for every x at initialisation, so the
    level-1 KL is exactly 0 before training (07a's exercise 4)."""
    torch.manual_seed(0)
    model = build_model("top-down", SMALL)
    out = model.loss(digits.train[:16])
    assert torch.equal(out["kl_z1"], torch.zeros(16))


@pytest.mark.parametrize("name", ["two-level", "top-down"])
def test_the_prior_variance_of_level_1_is_bounded(name, digits):
    """A collapsing p(z1|z2) variance cannot blow up the level-1 KL: its log-variance is
    soft-clamped to (-10, 10) (NVAE bounds its log-scales likewise)."""
    torch.manual_seed(0)
    model = build_model(name, SMALL)
    head = model.p_head if name == "top-down" else model.p_z1_net[-1]
    with torch.no_grad():
        head.bias[SMALL["latent_dim"]:] = -1e4  # the log-variance half
        _, log_var_p = model.p_z1(torch.randn(5, model.top_latent_dim))
        out = model.loss(digits.train[:8])
    assert (log_var_p >= -10).all() and (log_var_p < -9).all()  # tanh saturates in float32
    assert torch.isfinite(out["loss"]).all() and (out["kl_z1"].abs() < 1e6).all()

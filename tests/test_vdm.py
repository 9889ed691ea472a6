"""The continuous-time diffusion model: its step terms against the closed-form KL, the
discrete bound above the continuous one and approaching it, the end-point invariance, the
three terms against their draws, clear errors."""
import math

import pytest
import torch

from intro_dgm.distributions import kl_normal_diag
from intro_dgm.models import build_model
from intro_dgm.models.vdm import shape

from helpers import randomise

TINY = dict(input_dim=4, num_vals=5, hidden=(16,), embedding_dim=8, steps=4,
            log_snr_max=3.0, log_snr_min=-5.0)


def _model(seed=0, **fields):
    torch.manual_seed(seed)
    return randomise(build_model("vdm", {**TINY, **fields}), std=0.3)


def _pixels(n, num_vals=5, dim=4, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, num_vals, (n, dim), generator=generator).float()


def _silent(model):
    """The model with a network that predicts no noise (eps_hat = 0, x_hat = z/alpha): then
    E||eps - eps_hat||^2 = D at every log-SNR, and every bound has a closed form."""
    last = [m for m in model.eps_net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    return model


def test_a_step_term_is_the_kl_between_the_two_step_posteriors():
    """KL[q(z_s|z_t,x) || p(z_s|z_t)] in closed form = (1/2)(SNR_s - SNR_t)||x - x_hat||^2."""
    model = _model()
    x, z_t = _pixels(6), torch.randn(6, 4)
    lam_s, lam_t = torch.tensor(1.5), torch.tensor(-0.5)
    x0 = model.rescale(x)
    with torch.no_grad():
        x_hat = model.predict_x0(z_t, lam_t.expand(6))
        mean_q, log_var = model.step_posterior(z_t, x0, lam_s, lam_t)
        mean_p, _ = model.step_posterior(z_t, x_hat, lam_s, lam_t)
    kl = kl_normal_diag(mean_q, log_var.expand_as(mean_q), mean_p, log_var.expand_as(mean_q))
    expected = 0.5 * (lam_s.exp() - lam_t.exp()) * ((x0 - x_hat) ** 2).sum(-1)
    assert torch.allclose(kl, expected, rtol=1e-4)


def test_the_step_posterior_is_bayes_rule():
    """q(z_s|z_t,x) ∝ q(z_t|z_s) q(z_s|x), normalised on a grid (one pixel)."""
    model = _model(input_dim=1)
    x0, z_t = torch.tensor([[0.5]], dtype=torch.float64), torch.tensor([[0.2]], dtype=torch.float64)
    lam_s, lam_t = torch.tensor(2.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
    (a_s, s_s), (a_t, s_t) = model.alpha_sigma(lam_s), model.alpha_sigma(lam_t)
    grid = torch.linspace(-5, 5, 200_001, dtype=torch.float64)
    a_ts, var_ts = a_t / a_s, s_t ** 2 - (a_t / a_s) ** 2 * s_s ** 2
    log_joint = (-(z_t[0, 0] - a_ts * grid) ** 2 / (2 * var_ts)
                 - (grid - a_s * x0[0, 0]) ** 2 / (2 * s_s ** 2))
    weights = torch.softmax(log_joint, 0)
    mean = (weights * grid).sum()
    var = (weights * (grid - mean) ** 2).sum()
    closed_mean, closed_log_var = model.step_posterior(z_t, x0, lam_s, lam_t)
    assert torch.isclose(closed_mean[0, 0], mean, atol=1e-6)
    assert torch.isclose(closed_log_var.exp(), var, rtol=1e-5)


@pytest.mark.parametrize("steps", [2, 10, 100])
def test_the_discrete_bound_lies_below_the_continuous_one_and_approaches_it(steps):
    """With eps_hat = 0 the diffusion terms are closed forms: the discrete one
    (D/2) sum_i expm1(lam_s - lam_t), the continuous one (D/2)(lam_max - lam_min); expm1(d) > d
    makes the discrete -ELBO larger for every T, and the gap shrinks as T doubles. The model's
    bound (every step term, one draw each) and log-weights (chains) estimate the first."""
    model = _silent(_model(steps=steps))
    x = _pixels(2000)
    lam = model.grid()
    D = 4
    discrete = 0.5 * D * torch.expm1(lam[:-1] - lam[1:]).sum().item()
    span = (model.ends[0] - model.ends[1]).item()  # lam_max - lam_min
    continuous = 0.5 * D * span
    delta = span / steps  # the linear shape's step
    assert discrete == pytest.approx(continuous + 0.5 * D * steps * (math.expm1(delta) - delta))
    assert discrete > continuous
    finer = model.grid(2 * steps)
    assert 0.5 * D * torch.expm1(finer[:-1] - finer[1:]).sum().item() < discrete
    torch.manual_seed(0)
    bound = model.bound(x)["kl_steps"]
    chains = model.log_weight_terms(x[:500], 4)["kl_steps"]
    cont = model.continuous_bound(x, points=8)["kl_steps"]
    for estimate, exact in ((bound, discrete), (chains, discrete), (cont, continuous)):
        se = estimate.std().item() / math.sqrt(estimate.numel())
        assert abs(estimate.mean().item() - exact) < 4 * se + 1e-6


def test_the_continuous_bound_depends_on_the_schedule_only_through_its_end_points():
    """Two shapes between the same end points (linear in t; sin^2) give the same diffusion
    term within Monte Carlo error for a network conditioned on the log-SNR, with different
    spreads per draw."""
    x = _pixels(64).repeat(50, 1)
    torch.manual_seed(3)
    estimates = {}
    for name in ("linear", "sine"):
        model = _model(schedule_shape=name)
        torch.manual_seed(4)
        draws = model.continuous_bound(x, points=16)["kl_steps"]
        estimates[name] = (draws.mean().item(), draws.std().item() / math.sqrt(len(draws)),
                           draws.std().item())
    (a, se_a, sd_a), (b, se_b, sd_b) = estimates["linear"], estimates["sine"]
    assert abs(a - b) < 4 * math.hypot(se_a, se_b)
    assert abs(sd_a - sd_b) > 0.05 * min(sd_a, sd_b)


def test_shapes_join_the_same_end_points():
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    for name in ("linear", "sine"):
        g, dg = shape(t, name)
        assert g[0] == 0 and abs(g[-1] - 1) < 1e-12 and (g[1:] >= g[:-1]).all()
        # g' is the derivative: its integral (trapezoid) is g(1) - g(0)
        assert torch.trapezoid(dg, t).item() == pytest.approx(1.0, abs=1e-5)


def test_the_prior_kl_and_the_data_term():
    model = _model(data_term="fixed")
    x = _pixels(5)
    lam_min = model.ends[1]
    alpha, sigma = model.alpha_sigma(lam_min)
    mean = alpha * model.rescale(x)
    closed = kl_normal_diag(mean, (2 * sigma.log()).expand_as(mean))
    assert torch.allclose(model.prior_kl(x), closed, atol=1e-5)
    # the fixed decoder is a distribution over the V values of each pixel
    one_pixel = _model(input_dim=1, data_term="fixed")
    z = torch.randn(7, 1)
    probs = sum(one_pixel.log_px_given_z0(torch.full((7, 1), float(v)), z).exp()
                for v in range(5))
    assert torch.allclose(probs, torch.ones(7), atol=1e-5)


def test_the_end_points_learn_or_stay():
    x = _pixels(32)
    learned = _model()
    learned.loss(x)["loss"].mean().backward()
    assert learned.ends.requires_grad and learned.ends.grad.abs().min() > 0
    fixed = _model(learn_ends=False)
    assert "ends" not in dict(fixed.named_parameters())
    assert "ends" in fixed.state_dict()


@pytest.mark.parametrize("fields, match", [
    ({"log_snr_max": -1.0, "log_snr_min": 2.0}, "log_snr_max must exceed"),
    ({"schedule_shape": "cosine"}, "schedule_shape"),
    ({"data_term": "gaussian"}, "data_term"),
    ({"likelihood": "gaussian"}, "discrete pixels"),
    ({"embedding_dim": 7}, "embedding_dim must be even"),
])
def test_bad_config_is_named(fields, match):
    with pytest.raises(ValueError, match=match):
        build_model("vdm", {**TINY, **fields})


def test_a_flag_must_be_a_bool():
    with pytest.raises(TypeError, match="learn_ends must be True or False"):
        build_model("vdm", {**TINY, "learn_ends": "yes"})


def test_bad_input_is_named():
    model = _model()
    with pytest.raises(ValueError, match="x"):
        model.loss(torch.full((2, 4), 7.0))
    with pytest.raises(ValueError, match="steps"):
        model.bound(_pixels(2), steps=0)


def test_tweedie_the_denoiser_is_the_score_rescaled():
    """On a 2-D Gaussian mixture noised at several log-SNRs: E[x|z] by Bayes' rule in each
    component equals (z + sigma^2 grad ln q(z)) / alpha with the score taken by autograd of
    ln q; the closed-form score agrees with autograd; and the Monte Carlo mean of x among
    draws whose z falls near a point matches E[x|z] there."""
    from intro_dgm.distributions import NoisedGaussianMixture

    mix = NoisedGaussianMixture([0.3, 0.7], [[-2.0, 0.0], [1.5, 1.0]], [0.5, 0.8])
    z = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for lam in (-3.0, 0.0, 4.0):
        alpha, sigma = mix.alpha_sigma(lam)
        z_req = z.clone().requires_grad_(True)
        score, = torch.autograd.grad(mix.log_prob(z_req, lam).sum(), z_req)
        assert torch.allclose(mix.score(z, lam), score, atol=1e-10)
        tweedie = (z + sigma ** 2 * score) / alpha
        assert torch.allclose(mix.posterior_mean(z, lam), tweedie, atol=1e-9)
    x, zs = mix.sample(400_000, 0.0, generator=torch.Generator().manual_seed(1))
    point = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    near = ((zs - point) ** 2).sum(-1) < 0.05 ** 2
    assert near.sum() > 100
    assert torch.allclose(x[near].mean(0), mix.posterior_mean(point, 0.0)[0], atol=0.1)


def test_a_bad_mixture_is_named():
    from intro_dgm.distributions import NoisedGaussianMixture

    with pytest.raises(ValueError, match="agree on K"):
        NoisedGaussianMixture([0.5, 0.5], [[0.0, 0.0]], [1.0, 1.0])
    with pytest.raises(ValueError, match="sum to 1"):
        NoisedGaussianMixture([0.5, 0.6], [[0.0], [1.0]], [1.0, 1.0])

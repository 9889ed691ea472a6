"""The DDPM identities that 08b_ddpm checks once, on the page, checked here on every step of
three schedules, with random inputs and an untrained (randomised) DDGM:

* the mean of p(z_{t-1}|z_t) written with the noise (``p_mean_variance``) is the forward
  posterior's mean (``q_posterior``) when the noise is the true one, and the posterior's
  form with the predicted image (``predict_x0``) when it is the network's: (ddpm-mu-eps);
* each KL term is c_t ||eps - eps_theta||^2 (plus a constant with sigma_t^2 = beta_t), with
  c_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)) = beta_t / (2 alpha_t (1 - abar_{t-1}))
  = (e^{rho_{t-1} - rho_t} - 1) / 2: (ddpm-weight);
* c_t SNR_t = (SNR_{t-1} - SNR_t) / 2, so the KL is also that weight times the squared
  error of the predicted image: (ddpm-w-snr) and the page's exercise 2;
* ``objective="simple"`` is L_simple: per example ||eps - eps_theta(z_t, t)||^2, summed over
  the pixels and not weighted, at one t ~ U{1..T} (with a categorical data term,
  -ln p(x|z_1) at t = 1), and the bound's one-term estimate is T c_t times it at t >= 2.

Every check compares the package with a computation that does not go through the code it
checks: the schedule in float64 straight from ``make_betas``, the closed-form Gaussian KL
``kl_normal_diag`` on the package's two distributions, and the draws of ``loss``
reproduced from a fixed seed.

Precision. The closed forms are checked on models in float64 (``.double()``); a DDGM
keeps its schedule buffers (``alphas``, ``eps_coef``, ``posterior_variance``, ...) as
float32 copies of the float64 schedule, each rounded by at most 2^-24 (6e-8) relative, and
that rounding is the only error left there. ``DDGM.term`` and ``DDGM.loss`` (the bound's
terms and the training objective) run in float32 only, so they are checked in float32.
Each tolerance below is set from these roundings (measured errors in the comments).
"""
import math

import pytest
import torch

from intro_dgm.distributions import kl_normal_diag
from intro_dgm.models import build_model
from intro_dgm.models.schedules import make_betas

from helpers import randomise

D, V, T = 4, 17, 100
SCHEDULES = {
    "linear": {},                                              # Ho et al., ends scaled by 1000/T
    "cosine": {"schedule": "cosine"},                          # beta_T capped at 0.999
    "log-SNR 1 to -10": {"schedule": "log-snr", "log_snr_1": 1.0, "log_snr_T": -10.0},
}
#: the float32 schedule buffers enter each mean through at most four roundings of 2^-24
#: (a coefficient, a square root, a quotient): the error is below 4 * 2^-24 = 2.4e-7 of the
#: largest term of the formula (measured: at most 8.5e-8 of it); 2^-20 = 9.5e-7 leaves a
#: margin of 4, while the source's sqrt(1 - alpha_t) misses by 3e-2 already at t = 2
MEAN_RTOL = 2.0 ** -20
#: the KLs carry in addition the float32 rounding of tilde beta_t and of ln sigma_t^2
#: (|ln sigma_t^2| <= 7.8 on these schedules) in their variance part, where the error of
#: ln sigma_t^2 cancels to first order against that of 1/sigma_t^2: a few 2^-24 of the KL
#: (measured: at most 1.7e-6 over these schedules and both variances); 1e-5 leaves a margin
#: of 6. A wrong weight misses by far more: sqrt(1 - alpha_t) for sqrt(1 - abar_t) (the
#: source's misprint) by the factor (1 - abar_t)/beta_t, about t at the first steps, and
#: abar_t for abar_{t-1} by (1 - abar_t)/(1 - abar_{t-1}), 4 at t = 2 of the linear schedule
KL_RTOL = 1e-5
#: DDGM.term and DDGM.loss run in float32 (see _model): the KL sums per pixel float32
#: numbers as large as |ln sigma_t^2| that cancel down to c_t (eps - eps_theta)^2, an
#: absolute error of ~1e-6 nats per pixel, against a KL that with the network's eps_theta
#: can be as small as ~0.05 nats: ~1e-5 of the KL (measured: at most 1.6e-5); 1e-4 leaves a
#: margin of 6, still far below what a wrong weight or a wrong draw of z_t changes
TERM_RTOL = 1e-4


def _model(fields=None, seed=0, double=True):
    """An untrained DDGM with random, non-trivial weights, in float64 unless ``double`` is
    False (``term`` and ``loss`` work in float32 only: they collect the KLs in a float32
    tensor)."""
    torch.manual_seed(seed)
    config = dict(input_dim=D, num_vals=V, steps=T, hidden=(16,), embedding_dim=8)
    model = randomise(build_model("ddgm", {**config, **(fields or {})}), std=0.3)
    return model.double() if double else model


def _schedule(fields):
    """The schedule in float64 from its definition, not from the model's buffers:
    beta_t, alpha_t, abar_t, abar_{t-1}, each (T,), index t - 1 holding step t."""
    betas = make_betas(fields.get("schedule", "linear"), T, fields.get("beta_1"),
                       fields.get("beta_T"), fields.get("log_snr_1"), fields.get("log_snr_T"))
    alphas = 1.0 - betas
    abar = torch.cumprod(alphas, 0)
    return betas, alphas, abar, torch.cat([abar.new_ones(1), abar[:-1]])


def _chain_batch(n_per_step, seed):
    """Random pixels x, steps t = 2..T (n_per_step rows each), true noise eps and a made-up
    prediction eps_theta, all float64."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(2, T + 1).repeat_interleave(n_per_step)
    x = torch.randint(0, V, (len(t), D), generator=g).double()
    eps = torch.randn(len(t), D, generator=g, dtype=torch.float64)
    eps_theta = torch.randn(len(t), D, generator=g, dtype=torch.float64)
    return x, t, eps, eps_theta


def _assert_close(value, expected, scale, rtol, what):
    worst = ((value - expected).abs() / scale).max().item()
    assert worst <= rtol, f"{what}: off by {worst:.2e} of its scale (allowed {rtol:.1e})"


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_the_mean_written_with_the_noise_is_the_posterior_mean(schedule):
    """(ddpm-mu-eps): with z_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps, the posterior mean
    (q_posterior, written with the image) is (z_t - beta_t / sqrt(1 - abar_t) eps) /
    sqrt(alpha_t); p_mean_variance, given the true eps, returns it; given the network's
    eps_theta, it returns the posterior's image form at the network's predicted image."""
    fields = SCHEDULES[schedule]
    model = _model(fields)
    beta, alpha, abar, abar_prev = (s[:, None] for s in _schedule(fields))
    x, t, eps, _ = _chain_batch(4, seed=1)
    b, a, ab, ab_prev = beta[t - 1], alpha[t - 1], abar[t - 1], abar_prev[t - 1]
    x_tilde = 2 * x / (V - 1) - 1
    z_t = model.q_sample(x, t, noise=eps)
    _assert_close(z_t, ab.sqrt() * x_tilde + (1 - ab).sqrt() * eps,
                  x_tilde.abs() + eps.abs(), MEAN_RTOL, "q_sample")

    # the noise form, from the float64 schedule, against the image form of q_posterior
    mean_q, _ = model.q_posterior(z_t, x, t)
    coef_x, coef_z = ab_prev.sqrt() * b / (1 - ab), a.sqrt() * (1 - ab_prev) / (1 - ab)
    # the size of the largest term of either form (the noise form cancels two large terms
    # where alpha_t is small: the cosine schedule's last step, alpha_T = 0.001)
    scale = torch.maximum((coef_x * x_tilde).abs() + (coef_z * z_t).abs(),
                          (z_t.abs() + (b / (1 - ab).sqrt() * eps).abs()) / a.sqrt())
    noise_form = (z_t - b / (1 - ab).sqrt() * eps) / a.sqrt()
    _assert_close(mean_q, noise_form, scale, MEAN_RTOL, "q_posterior vs the noise form")
    # the model's mean at the true noise is the posterior mean
    mean_p, _ = model.p_mean_variance(z_t, t, eps=eps)
    _assert_close(mean_p, noise_form, scale, MEAN_RTOL, "p_mean_variance(eps) vs the noise form")

    # at the network's noise: the image form, with the image the network predicts
    with torch.no_grad():
        mean_theta, _ = model.p_mean_variance(z_t, t)
        x_hat, eps_theta = model.predict_x0(z_t, t), model.predict_eps(z_t, t)
    assert (mean_theta - mean_q).abs().max() > 1e-3       # the network is not the truth
    image_form = coef_x * x_hat + coef_z * z_t
    scale = torch.maximum((coef_x * x_hat).abs() + (coef_z * z_t).abs(),
                          (z_t.abs() + (b / (1 - ab).sqrt() * eps_theta).abs()) / a.sqrt())
    _assert_close(mean_theta, image_form, scale, MEAN_RTOL,
                  "p_mean_variance vs the image form at predict_x0")


@pytest.mark.parametrize("variance", ["posterior", "beta"])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_kl_term_is_a_weighted_squared_noise_error(schedule, variance):
    """(ddpm-weight): KL[q(z_{t-1}|z_t,x) || p(z_{t-1}|z_t)], in closed form from the two
    Gaussians (kl_normal_diag) and as the package's bound computes it (term), equals
    c_t ||eps - eps_theta||^2 + D/2 (r - 1 - ln r), r = tilde beta_t / sigma_t^2, with
    c_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)), for a made-up eps_theta and for the
    network's; with sigma_t^2 = tilde beta_t the constant is 0 and c_t has its second form
    beta_t / (2 alpha_t (1 - abar_{t-1})) and its log-SNR form (e^{rho_{t-1} - rho_t} - 1)/2."""
    fields = SCHEDULES[schedule]
    model = _model({**fields, "variance": variance})
    beta, alpha, abar, abar_prev = _schedule(fields)
    tilde_beta = beta * (1 - abar_prev) / (1 - abar)
    sigma2 = tilde_beta if variance == "posterior" else beta
    c = beta ** 2 / (2 * sigma2 * alpha * (1 - abar))                 # (T,), step t at t - 1
    r = tilde_beta / sigma2
    const = D / 2 * (r - 1 - torch.log(r))
    if variance == "posterior":
        # the three forms of c_t, all float64 (the schedule is float64 throughout and the
        # forms differ by a few dozen roundings of 2^-53; measured 2e-14 relative)
        rho = model.log_snr()                                         # the package's rho_t
        second = beta / (2 * alpha * (1 - abar_prev))
        log_snr_form = 0.5 * torch.expm1(rho[:-1] - rho[1:])
        assert torch.allclose(second[1:], c[1:], rtol=1e-10, atol=0)
        assert torch.allclose(log_snr_form, c[1:], rtol=1e-10, atol=0)
        assert torch.allclose(const[1:], torch.zeros_like(const[1:]), atol=1e-12)

    x, t, eps, eps_theta = _chain_batch(4, seed=2)
    z_t = model.q_sample(x, t, noise=eps)
    mean_q, var_q = model.q_posterior(z_t, x, t)
    mean_p, log_var_p = model.p_mean_variance(z_t, t, eps=eps_theta)
    general = kl_normal_diag(mean_q, var_q.log().expand_as(mean_q), mean_p,
                             log_var_p.expand_as(mean_p))
    weighted = c[t - 1] * ((eps - eps_theta) ** 2).sum(-1) + const[t - 1]
    _assert_close(general, weighted, general, KL_RTOL,
                  "kl_normal_diag vs c_t ||eps - eps_theta||^2")

    # the bound's own term (float32), with the network's eps_theta: its KL is c_t times its
    # eps_mse, plus the constant
    with torch.no_grad():
        term = _model({**fields, "variance": variance}, double=False).term(
            x.float(), t, noise=eps.float())
    weighted = c[t - 1] * term["eps_mse"].double() + const[t - 1]
    _assert_close(term["kl"].double(), weighted, weighted, TERM_RTOL,
                  "DDGM.term's KL vs c_t times its eps_mse")


def test_the_log_snr_linear_schedule_weighs_every_step_alike():
    """A log-SNR that falls by 11/99 a step (1 to -10 over T = 100) gives every step the
    weight c_t = (e^{11/99} - 1)/2 = 0.0588 (08b's "all equal"), measured from the
    package's bound as KL / ||eps - eps_theta||^2."""
    model = _model(SCHEDULES["log-SNR 1 to -10"], double=False)
    x, t, eps, _ = _chain_batch(2, seed=3)
    with torch.no_grad():
        term = model.term(x.float(), t, noise=eps.float())
    c = term["kl"].double() / term["eps_mse"].double()
    expected = 0.5 * math.expm1(11 / 99)
    assert abs(expected - 0.0588) < 5e-5
    _assert_close(c, torch.full_like(c, expected), expected, TERM_RTOL,
                  "c_t vs (e^{11/99} - 1)/2")


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_the_weight_times_snr_is_half_the_snr_a_step_removes(schedule):
    """(ddpm-w-snr): c_t SNR_t = (SNR_{t-1} - SNR_t)/2 with SNR_t = e^{rho_t} from the
    package's log_snr() and c_t the weight the package's bound puts on ||eps - eps_theta||^2;
    hence (exercise 2) the KL is also (SNR_{t-1} - SNR_t)/2 ||x - x_hat_theta||^2 with the
    network's predicted image (predict_x0), draw by draw."""
    model = _model(SCHEDULES[schedule], double=False)
    snr = model.log_snr().exp()                                       # float64
    x, t, eps, _ = _chain_batch(4, seed=4)
    x, eps = x.float(), eps.float()
    with torch.no_grad():
        term = model.term(x, t, noise=eps)
        x_hat = model.predict_x0(model.q_sample(x, t, noise=eps), t).double()
    kl, eps_mse = term["kl"].double(), term["eps_mse"].double()
    half_drop = 0.5 * (snr[t - 2] - snr[t - 1])                       # (SNR_{t-1} - SNR_t)/2
    _assert_close(kl / eps_mse * snr[t - 1], half_drop, half_drop, TERM_RTOL,
                  "c_t SNR_t vs (SNR_{t-1} - SNR_t)/2")
    image_error = ((2 * x / (V - 1) - 1 - x_hat) ** 2).sum(-1)
    _assert_close(kl, half_drop * image_error, kl, TERM_RTOL,
                  "the KL vs (SNR_{t-1} - SNR_t)/2 ||x - x_hat||^2")


@pytest.mark.parametrize("data_term", ["discretised-gaussian", "categorical"])
def test_the_simple_objective_is_the_unweighted_noise_error_at_a_uniform_step(data_term):
    """objective="simple" (Ho et al.'s L_simple, as DDGM documents it): per example
    ||eps - eps_theta(sqrt(abar_t) x + sqrt(1 - abar_t) eps, t)||^2, summed over the pixels,
    unweighted, at one step t ~ U{1..T} drawn independently per example (step_sampling
    "uniform"), and at t = 1 -ln p(x|z_1) instead when the data term is a categorical
    decoder. Reproduced from the same seed: ``loss`` draws t (randint), then eps (randn).
    The bound's one-term estimate returned beside it is T c_t times it at t >= 2 (the factor
    08b's prediction rests on) and, at t = 1, T times the data term."""
    fields = {"schedule": "log-snr", "log_snr_1": 1.0, "log_snr_T": -10.0,
              "objective": "simple", "data_term": data_term}
    model = _model(fields, seed=5, double=False)
    beta, alpha, abar, abar_prev = _schedule(fields)
    B = 256
    x = torch.randint(0, V, (B, D), generator=torch.Generator().manual_seed(6)).float()
    torch.manual_seed(7)
    with torch.no_grad():
        out = model.loss(x)
    torch.manual_seed(7)
    t = torch.randint(1, T + 1, (B,))                                 # t ~ U{1..T}
    eps = torch.randn(B, D)
    assert (t == 1).any() and (t > 1).any()                           # both branches drawn
    ab = abar[t - 1][:, None]
    z_t = (ab.sqrt() * (2 * x / (V - 1) - 1) + (1 - ab).sqrt() * eps).float()
    with torch.no_grad():
        eps_theta = model.predict_eps(z_t, t)
        expected = ((eps - eps_theta) ** 2).sum(-1)
        if data_term == "categorical":
            logits = model.data_decoder.logits(z_t)                   # (B, D, V)
            log_px = torch.log_softmax(logits, -1).gather(-1, x.long()[..., None]).sum((-2, -1))
            expected = torch.where(t == 1, -log_px, expected)
    # z_t from the float64 schedule differs from q_sample's (float32 buffers) by ~1e-7 of
    # its size; through the network and the square the loss moves by about as much
    # (measured 1.8e-7 relative, well inside TERM_RTOL); a weight (c_t, T), a mean over
    # pixels (1/D) or alpha_t for abar_t would miss by factors
    _assert_close(out["loss"].double(), expected.double(), expected.double(), TERM_RTOL,
                  "L_simple")

    c = beta / (2 * alpha * (1 - abar_prev))                          # c_t, step t at t - 1
    later = t > 1
    kl_steps = out["kl_steps"].double()
    _assert_close(kl_steps[later], T * c[t[later] - 1] * out["loss"].double()[later],
                  kl_steps[later], TERM_RTOL, "the bound's estimate vs T c_t L_simple")
    if data_term == "categorical":
        _assert_close(out["rec"].double()[~later], -T * out["loss"].double()[~later],
                      out["rec"].double()[~later].abs(), TERM_RTOL,
                      "the bound's data term vs T times L_simple's at t = 1")

"""Diffusion models: the closed forms against the chain and Bayes' rule, a likelihood that
sums to one, the bound's two forms agree, every reverse network trains, clear errors."""
import math

import pytest
import torch

from intro_dgm.distributions import log_discretised_gaussian, log_normal_diag

from intro_dgm.models import MODELS, DiffusionConfig, build_model
from intro_dgm.models.diffusion import DDGM
from intro_dgm.models.schedules import make_betas
from intro_dgm.nets import sinusoidal_embedding

from helpers import randomise

TINY = dict(input_dim=4, num_vals=5, steps=3, schedule="constant", beta_1=0.3, hidden=(16,),
            embedding_dim=8)
VARIANTS = {
    "shared, discretised Gaussian": {},
    "one net per step (book's DDGM)": {"shared": False},
    "categorical data term": {"data_term": "categorical"},
    "variance beta": {"variance": "beta"},
}


def _model(fields=None, seed=0, **extra):
    torch.manual_seed(seed)
    return randomise(build_model("ddgm", {**TINY, **(fields or {}), **extra}), std=0.3)


def _pixels(n, num_vals=5, dim=4, seed=1):
    return torch.randint(0, num_vals, (n, dim), generator=torch.Generator().manual_seed(seed)).float()


def test_q_sample_moments_match_the_sequential_chain():
    """q(z_t|x) in closed form against running q(z_s|z_{s-1}) t times."""
    model = _model(steps=4, schedule="linear", beta_1=0.05, beta_T=0.4)
    x = _pixels(1).expand(200_000, -1)
    torch.manual_seed(0)
    z = model.rescale(x)
    for t in range(1, 5):
        beta = model.betas[t - 1]
        z = (1 - beta).sqrt() * z + beta.sqrt() * torch.randn_like(z)
        closed = model.q_sample(x, t)
        assert torch.allclose(z.mean(0), closed.mean(0), atol=0.01)
        assert torch.allclose(z.var(0), closed.var(0), rtol=0.02)
        assert torch.allclose(closed.var(0), 1 - model.alphas_cumprod[t - 1].expand(4), rtol=0.02)


def test_q_posterior_is_bayes_rule():
    """q(z_{t-1}|z_t,x) ∝ q(z_t|z_{t-1}) q(z_{t-1}|x), normalised on a grid (one pixel)."""
    model = _model(input_dim=1, steps=3, schedule="linear", beta_1=0.1, beta_T=0.5)
    x = torch.tensor([[3.0]])
    grid = torch.linspace(-6, 6, 20001, dtype=torch.float64)[:, None]
    for t in (2, 3):
        z_t = torch.tensor([[0.4]])
        a_bar_prev = model.alphas_cumprod[t - 2].double()
        beta = model.betas[t - 1].double()
        log_joint = (log_normal_diag(z_t.double(), (1 - beta).sqrt() * grid, beta.log())
                     + log_normal_diag(grid, a_bar_prev.sqrt() * model.rescale(x).double(),
                                       torch.log1p(-a_bar_prev)))
        w = torch.softmax(log_joint, 0)
        mean, var = model.q_posterior(z_t, x, t)
        bayes_mean = (w * grid.squeeze()).sum()
        bayes_var = (w * (grid.squeeze() - bayes_mean) ** 2).sum()
        assert abs(mean.item() - bayes_mean.item()) < 1e-4
        assert abs(var.item() - bayes_var.item()) < 1e-4


def test_discretised_gaussian_sums_to_one_over_the_values():
    values = torch.arange(17.0)[:, None]
    for mean, log_scale in ((0.3, -1.0), (-0.99, -6.0), (4.0, -3.0), (0.0625, -9.0), (0.0, 3.0)):
        lp = log_discretised_gaussian(values, torch.full((17, 1), mean), torch.tensor(log_scale), 17)
        assert torch.isfinite(lp).all()
        assert abs(torch.logsumexp(lp, 0).item()) < 1e-5
    # a mean exactly on the edge between two values gives each half of the mass
    lp = log_discretised_gaussian(values, torch.full((17, 1), 0.0625), torch.tensor(-12.0), 17)
    assert torch.allclose(lp[8:10].exp(), torch.tensor([0.5, 0.5]), atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_terms_add_up_and_every_network_trains(variant):
    model = _model(VARIANTS[variant])
    x = _pixels(16)
    model.train()
    out = model.loss(x)
    assert torch.allclose(out["elbo"], out["rec"] - out["kl"])
    assert torch.allclose(out["kl"], out["kl_T"] + out["kl_steps"])
    out["loss"].mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    # a single batch may not draw every step: draw until each network has had its turn
    for _ in range(20):
        if not missing:
            break
        model.zero_grad()
        model.loss(x.repeat(8, 1))["loss"].mean().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing
    model.eval()
    full = model.bound(x)
    terms = model.all_terms(x)
    assert (terms["kl"][:, 1:] >= 0).all() and (terms["kl"][:, 0] == 0).all()
    assert (full["kl_T"] >= 0).all()
    assert torch.allclose(full["elbo"], full["rec"] - full["kl"])
    assert torch.allclose(full["kl"], full["kl_T"] + full["kl_steps"])


def test_loss_means_the_same_in_train_and_eval_mode():
    """No hidden mode switch: the training objective is the one-step estimate in either mode
    (same seed, same numbers); the full bound is asked for by name (``bound``)."""
    model = _model(steps=5)
    x = _pixels(8)
    torch.manual_seed(3)
    trained = model.train().loss(x)
    torch.manual_seed(3)
    evaluated = model.eval().loss(x)
    for key in trained:
        assert torch.equal(trained[key], evaluated[key]), key
    assert "loss" not in model.bound(x)


def test_the_kl_form_agrees_with_the_plain_elbo():
    """(4.102), every KL in closed form, and (4.91), ln p(x, z_{1:T}) - ln q(z_{1:T}|x) at
    sampled chains, estimate the same number."""
    model = _model(steps=4).eval()
    x = _pixels(3)
    torch.manual_seed(0)
    with torch.no_grad():
        kl_form = torch.stack([model.bound(x)["elbo"] for _ in range(1000)])
        plain = model.log_weights(x, 20_000)
    se = (kl_form.var(0) / 1000 + plain.var(1) / 20_000).sqrt()
    # (the KL form is not always the less noisy one: it draws z_t afresh for every term,
    # so on a trained model its independent data term can outweigh what the closed forms save)
    assert ((kl_form.mean(0) - plain.mean(1)).abs() < 4 * se).all()


@pytest.mark.parametrize("estimator", ["ends-every-example", "one-term"])
@pytest.mark.parametrize("step_sampling", ["uniform", "stratified"])
def test_training_estimate_is_unbiased(step_sampling, estimator):
    model = _model(steps=3, step_sampling=step_sampling, estimator=estimator)
    x = _pixels(2)
    torch.manual_seed(0)
    with torch.no_grad():
        full = model.bound(x.repeat(3000, 1))["elbo"].view(3000, -1).mean(0)
        one_term = torch.cat([model.loss(x.repeat(500, 1))["elbo"].view(500, -1) for _ in range(40)])
    se = one_term.std(0) / math.sqrt(len(one_term))
    assert ((one_term.mean(0) - full).abs() < 4 * se + 0.05).all()


def test_the_default_estimator_learns_the_data_term_from_every_example(digits):
    """The data term on every example, one chain step weighted by T - 1: every example's
    rec is its data term (none zero, none multiplied by T), and the batch mean of the
    estimate varies far less than the one-term estimator's, whose spread is nearly all the
    data term drawn with probability 1/T and weighted by T."""
    torch.manual_seed(0)  # an untrained model of the digits (64 pixels of 17 values)
    model = build_model("ddgm", {"steps": 100, "schedule": "log-snr", "log_snr_1": 1.0,
                                 "log_snr_T": -10.0, "hidden": [32],
                                 "data_term": "categorical", "step_sampling": "stratified"})
    x = digits.train[:64]
    with torch.no_grad():
        out = model.loss(x)
        assert (out["rec"] < 0).all() and torch.allclose(out["elbo"], out["rec"] - out["kl"])
        torch.manual_seed(5)
        z_1 = model.q_sample(x, 1)
        assert out["rec"].mean().item() == pytest.approx(
            model.log_px_given_z1(x, z_1).mean().item(), rel=0.05)
        spread = {}
        for estimator in ("ends-every-example", "one-term"):
            model.estimator = estimator
            spread[estimator] = torch.stack([model.loss(x)["elbo"].mean() for _ in range(200)]).std()
    assert spread["ends-every-example"] < spread["one-term"] / 3
    one_step = _model(steps=1)  # T = 1: the data term and L_T, nothing drawn
    with torch.no_grad():
        assert torch.isfinite(one_step.loss(_pixels(4))["loss"]).all()


def test_samples_and_trajectory_shapes():
    model = _model(steps=3)
    x, path = model.sample(5, trajectory=True)
    assert x.shape == (5, 4) and len(path) == 3 and all(z.shape == (5, 4) for z in path)
    assert ((x >= 0) & (x <= 4) & (x == x.round())).all()
    mean = model.sample(5, mean=True)
    assert ((mean >= 0) & (mean <= 4)).all()


def test_schedules():
    for schedule in ("linear", "cosine", "log-snr"):
        betas = make_betas(schedule, 50)
        assert ((betas > 0) & (betas < 1)).all() and betas.shape == (50,)
    model = build_model("ddgm", {**TINY, "schedule": "log-snr", "log_snr_1": 6.0,
                                 "log_snr_T": -8.0, "steps": 8})
    snr = model.log_snr()
    assert abs(snr[0].item() - 6.0) < 1e-4 and abs(snr[-1].item() + 8.0) < 1e-3
    assert (snr[1:] < snr[:-1]).all()
    assert torch.allclose(make_betas("constant", 4, beta_1=0.2), torch.full((4,), 0.2,
                                                                            dtype=torch.float64))


def test_step_embedding():
    e = sinusoidal_embedding(torch.tensor([0, 1, 500]), 8)
    assert e.shape == (3, 8)
    assert torch.allclose(e[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    assert not torch.allclose(e[1], e[2])
    with pytest.raises(ValueError, match="dim must be an even integer"):
        sinusoidal_embedding(torch.tensor([1]), 7)


@pytest.mark.parametrize("fields, match", [
    ({"steps": 0}, "steps must be an integer >= 1"),
    ({"schedule": "linear", "beta_1": 1.5}, r"beta_1 must be a number in \(0, 1\)"),
    ({"schedule": "linear", "beta_T": 0.0}, r"beta_T must be a number in \(0, 1\)"),
    ({"schedule": "constant", "beta_T": 0.1}, "beta_T does not apply to the constant"),
    ({"schedule": "log-snr", "log_snr_1": -1.0, "log_snr_T": 2.0}, "log_snr_1 must be > log_snr_T"),
    ({"schedule": "quadratic"}, "schedule must be one of linear, constant, cosine, log-snr"),
    ({"objective": "mse"}, "objective must be one of elbo, simple"),
    ({"step_sampling": "sobol"}, "step_sampling must be one of uniform, stratified"),
    ({"data_term": "gaussian"}, "data_term must be one of discretised-gaussian, categorical"),
    ({"likelihood": "poisson"}, "likelihood must be one of categorical, bernoulli, gaussian; got 'poisson'"),
    ({"likelihood": "bernoulli"}, "a bernoulli decoder models binary pixels: num_vals must be 2"),
    ({"likelihood": "gaussian", "data_term": "categorical"}, "data_term 'categorical' needs integer"),
])
def test_bad_config_is_named(fields, match):
    with pytest.raises((ValueError, TypeError), match=match):
        DiffusionConfig(**{**TINY, **fields})


def test_bad_input_is_named():
    model = _model()
    with pytest.raises(ValueError, match=r"x must hold integer pixel values in 0..4"):
        model.loss(torch.full((2, 4), 5.0))
    with pytest.raises(ValueError, match=r"t must lie in 1..T = 1..3"):
        model.q_sample(_pixels(2), 4)
    with pytest.raises(ValueError, match="beta .KL warm-up. does not apply"):
        model.loss(_pixels(2), beta=0.5)
    with pytest.raises(ValueError, match=r"betas must lie in \(0, 1\)"):
        DDGM(torch.tensor([0.1, 1.0]), torch.nn.Linear(12, 4), input_dim=4, num_vals=5,
             embedding_dim=8)
    with pytest.raises(ValueError, match="eps_nets holds 2 networks for T = 3"):
        DDGM(torch.full((3,), 0.1), torch.nn.ModuleList([torch.nn.Linear(4, 4)] * 2), 4, 5)
    assert "ddgm" in MODELS


def test_real_valued_data_and_binary_pixels():
    """The 2-D toys: z_0 = x and a Gaussian data term; binary pixels: two values."""
    torch.manual_seed(0)
    model = build_model("ddgm", {"input_dim": 2, "likelihood": "gaussian", "steps": 4,
                                 "hidden": [16], "embedding_dim": 8}).eval()
    x = torch.randn(50, 2) * 3
    assert torch.equal(model.rescale(x), x)
    with torch.no_grad():
        out = model.bound(x)
        z_1 = model.q_sample(x, 1)
        mean, _ = model.p_mean_variance(z_1, 1)
        data_term = model.log_px_given_z1(x, z_1)
    assert torch.isfinite(out["elbo"]).all()
    assert torch.allclose(data_term, log_normal_diag(x, mean, model.betas[0].log()))
    assert model.sample(7).shape == (7, 2)
    with pytest.raises(ValueError, match="x contains NaN or infinite values"):
        model.loss(torch.tensor([[0.0, float("nan")]]))
    binary = build_model("ddgm", {**TINY, "likelihood": "bernoulli", "num_vals": 2})
    assert set(binary.sample(20).unique().tolist()) <= {0.0, 1.0}


def test_stratified_steps_are_uniform_and_cover_the_chain():
    model = _model(steps=7, step_sampling="stratified")
    torch.manual_seed(0)
    draws = torch.stack([model.draw_steps(14) for _ in range(4000)])   # (4000, 14)
    # every batch of 14 = 2 T holds each step exactly twice (the grid's spacing is T / 14 = 1/2)
    assert all((torch.bincount(row, minlength=8)[1:] == 2).all() for row in draws[:50])
    # each example's step on its own is uniform on 1..T (so the one-term estimate stays unbiased)
    for column in (0, 13):
        freq = torch.bincount(draws[:, column], minlength=8)[1:].float() / len(draws)
        assert (freq - 1 / 7).abs().max() < 4 * math.sqrt(1 / 7 * 6 / 7 / len(draws))
    # a batch whose size is not a multiple of T covers it as evenly as it can
    counts = torch.bincount(model.draw_steps(10), minlength=8)[1:]
    assert counts.min() >= 1 and counts.max() <= 2


@pytest.mark.parametrize("schedule", [{"schedule": "constant", "beta_1": 0.3},
                                      {"schedule": "log-snr", "log_snr_1": 8.0, "steps": 6}])
def test_the_log_weight_terms_are_the_plain_form_draw_by_draw(schedule):
    """(4.91) written forwards, ln p(z_T) + sum_t ln p(z_{t-1}|z_t) + ln p(x|z_1) - sum_t
    ln q(z_t|z_{t-1}), computed here from the same draws, equals rec - kl_T - kl_steps of the
    backward factorisation q(z_T|x) prod q(z_{t-1}|z_t, x) that log_weight_terms uses."""
    model, x, k = _model(schedule), _pixels(5), 4
    torch.manual_seed(2)
    with torch.no_grad():
        terms = model.log_weight_terms(x, k)
    torch.manual_seed(2)
    xk = x.repeat(k, 1)
    chain, z = [], model.rescale(xk)
    log_q = torch.zeros(k * 5, dtype=torch.float64)
    with torch.no_grad():
        for t in range(1, model.steps + 1):
            beta = model.betas[t - 1]
            new = (1 - beta).sqrt() * z + beta.sqrt() * torch.randn_like(z)
            log_q += log_normal_diag(new.double(), (1 - beta).sqrt().double() * z.double(),
                                     beta.double().log())
            chain.append(new)
            z = new
        log_p = log_normal_diag(chain[-1].double(), torch.zeros(1), torch.zeros(1).double())
        for t in range(2, model.steps + 1):
            mean, log_var = model.p_mean_variance(chain[t - 1], t)
            log_p += log_normal_diag(chain[t - 2].double(), mean.double(),
                                     log_var.double().expand_as(mean))
        log_p += model.log_px_given_z1(xk, chain[0]).double()
    forward = (log_p - log_q).view(k, 5).T
    assert torch.allclose(terms["rec"] - terms["kl"], forward, rtol=1e-6, atol=1e-4)
    assert torch.allclose(terms["kl"], terms["kl_T"] + terms["kl_steps"])


def test_requested_log_snr_end_points_are_honoured_or_refused():
    """A requested end point is never moved by a clamp: log_snr_1 up to 18.42 is kept (and
    log_snr() reports it from the float64 schedule, where float32 alpha_bar rounds to 1 from
    about 17); beyond, and a drop too fast for the steps, is an error naming the argument."""
    for rho_1 in (10.0, 17.0, 18.4):
        model = build_model("ddgm", {**TINY, "schedule": "log-snr", "log_snr_1": rho_1,
                                     "log_snr_T": -10.0, "steps": 50})
        rho = model.log_snr()
        assert rho.dtype == torch.float64
        assert rho[0].item() == pytest.approx(rho_1, abs=1e-6)
        assert rho[-1].item() == pytest.approx(-10.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"log_snr_1 = 18.5 is too high.*at most 18.42"):
        make_betas("log-snr", 50, log_snr_1=18.5)
    with pytest.raises(ValueError, match="log_snr_T = -30.0 over 3 steps drops the log-SNR too fast"):
        make_betas("log-snr", 3, log_snr_T=-30.0)


def test_a_trained_ddgm_is_read_at_another_number_of_steps():
    """ddgm_at_steps: at T' = T the same model (the same bound, draw by draw); at other T'
    the same end points of the log-SNR, a schedule in between, shared parameters, and the
    network told fractional steps. On a trained model the bound rises with T' (T/2, T, 2T),
    as the continuous view predicts for a network that generalises between the steps it was
    trained on: finer steps back are closer to Gaussian."""
    from intro_dgm.models import ddgm_at_steps
    from intro_dgm.training import TrainConfig, fit

    torch.manual_seed(0)
    model = build_model("ddgm", {**TINY, "steps": 8, "schedule": "log-snr", "log_snr_1": 4.0,
                                 "log_snr_T": -6.0, "hidden": (32,)})
    x = _pixels(256, seed=2)
    fit(model, x, x[:64], TrainConfig(max_epochs=30, patience=30, batch_size=64))
    model.eval()
    same = ddgm_at_steps(model, 8)
    assert torch.allclose(same.log_snr(), model.log_snr(), atol=1e-9)
    torch.manual_seed(1)
    a = model.bound(x)["elbo"]
    torch.manual_seed(1)
    b = same.bound(x)["elbo"]
    assert torch.allclose(a, b, atol=1e-4)
    bounds = {}
    for steps in (4, 8, 16):
        other = ddgm_at_steps(model, steps)
        rho = other.log_snr()
        assert len(rho) == steps and (rho[1:] < rho[:-1]).all()
        assert abs(rho[0] - model.log_snr()[0]) < 1e-9 and abs(rho[-1] - model.log_snr()[-1]) < 1e-9
        assert other.eps_nets is model.eps_nets
        assert other.step_positions[-1] == 8 and other.step_positions[0] == 1
        torch.manual_seed(2)
        bounds[steps] = other.bound(x.repeat(8, 1))["elbo"].mean().item()
    assert bounds[16] > bounds[8] > bounds[4]
    with pytest.raises(ValueError, match="shared network"):
        ddgm_at_steps(build_model("ddgm", {**TINY, "shared": False}), 4)
    with pytest.raises(ValueError, match="steps"):
        ddgm_at_steps(model, 1)

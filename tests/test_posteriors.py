"""Posterior objects: samples and their own log-density, analytic KLs, flow posteriors."""
import pytest
import torch
import torch.distributions as td

from intro_dgm.flows import FlowStep, Householder, realnvp
from intro_dgm.posteriors import (DiagonalGaussian, FlowPosterior, HouseholderPosterior,
                                  analytic_kl, has_analytic_kl)
from intro_dgm.priors import MoGPrior, StandardPrior

from helpers import randomise


def _gaussian(B=5, L=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return DiagonalGaussian(torch.randn(B, L, generator=g), torch.randn(B, L, generator=g) * 0.5)


def test_gaussian_samples_come_with_their_own_log_density():
    q = _gaussian()
    reference = td.Independent(td.Normal(q.mu_e, torch.exp(0.5 * q.log_var_e)), 1)
    z, log_q = q.rsample()
    assert z.shape == (5, 3) and log_q.shape == (5,)
    assert torch.allclose(log_q, reference.log_prob(z), atol=1e-5)
    z, log_q = q.rsample(7)
    assert z.shape == (7, 5, 3) and log_q.shape == (7, 5)
    assert torch.allclose(log_q, reference.log_prob(z), atol=1e-5)
    assert torch.allclose(q.entropy(), reference.entropy(), atol=1e-5)
    assert torch.equal(q.mean, q.mu_e)
    # The samples follow q: the standard deviation is exp(log_var / 2), not exp(log_var).
    torch.manual_seed(0)
    z, _ = q.rsample(100_000)
    assert torch.allclose(z.std(0), torch.exp(0.5 * q.log_var_e), rtol=0.02)


def test_gradients_flow_through_the_samples():
    mu = torch.zeros(4, 2, requires_grad=True)
    log_var = torch.zeros(4, 2, requires_grad=True)
    z, _ = DiagonalGaussian(mu, log_var).rsample()
    (z ** 2).sum().backward()
    assert mu.grad.abs().sum() > 0 and log_var.grad.abs().sum() > 0


def test_analytic_kl_only_where_registered_and_equal_to_monte_carlo():
    q = _gaussian()
    exact = analytic_kl(q, StandardPrior(3))
    assert exact.shape == (5,)
    reference = td.kl_divergence(td.Normal(q.mu_e, torch.exp(0.5 * q.log_var_e)),
                                 td.Normal(0.0, 1.0)).sum(-1)
    assert torch.allclose(exact, reference, atol=1e-5)
    torch.manual_seed(0)
    z, log_q = q.rsample(200_000)
    mc = (log_q - StandardPrior(3).log_prob(z.reshape(-1, 3)).reshape(200_000, 5)).mean(0)
    assert torch.allclose(mc, exact, atol=0.03)
    assert analytic_kl(q, MoGPrior(3)) is None  # no closed form: the model estimates it
    assert has_analytic_kl(DiagonalGaussian, StandardPrior(3))
    assert not has_analytic_kl(DiagonalGaussian, MoGPrior(3))


class _Shift(FlowStep):
    """An amortised step: z + b with a per-example shift ``b`` (log-det 0)."""

    def forward(self, z, params=None):
        return z + params, z.new_zeros(z.shape[0])


def test_flow_posterior_density_is_the_change_of_variables():
    torch.manual_seed(0)
    flow = randomise(realnvp(2, num_layers=3, hidden=8), std=0.5)
    base = _gaussian(B=4, L=2)
    shift = torch.randn(4, 2)
    q = FlowPosterior(base, [*flow.steps, _Shift()], params=[None, None, None, shift])
    torch.manual_seed(1)
    z, log_q = q.rsample()
    torch.manual_seed(1)
    z0, log_q0 = base.rsample()
    # ln q(z_T) = ln q(z_0) - ln|det dz_T/dz_0|, the Jacobian by autograd.
    for i in range(4):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0] + shift[i], z0[i])
        assert log_q[i].item() == pytest.approx(log_q0[i].item() - torch.linalg.slogdet(jac)[1].item(),
                                                abs=1e-4)
    assert torch.allclose(z, flow(z0)[0] + shift, atol=1e-6)
    # With k samples each example keeps its own parameters.
    z, log_q = q.rsample(6)
    assert z.shape == (6, 4, 2) and log_q.shape == (6, 4)
    torch.manual_seed(2)
    zk, _ = q.rsample(6)
    torch.manual_seed(2)
    z0k, _ = base.rsample(6)
    assert torch.allclose(zk, flow(z0k.reshape(-1, 2))[0].reshape(6, 4, 2) + shift, atol=1e-6)
    assert torch.allclose(q.mean, flow(base.mean)[0] + shift, atol=1e-6)
    with pytest.raises(NotImplementedError, match="rsample"):
        q.log_prob(z)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="same shape"):
        DiagonalGaussian(torch.zeros(3, 2), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        _gaussian().rsample(0)
    with pytest.raises(ValueError, match="one entry per step"):
        FlowPosterior(_gaussian(), realnvp(3, 2).steps, params=[None])
    with pytest.raises(TypeError, match="FlowStep"):
        FlowPosterior(_gaussian(), [torch.nn.Linear(3, 3)])
    with pytest.raises(TypeError, match="steps must all be Householder steps"):
        HouseholderPosterior(_gaussian(), realnvp(3, 2).steps)
    with pytest.raises(TypeError, match="base must be a DiagonalGaussian"):
        HouseholderPosterior(FlowPosterior(_gaussian(), []), [Householder(3)], [torch.ones(5, 3)])


@pytest.mark.parametrize("kind, q_shape", [("orthogonal", (5, 4, 2)), ("householder", (5, 3, 4))])
def test_a_sylvester_posterior_makes_q_once_per_example_not_per_sample(kind, q_shape, monkeypatch):
    """rsample(k) repeats each example's parameters k times; Q depends on the example only,
    so it is made from the B rows before the repeat (O-SNF's rsample(1000) on 16 images ran
    Björck-Bowie on 16,000 copies of 16 matrices). Counted with a wrapper, no timing."""
    from intro_dgm import flows
    from intro_dgm.flows import Sylvester

    rows = []
    for name in ("bjorck_bowie", "householder_product"):
        original = getattr(flows, name)
        monkeypatch.setattr(flows, name, lambda q, *a, _f=original, **kw: rows.append(q.shape[0])
                            or _f(q, *a, **kw))
    g = torch.Generator().manual_seed(0)
    B, D = 5, 4
    m = 2 if kind == "orthogonal" else D
    steps = [Sylvester(D, kind) for _ in range(2)]
    params = [{"r": torch.randn(B, m, m, generator=g), "r_tilde": torch.randn(B, m, m, generator=g),
               "b": torch.randn(B, m, generator=g), "q": torch.randn(*q_shape, generator=g)}
              for _ in steps]
    q = FlowPosterior(_gaussian(B=B, L=D), steps, params)
    torch.manual_seed(0)
    z, log_q = q.rsample(7)
    q.rsample()
    q.mean
    assert rows == [B, B]  # one call per step, on the B examples, for everything above
    # the same samples as each example pushed through the steps with its own parameters
    torch.manual_seed(0)
    z0, log_q0 = q.base.rsample(7)
    for i in range(B):
        zi, log_det = z0[:, i], 0
        for step, p in zip(steps, params):
            zi, ld = step(zi, {k: v[i:i + 1].expand(7, *v.shape[1:]) for k, v in p.items()})
            log_det = log_det + ld
        assert torch.allclose(z[:, i], zi, atol=1e-5)
        assert torch.allclose(log_q[:, i], log_q0[:, i] - log_det, atol=1e-5)


def test_a_householder_posterior_has_the_closed_form_kl_of_its_base():
    r"""z_T = A z_0 with A = H_T ... H_1 orthogonal: q(z_T|x) = N(A mu, A Sigma A^T), and against
    N(0, I) its KL is the base's (|A mu| = |mu|, tr and det of A Sigma A^T those of Sigma).
    Checked against kl_normal_full of the explicit covariance (A from the steps applied to the
    identity's columns) and against Monte Carlo; registered, so the VAE trains on it."""
    from intro_dgm.distributions import kl_normal_diag, kl_normal_full
    from intro_dgm.encoders import make_encoder

    torch.manual_seed(0)
    B, L = 6, 4
    encoder = randomise(make_encoder("householder", torch.nn.Identity(), 5, (16,), L,
                                     num_steps=3).double(), std=0.5)
    with torch.no_grad():
        q = encoder(torch.randn(B, 5, dtype=torch.float64))
        kl = analytic_kl(q, StandardPrior(L))
        assert kl is not None and has_analytic_kl(encoder.posterior_cls, StandardPrior(L))
        eye = torch.eye(L, dtype=torch.float64)
        A = []
        for i in range(B):
            columns = eye
            for step, v in zip(q.steps, q.params):
                columns = step(columns, v[i:i + 1].expand(L, L))[0]
            A.append(columns.T)  # row j of `columns` is A e_j
        A = torch.stack(A)
        mean = (A @ q.base.mu_e[..., None])[..., 0]
        cov = A @ torch.diag_embed(q.base.log_var_e.exp()) @ A.transpose(1, 2)
        full = kl_normal_full(mean, cov, torch.zeros_like(mean), eye.expand(B, L, L))
        assert torch.allclose(kl, full, rtol=1e-12, atol=1e-12), (kl, full)
        assert torch.allclose(kl, kl_normal_diag(q.base.mu_e, q.base.log_var_e), rtol=1e-12)
        assert (mean - q.base.mu_e).abs().max() > 0.1  # the flow did move the mean
        torch.manual_seed(1)
        z, log_q = q.rsample(200_000)
        estimate = log_q - StandardPrior(L).log_prob(z.reshape(-1, L).float()).double().view(-1, B)
        se = estimate.std(0) / estimate.shape[0] ** 0.5
        assert ((estimate.mean(0) - kl).abs() < 5 * se).all(), (estimate.mean(0), kl, se)
    # other flows have no closed form: a Sylvester posterior keeps the Monte Carlo estimate
    sylvester = make_encoder("sylvester-triangular", torch.nn.Identity(), 5, (16,), L)
    assert not has_analytic_kl(sylvester.posterior_cls, StandardPrior(L))
    assert analytic_kl(sylvester(torch.randn(2, 5)), StandardPrior(L)) is None

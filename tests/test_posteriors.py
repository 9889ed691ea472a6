"""Posterior objects: samples and their own log-density, analytic KLs, flow posteriors."""
import pytest
import torch
import torch.distributions as td

from intro_dgm.flows import FlowStep, realnvp
from intro_dgm.posteriors import (DiagonalGaussian, FlowPosterior, analytic_kl,
                                  has_analytic_kl)
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

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, MultivariateNormal, Normal, kl_divergence

from intro_dgm import distributions as D


@pytest.fixture
def g():
    return torch.Generator().manual_seed(0)


def test_log_normal_diag_matches_torch(g):
    x, mu, log_var = (torch.randn(5, 3, generator=g) for _ in range(3))
    ref = Normal(mu, torch.exp(0.5 * log_var)).log_prob(x).sum(-1)
    assert torch.allclose(D.log_normal_diag(x, mu, log_var), ref, atol=1e-5)


def test_log_normal_diag_broadcasts_to_mixture_shape(g):
    z, mu, log_var = torch.randn(7, 1, 2, generator=g), torch.randn(1, 4, 2, generator=g), torch.randn(1, 4, 2, generator=g)
    out = D.log_normal_diag(z, mu, log_var)
    assert out.shape == (7, 4)
    ref = Normal(mu[0, 2], torch.exp(0.5 * log_var[0, 2])).log_prob(z[:, 0]).sum(-1)
    assert torch.allclose(out[:, 2], ref, atol=1e-5)


def test_log_standard_normal(g):
    x = torch.randn(6, 4, generator=g)
    assert torch.allclose(D.log_standard_normal(x), Normal(0.0, 1.0).log_prob(x).sum(-1), atol=1e-5)


def test_log_bernoulli_matches_torch_and_is_stable(g):
    x = (torch.rand(5, 10, generator=g) > 0.5).float()
    logits = 3 * torch.randn(5, 10, generator=g)
    assert torch.allclose(D.log_bernoulli(x, logits), Bernoulli(logits=logits).log_prob(x).sum(-1), atol=1e-5)
    # saturated logits: a naive log(sigmoid) would give -inf or nan here
    out = D.log_bernoulli(torch.tensor([[1.0, 0.0]]), torch.tensor([[-200.0, 200.0]]))
    assert torch.allclose(out, torch.tensor([-400.0]))


def test_log_categorical_matches_torch(g):
    logits = torch.randn(4, 6, 17, generator=g)
    x = torch.randint(0, 17, (4, 6), generator=g).float()
    ref = Categorical(logits=logits).log_prob(x.long()).sum(-1)
    assert torch.allclose(D.log_categorical(x, logits), ref, atol=1e-5)


def test_log_categorical_broadcasts_over_samples(g):
    logits = torch.randn(3, 4, 6, 17, generator=g)  # (k, B, D, C)
    x = torch.randint(0, 17, (4, 6), generator=g)
    out = D.log_categorical(x, logits)
    assert out.shape == (3, 4)
    assert torch.allclose(out[1], D.log_categorical(x, logits[1]))


def test_kl_normal_diag_matches_torch(g):
    mq, lq, mp, lp = (torch.randn(5, 3, generator=g) for _ in range(4))
    ref = kl_divergence(Normal(mq, torch.exp(0.5 * lq)), Normal(mp, torch.exp(0.5 * lp))).sum(-1)
    assert torch.allclose(D.kl_normal_diag(mq, lq, mp, lp), ref, atol=1e-5)
    ref0 = kl_divergence(Normal(mq, torch.exp(0.5 * lq)), Normal(0.0, 1.0)).sum(-1)
    assert torch.allclose(D.kl_normal_diag(mq, lq), ref0, atol=1e-5)


def _random_cov(d, g):
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T + 0.5 * torch.eye(d, dtype=torch.float64)


def test_full_covariance_density_and_kl(g):
    d = 4
    cq, cp = _random_cov(d, g), _random_cov(d, g)
    mq, mp = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
    x = torch.randn(5, d, generator=g, dtype=torch.float64)
    assert torch.allclose(D.log_normal_full(x, mq, cq), MultivariateNormal(mq, cq).log_prob(x))
    ref = kl_divergence(MultivariateNormal(mq, cq), MultivariateNormal(mp, cp))
    assert torch.allclose(D.kl_normal_full(mq, cq, mp, cp), ref)

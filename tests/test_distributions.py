import math

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


# ----------------------------------------------------------- the sphere and von Mises-Fisher
@pytest.mark.parametrize("nu, x", [(0.5, 1e-3), (0.5, 800.0), (1.0, 2.5), (31, 0.1), (31, 1e-4),
                                   (127, 10.0), (127, 0.1), (127, 500.0), (499, 3.0),
                                   (4999, 100.0), (30, 30.0)])
def test_log_bessel_matches_high_precision_everywhere(nu, x):
    import mpmath

    ours = D.log_bessel_iv(nu, torch.tensor([x], dtype=torch.float64)).item()
    reference = float(mpmath.log(mpmath.besseli(nu, x)))
    assert ours == pytest.approx(reference, rel=1e-9, abs=1e-9)


def test_log_bessel_gradient_against_finite_differences():
    x = torch.tensor([1e-3, 0.5, 3.0, 40.0, 900.0], dtype=torch.float64, requires_grad=True)
    for nu in (0.5, 7.0, 63.0):
        assert torch.autograd.gradcheck(lambda v: D.log_bessel_iv(nu, v), (x,))
    with pytest.raises(ValueError, match="x must be > 0"):
        D.log_bessel_iv(1.0, torch.tensor([0.0]))


def _w_density(m, kappa):
    """Density of w = mu^T z under vMF(mu, kappa) on S^{m-1}, and ln C_m(kappa).

    The sphere's area element in w is |S^{m-2}| (1 - w^2)^{(m-3)/2} dw, so
    p(w) = C_m e^{kappa w} |S^{m-2}| (1 - w^2)^{(m-3)/2}.
    """
    log_c = D.log_vmf_normaliser(m, torch.tensor(kappa, dtype=torch.float64)).item()
    log_area = D.log_sphere_area(m - 1)
    return (lambda w: math.exp(log_c + kappa * w + log_area + 0.5 * (m - 3) * math.log1p(-w * w)),
            log_c)


@pytest.mark.parametrize("m, kappa", [(3, 0.5), (3, 20.0), (10, 5.0), (64, 0.1), (64, 80.0)])
def test_vmf_density_integrates_to_one_and_kl_matches_quadrature(m, kappa):
    from scipy.integrate import quad

    p_w, log_c = _w_density(m, kappa)
    assert quad(p_w, -1, 1, points=[1 - 1 / max(kappa, 1)])[0] == pytest.approx(1.0, abs=1e-7)
    # KL[vMF || U] = E[ln vMF(z) - ln U(z)] = E_w[ln C_m + kappa w] + ln |S^{m-1}|
    expected = quad(lambda w: p_w(w) * (log_c + kappa * w), -1, 1,
                    points=[1 - 1 / max(kappa, 1)])[0] + D.log_sphere_area(m)
    ours = D.kl_vmf_uniform(m, torch.tensor(kappa, dtype=torch.float64)).item()
    assert ours == pytest.approx(expected, abs=1e-6)
    assert ours >= 0


def test_vmf_on_the_circle_and_sphere_closed_forms():
    # m = 3: C_3(kappa) = kappa / (4 pi sinh kappa); KL to uniform is small for small kappa.
    kappa = torch.tensor([0.3, 2.0, 15.0], dtype=torch.float64)
    assert torch.allclose(D.log_vmf_normaliser(3, kappa),
                          torch.log(kappa / (4 * math.pi * torch.sinh(kappa))), atol=1e-10)
    assert D.log_sphere_area(3) == pytest.approx(math.log(4 * math.pi))
    assert D.log_sphere_area(2) == pytest.approx(math.log(2 * math.pi))
    assert D.kl_vmf_uniform(3, torch.tensor([1e-4], dtype=torch.float64)).item() < 1e-8
    z = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    mu = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    assert D.log_vmf(z, mu, kappa[1:2]).item() == pytest.approx(
        math.log(2.0 / (4 * math.pi * math.sinh(2.0))) + 2.0)

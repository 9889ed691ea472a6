import json
import math
from pathlib import Path

import numpy as np

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
    # data (B, D) against the logits (S, B, D) of S latent samples: each sample scored alone
    many = 3 * torch.randn(4, 5, 10, generator=g)
    expected = torch.stack([D.log_bernoulli(x, m) for m in many])
    assert D.log_bernoulli(x, many).shape == (4, 5)
    assert torch.allclose(D.log_bernoulli(x, many), expected)


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
    with pytest.raises(ValueError, match="x must be finite and > 0"):
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


# ----------------------------------------------------------- VonMisesFisher: KL, sampler, gradients
REFERENCE = json.loads((Path(__file__).parent / "data" / "vmf_kl_reference.json").read_text())


def _vmf(m, kappas, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(len(kappas), m, generator=g, dtype=dtype)
    return D.VonMisesFisher(mu / mu.norm(dim=1, keepdim=True),
                            torch.tensor(kappas, dtype=dtype))


def test_vmf_kl_matches_50_digit_references_on_the_whole_grid():
    """m in {3, 16, 64, 256}, kappa in 1e-3..1e8 (tests/data/make_vmf_reference.py): the KL,
    its gradient and A_m. The encoder's kappa is unbounded (softplus + 1), so the grid goes
    where the textbook forms cancel: at kappa = 1e8, kappa A_m and ln C_m are both ~1e8."""
    for m in sorted({r["m"] for r in REFERENCE}):
        rows = [r for r in REFERENCE if r["m"] == m]
        kappa = torch.tensor([r["kappa"] for r in rows], dtype=torch.float64, requires_grad=True)
        ref = torch.tensor([float(r["kl"]) for r in rows], dtype=torch.float64)
        ours = D.kl_vmf_uniform(m, kappa)
        # relative error far below the 1e-4 asked for, including KL = 2e-9 at m=256, kappa=1e-3
        assert ((ours - ref).abs() / ref).max() < 1e-8, (m, ours, ref)
        a = D.bessel_ratio(0.5 * m - 1, kappa.detach())
        ref_a = torch.tensor([float(r["mean_length"]) for r in rows], dtype=torch.float64)
        assert ((a - ref_a).abs() / ref_a).max() < 1e-10
        (grad,) = torch.autograd.grad(ours.sum(), kappa)
        ref_grad = torch.tensor([float(r["dkl_dkappa"]) for r in rows], dtype=torch.float64)
        assert ((grad - ref_grad).abs() / ref_grad).max() < 1e-8, (m, grad, ref_grad)


def test_vmf_kl_gradient_against_finite_differences():
    for m in (2, 3, 16, 64, 256):
        kappa = torch.tensor([1e-3, 0.3, 5.0, 80.0, 2e3, 1e5, 1e6, 1e7, 1e8], dtype=torch.float64,
                             requires_grad=True)
        (grad,) = torch.autograd.grad(D.kl_vmf_uniform(m, kappa).sum(), kappa)
        # Central differences with a relative step: at kappa = 2e3 the KL (about 8) carries
        # ~4e-10 of rounding (SciPy's ive), too much for gradcheck's absolute step of 1e-6.
        k, h = kappa.detach(), 1e-5 * kappa.detach()
        fd = (D.kl_vmf_uniform(m, k + h) - D.kl_vmf_uniform(m, k - h)) / (2 * h)
        assert torch.allclose(grad, fd, rtol=1e-4, atol=1e-12), (m, grad, fd)


def test_vmf_density_integrates_to_one_on_the_sphere():
    """A (theta, phi) grid over S^2 with area element sin(theta): any mu, any kappa."""
    n = 801
    theta = (torch.arange(n, dtype=torch.float64) + 0.5) * math.pi / n
    phi = (torch.arange(2 * n, dtype=torch.float64) + 0.5) * math.pi / n
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    z = torch.stack([t.sin() * p.cos(), t.sin() * p.sin(), t.cos()], -1).reshape(-1, 1, 3)
    area = (t.sin() * (math.pi / n) ** 2).reshape(-1, 1)
    q = _vmf(3, [0.01, 1.0, 30.0])
    total = (q.log_prob(z.expand(-1, 3, 3)).exp() * area).sum(0)
    assert torch.allclose(total, torch.ones(3, dtype=torch.float64), atol=1e-5), total
    # and the entropy is -E[ln q]
    entropy = -(q.log_prob(z.expand(-1, 3, 3)).exp() * q.log_prob(z.expand(-1, 3, 3)) * area).sum(0)
    assert torch.allclose(entropy, q.entropy(), atol=1e-4)


@pytest.mark.parametrize("m", [2, 3, 16, 64, 256])
def test_vmf_samples_have_the_mean_resultant_length(m):
    torch.manual_seed(0)
    kappas = [1e-3, 1.0, 10.0, 300.0, 1e4]
    q = _vmf(m, kappas)
    z = q.rsample(20000)
    assert z.shape == (20000, 5, m) and z.dtype == torch.float64
    assert (z.norm(dim=-1) - 1).abs().max() < 1e-12
    w = (z * q.mu).sum(-1)  # (n, B)
    a = q.mean_length()
    # E[w] = A_m(kappa); within 5 standard errors of the sample mean
    assert ((w.mean(0) - a).abs() <= 5 * w.std(0) / math.sqrt(20000) + 1e-12).all(), (w.mean(0), a)
    # the part orthogonal to mu has mean 0 (uniform direction)
    rest = z - w[..., None] * q.mu
    assert (rest.mean(0).abs() <= 5 / math.sqrt(20000)).all()


def test_vmf_w_follows_the_exact_distribution_on_s2():
    """On S^2, w = mu^T z has the density kappa e^{kappa w} / (2 sinh kappa): KS test."""
    from scipy.stats import kstest

    torch.manual_seed(1)
    for kappa in (0.1, 3.0, 50.0):
        q = _vmf(3, [kappa])
        w = (q.rsample(5000) * q.mu).sum(-1)[:, 0].numpy()
        cdf = lambda x, k=kappa: np.expm1(k * (x + 1)) / np.expm1(2 * k)  # noqa: E731
        assert kstest(w, cdf).pvalue > 1e-3


def _one_minus_w(z, mu):
    """``1 - mu^T z`` of samples ``z`` ``(n, m)``, from their angle to ``mu`` in float64:
    ``2 sin^2(theta / 2)``. At kappa = 1e8, 1 - w is 1e-8, below float32's rounding of w
    itself (6e-8) and of |z|; the angle, from the part of z orthogonal to mu, keeps it."""
    z, mu = z.detach().double(), mu.detach().double()
    cos = z @ mu
    theta = torch.atan2((z - cos[:, None] * mu).norm(dim=1), cos)
    return (2 * torch.sin(theta / 2) ** 2).numpy()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kappa", [1e6, 1e8])
def test_vmf_w_follows_the_exact_distribution_at_large_kappa(kappa, dtype):
    """On S^2, y = 1 - w has the CDF (1 - e^{-kappa y}) / (1 - e^{-2 kappa}) on [0, 2] (from
    the density of w, kappa e^{kappa w} / (2 sinh kappa)), evaluated in log-space through
    expm1 (e^{kappa w} overflows). A w rounded to float32 before sqrt(1 - w^2) quantises y in
    steps of 6e-8: 6 % of its scale at kappa = 1e6, all of it at 1e8 (every sample = mu)."""
    from scipy.stats import kstest

    torch.manual_seed(4)
    q = _vmf(3, [kappa], dtype=dtype)
    y = _one_minus_w(q.rsample(5000)[:, 0], q.mu[0])

    def cdf(v):
        return np.exp(np.log(-np.expm1(-kappa * v)) - np.log(-np.expm1(-2 * kappa)))

    assert kstest(y, cdf).pvalue > 1e-3


def _w_quantile_m3(u, kappa):
    """The inverse CDF of w on S^2: w = 1 + ln(u + (1 - u) e^{-2 kappa}) / kappa."""
    return 1 + np.log(u + (1 - u) * np.exp(-2 * kappa)) / kappa


def test_implicit_gradient_equals_finite_differences_of_the_quantile_sample_by_sample():
    """Holding the sample's quantile u fixed, dw/dkappa by central differences of F^{-1}(u; kappa)
    (closed form on S^2; numerical CDF and root finding for m = 16)."""
    from scipy.integrate import quad
    from scipy.optimize import brentq

    torch.manual_seed(2)
    for kappa in (0.2, 4.0, 60.0):
        k = torch.tensor([kappa], dtype=torch.float64, requires_grad=True)
        mu = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
        z = D.VonMisesFisher(mu, k).rsample(6)[:, 0]  # (6, 3)
        w = z[:, 0]
        grads = [torch.autograd.grad(wi, k, retain_graph=True)[0].item() for wi in w]
        wn = w.detach().numpy()
        u = np.expm1(kappa * (wn + 1)) / np.expm1(2 * kappa)
        h = 1e-5 * max(kappa, 1)
        fd = (_w_quantile_m3(u, kappa + h) - _w_quantile_m3(u, kappa - h)) / (2 * h)
        assert np.allclose(grads, fd, rtol=1e-5, atol=1e-10), (grads, fd)

    # Large kappa: w is 1 - O(1/kappa), so difference the quantile of y = 1 - w instead,
    # y = -ln(u + (1 - u) e^{-2 kappa}) / kappa, with u = F(w) from y (no e^{kappa w}).
    for kappa in (1e4, 1e6, 1e8):
        k = torch.tensor([kappa], dtype=torch.float64, requires_grad=True)
        mu = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
        z = D.VonMisesFisher(mu, k).rsample(6)[:, 0]
        grads = [torch.autograd.grad(wi, k, retain_graph=True)[0].item() for wi in z[:, 0]]
        y = _one_minus_w(z, mu[0])
        u = np.exp(-kappa * y) * np.expm1(-kappa * (2 - y)) / np.expm1(-2 * kappa)
        y_of = lambda kap: -np.log(u + (1 - u) * np.exp(-2 * kap)) / kap  # noqa: E731
        h = 1e-5 * kappa
        fd = -(y_of(kappa + h) - y_of(kappa - h)) / (2 * h)  # dw/dkappa = -dy/dkappa
        assert np.allclose(grads, fd, rtol=1e-5, atol=0), (kappa, grads, fd)

    m, kappa = 16, 7.0
    log_c = lambda k: D.log_vmf_normaliser(m, torch.tensor(k, dtype=torch.float64)).item()  # noqa: E731

    def cdf(x, k):
        dens = lambda t: math.exp(log_c(k) + k * t + D.log_sphere_area(m - 1)  # noqa: E731
                                  + 0.5 * (m - 3) * math.log1p(-t * t))
        return quad(dens, -1, x, epsabs=1e-13, epsrel=1e-12)[0]

    k = torch.tensor([kappa], dtype=torch.float64, requires_grad=True)
    mu = torch.zeros(1, m, dtype=torch.float64)
    mu[0, 0] = 1
    w = D.VonMisesFisher(mu, k).rsample(4)[:, 0, 0]
    for wi in w:
        grad = torch.autograd.grad(wi, k, retain_graph=True)[0].item()
        u = cdf(wi.item(), kappa)
        h = 1e-4
        fd = (brentq(lambda x: cdf(x, kappa + h) - u, -1, 1, xtol=1e-14)
              - brentq(lambda x: cdf(x, kappa - h) - u, -1, 1, xtol=1e-14)) / (2 * h)
        assert grad == pytest.approx(fd, rel=1e-4), (wi, grad, fd)


@pytest.mark.parametrize("m", [3, 64])
def test_vmf_gradients_are_unbiased(m):
    """d/dkappa E[mu^T z] = A'(kappa) and d/dmu E[a^T z] = A(kappa) a (before normalisation):
    Monte Carlo means of the reparameterised gradients against the exact derivatives."""
    torch.manual_seed(3)
    n = 20000
    for kappa in (0.5, 10.0, 200.0):
        k = torch.tensor([kappa], dtype=torch.float64, requires_grad=True)
        raw = torch.randn(1, m, dtype=torch.float64, requires_grad=True)
        mu = raw / raw.norm()
        a_vec = torch.randn(m, dtype=torch.float64)
        z = D.VonMisesFisher(mu, k).rsample(n)[:, 0]  # (n, m)
        w = z @ mu[0].detach()
        per_sample_k = torch.autograd.grad(w.sum(), k, retain_graph=True)[0] / n
        a = D.bessel_ratio(0.5 * m - 1, k.detach())
        exact_k = 1 - a ** 2 - (m - 1) / kappa * a  # A'(kappa)
        sd = (1 - a ** 2).sqrt() / math.sqrt(n)  # a generous scale for the MC error of the mean
        assert (per_sample_k - exact_k).abs() < 5 * sd + 1e-9, (kappa, per_sample_k, exact_k)
        (g_raw,) = torch.autograd.grad((z @ a_vec).mean(), raw, retain_graph=True)
        (exact_raw,) = torch.autograd.grad(a.item() * (mu @ a_vec).sum(), raw)
        assert torch.allclose(g_raw, exact_raw, atol=6 * (1 / math.sqrt(n)) * a_vec.norm().item()
                              / raw.norm().item()), (g_raw, exact_raw)


def test_vmf_is_finite_with_finite_gradients_everywhere_in_float32_and_float64():
    for dtype in (torch.float32, torch.float64):
        for m in (2, 3, 16, 64, 256):
            torch.manual_seed(0)
            kappa = torch.tensor([1e-3, 0.1, 1.0, 10.0, 1e3, 1e4, 1e6, 1e8], dtype=dtype,
                                 requires_grad=True)
            raw = torch.randn(8, m, dtype=dtype, requires_grad=True)
            q = D.VonMisesFisher(raw / raw.norm(dim=1, keepdim=True), kappa)
            z = q.rsample(3)
            total = q.log_prob(z).sum() + q.kl_uniform().sum() + q.entropy().sum() + z.sum()
            kg, rg = torch.autograd.grad(total, (kappa, raw))
            for t in (z, q.log_prob(z), q.kl_uniform(), kg, rg):
                assert torch.isfinite(t).all() and t.dtype == dtype, (m, dtype)


def test_vmf_same_seed_same_samples():
    q = _vmf(16, [0.5, 20.0])
    torch.manual_seed(5)
    a = q.rsample(100)
    torch.manual_seed(5)
    assert torch.equal(a, q.rsample(100))


@pytest.mark.parametrize("mu, kappa, match", [
    (torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([0.0]), "kappa must be finite and > 0"),
    (torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([-2.0]), "kappa must be finite and > 0"),
    (torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([float("nan")]), "kappa must be finite and > 0"),
    (torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([float("inf")]), "kappa must be finite and > 0"),
    (torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([1.0]), "mu must have rows of unit norm"),
    (torch.tensor([[1.0]]), torch.tensor([1.0]), "has dimension 0"),
    (torch.tensor([1.0, 0.0]), torch.tensor([1.0]), r"mu must be a \(B, m\) tensor"),
    (torch.tensor([[1.0, 0.0]]), torch.tensor([1.0, 2.0]), "kappa must have shape"),
    (torch.tensor([[1.0, 0.0]]), 1.0, "kappa must be a torch.Tensor"),
])
def test_vmf_bad_input_is_named(mu, kappa, match):
    with pytest.raises((ValueError, TypeError), match=match):
        D.VonMisesFisher(mu, kappa)


def test_vmf_other_bad_input_is_named():
    q = _vmf(3, [1.0])
    with pytest.raises(ValueError, match="z must have shape"):
        q.log_prob(torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        q.rsample(0)
    with pytest.raises(ValueError, match="m must be an integer >= 2"):
        D.kl_vmf_uniform(1, torch.tensor([1.0]))
    with pytest.raises(ValueError, match="has dimension 0"):
        D.sample_sphere_uniform(5, 1)

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from intro_dgm.models import PPCA


@pytest.fixture
def toy():
    g = torch.Generator().manual_seed(1)
    W = torch.randn(3, 1, generator=g, dtype=torch.float64)
    b = torch.randn(3, generator=g, dtype=torch.float64)
    return PPCA(1).set_params(W, b, 0.3), g


def test_marginal_matches_monte_carlo(toy):
    model, g = toy
    x = model.sample(5, generator=g)
    exact = model.log_prob(x)
    mc = model.log_prob_monte_carlo(x, 200_000, generator=g)
    assert torch.allclose(mc, exact, atol=0.02)


def test_posterior_matches_bayes_rule_on_a_grid(toy):
    model, g = toy
    x = model.sample(1, generator=g)
    z = torch.linspace(-8, 8, 20001, dtype=torch.float64).unsqueeze(1)
    log_joint = model.log_px_given_z(x, z) - 0.5 * z[:, 0] ** 2 - 0.5 * np.log(2 * np.pi)
    dz = z[1, 0] - z[0, 0]
    post = torch.exp(log_joint - torch.logsumexp(log_joint, 0)) / dz  # Bayes' rule, normalised
    mean_grid = (post * z[:, 0]).sum() * dz
    var_grid = (post * (z[:, 0] - mean_grid) ** 2).sum() * dz
    mean, cov = model.posterior(x)
    assert torch.allclose(mean[0, 0], mean_grid, atol=1e-6)
    assert torch.allclose(cov[0, 0], var_grid, atol=1e-6)
    # and the evidence of Bayes' rule is the closed-form marginal
    assert torch.allclose(torch.logsumexp(log_joint, 0) + torch.log(dz), model.log_prob(x)[0], atol=1e-6)


def test_fit_matches_scikit_learn(digits):
    X = digits.train.double()
    for L in (2, 10):
        ours = PPCA(L).fit(X, ddof=1).log_prob(digits.test)
        ref = PCA(n_components=L, svd_solver="full").fit(X.numpy()).score_samples(digits.test.double().numpy())
        assert np.allclose(ours.numpy(), ref, rtol=1e-8, atol=1e-6)


def test_maximum_likelihood_beats_other_parameters(digits):
    X = digits.train.double()
    ml = PPCA(5).fit(X)
    ll_ml = ml.log_prob(X).mean()
    assert ll_ml > PPCA(5).fit(X, ddof=1).log_prob(X).mean()
    W, b, s2 = ml.W, ml.b, ml.sigma2
    for W2, b2, s22 in [(1.1 * W, b, s2), (W, b + 0.1, s2), (W, b, 1.2 * s2)]:
        assert ll_ml > PPCA(5).set_params(W2, b2, s22).log_prob(X).mean()


def test_kl_gap_identity_is_exact(toy):
    model, g = toy
    x = model.sample(4, generator=g)
    post_mean, post_cov = model.posterior(x)
    # an arbitrary Gaussian q: ELBO + KL(q || p(z|x)) must equal ln p(x) exactly
    from intro_dgm.distributions import kl_normal_full
    q_mean, q_cov = post_mean + 0.7, torch.tensor([[0.5]], dtype=torch.float64)
    gap = kl_normal_full(q_mean, q_cov.expand(4, 1, 1), post_mean, post_cov.expand(4, 1, 1))
    assert (gap > 0.01).all()
    assert torch.allclose(model.elbo(x, q_mean, q_cov) + gap, model.log_prob(x), atol=1e-10)
    # and q = the true posterior closes the gap
    assert torch.allclose(model.elbo(x, post_mean, post_cov), model.log_prob(x), atol=1e-10)


def test_sample_moments_match_marginal(toy):
    model, g = toy
    x = model.sample(200_000, generator=g)
    assert torch.allclose(x.mean(0), model.b, atol=0.02)
    assert torch.allclose(torch.cov(x.T), model.marginal_cov(), atol=0.03)


@pytest.mark.parametrize("bad, err", [(0, ValueError), (-3, ValueError), (2.5, TypeError)])
def test_bad_latent_dim(bad, err):
    with pytest.raises(err, match="latent_dim"):
        PPCA(bad)


def test_bad_data():
    X = torch.randn(10, 4)
    with pytest.raises(ValueError, match="X contains NaN"):
        PPCA(1).fit(torch.where(X > 1, float("nan"), X))
    with pytest.raises(ValueError, match=r"X must have shape \(N, D\)"):
        PPCA(1).fit(torch.randn(10))
    with pytest.raises(ValueError, match="latent_dim must be < D"):
        PPCA(4).fit(X)
    with pytest.raises(RuntimeError, match="call fit"):
        PPCA(1).log_prob(X)
    with pytest.raises(ValueError, match="D=4 columns"):
        PPCA(1).fit(X).log_prob(torch.randn(3, 5))

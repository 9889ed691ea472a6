"""Single-latent diagnostics: the aggregated posterior, the ELBO's terms, holes, density grids."""
import math

import matplotlib.pyplot as plt
import pytest
import torch
import torch.distributions as td

from intro_dgm.analysis import (aggregated_posterior, density_integral, elbo_decomposition,
                                hole_mass, log_density_grid, prior_picture)
from intro_dgm.distributions import kl_normal_diag
from intro_dgm.evaluation import elbo
from intro_dgm.models import VAEConfig, build_vae
from intro_dgm.priors import AggregatedPosterior, MoGPrior, StandardPrior


def _mog():
    torch.manual_seed(0)
    prior = MoGPrior(2, num_components=5, init_std=2.0)
    with torch.no_grad():
        prior.log_vars.copy_(torch.randn(5, 2) * 0.5 + 0.7)
        prior.weight_logits.copy_(torch.randn(5))
    return prior


def test_aggregated_posterior_is_the_average_of_the_encoders_gaussians(small_vae, digits):
    x = digits.train[:300]
    agg = aggregated_posterior(small_vae, x)
    q = small_vae.posterior(x)
    z = torch.randn(20, 4)
    per_point = td.Independent(td.Normal(q.mu_e, torch.exp(0.5 * q.log_var_e)), 1).log_prob(z[:, None])
    expected = torch.logsumexp(per_point, dim=1) - math.log(300)  # weights 1/N, N data points
    assert torch.allclose(agg.log_prob(z), expected, atol=1e-4)
    with pytest.raises(ValueError, match="same shape"):
        AggregatedPosterior(q.mu_e, q.log_var_e[:, :2])


def test_elbo_terms_add_up(small_vae, digits):
    x = digits.train[:400]
    torch.manual_seed(0)
    terms = elbo_decomposition(small_vae, x, samples=64)
    # The terms against the ELBO computed independently by the model (closed-form KL).
    torch.manual_seed(1)
    reference = torch.stack([elbo(small_vae, x) for _ in range(64)]).mean().item()
    assert terms["elbo"] == pytest.approx(reference, abs=0.05)
    # Standard prior: cross-entropy minus conditional entropy is the average closed-form KL.
    q = small_vae.posterior(x)
    mean_kl = kl_normal_diag(q.mu_e, q.log_var_e).mean().item()
    assert terms["cross_entropy"] - terms["cond_entropy"] == pytest.approx(mean_kl, abs=0.05)
    # KL = I(x; z) + KL[q(z) || p(z)], with 0 <= I <= ln N.
    assert 0 <= terms["mutual_info"] <= math.log(400)
    assert terms["kl_marginal"] >= 0
    assert terms["mutual_info"] + terms["kl_marginal"] == pytest.approx(mean_kl, abs=0.05)


def test_hole_mass(small_vae, digits):
    agg = aggregated_posterior(small_vae, digits.train[:300])
    torch.manual_seed(0)
    assert hole_mass(agg, agg) == 0.0  # q(z) / q(z) = 1 is never below 0.1
    far = MoGPrior(4, num_components=1)
    with torch.no_grad():
        far.means.fill_(50.0)
    assert hole_mass(far, agg) == 1.0
    # Half of a two-component prior sits far from every code: half its mass is a hole.
    half = MoGPrior(4, num_components=2, learn_weights=False)
    with torch.no_grad():
        half.means[0].zero_()
        half.means[1].fill_(50.0)
    torch.manual_seed(0)
    assert hole_mass(half, agg, n=40_000) == pytest.approx(0.5, abs=0.02)
    with pytest.raises(ValueError, match="ratio"):
        hole_mass(agg, agg, ratio=0.0)


def test_prior_coverage_agrees_with_hole_mass(small_vae, digits):
    from intro_dgm.analysis import prior_coverage

    agg = aggregated_posterior(small_vae, digits.train[:300])
    half = MoGPrior(4, num_components=2, learn_weights=False)
    with torch.no_grad():
        half.means[0].zero_()
        half.means[1].fill_(50.0)
    torch.manual_seed(0)
    cover = prior_coverage(half, agg, n=40_000, ratios=(0.1, 1e-300))
    torch.manual_seed(0)
    assert cover["below"][0.1] == hole_mass(half, agg, n=40_000)
    assert cover["below"][0.1] == pytest.approx(0.5, abs=0.02)
    assert cover["min_ratio"] == 0.0  # far from every code, q(z) underflows
    same = prior_coverage(agg, agg, n=1000)
    assert same["min_ratio"] == pytest.approx(1.0) and same["below"][0.1] == 0.0


def test_median_nearest_distance():
    from intro_dgm.analysis import median_nearest_distance

    grid = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    assert median_nearest_distance(grid, grid, exclude_self=True) == 1.0  # 1, 1, 2
    assert median_nearest_distance(grid, grid) == 0.0
    assert median_nearest_distance(torch.tensor([[0.0, 2.0]]), grid) == 2.0
    with pytest.raises(ValueError, match="reference set itself"):
        median_nearest_distance(grid[:2], grid, exclude_self=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_hole_mass_of_a_prior_on_the_gpu(small_vae, digits):
    agg = aggregated_posterior(small_vae, digits.train[:300])      # on the CPU, with the model
    on_gpu = AggregatedPosterior(agg.mu_e, agg.log_var_e).cuda()   # the same density, as a prior
    assert hole_mass(on_gpu, agg) == 0.0


def test_density_integral_and_grid():
    assert density_integral(StandardPrior(2), lim=8.0) == pytest.approx(1.0, abs=1e-4)
    far = MoGPrior(2, num_components=1)
    with torch.no_grad():
        far.means.fill_(30.0)
    assert density_integral(far, lim=8.0) < 1e-6  # its mass lies outside the square
    axis, log_p = log_density_grid(_mog(), lim=3.0, n=50)
    point = torch.tensor([[axis[7], axis[31]]])  # log_p[i, j] is at z = (axis[j], axis[i])
    assert log_p[31, 7].item() == pytest.approx(_mog().log_prob(point).item(), abs=1e-5)
    with pytest.raises(ValueError, match="latent_dim"):
        log_density_grid(StandardPrior(3))


def test_diagnostics_keep_the_training_mode_and_need_a_gaussian_posterior(digits):
    torch.manual_seed(0)
    model = build_vae(VAEConfig(latent_dim=2, hidden=(8,))).train()
    elbo_decomposition(model, digits.train[:50], samples=2)
    aggregated_posterior(model, digits.train[:50])
    fig_density, fig_samples = prior_picture(model, digits.test[:30], num_samples=9, vmax=16)
    plt.close(fig_density), plt.close(fig_samples)
    assert model.training

    class _NotGaussian:
        pass

    model.posterior = lambda x: _NotGaussian()
    with pytest.raises(TypeError, match="diagonal-Gaussian posterior"):
        aggregated_posterior(model, digits.train[:5])

"""The priors: densities that integrate to one, samplers that agree with them, and each of
the companion code's mistakes written down as a test that would catch it."""
import math

import pytest
import torch
import torch.distributions as td

from intro_dgm.distributions import kl_normal_diag
from intro_dgm.evaluation import (density_integral, elbo, elbo_decomposition, hole_mass,
                                  log_density_grid)
from intro_dgm.flows import AffineCoupling, realnvp
from intro_dgm.models import VAEConfig, build_vae
from intro_dgm.priors import (PRIORS, AggregatedPosterior, FlowPrior, GTMPrior, GTMVampPrior, MixturePrior, MoGPrior,
                              StandardPrior, VampPrior, make_prior)


def _randomise(module, std=0.3, seed=0):
    """Random, non-identity parameters (a flow at its zero initialisation is the identity,
    where a wrong log-determinant would go unnoticed)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(std * torch.randn(p.shape, generator=g) + (p if p.dim() == 1 else 0))
    return module


def _encoder(latent_dim=2, input_dim=64, seed=0):
    torch.manual_seed(seed)
    return build_vae(VAEConfig(input_dim=input_dim, latent_dim=latent_dim, hidden=(32,))).encoder


def _mog(L=2, seed=0):
    torch.manual_seed(seed)
    prior = MoGPrior(L, num_components=5, init_std=2.0)
    with torch.no_grad():
        prior.log_vars.copy_(torch.randn(5, L) * 0.5 + 0.7)  # variances far from 1: e^0.7 != e^1.4
        prior.weight_logits.copy_(torch.randn(5))
    return prior


def _flow(L=2):
    torch.manual_seed(0)
    return _randomise(FlowPrior(L, num_layers=4, hidden=16))


# Each factory gives a 2-D prior with random, non-trivial parameters.
FACTORIES = {
    "standard": lambda: StandardPrior(2),
    "mog": _mog,
    "vampprior": lambda: VampPrior(_encoder(), 64, num_components=6, learn_weights=True,
                                   input_range=(0.0, 16.0)),
    "gtm": lambda: _randomise(GTMPrior(2, num_components=9, hidden=16), std=0.5),
    "gtm-vampprior": lambda: GTMVampPrior(_encoder(), 64, num_components=9, hidden=16,
                                          input_range=(0.0, 16.0)),
    "flow": _flow,
}


def _grid(lim=12.0, n=1201):
    axis = torch.linspace(-lim, lim, n, dtype=torch.float64)
    return torch.cartesian_prod(axis, axis), (axis[1] - axis[0]).item() ** 2


def test_every_registered_prior_is_tested():
    assert set(FACTORIES) == set(PRIORS)


@pytest.mark.parametrize("name", FACTORIES)
def test_density_integrates_to_one_and_samples_match_it(name):
    prior = FACTORIES[name]()
    grid, cell = _grid()
    with torch.no_grad():
        p = prior.log_prob(grid.float()).double().exp() * cell
    assert p.sum().item() == pytest.approx(1.0, abs=2e-3)
    # Moments on the grid against moments of 200k samples.
    mean_grid = (p[:, None] * grid).sum(0)
    centred = grid - mean_grid
    cov_grid = (p[:, None, None] * centred[:, :, None] * centred[:, None, :]).sum(0)
    torch.manual_seed(1)
    with torch.no_grad():
        z = prior.sample(200_000).double()
    assert z.shape == (200_000, 2)
    scale = cov_grid.diagonal().sqrt()
    assert torch.allclose(z.mean(0), mean_grid, atol=0.02 * scale.max().item() + 1e-3)
    assert torch.allclose(torch.cov(z.T), cov_grid, rtol=0.03, atol=0.03 * scale.max().item() ** 2)


def test_mog_equals_mixture_same_family_in_many_dimensions():
    prior = _mog(L=6)
    reference = td.MixtureSameFamily(
        td.Categorical(logits=prior.weight_logits),
        td.Independent(td.Normal(prior.means, torch.exp(0.5 * prior.log_vars)), 1))
    z = torch.randn(100, 6) * 2
    assert torch.allclose(prior.log_prob(z), reference.log_prob(z), atol=1e-5)
    # The companion code's mistake -- logsumexp over components per dimension, then a sum
    # over dimensions -- is the product of 6 one-dimensional mixtures: another density.
    log_w = prior.log_weights()[None, :, None]
    per_dim = td.Normal(prior.means[None], torch.exp(0.5 * prior.log_vars[None])).log_prob(z[:, None])
    product_of_1d_mixtures = torch.logsumexp(log_w + per_dim, dim=1).sum(-1)
    assert (product_of_1d_mixtures - prior.log_prob(z)).abs().max() > 1.0


def test_sampling_uses_the_standard_deviation_not_the_variance():
    prior = MoGPrior(1, num_components=1, learn_weights=False)
    with torch.no_grad():
        prior.means.zero_()
        prior.log_vars.fill_(math.log(4.0))  # variance 4, standard deviation 2
    torch.manual_seed(0)
    z = prior.sample(100_000)
    # exp(log_var) used as the standard deviation would give a standard deviation of 4.
    assert z.std().item() == pytest.approx(2.0, rel=0.02)


def test_sampling_is_vectorised(monkeypatch):
    prior = VampPrior(_encoder(), 64, num_components=16, input_range=(0.0, 16.0))
    calls = []
    original = prior.components
    monkeypatch.setattr(prior, "components", lambda: calls.append(1) or original())
    z = prior.sample(10_000)
    # One pass through the encoder for all rows, not one per row.
    assert z.shape == (10_000, 2) and len(calls) == 1


def test_vampprior_is_the_mixture_of_the_encoders_gaussians_at_the_pseudo_inputs():
    encoder = _encoder(latent_dim=5)
    prior = VampPrior(encoder, 64, num_components=7, input_range=(0.0, 16.0))
    mu, log_var = encoder(prior.pseudo_inputs)
    # Uniform weights are 1/K with K the number of pseudo-inputs.
    assert torch.allclose(prior.log_weights().exp(), torch.full((7,), 1 / 7))
    reference = td.MixtureSameFamily(td.Categorical(probs=torch.full((7,), 1 / 7)),
                                     td.Independent(td.Normal(mu, torch.exp(0.5 * log_var)), 1))
    z = torch.randn(50, 5)
    assert torch.allclose(prior.log_prob(z), reference.log_prob(z), atol=1e-5)


def test_vampprior_data_initialisation_is_used_and_checked():
    data = torch.randint(0, 17, (40, 64)).float()
    torch.manual_seed(0)
    prior = VampPrior(_encoder(), 64, num_components=8, init="data", data=data)
    # Every pseudo-input is one of the training rows (and they are distinct rows).
    matches = (prior.pseudo_inputs[:, None, :] == data[None]).all(-1)
    assert matches.any(1).all() and matches.float().argmax(1).unique().numel() == 8
    with pytest.raises(ValueError, match="data"):
        VampPrior(_encoder(), 64, num_components=8, init="data")
    with pytest.raises(ValueError, match="data"):
        VampPrior(_encoder(), 64, num_components=8, init="data", data=data[:, :10])
    with pytest.raises(ValueError, match="num_components"):
        VampPrior(_encoder(), 64, num_components=80, init="data", data=data)
    with pytest.raises(ValueError, match="init='data'"):
        VampPrior(_encoder(), 64, num_components=8, data=data)  # would be silently ignored
    with pytest.raises(ValueError, match="init"):
        VampPrior(_encoder(), 64, num_components=8, init="kmeans")


def test_build_vae_passes_data_to_the_prior_and_refuses_unused_data():
    data = torch.randint(0, 17, (40, 64)).float()
    config = VAEConfig(latent_dim=2, hidden=(8,), prior="vampprior",
                       prior_kwargs={"num_components": 4, "init": "data"})
    model = build_vae(config, data=data)
    assert (model.prior.pseudo_inputs[:, None, :] == data[None]).all(-1).any(1).all()
    with pytest.raises(ValueError, match="data"):
        build_vae(config)
    with pytest.raises(ValueError, match="data"):
        build_vae(VAEConfig(latent_dim=2, hidden=(8,)), data=data)


def test_coupling_log_det_equals_autograd_jacobian_and_inverts():
    torch.manual_seed(0)
    flow = _randomise(realnvp(4, num_layers=3, hidden=8), std=0.5)
    z = torch.randn(6, 4)
    z_new, log_det = flow(z)
    for i in range(z.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], z[i])
        assert log_det[i].item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-4)
    assert log_det.abs().min() > 1e-2  # the parameters are not at the identity
    assert torch.allclose(flow.inverse(z_new), z, atol=1e-5)


def test_flow_prior_adds_the_log_det_once_per_example():
    prior = _flow(L=5)
    z = torch.randn(10, 5)
    u, log_det = prior.flow(z)
    expected = td.Normal(0.0, 1.0).log_prob(u).sum(-1) + log_det
    assert torch.allclose(prior.log_prob(z), expected, atol=1e-5)
    with pytest.raises(ValueError, match="latent_dim"):
        FlowPrior(1)
    with pytest.raises(ValueError, match="parity"):
        AffineCoupling(4, parity=2)


@pytest.mark.parametrize("name, reach", [
    ("mog", ["prior.means", "prior.log_vars", "prior.weight_logits"]),
    ("vampprior", ["prior.pseudo_inputs"]),
    ("gtm", ["prior.net.0.weight", "prior.net.2.weight"]),
    ("gtm-vampprior", ["prior.net.0.weight", "prior.net.2.weight"]),
    ("flow", [f"prior.flow.steps.{i}.net.0.weight" for i in range(4)]),
])
def test_gradients_reach_the_prior(name, reach, digits):
    torch.manual_seed(0)
    kwargs = {"learn_weights": True} if name == "mog" else {}
    model = build_vae(VAEConfig(latent_dim=2, hidden=(16,), prior=name, prior_kwargs=kwargs))
    if name == "flow":
        _randomise(model.prior)
    model.loss(digits.train[:32])["loss"].mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for n in reach:
        assert grads[n] is not None and grads[n].abs().sum() > 0, n


def test_mixture_log_prob_in_chunks_equals_one_pass():
    prior = _mog(L=3)
    z = torch.randn(3000, 3)
    whole = prior.log_prob(z)
    MixturePrior.chunk_elements, saved = 1000, MixturePrior.chunk_elements
    try:
        assert torch.allclose(prior.log_prob(z), whole)
    finally:
        MixturePrior.chunk_elements = saved


@pytest.mark.parametrize("make, match", [
    (lambda: StandardPrior(2).log_prob(torch.zeros(3, 4)), "z"),
    (lambda: MoGPrior(2).log_prob(torch.zeros(3)), "z"),
    (lambda: MoGPrior(2, num_components=0), "num_components"),
    (lambda: MoGPrior(0), "latent_dim"),
    (lambda: MoGPrior(2, num_components=2, weights=torch.tensor([0.3, 0.3])), "weights"),
    (lambda: GTMPrior(2, num_components=10), "num_components"),
    (lambda: MoGPrior(2).sample(0), "n"),
    (lambda: make_prior("gaussian", 2), "prior"),
    (lambda: make_prior("vampprior", 2), "encoder"),
])
def test_bad_input_is_named(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_aggregated_posterior_is_the_average_of_the_encoders_gaussians(small_vae, digits):
    x = digits.train[:300]
    agg = AggregatedPosterior.from_encoder(small_vae.encoder, x)
    mu, log_var = small_vae.encoder(x)
    z = torch.randn(20, 4)
    per_point = td.Independent(td.Normal(mu, torch.exp(0.5 * log_var)), 1).log_prob(z[:, None])
    expected = torch.logsumexp(per_point, dim=1) - math.log(300)  # weights 1/N, N data points
    assert torch.allclose(agg.log_prob(z), expected, atol=1e-4)
    with pytest.raises(ValueError, match="same shape"):
        AggregatedPosterior(mu, log_var[:, :2])


def test_elbo_terms_add_up(small_vae, digits):
    x = digits.train[:400]
    torch.manual_seed(0)
    terms = elbo_decomposition(small_vae, x, samples=64)
    # The terms against the ELBO computed independently by the model (closed-form KL).
    torch.manual_seed(1)
    reference = torch.stack([elbo(small_vae, x) for _ in range(64)]).mean().item()
    assert terms["elbo"] == pytest.approx(reference, abs=0.05)
    # Standard prior: cross-entropy minus conditional entropy is the average closed-form KL.
    mu, log_var = small_vae.encoder(x)
    mean_kl = kl_normal_diag(mu, log_var).mean().item()
    assert terms["cross_entropy"] - terms["cond_entropy"] == pytest.approx(mean_kl, abs=0.05)
    # KL = I(x; z) + KL[q(z) || p(z)], with 0 <= I <= ln N.
    assert 0 <= terms["mutual_info"] <= math.log(400)
    assert terms["kl_marginal"] >= 0
    assert terms["mutual_info"] + terms["kl_marginal"] == pytest.approx(mean_kl, abs=0.05)


def test_hole_mass(small_vae, digits):
    agg = AggregatedPosterior.from_encoder(small_vae.encoder, digits.train[:300])
    torch.manual_seed(0)
    assert hole_mass(agg, agg) == 0.0  # q(z) / q(z) = 1 is never below 0.1
    far = MoGPrior(4, num_components=1)
    with torch.no_grad():
        far.means.fill_(50.0)
    assert hole_mass(far, agg) == 1.0
    with pytest.raises(ValueError, match="ratio"):
        hole_mass(agg, agg, ratio=0.0)


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


def test_sample_scorer_tells_digits_from_noise(digits):
    from intro_dgm.data import load_digits_labels
    from intro_dgm.evaluation import SampleScorer

    labels = load_digits_labels()
    assert labels["train"].shape == (1000,) and labels["test"].shape == (447,)
    scorer = SampleScorer(digits.train, labels["train"])
    real = scorer(digits.test)
    torch.manual_seed(0)
    noise = scorer(torch.randint(0, 17, (447, 64)).float())
    blends = scorer(0.5 * (digits.test[:200] + digits.test[200:400]))
    assert real["confidence"] > 0.8 and real["confidence"] > blends["confidence"] + 0.1
    assert real["class_entropy"] == pytest.approx(math.log(10), abs=0.05)  # all ten classes
    ones = digits.test[labels["test"] == 1]
    assert scorer(ones)["class_entropy"] < 1.0  # mostly one class; ln 10 = 2.30 for all ten
    assert noise["confidence"] < blends["confidence"] < real["confidence"]
    with pytest.raises(ValueError, match="labels"):
        SampleScorer(digits.train, labels["val"])

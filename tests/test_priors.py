"""The priors: densities that integrate to one, samplers that agree with them, and each of
the companion code's mistakes written down as a test that would catch it."""
import math

import pytest
import torch
import torch.distributions as td

from intro_dgm.models import VAEConfig, build_vae
from intro_dgm.priors import (FlowPrior, GTMPrior, GTMVampPrior, MixturePrior, MoGPrior,
                              StandardPrior, VampPrior, make_prior)

from helpers import randomise as _randomise


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


def _grid(lim=12.0, n=1201):
    axis = torch.linspace(-lim, lim, n, dtype=torch.float64)
    return torch.cartesian_prod(axis, axis), (axis[1] - axis[0]).item() ** 2


def test_uniform_sphere_prior():
    from intro_dgm.distributions import log_sphere_area
    from intro_dgm.priors import UniformSphere

    torch.manual_seed(0)
    for L in (2, 3, 16):
        prior = UniformSphere(L)
        z = prior.sample(20000)
        assert torch.allclose(z.norm(dim=1), torch.ones(20000), atol=1e-5)
        assert z.mean(0).abs().max() < 4 / math.sqrt(20000)  # centred: E[z] = 0
        # isotropic: E[z z^T] = I / L
        assert torch.allclose(z.T @ z / 20000, torch.eye(L) / L, atol=4 / math.sqrt(20000))
        assert torch.allclose(prior.log_prob(z[:5]), torch.full((5,), -log_sphere_area(L)))
    assert log_sphere_area(3) == pytest.approx(math.log(4 * math.pi))
    with pytest.raises(ValueError, match="latent_dim must be >= 2 for a sphere"):
        UniformSphere(1)
    with pytest.raises(ValueError, match="z must"):
        UniformSphere(3).log_prob(torch.zeros(4, 2))


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
    q = encoder(prior.pseudo_inputs)
    mu, log_var = q.mu_e, q.log_var_e
    # Uniform weights are 1/K with K the number of pseudo-inputs.
    assert torch.allclose(prior.log_weights().exp(), torch.full((7,), 1 / 7))
    reference = td.MixtureSameFamily(td.Categorical(probs=torch.full((7,), 1 / 7)),
                                     td.Independent(td.Normal(mu, torch.exp(0.5 * log_var)), 1))
    z = torch.randn(50, 5)
    assert torch.allclose(prior.log_prob(z), reference.log_prob(z), atol=1e-5)


def test_vampprior_data_initialisation_is_used_and_checked():
    data = torch.randint(0, 17, (40, 64)).float()
    torch.manual_seed(0)
    prior = VampPrior(_encoder(), 64, num_components=8, init="data")
    with pytest.raises(RuntimeError, match="initialise_from_data"):
        prior.log_prob(torch.zeros(2, 2))  # the placeholder is never used silently
    prior.initialise_from_data(data)
    # Every pseudo-input is one of the training rows (and they are distinct rows).
    matches = (prior.pseudo_inputs[:, None, :] == data[None]).all(-1)
    assert matches.any(1).all() and matches.float().argmax(1).unique().numel() == 8
    assert torch.isfinite(prior.log_prob(torch.zeros(2, 2))).all()
    with pytest.raises(ValueError, match="x must have size 64"):
        VampPrior(_encoder(), 64, num_components=8, init="data").initialise_from_data(data[:, :10])
    with pytest.raises(ValueError, match="num_components"):
        VampPrior(_encoder(), 64, num_components=80, init="data").initialise_from_data(data)
    with pytest.raises(ValueError, match="init"):
        VampPrior(_encoder(), 64, num_components=8, init="kmeans")
    # a randomly initialised prior has nothing to take from the data
    random = VampPrior(_encoder(), 64, num_components=8, input_range=(0, 16))
    before = random.pseudo_inputs.detach().clone()
    random.initialise_from_data(data)
    assert torch.equal(random.pseudo_inputs, before)


def test_flow_prior_is_the_change_of_variables():
    # ln p(z) = ln N(f(z); 0, I) + ln|det df/dz|, with the determinant by autograd: an
    # independent computation of what FlowPrior.log_prob adds up.
    prior = _flow(L=3)
    z = torch.randn(6, 3)
    for i in range(6):
        jac = torch.autograd.functional.jacobian(lambda v: prior.flow(v[None])[0][0], z[i])
        u = prior.flow(z[i:i + 1])[0]
        expected = td.Normal(0.0, 1.0).log_prob(u).sum() + torch.linalg.slogdet(jac)[1]
        assert prior.log_prob(z[i:i + 1]).item() == pytest.approx(expected.item(), abs=1e-4)
    with pytest.raises(ValueError, match="latent_dim must be >= 2"):
        FlowPrior(1)


_GTM_FAMILY = {
    "gtm": lambda learn: _randomise(GTMPrior(2, num_components=9, hidden=16, learn_weights=learn),
                                    std=0.5),
    "gtm-vampprior": lambda learn: GTMVampPrior(_encoder(), 64, num_components=9, hidden=16,
                                                input_range=(0.0, 16.0), learn_weights=learn),
}


@pytest.mark.parametrize("name", _GTM_FAMILY)
def test_gtm_weights_are_uniform_by_default_and_learned_when_asked(name):
    # Default: w_k = 1/K, a buffer that no gradient reaches (the original GTM).
    fixed = _GTM_FAMILY[name](False)
    assert "weight_logits" not in dict(fixed.named_parameters())
    assert torch.allclose(fixed.log_weights().exp(), torch.full((9,), 1 / 9))
    (-fixed.log_prob(torch.randn(64, 2)).mean()).backward()
    assert fixed.weight_logits.grad is None and not fixed.weight_logits.requires_grad
    # learn_weights=True: the source's GTM, weights trained as a softmax of free logits.
    learned = _GTM_FAMILY[name](True)
    assert "weight_logits" in dict(learned.named_parameters())
    (-learned.log_prob(torch.randn(64, 2)).mean()).backward()
    assert learned.weight_logits.grad is not None and learned.weight_logits.grad.abs().sum() > 0
    # Far from uniform, the weights still give a density that integrates to one, and it is
    # the mixture with weight w_k on component k (weights paired with the wrong components
    # would still integrate to one, so compare with MixtureSameFamily, as for the MoG).
    with torch.no_grad():
        learned.weight_logits.copy_(2 * torch.randn(9, generator=torch.Generator().manual_seed(3)))
        assert learned.log_weights().exp().max() > 3 / 9
        grid, cell = _grid()
        total = (learned.log_prob(grid.float()).double().exp() * cell).sum().item()
        mu, log_var = learned.components()
        reference = td.MixtureSameFamily(td.Categorical(logits=learned.log_weights()),
                                         td.Independent(td.Normal(mu, torch.exp(0.5 * log_var)), 1))
        z = 2 * torch.randn(200, 2, generator=torch.Generator().manual_seed(4))
        assert torch.allclose(learned.log_prob(z), reference.log_prob(z), atol=1e-5)
        # the same weights on the components in reverse order: a different density
        flipped = td.MixtureSameFamily(td.Categorical(logits=learned.log_weights().flip(0)),
                                      td.Independent(td.Normal(mu, torch.exp(0.5 * log_var)), 1))
        assert (flipped.log_prob(z) - learned.log_prob(z)).abs().max() > 0.1
    assert total == pytest.approx(1.0, abs=2e-3)


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
    (lambda: StandardPrior(2).log_prob(torch.zeros(3, 4)), "z must have size 2 in its last dimension"),
    (lambda: MoGPrior(2).log_prob(torch.zeros(3)), "z must have 2 dimensions"),
    (lambda: MoGPrior(2, num_components=0), "num_components"),
    (lambda: MoGPrior(0), "latent_dim"),
    (lambda: MoGPrior(2, num_components=2, weights=torch.tensor([0.3, 0.3])), "weights"),
    (lambda: GTMPrior(2, num_components=10), "num_components"),
    (lambda: MoGPrior(2).sample(0), "n must be an integer >= 1"),
    (lambda: make_prior("gaussian", 2), "^prior must be one of standard, mog, .*; got 'gaussian'$"),
    (lambda: make_prior("vampprior", 2), "encoder"),
    # Built directly, a pseudo-input prior must be told the range of the data.
    (lambda: VampPrior(_encoder(), 64), "input_range is required"),
    (lambda: GTMVampPrior(_encoder(), 64, num_components=4), "input_range is required"),
    (lambda: VampPrior(_encoder(), 64, input_range=(16, 0)), "low < high"),
])
def test_bad_input_is_named(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()

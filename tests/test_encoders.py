"""Encoders: every posterior family builds, trains end to end and keeps the contracts."""
import pytest
import torch

from intro_dgm.encoders import POSTERIORS, FlowEncoder, GaussianEncoder, make_encoder
from intro_dgm.evaluation import elbo, iwae_log_likelihood
from intro_dgm.models import VAEConfig, build_vae
from intro_dgm.posteriors import (DiagonalGaussian, FlowPosterior, HouseholderPosterior,
                                  VonMisesFisherPosterior)

OPTIONS = {"gaussian": {}, "householder": {"num_steps": 3},
           "sylvester-orthogonal": {"num_steps": 2, "num_ortho": 2},
           "sylvester-householder": {"num_steps": 2, "num_householder": 3},
           "sylvester-triangular": {"num_steps": 3}, "vmf": {}}
#: the posterior family each name returns, and whether its KL to the prior is closed-form
FAMILY = {name: (FlowPosterior, False) for name in OPTIONS}
FAMILY.update(gaussian=(DiagonalGaussian, True), vmf=(VonMisesFisherPosterior, True),
              householder=(HouseholderPosterior, True))  # a rotated Gaussian: the base's KL


def _model(posterior, seed=0):
    torch.manual_seed(seed)
    prior = "uniform-sphere" if posterior == "vmf" else "standard"
    return build_vae(VAEConfig(latent_dim=4, hidden=(32,), posterior=posterior, prior=prior,
                               posterior_kwargs=OPTIONS[posterior]))


def test_every_posterior_family_is_tested():
    assert set(OPTIONS) == set(POSTERIORS)


@pytest.mark.parametrize("posterior", OPTIONS)
def test_every_parameter_gets_a_gradient(posterior, digits):
    model = _model(posterior)
    model.loss(digits.train[:64])["loss"].mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("posterior", OPTIONS)
def test_loss_and_importance_weights(posterior, digits):
    model = _model(posterior)
    q = model.posterior(digits.train[:8])
    family, analytic = FAMILY[posterior]
    assert type(q) is family
    assert model.kl_is_analytic is analytic  # other flow posteriors' KLs are estimated
    out = model.loss(digits.train[:8])
    assert set(out) == {"loss", "elbo", "rec", "kl"} and torch.isfinite(out["loss"]).all()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # weights far from initialisation: a posterior far from the prior
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    x = digits.test[:30]
    torch.manual_seed(0)
    elbos = torch.stack([elbo(model, x) for _ in range(50)]).flatten()
    torch.manual_seed(1)
    ones = iwae_log_likelihood(model, x.repeat(50, 1), k=1)
    # S = 1 is the ELBO: the two averages agree within their Monte Carlo error.
    mean_elbo = elbos.mean().item()
    error = ((elbos.var() + ones.var()) / elbos.numel()).sqrt().item()
    assert abs(ones.mean().item() - mean_elbo) < 4 * error
    bounds = []
    for k in (10, 100, 400):
        torch.manual_seed(1)
        bounds.append(iwae_log_likelihood(model, x, k=k).mean().item())
    # The bound grows with k in expectation; once converged (k = 100 vs 400) two estimates
    # may differ by Monte Carlo noise of a few thousandths of a nat.
    assert mean_elbo < bounds[0] < bounds[1] + 0.01 and bounds[1] < bounds[2] + 0.01, (
        mean_elbo, bounds)


@pytest.mark.parametrize("posterior", [p for p in OPTIONS if p.startswith("sylvester")])
def test_every_output_row_of_the_sylvester_heads_is_used(posterior, digits):
    """Only the upper triangles of R, R~ are produced: no weight row without a gradient."""
    model = _model(posterior)
    model.loss(digits.train[:64])["loss"].mean().backward()
    for head in model.encoder.heads:
        assert (head.weight.grad.abs().sum(1) > 0).all()


def test_householder_vectors_follow_the_paper():
    model = _model("householder")
    enc = model.encoder
    assert isinstance(enc, FlowEncoder) and len(enc.steps) == 3
    h = torch.randn(5, 32)
    vs = enc.flow_params(h)
    assert torch.allclose(vs[0], enc.v_maps[0](h))  # v_1 from the last hidden layer
    assert torch.allclose(vs[2], enc.v_maps[2](vs[1]))  # v_t = W_t v_{t-1}
    # Householder steps preserve volume: log q(z_T) = log q(z_0) along a sample.
    q = model.posterior(torch.zeros(5, 64))
    torch.manual_seed(3)
    z, log_q = q.rsample()
    torch.manual_seed(3)
    _, log_q0 = q.base.rsample()
    assert torch.allclose(log_q, log_q0, atol=1e-5)


def test_vmf_encoder_outputs_unit_directions_and_positive_concentrations(digits):
    model = _model("vmf")
    q = model.posterior(digits.train[:16])
    assert torch.allclose(q.mean.norm(dim=1), torch.ones(16), atol=1e-6)
    assert (q.vmf.kappa > 0).all()
    z, log_q = q.rsample(5)
    assert z.shape == (5, 16, 4) and torch.allclose(z.norm(dim=-1), torch.ones(5, 16), atol=1e-5)
    # the closed-form KL is the average of ln q - ln p over samples
    z, log_q = q.rsample(4000)
    mc = (log_q - model.prior.log_prob(z.reshape(-1, 4)).view(4000, 16)).mean(0)
    kl = model.loss(digits.train[:16])["kl"]
    assert torch.allclose(mc, kl, atol=0.05), (mc, kl)
    # generated images come from the sphere
    assert model.prior.sample(3).norm(dim=1).sub(1).abs().max() < 1e-6


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="^posterior must be one of gaussian, householder, .*; got 'planar'$"):
        VAEConfig(posterior="planar")
    with pytest.raises(ValueError, match="does not take the option.s. num_ortho; it takes num_steps"):
        build_vae(VAEConfig(posterior="householder", posterior_kwargs={"num_ortho": 2}))
    with pytest.raises(ValueError, match="num_ortho must be <= latent_dim"):
        build_vae(VAEConfig(latent_dim=2, posterior="sylvester-orthogonal",
                            posterior_kwargs={"num_ortho": 3}))
    with pytest.raises(ValueError, match="at least one hidden layer"):
        make_encoder("householder", torch.nn.Identity(), 64, (), 2)
    assert isinstance(make_encoder("gaussian", torch.nn.Identity(), 64, (8,), 2), GaussianEncoder)

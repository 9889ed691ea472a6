"""The contracts of intro_dgm.models.base, checked on every registered name.

One small configuration per registered model (a new model without one fails
``test_every_registered_model_is_checked``), and each part on its own property: every prior,
posterior family, decoder and flow step. These are the checks a model or part must pass to be
swapped in; the per-model test files check what is particular to each.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from intro_dgm.checkpoints import load_model, save_checkpoint
from intro_dgm.decoders import DECODERS, make_decoder
from intro_dgm.distributions import log_sphere_area, log_standard_normal
from intro_dgm.encoders import POSTERIORS, make_encoder
from intro_dgm.evaluation import elbo, iwae_log_likelihood
from intro_dgm.flows import FlowStep, FlowSequence
from intro_dgm.models import (MODELS, GenerativeModel, LatentVariableModel, build_model,
                              config_from_dict, register_model)
from intro_dgm.models.base import INTERFACE
from intro_dgm.priors import PRIORS, make_prior

from helpers import randomise

#: (registered model, config) pairs: small, and covering the data-initialised VampPrior.
CASES = {
    "vae": ("vae", {"latent_dim": 2, "hidden": [16]}),
    "vae-vampprior-data": ("vae", {"latent_dim": 2, "hidden": [16], "prior": "vampprior",
                                   "prior_kwargs": {"num_components": 4, "init": "data"}}),
    "vae-householder": ("vae", {"latent_dim": 3, "hidden": [16], "posterior": "householder"}),
    "two-level": ("two-level", {"latent_dim": 3, "top_latent_dim": 2, "hidden": [16],
                                "top_hidden": [8]}),
    "top-down": ("top-down", {"latent_dim": 3, "top_latent_dim": 2, "hidden": [16],
                              "top_hidden": [8]}),
    "top-down-vampprior-data": ("top-down", {
        "latent_dim": 3, "top_latent_dim": 2, "hidden": [16], "top_hidden": [8],
        "prior": "vampprior", "decoder_uses_top": True,
        "prior_kwargs": {"num_components": 4, "init": "data"}}),
    "ddgm": ("ddgm", {"steps": 3, "hidden": [16], "embedding_dim": 8,
                      "data_term": "categorical"}),
    "ddgm-per-step": ("ddgm", {"steps": 3, "hidden": [16], "shared": False}),
    "realnvp": ("realnvp", {"couplings": 2, "coupling_hidden": 16}),
    "vdm": ("vdm", {"steps": 3, "hidden": [16], "embedding_dim": 8}),
    "vdm-fixed-decoder": ("vdm", {"steps": 3, "hidden": [16], "embedding_dim": 8,
                                  "data_term": "fixed", "schedule_shape": "sine"}),
}


def _model(case: str, digits) -> GenerativeModel:
    name, config = CASES[case]
    torch.manual_seed(0)
    model = build_model(name, config)
    model.initialise_from_data(digits.train)
    return model


def test_every_registered_model_is_checked():
    assert {name for name, _ in CASES.values()} == set(MODELS)
    for entry in MODELS.values():
        assert issubclass(entry.model, GenerativeModel)


@pytest.mark.parametrize("case", CASES)
def test_keys_and_shapes(case, digits):
    model, x = _model(case, digits), digits.train[:8]
    terms = model.loss(x)
    assert {"loss", "elbo"} <= set(terms)
    bound = model.bound(x)
    assert {"elbo", "rec", "kl"} <= set(bound) and "loss" not in bound
    for value in [*terms.values(), *bound.values()]:
        assert value.shape == (8,) and torch.isfinite(value).all()
    assert model.log_weights(x, 5).shape == (8, 5)
    assert model.sample(6).shape == (6, 64) and model.sample(6, mean=True).shape == (6, 64)
    assert model.reconstruct(x).shape == (8, 64)
    assert set(model.kl_groups) <= set(bound)
    if isinstance(model, LatentVariableModel):
        means = model.posterior_means(x)
        assert means and all(m.shape[0] == 8 for m in means.values())


@pytest.mark.parametrize("case", CASES)
def test_every_parameter_learns(case, digits):
    """Every parameter receives a gradient (a plain list where an nn.ModuleList was needed
    would not) and an optimiser step changes it. Two steps: a part initialised to the
    identity (RealNVP's zero scales) passes gradient to the layers behind it only once it
    has moved."""
    model, x = _model(case, digits), digits.train[:64]
    start = [p.detach().clone() for p in model.parameters()]
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    learned = set()
    for _ in range(2):
        optimiser.zero_grad()
        model.loss(x)["loss"].mean().backward()
        learned |= {n for n, p in model.named_parameters()
                    if p.grad is not None and p.grad.abs().sum() > 0}
        optimiser.step()
    assert learned == {n for n, _ in model.named_parameters()}
    unchanged = [n for (n, p), b in zip(model.named_parameters(), start) if torch.equal(p, b)]
    assert not unchanged


@pytest.mark.parametrize("case", CASES)
def test_the_terms_add_up(case, digits):
    model, x = _model(case, digits), digits.train[:8]
    for terms in (model.loss(x), model.bound(x)):
        assert torch.allclose(terms["elbo"], terms["rec"] - terms["kl"], atol=1e-4)
        parts = [v for k, v in terms.items() if k.startswith("kl_")]
        if parts:  # per-level (or per-part) KLs add up to the KL
            assert torch.allclose(sum(parts), terms["kl"], atol=1e-4)


@pytest.mark.parametrize("case", CASES)
def test_the_iw_bound_is_above_the_elbo_and_rises_with_k(case, digits):
    """Over independent draws, the mean IW bound exceeds the mean ELBO and rises from S = 1
    to 10 to 100 by more than its standard error (the model is untrained: q is far from the
    posterior, so the gains are large)."""
    model, x = _model(case, digits).eval(), digits.train[:8]
    torch.manual_seed(1)
    draws = 12
    elbos = torch.stack([elbo(model, x).mean() for _ in range(draws)])
    iw = {k: torch.stack([iwae_log_likelihood(model, x, k=k).mean() for _ in range(draws)])
          for k in (1, 10, 100)}

    def above(a, b):
        se = math.sqrt(a.var().item() / draws + b.var().item() / draws)
        return a.mean().item() - b.mean().item() > se

    assert above(iw[100], elbos)
    assert above(iw[10], iw[1]) and above(iw[100], iw[10])


@pytest.mark.parametrize("case", CASES)
def test_save_and_load_give_identical_outputs(case, digits, tmp_path):
    name, fields = CASES[case]
    model, x = _model(case, digits).eval(), digits.train[:8]
    save_checkpoint(tmp_path, name, config_from_dict(name, fields), model)
    loaded = load_model(tmp_path)
    assert not loaded.training and type(loaded) is type(model)
    for (key, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), key
    outputs = []
    for m in (model, loaded):
        torch.manual_seed(2)
        outputs.append((m.bound(x), m.log_weights(x, 3), m.sample(4), m.reconstruct(x)))
    (bound_a, *rest_a), (bound_b, *rest_b) = outputs
    assert all(torch.equal(bound_a[k], bound_b[k]) for k in bound_a)
    assert all(torch.equal(a, b) for a, b in zip(rest_a, rest_b))


def test_registration_refuses_a_model_that_does_not_implement_the_interface():
    import dataclasses

    @dataclasses.dataclass
    class Config:
        size: int = 1

    class NoBound(GenerativeModel):
        def loss(self, x, beta=1.0): ...
        def log_weights(self, x, k): ...
        def sample(self, n, mean=False): ...
        def reconstruct(self, x): ...

    with pytest.raises(TypeError, match="NoBound does not implement bound"):
        register_model("no-bound", Config, lambda c: NoBound(), NoBound)
    with pytest.raises(TypeError, match="must be a subclass of"):
        register_model("plain", Config, lambda c: nn.Linear(1, 1), nn.Linear)
    assert "no-bound" not in MODELS and "plain" not in MODELS
    assert set(INTERFACE) <= set(GenerativeModel.__abstractmethods__)


# ------------------------------------------------------------------ the parts
def _encoder(latent_dim=2, posterior="gaussian", **options):
    torch.manual_seed(0)
    return make_encoder(posterior, nn.Identity(), 6, (16,), latent_dim, **options)


PRIOR_OPTIONS = {"vampprior": {"input_range": (0.0, 1.0), "num_components": 4},
                 "gtm-vampprior": {"input_range": (0.0, 1.0), "num_components": 4},
                 "gtm": {"num_components": 9, "hidden": 16}, "mog": {"num_components": 3},
                 "flow": {"num_layers": 4, "hidden": 16}}


def _prior(name):
    """A 2-D prior with random, non-trivial parameters (a flow prior at its identity start
    would be the standard Gaussian, and test nothing of its own)."""
    torch.manual_seed(0)
    prior = make_prior(name, 2, encoder=_encoder(), input_dim=6, **PRIOR_OPTIONS.get(name, {}))
    return randomise(prior, std=0.5 if name == "gtm" else 0.3) if name in ("mog", "gtm", "flow") else prior


@pytest.mark.parametrize("name", PRIORS)
def test_a_prior_is_a_normalised_density_that_its_samples_follow(name):
    """In 2-D: the density integrates to 1 on its support, and the mean and covariance of
    200,000 samples match those of the density on a grid (a sampler that used the variance
    as a standard deviation, or a density that was a product of per-dimension mixtures,
    fails)."""
    prior = _prior(name)
    torch.manual_seed(1)
    with torch.no_grad():
        z = prior.sample(200_000).double()
        assert z.shape == (200_000, 2) and torch.isfinite(prior.log_prob(z[:1000].float())).all()
        if name == "uniform-sphere":  # S^1: integrate over the circle; samples on it
            angle = torch.linspace(0, 2 * math.pi, 2001)[:-1]
            circle = torch.stack([angle.cos(), angle.sin()], 1)
            assert prior.log_prob(circle).exp().mean().item() * 2 * math.pi == \
                pytest.approx(1.0, abs=1e-5)
            assert torch.allclose(z.norm(dim=1), torch.ones(200_000, dtype=z.dtype), atol=1e-5)
            grid, p = circle.double(), torch.full((2000,), 1 / 2000, dtype=torch.float64)
        else:  # a grid over [-12, 12]^2 holds all but a negligible part of the mass
            axis = torch.linspace(-12, 12, 1201, dtype=torch.float64)
            grid = torch.cartesian_prod(axis, axis)
            p = prior.log_prob(grid.float()).double().exp() * (24 / 1200) ** 2
            assert p.sum().item() == pytest.approx(1.0, abs=2e-3)
    mean = (p[:, None] * grid).sum(0)
    centred = grid - mean
    cov = (p[:, None, None] * centred[:, :, None] * centred[:, None, :]).sum(0)
    scale = cov.diagonal().sqrt().max().item()
    assert torch.allclose(z.mean(0), mean, atol=0.02 * scale + 1e-3)
    assert torch.allclose(torch.cov(z.T), cov, rtol=0.03, atol=0.03 * scale ** 2)


@pytest.mark.parametrize("name", POSTERIORS)
def test_a_posterior_family_gives_normalised_log_densities(name):
    r""":math:`\mathbb E_q[p(z)/q(z)] = 1` for any normalised density p: the ``log_q`` that
    ``rsample`` returns (base density minus the flow's log-determinants) is the log-density of
    the samples it returns, whatever the family."""
    latent_dim = 3
    encoder = _encoder(latent_dim, name)
    x = torch.rand(4, 6)
    with torch.no_grad():
        z, log_q = encoder(x).rsample(40_000)
    assert z.shape == (40_000, 4, latent_dim) and log_q.shape == (40_000, 4)
    if name == "vmf":  # the uniform density on the sphere S^2
        log_p = torch.full_like(log_q, -log_sphere_area(latent_dim))
    else:
        log_p = log_standard_normal(z)
    ratio = (log_p - log_q).double().exp()
    se = ratio.std(0) / math.sqrt(ratio.shape[0])
    assert ((ratio.mean(0) - 1).abs() < 5 * se + 1e-3).all()


@pytest.mark.parametrize("likelihood", DECODERS)
def test_a_decoder_is_a_normalised_distribution_over_observations(likelihood):
    torch.manual_seed(0)
    z = torch.randn(3, 2)
    if likelihood == "gaussian":  # a density over one real coordinate: integrate on a grid
        decoder = make_decoder(likelihood, 2, (8,), 1, 0)
        x = torch.linspace(-30, 30, 6001)[:, None]
        log_p = torch.stack([decoder.log_prob(x, zi.expand(len(x), 2)) for zi in z])
        total = log_p.exp().sum(1) * (60 / 6000)
    else:  # every observation of two pixels, enumerated
        num_vals = 2 if likelihood == "bernoulli" else 4
        decoder = make_decoder(likelihood, 2, (8,), 2, num_vals)
        values = torch.arange(num_vals, dtype=torch.float32)
        x = torch.cartesian_prod(values, values)
        log_p = torch.stack([decoder.log_prob(x, zi.expand(len(x), 2)) for zi in z])
        total = log_p.exp().sum(1)
        decoder.validate(decoder.sample(z))  # its samples are valid observations
    assert torch.allclose(total, torch.ones(3), atol=1e-3)


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _flow_cases():
    """Every FlowStep subclass with a small instance and its per-example params."""
    from intro_dgm.flows import AffineCoupling, Householder, Sylvester

    torch.manual_seed(0)
    D, B = 4, 3
    eye_ish = lambda m: torch.randn(B, m, m) * 0.5
    sylvester = {"r": eye_ish(D), "r_tilde": eye_ish(D), "b": torch.randn(B, D)}
    cases = {
        AffineCoupling: [(AffineCoupling(D, 8, parity=p), None) for p in (0, 1)],
        FlowSequence: [(FlowSequence([AffineCoupling(D, 8, parity=0),
                                      AffineCoupling(D, 8, parity=1)]), None)],
        Householder: [(Householder(D), torch.randn(B, D))],
        Sylvester: [(Sylvester(D, "orthogonal"), {**sylvester, "q": torch.randn(B, D, D)}),
                    (Sylvester(D, "householder"), {**sylvester, "q": torch.randn(B, 2, D)}),
                    (Sylvester(D, "triangular", reverse=True), sylvester)],
    }
    return cases, D, B


def test_every_flow_step_is_checked():
    """Every FlowStep subclass of the package (there is no flow-step registry: they are
    found as subclasses; test files' own toy steps are left out)."""
    cases, _, _ = _flow_cases()
    package = {c for c in _subclasses(FlowStep) if c.__module__.startswith("intro_dgm.")}
    assert package and package <= set(cases)


@pytest.mark.parametrize("kind", ["AffineCoupling", "FlowSequence", "Householder", "Sylvester"])
def test_a_flow_step_has_the_log_det_of_its_jacobian_and_inverts(kind):
    cases, D, B = _flow_cases()
    for step, params in next(v for k, v in cases.items() if k.__name__ == kind):
        with torch.no_grad():  # global steps get non-identity parameters
            for p in step.parameters():
                p.normal_(0, 0.3)
        z = torch.randn(B, D)
        z_new, log_det = step(z, params)
        assert log_det.shape == (B,) and not torch.allclose(z_new, z)  # not the identity
        for i in range(B):
            row = lambda v, i=i: step(v[None], _row(params, i))[0][0]
            J = torch.autograd.functional.jacobian(row, z[i])
            assert log_det[i].item() == pytest.approx(torch.linalg.slogdet(J)[1].item(),
                                                      abs=1e-4)
        try:
            back = step.inverse(z_new, params)
        except NotImplementedError:
            continue  # (Sylvester: no closed-form inverse)
        assert torch.allclose(back, z, atol=1e-4)


def _row(params, i):
    if params is None:
        return None
    if isinstance(params, dict):
        return {k: v[i:i + 1] for k, v in params.items()}
    return params[i:i + 1]

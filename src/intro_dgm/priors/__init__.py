"""Priors p_lambda(z) over the latent space; every public name is importable from here.

Every prior is an ``nn.Module`` with

* ``sample(n) -> (n, L)``, vectorised (no Python loop over rows);
* ``log_prob(z) -> (B,)`` for ``z`` of shape ``(B, L)``.

That is all: a prior knows nothing of the posterior. Where a posterior family and a prior
have a closed-form KL (a diagonal Gaussian against ``StandardPrior``), it is registered in
:mod:`intro_dgm.posteriors` and the model uses it; otherwise the model estimates the KL by
Monte Carlo.

A prior takes its device from its own parameters or buffers, so ``prior.to(device)`` is all
a caller does. ``VAE(encoder, decoder, prior)`` accepts any of them.

Modules: ``base`` (:class:`Prior`, the standard Gaussian, the uniform sphere), ``mixtures``
(:class:`MixturePrior`, the MoG, the GTM, the aggregated posterior), ``pseudo_inputs`` (the
VampPrior and GTM-VampPrior, built on the encoder), ``flow`` (:class:`FlowPrior`); here,
:data:`PRIORS` and :func:`make_prior`, the priors by name.
"""
from __future__ import annotations

from torch import nn

from ..utils import Registry
from .base import Prior, StandardPrior, UniformSphere
from .flow import FlowPrior
from .mixtures import AggregatedPosterior, GTMPrior, MixturePrior, MoGPrior
from .pseudo_inputs import GTMVampPrior, VampPrior, initial_pseudo_inputs

__all__ = ["PRIORS", "AggregatedPosterior", "FlowPrior", "GTMPrior", "GTMVampPrior",
           "MixturePrior", "MoGPrior", "Prior", "StandardPrior", "UniformSphere", "VampPrior",
           "initial_pseudo_inputs", "make_prior"]

#: The priors by name (a model config's ``prior``, the CLI's ``--prior``).
PRIORS = Registry("prior", {"standard": StandardPrior, "mog": MoGPrior, "vampprior": VampPrior,
                            "gtm": GTMPrior, "gtm-vampprior": GTMVampPrior, "flow": FlowPrior,
                            "uniform-sphere": UniformSphere})


def make_prior(name: str, latent_dim: int, encoder: nn.Module | None = None,
               input_dim: int | None = None, **kwargs) -> Prior:
    """A prior by name (the CLI's ``--prior``): one of ``PRIORS``.

    Priors built on the encoder (VampPrior, GTM-VampPrior) need ``encoder`` and
    ``input_dim``; their ``latent_dim`` is the encoder's.
    """
    cls = PRIORS.lookup(name)
    if cls.uses_encoder:
        if encoder is None or input_dim is None:
            raise ValueError(f"prior {name!r} is built on the encoder: pass encoder and input_dim")
        if encoder.latent_dim != latent_dim:
            raise ValueError(f"latent_dim ({latent_dim}) must equal encoder.latent_dim "
                             f"({encoder.latent_dim})")
        return cls(encoder, input_dim, **kwargs)
    return cls(latent_dim, **kwargs)

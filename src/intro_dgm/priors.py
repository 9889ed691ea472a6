"""Priors p_lambda(z) over the latent space.

Every prior is an ``nn.Module`` with

* ``sample(n) -> (n, L)``, vectorised (no Python loop over rows);
* ``log_prob(z) -> (B,)`` for ``z`` of shape ``(B, L)``;
* ``kl(z, mu_e, log_var_e) -> (B,)``: the per-example KL term of the ELBO,
  ``ln q(z|x) - ln p(z)``, estimated at the sample ``z`` by default; a prior with a
  closed form (the standard Gaussian) overrides it with the exact expectation.

A prior takes its device from its own parameters or buffers, so ``prior.to(device)`` is all
a caller does. ``VAE(encoder, decoder, prior)`` accepts any of them.
"""
from __future__ import annotations

import torch
from torch import nn

from .distributions import kl_normal_diag, log_normal_diag, log_standard_normal
from .utils import check_int, check_tensor, module_device


class Prior(nn.Module):
    """Base class: validates arguments, then calls ``_log_prob`` / ``_sample``."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = check_int(latent_dim, "latent_dim", minimum=1)

    @property
    def device(self) -> torch.device:
        return module_device(self)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``ln p(z)`` for ``z`` of shape ``(B, L)``; returns ``(B,)``."""
        check_tensor(z, "z", ndim=2, last_dim=self.latent_dim)
        return self._log_prob(z)

    def sample(self, n: int) -> torch.Tensor:
        """``n`` samples ``(n, L)`` on the prior's device."""
        check_int(n, "n", minimum=1)
        return self._sample(n)

    def kl(self, z: torch.Tensor, mu_e: torch.Tensor, log_var_e: torch.Tensor) -> torch.Tensor:
        r"""Single-sample estimate of :math:`\mathrm{KL}[q(z|x)\|p(z)]` at ``z ~ q(z|x)``."""
        return log_normal_diag(z, mu_e, log_var_e) - self._log_prob(z)

    def _log_prob(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _sample(self, n: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class StandardPrior(Prior):
    r"""The standard Gaussian :math:`p(z) = \mathcal{N}(z \mid 0, I)`."""

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        # An empty buffer only so that the prior follows .to(device) like every module.
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)

    def _log_prob(self, z):
        return log_standard_normal(z)

    def _sample(self, n):
        return torch.randn(n, self.latent_dim, device=self._anchor.device)

    def kl(self, z, mu_e, log_var_e):
        # Closed form: the same expectation as the base class's estimate, without its noise.
        return kl_normal_diag(mu_e, log_var_e)


PRIORS = {"standard": StandardPrior}


def make_prior(name: str, latent_dim: int, **kwargs) -> Prior:
    """A prior by name (the CLI's ``--prior``): one of ``PRIORS``."""
    if name not in PRIORS:
        raise ValueError(f"prior must be one of {', '.join(PRIORS)}; got {name!r}")
    return PRIORS[name](latent_dim, **kwargs)

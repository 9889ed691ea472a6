"""The base class of every prior, :class:`Prior`, and the priors without parameters: the
standard Gaussian and the uniform distribution on the sphere."""
from __future__ import annotations

import torch
from torch import nn

from ..distributions import log_sphere_area, log_standard_normal, sample_sphere_uniform
from ..utils import check_int, check_tensor, module_device


class Prior(nn.Module):
    """Base class: validates arguments, then calls ``_log_prob`` / ``_sample``.

    ``uses_encoder``: built on the model's encoder (:func:`make_prior` passes it);
    ``initialise_from_data(x)``: the step after building for a prior whose starting values
    come from the training data (a no-op here).
    """

    uses_encoder = False

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

    def initialise_from_data(self, x: torch.Tensor) -> None:
        """Set what the training data ``x`` ``(N, D)`` initialises; nothing for this prior."""

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


class UniformSphere(Prior):
    r"""The uniform distribution on the unit sphere :math:`S^{L-1}\subset\mathbb{R}^L`,
    :math:`p(z) = 1/|S^{L-1}|` -- the prior of the hyperspherical VAE (a von Mises-Fisher
    posterior); ``L >= 2``. ``log_prob`` is the constant density: it does not check that
    ``z`` lies on the sphere (a point off it has density 0 under this prior).
    """

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        if latent_dim < 2:
            raise ValueError(f"latent_dim must be >= 2 for a sphere (S^{{L-1}} with L = "
                             f"{latent_dim} has dimension {latent_dim - 1}), got {latent_dim}")
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)

    def _log_prob(self, z):
        return torch.full(z.shape[:-1], -log_sphere_area(self.latent_dim), dtype=z.dtype,
                          device=z.device)

    def _sample(self, n):
        return sample_sphere_uniform(n, self.latent_dim, device=self._anchor.device)

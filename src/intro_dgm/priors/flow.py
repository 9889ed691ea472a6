"""A flow-based prior: RealNVP couplings on a standard Gaussian base."""
from __future__ import annotations

import torch

from ..distributions import log_standard_normal
from ..flows import realnvp
from .base import Prior


class FlowPrior(Prior):
    r"""A flow-based prior: RealNVP couplings :math:`f` on a standard Gaussian base,

    .. math:: \ln p_\lambda(z) = \ln \mathcal{N}\big(f(z) \mid 0, I\big)
              + \ln\left|\det \frac{\partial f(z)}{\partial z}\right| ,

    sampled as :math:`z = f^{-1}(\varepsilon)`, :math:`\varepsilon \sim \mathcal{N}(0, I)`.
    The log-determinant is one number per example (already summed over dimensions).
    """

    def __init__(self, latent_dim: int, num_layers: int = 4, hidden: int = 64):
        super().__init__(latent_dim)
        if latent_dim < 2:
            raise ValueError(f"latent_dim must be >= 2 for a coupling flow, got {latent_dim}")
        self.flow = realnvp(latent_dim, num_layers, hidden)

    def _log_prob(self, z):
        u, log_det = self.flow(z)
        return log_standard_normal(u) + log_det

    def _sample(self, n):
        eps = torch.randn(n, self.latent_dim, device=self.device)
        return self.flow.inverse(eps)

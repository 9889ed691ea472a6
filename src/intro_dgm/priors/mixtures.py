"""Mixtures of diagonal Gaussians: :class:`MixturePrior` (the density and the sampler, written
once) and the mixtures whose components are their own parameters or data -- the MoG, the GTM
(a grid mapped by a network) and the aggregated posterior."""
from __future__ import annotations

import torch
from torch import nn

from ..distributions import log_normal_diag
from ..nets import mlp
from ..utils import check_int, check_tensor
from .base import Prior


class MixturePrior(Prior):
    r"""A mixture of diagonal Gaussians in :math:`L` dimensions,

    .. math:: p(z) = \sum_{k=1}^K w_k\, \mathcal{N}\big(z \mid \mu_k, \mathrm{diag}\,\sigma_k^2\big),

    the common form of the MoG, VampPrior, GTM and GTM-VampPrior priors: each subclass only
    says where its components come from, in ``components()``. The density and the sampler
    are written once, here.
    """

    def __init__(self, latent_dim: int, num_components: int, learn_weights: bool = False,
                 weights: torch.Tensor | None = None):
        super().__init__(latent_dim)
        self.num_components = check_int(num_components, "num_components", minimum=1)
        if weights is None:
            logits = torch.zeros(num_components)  # uniform: w_k = 1/K (K components, not N points)
        else:
            check_tensor(weights, "weights", ndim=1, last_dim=num_components)
            if (weights <= 0).any() or abs(weights.sum().item() - 1.0) > 1e-5:
                raise ValueError("weights must be positive and sum to 1, got "
                                 f"{weights.tolist()}")
            logits = weights.double().log().float()
        self.learn_weights = bool(learn_weights)
        if self.learn_weights:
            self.weight_logits = nn.Parameter(logits)
        else:
            self.register_buffer("weight_logits", logits)

    def log_weights(self) -> torch.Tensor:
        """``ln w`` of shape ``(K,)`` (a softmax of free logits, so the weights sum to 1)."""
        return torch.log_softmax(self.weight_logits, dim=0)

    def components(self) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        """``(mu, log_var)``, each ``(K, L)``."""
        raise NotImplementedError

    #: Rows of ``z`` are taken in chunks so that one chunk holds at most this many
    #: ``(B, K, L)`` elements: a grid of 10^6 points against a 1,000-component aggregated
    #: posterior would otherwise need gigabytes at once.
    chunk_elements = 2 ** 22

    def _log_prob(self, z):
        mu, log_var = self.components()
        log_w = self.log_weights()
        rows = max(1, self.chunk_elements // (mu.shape[0] * mu.shape[1]))
        # log_normal_diag sums over the L dimensions first, giving ln N(z | mu_k, ...) of shape
        # (B, K); only then the logsumexp over k. The other order (logsumexp per dimension,
        # then a sum) would be a product of L one-dimensional mixtures: another density.
        return torch.cat([
            torch.logsumexp(log_w + log_normal_diag(zc[:, None, :], mu[None], log_var[None]), dim=1)
            for zc in z.split(rows)])

    def _sample(self, n):
        mu, log_var = self.components()
        # All n rows at once: a component index per row, then one reparameterised draw.
        k = torch.multinomial(self.log_weights().exp(), n, replacement=True)
        eps = torch.randn(n, self.latent_dim, device=mu.device, dtype=mu.dtype)
        return mu[k] + torch.exp(0.5 * log_var[k]) * eps  # std = exp(log_var / 2)


class MoGPrior(MixturePrior):
    r"""Mixture of Gaussians with learnable means and variances.

    Args:
        latent_dim: ``L``.
        num_components: ``K``.
        learn_weights: train the mixing weights (else they stay at their initial value).
        weights: initial mixing weights ``(K,)``; uniform when omitted.
        init_std: spread of the initial means, drawn from ``N(0, init_std^2 I)``.
    """

    def __init__(self, latent_dim: int, num_components: int = 16, learn_weights: bool = True,
                 weights: torch.Tensor | None = None, init_std: float = 1.0):
        super().__init__(latent_dim, num_components, learn_weights, weights)
        self.means = nn.Parameter(init_std * torch.randn(num_components, latent_dim))
        self.log_vars = nn.Parameter(torch.zeros(num_components, latent_dim))

    def components(self):
        return self.means, self.log_vars


class AggregatedPosterior(MixturePrior):
    r"""The aggregated posterior :math:`q(z) = \frac1N \sum_{n=1}^N q_\phi(z \mid x_n)`:
    a mixture with one component per data point and weights :math:`1/N`.

    It is the prior that maximises the ELBO for a fixed encoder (chapter: rewriting the
    ELBO), and evaluating it costs ``N`` Gaussians per point -- why it is a yardstick here
    and not a practical prior. Built from the encoder's outputs, it holds no parameters;
    :func:`~intro_dgm.analysis.aggregated_posterior` builds it for a trained model.

    Args:
        mu_e: ``(N, L)``, the encoder's means for the ``N`` data points.
        log_var_e: ``(N, L)``, their log-variances.
    """

    def __init__(self, mu_e: torch.Tensor, log_var_e: torch.Tensor):
        check_tensor(mu_e, "mu_e", ndim=2)
        check_tensor(log_var_e, "log_var_e", ndim=2)
        if mu_e.shape != log_var_e.shape:
            raise ValueError(f"mu_e and log_var_e must have the same shape, got "
                             f"{tuple(mu_e.shape)} and {tuple(log_var_e.shape)}")
        super().__init__(mu_e.shape[1], mu_e.shape[0])
        self.register_buffer("mu_e", mu_e.detach().clone())
        self.register_buffer("log_var_e", log_var_e.detach().clone())

    def components(self):
        return self.mu_e, self.log_var_e


def _grid(num_components: int, grid_dim: int) -> torch.Tensor:
    """A regular grid of ``K = side ** grid_dim`` points in ``[-1, 1] ** grid_dim``."""
    check_int(grid_dim, "grid_dim", minimum=1)
    side = round(num_components ** (1.0 / grid_dim))
    if side ** grid_dim != num_components:
        raise ValueError(f"num_components must be a perfect power side**grid_dim for a grid "
                         f"(grid_dim={grid_dim}), e.g. {max(side, 2) ** grid_dim}; "
                         f"got {num_components}")
    axis = torch.linspace(-1.0, 1.0, side)
    return torch.cartesian_prod(*[axis] * grid_dim).reshape(num_components, grid_dim)


class GTMPrior(MixturePrior):
    r"""Generative Topographic Mapping prior (Bishop et al., 1998):

    .. math:: p_\lambda(z) = \frac1K \sum_{k=1}^K \mathcal{N}\big(z \mid \mu_g(\zeta_k), \mathrm{diag}\,\sigma^2_g(\zeta_k)\big),

    a fixed grid :math:`\zeta_1..\zeta_K` in a ``grid_dim``-dimensional space, mapped by a network
    :math:`g` to the components. Neighbouring grid points get neighbouring components.
    The weights are :math:`1/K` by default; with ``learn_weights`` they are trained as the
    source's GTM prior does (a softmax of free logits, like the MoG's).
    """

    def __init__(self, latent_dim: int, num_components: int = 16, grid_dim: int = 2,
                 hidden: int = 64, learn_weights: bool = False):
        super().__init__(latent_dim, num_components, learn_weights)
        self.register_buffer("grid", _grid(num_components, grid_dim))
        self.net = mlp(grid_dim, (check_int(hidden, "hidden", minimum=1),), 2 * latent_dim)

    def components(self):
        mu, log_var = self.net(self.grid).chunk(2, dim=-1)
        return mu, log_var

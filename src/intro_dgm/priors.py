"""Priors p_lambda(z) over the latent space.

Every prior is an ``nn.Module`` with

* ``sample(n) -> (n, L)``, vectorised (no Python loop over rows);
* ``log_prob(z) -> (B,)`` for ``z`` of shape ``(B, L)``.

That is all: a prior knows nothing of the posterior. Where a posterior family and a prior
have a closed-form KL (a diagonal Gaussian against ``StandardPrior``), it is registered in
:mod:`intro_dgm.posteriors` and the model uses it; otherwise the model estimates the KL by
Monte Carlo.

A prior takes its device from its own parameters or buffers, so ``prior.to(device)`` is all
a caller does. ``VAE(encoder, decoder, prior)`` accepts any of them.
"""
from __future__ import annotations

import torch
from torch import nn

from .distributions import (log_normal_diag, log_sphere_area, log_standard_normal,
                            sample_sphere_uniform)
from .flows import realnvp
from .nets import mlp
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


class VampPrior(MixturePrior):
    r"""Variational mixture of posteriors (Tomczak & Welling, 2018):

    .. math:: p_\lambda(z) = \sum_{k=1}^K w_k\, q_\phi(z \mid u_k),

    the encoder's Gaussians at ``K`` learnable pseudo-inputs :math:`u_k` (in data space).
    With ``learn_weights`` the weights are trained too (Alemi et al., 2018); else
    :math:`w_k = 1/K`.

    Args:
        encoder: the VAE's encoder (shared: the prior moves with it during training).
        input_dim: ``D``, the size of a pseudo-input.
        num_components: ``K``.
        learn_weights: train the mixing weights.
        init: ``"random"`` draws the pseudo-inputs uniformly in ``input_range``; ``"data"``
            takes ``K`` distinct rows of ``data`` at random.
        data: ``(N, D)`` training data, required by (and only allowed with) ``init="data"``.
        input_range: ``(low, high)``, the range of the data values (``(0, 16)`` for Digits),
            required by ``init="random"``: a default such as ``(0, 1)`` would give near-blank
            pseudo-inputs on Digits. :func:`~intro_dgm.models.vae.build_vae` sets it from the
            config.
    """

    uses_encoder = True

    def __init__(self, encoder: nn.Module, input_dim: int, num_components: int = 16,
                 learn_weights: bool = False, init: str = "random",
                 data: torch.Tensor | None = None,
                 input_range: tuple[float, float] | None = None):
        super().__init__(encoder.latent_dim, num_components, learn_weights)
        self.encoder = encoder
        self.input_dim = check_int(input_dim, "input_dim", minimum=1)
        self.pseudo_inputs = nn.Parameter(
            initial_pseudo_inputs(init, data, num_components, input_dim, input_range))

    def components(self):
        return _gaussian_components(self.encoder, self.pseudo_inputs)


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


def initial_pseudo_inputs(init: str, data: torch.Tensor | None, num_components: int,
                          input_dim: int, input_range: tuple[float, float] | None
                          ) -> torch.Tensor:
    """``(K, D)`` starting values: uniform in ``input_range``, or ``K`` rows of ``data``."""
    if init == "random":
        if data is not None:
            raise ValueError("data is only used with init='data'; got init='random' and data")
        lo, hi = _check_range(input_range)
        return lo + (hi - lo) * torch.rand(num_components, input_dim)
    if init == "data":
        if data is None:
            raise ValueError("init='data' needs data: a (N, D) tensor of training examples")
        check_tensor(data, "data", ndim=2, last_dim=input_dim)
        if data.shape[0] < num_components:
            raise ValueError(f"data must have at least num_components={num_components} rows "
                             f"for init='data', got {data.shape[0]}")
        rows = torch.randperm(data.shape[0])[:num_components]
        return data[rows].detach().clone().float()
    raise ValueError(f"init must be 'random' or 'data', got {init!r}")


def _check_range(input_range) -> tuple[float, float]:
    """``(low, high)`` as floats with ``low < high``, or a clear error."""
    if input_range is None:
        raise ValueError("input_range is required: (low, high) of the data values, e.g. "
                         "(0, 16) for Digits (build_vae sets it from the config)")
    try:
        lo, hi = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise ValueError(f"input_range must be (low, high), got {input_range!r}") from None
    if not lo < hi:
        raise ValueError(f"input_range must have low < high, got {input_range!r}")
    return lo, hi


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


class GTMVampPrior(MixturePrior):
    r"""GTM-VampPrior: the grid is mapped to pseudo-inputs, then through the encoder,

    .. math:: p_\lambda(z) = \frac1K \sum_{k=1}^K q_\phi\big(z \mid g(\zeta_k)\big).

    ``g`` ends in a sigmoid scaled to ``input_range`` (required: ``(low, high)`` of the data
    values, ``(0, 16)`` for Digits), so the pseudo-inputs stay in the
    range of values the encoder has seen. The weights are :math:`1/K` unless ``learn_weights``.
    """

    uses_encoder = True

    def __init__(self, encoder: nn.Module, input_dim: int, num_components: int = 16,
                 grid_dim: int = 2, hidden: int = 64,
                 input_range: tuple[float, float] | None = None, learn_weights: bool = False):
        super().__init__(encoder.latent_dim, num_components, learn_weights)
        self.encoder = encoder
        self.input_dim = check_int(input_dim, "input_dim", minimum=1)
        self.input_range = _check_range(input_range)
        self.register_buffer("grid", _grid(num_components, grid_dim))
        self.net = mlp(grid_dim, (check_int(hidden, "hidden", minimum=1),), input_dim)

    @property
    def pseudo_inputs(self) -> torch.Tensor:
        lo, hi = self.input_range
        return lo + (hi - lo) * torch.sigmoid(self.net(self.grid))

    def components(self):
        return _gaussian_components(self.encoder, self.pseudo_inputs)


def _gaussian_components(encoder: nn.Module, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, log_var)`` of the encoder's Gaussian posteriors at the pseudo-inputs ``u``."""
    q = encoder(u)
    if not hasattr(q, "log_var_e"):
        raise TypeError("a pseudo-input prior needs an encoder whose posterior is a diagonal "
                        f"Gaussian (mu_e, log_var_e); got {type(q).__name__}")
    return q.mu_e, q.log_var_e


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


#: The priors by name (a model config's ``prior``, the CLI's ``--prior``).
PRIORS = {"standard": StandardPrior, "mog": MoGPrior, "vampprior": VampPrior,
          "gtm": GTMPrior, "gtm-vampprior": GTMVampPrior, "flow": FlowPrior,
          "uniform-sphere": UniformSphere}


def make_prior(name: str, latent_dim: int, encoder: nn.Module | None = None,
               input_dim: int | None = None, **kwargs) -> Prior:
    """A prior by name (the CLI's ``--prior``): one of ``PRIORS``.

    Priors built on the encoder (VampPrior, GTM-VampPrior) need ``encoder`` and
    ``input_dim``; their ``latent_dim`` is the encoder's.
    """
    if name not in PRIORS:
        raise ValueError(f"prior must be one of {', '.join(PRIORS)}; got {name!r}")
    cls = PRIORS[name]
    if getattr(cls, "uses_encoder", False):
        if encoder is None or input_dim is None:
            raise ValueError(f"prior {name!r} is built on the encoder: pass encoder and input_dim")
        if encoder.latent_dim != latent_dim:
            raise ValueError(f"latent_dim ({latent_dim}) must equal encoder.latent_dim "
                             f"({encoder.latent_dim})")
        return cls(encoder, input_dim, **kwargs)
    return cls(latent_dim, **kwargs)

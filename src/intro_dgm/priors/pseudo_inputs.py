"""Priors built on the encoder: mixtures of the encoder's Gaussians at pseudo-inputs, learned
directly (:class:`VampPrior`) or mapped from a grid (:class:`GTMVampPrior`)."""
from __future__ import annotations

import torch
from torch import nn

from ..nets import mlp
from ..utils import check_int, check_tensor
from .mixtures import MixturePrior, _grid


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
            takes ``K`` distinct training rows at random, in :meth:`initialise_from_data`,
            which must then be called before the prior is used (or a trained
            ``state_dict`` loaded).
        input_range: ``(low, high)``, the range of the data values (``(0, 16)`` for Digits),
            required by ``init="random"``: a default such as ``(0, 1)`` would give near-blank
            pseudo-inputs on Digits. :func:`~intro_dgm.models.vae.build_vae` sets it from the
            config.
    """

    uses_encoder = True

    def __init__(self, encoder: nn.Module, input_dim: int, num_components: int = 16,
                 learn_weights: bool = False, init: str = "random",
                 input_range: tuple[float, float] | None = None):
        super().__init__(encoder.latent_dim, num_components, learn_weights)
        self.encoder = encoder
        self.input_dim = check_int(input_dim, "input_dim", minimum=1)
        if init not in ("random", "data"):
            raise ValueError(f"init must be 'random' or 'data', got {init!r}")
        self.init = init
        # init="data": zeros until initialise_from_data (or a loaded state_dict) sets them;
        # no random number is drawn here, so the draw comes where the caller makes it.
        self.awaiting_data = init == "data"
        start = (torch.zeros(num_components, input_dim) if self.awaiting_data else
                 initial_pseudo_inputs(num_components, input_dim, input_range))
        self.pseudo_inputs = nn.Parameter(start)

    def initialise_from_data(self, x: torch.Tensor) -> None:
        """With ``init="data"``: the pseudo-inputs become ``K`` distinct rows of the training
        data ``x`` ``(N, D)``, drawn at random (``torch.randperm``); else nothing."""
        if self.init != "data":
            return
        check_tensor(x, "x", ndim=2, last_dim=self.input_dim)
        if x.shape[0] < self.num_components:
            raise ValueError(f"x must have at least num_components={self.num_components} rows "
                             f"to initialise the pseudo-inputs, got {x.shape[0]}")
        rows = torch.randperm(x.shape[0])[:self.num_components]
        with torch.no_grad():
            self.pseudo_inputs.copy_(x[rows].detach().float())
        self.awaiting_data = False

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.awaiting_data = False  # trained pseudo-inputs replace the placeholder

    def components(self):
        if self.awaiting_data:
            raise RuntimeError("this VampPrior was built with init='data': call "
                               "model.initialise_from_data(train) (or load a trained "
                               "state_dict) before using it")
        return _gaussian_components(self.encoder, self.pseudo_inputs)


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


def initial_pseudo_inputs(num_components: int, input_dim: int,
                          input_range: tuple[float, float] | None) -> torch.Tensor:
    """``(K, D)`` starting values drawn uniformly in ``input_range``."""
    lo, hi = _check_range(input_range)
    return lo + (hi - lo) * torch.rand(num_components, input_dim)


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


def _gaussian_components(encoder: nn.Module, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, log_var)`` of the encoder's Gaussian posteriors at the pseudo-inputs ``u``."""
    q = encoder(u)
    if not hasattr(q, "log_var_e"):
        raise TypeError("a pseudo-input prior needs an encoder whose posterior is a diagonal "
                        f"Gaussian (mu_e, log_var_e); got {type(q).__name__}")
    return q.mu_e, q.log_var_e

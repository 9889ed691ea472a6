r"""A flow model of the pixels themselves (chapter: diffusion models, Table 4.1): RealNVP on
dequantised images, the invertible, bottleneck-free column of the table.

Integer pixels :math:`x \in \{0..V-1\}^D` have probabilities, a flow has densities. Uniform
dequantisation joins them (Theis et al., 2016): with :math:`u \sim U[0,1)^D`,

.. math:: \ln P(x) = \ln \int_{[0,1)^D} p(x + u)\,du \;\ge\; \mathbb E_u \ln p(x + u),

so the flow's mean log-density at :math:`v = x + u` is a lower bound in nats of the data,
comparable with a VAE's ELBO; importance weighting over :math:`u` (proposal :math:`U[0,1)^D`,
log-density 0) tightens it. The flow works on logits: :math:`y = v/V \in [0, 1)`,
:math:`y' = a + (1-2a)y` (``a`` keeps the logit finite), :math:`s = \ln y' - \ln(1-y')`, then
RealNVP's affine couplings :math:`f` to :math:`\mathcal N(0, I)`:

.. math:: \ln p(v) = \ln\mathcal N(f(s); 0, I) + \ln|\det \partial f/\partial s|
          + \textstyle\sum_d \ln\frac{1-2a}{V\,y'_d(1-y'_d)}.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..data import DataFields
from ..decoders import check_pixels
from ..distributions import log_standard_normal
from ..flows import FlowSequence, realnvp
from ..utils import check_config, check_int
from .base import GenerativeModel, follows_device


class RealNVPModel(GenerativeModel):
    """RealNVP on dequantised pixels (see the module docstring).

    Args:
        flow: a :class:`~intro_dgm.flows.FlowSequence` on ``input_dim`` coordinates.
        input_dim: D; num_vals: V; alpha: the logit margin ``a`` in (0, 0.5).
    """

    def __init__(self, flow: FlowSequence, input_dim: int, num_vals: int, alpha: float = 0.05):
        super().__init__()
        self.flow = flow
        self.input_dim = check_int(input_dim, "input_dim", minimum=2)
        self.num_vals = check_int(num_vals, "num_vals", minimum=2)
        if not 0.0 < alpha < 0.5:
            raise ValueError(f"alpha must lie in (0, 0.5), got {alpha!r}")
        self.alpha = float(alpha)

    def _to_logits(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``s`` and ``ln|ds/dv|`` summed over pixels, for ``v`` in ``[0, V)^D``."""
        a = self.alpha
        y = a + (1 - 2 * a) * v / self.num_vals
        s = torch.log(y) - torch.log1p(-y)
        log_det = (math.log((1 - 2 * a) / self.num_vals) - torch.log(y) - torch.log1p(-y)).sum(-1)
        return s, log_det

    def log_density(self, v: torch.Tensor) -> torch.Tensor:
        r""":math:`\ln p(v)` ``(B,)`` for real ``v`` in :math:`[0, V)^D`."""
        s, log_det_logit = self._to_logits(v)
        e, log_det_flow = self.flow(s)
        return log_standard_normal(e) + log_det_flow + log_det_logit

    @follows_device
    def bound(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        r"""``{"elbo", "rec", "kl"}`` ``(B,)``: ``elbo = rec = ln p(x + u)``, one
        :math:`u \sim U[0,1)^D` (the dequantisation bound); ``kl`` is 0: no latent code."""
        check_pixels(x, self.num_vals, self.input_dim)
        rec = self.log_density(x + torch.rand_like(x))
        return {"elbo": rec, "rec": rec, "kl": torch.zeros_like(rec)}

    def loss(self, x: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
        """:meth:`bound`'s terms and ``loss = -elbo`` (no KL, so no ``beta``)."""
        if beta != 1.0:
            raise ValueError("beta (KL warm-up) does not apply to a flow model: it has no KL term")
        terms = self.bound(x)
        return {"loss": -terms["rec"], **terms}

    @follows_device
    def log_weight_terms(self, x: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
        r"""``{"rec": ln p(x + u_s) - ln q(u_s)}`` ``(B, k)`` with :math:`q = U[0,1)^D`
        (log-density 0): the whole log-weight; no latent code, so no ``kl``."""
        check_pixels(x, self.num_vals, self.input_dim)
        check_int(k, "k", minimum=1)
        v = x.unsqueeze(0) + torch.rand(k, *x.shape, device=x.device)
        return {"rec": self.log_density(v.reshape(-1, x.shape[1])).view(k, x.shape[0]).T}

    @torch.no_grad()
    def sample(self, n: int, mean: bool = False) -> torch.Tensor:
        """``n`` images: ``e ~ N(0, I)``, inverted through the flow and the logit, floored to
        pixel values (``mean`` is accepted for the common interface; a flow's sample is its
        own summary)."""
        check_int(n, "n", minimum=1)
        device = next(self.parameters()).device
        s = self.flow.inverse(torch.randn(n, self.input_dim, device=device))
        y = (torch.sigmoid(s) - self.alpha) / (1 - 2 * self.alpha)
        return torch.clamp(torch.floor(y * self.num_vals), 0, self.num_vals - 1)

    @torch.no_grad()
    @follows_device
    def reconstruct(self, x: torch.Tensor, mean: bool = True) -> torch.Tensor:
        """A flow is invertible: forward and back returns ``x`` (up to float error)."""
        s, _ = self._to_logits(x + 0.5)
        e, _ = self.flow(s)
        s_back = self.flow.inverse(e)
        y = (torch.sigmoid(s_back) - self.alpha) / (1 - 2 * self.alpha)
        return torch.clamp(torch.floor(y * self.num_vals), 0, self.num_vals - 1)


@dataclass
class FlowModelConfig(DataFields):
    """Hyperparameters of :func:`build_realnvp` (CLI: ``--model realnvp --couplings 8
    --coupling-hidden 160``): ``couplings`` affine couplings with alternating masks, each
    an MLP with two hidden layers of ``coupling_hidden`` units; ``alpha`` the logit margin;
    ``likelihood`` must be ``categorical`` (integer pixels)."""

    couplings: int = 8
    coupling_hidden: int = 160
    alpha: float = 0.05

    def __post_init__(self):
        if self.likelihood != "categorical":  # first: the data fields' own check would
            # blame num_vals for a likelihood this model does not take at all
            raise ValueError(f"likelihood must be 'categorical' (integer pixels 0..num_vals-1) "
                             f"for the flow model; got {self.likelihood!r}")
        super().__post_init__()  # the data fields
        check_int(self.input_dim, "input_dim", minimum=2)  # a coupling needs two halves
        check_int(self.couplings, "couplings", minimum=1)
        check_int(self.coupling_hidden, "coupling_hidden", minimum=1)
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) \
                or not 0.0 < self.alpha < 0.5:
            raise ValueError(f"alpha must be a number in (0, 0.5), got {self.alpha!r}")



def build_realnvp(config: FlowModelConfig) -> RealNVPModel:
    """RealNVP on dequantised pixels: ``couplings`` couplings of ``coupling_hidden`` units."""
    check_config(config, FlowModelConfig, "build_realnvp's config")
    c = config
    flow = realnvp(c.input_dim, c.couplings, c.coupling_hidden)
    return RealNVPModel(flow, c.input_dim, c.num_vals, c.alpha)

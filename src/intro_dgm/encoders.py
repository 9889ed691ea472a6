r"""Encoders: networks that map a batch ``x`` to a posterior object :math:`q_\phi(z|x)`.

* :class:`GaussianEncoder` -- a diagonal Gaussian (the VAE of the book's chapter 2).
* :class:`HouseholderEncoder` -- a diagonal Gaussian followed by ``T`` Householder
  reflections whose vectors are computed from ``x`` (Tomczak & Welling, 2016).
* :class:`SylvesterEncoder` -- a diagonal Gaussian followed by ``T`` Sylvester steps whose
  matrices are computed from ``x`` (van den Berg et al., 2018): O-, H- or T-SNF.
* :class:`VonMisesFisherEncoder` -- a von Mises-Fisher distribution on the unit sphere (the
  hyperspherical VAE, Davidson et al., 2018; use it with the ``uniform-sphere`` prior).

Every encoder names the family of what it returns in ``posterior_cls`` (which decides
whether the model can use a closed-form KL). :data:`POSTERIORS`, the one list of posterior
families, maps the names a model config uses (``posterior="householder"``) to a builder;
:func:`make_encoder` builds one.
"""
from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .flows import Householder, Sylvester
from .nets import mlp
from .posteriors import (DiagonalGaussian, FlowPosterior, HouseholderPosterior,
                         VonMisesFisherPosterior)
from .utils import Registry, check_int


class GaussianEncoder(nn.Module):
    r"""Amortised posterior :math:`q_\phi(z|x) = \mathcal{N}(z \mid \mu_e(x), \mathrm{diag}\,\sigma_e^2(x))`.

    Args:
        net: maps ``(B, D)`` to ``(B, 2L)``: the first half is ``mu_e``, the second ``log_var_e``.
        latent_dim: ``L``.
    """

    #: the family of the posteriors it returns (decides whether a KL has a closed form)
    posterior_cls = DiagonalGaussian

    def __init__(self, net: nn.Module, latent_dim: int):
        super().__init__()
        self.net = net
        self.latent_dim = check_int(latent_dim, "latent_dim", minimum=1)

    @classmethod
    def from_mlp(cls, input_layer: nn.Module, input_dim: int, hidden: Sequence[int],
                 latent_dim: int) -> "GaussianEncoder":
        """The book's encoder: ``input_layer``, then an MLP ``input_dim -> hidden -> 2L``."""
        return cls(nn.Sequential(input_layer, mlp(input_dim, hidden, 2 * latent_dim)), latent_dim)

    def forward(self, x: torch.Tensor) -> DiagonalGaussian:
        mu_e, log_var_e = self.net(x).chunk(2, dim=-1)
        return DiagonalGaussian(mu_e, log_var_e)


class FlowEncoder(nn.Module):
    """Base of the flow encoders: a body gives features ``h`` ``(B, H)``; a linear head gives
    the base Gaussian's ``mu_e`` and ``log_var_e``; :meth:`flow_params` gives each step's
    per-example parameters from ``h``.

    Args:
        body: maps ``(B, D)`` to the features ``(B, H)`` (the encoder's last hidden layer).
        hidden_dim: ``H``.
        latent_dim: ``L``.
        steps: the flow steps (``T`` of them), applied in order.
    """

    posterior_cls = FlowPosterior

    def __init__(self, body: nn.Module, hidden_dim: int, latent_dim: int, steps):
        super().__init__()
        self.body = body
        self.latent_dim = check_int(latent_dim, "latent_dim", minimum=1)
        self.gaussian = nn.Linear(check_int(hidden_dim, "hidden_dim", minimum=1), 2 * latent_dim)
        self.steps = nn.ModuleList(steps)

    def flow_params(self, h: torch.Tensor) -> list:  # pragma: no cover - abstract
        """One entry per step: that step's parameters for this batch."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> FlowPosterior:
        h = self.body(x)
        mu_e, log_var_e = self.gaussian(h).chunk(2, dim=-1)
        return self.posterior_cls(DiagonalGaussian(mu_e, log_var_e), self.steps,
                                  self.flow_params(h))


class HouseholderEncoder(FlowEncoder):
    r"""``T`` Householder steps with amortised vectors, as in Tomczak & Welling (2016):
    :math:`v_1 = W_1 h(x)` from the encoder's last hidden layer, :math:`v_t = W_t v_{t-1}`.

    Returns a :class:`~intro_dgm.posteriors.HouseholderPosterior`: a full-covariance Gaussian
    whose KL to a standard-normal prior has a closed form (the base Gaussian's), which the VAE
    uses instead of a one-sample estimate.

    Args:
        body, hidden_dim, latent_dim: as :class:`FlowEncoder`.
        num_steps: ``T``.
    """

    posterior_cls = HouseholderPosterior

    def __init__(self, body: nn.Module, hidden_dim: int, latent_dim: int, num_steps: int = 1):
        check_int(num_steps, "num_steps", minimum=1)
        super().__init__(body, hidden_dim, latent_dim,
                         [Householder(latent_dim) for _ in range(num_steps)])
        self.v_maps = nn.ModuleList([nn.Linear(hidden_dim, latent_dim)]
                                    + [nn.Linear(latent_dim, latent_dim)
                                       for _ in range(num_steps - 1)])

    @classmethod
    def from_mlp(cls, input_layer: nn.Module, input_dim: int, hidden: Sequence[int],
                 latent_dim: int, num_steps: int = 1) -> "HouseholderEncoder":
        """The book's MLP body (``hidden`` layers) with ``num_steps`` Householder steps."""
        return cls(_body(input_layer, input_dim, hidden), hidden[-1], latent_dim, num_steps)

    def flow_params(self, h):
        vs, v = [], h
        for linear in self.v_maps:
            v = linear(v)
            vs.append(v)
        return vs


class SylvesterEncoder(FlowEncoder):
    """``T`` Sylvester steps whose ``R``, ``R~``, ``b`` (and ``Q``'s raw material) are linear
    functions of the encoder's last hidden layer (van den Berg et al., 2018).

    Args:
        body, hidden_dim, latent_dim: as :class:`FlowEncoder`.
        kind: ``"orthogonal"`` (O-SNF), ``"householder"`` (H-SNF) or ``"triangular"`` (T-SNF,
            alternating identity and reversal permutations).
        num_steps: ``T``.
        num_ortho: ``M``, the columns of ``Q`` (O-SNF only; ``M = L`` for the other kinds).
            Default ``min(8, L)``: O-SNF is for a bottleneck ``M < L`` (van den Berg et al.'s
            code uses 8 of 64); at ``M = L`` it has none, and Bjorck-Bowie needs about 15-31
            iterations per example instead of about 9 (measured at L = 16).
        num_householder: reflections per ``Q`` (H-SNF only). Default ``min(8, L)`` (the
            paper's code: 8): with ``P`` reflections ``Q`` is the identity on ``L - P``
            dimensions, so the 2 of an earlier default left 14 of 16 untouched.
    """

    #: the default number of orthogonal columns (O-SNF) and of reflections (H-SNF)
    DEFAULT_SIZE = 8

    def __init__(self, body: nn.Module, hidden_dim: int, latent_dim: int,
                 kind: str = "orthogonal", num_steps: int = 1, num_ortho: int | None = None,
                 num_householder: int | None = None):
        check_int(num_steps, "num_steps", minimum=1)
        L = latent_dim
        if num_ortho is None:
            num_ortho = min(self.DEFAULT_SIZE, L)
        if num_householder is None:
            num_householder = min(self.DEFAULT_SIZE, L)
        m = L if kind != "orthogonal" else check_int(num_ortho, "num_ortho", minimum=1)
        if m > L:
            raise ValueError(f"num_ortho must be <= latent_dim ({L}), got {m}")
        check_int(num_householder, "num_householder", minimum=1)
        steps = [Sylvester(L, kind, reverse=kind == "triangular" and t % 2 == 1)
                 for t in range(num_steps)]  # Sylvester validates kind
        super().__init__(body, hidden_dim, latent_dim, steps)
        self.kind, self.m, self.num_householder = kind, m, num_householder
        q_size = {"orthogonal": L * m, "householder": num_householder * L, "triangular": 0}[kind]
        # Only the upper triangles of R and R~ are used: M(M+1)/2 outputs each, placed by
        # triu_indices (a full M x M output would leave M(M-1) weight rows without gradient).
        self.register_buffer("_triu", torch.triu_indices(m, m), persistent=False)
        self.tri = m * (m + 1) // 2
        self.heads = nn.ModuleList([nn.Linear(hidden_dim, 2 * self.tri + m + q_size)
                                    for _ in range(num_steps)])

    @classmethod
    def from_mlp(cls, input_layer: nn.Module, input_dim: int, hidden: Sequence[int],
                 latent_dim: int, kind: str = "orthogonal", num_steps: int = 1,
                 num_ortho: int | None = None, num_householder: int | None = None
                 ) -> "SylvesterEncoder":
        """The book's MLP body (``hidden`` layers) with ``num_steps`` Sylvester steps."""
        return cls(_body(input_layer, input_dim, hidden), hidden[-1], latent_dim, kind,
                   num_steps, num_ortho, num_householder)

    def flow_params(self, h):
        B, m, L = h.shape[0], self.m, self.latent_dim
        params = []
        rows, cols = self._triu
        for head in self.heads:
            out = head(h)
            r, r_tilde, b, q = out.split([self.tri, self.tri, m, out.shape[1] - 2 * self.tri - m],
                                         dim=1)
            p = {"r": _upper(r, rows, cols, m), "r_tilde": _upper(r_tilde, rows, cols, m), "b": b}
            if self.kind == "orthogonal":
                p["q"] = q.view(B, L, m)
            elif self.kind == "householder":
                p["q"] = q.view(B, self.num_householder, L)
            params.append(p)
        return params


class VonMisesFisherEncoder(nn.Module):
    r"""Amortised :math:`q_\phi(z|x) = \mathrm{vMF}(z \mid \mu(x), \kappa(x))` on :math:`S^{L-1}`.

    The network's ``L + 1`` outputs give the direction ``mu = a / |a|`` (first ``L``) and the
    concentration ``kappa = softplus(c) + KAPPA_MIN`` (last one).

    Args:
        net: maps ``(B, D)`` to ``(B, L + 1)``.
        latent_dim: ``L >= 2`` (the sphere's ambient dimension).
    """

    posterior_cls = VonMisesFisherPosterior
    #: kappa = softplus(c) + 1, as in Davidson et al.'s code. Measured here: with a floor of
    #: 1e-4 instead, every Digits run (L = 3, 5, 10, 16; 3 seeds each) collapsed to the prior
    #: -- 0 active units, test NLL 106.3 nats -- because near kappa = 0 the samples barely
    #: depend on mu, so the decoder learns to ignore z before the encoder can inform it;
    #: with the floor of 1, L = 5 reaches 95.66 nats with 5 active units (seed 0); runs at
    #: L >= 10 still collapse under the book's protocol (the posterior comparison page).
    KAPPA_MIN = 1.0

    def __init__(self, net: nn.Module, latent_dim: int):
        super().__init__()
        self.net = net
        self.latent_dim = check_int(latent_dim, "latent_dim", minimum=1)
        if latent_dim < 2:
            raise ValueError(f"latent_dim must be >= 2 for a vMF posterior (the sphere S^{{L-1}} "
                             f"with L = {latent_dim} has dimension {latent_dim - 1})")

    @classmethod
    def from_mlp(cls, input_layer: nn.Module, input_dim: int, hidden: Sequence[int],
                 latent_dim: int) -> "VonMisesFisherEncoder":
        """The book's encoder MLP ``input_dim -> hidden -> L + 1``."""
        return cls(nn.Sequential(input_layer, mlp(input_dim, hidden, latent_dim + 1)), latent_dim)

    def forward(self, x: torch.Tensor) -> VonMisesFisherPosterior:
        out = self.net(x)
        direction, c = out[:, :-1], out[:, -1]
        # the clamp only guards an all-zero output row (0/0); any real direction is kept
        mu = direction / direction.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        return VonMisesFisherPosterior(mu, F.softplus(c) + self.KAPPA_MIN)


#: The one list of posterior families: every name a model config's ``posterior=...`` (and the
#: CLI's ``--posterior``) accepts is registered here and nowhere else. Name -> (encoder class,
#: fixed options); the class's ``from_mlp`` builds it, its other options come from the
#: config's ``posterior_kwargs``. (:mod:`intro_dgm.posteriors` holds the distributions the
#: encoders return, not this list.)
POSTERIORS = Registry("posterior", {
    "gaussian": (GaussianEncoder, {}), "householder": (HouseholderEncoder, {}),
    **{f"sylvester-{kind}": (SylvesterEncoder, {"kind": kind}) for kind in Sylvester.KINDS},
    "vmf": (VonMisesFisherEncoder, {})})


def _upper(values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, m: int) -> torch.Tensor:
    """``(B, M(M+1)/2)`` numbers placed in the upper triangles of ``(B, M, M)`` zeros."""
    out = values.new_zeros(values.shape[0], m, m)
    out[:, rows, cols] = values
    return out


def _body(input_layer: nn.Module, input_dim: int, hidden: Sequence[int]) -> nn.Module:
    """The MLP up to (and including the activation of) its last hidden layer."""
    if not hidden:
        raise ValueError("a flow encoder needs at least one hidden layer (hidden=())")
    return nn.Sequential(input_layer, mlp(input_dim, hidden[:-1], hidden[-1]), nn.LeakyReLU())


def make_encoder(posterior: str, input_layer: nn.Module, input_dim: int, hidden: Sequence[int],
                 latent_dim: int, **options) -> nn.Module:
    """The encoder of the posterior family ``posterior`` (one of :data:`POSTERIORS`)."""
    cls, fixed = POSTERIORS.lookup(posterior)
    takes = set(inspect.signature(cls.from_mlp).parameters) - set(fixed) - {
        "input_layer", "input_dim", "hidden", "latent_dim"}
    bad = sorted(set(options) - takes)
    if bad:
        raise ValueError(f"posterior {posterior!r} does not take the option(s) {', '.join(bad)}"
                         f"; it takes {', '.join(sorted(takes)) or 'none'}")
    return cls.from_mlp(input_layer, input_dim, tuple(hidden), latent_dim, **fixed, **options)

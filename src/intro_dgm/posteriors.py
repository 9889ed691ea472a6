r"""Variational posteriors :math:`q_\phi(z|x)`: what an encoder returns for a batch.

A posterior object holds the encoder's outputs for ``B`` examples and offers

* ``rsample(k=None) -> (z, log_q)``: reparameterised samples, ``(B, L)`` or ``(k, B, L)``,
  and the log-density of *those very samples*, ``(B,)`` or ``(k, B)``. For a flow
  posterior ``log_q`` is the base density minus the summed log-determinants, so the
  ELBO never needs ``log_prob`` of a point it did not sample;
* ``log_prob(z)`` where the density can be evaluated at any point (broadcasts over
  leading sample dimensions);
* ``mean``: a point summary used to reconstruct and to count active units.

The model asks :func:`analytic_kl` for a closed-form KL against its prior and falls back
to the Monte Carlo estimate ``log_q - ln p(z)`` otherwise; pairs with a closed form are
registered here (:func:`register_analytic_kl`), so a prior never needs to know which
family the posterior belongs to.

The posterior families a model can name are listed once, in :data:`intro_dgm.encoders.POSTERIORS`.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from .distributions import VonMisesFisher, entropy_normal_diag, kl_normal_diag, log_normal_diag
from .flows import FlowStep, Householder
from .priors import Prior, StandardPrior, UniformSphere
from .utils import check_int


class Posterior:
    """Base class of a batch of posteriors ``q(z|x_1..x_B)``; see the module docstring."""

    def rsample(self, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, log_q)``: ``z`` is ``(B, L)`` (or ``(k, B, L)``), ``log_q`` is ``(B,)``
        (or ``(k, B)``), with gradients flowing to the encoder through ``z``."""
        if k is not None:
            check_int(k, "k", minimum=1)
        return self._rsample(k)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - optional
        """``ln q(z|x)`` for ``z`` of shape ``(..., B, L)``; returns ``(..., B)``."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form density at "
                                  "arbitrary points; use the log_q that rsample returns")

    @property
    def mean(self) -> torch.Tensor:  # pragma: no cover - abstract
        """The point summary of each row, shape ``(B, L)`` (the posterior mean, or for a flow
        the flow applied to the base's mean)."""
        raise NotImplementedError

    def _rsample(self, k):  # pragma: no cover - abstract
        raise NotImplementedError


class DiagonalGaussian(Posterior):
    r""":math:`q(z|x) = \mathcal{N}(z \mid \mu_e(x), \mathrm{diag}\,\sigma_e^2(x))`, the VAE's posterior.

    Args:
        mu_e: ``(B, L)``, the encoder's means.
        log_var_e: ``(B, L)``, the encoder's log-variances.
    """

    def __init__(self, mu_e: torch.Tensor, log_var_e: torch.Tensor):
        if mu_e.shape != log_var_e.shape:
            raise ValueError(f"mu_e and log_var_e must have the same shape, got "
                             f"{tuple(mu_e.shape)} and {tuple(log_var_e.shape)}")
        self.mu_e, self.log_var_e = mu_e, log_var_e

    def _rsample(self, k):
        r"""Reparameterisation :math:`z = \mu_e + \sigma_e \odot \epsilon`, :math:`\epsilon \sim \mathcal{N}(0, I)`."""
        shape = self.mu_e.shape if k is None else (k, *self.mu_e.shape)
        eps = torch.randn(shape, device=self.mu_e.device, dtype=self.mu_e.dtype)
        z = self.mu_e + torch.exp(0.5 * self.log_var_e) * eps  # std = exp(log_var / 2)
        return z, self.log_prob(z)

    def log_prob(self, z):
        return log_normal_diag(z, self.mu_e, self.log_var_e)

    @property
    def mean(self):
        return self.mu_e

    def entropy(self) -> torch.Tensor:
        """Exact entropy ``H[q(z|x)]`` of every row, ``(B,)``."""
        return entropy_normal_diag(self.log_var_e)


class FlowPosterior(Posterior):
    r"""A base posterior pushed through flow steps: :math:`z_T = f_T \circ \dots \circ f_1(z_0)`,

    .. math:: \ln q(z_T|x) = \ln q(z_0|x) - \sum_{t=1}^T \ln\left|\det \frac{\partial f_t}{\partial z_{t-1}}\right| .

    Args:
        base: the posterior of ``z_0`` (a :class:`DiagonalGaussian` in the book).
        steps: flow steps, each ``step(z, params) -> (z_new, log_det)``.
        params: one entry per step: the amortised parameters of that step for this batch
            (produced by the encoder from ``x``), or ``None`` for a step with global
            parameters.

    ``mean`` is the flow applied to the base's mean (a point summary, not the exact mean
    of :math:`q(z_T|x)`, which has no closed form). The density at an arbitrary point
    would need the inverse of every step, which some flows (Sylvester) do not have in
    closed form: ``log_prob`` is not offered.
    """

    def __init__(self, base: Posterior, steps, params=None):
        self.base = base
        self.steps = list(steps)
        for s in self.steps:
            if not isinstance(s, FlowStep):
                raise TypeError(f"steps must be FlowStep modules, got {type(s).__name__}")
        params = [None] * len(self.steps) if params is None else list(params)
        if len(params) != len(self.steps):
            raise ValueError(f"params must have one entry per step ({len(self.steps)}), "
                             f"got {len(params)}")
        # What a step computes from its parameters alone (a Sylvester step's orthonormal Q),
        # once per example here, not once per sample after _push repeats the rows k times.
        self.params = [p if p is None else step.prepare(p) for step, p in zip(self.steps, params)]

    def _push(self, z0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lead = z0.shape[:-1]
        z = z0.reshape(-1, z0.shape[-1])
        log_det = z.new_zeros(z.shape[0])
        for step, p in zip(self.steps, self.params):
            if p is not None and len(lead) == 2:  # (k, B, L): the same parameters for every k
                p = _repeat_params(p, lead[0])
            z, ld = step(z, p)
            log_det = log_det + ld
        return z.reshape(*lead, -1), log_det.reshape(lead)

    def _rsample(self, k):
        z0, log_q0 = self.base.rsample(k)
        z, log_det = self._push(z0)
        return z, log_q0 - log_det

    @property
    def mean(self):
        return self._push(self.base.mean)[0]


class HouseholderPosterior(FlowPosterior):
    r"""A diagonal Gaussian pushed through Householder reflections only (Tomczak & Welling,
    2016): :math:`z_T = A z_0` with :math:`A = H_T \cdots H_1` orthogonal, so
    :math:`q(z_T|x) = \mathcal{N}(A\mu_e, A\Sigma_e A^\top)`, a full-covariance Gaussian.
    Its KL to :math:`\mathcal{N}(0, I)` is the base's, in closed form: :math:`\lVert A\mu_e\rVert
    = \lVert\mu_e\rVert`, and :math:`A\Sigma_e A^\top` has the trace and determinant of
    :math:`\Sigma_e` (registered below; chapter: Householder flows).

    Args: as :class:`FlowPosterior`, with ``base`` a :class:`DiagonalGaussian` and every step
    a :class:`~intro_dgm.flows.Householder`.
    """

    def __init__(self, base: DiagonalGaussian, steps, params=None):
        if not isinstance(base, DiagonalGaussian):
            raise TypeError(f"base must be a DiagonalGaussian, got {type(base).__name__}")
        super().__init__(base, steps, params)
        for s in self.steps:
            if type(s) is not Householder:
                raise TypeError(f"steps must all be Householder steps (a closed-form KL relies "
                                f"on it), got {type(s).__name__}")


class VonMisesFisherPosterior(Posterior):
    r""":math:`q(z|x) = \mathrm{vMF}(z \mid \mu(x), \kappa(x))` on the unit sphere: the
    hyperspherical VAE's posterior (Davidson et al., 2018).

    Args:
        mu: ``(B, L)`` unit rows; kappa: ``(B,)`` or ``(B, 1)``, positive
            (see :class:`~intro_dgm.distributions.VonMisesFisher`, which this wraps).
    """

    def __init__(self, mu: torch.Tensor, kappa: torch.Tensor):
        self.vmf = VonMisesFisher(mu, kappa)

    def _rsample(self, k):
        z = self.vmf.rsample(k)
        return z, self.vmf.log_prob(z)

    def log_prob(self, z):
        return self.vmf.log_prob(z)

    @property
    def mean(self):
        """The mean direction ``mu`` (the mean itself, ``A(kappa) mu``, lies inside the ball)."""
        return self.vmf.mu

    def entropy(self) -> torch.Tensor:
        return self.vmf.entropy()


def _repeat_params(p, k: int):
    """Per-example parameters ``(B, ...)`` repeated for ``k`` samples, row order ``(k, B)``."""
    if isinstance(p, torch.Tensor):
        return p.repeat(k, *[1] * (p.dim() - 1))
    if isinstance(p, (tuple, list)):
        return type(p)(_repeat_params(q, k) for q in p)
    if isinstance(p, dict):
        return {name: _repeat_params(q, k) for name, q in p.items()}
    raise TypeError(f"flow parameters must be tensors, or tuples/lists/dicts of tensors; "
                    f"got {type(p).__name__}")


# --------------------------------------------------------------------- analytic KLs
_ANALYTIC_KL: dict[tuple[type, type], Callable[[Posterior, Prior], torch.Tensor]] = {}


def register_analytic_kl(posterior_cls: type, prior_cls: type):
    """Decorator: register ``fn(q, p) -> (B,)``, the closed-form KL[q || p] of a pair."""
    def decorate(fn):
        _ANALYTIC_KL[(posterior_cls, prior_cls)] = fn
        return fn
    return decorate


def analytic_kl(q: Posterior, p: Prior) -> torch.Tensor | None:
    """Closed-form ``KL[q(z|x) || p(z)]`` per row, ``(B,)``, or ``None`` when the pair has
    none registered (the exact types are matched: a subclass may change the density)."""
    fn = _ANALYTIC_KL.get((type(q), type(p)))
    return None if fn is None else fn(q, p)


def has_analytic_kl(posterior_cls: type, prior: Prior) -> bool:
    """Whether posteriors of ``posterior_cls`` have a closed-form KL to ``prior``."""
    return (posterior_cls, type(prior)) in _ANALYTIC_KL


@register_analytic_kl(DiagonalGaussian, StandardPrior)
def _kl_gaussian_standard(q: DiagonalGaussian, p: StandardPrior) -> torch.Tensor:
    return kl_normal_diag(q.mu_e, q.log_var_e)


@register_analytic_kl(HouseholderPosterior, StandardPrior)
def _kl_householder_standard(q: HouseholderPosterior, p: StandardPrior) -> torch.Tensor:
    # KL[N(A mu, A Sigma A^T) || N(0, I)] = (tr(A Sigma A^T) + |A mu|^2 - L - ln det(A Sigma A^T))/2
    # and A orthogonal leaves each term as it is for N(mu, Sigma).
    return kl_normal_diag(q.base.mu_e, q.base.log_var_e)


@register_analytic_kl(VonMisesFisherPosterior, UniformSphere)
def _kl_vmf_uniform(q: VonMisesFisherPosterior, p: UniformSphere) -> torch.Tensor:
    return q.vmf.kl_uniform()

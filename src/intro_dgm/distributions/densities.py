"""Gaussian and discrete log-densities and the Gaussian KL divergences, written once and
reused by every model: the diagonal and full-covariance Gaussian, its entropy and closed-form
KLs, the Bernoulli and categorical likelihoods of pixels, and DDPM's discretised Gaussian.

Conventions:
    * Every function sums over the *last* dimension (the event dimension) and keeps the
      others, so ``(B, D) -> (B,)`` and, with broadcasting, ``(B, 1, L)`` against
      ``(1, K, L)`` gives ``(B, K)``. Summing the event dimension *before* any mixture
      ``logsumexp`` is what makes a mixture of vectors (not a product of 1-D mixtures).
    * Gaussians are parameterised by their mean and *log-variance* ``log_var``; the
      standard deviation is ``exp(0.5 * log_var)``.
    * Discrete likelihoods take logits and use log-softmax / softplus, never ``log(p)``
      of a probability that may underflow.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..utils import check_int

LOG_2PI = math.log(2.0 * math.pi)


def log_normal_diag(x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    r"""Diagonal Gaussian :math:`\ln \mathcal{N}(x \mid \mu, \mathrm{diag}(e^{\log\sigma^2}))`.

    Shapes broadcast; the last dimension is summed. Chapter: the VAE.
    """
    return -0.5 * (LOG_2PI + log_var + (x - mu) ** 2 * torch.exp(-log_var)).sum(dim=-1)



def log_normal_diag64(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """:func:`log_normal_diag` in float64 (``log_var`` broadcast to ``z``), returned as float64:
    where two large, nearly equal log-densities are subtracted (a diffusion step's posterior
    and model densities at a nearly noiseless start), float32 would lose their difference."""
    return log_normal_diag(z.double(), mean.double(), log_var.double().expand_as(z))

def log_standard_normal(x: torch.Tensor) -> torch.Tensor:
    r""":math:`\ln \mathcal{N}(x \mid 0, I)`, summed over the last dimension."""
    return -0.5 * (LOG_2PI + x**2).sum(dim=-1)


def entropy_normal_diag(log_var: torch.Tensor) -> torch.Tensor:
    r"""Entropy :math:`H[\mathcal{N}(\mu, \mathrm{diag}\,\sigma^2)] = \frac12\sum_l (1 + \ln 2\pi + \ln\sigma_l^2)`.

    Chapter: rewriting the ELBO (the conditional entropy term).
    """
    return 0.5 * (1.0 + LOG_2PI + log_var).sum(dim=-1)


def log_bernoulli(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    r""":math:`\sum_d x_d \ln \theta_d + (1-x_d)\ln(1-\theta_d)` with :math:`\theta=\sigma(\text{logits})`.

    Computed from logits (``binary_cross_entropy_with_logits``) so that saturated
    probabilities never produce ``log(0)``. ``x`` and ``logits`` broadcast against each
    other, e.g. data ``(B, D)`` against the logits ``(S, B, D)`` of ``S`` latent samples (the
    loss function itself requires equal shapes).
    """
    x, logits = torch.broadcast_tensors(x, logits)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=-1)


def log_categorical(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    r""":math:`\sum_d \ln \pi_{d, x_d}` with :math:`\pi_d = \mathrm{softmax}(\text{logits}_d)`.

    Args:
        x: integer-valued tensor ``(..., D)`` (any dtype), values in ``0..C-1``.
        logits: ``(..., D, C)``.
    Returns:
        The log-probability summed over the ``D`` pixels, shape ``(...)``.
    """
    log_pi = torch.log_softmax(logits, dim=-1)
    index = x.long().unsqueeze(-1).expand(*log_pi.shape[:-1], 1)
    return log_pi.gather(-1, index).squeeze(-1).sum(dim=-1)


def _log_cdf_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r""":math:`\ln(\Phi(b) - \Phi(a))` for :math:`a < b`, stable in both tails: where
    :math:`a > 0` both CDFs are near 1 and their difference would cancel, so the mirrored
    :math:`\Phi(-a) - \Phi(-b)` (two small numbers) is used instead."""
    flip = a > 0
    lo, hi = torch.where(flip, -b, a), torch.where(flip, -a, b)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    # ln(e^u - e^v) = u + ln(1 - e^(v - u)); the clamp keeps log(0) out when a == b in floats
    return log_hi + torch.log(-torch.expm1(torch.clamp(log_lo - log_hi, max=-1e-12)))


def log_discretised_gaussian(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
                             num_vals: int) -> torch.Tensor:
    r"""A Gaussian on :math:`[-1, 1]` integrated over the bin of each pixel value (DDPM's
    data term, Ho et al., 2020, eq. 13), summed over the last dimension.

    Value :math:`v \in \{0,\dots,V-1\}` sits at :math:`c_v = 2v/(V-1) - 1`; its bin is
    :math:`[c_v - h, c_v + h]` with :math:`h = 1/(V-1)`, the outer bins reach to
    :math:`\mp\infty`, so the :math:`V` probabilities sum to 1 exactly: a likelihood of the
    discrete data, in nats. Chapter: diffusion models.

    Args:
        x: integer values ``(..., D)`` in ``0..num_vals-1`` (any dtype).
        mean: ``(..., D)`` in the rescaled space; log_scale: :math:`\ln\sigma`, broadcastable.
    """
    check_int(num_vals, "num_vals", minimum=2)
    h = 1.0 / (num_vals - 1)
    centre = 2.0 * x * h - 1.0
    inv_scale = torch.exp(-log_scale)
    upper = torch.where(x >= num_vals - 1, torch.full_like(centre, math.inf),
                        (centre + h - mean) * inv_scale)
    lower = torch.where(x <= 0, torch.full_like(centre, -math.inf),
                        (centre - h - mean) * inv_scale)
    return _log_cdf_difference(lower, upper).sum(dim=-1)



def discretised_gaussian_probs(mean: torch.Tensor, log_scale: torch.Tensor,
                               num_vals: int) -> torch.Tensor:
    r"""The :math:`V` probabilities of :func:`log_discretised_gaussian`, per coordinate:
    ``(..., D, V)`` for ``mean`` ``(..., D)`` (``log_scale`` broadcastable to it); each row
    sums to 1 (a softmax of the :math:`V` log-probabilities, for float error)."""
    values = torch.arange(num_vals, device=mean.device, dtype=mean.dtype)
    grid = values.view(-1, *[1] * mean.dim()).expand(-1, *mean.shape)
    log_p = torch.stack([log_discretised_gaussian(g.unsqueeze(-1), mean.unsqueeze(-1),
                                                  log_scale.unsqueeze(-1), num_vals)
                         for g in grid], dim=-1)
    return torch.softmax(log_p, dim=-1)

def kl_normal_diag(mu_q: torch.Tensor, log_var_q: torch.Tensor,
                   mu_p: torch.Tensor | None = None, log_var_p: torch.Tensor | None = None
                   ) -> torch.Tensor:
    r"""Closed-form :math:`\mathrm{KL}[\mathcal{N}(\mu_q,\sigma_q^2)\,\|\,\mathcal{N}(\mu_p,\sigma_p^2)]`.

    Both diagonal; ``mu_p``/``log_var_p`` default to the standard normal. Summed over the
    last dimension.
    """
    if mu_p is None:
        mu_p = torch.zeros_like(mu_q)
    if log_var_p is None:
        log_var_p = torch.zeros_like(log_var_q)
    return 0.5 * (log_var_p - log_var_q
                  + (torch.exp(log_var_q) + (mu_q - mu_p) ** 2) * torch.exp(-log_var_p)
                  - 1.0).sum(dim=-1)


def log_normal_full(x: torch.Tensor, mu: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    r""":math:`\ln\mathcal{N}(x\mid\mu,\Sigma)` with a full covariance, via a Cholesky factor.

    Args:
        x: ``(B, D)``.
        mu: ``(D,)`` or ``(B, D)``.
        cov: ``(D, D)``.
    """
    chol = torch.linalg.cholesky(cov)
    diff = (x - mu).unsqueeze(-1)
    # Solving L y = (x - mu) gives the Mahalanobis term as |y|^2 without forming cov^{-1}.
    y = torch.linalg.solve_triangular(chol, diff, upper=False).squeeze(-1)
    half_log_det = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    return -0.5 * (x.shape[-1] * LOG_2PI + (y**2).sum(-1)) - half_log_det


def kl_normal_full(mu_q: torch.Tensor, cov_q: torch.Tensor,
                   mu_p: torch.Tensor, cov_p: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}[\mathcal{N}(\mu_q,\Sigma_q)\,\|\,\mathcal{N}(\mu_p,\Sigma_p)]`, full covariances.

    Batched over leading dimensions: ``mu (..., D)``, ``cov (..., D, D)`` -> ``(...)``.
    """
    d = mu_q.shape[-1]
    chol_p = torch.linalg.cholesky(cov_p)
    chol_q = torch.linalg.cholesky(cov_q)
    # tr(Sigma_p^{-1} Sigma_q) = |L_p^{-1} L_q|_F^2 ; Mahalanobis term via a triangular solve.
    a = torch.linalg.solve_triangular(chol_p, chol_q, upper=False)
    b = torch.linalg.solve_triangular(chol_p, (mu_p - mu_q).unsqueeze(-1), upper=False)
    log_det_p = 2.0 * torch.log(torch.diagonal(chol_p, dim1=-2, dim2=-1)).sum(-1)
    log_det_q = 2.0 * torch.log(torch.diagonal(chol_q, dim1=-2, dim2=-1)).sum(-1)
    return 0.5 * ((a**2).sum((-2, -1)) + (b**2).sum((-2, -1)) - d + log_det_p - log_det_q)

"""Log-densities and KL divergences, written once and reused by every model, down to the
von Mises-Fisher distribution on the sphere (with a log-Bessel function stable for every
dimension and concentration).

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

LOG_2PI = math.log(2.0 * math.pi)


def log_normal_diag(x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    r"""Diagonal Gaussian :math:`\ln \mathcal{N}(x \mid \mu, \mathrm{diag}(e^{\log\sigma^2}))`.

    Shapes broadcast; the last dimension is summed. Chapter: the VAE.
    """
    return -0.5 * (LOG_2PI + log_var + (x - mu) ** 2 * torch.exp(-log_var)).sum(dim=-1)


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
    probabilities never produce ``log(0)``.
    """
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


# ----------------------------------------------------------- the sphere and von Mises-Fisher
def _log_iv_numpy(nu: float, x):
    """``ln I_nu(x)`` in float64 for an array ``x > 0``, accurate where ``I_nu`` under- or
    overflows a double (see :func:`log_bessel_iv`)."""
    import numpy as np
    from scipy.special import gammaln, ive, logsumexp

    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = ive(nu, x)  # I_nu(x) e^{-x}: no overflow for large x
        out = np.log(scaled) + x
    # ive underflows (to 0 or to a subnormal with few digits) when x is small next to nu.
    bad = ~(scaled > 1e-290)
    if bad.any() and nu < 50:
        # Small x: the power series converges fast (term ratio x^2 / (4 (k+1)(k+nu+1))).
        k = np.arange(200.0)[:, None]
        xb = x[bad][None]
        terms = (2 * k + nu) * np.log(xb / 2) - gammaln(k + 1) - gammaln(k + nu + 1)
        out[bad] = logsumexp(terms, axis=0)
    elif bad.any():
        # Large nu: Debye's uniform asymptotic expansion in z = x / nu, three correction
        # terms (relative error O(nu^-4) < 2e-7 for nu >= 50).
        z = x[bad] / nu
        root = np.sqrt(1 + z * z)
        t = 1 / root
        eta = root + np.log(z / (1 + root))
        u1 = (3 * t - 5 * t ** 3) / 24
        u2 = (81 * t ** 2 - 462 * t ** 4 + 385 * t ** 6) / 1152
        u3 = (30375 * t ** 3 - 369603 * t ** 5 + 765765 * t ** 7 - 425425 * t ** 9) / 414720
        out[bad] = (nu * eta - 0.5 * np.log(2 * np.pi * nu) - 0.5 * np.log(root)
                    + np.log1p(u1 / nu + u2 / nu ** 2 + u3 / nu ** 3))
    return out


class _LogBesselIv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, nu):
        ctx.nu = nu
        ctx.save_for_backward(x)
        values = _log_iv_numpy(nu, x.detach().cpu().double().numpy())
        return torch.as_tensor(values, dtype=x.dtype, device=x.device)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        # d/dx ln I_nu(x) = I_nu'(x) / I_nu(x) = I_{nu+1}(x) / I_nu(x) + nu / x
        return grad * (bessel_ratio(ctx.nu, x) + ctx.nu / x), None


def log_bessel_iv(nu: float, x: torch.Tensor) -> torch.Tensor:
    r""":math:`\ln I_\nu(x)`, the modified Bessel function of the first kind, for ``x > 0``,
    differentiable in ``x``.

    Computed in float64 from SciPy's exponentially scaled ``ive`` (no overflow for large
    ``x``); where that underflows (``x`` small next to ``nu``, e.g. ``nu = 31, x <= 0.1`` or
    ``nu = 127, x <= 10``, where the direct formula gives NaN), from the power series
    (``nu < 50``) or Debye's uniform expansion (``nu >= 50``).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if (x <= 0).any():
        raise ValueError("x must be > 0 for ln I_nu(x)")
    if not nu >= 0:
        raise ValueError(f"nu must be >= 0, got {nu}")
    return _LogBesselIv.apply(x, float(nu))


def bessel_ratio(nu: float, x: torch.Tensor) -> torch.Tensor:
    r""":math:`I_{\nu+1}(x) / I_\nu(x)`, from the log-Bessel functions (no gradient)."""
    with torch.no_grad():
        values = _log_iv_numpy(nu + 1, x.detach().cpu().double().numpy()) \
            - _log_iv_numpy(nu, x.detach().cpu().double().numpy())
    return torch.as_tensor(values, device=x.device).exp().to(x.dtype)


def log_sphere_area(m: int) -> float:
    r""":math:`\ln |S^{m-1}| = \ln \frac{2\pi^{m/2}}{\Gamma(m/2)}`, the surface area of the unit
    sphere in :math:`\mathbb{R}^m`; the uniform density on it is :math:`1/|S^{m-1}|`."""
    return math.log(2.0) + 0.5 * m * math.log(math.pi) - math.lgamma(0.5 * m)


def log_vmf_normaliser(m: int, kappa: torch.Tensor) -> torch.Tensor:
    r""":math:`\ln C_m(\kappa) = (\tfrac m2 - 1)\ln\kappa - \tfrac m2 \ln 2\pi - \ln I_{m/2-1}(\kappa)`,
    the normaliser of the von Mises-Fisher density on :math:`S^{m-1} \subset \mathbb{R}^m`."""
    return (0.5 * m - 1) * torch.log(kappa) - 0.5 * m * LOG_2PI - log_bessel_iv(0.5 * m - 1, kappa)


def log_vmf(z: torch.Tensor, mu: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    r""":math:`\ln \mathrm{vMF}(z \mid \mu, \kappa) = \ln C_m(\kappa) + \kappa\,\mu^\top z` for unit
    vectors ``z``, ``mu`` ``(..., m)`` and ``kappa`` ``(...)`` (broadcasting)."""
    return log_vmf_normaliser(z.shape[-1], kappa) + kappa * (mu * z).sum(-1)


def kl_vmf_uniform(m: int, kappa: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}[\mathrm{vMF}(\mu, \kappa)\,\|\,U(S^{m-1})] = \kappa A_m(\kappa) + \ln C_m(\kappa)
    + \ln |S^{m-1}|`, with :math:`A_m(\kappa) = I_{m/2}(\kappa) / I_{m/2-1}(\kappa) = \mathbb{E}[\mu^\top z]`.

    It does not depend on :math:`\mu`. Differentiable in ``kappa``.
    """
    ratio = torch.exp(log_bessel_iv(0.5 * m, kappa) - log_bessel_iv(0.5 * m - 1, kappa))
    return kappa * ratio + log_vmf_normaliser(m, kappa) + log_sphere_area(m)

r"""The modified Bessel function of the first kind, :math:`\ln I_\nu(x)` and the ratio
:math:`I_{\nu+1}(x)/I_\nu(x)`, stable for every order and argument: a power series of positive
terms up to ``x = 50``, SciPy's scaled ``ive`` above, Debye's expansion where even that
underflows, and Hankel's large-argument expansion where the ratio is within
:math:`O(1/x)` of 1 (there ``1 - ratio`` and its derivative come from the series itself, so
nothing cancels), all in float64 NumPy, wrapped as differentiable torch functions. The von
Mises-Fisher distribution (:mod:`.vmf`) is built on it.
"""
from __future__ import annotations

import functools

import torch

#: Below this argument ``ln I_nu`` comes from its power series (all terms positive: no
#: cancellation, and 200 terms reach double precision up to x = 50 for every nu >= 0).
_SERIES_MAX_X = 50.0
_SERIES_TERMS = 200


def _log_s_numpy(nu: float, x):
    r"""``ln S_nu(x)`` with :math:`I_\nu(x) = \frac{(x/2)^\nu}{\Gamma(\nu+1)} S_\nu(x)`, i.e.
    :math:`S_\nu(x) = {}_0F_1(;\nu+1;x^2/4) = \sum_k \frac{(x^2/4)^k\,\Gamma(\nu+1)}{k!\,\Gamma(k+\nu+1)}`,
    in float64 for an array ``x > 0``. ``S = 1 + O(x^2)``: working with it instead of
    ``I_nu`` keeps every digit of the small quantities (a KL of 2e-9) that
    ``ln I_nu - nu ln(x/2) + ln Gamma(nu+1)`` would lose to cancellation."""
    import numpy as np
    from scipy.special import gammaln, logsumexp

    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    small = x <= _SERIES_MAX_X
    if small.any():
        k = np.arange(1.0, _SERIES_TERMS)[:, None]
        xs = x[small][None]
        terms = (k * np.log(xs * xs / 4) - gammaln(k + 1)
                 - (gammaln(k + nu + 1) - gammaln(nu + 1)))  # the k >= 1 terms; term 0 is 1
        out[small] = np.logaddexp(0.0, logsumexp(terms, axis=0))  # ln(1 + sum): log1p-accurate
    if (~small).any():
        xl = x[~small]
        out[~small] = _log_iv_large_x(nu, xl) - nu * np.log(xl / 2) + gammaln(nu + 1)
    return out


def _log_iv_large_x(nu: float, x):
    """``ln I_nu(x)`` for ``x > 50`` from SciPy's exponentially scaled ``ive`` (no overflow);
    where that underflows (``nu`` much larger than ``x``), Debye's uniform expansion."""
    import numpy as np
    from scipy.special import ive

    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = ive(nu, x)  # I_nu(x) e^{-x}
        out = np.log(scaled) + x
    bad = ~(scaled > 1e-290)  # 0 or a subnormal with few digits left
    if bad.any():
        # Debye's uniform asymptotic expansion in z = x / nu, three correction terms
        # (relative error O(nu^-4); here nu > x > 50, so below 2e-7 -- and only reached for
        # nu in the hundreds, where it is far smaller).
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


def _log_iv_numpy(nu: float, x):
    """``ln I_nu(x)`` in float64 for an array ``x > 0`` (see :func:`log_bessel_iv`)."""
    import numpy as np
    from scipy.special import gammaln

    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    small = x <= _SERIES_MAX_X
    out[small] = nu * np.log(x[small] / 2) - gammaln(nu + 1) + _log_s_numpy(nu, x[small])
    out[~small] = _log_iv_large_x(nu, x[~small])
    return out


def _ratio_numpy(nu: float, x):
    r""":math:`I_{\nu+1}(x)/I_\nu(x) = \frac{x}{2(\nu+1)}\,S_{\nu+1}(x)/S_\nu(x)` in float64;
    ``1 - delta`` from :func:`_hankel_series` from :func:`_hankel_min_x` on (there the ``S``
    ratio of two numbers near ``e^x`` loses ``x * 1e-16``: 1e-8 at ``x = 1e8``, as much as
    ``1 - ratio`` itself)."""
    return _ratio_parts(nu, x, one_minus=False)


def _one_minus_ratio_numpy(nu: float, x):
    r""":math:`1 - I_{\nu+1}(x)/I_\nu(x)` in float64, to full relative precision at large ``x``
    (where the ratio is :math:`1 - (\nu + \frac12)/x + \dots`)."""
    return _ratio_parts(nu, x, one_minus=True)


def _ratio_parts(nu: float, x, one_minus: bool):
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    large = x >= _hankel_min_x(nu)
    xs = x[~large]
    ratio = xs / (2 * (nu + 1)) * np.exp(_log_s_numpy(nu + 1, xs) - _log_s_numpy(nu, xs))
    delta = _hankel_series(nu, x[large], "delta")
    out[~large] = 1 - ratio if one_minus else ratio
    out[large] = delta if one_minus else 1 - delta
    return out


# ----------------------------------------------------------- large x: Hankel's expansion
#: Terms kept of the large-argument series below; with 30 the series take over from x = 25
#: for nu <= 7.5 (m <= 17 in the vMF), x = 102 for nu = 31, 1510 for nu = 127
#: (:func:`_hankel_min_x`). Against 60-digit mpmath, at and above that point: relative errors
#: below 3e-16 for nu <= 15.5, below 3e-12 up to nu = 511 (the alternating terms cancel a
#: little near the switch), where the S ratio had 4e-12 to 2e-6 in x A'.
_HANKEL_TERMS = 30
#: Hankel's series leaves out a part of relative size e^{-2x}: below 1e-21 from x = 25.
_HANKEL_FLOOR_X = 25.0


@functools.lru_cache(maxsize=64)
def _hankel_coefficients(nu: float):
    r"""Coefficients :math:`\ell_1..\ell_{K+1}` of :math:`\ln P_\nu(t) = \sum_n \ell_n t^n`,
    :math:`t = 1/x`, where :math:`I_\nu(x) = \frac{e^x}{\sqrt{2\pi x}} P_\nu(t)\,(1 + O(e^{-2x}))`
    and :math:`P_\nu(t) = \sum_k (-1)^k a_k t^k`, :math:`a_k = \prod_{j=1}^k
    \frac{4\nu^2 - (2j-1)^2}{8j}` (Hankel; DLMF 10.40.1), as float64 ``(K + 1,)``.

    In exact rational arithmetic: the log's recurrence :math:`\ell_n = p_n - \frac1n
    \sum_{j<n} j\,\ell_j\,p_{n-j}` cancels catastrophically in floats for large ``nu``
    (:math:`\ell_2 = -(4\nu^2-1)/16` from :math:`p_2 \approx (4\nu^2)^2/128`)."""
    from fractions import Fraction

    import numpy as np

    mu = 4 * Fraction(nu) ** 2  # exact: a float is a dyadic rational
    p, a = [Fraction(1)], Fraction(1)
    for k in range(1, _HANKEL_TERMS + 2):
        a = a * (mu - (2 * k - 1) ** 2) / (8 * k)
        p.append(-a if k % 2 else a)
    ell = [Fraction(0)]
    for n in range(1, _HANKEL_TERMS + 2):
        ell.append(p[n] - sum(j * ell[j] * p[n - j] for j in range(1, n)) / n)
    return np.array([float(c) for c in ell[1:]])


@functools.lru_cache(maxsize=64)
def _hankel_min_x(nu: float) -> float:
    r"""The smallest ``x`` from which :func:`_hankel_series` is used: its truncation is below
    double precision -- the first left-out term of the steepest series (``x A'``,
    coefficients :math:`n\,d_n`) is below 1e-17 of its leading term :math:`(\nu + \tfrac12)/x`
    -- and ``x >= 25``."""
    ell = _hankel_coefficients(nu)
    K = _HANKEL_TERMS
    first_left_out = (K + 1) * K * abs(ell[K - 1])  # (K+1) d_{K+1}, d_{K+1} = K ell_K
    return max(_HANKEL_FLOOR_X, (first_left_out / (1e-17 * (nu + 0.5))) ** (1 / K))


def _hankel_series(nu: float, x, which: str):
    r"""Large-``x`` forms from :math:`\ln I_\nu(x) = x - \tfrac12\ln(2\pi x) + \sum_n \ell_n t^n`
    (``t = 1/x``, for ``x >=`` :func:`_hankel_min_x`), each a series whose first term
    dominates, so no digit cancels:

    * ``"log_p"``: :math:`\sum_n \ell_n t^n`;
    * ``"delta"``: :math:`\delta = 1 - \frac{I_{\nu+1}}{I_\nu} = \sum_n d_n t^n` with
      :math:`d_1 = \nu + \tfrac12`, :math:`d_{n+1} = n\,\ell_n` (from
      :math:`\frac{I_{\nu+1}}{I_\nu} = \frac{d}{dx}\ln I_\nu - \frac\nu x`);
    * ``"x_ratio_prime"``: :math:`x\,\frac{d}{dx}\frac{I_{\nu+1}}{I_\nu} = -x\,\delta'(x)
      = \sum_n n\,d_n t^n` (where :math:`1 - A^2 - \frac{2\nu+1}{x}A` would cancel to
      :math:`O(x^{-2})`).
    """
    import numpy as np
    from numpy.polynomial import polynomial

    ell = _hankel_coefficients(nu)[:_HANKEL_TERMS]
    t = 1 / np.asarray(x, dtype=np.float64)
    n = np.arange(1, _HANKEL_TERMS + 1)
    if which == "log_p":
        coef = ell
    else:
        d = np.concatenate([[nu + 0.5], n[:-1] * ell[:-1]])  # d_1..d_K
        coef = d if which == "delta" else n * d
    return polynomial.polyval(t, np.concatenate([[0.0], coef]))  # Horner, from t^0 = 0


def _numpy(x: torch.Tensor):
    return x.detach().cpu().double().numpy()


class _LogBesselIv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, nu):
        ctx.nu = nu
        ctx.save_for_backward(x)
        return torch.as_tensor(_log_iv_numpy(nu, _numpy(x)), dtype=x.dtype, device=x.device)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        # d/dx ln I_nu(x) = I_nu'(x) / I_nu(x) = I_{nu+1}(x) / I_nu(x) + nu / x
        return grad * (bessel_ratio(ctx.nu, x) + ctx.nu / x), None


def _check_positive(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not torch.isfinite(x).all() or (x <= 0).any():
        raise ValueError(f"{name} must be finite and > 0, got values in "
                         f"[{x.min().item():.3g}, {x.max().item():.3g}]")


def log_bessel_iv(nu: float, x: torch.Tensor) -> torch.Tensor:
    r""":math:`\ln I_\nu(x)`, the modified Bessel function of the first kind, for ``x > 0``,
    differentiable in ``x``.

    Computed in float64: for ``x <= 50`` from the power series (positive terms, so every
    digit is kept, including where :math:`I_\nu` underflows a double: ``nu = 31, x = 1e-4``
    or ``nu = 127, x = 10``, where the direct formula gives NaN); above, from SciPy's
    exponentially scaled ``ive``, or Debye's uniform expansion where even that underflows.
    """
    _check_positive(x, "x")
    if not nu >= 0:
        raise ValueError(f"nu must be >= 0, got {nu}")
    return _LogBesselIv.apply(x, float(nu))


def bessel_ratio(nu: float, x: torch.Tensor) -> torch.Tensor:
    r""":math:`I_{\nu+1}(x) / I_\nu(x)` (no gradient), accurate for every ``x > 0``."""
    return torch.as_tensor(_ratio_numpy(nu, _numpy(x)), device=x.device).to(x.dtype)

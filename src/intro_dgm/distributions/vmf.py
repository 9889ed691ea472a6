"""The von Mises-Fisher distribution on the unit sphere: its normaliser and log-density, its KL
to the uniform distribution on the sphere (evaluated so that no digit cancels), Wood's
rejection sampler with an implicit reparameterisation gradient for the concentration, and
uniform points on the sphere (the hyperspherical VAE's posterior and prior).
"""
from __future__ import annotations

import functools
import math

import torch

from ..utils import check_int
from .bessel import (_check_positive, _hankel_min_x, _hankel_series, _log_s_numpy, _numpy,
                     _one_minus_ratio_numpy, _ratio_numpy, bessel_ratio, log_bessel_iv)
from .densities import LOG_2PI


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


def _mean_length_derivative(m: int, kappa, a):
    r""":math:`A_m'(\kappa) = 1 - A_m^2 - \frac{m-1}{\kappa}A_m` (from the Bessel recurrences)."""
    return 1 - a * a - (m - 1) / kappa * a


def _kl_large_kappa(m: int, k):
    r"""The KL for ``kappa >=`` :func:`~.bessel._hankel_min_x`: with Hankel's
    :math:`\ln I_\nu = \kappa - \frac12\ln 2\pi\kappa + \ln P_\nu` and
    :math:`\kappa A_m = \kappa - \kappa\delta`, the two :math:`\kappa` (each ~1e8 at
    ``kappa = 1e8``, against a KL of 18) cancel on paper:
    :math:`\mathrm{KL} = (\nu+\tfrac12)\ln\kappa + \tfrac12\ln 2\pi - \nu\ln 2 - \ln\Gamma(\nu+1)
    - \ln P_\nu - \kappa\delta`, with :math:`\kappa\delta \to \nu + \frac12`."""
    import numpy as np
    from scipy.special import gammaln

    nu = 0.5 * m - 1
    return ((nu + 0.5) * np.log(k) + 0.5 * np.log(2 * np.pi) - nu * np.log(2) - gammaln(nu + 1)
            - _hankel_series(nu, k, "log_p") - k * _hankel_series(nu, k, "delta"))


def _kl_numpy(m: int, k):
    """KL[vMF || U] (float64, 1-D ``k``): :func:`kl_vmf_uniform`'s form, Hankel's at large kappa."""
    import numpy as np

    nu = 0.5 * m - 1
    out = np.empty_like(k)
    large = k >= _hankel_min_x(nu)
    ks = k[~large]
    # KL = kappa A_m + ln C_m + ln|S^{m-1}| = kappa A_m - ln S_nu(kappa): the constants cancel
    # exactly on paper (see kl_vmf_uniform), so they are never subtracted in floats.
    out[~large] = ks * _ratio_numpy(nu, ks) - _log_s_numpy(nu, ks)
    out[large] = _kl_large_kappa(m, k[large])
    return out


def _dkl_dkappa_numpy(m: int, k):
    r""":math:`d\mathrm{KL}/d\kappa = A + \kappa A' - A = \kappa A_m'(\kappa)`
    (:math:`d\ln C_m/d\kappa = -A_m`). At large kappa :math:`A_m' \approx (m-1)/(2\kappa^2)` is
    what is left of :math:`1 - A_m^2 - \frac{m-1}{\kappa}A_m` after cancelling ~16 digits at
    ``kappa = 1e8``: there it is Hankel's series for :math:`\kappa A_m'` itself."""
    import numpy as np

    nu = 0.5 * m - 1
    out = np.empty_like(k)
    large = k >= _hankel_min_x(nu)
    ks = k[~large]
    out[~large] = ks * _mean_length_derivative(m, ks, _ratio_numpy(nu, ks))
    out[large] = _hankel_series(nu, k[large], "x_ratio_prime")
    return out


class _KLvMFUniform(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kappa, m):
        ctx.m = m
        ctx.save_for_backward(kappa)
        kl = _kl_numpy(m, _numpy(kappa).reshape(-1)).reshape(kappa.shape)
        return torch.as_tensor(kl, device=kappa.device).to(kappa.dtype)

    @staticmethod
    def backward(ctx, grad):
        (kappa,) = ctx.saved_tensors
        d = _dkl_dkappa_numpy(ctx.m, _numpy(kappa).reshape(-1)).reshape(kappa.shape)
        return grad * torch.as_tensor(d, device=kappa.device).to(kappa.dtype), None


def kl_vmf_uniform(m: int, kappa: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}[\mathrm{vMF}(\mu, \kappa)\,\|\,U(S^{m-1})] = \kappa A_m(\kappa) + \ln C_m(\kappa)
    + \ln |S^{m-1}|`, with :math:`A_m(\kappa) = I_{m/2}(\kappa) / I_{m/2-1}(\kappa) = \mathbb{E}[\mu^\top z]`.

    Substituting :math:`I_\nu(\kappa) = (\kappa/2)^\nu S_\nu(\kappa)/\Gamma(\nu+1)`
    (:math:`\nu = m/2 - 1`) into :math:`\ln C_m` every constant cancels against
    :math:`\ln|S^{m-1}|`, leaving :math:`\mathrm{KL} = \kappa A_m(\kappa) - \ln S_\nu(\kappa)`,
    which is evaluated as such: accurate to full relative precision even where the KL is
    :math:`\approx \kappa^2/(2m)`, e.g. 2e-9 at ``m = 256, kappa = 1e-3``. For large
    ``kappa`` (from 25 for ``m <= 17``), where :math:`\kappa A_m` and :math:`\ln S_\nu` are
    both :math:`\approx\kappa` and :math:`A_m` is :math:`1 - O(1/\kappa)`, the KL and its
    gradient :math:`\kappa A_m'(\kappa)` come from Hankel's expansion instead, with the
    :math:`\kappa` cancelled on paper (:func:`_kl_large_kappa`): both agree with 50-digit
    references to 1e-8 relative, or better, up to ``kappa = 1e8``. It does not depend on
    :math:`\mu`. Differentiable in ``kappa``.
    """
    check_int(m, "m", minimum=2)
    _check_positive(kappa, "kappa")
    return _KLvMFUniform.apply(kappa, m)


def _check_sphere_dim(m: int, name: str = "m") -> int:
    check_int(m, name)
    if m < 2:
        raise ValueError(f"{name} must be >= 2: the unit sphere S^{{m-1}} in R^m with m = {m} "
                         f"has dimension {m - 1} (no directions to spread over)")
    return m


#: Gauss-Legendre nodes for the implicit gradient's integral (a smooth integrand in theta;
#: 96 nodes give 1e-10 relative accuracy over the tested m and kappa).
_GL_NODES = 96


@functools.lru_cache(maxsize=1)
def _gauss_legendre():
    """Nodes and weights on [-1, 1], computed once (an eigenproblem of a 96 x 96 matrix)."""
    import numpy as np

    return np.polynomial.legendre.leggauss(_GL_NODES)


#: Where :func:`_dw_dkappa` cuts the side that decays from theta_w: past the cut the
#: integrand is below e^-100 = 4e-44 of its value at theta_w, a margin that covers the factor
#: cos theta - A_m (at most 2 there, ~1/kappa where the integral's mass is); against 40-digit
#: mpmath quadrature the gradient is right to 2e-13 for m <= 256, kappa up to 1e8.
_TAIL_DROP = 100.0


def _dw_dkappa(y, kappa, m: int):
    r"""The implicit reparameterisation gradient :math:`\partial w/\partial\kappa` of
    :math:`w = \mu^\top z`, given ``y = 1 - w`` (float64 numpy arrays).

    ``w`` has the density :math:`p(w) \propto e^{\kappa w}(1-w^2)^{(m-3)/2}` and CDF ``F``;
    keeping the sample's quantile :math:`F(w;\kappa) = u` fixed while :math:`\kappa` moves,
    :math:`\partial w/\partial\kappa = -\partial_\kappa F(w;\kappa) / p(w)` (Figurnov et al.,
    2018), with :math:`\partial_\kappa F(w) = \int_{-1}^w (t - A_m(\kappa))\,p(t)\,dt
    = -\int_w^1 (t - A_m)\,p(t)\,dt`. Substituting :math:`t = \cos\theta`
    (:math:`(1-t^2)^{(m-3)/2}dt = \sin^{m-2}\theta\,d\theta`, smooth for every ``m >= 2``),
    the integral runs over the side of ``w`` on which :math:`t - A_m` keeps one sign, so
    nothing cancels. It takes ``1 - w`` and :math:`1 - A_m`, not ``w`` and :math:`A_m`: at
    ``kappa = 1e8`` both are 1e-8, and :math:`t - A_m = (1 - A_m) - (1 - t)` would lose half
    their digits if formed from numbers near 1.

    On the side :math:`\theta > \theta_w` the integrand decays from :math:`\theta_w` (at a
    large kappa) within :math:`\sim 1/\sqrt\kappa` -- 1e-4 at 1e8, finer than the nodes over
    :math:`[\theta_w, \pi]`; there the nodes cover :math:`[\theta_w, \theta_w + \Delta]` with
    :math:`\Delta` where a bound on the exponent has fallen by :data:`_TAIL_DROP`.
    """
    import numpy as np

    nu = 0.5 * m - 1
    delta = _one_minus_ratio_numpy(nu, kappa)  # 1 - A_m
    nodes, weights = _gauss_legendre()
    y = np.clip(y, 0.0, 2.0)
    theta_w = 2 * np.arcsin(np.sqrt(y / 2))  # arccos(w), accurate for w near 1
    upper = y <= delta  # w >= A: t in [w, 1], theta in [0, theta_w]; else t in [-1, w]
    lo = np.where(upper, 0.0, theta_w)
    hi = np.where(upper, theta_w, np.pi)
    # ln of the integrand, kappa cos theta + (m - 2) ln sin theta (+ const), has the slope
    # -slope at theta_w and a curvature below -kappa cos theta <= -kappa / 2 up to pi / 3; so
    # where slope >= 0 it decreases on [theta_w, pi], by at least slope u + curve u^2 / 2 at
    # theta_w + u, which is _TAIL_DROP at u = delta_theta.
    sin_w, cos_w = np.sin(theta_w), 1 - y
    slope = kappa * sin_w - (m - 2) * cos_w / np.maximum(sin_w, 1e-300)
    curve = 0.5 * kappa
    delta_theta = 2 * _TAIL_DROP / (slope + np.sqrt(slope ** 2 + 2 * curve * _TAIL_DROP))
    cut = ~upper & (slope >= 0) & (theta_w + delta_theta < np.pi / 3)
    hi = np.where(cut, theta_w + delta_theta, hi)
    lo, hi = lo[:, None], hi[:, None]
    theta = lo + (hi - lo) * (nodes + 1) / 2  # (N, nodes)
    log_sin = np.log(np.maximum(np.sin(theta), 1e-300))
    log_sin_w = np.log(np.maximum(sin_w, 1e-300))[:, None]
    one_minus_cos = 2 * np.sin(theta / 2) ** 2
    # p(t) dt / p(w) = exp(kappa (cos theta - w)) sin^{m-2} theta / sin^{m-3} theta_w d theta
    log_ratio = kappa[:, None] * (y[:, None] - one_minus_cos) + (m - 2) * log_sin \
        - (m - 3) * log_sin_w
    t_minus_a = delta[:, None] - one_minus_cos  # cos theta - A_m
    integral = (t_minus_a * np.exp(log_ratio) * weights).sum(1) * (hi - lo)[:, 0] / 2
    return np.where(upper, integral, -integral)


class _ImplicitW(torch.autograd.Function):
    r"""``(w, s)`` with ``s = sqrt(1 - w^2)``, from ``y = 1 - w`` and ``1 + w`` in float64, cast
    to ``kappa``'s dtype only at the end (in float32 ``w`` rounds to 1 from ``kappa ~ 1e7``;
    ``s`` keeps its digits); their gradients to ``kappa`` come from :func:`_dw_dkappa` and
    :math:`ds/d\kappa = -(w/s)\,dw/d\kappa`, also in float64."""

    @staticmethod
    def forward(ctx, kappa, y, one_plus_w, m):
        ctx.m = m
        w, s = 1 - y, torch.sqrt(y * one_plus_w)  # (1 - w)(1 + w): no 1 - w^2 to cancel
        ctx.save_for_backward(kappa, y, w, s)
        return w.to(kappa.dtype), s.to(kappa.dtype)

    @staticmethod
    def backward(ctx, grad_w, grad_s):
        kappa, y, w, s = ctx.saved_tensors
        d = _dw_dkappa(_numpy(y).ravel(), _numpy(kappa).ravel(), ctx.m).reshape(y.shape)
        dw = torch.as_tensor(d, device=y.device)
        ds = torch.where(s > 0, -w / torch.where(s > 0, s, 1.0) * dw, torch.zeros_like(dw))
        out = grad_w.double() * dw + grad_s.double() * ds
        return out.to(kappa.dtype), None, None, None


def _wood_sample_w(kappa: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(1 - w, 1 + w)`` for ``w = mu^T z``, one vMF sample per entry of ``kappa`` (1-D,
    float64): Wood's (1994) rejection sampler, vectorised -- every round proposes for all
    entries still waiting.

    Proposal :math:`w = \frac{1-(1+b)\epsilon}{1-(1-b)\epsilon}`, :math:`\epsilon\sim
    \mathrm{Beta}(\frac{m-1}2,\frac{m-1}2)`; accept when :math:`\kappa w + (m-1)\ln(1-x_0w) - c
    \ge \ln u`, with :math:`b = \frac{m-1}{2\kappa + \sqrt{4\kappa^2+(m-1)^2}}` (the stable
    form of :math:`\frac{-2\kappa+\sqrt{4\kappa^2+(m-1)^2}}{m-1}`), :math:`x_0 = \frac{1-b}{1+b}`,
    :math:`c = \kappa x_0 + (m-1)\ln(1-x_0^2)`. With :math:`\epsilon = G_1/(G_1+G_2)`,
    :math:`1 - w = \frac{2bG_1}{G_2 + bG_1}` and :math:`1 + w = \frac{2G_2}{G_2 + bG_1}`,
    sums of positive numbers: both keep every digit where ``w`` is within 1e-8 of 1 or -1.
    The test in the same terms, :math:`\kappa((1-x_0) - (1-w)) + (m-1)(\ln(1 + \frac{x_0
    (1-w)}{1-x_0}) - \ln(1+x_0))`, with :math:`1 - x_0 = \frac{2b}{1+b}`.
    """
    m1 = m - 1.0
    b = m1 / (2 * kappa + torch.sqrt(4 * kappa ** 2 + m1 ** 2))
    x0 = (1 - b) / (1 + b)
    one_minus_x0 = 2 * b / (1 + b)
    # Beta(a, a) as G1 / (G1 + G2) with G1, G2 ~ Gamma(a): twice as fast as torch's Beta.
    gamma = torch.distributions.Gamma(torch.tensor(m1 / 2, dtype=kappa.dtype, device=kappa.device),
                                      torch.tensor(1.0, dtype=kappa.dtype, device=kappa.device))
    y, one_plus_w = torch.empty_like(kappa), torch.empty_like(kappa)
    todo = torch.arange(kappa.numel(), device=kappa.device)
    while todo.numel():
        bt, x0t, ot, kt = b[todo], x0[todo], one_minus_x0[todo], kappa[todo]
        g = gamma.sample((2, todo.numel()))
        denominator = g[1] + bt * g[0]
        y_prop, one_plus_prop = 2 * bt * g[0] / denominator, 2 * g[1] / denominator
        log_u = torch.log(torch.rand_like(y_prop))
        accept = kt * (ot - y_prop) + m1 * (torch.log1p(x0t * y_prop / ot)
                                            - torch.log1p(x0t)) >= log_u
        y[todo[accept]], one_plus_w[todo[accept]] = y_prop[accept], one_plus_prop[accept]
        todo = todo[~accept]
    return y, one_plus_w


class VonMisesFisher:
    r"""The von Mises-Fisher distribution on the unit sphere :math:`S^{m-1}\subset\mathbb{R}^m`,

    .. math:: \mathrm{vMF}(z\mid\mu,\kappa) = C_m(\kappa)\,e^{\kappa\mu^\top z}, \qquad
              C_m(\kappa) = \frac{\kappa^{m/2-1}}{(2\pi)^{m/2} I_{m/2-1}(\kappa)} .

    Args:
        mu: ``(B, m)``, unit rows (the mean directions), ``m >= 2``.
        kappa: ``(B,)`` or ``(B, 1)``, the concentrations, finite and ``> 0``.

    Works in the dtype it is given (float64 in, float64 out). Sampling: Wood's rejection
    sampler for :math:`w = \mu^\top z`, a uniform direction orthogonal to ``e_1`` for the rest,
    and the Householder reflection that maps ``e_1`` to ``mu``. Gradients: to ``mu`` through
    the reflection; to ``kappa`` by implicit reparameterisation of ``w`` (exact, unbiased --
    unlike the pathwise gradient through the accepted proposal alone).
    """

    def __init__(self, mu: torch.Tensor, kappa: torch.Tensor):
        if not isinstance(mu, torch.Tensor) or mu.dim() != 2:
            raise ValueError(f"mu must be a (B, m) tensor of unit rows, got "
                             f"{tuple(mu.shape) if isinstance(mu, torch.Tensor) else type(mu).__name__}")
        self.m = _check_sphere_dim(mu.shape[1], "mu.shape[1] (m)")
        if not isinstance(kappa, torch.Tensor):
            raise TypeError(f"kappa must be a torch.Tensor, got {type(kappa).__name__}")
        if kappa.dim() == 2 and kappa.shape[1] == 1:
            kappa = kappa[:, 0]
        if kappa.shape != mu.shape[:1]:
            raise ValueError(f"kappa must have shape ({mu.shape[0]},) or ({mu.shape[0]}, 1) to "
                             f"match mu {tuple(mu.shape)}, got {tuple(kappa.shape)}")
        _check_positive(kappa, "kappa")
        norm_error = (mu.detach().norm(dim=1) - 1).abs().max().item()
        tol = 1e-10 if mu.dtype == torch.float64 else 1e-5
        if not norm_error <= tol:
            raise ValueError(f"mu must have rows of unit norm (|norm - 1| <= {tol:g}), got an "
                             f"error of {norm_error:.3g}; normalise it: mu / mu.norm(dim=-1, keepdim=True)")
        self.mu, self.kappa = mu, kappa

    def rsample(self, n: int | None = None) -> torch.Tensor:
        """Reparameterised samples ``(n, B, m)`` (``(B, m)`` when ``n`` is None)."""
        if n is not None:
            check_int(n, "n", minimum=1)
        reps = 1 if n is None else n
        B, m = self.mu.shape
        kappa = self.kappa.repeat(reps)  # row order (n, B)
        with torch.no_grad():
            # 1 - w and 1 + w in float64, and sqrt(1 - w^2) from them before any cast: for
            # large kappa, w = 1 - O(1/kappa), which float32 rounds to 1 from kappa ~ 1e7.
            # The direction v needs no such care.
            y, one_plus_w = _wood_sample_w(kappa.detach().double(), m)
            v = torch.randn(reps * B, m - 1, dtype=self.mu.dtype, device=self.mu.device)
            inv_norm = 1 / v.norm(dim=1)
        w, s = _ImplicitW.apply(kappa, y, one_plus_w, m)
        w = w.view(reps, B)
        # z' = (w, s v / |v|), s = sqrt(1 - w^2): w along e_1, a uniform direction orthogonal
        # to it; then z = H z' with H = I - 2 u u^T / |u|^2, u = e_1 - mu, the reflection
        # that maps e_1 to mu. Since v has no e_1 part, u^T z' = w u_1 + s v^T u_rest, so H is
        # applied without ever forming z' (one pass over the (n, B, m - 1) numbers).
        s = (s.view(reps, B) * inv_norm.view(reps, B))[..., None]
        v = v.view(reps, B, m - 1)
        u = -self.mu.clone()
        u[:, 0] = u[:, 0] + 1
        sq = (u * u).sum(-1)
        # mu = e_1 exactly: u = 0 and H is the identity (the coefficient 0 avoids 0/0 there).
        coef = torch.where(sq > 1e-30, 2 / sq.clamp(min=1e-30), torch.zeros_like(sq))
        v_scaled = v * s
        proj = (w * u[:, 0] + torch.einsum("nbk,bk->nb", v_scaled, u[:, 1:])) * coef
        z_rest = torch.addcmul(v_scaled, proj[..., None], u[:, 1:], value=-1)
        z = torch.cat([(w - proj * u[:, 0])[..., None], z_rest], dim=-1)
        return z if n is not None else z[0]

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``ln vMF(z | mu, kappa)`` for unit ``z`` of shape ``(..., B, m)``; returns ``(..., B)``."""
        if z.shape[-2:] != self.mu.shape:
            raise ValueError(f"z must have shape (..., {self.mu.shape[0]}, {self.m}), got "
                             f"{tuple(z.shape)}")
        return log_vmf(z, self.mu, self.kappa)

    def mean_length(self) -> torch.Tensor:
        r""":math:`A_m(\kappa) = \mathbb{E}[\mu^\top z] = I_{m/2}(\kappa)/I_{m/2-1}(\kappa)`, ``(B,)`` (no gradient)."""
        return bessel_ratio(0.5 * self.m - 1, self.kappa)

    def entropy(self) -> torch.Tensor:
        r""":math:`H = -\ln C_m(\kappa) - \kappa A_m(\kappa)`, ``(B,)``."""
        return log_sphere_area(self.m) - self.kl_uniform()

    def kl_uniform(self) -> torch.Tensor:
        """KL to the uniform distribution on the sphere, ``(B,)`` (:func:`kl_vmf_uniform`)."""
        return kl_vmf_uniform(self.m, self.kappa)


def sample_sphere_uniform(n: int, m: int, dtype=None, device=None) -> torch.Tensor:
    """``n`` points uniform on :math:`S^{m-1}`: normalised standard Gaussians (the Gaussian
    is rotation invariant, so its direction is uniform)."""
    check_int(n, "n", minimum=1)
    _check_sphere_dim(m)
    x = torch.randn(n, m, dtype=dtype, device=device)
    return x / x.norm(dim=1, keepdim=True)

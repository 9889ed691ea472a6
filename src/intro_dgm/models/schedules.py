r"""Noise schedules of a diffusion model: :math:`\beta_1..\beta_T`, by name.

Each schedule is a function of the number of steps and its own end points, registered in
:data:`SCHEDULES`; :func:`make_betas` looks one up by name and returns the float64
:math:`\beta_t` (shape ``(T,)``) that :class:`~intro_dgm.models.diffusion.DDGM` turns into
its buffers (:math:`\alpha_t = 1 - \beta_t`, :math:`\bar\alpha_t = \prod_{s\le t}\alpha_s`).
"""
from __future__ import annotations

import math

import torch

from ..utils import Registry, check_int


def _check_beta(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def _first_beta(T: int, beta_1: float | None) -> float:
    """``beta_1``, by default Ho et al.'s 1e-4 at T = 1000 scaled by 1000/T (capped)."""
    return _check_beta(min(1e-4 * 1000 / T, 0.999) if beta_1 is None else beta_1, "beta_1")


def linear(T: int, beta_1=None, beta_T=None, log_snr_1=None, log_snr_T=None) -> torch.Tensor:
    r""":math:`\beta_t` evenly from ``beta_1`` to ``beta_T`` (Ho et al., 2020: 1e-4 to 0.02
    for T = 1000; the defaults scale both by 1000/T, capped at 0.999, so a short chain covers
    the same total noise)."""
    b1 = _first_beta(T, beta_1)
    bT = _check_beta(min(0.02 * 1000 / T, 0.999) if beta_T is None else beta_T, "beta_T")
    return torch.linspace(b1, bT, T, dtype=torch.float64) if T > 1 else \
        torch.tensor([bT], dtype=torch.float64)


def constant(T: int, beta_1=None, beta_T=None, log_snr_1=None, log_snr_T=None) -> torch.Tensor:
    r""":math:`\beta_t = ` ``beta_1`` for every t (the book's Example 4.1)."""
    b1 = _first_beta(T, beta_1)
    if beta_T is not None:
        raise ValueError("beta_T does not apply to the constant schedule (use beta_1)")
    return torch.full((T,), b1, dtype=torch.float64)


#: a beta_t is kept in [BETA_MIN, BETA_MAX]: below 1e-8 a step adds no noise that float32 can
#: hold (and its log-variance is -18.4); at 1 a step would erase z_{t-1} entirely
BETA_MIN, BETA_MAX = 1e-8, 0.999


def _betas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    r""":math:`\beta_t = 1 - \bar\alpha_t/\bar\alpha_{t-1}`, clamped to ``[BETA_MIN, BETA_MAX]``
    (the cosine schedule's own cap of 0.999, Nichol & Dhariwal, 2021)."""
    prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
    return torch.clamp(1.0 - alphas_cumprod / prev, min=BETA_MIN, max=BETA_MAX)


def cosine(T: int, beta_1=None, beta_T=None, log_snr_1=None, log_snr_T=None) -> torch.Tensor:
    r""":math:`\bar\alpha_t = f(t)/f(0)`, :math:`f(t) = \cos^2\big(\frac{t/T + s}{1+s}
    \frac\pi2\big)`, s = 0.008, each :math:`\beta_t` capped at 0.999 (Nichol & Dhariwal, 2021)."""
    s = 0.008
    t = torch.arange(1, T + 1, dtype=torch.float64)
    f = torch.cos((torch.cat([t.new_zeros(1), t]) / T + s) / (1 + s) * math.pi / 2) ** 2
    return _betas_from_alphas_cumprod(f[1:] / f[0])


def log_snr(T: int, beta_1=None, beta_T=None, log_snr_1=None, log_snr_T=None) -> torch.Tensor:
    r"""The log signal-to-noise ratio :math:`\rho_t = \ln\frac{\bar\alpha_t}{1-\bar\alpha_t}`
    falls linearly from ``log_snr_1`` (default 10) to ``log_snr_T`` (default -10), so
    :math:`\bar\alpha_t = \mathrm{sigmoid}(\rho_t)`."""
    t = torch.arange(1, T + 1, dtype=torch.float64)
    hi = 10.0 if log_snr_1 is None else float(log_snr_1)
    lo = -10.0 if log_snr_T is None else float(log_snr_T)
    if not hi > lo:
        raise ValueError(f"log_snr_1 must be > log_snr_T (noise grows along the chain), got "
                         f"{hi} and {lo}")
    lam = hi + (lo - hi) * (t - 1) / max(T - 1, 1) if T > 1 else t.new_full((1,), lo)
    alphas_cumprod = torch.sigmoid(lam)
    prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
    raw = 1.0 - alphas_cumprod / prev
    # the end points are asked for by name: refuse what a clamp would silently move
    if raw[0] < BETA_MIN:
        raise ValueError(f"log_snr_1 = {hi} is too high: beta_1 = {raw[0].item():.1e} is below "
                         f"{BETA_MIN:g}, where a step adds no noise float32 can hold (log_snr_1 "
                         f"must be at most {-math.log(BETA_MIN / (1 - BETA_MIN)):.2f})")
    if raw.max() > BETA_MAX:
        raise ValueError(f"log_snr_T = {lo} over {T} steps drops the log-SNR too fast: a step's "
                         f"beta reaches {raw.max().item():.4f} > {BETA_MAX} (take more steps or a "
                         "higher log_snr_T)")
    return torch.clamp(raw, min=BETA_MIN, max=BETA_MAX)


#: noise schedules by name (a diffusion config's ``schedule``, the CLI's ``--schedule``)
SCHEDULES = Registry("schedule", {"linear": linear, "constant": constant, "cosine": cosine,
                                  "log-snr": log_snr})


def make_betas(schedule: str, steps: int, beta_1: float | None = None,
               beta_T: float | None = None, log_snr_1: float | None = None,
               log_snr_T: float | None = None) -> torch.Tensor:
    r"""The noise schedule :math:`\beta_1..\beta_T` (float64, shape ``(T,)``) of the schedule
    named ``schedule`` (one of :data:`SCHEDULES`; each function's docstring gives its form),
    with ``beta_1``/``beta_T`` (linear, constant) or ``log_snr_1``/``log_snr_T`` (log-snr),
    ``None`` for the defaults."""
    T = check_int(steps, "steps", minimum=1)
    return SCHEDULES[schedule](T, beta_1, beta_T, log_snr_1, log_snr_T)


def log_snr_of(betas: torch.Tensor) -> torch.Tensor:
    r""":math:`\rho_t = \ln\frac{\bar\alpha_t}{1-\bar\alpha_t}` ``(T,)`` float64 of a schedule:
    :math:`\ln\bar\alpha_t = \sum_{s\le t}\ln(1-\beta_s)` and :math:`\ln(1-\bar\alpha_t)
    = \ln(-\mathrm{expm1}(\ln\bar\alpha_t))` stay exact where :math:`\bar\alpha_t` is within
    float rounding of 1."""
    log_alpha_bar = torch.cumsum(torch.log1p(-torch.as_tensor(betas, dtype=torch.float64)), 0)
    return log_alpha_bar - torch.log(-torch.expm1(log_alpha_bar))


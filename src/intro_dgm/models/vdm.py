r"""The diffusion model in continuous time (chapter: diffusion models, the continuous view;
Kingma et al., 2021, Variational Diffusion Models).

Time runs from :math:`t = 0` (the data end) to :math:`t = 1` (the noise end) and the forward
process is described by its log signal-to-noise ratio :math:`\lambda(t)`, decreasing from
:math:`\lambda_{\max}` to :math:`\lambda_{\min}`:
:math:`q(z_t|x) = \mathcal N(\alpha_t\tilde x, \sigma_t^2 I)` with
:math:`\alpha_t^2 = \mathrm{sigmoid}(\lambda_t)`, :math:`\sigma_t^2 = \mathrm{sigmoid}(-\lambda_t)`
(variance preserving: :math:`\alpha_t^2 + \sigma_t^2 = 1`, :math:`\lambda_t = \ln
\alpha_t^2/\sigma_t^2`), :math:`\tilde x = 2x/(V-1) - 1`. The schedule between the end points
is :math:`\lambda(t) = \lambda_{\max} + (\lambda_{\min} - \lambda_{\max})\,g(t)` with a fixed
shape :math:`g` (:data:`SHAPES`); the end points may be learned.

The bound has three terms, :math:`\ln p(x) \ge \mathbb E_q \ln p_\theta(x|z_0) -
\mathrm{KL}[q(z_1|x)\Vert\mathcal N(0, I)] - \mathcal L_\infty(x)`, and the diffusion term is an
integral over time, or over the log-SNR,

.. math::
    \mathcal L_\infty(x) = -\tfrac12\,\mathbb E_{t\sim U(0,1),\,\epsilon}\big[\lambda'(t)\,
    \Vert\epsilon - \hat\epsilon_\theta(z_t; \lambda_t)\Vert^2\big]
    = \tfrac12 \int_{\lambda_{\min}}^{\lambda_{\max}} \mathbb E_\epsilon\,
    \Vert\tilde x - \hat x_\theta(z_\lambda; \lambda)\Vert^2\, e^{\lambda}\, d\lambda,

so that, with the network conditioned on :math:`\lambda` rather than on :math:`t`, it
depends on the schedule only through its end points. Cut into T steps
:math:`s = (i-1)/T \to t = i/T`, the same model is a hierarchical VAE with T + 1 latents whose
step terms are :math:`\tfrac12(e^{\lambda_s} - e^{\lambda_t})\,\mathbb E\Vert\tilde x -
\hat x_\theta(z_t;\lambda_t)\Vert^2`; that discrete bound lies below the continuous one and
rises towards it as T grows. Training minimises the continuous bound (one time per
example); :meth:`VDM.bound` (early stopping) and :meth:`VDM.log_weight_terms` (every stored
ELBO and importance-weighted NLL) are those of the discretisation at ``steps`` T (say which T
when you quote them); :meth:`VDM.continuous_bound` estimates the T = ∞ bound.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..decoders import CategoricalDecoder, check_pixels
from ..distributions import log_normal_diag64
from ..nets import sinusoidal_embedding
from ..utils import check_choice, check_int
from .base import GenerativeModel, follows_device

#: the shape g(t) of the log-SNR between its end points (both g(0) = 0, g(1) = 1)
SHAPES = ("linear", "sine")
#: the data term p(x|z_0): a learned categorical decoder on z_0, or the fixed decoder of
#: Kingma et al. (each pixel value v weighted by N(z_0; alpha_0 x_v, sigma_0^2))
DATA_TERMS = ("categorical", "fixed")
#: the log-SNR enters the step embedding multiplied by this: the embedding's fastest
#: frequency (1) then resolves log-SNRs 0.1 apart, its slowest spans thousands
LOG_SNR_SCALE = 10.0


def shape(t: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    r""":math:`g(t)` and :math:`g'(t)` of shape ``name``: ``linear`` :math:`g = t`; ``sine``
    :math:`g = \sin^2(\pi t/2)`, flat at both ends (another path between the same ends)."""
    if name == "linear":
        return t, torch.ones_like(t)
    return torch.sin(0.5 * math.pi * t) ** 2, 0.5 * math.pi * torch.sin(math.pi * t)


class VDM(GenerativeModel):
    r"""A continuous-time variational diffusion model (see the module docstring).

    Args:
        eps_net: :math:`\hat\epsilon_\theta`, mapping ``[z_t, fourier(z_t), embedding(λ_t)]``
            to ``(B, D)``.
        input_dim: D; ``num_vals``: V, the pixel values.
        log_snr_max, log_snr_min: the end points :math:`\lambda(0) > \lambda(1)`.
        learn_ends: learn the two end points with the network (else fixed).
        schedule_shape: one of :data:`SHAPES`.
        data_decoder: the categorical decoder on :math:`z_0`, or ``None`` for the fixed
            decoder of Kingma et al.
        fourier: append :math:`\sin, \cos` of :math:`z_t` at the pixel-bin frequencies
            :math:`\pi/\Delta` and :math:`2\pi/\Delta`, :math:`\Delta = 2/(V-1)` the distance
            between neighbouring pixel values (features that change within one bin, where the
            last steps of the chain decide which value a pixel takes).
        embedding_dim: the size of the log-SNR embedding.
        steps: T of the discretisation that :meth:`bound`, :meth:`log_weight_terms` and
            :meth:`sample` use (training uses the continuous objective).
    """

    def __init__(self, eps_net: nn.Module, input_dim: int, num_vals: int = 17,
                 log_snr_max: float = 4.0, log_snr_min: float = -10.0, learn_ends: bool = True,
                 schedule_shape: str = "linear", data_decoder: CategoricalDecoder | None = None,
                 fourier: bool = True, embedding_dim: int = 32, steps: int = 100):
        super().__init__()
        if not log_snr_max > log_snr_min:
            raise ValueError(f"log_snr_max must exceed log_snr_min (the log-SNR falls from the "
                             f"data to the noise), got {log_snr_max} and {log_snr_min}")
        self.input_dim = check_int(input_dim, "input_dim", minimum=1)
        self.num_vals = check_int(num_vals, "num_vals", minimum=2)
        self.schedule_shape = check_choice(schedule_shape, "schedule_shape", SHAPES)
        self.steps = check_int(steps, "steps", minimum=1)
        self.eps_net, self.data_decoder = eps_net, data_decoder
        self.fourier, self.embedding_dim = fourier, embedding_dim
        ends = torch.tensor([float(log_snr_max), float(log_snr_min)])
        if learn_ends:
            self.ends = nn.Parameter(ends)
        else:
            self.register_buffer("ends", ends)

    # ------------------------------------------------------------------ the schedule
    def log_snr(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`\lambda(t)` and :math:`\lambda'(t)` at times ``t`` (any shape, in [0, 1])."""
        lam_max, lam_min = self.ends[0], self.ends[1]
        g, dg = shape(t, self.schedule_shape)
        return lam_max + (lam_min - lam_max) * g, (lam_min - lam_max) * dg

    @staticmethod
    def alpha_sigma(lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`\alpha = \sqrt{\mathrm{sigmoid}(\lambda)}` and
        :math:`\sigma = \sqrt{\mathrm{sigmoid}(-\lambda)}`."""
        return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()

    def rescale(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\tilde x = 2x/(V-1) - 1`."""
        return 2.0 * x / (self.num_vals - 1) - 1.0

    def validate(self, x: torch.Tensor) -> None:
        check_pixels(x, self.num_vals, self.input_dim)

    # ------------------------------------------------------------------ the network
    def features(self, z: torch.Tensor) -> torch.Tensor:
        """The network's view of ``z`` ``(B, D)``: itself and, with ``fourier``, its sines and
        cosines at the pixel-bin frequencies."""
        if not self.fourier:
            return z
        omega = math.pi * (self.num_vals - 1) / 2.0  # pi / Delta
        angles = torch.cat([omega * z, 2.0 * omega * z], dim=-1)
        return torch.cat([z, torch.sin(angles), torch.cos(angles)], dim=-1)

    def predict_eps(self, z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        r""":math:`\hat\epsilon_\theta(z; \lambda)` ``(B, D)`` for ``z`` ``(B, D)`` and log-SNRs
        ``lam`` ``(B,)`` (the network sees the log-SNR, not a step number)."""
        emb = sinusoidal_embedding(LOG_SNR_SCALE * lam, self.embedding_dim)
        return self.eps_net(torch.cat([self.features(z), emb.to(z.dtype)], dim=-1))

    def predict_x0(self, z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        r""":math:`\hat x_\theta = (z - \sigma\hat\epsilon_\theta)/\alpha` ``(B, D)``."""
        alpha, sigma = self.alpha_sigma(lam.unsqueeze(-1))
        return (z - sigma * self.predict_eps(z, lam)) / alpha

    # ------------------------------------------------------------------ the three terms
    def log_px_given_z0(self, x: torch.Tensor, z_0: torch.Tensor) -> torch.Tensor:
        r"""The data term :math:`\ln p_\theta(x|z_0)` ``(B,)`` in nats of the discrete pixels."""
        if self.data_decoder is not None:
            return self.data_decoder.log_prob(x, z_0)
        alpha, sigma = self.alpha_sigma(self.ends[0])
        values = self.rescale(torch.arange(self.num_vals, device=z_0.device, dtype=z_0.dtype))
        logits = -(z_0.unsqueeze(-1) - alpha * values) ** 2 / (2 * sigma ** 2)  # (B, D, V)
        log_probs = torch.log_softmax(logits, dim=-1)
        return log_probs.gather(-1, x.long().unsqueeze(-1)).squeeze(-1).sum(-1)

    def prior_kl(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\mathrm{KL}[q(z_1|x)\Vert\mathcal N(0, I)]` ``(B,)``, per pixel
        :math:`\tfrac12(\alpha_1^2(\tilde x^2 - 1) + \ln(1 + e^{\lambda_{\min}}))` (the form
        :math:`\sigma^2 - 1 - \ln\sigma^2` written without its cancellation)."""
        lam_min = self.ends[1]
        alpha_sq = torch.sigmoid(lam_min)
        return 0.5 * (alpha_sq * (self.rescale(x) ** 2 - 1) + F.softplus(lam_min)).sum(-1)

    def _eps_error(self, x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        r""":math:`\Vert\epsilon - \hat\epsilon_\theta(z; \lambda)\Vert^2` ``(B,)`` for one draw
        :math:`z = \alpha\tilde x + \sigma\epsilon \sim q(z|x)` at each example's log-SNR."""
        alpha, sigma = self.alpha_sigma(lam.unsqueeze(-1))
        noise = torch.randn(x.shape, device=x.device)
        z = alpha * self.rescale(x) + sigma * noise
        return ((noise - self.predict_eps(z, lam)) ** 2).sum(-1)

    def diffusion_term(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        r"""One draw of :math:`-\tfrac12\lambda'(t)\Vert\epsilon - \hat\epsilon_\theta(z_t;
        \lambda_t)\Vert^2` per example at times ``t`` ``(B,)``: unbiased for
        :math:`\mathcal L_\infty(x)` when ``t`` is uniform."""
        lam, dlam = self.log_snr(t)
        return -0.5 * dlam * self._eps_error(x, lam)

    def draw_times(self, n: int, points: int = 1, device=None) -> torch.Tensor:
        r"""Times ``(points, n)`` in [0, 1), each uniform (so every term stays unbiased), on a
        low-discrepancy grid :math:`(u + j/m) \bmod 1` (Kingma et al.): with ``points`` = 1
        one :math:`u` for the batch, the grid shuffled over its ``n`` examples (the batch
        covers the time axis evenly); with ``points`` = m > 1 one :math:`u` per example and
        the grid over its m points (each example's average covers it)."""
        if points == 1:
            grid = (torch.rand((), device=device) + torch.arange(n, device=device) / n) % 1.0
            return grid[torch.randperm(n, device=device)].unsqueeze(0)
        offsets = torch.arange(points, device=device).unsqueeze(-1) / points
        return (torch.rand(n, device=device) + offsets) % 1.0

    def _ends(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The data term (one draw of :math:`z_0`) and the prior KL, ``(B,)`` each."""
        alpha_0, sigma_0 = self.alpha_sigma(self.ends[0])
        z_0 = alpha_0 * self.rescale(x) + sigma_0 * torch.randn(x.shape, device=x.device)
        return self.log_px_given_z0(x, z_0), self.prior_kl(x)

    @staticmethod
    def _bound_terms(rec, kl_T, kl_steps) -> dict[str, torch.Tensor]:
        return {"elbo": rec - kl_T - kl_steps, "rec": rec, "kl": kl_T + kl_steps,
                "kl_T": kl_T, "kl_steps": kl_steps}

    @follows_device
    def loss(self, x: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
        r"""An unbiased estimate of the continuous -ELBO per example ``(B,)``: the data term
        and the prior KL on every example, the diffusion term at one time per example
        (:meth:`draw_times`). Names as the DDGM's: ``kl_T`` the prior KL, ``kl_steps`` the
        diffusion term."""
        if beta != 1.0:
            raise ValueError("beta (KL warm-up) does not apply to a diffusion model: its "
                             "posterior has no parameters to warm up")
        self.validate(x)
        rec, kl_T = self._ends(x)
        kl_steps = self.diffusion_term(x, self.draw_times(x.shape[0], 1, x.device)[0])
        terms = self._bound_terms(rec, kl_T, kl_steps)
        return {"loss": -terms["elbo"], **terms}

    @follows_device
    @torch.no_grad()
    def continuous_bound(self, x: torch.Tensor, points: int = 64) -> dict[str, torch.Tensor]:
        r"""The continuous bound (T = ∞) per example ``(B,)``, its diffusion term averaged over
        ``points`` times per example (:meth:`draw_times`)."""
        self.validate(x)
        check_int(points, "points", minimum=1)
        rec, kl_T = self._ends(x)
        t = self.draw_times(x.shape[0], points, x.device).reshape(-1)
        kl_steps = self.diffusion_term(x.repeat(points, 1), t).view(points, -1).mean(0)
        return self._bound_terms(rec, kl_T, kl_steps)

    @follows_device
    @torch.no_grad()
    def bound(self, x: torch.Tensor, steps: int | None = None) -> dict[str, torch.Tensor]:
        r"""The bound of the discretisation at ``steps`` T (default the model's) per example
        ``(B,)``, every one of its T step terms :math:`\tfrac12(e^{\lambda_s} -
        e^{\lambda_t})\Vert\tilde x - \hat x_\theta\Vert^2 = \tfrac12\,\mathrm{expm1}(
        \lambda_s - \lambda_t)\Vert\epsilon - \hat\epsilon_\theta\Vert^2` computed (one draw
        of :math:`z_t` each): what early stopping and the training ELBO read, the model whose
        log-weights :meth:`log_weight_terms` gives."""
        self.validate(x)
        lam = self.grid(steps).float()
        B, T = x.shape[0], len(lam) - 1
        rec, kl_T = self._ends(x)
        kl_steps = torch.zeros(B, device=x.device)
        per = max(1, 16_384 // B)  # about this many rows through the network at once
        for start in range(1, T + 1, per):
            index = torch.arange(start, min(start + per, T + 1), device=x.device)
            weight = 0.5 * torch.expm1(lam[index - 1] - lam[index])
            error = self._eps_error(x.repeat(len(index), 1), lam[index].repeat_interleave(B))
            kl_steps += (weight.unsqueeze(-1) * error.view(len(index), B)).sum(0)
        return self._bound_terms(rec, kl_T, kl_steps)

    # ------------------------------------------------------------------ the discretisation
    def grid(self, steps: int | None = None) -> torch.Tensor:
        r"""The log-SNRs :math:`\lambda(i/T)`, :math:`i = 0..T`, ``(T + 1,)`` float64."""
        T = self.steps if steps is None else check_int(steps, "steps", minimum=1)
        t = torch.linspace(0.0, 1.0, T + 1, dtype=torch.float64, device=self.ends.device)
        return self.log_snr(t)[0].detach().double()

    def step_posterior(self, z_t, x0, lam_s, lam_t):
        r"""Mean and log-variance of :math:`q(z_s|z_t, x)` for :math:`\lambda_s > \lambda_t`,
        with ``x0`` the rescaled image (or the network's guess of it, for :math:`p(z_s|z_t)`):
        :math:`c = -\mathrm{expm1}(\lambda_t - \lambda_s)`, mean
        :math:`\alpha_s((1 - c)\,z_t/\alpha_t + c\,x_0)`, variance :math:`c\,\sigma_s^2`."""
        c = -torch.expm1(lam_t - lam_s)
        alpha_s, _ = self.alpha_sigma(lam_s)
        alpha_t, _ = self.alpha_sigma(lam_t)
        mean = alpha_s * ((1 - c) * z_t / alpha_t + c * x0)
        return mean, torch.log(c) + F.logsigmoid(-lam_s)

    @follows_device
    @torch.no_grad()
    def log_weight_terms(self, x: torch.Tensor, k: int, steps: int | None = None
                         ) -> dict[str, torch.Tensor]:
        r"""The shares of the log-weight of the discretisation at ``steps`` T (default the
        model's), each ``(B, k)`` float64, for ``k`` forward chains :math:`z_0, z_{1/T}, \dots,
        z_1`: ``rec`` :math:`\ln p_\theta(x|z_0)`; ``kl_T`` :math:`\ln q(z_1|x) - \ln
        \mathcal N(z_1; 0, I)`; ``kl_steps`` :math:`\sum_i \ln q(z_s|z_t, x) - \ln
        p_\theta(z_s|z_t)`, :math:`p_\theta` being :math:`q` with the image replaced by
        :math:`\hat x_\theta(z_t; \lambda_t)`. The chain is drawn forwards in float64, two
        latents held at once."""
        self.validate(x)
        check_int(k, "k", minimum=1)
        lam = self.grid(steps)
        B, T = x.shape[0], len(lam) - 1
        xk = x.repeat(k, 1)
        x0 = self.rescale(xk).double()
        alpha, sigma = self.alpha_sigma(lam[0])
        z_prev = alpha * x0 + sigma * torch.randn_like(x0)
        rec = self.log_px_given_z0(xk, z_prev.float()).double()
        kl_steps = torch.zeros(k * B, dtype=torch.float64, device=x.device)
        for i in range(1, T + 1):  # z_t ~ q(z_t|z_s): alpha_{t|s} z_s + sigma_{t|s} eps
            lam_s, lam_t = lam[i - 1], lam[i]
            alpha_ts = torch.exp(0.5 * (F.logsigmoid(lam_t) - F.logsigmoid(lam_s)))
            var_ts = -torch.expm1(lam_t - lam_s) * torch.sigmoid(-lam_t)
            z_t = alpha_ts * z_prev + var_ts.sqrt() * torch.randn_like(z_prev)
            x_hat = self.predict_x0(z_t.float(), lam_t.float().expand(k * B)).double()
            mean_q, log_var = self.step_posterior(z_t, x0, lam_s, lam_t)
            mean_p, _ = self.step_posterior(z_t, x_hat, lam_s, lam_t)
            kl_steps += (log_normal_diag64(z_prev, mean_q, log_var)
                         - log_normal_diag64(z_prev, mean_p, log_var))
            z_prev = z_t
        alpha_1, sigma_1 = self.alpha_sigma(lam[-1])
        kl_T = (log_normal_diag64(z_prev, alpha_1 * x0, 2 * sigma_1.log())
                - log_normal_diag64(z_prev, torch.zeros_like(z_prev), torch.zeros(())))
        terms = {"rec": rec, "kl": kl_T + kl_steps, "kl_T": kl_T, "kl_steps": kl_steps}
        return {name: value.view(k, B).T for name, value in terms.items()}

    # ------------------------------------------------------------------ the generative direction
    def _data_sample(self, z_0: torch.Tensor, mean: bool) -> torch.Tensor:
        if self.data_decoder is not None:
            return self.data_decoder.mean(z_0) if mean else self.data_decoder.sample(z_0)
        alpha, sigma = self.alpha_sigma(self.ends[0])
        values = self.rescale(torch.arange(self.num_vals, device=z_0.device, dtype=z_0.dtype))
        probs = torch.softmax(-(z_0.unsqueeze(-1) - alpha * values) ** 2 / (2 * sigma ** 2), -1)
        if mean:
            return probs @ torch.arange(self.num_vals, device=z_0.device, dtype=z_0.dtype)
        return torch.multinomial(probs.reshape(-1, self.num_vals), 1).view(z_0.shape).float()

    def _run_back(self, z: torch.Tensor, lam: torch.Tensor, mean: bool) -> torch.Tensor:
        n = z.shape[0]
        for i in range(len(lam) - 1, 0, -1):  # z_s ~ p(z_s|z_t), t = i/T down to 1/T
            lam_s, lam_t = lam[i - 1].float(), lam[i].float()
            x_hat = self.predict_x0(z, lam_t.expand(n))
            mu, log_var = self.step_posterior(z, x_hat, lam_s, lam_t)
            z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        return self._data_sample(z, mean)

    @torch.no_grad()
    def sample(self, n: int, mean: bool = False, steps: int | None = None) -> torch.Tensor:
        r"""``n`` images ``(n, D)``: :math:`z_1 \sim \mathcal N(0, I)`, ancestral steps of the
        discretisation at ``steps`` T down to :math:`z_0`, then :math:`x \sim p(x|z_0)`."""
        check_int(n, "n", minimum=1)
        z = torch.randn(n, self.input_dim, device=self.ends.device)
        return self._run_back(z, self.grid(steps), mean)

    @torch.no_grad()
    @follows_device
    def reconstruct(self, x: torch.Tensor, mean: bool = True, t: float = 1.0) -> torch.Tensor:
        """Noise ``x`` to time ``t`` with q (default 1: the model's code), then run the
        discretised chain back from there to an image (its mean with ``mean=True``)."""
        self.validate(x)
        lam = self.grid()
        lam = lam[: int(round(t * self.steps)) + 1]
        alpha, sigma = self.alpha_sigma(lam[-1].float())
        z = alpha * self.rescale(x) + sigma * torch.randn(x.shape, device=x.device)
        return self._run_back(z, lam, mean)

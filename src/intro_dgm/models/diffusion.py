r"""Diffusion-based deep generative models (chapter: diffusion models): the DDGM as a
hierarchical VAE with a fixed, noising posterior, and the DDPM closed forms.

The data ``x`` are integer pixels ``0..V-1``; the chain runs on the rescaled image
:math:`z_0 = \tilde x = 2x/(V-1) - 1 \in [-1, 1]`. With :math:`\alpha_t = 1 - \beta_t` and
:math:`\bar\alpha_t = \prod_{s\le t}\alpha_s`, for :math:`t = 1..T`:

* forward (the variational posterior, no parameters):
  :math:`q(z_t|z_{t-1}) = \mathcal N(\sqrt{\alpha_t}\,z_{t-1}, \beta_t I)`, hence
  :math:`q(z_t|x) = \mathcal N(\sqrt{\bar\alpha_t}\,\tilde x, (1-\bar\alpha_t) I)` and
  :math:`q(z_{t-1}|z_t, x) = \mathcal N(\tilde\mu_t, \tilde\beta_t I)` with
  :math:`\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1-\bar\alpha_t}\tilde x +
  \frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t} z_t`,
  :math:`\tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t`;
* reverse (the generative model): :math:`p(z_T) = \mathcal N(0, I)`,
  :math:`p_\theta(z_{t-1}|z_t) = \mathcal N(\mu_\theta(z_t, t), \sigma_t^2 I)` with the
  noise-prediction mean :math:`\mu_\theta = (z_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}
  \epsilon_\theta(z_t, t))/\sqrt{\alpha_t}`, and a discrete data term :math:`p_\theta(x|z_1)`
  (a discretised Gaussian around :math:`\mu_\theta(z_1, 1)` or a categorical decoder), so
  that the bound is in nats of the 17-valued pixels, comparable with every VAE.

The ELBO in its KL form, :math:`\ln p(x) \ge \mathbb E_q \ln p_\theta(x|z_1) - L_T -
\sum_{t=2}^T L_{t-1}`, :math:`L_T = \mathrm{KL}[q(z_T|x)\Vert p(z_T)]`,
:math:`L_{t-1} = \mathbb E_{q(z_t|x)}\mathrm{KL}[q(z_{t-1}|z_t,x)\Vert p_\theta(z_{t-1}|z_t)]`.
Buffers and methods are named after these formulas (``betas``, ``alphas_cumprod``,
``posterior_mean_coef1``; ``q_sample``, ``q_posterior``, ``p_mean_variance``).
"""
from __future__ import annotations

import torch
from torch import nn

from ..decoders import CategoricalDecoder, check_pixels
from ..distributions import (kl_normal_diag, log_discretised_gaussian, log_normal_diag,
                             log_normal_diag64)
from ..nets import sinusoidal_embedding
from ..utils import check_choice, check_int, check_tensor
from .base import GenerativeModel, follows_device
from .diffusion_sampling import AncestralSampling
from .schedules import log_snr_of

#: A DDGM's choices: the data term p(x|z_1); the variance sigma_t^2 of p(z_{t-1}|z_t) (the
#: forward posterior's or beta_t); what a training step minimises; how a training batch draws
#: its steps t (see :meth:`DDGM.draw_steps`).
DATA_TERMS, VARIANCES = ("discretised-gaussian", "categorical"), ("posterior", "beta")
OBJECTIVES, STEP_SAMPLING = ("elbo", "simple"), ("uniform", "stratified")
#: how ``objective='elbo'`` estimates -ELBO in training (see :meth:`DDGM.loss`)
ESTIMATORS = ("ends-every-example", "one-term")


class DDGM(AncestralSampling, GenerativeModel):
    r"""A diffusion-based deep generative model (see the module docstring).

    Args:
        betas: the schedule ``(T,)``, each in (0, 1).
        eps_nets: the noise predictor :math:`\epsilon_\theta`: one module mapping
            ``[z_t, embedding(t)]`` to ``(B, D)`` (``shared=True``), or a ``nn.ModuleList`` of
            T modules, the t-th mapping ``z_t`` (the book's DDGM: one network per step).
        input_dim: D, the pixels per image.
        num_vals: V, the pixel values; ``None`` for real-valued data (the 2-D toys): then
            :math:`z_0 = x` and the data term is :math:`\mathcal N(x; \mu_\theta(z_1, 1),
            \beta_1 I)`, a density, not a probability.
        data_decoder: the categorical decoder on ``z_1`` (``data_term='categorical'``) or
            ``None`` for the discretised Gaussian around :math:`\mu_\theta(z_1, 1)` with
            :math:`\sigma_1 = \sqrt{\beta_1}`.
        variance: ``posterior`` (:math:`\sigma_t^2 = \tilde\beta_t`) or ``beta``.
        objective: ``elbo`` (training minimises an unbiased estimate of -ELBO) or
            ``simple`` (:math:`\Vert\epsilon - \epsilon_\theta\Vert^2`, Ho et al.'s
            :math:`L_\mathrm{simple}`).
        embedding_dim: the size of the step embedding for a shared network.
        step_sampling: ``uniform`` (each example's step drawn independently) or
            ``stratified`` (the batch's steps spread evenly over 1..T, see :meth:`draw_steps`).
        estimator: how ``objective='elbo'`` estimates -ELBO, one of :data:`ESTIMATORS`
            (:meth:`loss`).
    """

    def __init__(self, betas: torch.Tensor, eps_nets: nn.Module, input_dim: int,
                 num_vals: int | None = 17,
                 data_decoder: CategoricalDecoder | None = None, variance: str = "posterior",
                 objective: str = "elbo", embedding_dim: int = 32,
                 step_sampling: str = "uniform", estimator: str = "ends-every-example"):
        super().__init__()
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or not len(betas):
            raise ValueError(f"betas must be a non-empty 1-d tensor, got shape {tuple(betas.shape)}")
        if not ((betas > 0) & (betas < 1)).all():
            raise ValueError(f"betas must lie in (0, 1); found {betas[(betas <= 0) | (betas >= 1)][0].item()}")
        self.variance = check_choice(variance, "variance", VARIANCES)
        self.objective = check_choice(objective, "objective", OBJECTIVES)
        self.step_sampling = check_choice(step_sampling, "step_sampling", STEP_SAMPLING)
        self.estimator = check_choice(estimator, "estimator", ESTIMATORS)
        self.input_dim = check_int(input_dim, "input_dim", minimum=1)
        self.num_vals = None if num_vals is None else check_int(num_vals, "num_vals", minimum=2)
        if self.num_vals is None and data_decoder is not None:
            raise ValueError("a categorical data term needs discrete data (num_vals); real-valued "
                             "data take the Gaussian data term")
        self.steps = len(betas)
        self.shared = not isinstance(eps_nets, nn.ModuleList)
        if not self.shared and len(eps_nets) != self.steps:
            raise ValueError(f"eps_nets holds {len(eps_nets)} networks for T = {self.steps} steps")
        self.eps_nets, self.data_decoder = eps_nets, data_decoder
        self.embedding_dim = embedding_dim
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, 0)
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        buffers = {  # index t - 1 holds step t; float64 schedule, float32 copies for the nets
            "betas": betas, "alphas": alphas, "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt(),
            "posterior_variance": posterior_variance,
            "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * alphas.sqrt()
                                    / (1.0 - alphas_cumprod),
            "eps_coef": betas / (1.0 - alphas_cumprod).sqrt(),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value.float())
        # rho_t from the float64 schedule, kept out of the state_dict (it follows from betas)
        self.register_buffer("_log_snr", log_snr_of(betas), persistent=False)
        # sigma_t^2 of p(z_{t-1}|z_t); at t = 1 the posterior variance is 0 (z_0 = x is known
        # given z_1 and x), and p(x|z_1) is the data term, so index 0 is the data term's beta_1
        reverse = posterior_variance if variance == "posterior" else betas.clone()
        reverse[0] = betas[0]
        self.register_buffer("reverse_log_variance", reverse.log().float())
        # where each step sits on the step axis the shared network was trained on (1..T;
        # fractional for a trained model read at another T: ddgm_at_steps)
        self.register_buffer("step_positions", torch.arange(1.0, self.steps + 1),
                             persistent=False)

    # ------------------------------------------------------------------ helpers
    def rescale(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\tilde x = 2x/(V-1) - 1`: integer pixels to :math:`[-1, 1]` (real-valued
        data as they are)."""
        return x if self.num_vals is None else 2.0 * x / (self.num_vals - 1) - 1.0

    def _at(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """Buffer ``name`` at steps ``t`` (1-based, ``(B,)``), shaped ``(B, 1)`` to broadcast."""
        return getattr(self, name)[t - 1].unsqueeze(-1)

    def _check_t(self, t, batch: int, device) -> torch.Tensor:
        t = torch.as_tensor(t, device=device)
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,) or t.dtype.is_floating_point:
            raise ValueError(f"t must be an integer step or a (B,) integer tensor with B = {batch}")
        if ((t < 1) | (t > self.steps)).any():
            raise ValueError(f"t must lie in 1..T = 1..{self.steps}; found {t.min().item()}"
                             f"..{t.max().item()}")
        return t.long()

    def validate(self, x: torch.Tensor) -> None:
        """Raise a clear error unless ``x`` is ``(B, D)`` of integer pixels in ``0..V-1`` (of
        finite numbers, for real-valued data)."""
        if self.num_vals is None:
            check_tensor(x, "x", ndim=2, last_dim=self.input_dim)
        else:
            check_pixels(x, self.num_vals, self.input_dim)

    # ------------------------------------------------------------------ forward process
    def q_sample(self, x: torch.Tensor, t, noise: torch.Tensor | None = None) -> torch.Tensor:
        r""":math:`z_t = \sqrt{\bar\alpha_t}\,\tilde x + \sqrt{1-\bar\alpha_t}\,\epsilon \sim q(z_t|x)`
        for integer pixels ``x`` ``(B, D)`` and steps ``t`` (int or ``(B,)``, 1..T)."""
        self.validate(x)
        t = self._check_t(t, x.shape[0], x.device)
        noise = torch.randn_like(x, dtype=torch.float32) if noise is None else noise
        return (self._at("sqrt_alphas_cumprod", t) * self.rescale(x)
                + self._at("sqrt_one_minus_alphas_cumprod", t) * noise)

    def q_posterior(self, z_t: torch.Tensor, x: torch.Tensor, t
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Mean and variance of :math:`q(z_{t-1}|z_t, x)` (for t >= 2; at t = 1 the variance is
        0): ``(B, D)`` and ``(B, 1)``."""
        t = self._check_t(t, z_t.shape[0], z_t.device)
        mean = (self._at("posterior_mean_coef1", t) * self.rescale(x)
                + self._at("posterior_mean_coef2", t) * z_t)
        return mean, self._at("posterior_variance", t)

    # ------------------------------------------------------------------ reverse process
    def predict_eps(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        r""":math:`\epsilon_\theta(z_t, t)` ``(B, D)``; ``t`` a ``(B,)`` integer tensor in 1..T."""
        if self.shared:
            emb = sinusoidal_embedding(self.step_positions[t - 1], self.embedding_dim)
            return self.eps_nets(torch.cat([z_t, emb], dim=-1))
        out = torch.empty_like(z_t)
        for step in torch.unique(t).tolist():  # each step's own network on its rows
            rows = t == step
            out[rows] = self.eps_nets[step - 1](z_t[rows])
        return out

    def p_mean_variance(self, z_t: torch.Tensor, t, eps: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Mean :math:`\mu_\theta(z_t, t) = (z_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}
        \epsilon_\theta)/\sqrt{\alpha_t}` ``(B, D)`` and log-variance ``(B, 1)`` of
        :math:`p_\theta(z_{t-1}|z_t)` (at t = 1: the discretised Gaussian's mean, a prediction
        of :math:`\tilde x`, and :math:`\ln\beta_1`)."""
        t = self._check_t(t, z_t.shape[0], z_t.device)
        eps = self.predict_eps(z_t, t) if eps is None else eps
        mean = (z_t - self._at("eps_coef", t) * eps) / self._at("alphas", t).sqrt()
        return mean, self._at("reverse_log_variance", t)

    def predict_x0(self, z_t: torch.Tensor, t) -> torch.Tensor:
        r"""The network's guess of the (rescaled) image behind :math:`z_t`, the draw
        :math:`z_t = \sqrt{\bar\alpha_t}\tilde x + \sqrt{1-\bar\alpha_t}\epsilon` solved for
        :math:`\tilde x` with :math:`\epsilon_\theta` in place of :math:`\epsilon`: ``(B, D)``."""
        t = self._check_t(t, z_t.shape[0], z_t.device)
        eps = self.predict_eps(z_t, t)
        return ((z_t - self._at("sqrt_one_minus_alphas_cumprod", t) * eps)
                / self._at("sqrt_alphas_cumprod", t))

    def to_pixels(self, z: torch.Tensor) -> torch.Tensor:
        """Rescaled values back to the pixel scale ``0..V-1`` (clipped), for pictures."""
        if self.num_vals is None:
            return z
        return torch.clamp((z + 1.0) * (self.num_vals - 1) / 2.0, 0.0, self.num_vals - 1.0)

    def log_px_given_z1(self, x: torch.Tensor, z_1: torch.Tensor) -> torch.Tensor:
        r"""The data term :math:`\ln p_\theta(x|z_1)` ``(B,)`` in nats of the discrete pixels."""
        if self.data_decoder is not None:
            return self.data_decoder.log_prob(x, z_1)
        one = torch.ones(z_1.shape[0], dtype=torch.long, device=z_1.device)
        mean, log_var = self.p_mean_variance(z_1, one)
        if self.num_vals is None:
            return log_normal_diag(x, mean, log_var.expand_as(mean))
        return log_discretised_gaussian(x, mean, 0.5 * log_var, self.num_vals)

    # ------------------------------------------------------------------ the bound
    def kl_T(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`L_T = \mathrm{KL}[q(z_T|x)\Vert\mathcal N(0, I)]` ``(B,)``, closed form."""
        T = torch.full((x.shape[0],), self.steps, dtype=torch.long, device=x.device)
        mean = self._at("sqrt_alphas_cumprod", T) * self.rescale(x)
        log_var = torch.log1p(-self._at("alphas_cumprod", T)).expand_as(mean)
        return kl_normal_diag(mean, log_var, torch.zeros_like(mean), torch.zeros_like(mean))

    def term(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None
             ) -> dict[str, torch.Tensor]:
        r"""One term of the bound at steps ``t`` ``(B,)`` with :math:`z_t \sim q(z_t|x)`:
        ``{"kl": L_{t-1} (0 where t = 1), "rec": ln p(x|z_1) (0 where t > 1),
        "eps_mse": ||eps - eps_theta||^2}``, each ``(B,)``."""
        noise = torch.randn(x.shape, device=x.device) if noise is None else noise
        z_t = self.q_sample(x, t, noise)
        eps = self.predict_eps(z_t, t)
        first = t == 1
        mean_p, log_var_p = self.p_mean_variance(z_t, t, eps)
        mean_q, var_q = self.q_posterior(z_t, x, t)
        later = ~first
        kl = torch.zeros(x.shape[0], device=x.device, dtype=mean_q.dtype)  # a float64 model too
        if later.any():
            kl[later] = kl_normal_diag(mean_q[later], var_q[later].log().expand_as(mean_q[later]),
                                       mean_p[later], log_var_p[later].expand_as(mean_q[later]))
        rec = torch.zeros_like(kl)
        if first.any():
            rec[first] = self.log_px_given_z1(x[first], z_t[first])
        return {"kl": kl, "rec": rec, "eps_mse": ((noise - eps) ** 2).sum(-1)}

    @follows_device
    def bound(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        r"""The full bound, per example ``(B,)``: ``elbo = rec - kl`` with ``kl = kl_T +
        kl_steps``, every term of the chain computed (:meth:`all_terms`: one draw of
        :math:`z_t` per term), the low-noise estimate that early stopping and the test numbers
        use. An evaluation: the chain's terms carry no gradient."""
        self.validate(x)
        kl_T = self.kl_T(x)
        terms = self.all_terms(x)
        kl_steps, rec = terms["kl"].sum(-1), terms["rec"]
        return {"elbo": rec - kl_T - kl_steps, "rec": rec, "kl": kl_T + kl_steps, "kl_T": kl_T,
                "kl_steps": kl_steps}

    @follows_device
    def loss(self, x: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
        r"""The training objective, per example ``(B,)``, in any mode (:meth:`bound` computes
        every term). With ``objective='elbo'``, ``loss`` is an unbiased estimate of -ELBO:

        * ``estimator='ends-every-example'`` (the default): the data term
          :math:`\ln p_\theta(x|z_1)` and :math:`L_T` on every example, and one chain step
          :math:`t \sim U\{2..T\}` per example weighted by :math:`T - 1`:
          :math:`L_T - \ln p_\theta(x|z_1) + (T-1) L_{t-1}`. The data term, which holds nearly
          all of the spread of the terms, is then learned from every example of a batch;
        * ``estimator='one-term'`` (the stochastic layer-wise objective): one step
          :math:`t \sim U\{1..T\}` per example weighted by :math:`T`, the data term being
          the term of ``t = 1``: :math:`L_T + T\cdot(\text{term } t)`.

        With ``objective='simple'``, ``loss`` is :math:`L_\mathrm{simple} = \Vert\epsilon -
        \epsilon_\theta(z_t, t)\Vert^2` at one :math:`t \sim U\{1..T\}` (with a categorical
        data term, its -ln p(x|z_1) at t = 1), and ``elbo`` the one-term estimate. Steps are
        drawn by :meth:`draw_steps`; ``elbo``, ``rec`` and the KLs are the estimate's terms.
        """
        if beta != 1.0:
            raise ValueError("beta (KL warm-up) does not apply to a diffusion model: its "
                             "posterior has no parameters to warm up")
        self.validate(x)
        kl_T = self.kl_T(x)
        B, T = x.shape[0], self.steps
        if self.objective == "elbo" and self.estimator == "ends-every-example":
            rec = self.log_px_given_z1(x, self.q_sample(x, 1))
            kl_steps = torch.zeros_like(rec)
            if T > 1:  # each of the T - 1 chain terms is drawn with probability 1/(T - 1)
                kl_steps = (T - 1) * self.term(x, self.draw_steps(B, x.device, first=2))["kl"]
            elbo = rec - kl_T - kl_steps
            return {"loss": -elbo, "elbo": elbo, "rec": rec, "kl": kl_T + kl_steps,
                    "kl_T": kl_T, "kl_steps": kl_steps}
        t = self.draw_steps(B, x.device)
        one = self.term(x, t)
        # each of the T terms is drawn with probability 1/T: T x (drawn term) is unbiased
        kl_steps, rec = T * one["kl"], T * one["rec"]
        elbo = rec - kl_T - kl_steps
        if self.objective == "elbo":
            loss = -elbo
        else:
            simple = one["eps_mse"]
            if self.data_decoder is not None:
                simple = torch.where(t == 1, -one["rec"], simple)
            loss = simple
        return {"loss": loss, "elbo": elbo, "rec": rec, "kl": kl_T + kl_steps, "kl_T": kl_T,
                "kl_steps": kl_steps}

    def draw_steps(self, n: int, device=None, first: int = 1) -> torch.Tensor:
        r"""Steps ``(n,)`` in first..T for a training batch, each uniform on first..T on its own.

        ``uniform``: independent draws. ``stratified`` (the low-discrepancy sampler of
        Kingma et al., 2021): one :math:`u \sim U[0, 1)` shifts the grid
        :math:`(u + i/n) \bmod 1`, :math:`i = 0..n-1`, and the grid is shuffled over the
        examples; every example's step is still uniform (so each term of the estimate stays
        unbiased), but the batch covers the chain evenly and the batch mean varies less.
        """
        count = self.steps - first + 1
        if self.step_sampling == "uniform":
            return torch.randint(first, self.steps + 1, (n,), device=device)
        grid = (torch.rand((), device=device) + torch.arange(n, device=device) / n) % 1.0
        t = (grid * count).long().clamp(max=count - 1) + first
        return t[torch.randperm(n, device=device)]

    @torch.no_grad()
    def all_terms(self, x: torch.Tensor, chunk: int = 16_384) -> dict[str, torch.Tensor]:
        r"""Every term at once: ``{"kl": (B, T) with L_{t-1} in column t-1 (column 0 zero),
        "rec": (B,)}``, one draw of :math:`z_t \sim q(z_t|x)` per term; steps are batched
        so that about ``chunk`` rows go through the network at once."""
        B, T = x.shape[0], self.steps
        kl = torch.zeros(B, T, device=x.device)
        rec = None
        per = max(1, chunk // max(B, 1))
        for start in range(1, T + 1, per):
            steps = torch.arange(start, min(start + per, T + 1), device=x.device)
            t = steps.repeat_interleave(B)
            out = self.term(x.repeat(len(steps), 1), t)
            kl[:, steps - 1] = out["kl"].view(len(steps), B).T
            if start == 1:
                rec = out["rec"][:B]
        return {"kl": kl, "rec": rec}

    @follows_device
    def log_weight_terms(self, x: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
        r"""For ``k`` forward chains :math:`z_{1:T} \sim q(\cdot|x)`, the shares of
        :math:`\ln p_\theta(x, z_{1:T}) - \ln q(z_{1:T}|x)`, each ``(B, k)``, with the chain's
        density factorised backwards, :math:`q(z_{1:T}|x) = q(z_T|x)\prod_{t\ge2}
        q(z_{t-1}|z_t, x)` (the same joint): ``rec`` = :math:`\ln p_\theta(x|z_1)`, ``kl_T`` =
        :math:`\ln q(z_T|x) - \ln p(z_T)`, ``kl_steps`` = :math:`\sum_{t\ge2} \ln
        q(z_{t-1}|z_t,x) - \ln p_\theta(z_{t-1}|z_t)`, ``kl`` their sum. Their expectations are
        the KL form's terms (:meth:`bound`); draw by draw they add up to the log-weight. The
        chain is drawn forwards and each step's terms added as it goes (only two latents are
        held at once); the densities are taken in float64. Costs k·T network evaluations per
        example."""
        self.validate(x)
        check_int(k, "k", minimum=1)
        B, T = x.shape[0], self.steps
        xk = x.repeat(k, 1)
        x0 = self.rescale(xk)
        kl_steps = torch.zeros(k * B, dtype=torch.float64, device=x.device)
        z_prev = x0
        for t in range(1, T + 1):  # z_t ~ q(z_t|z_{t-1})
            beta_t = self.betas[t - 1]
            z_t = (1 - beta_t).sqrt() * z_prev + beta_t.sqrt() * torch.randn_like(z_prev)
            if t == 1:
                rec = self.log_px_given_z1(xk, z_t).double()
            else:
                steps = torch.full((k * B,), t, dtype=torch.long, device=x.device)
                mean_q, var_q = self.q_posterior(z_t, xk, steps)
                mean_p, log_var_p = self.p_mean_variance(z_t, steps)
                kl_steps += (log_normal_diag64(z_prev, mean_q, var_q.log())
                             - log_normal_diag64(z_prev, mean_p, log_var_p))
            z_prev = z_t
        last = torch.full((k * B,), T, dtype=torch.long, device=x.device)
        mean_T = self._at("sqrt_alphas_cumprod", last) * x0
        log_var_T = torch.log1p(-self._at("alphas_cumprod", last))
        kl_T = (log_normal_diag64(z_prev, mean_T, log_var_T)
                - log_normal_diag64(z_prev, torch.zeros_like(z_prev), torch.zeros_like(log_var_T)))
        terms = {"rec": rec, "kl": kl_T + kl_steps, "kl_T": kl_T, "kl_steps": kl_steps}
        return {name: value.view(k, B).T for name, value in terms.items()}

    def log_snr(self) -> torch.Tensor:
        r""":math:`\rho_t = \ln\frac{\bar\alpha_t}{1-\bar\alpha_t}`, ``(T,)`` float64: where
        the schedule starts (:math:`\rho_1`) and ends (:math:`\rho_T`). Kept from the float64
        schedule: the float32 :math:`\bar\alpha_t` rounds to 1 from :math:`\rho_t \approx 17`."""
        return self._log_snr.clone()

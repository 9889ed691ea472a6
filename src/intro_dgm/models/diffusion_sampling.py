r"""The generative direction of a diffusion model: ancestral sampling from
:math:`p(z_T) = \mathcal N(0, I)` through :math:`p_\theta(z_{t-1}|z_t)` down to the data term
:math:`p_\theta(x|z_1)`, and reconstruction (noise an image to :math:`z_t` with q, run the
chain back). Written once, here, and mixed into :class:`~intro_dgm.models.diffusion.DDGM`,
whose ``p_mean_variance``, ``q_sample`` and data term it uses.
"""
from __future__ import annotations

import torch

from ..distributions import discretised_gaussian_probs
from ..utils import check_int
from .base import follows_device


class AncestralSampling:
    """Sampling and reconstruction of a DDGM (a mixin: see the module docstring)."""

    @torch.no_grad()
    def p_sample(self, z_t: torch.Tensor, t: int) -> torch.Tensor:
        r"""One ancestral step: :math:`z_{t-1} \sim p_\theta(z_{t-1}|z_t)` for every row of
        ``z_t`` ``(n, D)``, at step ``t`` (2..T)."""
        steps = torch.full((z_t.shape[0],), t, dtype=torch.long, device=z_t.device)
        mu, log_var = self.p_mean_variance(z_t, steps)
        return mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)

    @torch.no_grad()
    def sample(self, n: int, mean: bool = False, trajectory: bool = False):
        r"""``n`` images: :math:`z_T \sim \mathcal N(0, I)`, then :math:`z_{t-1} \sim
        p_\theta(z_{t-1}|z_t)` down to :math:`z_1`, then :math:`x \sim p_\theta(x|z_1)` (or
        its mean). Pixel values ``(n, D)`` in ``0..V-1``; with ``trajectory=True`` also the
        list :math:`[z_T, \dots, z_1]` of ``(n, D)`` tensors."""
        check_int(n, "n", minimum=1)
        z = torch.randn(n, self.input_dim, device=self.betas.device)
        path = [z]
        for t in range(self.steps, 1, -1):
            z = self.p_sample(z, t)
            path.append(z)
        x = self._data_sample(z, mean)
        return (x, path) if trajectory else x

    def _data_sample(self, z_1: torch.Tensor, mean: bool) -> torch.Tensor:
        if self.data_decoder is not None:
            return self.data_decoder.mean(z_1) if mean else self.data_decoder.sample(z_1)
        one = torch.ones(z_1.shape[0], dtype=torch.long, device=z_1.device)
        if self.num_vals is None:
            mu, log_var = self.p_mean_variance(z_1, one)
            return mu if mean else mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        mu, log_var = self.p_mean_variance(z_1, one)
        # the discretised Gaussian's probabilities over the V values, per pixel: (n, D, V)
        probs = discretised_gaussian_probs(mu, 0.5 * log_var, self.num_vals)
        if mean:
            return probs @ torch.arange(self.num_vals, device=z_1.device, dtype=z_1.dtype)
        return torch.multinomial(probs.reshape(-1, self.num_vals), 1).view(mu.shape).float()

    @torch.no_grad()
    @follows_device
    def reconstruct(self, x: torch.Tensor, mean: bool = True, t: int | None = None
                    ) -> torch.Tensor:
        """Noise ``x`` to step ``t`` with q (default T: the model's code :math:`z_T`), then
        run the reverse chain back to an image (its mean with ``mean=True``)."""
        t = self.steps if t is None else t
        z = self.q_sample(x, t)
        for s in range(t, 1, -1):
            z = self.p_sample(z, s)
        return self._data_sample(z, mean)

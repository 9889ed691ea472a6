r"""A Gaussian mixture seen through the forward process of a diffusion model, everything in
closed form: the density of :math:`z = \alpha x + \sigma\epsilon` for :math:`x` drawn from an
isotropic Gaussian mixture, its score, and the denoiser :math:`\mathbb E[x|z]`. The
continuous-time page checks Tweedie's formula with it,
:math:`\mathbb E[x|z] = (z + \sigma^2\nabla_z\ln q(z))/\alpha`: predicting the image, the
noise (:math:`\mathbb E[\epsilon|z] = -\sigma\nabla_z\ln q(z)`) or the score is one
prediction written three ways.
"""
from __future__ import annotations

import torch

from .densities import log_normal_diag


class NoisedGaussianMixture:
    r"""Data :math:`x \sim \sum_k \pi_k\mathcal N(\mu_k, s_k^2 I)`, noised at log-SNR
    :math:`\lambda`: :math:`z = \alpha x + \sigma\epsilon`, :math:`\alpha^2 =
    \mathrm{sigmoid}(\lambda)`, :math:`\sigma^2 = \mathrm{sigmoid}(-\lambda)`. Then
    :math:`q(z) = \sum_k \pi_k\mathcal N(\alpha\mu_k, (\alpha^2 s_k^2 + \sigma^2) I)`.

    Args:
        weights: :math:`\pi` ``(K,)``, positive, summing to 1.
        means: :math:`\mu` ``(K, D)``.
        stds: :math:`s` ``(K,)``, positive.
    """

    def __init__(self, weights, means, stds):
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.stds = torch.as_tensor(stds, dtype=torch.float64)
        K = self.weights.shape[0]
        if self.means.ndim != 2 or self.means.shape[0] != K or self.stds.shape != (K,):
            raise ValueError(f"weights (K,), means (K, D) and stds (K,) must agree on K; got "
                             f"{tuple(self.weights.shape)}, {tuple(self.means.shape)}, "
                             f"{tuple(self.stds.shape)}")
        if (self.weights <= 0).any() or abs(self.weights.sum().item() - 1) > 1e-9:
            raise ValueError("weights must be positive and sum to 1")
        if (self.stds <= 0).any():
            raise ValueError("stds must be positive")

    @staticmethod
    def alpha_sigma(log_snr: float) -> tuple[torch.Tensor, torch.Tensor]:
        lam = torch.as_tensor(log_snr, dtype=torch.float64)
        return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()

    def sample(self, n: int, log_snr: float, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` pairs ``(x, z)``, each ``(n, D)`` float64."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.means.shape[1], dtype=torch.float64, generator=generator)
        x = self.means[k] + self.stds[k, None] * noise
        alpha, sigma = self.alpha_sigma(log_snr)
        eps = torch.randn(x.shape, dtype=torch.float64, generator=generator)
        return x, alpha * x + sigma * eps

    def _components(self, z: torch.Tensor, log_snr: float):
        """Per component: :math:`\\ln\\pi_k + \\ln\\mathcal N(z; \\alpha\\mu_k, v_k I)` ``(N, K)``
        and the variances :math:`v_k = \\alpha^2 s_k^2 + \\sigma^2` ``(K,)``."""
        alpha, sigma = self.alpha_sigma(log_snr)
        var = alpha ** 2 * self.stds ** 2 + sigma ** 2
        z = z.to(torch.float64).unsqueeze(1)  # (N, 1, D)
        log_var = var.log()[None, :, None].expand(1, len(var), z.shape[-1])
        return self.weights.log() + log_normal_diag(z, alpha * self.means, log_var), var

    def log_prob(self, z: torch.Tensor, log_snr: float) -> torch.Tensor:
        r""":math:`\ln q(z)` ``(N,)``."""
        return torch.logsumexp(self._components(z, log_snr)[0], dim=-1)

    def score(self, z: torch.Tensor, log_snr: float) -> torch.Tensor:
        r""":math:`\nabla_z\ln q(z) = -\sum_k r_k(z)(z - \alpha\mu_k)/v_k` ``(N, D)``, with the
        responsibilities :math:`r_k(z) \propto \pi_k\mathcal N(z; \alpha\mu_k, v_k I)`."""
        logits, var = self._components(z, log_snr)
        r = torch.softmax(logits, dim=-1)  # (N, K)
        alpha, _ = self.alpha_sigma(log_snr)
        z = z.to(torch.float64)
        return -(r[..., None] * (z[:, None] - alpha * self.means) / var[:, None]).sum(1)

    def posterior_mean(self, z: torch.Tensor, log_snr: float) -> torch.Tensor:
        r""":math:`\mathbb E[x|z]` ``(N, D)`` by Bayes' rule in each component:
        :math:`\sum_k r_k(z)\,(\mu_k + \alpha s_k^2 (z - \alpha\mu_k)/v_k)`."""
        logits, var = self._components(z, log_snr)
        r = torch.softmax(logits, dim=-1)
        alpha, _ = self.alpha_sigma(log_snr)
        z = z.to(torch.float64)
        per = self.means + (alpha * self.stds ** 2 / var)[:, None] * (z[:, None] - alpha * self.means)
        return (r[..., None] * per).sum(1)

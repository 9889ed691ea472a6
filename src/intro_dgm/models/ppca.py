r"""Probabilistic PCA (chapter: latent variable models and probabilistic PCA).

Generative process (Tipping & Bishop, 1999):

.. math::
    z \sim \mathcal{N}(0, I_L), \qquad x \mid z \sim \mathcal{N}(W z + b, \sigma^2 I_D)

Everything is Gaussian, so the marginal and the posterior are known in closed form:

.. math::
    p(x) = \mathcal{N}(x \mid b, C), \quad C = W W^\top + \sigma^2 I_D, \qquad
    p(z \mid x) = \mathcal{N}(z \mid M^{-1} W^\top (x - b), \sigma^2 M^{-1}), \quad
    M = W^\top W + \sigma^2 I_L.

All computations are in float64: the chapter compares these formulas with Monte Carlo
and with scikit-learn to many digits.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..distributions import LOG_2PI, kl_normal_full, log_normal_full
from ..utils import check_int


def _as_float64(x, name: str, dim: int | None = None) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D), got shape {tuple(x.shape)}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} must have D={dim} columns, got shape {tuple(x.shape)}")
    x = x.to(torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


class PPCA:
    """Probabilistic PCA with ``latent_dim`` latent variables.

    Either ``fit(X)`` (closed-form maximum likelihood) or ``set_params(W, b, sigma2)``.
    """

    def __init__(self, latent_dim: int):
        self.latent_dim = check_int(latent_dim, "latent_dim", minimum=1)
        self.W: torch.Tensor | None = None
        self.b: torch.Tensor | None = None
        self.sigma2: float | None = None

    # ----------------------------------------------------------------- parameters
    def set_params(self, W, b, sigma2: float) -> "PPCA":
        """Set ``W (D, L)``, ``b (D,)``, ``sigma2 > 0`` directly (for the chapter's examples)."""
        W = torch.as_tensor(W, dtype=torch.float64)
        b = torch.as_tensor(b, dtype=torch.float64)
        if W.dim() != 2 or W.shape[1] != self.latent_dim:
            raise ValueError(f"W must have shape (D, {self.latent_dim}), got {tuple(W.shape)}")
        if b.shape != (W.shape[0],):
            raise ValueError(f"b must have shape ({W.shape[0]},), got {tuple(b.shape)}")
        if not sigma2 > 0:
            raise ValueError(f"sigma2 must be > 0, got {sigma2}")
        self.W, self.b, self.sigma2 = W, b, float(sigma2)
        return self

    def fit(self, X, ddof: int = 0) -> "PPCA":
        r"""Closed-form maximum likelihood (Tipping & Bishop, 1999, eqs. 7-8).

        With the eigen-decomposition :math:`\hat\Sigma = U \,\mathrm{diag}(\nu)\, U^\top` of the data covariance,
        :math:`\hat b = \bar x`, :math:`\hat\sigma^2 = \frac{1}{D-L}\sum_{j>L}\nu_j`,
        :math:`\hat W = U_L(\Lambda_L - \hat\sigma^2 I)^{1/2}` (up to a rotation).

        Args:
            X: ``(N, D)`` data with ``N > 1`` and ``D > latent_dim``.
            ddof: 0 gives the maximum-likelihood covariance ``Sigma = X_c^T X_c / N``; 1 divides
                by ``N - 1``, the convention of scikit-learn's ``PCA``.
        """
        X = _as_float64(X, "X")
        n, d = X.shape
        if d <= self.latent_dim:
            raise ValueError(f"latent_dim must be < D={d}, got {self.latent_dim}")
        if n <= ddof:
            raise ValueError(f"X needs more than {ddof} rows, got {n}")
        b = X.mean(0)
        sigma_hat = (X - b).T @ (X - b) / (n - ddof)
        nu, U = torch.linalg.eigh(sigma_hat)  # eigenvalues nu in ascending order
        nu, U = nu.flip(0).clamp_min(0.0), U.flip(1)  # clamp: round-off can give -1e-15
        sigma2 = nu[self.latent_dim:].mean().item()
        if sigma2 <= 0:
            raise ValueError("the data lie in a subspace of dimension <= latent_dim: "
                             "sigma2 would be 0; choose a smaller latent_dim")
        W = U[:, :self.latent_dim] * torch.sqrt(nu[:self.latent_dim] - sigma2)
        return self.set_params(W, b, sigma2)

    def _params(self):
        if self.W is None:
            raise RuntimeError("PPCA has no parameters yet: call fit(X) or set_params(...)")
        return self.W, self.b, self.sigma2

    @property
    def data_dim(self) -> int:
        return self._params()[0].shape[0]

    def marginal_cov(self) -> torch.Tensor:
        r""":math:`C = W W^\top + \sigma^2 I_D`."""
        W, _, sigma2 = self._params()
        return W @ W.T + sigma2 * torch.eye(W.shape[0], dtype=W.dtype)

    # ------------------------------------------------------------------ densities
    def log_prob(self, X) -> torch.Tensor:
        r"""Exact :math:`\ln p(x) = \ln\mathcal{N}(x \mid b, WW^\top+\sigma^2 I)`: ``(N,)``."""
        X = _as_float64(X, "X", self.data_dim)
        return log_normal_full(X, self.b, self.marginal_cov())

    def log_px_given_z(self, X, Z) -> torch.Tensor:
        r""":math:`\ln \mathcal{N}(x \mid Wz + b, \sigma^2 I)`, broadcasting ``Z (..., N, L)``: ``(..., N)``."""
        W, b, sigma2 = self._params()
        X = _as_float64(X, "X", self.data_dim)
        mean = Z.to(torch.float64) @ W.T + b
        return -0.5 * (X.shape[1] * (LOG_2PI + math.log(sigma2))
                       + ((X - mean) ** 2).sum(-1) / sigma2)

    def log_prob_monte_carlo(self, X, num_samples: int,
                             generator: torch.Generator | None = None) -> torch.Tensor:
        r"""Naive estimate :math:`\ln \frac1S\sum_s p(x\mid z_s)`, :math:`z_s \sim p(z)`: ``(N,)``.

        Unbiased for :math:`p(x)` (not for its log) and, as the chapter shows, hopelessly
        noisy once the latent dimension grows: almost no prior sample explains ``x``.
        Computed with ``logsumexp`` in chunks of samples.
        """
        check_int(num_samples, "num_samples", minimum=1)
        X = _as_float64(X, "X", self.data_dim)
        chunks = []
        for start in range(0, num_samples, 1000):
            s = min(1000, num_samples - start)
            Z = torch.randn(s, 1, self.latent_dim, generator=generator, dtype=torch.float64)
            chunks.append(torch.logsumexp(self.log_px_given_z(X, Z), dim=0))
        return torch.logsumexp(torch.stack(chunks), dim=0) - math.log(num_samples)

    def posterior(self, X) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Exact posterior :math:`p(z|x) = \mathcal{N}(M^{-1}W^\top(x-b),\ \sigma^2 M^{-1})`.

        Returns:
            ``mean (N, L)`` and ``cov (L, L)`` (the covariance does not depend on ``x``).
        """
        W, b, sigma2 = self._params()
        X = _as_float64(X, "X", self.data_dim)
        M = W.T @ W + sigma2 * torch.eye(self.latent_dim, dtype=W.dtype)
        mean = torch.linalg.solve(M, W.T @ (X - b).T).T
        return mean, sigma2 * torch.linalg.inv(M)

    def elbo(self, X, q_mean, q_cov) -> torch.Tensor:
        r"""Exact ELBO for a Gaussian :math:`q(z) = \mathcal{N}(m, S)`, per row: ``(N,)``.

        :math:`\mathbb{E}_q[\ln p(x|z)] = \ln\mathcal{N}(x\mid Wm+b,\sigma^2 I)
        - \mathrm{tr}(W S W^\top)/(2\sigma^2)` and the KL to :math:`\mathcal{N}(0, I)` is
        closed form; the chapter checks :math:`\ln p(x) = \mathrm{ELBO} + \mathrm{KL}[q\|p(z|x)]`.

        Args:
            q_mean: ``(N, L)``, the mean :math:`m` of :math:`q` for each row.
            q_cov: ``(L, L)`` or ``(N, L, L)``, its covariance :math:`S`.
        """
        W, _, sigma2 = self._params()
        q_mean = torch.as_tensor(q_mean, dtype=torch.float64)
        q_cov = torch.as_tensor(q_cov, dtype=torch.float64)
        expected_rec = (self.log_px_given_z(X, q_mean)
                        - torch.einsum("dl,...lm,dm->...", W, q_cov, W) / (2 * sigma2))
        eye = torch.eye(self.latent_dim, dtype=torch.float64)
        kl_prior = kl_normal_full(q_mean, q_cov.expand(q_mean.shape[0], -1, -1),
                                  torch.zeros_like(q_mean), eye.expand(q_mean.shape[0], -1, -1))
        return expected_rec - kl_prior

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples ``x = W z + b + sigma * eps``: ``(n, D)``."""
        check_int(n, "n", minimum=1)
        W, b, sigma2 = self._params()
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=torch.float64)
        eps = torch.randn(n, W.shape[0], generator=generator, dtype=torch.float64)
        return z @ W.T + b + math.sqrt(sigma2) * eps

r"""Evaluation under one protocol for every model (nats per example unless stated).

* :func:`elbo` -- the single-sample ELBO averaged over a data set.
* :func:`iwae_log_likelihood` -- the importance-weighted estimate (Burda et al., 2016)

  .. math:: \ln p(x) \approx \ln \frac1K \sum_{k=1}^K \frac{p(x, z_k)}{q(z_k|x)},
            \quad z_k \sim q(z|x),

  a lower bound in expectation that tightens as K grows. Computed in chunks of samples
  with a running ``logsumexp``, so K=5000 needs the memory of one chunk.
* :func:`elbo_decomposition` -- the ELBO rewritten with the aggregated posterior.
* :func:`hole_mass` -- how much prior mass lies where the aggregated posterior is tiny.
* :func:`log_density_grid` -- a 2-D prior's log-density on a grid, for contour plots;
  :func:`density_integral` -- its Riemann sum, the check that a density integrates to one.
* :class:`SampleScorer` -- a classifier-based proxy for the quality of generated images.
* :func:`bits_per_dim`, :func:`active_units`.

A model needs ``loss(x)`` (dict of ``(B,)`` terms) and ``log_weights(x, k) -> (B, k)``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .distributions import entropy_normal_diag
from .priors import AggregatedPosterior, Prior
from .utils import check_int, check_tensor, module_device


@torch.no_grad()
def elbo(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Per-example single-sample ELBO ``(N,)`` (in eval mode)."""
    check_tensor(x, "x", ndim=2)
    check_int(batch_size, "batch_size", minimum=1)
    model.eval()
    dev = module_device(model)
    return torch.cat([model.loss(x[i:i + batch_size].to(dev))["elbo"].cpu()
                      for i in range(0, x.shape[0], batch_size)])


@torch.no_grad()
def iwae_log_likelihood(model: nn.Module, x: torch.Tensor, k: int = 1000,
                        chunk_size: int | None = None, batch_size: int | None = None
                        ) -> torch.Tensor:
    r"""Per-example importance-weighted estimate of :math:`\ln p(x)`: ``(N,)``.

    Args:
        model: provides ``log_weights(x, k) -> (B, k)``.
        x: ``(N, D)`` data.
        k: number of importance samples per example (``K >= 1``; ``K = 1`` is the ELBO).
        chunk_size: samples drawn at once for every example; the default keeps one chunk
            of ``batch_size * chunk_size`` decoder evaluations near 16k: the decoder's outputs
            then stay small enough for the CPU caches (200k at once ran 2x slower here,
            see benchmarks/run.py).
        batch_size: examples at once (default: all of ``x`` up to 512).
    """
    check_tensor(x, "x", ndim=2)
    check_int(k, "k", minimum=1)
    batch_size = min(x.shape[0], 512) if batch_size is None else check_int(
        batch_size, "batch_size", minimum=1)
    if chunk_size is None:
        chunk_size = max(1, min(k, 16_384 // batch_size))
    check_int(chunk_size, "chunk_size", minimum=1)
    model.eval()
    dev = module_device(model)
    out = []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size].to(dev)
        running = torch.full((xb.shape[0],), -math.inf, device=dev)
        for start in range(0, k, chunk_size):
            log_w = model.log_weights(xb, min(chunk_size, k - start))
            running = torch.logaddexp(running, torch.logsumexp(log_w, dim=1))
        out.append((running - math.log(k)).cpu())
    return torch.cat(out)


def bits_per_dim(nll_nats: torch.Tensor | float, dim: int) -> torch.Tensor | float:
    """Convert a negative log-likelihood in nats per example to bits per dimension."""
    return nll_nats / (dim * math.log(2.0))


@torch.no_grad()
def active_units(model: nn.Module, x: torch.Tensor, threshold: float = 1e-2) -> int:
    r"""Number of latent dimensions with :math:`\mathrm{Cov}_x(\mathbb{E}_{q(z|x)}[z_l]) > `
    ``threshold`` (Burda et al., 2016): units the encoder actually uses."""
    check_tensor(x, "x", ndim=2)
    model.eval()
    mu_e, _ = model.encoder(x.to(module_device(model)))
    return int((mu_e.var(dim=0) > threshold).sum().item())


@torch.no_grad()
def elbo_decomposition(model: nn.Module, x: torch.Tensor, samples: int = 16) -> dict:
    r"""The ELBO averaged over ``x``, term by term (nats per example):

    .. math::
        \mathrm{ELBO} = \underbrace{\mathbb{E}_x\mathbb{E}_{q(z|x)}[\ln p(x|z)]}_{\texttt{rec}}
        \; - \underbrace{\mathrm{CE}[q(z)\,\|\,p(z)]}_{\texttt{cross\_entropy}}
        \; + \underbrace{\mathbb{E}_x H[q(z|x)]}_{\texttt{cond\_entropy}},

    and the cross-entropy split once more with the aggregated posterior
    :math:`q(z) = \frac1N\sum_n q(z|x_n)` evaluated exactly (a logsumexp over all ``N``):
    ``cross_entropy = marginal_entropy + kl_marginal`` with ``marginal_entropy`` :math:`=H[q(z)]`
    and ``kl_marginal`` :math:`=\mathrm{KL}[q(z)\|p(z)]`; ``mutual_info`` is
    :math:`I(x;z) = H[q(z)] - \mathbb{E}_x H[q(z|x)]` (Hoffman & Johnson, 2016).

    Expectations over ``q(z|x)`` use ``samples`` draws per example, the same draws for every
    term; the conditional entropy is exact. ``elbo`` is ``rec - cross_entropy + cond_entropy``.
    """
    check_tensor(x, "x", ndim=2)
    check_int(samples, "samples", minimum=1)
    model.eval()
    x = x.to(module_device(model))
    mu_e, log_var_e = model.encoder(x)
    z = model.encoder.sample(mu_e, log_var_e, k=samples)  # (S, N, L)
    flat = z.reshape(-1, z.shape[-1])
    rec = model.decoder.log_prob(x, z).mean()
    cross_entropy = -model.prior.log_prob(flat).mean()
    cond_entropy = entropy_normal_diag(log_var_e).mean()
    marginal_entropy = -AggregatedPosterior(mu_e, log_var_e).log_prob(flat).mean()
    terms = {"rec": rec, "cross_entropy": cross_entropy, "cond_entropy": cond_entropy,
             "marginal_entropy": marginal_entropy,
             "mutual_info": marginal_entropy - cond_entropy,
             "kl_marginal": cross_entropy - marginal_entropy,
             "elbo": rec - cross_entropy + cond_entropy}
    return {k: v.item() for k, v in terms.items()}


@torch.no_grad()
def hole_mass(prior: Prior, aggregated: Prior, n: int = 20_000, ratio: float = 0.1) -> float:
    r"""Prior mass of the "holes": the fraction of :math:`z \sim p(z)` where the aggregated
    posterior's density is below ``ratio`` times the prior's, :math:`q(z) < r\,p(z)`.

    Such a ``z`` is generated often but was rarely the code of a training example, so the
    decoder has not learned what to do with it. Estimated with ``n`` prior samples.
    """
    check_int(n, "n", minimum=1)
    if not 0 < ratio:
        raise ValueError(f"ratio must be > 0, got {ratio}")
    z = prior.sample(n)
    log_ratio = aggregated.log_prob(z.to(aggregated.device)) - prior.log_prob(z)
    return (log_ratio < math.log(ratio)).float().mean().item()


@torch.no_grad()
def log_density_grid(prior: Prior, lim: float = 4.0, n: int = 200
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``ln p(z)`` of a 2-D prior on an ``n x n`` grid over ``[-lim, lim]^2``.

    Returns ``(axis, log_p)``: ``axis`` of shape ``(n,)``, ``log_p`` of shape ``(n, n)``
    indexed ``[i, j]`` = ``ln p(z_1 = axis[j], z_2 = axis[i])`` (rows are ``z_2``, as an
    image and ``plt.contour`` expect).
    """
    if prior.latent_dim != 2:
        raise ValueError(f"prior.latent_dim must be 2 for a density grid, got {prior.latent_dim}")
    check_int(n, "n", minimum=2)
    if not lim > 0:
        raise ValueError(f"lim must be > 0, got {lim}")
    axis = torch.linspace(-lim, lim, n)
    z2, z1 = torch.meshgrid(axis, axis, indexing="ij")
    z = torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=1).to(prior.device)
    return axis, prior.log_prob(z).reshape(n, n).cpu()


def density_integral(prior: Prior, lim: float = 10.0, n: int = 801) -> float:
    r"""Riemann sum of a 2-D prior's density over ``[-lim, lim]^2`` with ``n x n`` cells:
    close to 1 for a normalised density whose mass lies inside the square."""
    axis, log_p = log_density_grid(prior, lim, n)
    cell = (axis[1] - axis[0]).item() ** 2
    return (log_p.double().exp().sum() * cell).item()


class SampleScorer:
    r"""Scores generated images with a classifier trained on real ones (the idea behind the
    Inception score, with a logistic regression in place of a deep network):

    * ``confidence``: the mean over images of :math:`\max_c p(c \mid x)`; images that look
      like a clear digit score high, blends of two digits (e.g. decoded from a hole) low;
    * ``class_entropy``: the entropy of the histogram of predicted classes, at most
      :math:`\ln 10` when every class is generated equally often (a proxy for diversity).

    It measures what a classifier sees, not likelihood; compare models only relative to
    each other and to the score of real test images.

    Args:
        x, labels: real training images ``(N, D)`` and their classes ``(N,)``.
    """

    def __init__(self, x: torch.Tensor, labels: torch.Tensor):
        from sklearn.linear_model import LogisticRegression

        check_tensor(x, "x", ndim=2)
        if labels.shape != (x.shape[0],):
            raise ValueError(f"labels must have shape ({x.shape[0]},) to match x, "
                             f"got {tuple(labels.shape)}")
        # Inputs scaled to [0, 1]: on raw 0..16 values the default regularisation is too weak
        # and the classifier is confident even on uniform noise.
        self.scale = float(x.abs().max())
        self.classifier = LogisticRegression(max_iter=2000)  # lbfgs: deterministic
        self.classifier.fit(x.cpu().numpy() / self.scale, labels.cpu().numpy())

    def __call__(self, images: torch.Tensor) -> dict:
        check_tensor(images, "images", ndim=2)
        probs = torch.from_numpy(
            self.classifier.predict_proba(images.detach().cpu().numpy() / self.scale))
        counts = torch.bincount(probs.argmax(1), minlength=probs.shape[1])
        freq = counts.double() / counts.sum()
        entropy = -(freq * torch.log(freq.clamp_min(1e-300))).sum()  # 0 log 0 = 0
        return {"confidence": probs.max(1).values.mean().item(),
                "class_entropy": entropy.item()}

r"""Evaluation under one protocol for every model (nats per example unless stated).

* :func:`elbo` -- the model's cheap ELBO (``model.bound``), per example: what early stopping
  reads.
* :func:`evaluate_bound` -- one pass over S draws per example: the importance-weighted
  estimate, the ELBO and its terms from the same draws (the test metrics).
* :func:`iwae_log_likelihood` -- the importance-weighted estimate (Burda et al., 2016)

  .. math:: \ln p(x) \approx \ln \frac1S \sum_{s=1}^S \frac{p(x, z_s)}{q(z_s|x)},
            \quad z_s \sim q(z|x),

  a lower bound in expectation that tightens as S grows (the argument ``k`` is S). Computed
  in chunks of samples with a running ``logsumexp``, so S=5000 needs the memory of one chunk.
* :class:`SampleScorer` -- a classifier-based proxy for the quality of generated images.
* :func:`bits_per_dim`, :func:`active_units` (:func:`active_units_per_level`).

The out-of-distribution scores (:func:`~intro_dgm.ood.auroc`, the complexity measures
:func:`~intro_dgm.ood.boundary_length` and :func:`~intro_dgm.ood.compressed_bits`) are in
:mod:`intro_dgm.ood`.

A model is used through the interface of :mod:`intro_dgm.models.base`: ``bound(x)`` (dict of
``(B,)`` terms), ``log_weight_terms(x, k) -> {name: (B, k)}`` and, for the active units of a
latent-variable model, ``posterior_means(x)`` (level name -> posterior means). Every function leaves the model in the
training mode it found it in. The single-latent diagnostics (ELBO decomposition, holes,
density grids) are in :mod:`intro_dgm.analysis`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .utils import check_int, check_tensor, eval_mode, module_device


@torch.no_grad()
def elbo(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Per-example ELBO ``(N,)``, ``model.bound(x)["elbo"]`` (in eval mode): for most models a
    single-sample estimate, for a diffusion model every term of its chain."""
    check_tensor(x, "x", ndim=2)
    check_int(batch_size, "batch_size", minimum=1)
    dev = module_device(model)
    with eval_mode(model):
        return torch.cat([model.bound(x[i:i + batch_size].to(dev))["elbo"].cpu()
                          for i in range(0, x.shape[0], batch_size)])


@torch.no_grad()
def evaluate_bound(model: nn.Module, x: torch.Tensor, k: int = 1000,
                   chunk_size: int | None = None, batch_size: int | None = None
                   ) -> dict[str, torch.Tensor]:
    r"""One evaluation pass: from the same S = ``k`` draws per example, the importance-weighted
    estimate of :math:`\ln p(x)`, the ELBO and each of its terms, per example, float64 ``(N,)``.

    With :math:`\ln\omega_s = \mathrm{rec}_s - \mathrm{kl}_s` the shares of the log-weights
    (``model.log_weight_terms``):

    * ``"log_likelihood"``: :math:`\ln \frac1S \sum_s \omega_s` (Burda et al., 2016), a lower
      bound in expectation that tightens as S grows;
    * ``"elbo"``: :math:`\frac1S \sum_s \ln\omega_s`, the mean log-weight, never above the
      IW estimate of the same draws (Jensen);
    * ``"rec"``, ``"kl"`` and each part (``"kl_z1"``, ``"kl_T"``, ...): the mean over the same
      draws of that share, so that ``elbo = rec - kl`` per example, draw by draw. A model
      without latents (a flow) has only ``rec`` (= ``elbo``).

    Computed in chunks of samples with a running ``logsumexp`` and running sums in float64,
    so S = 5000 needs the memory of one chunk.

    Args:
        model: provides ``log_weight_terms(x, k) -> {name: (B, k)}``.
        x: ``(N, D)`` data.
        k: S, the number of importance samples per example (``S >= 1``).
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
    dev = module_device(model)
    out: dict[str, list] = {}
    with eval_mode(model):
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size].to(dev)
            running = torch.full((xb.shape[0],), -math.inf, dtype=torch.float64, device=dev)
            sums: dict[str, torch.Tensor] = {}
            for start in range(0, k, chunk_size):
                terms = {name: t.double() for name, t in
                         model.log_weight_terms(xb, min(chunk_size, k - start)).items()}
                log_w = terms["rec"] - terms["kl"] if "kl" in terms else terms["rec"]
                running = torch.logaddexp(running, torch.logsumexp(log_w, dim=1))
                for name, value in {"elbo": log_w, **terms}.items():
                    sums[name] = sums.get(name, 0.0) + value.sum(dim=1)
            out.setdefault("log_likelihood", []).append((running - math.log(k)).cpu())
            for name, total in sums.items():
                out.setdefault(name, []).append((total / k).cpu())
    return {name: torch.cat(parts) for name, parts in out.items()}


def iwae_log_likelihood(model: nn.Module, x: torch.Tensor, k: int = 1000,
                        chunk_size: int | None = None, batch_size: int | None = None
                        ) -> torch.Tensor:
    r"""Per-example importance-weighted estimate of :math:`\ln p(x)`, float64 ``(N,)``:
    :func:`evaluate_bound`'s ``"log_likelihood"`` (``S = 1`` is a one-draw ELBO)."""
    return evaluate_bound(model, x, k, chunk_size, batch_size)["log_likelihood"]


def bits_per_dim(nll_nats: torch.Tensor | float, dim: int) -> torch.Tensor | float:
    """Convert a negative log-likelihood in nats per example to bits per dimension."""
    return nll_nats / (dim * math.log(2.0))


@torch.no_grad()
def active_units_per_level(model: nn.Module, x: torch.Tensor, threshold: float = 1e-2
                           ) -> dict[str, int]:
    r"""Per latent level, the number of dimensions :math:`l` with
    :math:`\mathrm{Cov}_x(\mathbb{E}_{q}[z_l]) > \delta`, :math:`\delta` = ``threshold``
    (Burda et al., 2016): the units the encoder actually uses.

    The means come from ``model.posterior_means(x)`` (level name -> ``(N, L)``): for the VAE
    the posterior mean (for a flow posterior, the flow applied to the base mean), for a
    hierarchical model each level's mean given the mean of the level it conditions on."""
    check_tensor(x, "x", ndim=2)
    with eval_mode(model):
        means = model.posterior_means(x.to(module_device(model)))
    return {level: int((m.var(dim=0) > threshold).sum().item()) for level, m in means.items()}


def active_units(model: nn.Module, x: torch.Tensor, threshold: float = 1e-2) -> int:
    """The active units of every level together (:func:`active_units_per_level`)."""
    return sum(active_units_per_level(model, x, threshold).values())


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
        x: real training images ``(N, D)``.
        labels: their classes ``(N,)``.
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

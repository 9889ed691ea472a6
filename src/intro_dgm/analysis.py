r"""Diagnostics of a model with one latent space and a diagonal-Gaussian posterior
(chapters: rewriting the ELBO, the priors).

* :func:`elbo_decomposition` -- the ELBO rewritten with the aggregated posterior.
* :func:`aggregated_posterior` -- :math:`q(z) = \frac1N \sum_n q(z|x_n)` of a trained model.
* :func:`hole_mass` -- how much prior mass lies where the aggregated posterior is tiny;
  :func:`prior_coverage` -- the same at several thresholds and the smallest ratio, from one
  set of prior samples; :func:`median_nearest_distance` -- how far points lie from their
  nearest neighbour in a reference set (pseudo-inputs against training images).
* :func:`log_density_grid` -- a 2-D prior's log-density on a grid, for contour plots;
  :func:`density_integral` -- its Riemann sum, the check that a density integrates to one.
* :func:`prior_picture` -- the figures of a prior page.

They need ``model.posterior(x)`` to be a :class:`~intro_dgm.posteriors.DiagonalGaussian` (the
exact aggregated posterior is a mixture of the per-example Gaussians) and say so otherwise.
Every function leaves the model in the training mode it found it in.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .plotting import image_grid, prior_contours
from .posteriors import DiagonalGaussian
from .priors import AggregatedPosterior, Prior
from .utils import check_int, check_tensor, eval_mode, module_device


def _gaussian_posterior(model: nn.Module, x: torch.Tensor) -> DiagonalGaussian:
    q = model.posterior(x)
    if not isinstance(q, DiagonalGaussian):
        raise TypeError("this diagnostic needs a diagonal-Gaussian posterior (the aggregated "
                        f"posterior is then an exact mixture); got {type(q).__name__}")
    return q


@torch.no_grad()
def aggregated_posterior(model: nn.Module, x: torch.Tensor) -> AggregatedPosterior:
    """The aggregated posterior of ``model`` over the data ``x`` (on the model's device)."""
    check_tensor(x, "x", ndim=2)
    with eval_mode(model):
        q = _gaussian_posterior(model, x.to(module_device(model)))
    return AggregatedPosterior(q.mu_e, q.log_var_e)


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
    with eval_mode(model):
        x = x.to(module_device(model))
        q = _gaussian_posterior(model, x)
        z, _ = q.rsample(samples)  # (S, N, L)
        flat = z.reshape(-1, z.shape[-1])
        rec = model.decoder.log_prob(x, z).mean()
        cross_entropy = -model.prior.log_prob(flat).mean()
        cond_entropy = q.entropy().mean()
        marginal_entropy = -AggregatedPosterior(q.mu_e, q.log_var_e).log_prob(flat).mean()
    terms = {"rec": rec, "cross_entropy": cross_entropy, "cond_entropy": cond_entropy,
             "marginal_entropy": marginal_entropy,
             "mutual_info": marginal_entropy - cond_entropy,
             "kl_marginal": cross_entropy - marginal_entropy,
             "elbo": rec - cross_entropy + cond_entropy}
    return {k: v.item() for k, v in terms.items()}


@torch.no_grad()
def hole_mass(prior: Prior, aggregated: Prior, n: int = 20_000, ratio: float = 0.1) -> float:
    r"""Prior mass of the "holes": the fraction of :math:`z \sim p(z)` where the aggregated
    posterior's density is below ``ratio`` times the prior's, :math:`q(z) < \rho\,p(z)`.

    Such a ``z`` is generated often but was rarely the code of a training example, so the
    decoder has not learned what to do with it. Estimated with ``n`` prior samples.
    """
    check_int(n, "n", minimum=1)
    if not 0 < ratio:
        raise ValueError(f"ratio must be > 0, got {ratio}")
    z = prior.sample(n)
    log_ratio = aggregated.log_prob(z.to(aggregated.device)).to(z.device) - prior.log_prob(z)
    return (log_ratio < math.log(ratio)).float().mean().item()


@torch.no_grad()
def prior_coverage(prior: Prior, aggregated: Prior, n: int = 20_000,
                   ratios=(0.1,)) -> dict:
    r"""From one set of ``n`` samples :math:`z \sim p(z)`: the smallest density ratio
    :math:`q(z)/p(z)` (``"min_ratio"``) and, for each threshold in ``ratios``, the share of
    samples below it (``"below"``: threshold -> share, :func:`hole_mass` at each)."""
    check_int(n, "n", minimum=1)
    z = prior.sample(n)
    log_ratio = aggregated.log_prob(z.to(aggregated.device)).to(z.device) - prior.log_prob(z)
    return {"min_ratio": log_ratio.min().exp().item(),
            "below": {r: (log_ratio < math.log(r)).float().mean().item() for r in ratios}}


def median_nearest_distance(points: torch.Tensor, reference: torch.Tensor,
                            exclude_self: bool = False) -> float:
    """The median, over ``points``, of the Euclidean distance to the nearest row of
    ``reference`` (with ``exclude_self``, ``points`` is ``reference`` and a row's distance to
    itself does not count: the typical gap between neighbours)."""
    check_tensor(points, "points", ndim=2)
    check_tensor(reference, "reference", ndim=2)
    d = torch.cdist(points.double(), reference.double())
    if exclude_self:
        if points.shape != reference.shape:
            raise ValueError("exclude_self needs points to be the reference set itself")
        d.fill_diagonal_(math.inf)
    return d.min(1).values.median().item()


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


@torch.no_grad()
def prior_picture(model: nn.Module, x: torch.Tensor, lim: float = 4.0, num_samples: int = 36,
                  title: str | None = None, vmax: float | None = None, seed: int = 0):
    """The picture of a prior page: the prior's density with one code ``z ~ q(z|x_n)`` per
    row of ``x`` on top (the aggregated posterior), and images generated from the prior.

    Returns ``(fig_density, fig_samples)``.
    """
    with eval_mode(model):
        axis, log_p = log_density_grid(model.prior, lim=lim)
        z, _ = model.posterior(x.to(module_device(model))).rsample()
        fig_density = prior_contours(axis, log_p, z, title=title)
        torch.manual_seed(seed)
        side = int(num_samples ** 0.5)
        fig_samples = image_grid(model.sample(num_samples, mean=True), nrow=side, vmax=vmax,
                                 title="samples (decoder means)")
    return fig_density, fig_samples

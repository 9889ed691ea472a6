"""Figures for the book. Every function returns a ``matplotlib.figure.Figure``.

Functions draw; they never train or evaluate. Images come as ``(N, H*W)`` rows.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def image_grid(images, image_shape=(8, 8), nrow: int | None = None, titles=None,
               vmin: float = 0.0, vmax: float | None = None, title: str | None = None,
               scale: float = 0.7):
    """A grid of grey-scale images (one row of ``images`` each)."""
    images = _numpy(images).reshape(-1, *image_shape)
    n = images.shape[0]
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    ncol = int(np.ceil(n / nrow))
    # Rows get 25% more height than an image needs (45% with per-image titles): the gap
    # that keeps two rows from reading as one tall image.
    row_height = scale * (1.45 if titles is not None else 1.25)
    title_height = 0.35 if title else 0.0
    fig, axes = plt.subplots(nrow, ncol, figsize=(scale * ncol, row_height * nrow + title_height),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap="Greys", vmin=vmin, vmax=vmax, interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[i], fontsize=7)
    if title:
        fig.suptitle(title)
    top = 1.0 - title_height / fig.get_figheight()
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=top - 0.01,
                        wspace=0.1, hspace=0.35 if titles is not None else 0.2)
    return fig


def compare_rows(rows: dict, image_shape=(8, 8), vmax: float | None = None, scale: float = 0.7):
    """Several rows of images with a label each, e.g. ``{"data": x, "reconstruction": r}``."""
    ncol = max(_numpy(v).shape[0] for v in rows.values())
    fig, axes = plt.subplots(len(rows), ncol, figsize=(scale * ncol + 1.2, scale * len(rows)),
                             squeeze=False)
    for r, (label, imgs) in enumerate(rows.items()):
        imgs = _numpy(imgs).reshape(-1, *image_shape)
        for c in range(ncol):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < imgs.shape[0]:
                ax.imshow(imgs[c], cmap="Greys", vmin=0, vmax=vmax, interpolation="nearest")
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout(pad=0.2)
    return fig


def learning_curves(history, title: str | None = None):
    """Training and validation loss per epoch, with the epoch whose weights were kept."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = np.arange(1, history.epochs + 1)
    ax.plot(epochs, history.train_loss, label="train")
    ax.plot(epochs, history.val_loss, label="validation")
    ax.axvline(history.best_epoch + 1, color="grey", ls="--", lw=1,
               label=f"best epoch ({history.best_epoch + 1})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss = -ELBO (nats per example)")
    lo = min(min(history.train_loss), min(history.val_loss))
    ax.set_ylim(lo - 5, np.percentile(history.val_loss + history.train_loss, 95) + 5)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def prior_contours(axis, log_p, z=None, ax=None, title: str | None = None, s: float = 3):
    """The density of a 2-D prior (from :func:`~intro_dgm.analysis.log_density_grid`) as
    filled contours, with latent codes ``z`` (e.g. the aggregated posterior's samples) on top."""
    axis, density = _numpy(axis), np.exp(_numpy(log_p))
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.2, 4.2))
    else:
        fig = ax.figure
    ax.contourf(axis, axis, density, levels=12, cmap="Blues")
    if z is not None:
        z = _numpy(z)
        ax.scatter(z[:, 0], z[:, 1], s=s, alpha=0.5, lw=0, c="tab:red")
    ax.set_xlim(axis[0], axis[-1])
    ax.set_ylim(axis[0], axis[-1])
    ax.set_aspect("equal")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def latent_view(axis, log_p, codes, point, image, image_shape=(8, 8), title: str | None = None,
                vmax: float | None = None):
    """The latent explorer's picture: the prior's contours, the aggregated posterior's codes,
    a marked ``point`` and, next to it, the ``image`` the decoder gives for that point."""
    fig, (ax, ax_img) = plt.subplots(1, 2, figsize=(7.5, 3.8),
                                     gridspec_kw={"width_ratios": [1.2, 1]})
    prior_contours(axis, log_p, codes, ax=ax, title=title)
    ax.plot(*point, marker="x", color="black", markersize=12, mew=3)
    ax_img.imshow(_numpy(image).reshape(image_shape), cmap="Greys", vmin=0, vmax=vmax,
                  interpolation="nearest")
    ax_img.set_title(f"decoded at z = ({point[0]:.1f}, {point[1]:.1f})", fontsize=10)
    ax_img.axis("off")
    fig.tight_layout()
    return fig


def source_listing(obj):
    """The source code of a class or function from the package, as a highlighted listing
    (the book's code walk-throughs show the code that actually runs, never a copy)."""
    import inspect

    from IPython.display import Markdown

    return Markdown(f"```python\n{inspect.getsource(obj).rstrip()}\n```")


def diffusion_clouds(model, x, title: str | None = None, n: int = 2000, seed: int = 0,
                     limits=((-4, 5), (-3.5, 3.5))):
    """A diffusion model on 2-D points, as point clouds: top, the forward process on ``x``
    at steps 1, T/4, T/2 and T; bottom, ``n`` samples of the reverse process from
    :math:`\\mathcal N(0, I)` at the same steps and the generated points. Returns the figure."""
    import torch

    T = model.steps
    shown = sorted({1, max(1, T // 4), max(1, T // 2), T})
    fig, ax = plt.subplots(2, len(shown) + 1, figsize=(2.2 * (len(shown) + 1), 4.6),
                           sharex=True, sharey=True)
    torch.manual_seed(seed)
    with torch.no_grad():
        generated, path = model.sample(n, trajectory=True)  # path = [z_T, ..., z_1]
        forward = {t: model.q_sample(x, t) for t in shown}
    ax[0, 0].scatter(*_numpy(x).T, s=1)
    ax[0, 0].set_title("data x", fontsize=9)
    ax[1, 0].scatter(*_numpy(generated).T, s=1, color="C1")
    ax[1, 0].set_title("generated x", fontsize=9)
    for j, t in enumerate(shown, start=1):
        ax[0, j].scatter(*_numpy(forward[t]).T, s=1)
        ax[0, j].set_title(f"forward $z_{{{t}}}$", fontsize=9)
        ax[1, j].scatter(*_numpy(path[T - t]).T, s=1, color="C1")
        ax[1, j].set_title(f"reverse $z_{{{t}}}$", fontsize=9)
    for a in ax.flat:
        a.set_xlim(*limits[0])
        a.set_ylim(*limits[1])
        a.set_xticks([])
        a.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig

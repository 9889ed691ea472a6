"""One protocol for training and evaluating a VAE, shared by the CLI, the book and the
comparison script (so a number in a table and a number on a page come from the same code).

``run_vae(config, split, seed=0)`` builds the model (seeded), trains it with early stopping on
the validation set, and measures on the test set: the single-sample ELBO, the
importance-weighted NLL with ``k`` samples, the active units, the parameter count and the
training time.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from .data import Split, TensorLoader
from .evaluation import active_units, elbo, iwae_log_likelihood, log_density_grid
from .models import VAEConfig, build_vae
from .plotting import image_grid, prior_contours
from .training import History, fit
from .utils import check_int, seed_everything


@dataclass
class Run:
    """A trained model, its training history and its test metrics."""

    model: nn.Module
    history: History
    metrics: dict


def count_parameters(model: nn.Module) -> int:
    """Trainable numbers in ``model`` (shared modules, like a VampPrior's encoder, count once)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def evaluate_on_test(model: nn.Module, x_test: torch.Tensor, k: int = 1000) -> dict:
    """``test_elbo``, ``test_nll_iw`` (with ``k``), ``k``, ``eval_seconds``, ``active_units``."""
    start = time.perf_counter()
    ll = iwae_log_likelihood(model, x_test, k=k)
    seconds = time.perf_counter() - start
    return {"test_elbo": elbo(model, x_test).mean().item(), "test_nll_iw": -ll.mean().item(),
            "k": k, "eval_seconds": seconds, "active_units": active_units(model, x_test)}


def run_vae(config: VAEConfig, split: Split, seed: int = 0, *, lr: float = 1e-3,
            optimizer: str = "adamax", batch_size: int = 64, max_epochs: int = 1000,
            patience: int = 20, warmup_epochs: int = 0, k: int = 1000, device=None,
            progress: bool = True) -> Run:
    """Train ``build_vae(config)`` on ``split.train`` (early stopping on ``split.val``), then
    evaluate on ``split.test``. The model comes back on the CPU, in eval mode.

    A prior initialised from data (``prior_kwargs["init"] == "data"``) takes its rows from
    ``split.train``.
    """
    check_int(seed, "seed", minimum=0)
    check_int(batch_size, "batch_size", minimum=1)
    seed_everything(seed)
    wants_data = config.prior_kwargs.get("init") == "data"
    model = build_vae(config, data=split.train if wants_data else None)
    start = time.perf_counter()
    history = fit(model, TensorLoader(split.train, batch_size, shuffle=True, seed=seed),
                  TensorLoader(split.val, 1000), lr=lr, optimizer=optimizer,
                  max_epochs=max_epochs, patience=patience, seed=seed, device=device,
                  progress=progress, warmup_epochs=warmup_epochs)
    train_seconds = time.perf_counter() - start
    model.cpu().eval()
    seed_everything(seed)  # the evaluation's samples do not depend on how long training ran
    metrics = {"prior": config.prior, "latent_dim": config.latent_dim, "seed": seed,
               "warmup_epochs": warmup_epochs,
               "epochs": history.epochs, "best_epoch": history.best_epoch,
               "best_val_loss": history.best_val_loss,
               "seconds_per_epoch": history.seconds_per_epoch,
               "train_seconds": train_seconds, "num_params": count_parameters(model),
               **evaluate_on_test(model, split.test, k)}
    return Run(model, history, metrics)


@torch.no_grad()
def prior_picture(model: nn.Module, x: torch.Tensor, lim: float = 4.0, num_samples: int = 36,
                  title: str | None = None, vmax: float | None = None, seed: int = 0):
    """The picture of a prior page: the prior's density with one code ``z ~ q(z|x_n)`` per
    row of ``x`` on top (the aggregated posterior), and images generated from the prior.

    Returns ``(fig_density, fig_samples)``.
    """
    model.eval()
    axis, log_p = log_density_grid(model.prior, lim=lim)
    mu_e, log_var_e = model.encoder(x)
    z = model.encoder.sample(mu_e, log_var_e)
    fig_density = prior_contours(axis, log_p, z, title=title)
    torch.manual_seed(seed)
    side = int(num_samples ** 0.5)
    fig_samples = image_grid(model.sample(num_samples, mean=True), nrow=side, vmax=vmax,
                             title="samples (decoder means)")
    return fig_density, fig_samples

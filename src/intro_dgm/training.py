"""``fit``: the one training loop of the package (early stopping, best weights, progress bar).

``fit`` talks to a model through a single method: ``model.loss(x)["loss"]``, a tensor of
per-example losses ``(B,)``. Every model in the package provides it.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from .utils import check_int, get_device, module_device, seed_everything

OPTIMIZERS = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax, "adamw": torch.optim.AdamW}


@dataclass
class History:
    """What happened during :func:`fit`: mean losses per epoch (nats per example)."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = float("inf")
    stopped_early: bool = False

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    @property
    def seconds_per_epoch(self) -> float:
        return sum(self.epoch_seconds) / max(1, len(self.epoch_seconds))


@torch.no_grad()
def mean_loss(model: nn.Module, loader, device: torch.device | str | None = None) -> float:
    """Mean of ``model.loss(x)["loss"]`` over every example the loader yields."""
    device = torch.device(device) if device is not None else module_device(model)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x in loader:
        x = x.to(device)
        total += model.loss(x)["loss"].sum().item()
        count += x.shape[0]
    model.train(was_training)
    return total / count


def fit(model: nn.Module, train_loader, val_loader=None, *, lr: float = 1e-3,
        optimizer: str = "adamax", max_epochs: int = 1000, patience: int = 20,
        seed: int | None = 0, device: torch.device | str | None = None,
        progress: bool = True, grad_clip: float | None = None,
        warmup_epochs: int = 0) -> History:
    """Train ``model`` by minimising the mean of ``model.loss(x)["loss"]``.

    Early stopping: after every epoch the validation loss is computed; training stops when
    it has not improved for ``patience`` epochs, and the weights of the best epoch are put
    back into ``model`` before returning. Without ``val_loader`` the training loss is used.

    Args:
        model: any module with ``loss(x) -> {"loss": (B,), ...}``.
        train_loader, val_loader: iterables of batches (e.g. :class:`intro_dgm.data.TensorLoader`).
        lr, optimizer: learning rate and one of ``"adam"``, ``"adamax"``, ``"adamw"``.
        max_epochs, patience: stopping rule.
        seed: seeds every generator before training (``None`` leaves them alone).
        device: where to train; default :func:`intro_dgm.utils.get_device`.
        progress: show a tqdm progress bar.
        grad_clip: clip the gradient norm to this value (``None``: no clipping).
        warmup_epochs: KL warm-up (Bowman et al., 2016): in epoch ``e`` (from 0) the training
            loss is ``model.loss(x, beta=min(1, (e + 1) / warmup_epochs))["loss"]``, so the KL
            term is switched on gradually; 0 trains with ``beta = 1`` throughout. The validation
            loss always uses ``beta = 1`` (it is the -ELBO that selects the best epoch), and
            the patience counter starts only once the warm-up is over: while ``beta < 1``
            the validation -ELBO is expected to rise.
    Returns:
        A :class:`History`.
    """
    check_int(max_epochs, "max_epochs", minimum=1)
    check_int(patience, "patience", minimum=1)
    check_int(warmup_epochs, "warmup_epochs", minimum=0)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {optimizer!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if seed is not None:
        seed_everything(seed)
    device = get_device() if device is None else torch.device(device)
    model.to(device)
    opt = OPTIMIZERS[optimizer](model.parameters(), lr=lr)
    history = History()
    best_state = copy.deepcopy(model.state_dict())
    bad_epochs = 0

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=max_epochs, desc="epochs", leave=False)
    try:
        for epoch in range(max_epochs):
            start = time.perf_counter()
            model.train()
            total, count = 0.0, 0
            beta = min(1.0, (epoch + 1) / warmup_epochs) if warmup_epochs else None
            for x in train_loader:
                x = x.to(device, non_blocking=True)
                terms = model.loss(x) if beta is None else model.loss(x, beta=beta)
                loss = terms["loss"].mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                opt.step()
                total += loss.item() * x.shape[0]
                count += x.shape[0]
            history.train_loss.append(total / count)
            val = mean_loss(model, val_loader, device) if val_loader is not None \
                else history.train_loss[-1]
            history.val_loss.append(val)
            history.epoch_seconds.append(time.perf_counter() - start)
            if val < history.best_val_loss:
                history.best_val_loss, history.best_epoch = val, epoch
                best_state = copy.deepcopy(model.state_dict())
                bad_epochs = 0
            elif epoch >= warmup_epochs:  # no patience spent during the warm-up
                bad_epochs += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(train=f"{history.train_loss[-1]:.2f}", val=f"{val:.2f}",
                                best=f"{history.best_val_loss:.2f}")
            if bad_epochs >= patience:
                history.stopped_early = True
                break
    finally:
        if bar is not None:
            bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return history

"""``fit``: the one training loop of the package (early stopping, best weights, progress bar).

``fit`` talks to a model through the interface of :mod:`intro_dgm.models.base`:
``model.loss(x, beta)`` returns a dict of per-example tensors ``(B,)`` holding at least
``"loss"`` (what is minimised), ``model.bound(x)["elbo"]`` on the validation set selects the
best epoch, and ``model.kl_groups`` names the KL terms that free bits floor. The
hyperparameters live in a :class:`TrainConfig`, which every checkpoint and every results row
stores.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from .data import TensorLoader
from .utils import Registry, check_int, get_device, module_device, seed_everything

#: optimisers by name (a training config's ``optimizer``)
OPTIMIZERS = Registry("optimizer", {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax,
                                   "adamw": torch.optim.AdamW})


@dataclass
class TrainConfig:
    r"""How a model is trained; the defaults are the book's protocol.

    Attributes:
        optimizer: one of ``"adam"``, ``"adamax"``, ``"adamw"``.
        lr: learning rate.
        batch_size: training examples per step (used when ``fit`` is given tensors).
        max_epochs: upper limit of epochs.
        patience: stop after this many epochs without a better validation -ELBO.
        warmup_epochs: KL warm-up (Bowman et al., 2016): in epoch ``e`` (from 0) the model is
            trained with ``beta = min(1, (e + 1) / warmup_epochs)``; 0 means ``beta = 1``.
        grad_clip: clip the gradient norm to this value (``None``: no clipping).
        free_bits: :math:`\eta`, nats per latent dimension (Kingma et al., 2016): each KL
            group ``g`` of the model (``model.kl_groups``: one per level) enters the training
            objective as :math:`\max(\eta L_g, \overline{\mathrm{KL}_g})`, its batch mean
            floored at :math:`\eta L_g`, so that the optimiser gains nothing by pushing a
            level's KL below it (a remedy for posterior collapse); 0 means off. The
            validation -ELBO (early stopping) is never floored.
    """

    optimizer: str = "adamax"
    lr: float = 1e-3
    batch_size: int = 64
    max_epochs: int = 1000
    patience: int = 20
    warmup_epochs: int = 0
    grad_clip: float | None = None
    free_bits: float = 0.0

    def __post_init__(self):
        OPTIMIZERS.lookup(self.optimizer)  # a clear error for an unknown name
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"lr must be a number > 0, got {self.lr!r}")
        self.lr = float(self.lr)
        check_int(self.batch_size, "batch_size", minimum=1)
        check_int(self.max_epochs, "max_epochs", minimum=1)
        check_int(self.patience, "patience", minimum=1)
        check_int(self.warmup_epochs, "warmup_epochs", minimum=0)
        if self.grad_clip is not None:
            if isinstance(self.grad_clip, bool) or not isinstance(self.grad_clip, (int, float)) \
                    or not self.grad_clip > 0:
                raise ValueError(f"grad_clip must be None or a number > 0, got {self.grad_clip!r}")
            self.grad_clip = float(self.grad_clip)
        if isinstance(self.free_bits, bool) or not isinstance(self.free_bits, (int, float)) \
                or not self.free_bits >= 0:
            raise ValueError(f"free_bits must be a number >= 0, got {self.free_bits!r}")
        self.free_bits = float(self.free_bits)

    def beta(self, epoch: int) -> float:
        """The KL weight of epoch ``epoch`` (from 0)."""
        return min(1.0, (epoch + 1) / self.warmup_epochs) if self.warmup_epochs else 1.0


class NonFiniteLossError(FloatingPointError):
    """The training or validation loss became NaN or infinite."""


@dataclass
class History:
    """What happened during :func:`fit`, in nats per example.

    ``train_loss`` is the mean training objective of each epoch (``-ELBO`` with the warm-up
    weight ``beta``); ``val_loss`` the validation ``-ELBO`` with ``beta = 1``, which selects
    ``best_epoch`` (from 0).
    """

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


def objective(model: nn.Module, terms: dict, beta: float, free_bits: float) -> torch.Tensor:
    r"""The scalar a training step minimises: the batch mean of ``terms["loss"]``, or with
    free bits :math:`-\overline{\mathrm{rec}} + \beta\sum_g \max(\eta L_g,
    \overline{\mathrm{KL}_g})` over the model's ``kl_groups`` (see :class:`TrainConfig`)."""
    if not free_bits:
        return terms["loss"].mean()
    groups = model.kl_groups
    if not groups:
        raise ValueError(f"free_bits needs a model with kl_groups (KL term -> latent size); "
                         f"{type(model).__name__} has none")
    kl = sum(torch.clamp(terms[name].mean(), min=free_bits * size)
             for name, size in groups.items())
    return -terms["rec"].mean() + beta * kl


def _terms(model: nn.Module, x: torch.Tensor, beta: float) -> dict:
    terms = model.loss(x) if beta == 1.0 else model.loss(x, beta=beta)
    if "loss" not in terms or "elbo" not in terms:
        raise KeyError(f"{type(model).__name__}.loss must return a dict with 'loss' and "
                       f"'elbo'; got keys {sorted(terms)}")
    return terms


@torch.no_grad()
def mean_neg_elbo(model: nn.Module, loader, device: torch.device | str | None = None) -> float:
    """Mean of ``-model.bound(x)["elbo"]`` (eval mode) over every example the loader yields;
    the model's training mode is restored afterwards."""
    device = torch.device(device) if device is not None else module_device(model)
    was_training = model.training
    model.eval()
    try:
        total, count = 0.0, 0
        for x in loader:
            x = x.to(device)
            total -= model.bound(x)["elbo"].sum().item()
            count += x.shape[0]
    finally:
        model.train(was_training)
    return total / count


def _loader(data, batch_size: int, shuffle: bool, seed: int):
    if isinstance(data, torch.Tensor):
        return TensorLoader(data, batch_size, shuffle=shuffle, seed=seed)
    return data


def fit(model: nn.Module, train, val, config: TrainConfig | None = None, *,
        seed: int | None = 0, device: torch.device | str | None = None,
        progress: bool = True, **overrides) -> History:
    """Train ``model`` by minimising the mean of ``model.loss(x, beta)["loss"]`` (with
    ``config.free_bits``, the floored objective of :func:`objective`).

    Early stopping: after every epoch the validation ``-ELBO`` (``model.bound``, whatever the
    training objective) is computed; training stops when it has not improved for
    ``config.patience`` epochs, and the weights of the best epoch are put back into
    ``model`` before returning. The patience counter starts once a KL warm-up is over:
    while ``beta < 1`` the validation -ELBO is expected to rise.

    Args:
        model: a :class:`~intro_dgm.models.base.GenerativeModel` (``loss``, ``bound``,
            ``kl_groups``).
        train: a tensor ``(N, D)`` (batched here: shuffled every epoch, ``config.batch_size``
            rows per batch) or an iterable of batches (e.g. :class:`~intro_dgm.data.TensorLoader`).
        val: a tensor or an iterable of batches; its -ELBO selects the best epoch.
        config: a :class:`TrainConfig` (default: the book's protocol).
        seed: seeds every generator before training (``None`` leaves them alone).
        device: where to train; default :func:`~intro_dgm.utils.get_device` (CUDA when
            there is one). The model stays there: to call it on CPU tensors afterwards, move
            it back with ``model.cpu()``, as :func:`~intro_dgm.protocol.run` does.
        progress: show a tqdm progress bar.
        **overrides: fields of ``config`` to change, e.g. ``max_epochs=5``.
    Returns:
        A :class:`History`.
    Raises:
        NonFiniteLossError: the loss became NaN or infinite (with the epoch and batch).
    """
    config = replace(config or TrainConfig(), **overrides)
    if seed is not None:
        seed_everything(seed)
    device = get_device() if device is None else torch.device(device)
    train = _loader(train, config.batch_size, True, 0 if seed is None else seed)
    val = _loader(val, 1000, False, 0)
    model.to(device)
    opt = OPTIMIZERS[config.optimizer](model.parameters(), lr=config.lr)
    history = History()
    best_state = copy.deepcopy(model.state_dict())
    bad_epochs = 0

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=config.max_epochs, desc="epochs", leave=False)
    try:
        for epoch in range(config.max_epochs):
            start = time.perf_counter()
            model.train()
            total, count = 0.0, 0
            beta = config.beta(epoch)
            for batch, x in enumerate(train):
                x = x.to(device, non_blocking=True)
                loss = objective(model, _terms(model, x, beta), beta, config.free_bits)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                opt.step()
                value = loss.item()
                if not math.isfinite(value):
                    raise NonFiniteLossError(
                        f"the training loss became {value} in epoch {epoch + 1}, batch "
                        f"{batch + 1} (lr={config.lr}, beta={beta:g}); try a smaller lr or "
                        f"grad_clip")
                total += value * x.shape[0]
                count += x.shape[0]
            history.train_loss.append(total / count)
            val_loss = mean_neg_elbo(model, val, device)
            if not math.isfinite(val_loss):
                raise NonFiniteLossError(f"the validation -ELBO became {val_loss} in epoch "
                                         f"{epoch + 1}")
            history.val_loss.append(val_loss)
            history.epoch_seconds.append(time.perf_counter() - start)
            if val_loss < history.best_val_loss:
                history.best_val_loss, history.best_epoch = val_loss, epoch
                best_state = copy.deepcopy(model.state_dict())
                bad_epochs = 0
            elif epoch >= config.warmup_epochs:  # no patience spent during the warm-up
                bad_epochs += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(train=f"{history.train_loss[-1]:.2f}", val=f"{val_loss:.2f}",
                                best=f"{history.best_val_loss:.2f}")
            if bad_epochs >= config.patience:
                history.stopped_early = True
                break
    finally:
        if bar is not None:
            bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return history

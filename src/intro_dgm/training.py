"""``fit``: the one training loop of the package (early stopping, best weights, progress bar).

``fit`` talks to a model through the interface of :mod:`intro_dgm.models.base`:
``model.loss(x, beta)`` returns a dict of per-example tensors ``(B,)`` holding at least
``"loss"`` (what is minimised), ``model.bound(x)["elbo"]`` on the validation set selects the
best epoch, and ``model.kl_groups`` names the KL terms that free bits floor. The
hyperparameters live in a :class:`TrainConfig`, which every checkpoint and every results row
stores. ``train`` and ``val`` may be tensors, NumPy arrays (converted to the model's dtype) or
iterables of batches; an error names the argument and the batch.

A fit given ``checkpoint_path`` writes after every epoch
everything the next one depends on -- weights, optimiser state, best weights, history,
patience counter, every random generator (PyTorch CPU and CUDA, NumPy, Python, the loader's
shuffling) -- and ``resume=True`` continues from it: a resumed fit is bit-identical to an
uninterrupted one.
"""
from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import TensorLoader
from .models.base import GenerativeModel
from .utils import (Registry, atomic_write, check_bool, check_device, check_int, get_device,
                    module_device, random_state, seed_everything, set_random_state)

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
def mean_neg_elbo(model: nn.Module, loader, device: torch.device | str | None = None,
                  name: str = "data") -> float:
    """Mean of ``-model.bound(x)["elbo"]`` (eval mode) over every example the loader yields
    (an error names the batch: ``"<name> batch 3"``); the model's training mode is restored."""
    device = torch.device(device) if device is not None else module_device(model)
    was_training = model.training
    model.eval()
    try:
        total, count = 0.0, 0
        for number, x in enumerate(loader, start=1):
            x = x.to(device)
            with _naming(f"{name} batch {number} (shape {tuple(x.shape)})"):
                total -= model.bound(x)["elbo"].sum().item()
            count += x.shape[0]
    finally:
        model.train(was_training)
    return total / count


@contextmanager
def _naming(where: str):
    """Re-raise a ValueError / TypeError of the model prefixed with the data it was given."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        try:
            named = type(exc)(f"{where}: {exc}")
        except Exception:  # an exception class that takes other arguments
            named = ValueError(f"{where}: {exc}")
        raise named from exc


def _as_tensor(x, name: str, dtype: torch.dtype) -> torch.Tensor:
    """``x`` (a tensor or a NumPy array of numbers) as a tensor of ``dtype``, finite."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold numbers, got a NumPy array of dtype {x.dtype}")
        x = torch.from_numpy(np.array(x))  # a copy: the caller's array stays theirs
    if not isinstance(x, torch.Tensor) or x.is_complex():
        raise TypeError(f"{name} must be a tensor or NumPy array of numbers, got "
                        f"{type(x).__name__}")
    x = x.to(dtype)  # the same tensor when it is already of the model's dtype
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be (N, D) with N >= 1, got shape {tuple(x.shape)}")
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    if bad.any():
        raise ValueError(f"{name} contains NaN or infinite values (first in row "
                         f"{int(bad.nonzero()[0])})")
    return x


class _Batches:
    """An iterable of batches given to :func:`fit`: each batch converted and checked as a
    tensor is, and named (``"train batch 3"``) in an error."""

    def __init__(self, batches, name: str, dtype: torch.dtype):
        self.batches, self.name, self.dtype = batches, name, dtype

    def __iter__(self):
        for number, x in enumerate(self.batches, start=1):
            yield _as_tensor(x, f"{self.name} batch {number}", self.dtype)


def _loader(data, name: str, dtype: torch.dtype, batch_size: int, shuffle: bool, seed: int):
    what = "training" if name == "train" else "validation"
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return TensorLoader(_as_tensor(data, name, dtype), batch_size, shuffle=shuffle, seed=seed)
    if isinstance(data, (str, bytes, dict)) or not hasattr(data, "__iter__"):
        forgot = (" (fit(model, train, val, config): is the validation data missing?)"
                  if isinstance(data, TrainConfig) else "")
        raise TypeError(f"{name} must be the {what} data: a tensor (N, D), a NumPy array or an "
                        f"iterable of batches (a TensorLoader); got {type(data).__name__}{forgot}")
    return _Batches(data, name, dtype)


def inapplicable(model: nn.Module, config: TrainConfig) -> dict[str, str]:
    """The fields of ``config`` set for something ``model`` does not have: field -> why (a KL
    warm-up or free bits for a model without KL terms, ``model.kl_groups``)."""
    if not isinstance(model, GenerativeModel) or model.kl_groups:
        return {}
    why = f"{type(model).__name__} has no KL term to weigh (its kl_groups is empty)"
    return {name: why for name in ("warmup_epochs", "free_bits") if getattr(config, name)}


def _load_state(path: Path, config: TrainConfig) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's message would advise an unsafe weights_only=False
        raise ValueError(f"checkpoint_path {path} is not a training state that fit wrote "
                         f"(damaged, or another file: {type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != 1:
        raise ValueError(f"checkpoint_path {path} is not a training state that fit wrote")
    if state["config"] != asdict(config):
        changed = sorted(k for k, v in asdict(config).items() if state["config"].get(k) != v)
        raise ValueError(f"checkpoint_path {path} was written with other training settings "
                         f"({', '.join(changed)}); resume with the same TrainConfig")
    return state


def fit(model: nn.Module, train, val, config: TrainConfig | None = None, *,
        seed: int | None = 0, device: torch.device | str | None = None,
        progress: bool = True, checkpoint_path=None, resume: bool = False,
        **overrides) -> History:
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
        train: a tensor or NumPy array ``(N, D)`` (converted to the model's dtype; batched
            here: shuffled every epoch, ``config.batch_size`` rows per batch) or an iterable
            of batches (e.g. :class:`~intro_dgm.data.TensorLoader`).
        val: the same kinds; its -ELBO selects the best epoch.
        config: a :class:`TrainConfig` (default: the book's protocol).
        seed: seeds every generator before training (``None`` leaves them alone).
        device: where to train; default :func:`~intro_dgm.utils.get_device` (CUDA when
            there is one). The model stays there: to call it on CPU tensors afterwards, move
            it back with ``model.cpu()``, as :func:`~intro_dgm.protocol.run` does.
        progress: show a tqdm progress bar.
        checkpoint_path: write the training state there after every epoch (default: none,
            ``intro-dgm train`` passes it through :func:`~intro_dgm.protocol.run`).
        resume: continue from ``checkpoint_path`` when the file exists (same model, data and
            config: the result is bit-identical to an uninterrupted fit); else start afresh.
        **overrides: fields of ``config`` to change, e.g. ``max_epochs=5``.
    Returns:
        A :class:`History`.
    Raises:
        NonFiniteLossError: the loss became NaN or infinite (with the epoch and batch).
    """
    if not isinstance(model, GenerativeModel):
        raise TypeError(f"model must be a GenerativeModel (intro_dgm.models.base: loss(x, beta) "
                        f"to train on, bound(x) to stop on), got {type(model).__name__}")
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig or None, got {type(config).__name__} "
                        "(fields go as keyword arguments: fit(..., lr=1e-3))")
    config = replace(config or TrainConfig(), **overrides)
    for name, why in inapplicable(model, config).items():
        raise ValueError(f"{name} does not apply: {why}")
    if check_bool(resume, "resume") and checkpoint_path is None:
        raise ValueError("resume=True needs the checkpoint_path to resume from")
    if seed is not None:
        seed_everything(seed)
    device = get_device() if device is None else check_device(device)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()),
                 torch.get_default_dtype())
    source = train
    train = _loader(train, "train", dtype, config.batch_size, True, 0 if seed is None else seed)
    val = _loader(val, "val", dtype, 1000, False, 0)
    loader = train if isinstance(train, TensorLoader) else source
    shuffler = loader.generator if isinstance(loader, TensorLoader) else None
    model.to(device)
    opt = OPTIMIZERS[config.optimizer](model.parameters(), lr=config.lr)
    history = History()
    best_state = copy.deepcopy(model.state_dict())
    bad_epochs = 0
    if checkpoint_path is not None:
        checkpoint_path = Path(checkpoint_path)
        checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        if resume and checkpoint_path.is_file():
            state = _load_state(checkpoint_path, config)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            best_state, bad_epochs = state["best_state"], state["bad_epochs"]
            history = History(**state["history"])
            set_random_state(state["rng"])
            if isinstance(shuffler, torch.Generator) and state["loader"] is not None:
                shuffler.set_state(state["loader"])

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=config.max_epochs, initial=history.epochs, desc="epochs", leave=False)
    try:
        for epoch in range(history.epochs, 0 if history.stopped_early else config.max_epochs):
            start = time.perf_counter()
            model.train()
            total, count = 0.0, 0
            beta = config.beta(epoch)
            for batch, x in enumerate(train):
                x = x.to(device, non_blocking=True)
                with _naming(f"train batch {batch + 1} of epoch {epoch + 1} (shape "
                             f"{tuple(x.shape)})"):
                    terms = _terms(model, x, beta)
                loss = objective(model, terms, beta, config.free_bits)
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
            val_loss = mean_neg_elbo(model, val, device, name="val")
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
            history.stopped_early = bad_epochs >= config.patience
            if checkpoint_path is not None:  # after the epoch's time: seconds stay comparable
                state = {"format": 1, "config": asdict(config), "model": model.state_dict(),
                         "optimizer": opt.state_dict(), "best_state": best_state,
                         "bad_epochs": bad_epochs, "history": asdict(history),
                         "rng": random_state(), "loader": shuffler.get_state()
                         if isinstance(shuffler, torch.Generator) else None}
                atomic_write(checkpoint_path, lambda tmp: torch.save(state, tmp))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(train=f"{history.train_loss[-1]:.2f}", val=f"{val_loss:.2f}",
                                best=f"{history.best_val_loss:.2f}")
            if history.stopped_early:
                break
    finally:
        if bar is not None:
            bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return history

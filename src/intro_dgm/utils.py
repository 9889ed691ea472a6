"""Small helpers every other module may use: device, seeding, fast mode, validation.

Nothing here imports from the rest of the package (it is the bottom of the import graph).
"""
from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

#: The one environment variable that switches the notebooks (and CI) to fast mode.
FAST_MODE_ENV = "INTRO_DGM_FAST"


def fast_mode() -> bool:
    """True when ``INTRO_DGM_FAST`` is set to a true value (``1``, ``true``, ``yes``)."""
    return os.environ.get(FAST_MODE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def get_device(prefer: str | None = None) -> torch.device:
    """The device to compute on: CUDA when available, else Apple's MPS, else the CPU.

    Args:
        prefer: force a device name (``"cpu"``, ``"cuda"``...); ``None`` picks automatically.
    """
    if prefer is not None:
        return check_device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (the CPU if it has none)."""
    for t in [*module.parameters(), *module.buffers()]:
        return t.device
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) and return a seeded CPU generator.

    Same seed, same numbers: every random choice in the package either draws from the
    global PyTorch generator seeded here or from an explicit ``torch.Generator``.
    """
    check_int(seed, "seed", minimum=0)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


def random_state() -> dict:
    """The state of every generator :func:`seed_everything` seeds (PyTorch CPU and CUDA,
    NumPy, Python), as tensors and plain values: it saves with ``torch.save`` and loads with
    ``weights_only=True``; :func:`set_random_state` puts it back."""
    name, keys, *rest = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), *rest],
            "python": random.getstate()}


def set_random_state(state: dict) -> None:
    """Restore what :func:`random_state` returned (the CUDA part where there is CUDA)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def notebook_setup(seed: int = 0, threads: int | None = 1) -> tuple[bool, torch.device]:
    """The first cell of every chapter: returns ``(fast, device)`` and prints them.

    Reads fast mode from ``INTRO_DGM_FAST``, picks the device, seeds every generator and runs
    PyTorch on ``threads`` CPU threads. One thread by default because the numbers a page
    prints must be the ones its text quotes: another thread count sums in another order,
    and over a training run the rounding differences grow into different models.
    """
    if threads is not None:
        torch.set_num_threads(check_int(threads, "threads", minimum=1))
    fast, device = fast_mode(), get_device()
    seed_everything(seed)
    print(f"device: {device}, fast mode: {fast}, CPU threads: {torch.get_num_threads()}")
    return fast, device


def check_int(value, name: str, minimum: int | None = None) -> int:
    """Raise a clear error unless ``value`` is an integer (>= ``minimum`` when given)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_bool(value, name: str) -> bool:
    """Raise a clear error unless ``value`` is ``True`` or ``False`` (a NumPy bool too): a
    flag given ``"yes"`` or ``1`` is refused rather than read by its truth value."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def check_device(device, name: str = "device") -> torch.device:
    """``device`` as a :class:`torch.device`; one clear line naming ``name`` unless it is
    ``cpu``, ``cuda`` / ``cuda:N`` with that GPU present, or ``mps`` where there is one."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{name} must be cpu, cuda, cuda:N or mps; got {device!r}")
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise ValueError(f"{name} {str(device)!r}: CUDA is not available on this machine "
                             "(torch.cuda.is_available() is False); use cpu")
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"{name} {str(device)!r}: this machine has {count} CUDA "
                             f"device(s), cuda:0 to cuda:{count - 1}")
    mps = getattr(torch.backends, "mps", None)
    if parsed.type == "mps" and not (mps is not None and mps.is_available()):
        raise ValueError(f"{name} {str(device)!r}: Apple's MPS is not available on this "
                         "machine; use cpu")
    return parsed


def check_sizes(value, name: str, allow_empty: bool = True) -> tuple[int, ...]:
    """Layer sizes: a sequence (not a single int, not a string) of integers >= 1, as a tuple;
    a clear error otherwise (``allow_empty=False``: at least one layer)."""
    if isinstance(value, (int, str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a sequence of layer sizes, got {value!r}")
    if not allow_empty and not value:
        raise TypeError(f"{name} must be a non-empty sequence of layer sizes, got {value!r}")
    return tuple(check_int(h, name, minimum=1) for h in value)


def check_choice(value, name: str, allowed) -> str:
    """Raise a clear error unless ``value`` is one of ``allowed`` (a fixed set of options that
    is not a registry, e.g. a model's variance choices); returns ``value``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def check_fields(cls, values, what: str) -> dict:
    """Raise a clear error unless ``values`` is a dict whose keys are fields of dataclass ``cls``
    (``what`` names it in the message, e.g. ``"run spec"``); returns ``values``."""
    import dataclasses

    if not isinstance(values, dict):
        raise ValueError(f"a {what} must be a dict (a JSON object), got {type(values).__name__}")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} field(s) {', '.join(unknown)}; "
                         f"{cls.__name__} has {', '.join(known)}")
    return values


def check_config(config, cls, name: str = "config"):
    """Raise a clear error unless ``config`` is an instance of the config dataclass ``cls``
    (a builder's argument: builders take a config only); returns ``config``."""
    if not isinstance(config, cls):
        hint = f" (make one: {cls.__name__}(**fields))" if isinstance(config, dict) else ""
        raise TypeError(f"{name} must be a {cls.__name__}, got {type(config).__name__}{hint}")
    return config


def check_tensor(x, name: str, ndim: int | None = None, last_dim: int | None = None,
                 floating: bool = True) -> torch.Tensor:
    """Validate a tensor argument: type, number of dimensions, trailing size, finiteness.

    Raises:
        TypeError: ``x`` is not a tensor, or not floating point when ``floating``.
        ValueError: wrong ``ndim`` / ``last_dim``, or NaN/inf entries.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got dtype {x.dtype}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if last_dim is not None and x.shape[-1] != last_dim:
        raise ValueError(
            f"{name} must have size {last_dim} in its last dimension, got shape {tuple(x.shape)}")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode for a ``with`` block and restore its previous mode after,
    so an evaluation in the middle of training does not silently switch training off."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def atomic_write(path, write: Callable[[Path], None]) -> Path:
    """Write a file so that it is either absent, the old version or complete, never half
    written: ``write(tmp)`` fills a temporary file beside ``path``, which is then renamed
    over ``path`` (``os.replace`` is atomic on one file system)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_text(path, text: str) -> Path:
    """:func:`atomic_write` of a text file."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


class Registry(dict):
    """Names -> things (models, priors, decoders, optimisers, data sets, schedules, ...): a
    ``dict`` with one way to add an entry and one message for an unknown name.

    ``REG[name]`` and ``REG.lookup(name)`` raise ``ValueError("<kind> must be one of a, b, c;
    got 'x'")`` for a name that is not registered, so every registry in the package answers a
    typo the same way; ``REG.register(name, value)`` adds an entry (or, with ``value``
    omitted, decorates a function or class) and refuses a name already taken. A registry may
    be given a ``check(name, value)`` that every entry must pass when it is registered (e.g.
    the model registry refuses a class that does not implement the model interface).

    Args:
        kind: what the names name, as an argument would say it (``"prior"``, ``"model"``).
        entries: initial ``{name: value}`` (each registered, so each is checked).
        check: ``check(name, value)`` raising on an entry that may not be registered.
    """

    def __init__(self, kind: str, entries: dict | None = None,
                 check: Callable[[str, object], None] | None = None):
        super().__init__()
        self.kind, self._check = kind, check
        for name, value in (entries or {}).items():
            self.register(name, value)

    def register(self, name: str, value=None):
        """Add ``name -> value``; without ``value``, a decorator that registers its target."""
        if value is None:
            def decorate(target):
                self.register(name, target)
                return target
            return decorate
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is registered already")
        if self._check is not None:
            self._check(name, value)
        super().__setitem__(name, value)
        return value

    def __setitem__(self, name, value):  # one way to register
        raise TypeError(f"register a {self.kind} with .register({name!r}, ...)")

    def __missing__(self, name):
        raise ValueError(f"{self.kind} must be one of {', '.join(self)}; got {name!r}")

    def lookup(self, name: str):
        """The entry registered as ``name`` (the unknown-name message otherwise)."""
        return self[name]

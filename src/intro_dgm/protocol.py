"""One protocol for every model: a run specification, one function that trains and evaluates
it, and a results store that tables and pages read.

* :class:`RunSpec` -- everything a number depends on that we choose: model name and config,
  training config, data set, seed, importance samples, extra metrics, threads and device.
  Its :attr:`RunSpec.id` is a hash of the fields that differ from their defaults, so a config
  that later gains a field with a default keeps the ids of every stored run.
* :func:`run` -- build the model (seeded), train it with :func:`~intro_dgm.training.fit`
  (early stopping on the validation -ELBO), evaluate it on the test set. The metric keys are
  the same for every model (:data:`METRIC_KEYS`), plus ``test_<term>`` for every other term of
  the model's loss dict (per-level KLs, ...) and the requested :data:`EXTRA_METRICS`.
* :class:`ResultsStore` -- a JSON-lines file, one row per run holding its spec, metrics,
  environment (library versions, threads, device) and status; appended atomically, read
  back with clear errors, resumable (``ResultsStore.completed_ids``). A run whose loss
  became NaN is stored with ``status: "failed"`` and the reason, so a page can count failures.
* :func:`summarise` and :func:`markdown_table` -- mean and sd over seeds.
* Beside the store: what a page plots but a row cannot hold (per-example scores, a
  :func:`gallery` of samples and reconstructions, training curves) goes to one ``.npz`` per
  run (:func:`save_run_arrays`, :func:`load_run_arrays`), written by the ``after`` hook of
  :func:`run_and_store` before the row, so every stored row has its arrays.

``intro-dgm train``, ``reproduce`` and ``table`` (:mod:`intro_dgm.cli`) are thin wrappers.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .analysis import aggregated_posterior, hole_mass
from .data import DATASETS, Split, load_dataset, load_digits_labels
from .evaluation import (SampleScorer, active_units_per_level, bits_per_dim, elbo,
                         iwae_log_likelihood)
from .models import build_model, config_from_dict, model_entry
from .training import History, NonFiniteLossError, TrainConfig, fit
from .utils import (atomic_write, atomic_write_text, check_fields, check_int, eval_mode,
                    get_device, module_device, seed_everything)

#: The metrics every successful run reports (nats per example unless the name says bpd).
METRIC_KEYS = ("test_nll_iw", "test_elbo", "train_elbo", "k", "active_units", "epochs",
               "best_epoch", "best_val_loss", "seconds_per_epoch", "train_seconds",
               "eval_seconds", "num_params", "test_nll_iw_bpd", "test_neg_elbo_bpd")
#: the keys a model without a learned encoder (diffusion, flow) does not report
ENCODER_KEYS = ("active_units",)

#: Config fields that describe the data, filled in from the data set by :func:`run` unless
#: the spec sets them.
DATA_FIELDS = ("input_dim", "num_vals", "likelihood")


# ------------------------------------------------------------------------- the spec
def _field_default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _plain(value):
    """JSON-shaped copy: tuples become lists, dataclasses dicts."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store a {type(value).__name__} in a run spec: {value!r}")


def _non_default(cls, values: dict) -> dict:
    """The entries of ``values`` that differ from the defaults of dataclass ``cls``."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            default = _field_default(f)
            if default is dataclasses.MISSING or _plain(values[f.name]) != _plain(default):
                out[f.name] = _plain(values[f.name])
    return out


@dataclass
class RunSpec:
    """A run, fully described. Plain values only, so it round-trips through JSON.

    Attributes:
        model: a name in :data:`~intro_dgm.models.MODELS`.
        model_config: fields of that model's config (the rest keep their defaults; the data
            fields ``input_dim``, ``num_vals``, ``likelihood`` come from the data set).
        train: a :class:`~intro_dgm.training.TrainConfig`.
        dataset: a name in :data:`~intro_dgm.data.DATASETS`.
        dataset_options: options of that data set's loader (e.g. ``{"p": 0.5}`` for
            ``two-gaussians``).
        seed: seeds the model's initialisation, the batches, and the evaluation's samples.
        k: importance samples per test example for ``test_nll_iw``.
        extras: names in :data:`EXTRA_METRICS` to measure too.
        threads: ``torch.set_num_threads`` during the run (``None``: PyTorch's choice).
        device: ``"cpu"``, ``"cuda"``, ... (``None``: CUDA when there is one).
    """

    model: str = "vae"
    model_config: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    dataset: str = "digits"
    dataset_options: dict = field(default_factory=dict)
    seed: int = 0
    k: int = 1000
    extras: tuple[str, ...] = ()
    threads: int | None = None
    device: str | None = None

    def __post_init__(self):
        model_entry(self.model)  # a clear error for an unknown model
        if not isinstance(self.model_config, dict):
            raise TypeError(f"model_config must be a dict of config fields, got "
                            f"{type(self.model_config).__name__}")
        config_from_dict(self.model, self.model_config)  # unknown or invalid fields
        if isinstance(self.train, dict):
            self.train = train_config_from_dict(self.train)
        if not isinstance(self.train, TrainConfig):
            raise TypeError(f"train must be a TrainConfig or a dict, got {type(self.train).__name__}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {self.dataset!r}")
        if not isinstance(self.dataset_options, dict):
            raise TypeError(f"dataset_options must be a dict, got "
                            f"{type(self.dataset_options).__name__}")
        check_int(self.seed, "seed", minimum=0)
        check_int(self.k, "k", minimum=1)
        self.extras = tuple(self.extras)
        for name in self.extras:
            if name not in EXTRA_METRICS:
                raise ValueError(f"extras must name metrics in {', '.join(EXTRA_METRICS)}; "
                                 f"got {name!r}")
        if self.threads is not None:
            check_int(self.threads, "threads", minimum=1)

    def to_dict(self) -> dict:
        """Every field, defaults included (what a results row stores)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: dict) -> "RunSpec":
        """The inverse of :meth:`to_dict`; unknown fields are a clear error."""
        return cls(**check_fields(cls, values, "run spec"))

    def canonical(self) -> dict:
        """The fields that differ from their defaults, at every level: what :attr:`id` hashes."""
        config_cls = model_entry(self.model)[0]
        out = _non_default(RunSpec, {f.name: getattr(self, f.name)
                                     for f in dataclasses.fields(RunSpec)
                                     if f.name not in ("model_config", "train")})
        out["model"] = self.model  # always named, even when it is the default
        config = _non_default(config_cls, self.model_config)
        train = _non_default(type(self.train), dataclasses.asdict(self.train))
        if config:
            out["model_config"] = config
        if train:
            out["train"] = train
        return out

    @property
    def id(self) -> str:
        """12 hex digits of the SHA-256 of :meth:`canonical` as sorted JSON."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def train_config_from_dict(values: dict) -> TrainConfig:
    """A :class:`~intro_dgm.training.TrainConfig` from a dict; unknown fields are a clear error."""
    return TrainConfig(**check_fields(TrainConfig, values, "training"))


def resolved_config(spec: RunSpec, split: Split):
    """The model's config object, with the data fields filled from ``split``."""
    config_cls = model_entry(spec.model)[0]
    names = {f.name for f in dataclasses.fields(config_cls)}
    values = dict(spec.model_config)
    if split.num_vals == 0:  # real-valued data: a Gaussian likelihood, no number of values
        data = {"input_dim": split.dim, "likelihood": "gaussian"}
    else:
        data = {"input_dim": split.dim, "num_vals": split.num_vals,
                "likelihood": "categorical" if split.num_vals > 2 else "bernoulli"}
    for key, value in data.items():
        if key in names:
            values.setdefault(key, value)
    return config_from_dict(spec.model, values)


def environment(device: torch.device) -> dict:
    """What the numbers depend on beyond the spec: versions, threads, device, machine."""
    import numpy
    import scipy
    import sklearn

    from . import __version__

    return {"intro_dgm": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "scipy": scipy.__version__, "sklearn": sklearn.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "threads": torch.get_num_threads(), "device": str(device)}


# ------------------------------------------------------------------------- running
@dataclass
class Run:
    """A trained model (on the CPU, eval mode), its history, its metrics and its spec;
    ``test_log_likelihood`` holds the per-example IW estimates whose mean is
    ``-metrics["test_nll_iw"]`` (a page's histogram of them needs no second evaluation)."""

    spec: RunSpec
    model: nn.Module
    config: object
    history: History
    metrics: dict
    environment: dict
    test_log_likelihood: torch.Tensor | None = None

    def summary(self) -> str:
        """One line: epochs, test NLL and -ELBO, parameters, training time, extras."""
        m = self.metrics
        extras = "".join(f", {k} {m[k]:.3f}" for k in m if k not in METRIC_KEYS
                         and not k.startswith("test_") and isinstance(m[k], float))
        return (f"{m['epochs']} epochs (best {m['best_epoch'] + 1}), test NLL (S={m['k']}) "
                f"{m['test_nll_iw']:.2f}, -ELBO {-m['test_elbo']:.2f} nats{extras}, "
                f"{m['num_params']:,} parameters, {m['train_seconds']:.0f} s")


def count_parameters(model: nn.Module) -> int:
    """Trainable numbers in ``model`` (shared modules, like a VampPrior's encoder, count once)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def _test_terms(model: nn.Module, x: torch.Tensor) -> dict:
    """``test_<term>``: the mean over ``x`` of every loss term but ``loss`` and ``elbo``."""
    sums: dict[str, float] = {}
    with eval_mode(model):
        for i in range(0, x.shape[0], 1000):
            for key, value in model.loss(x[i:i + 1000]).items():
                if key not in ("loss", "elbo"):
                    sums[key] = sums.get(key, 0.0) + value.sum().item()
    return {f"test_{key}": total / x.shape[0] for key, total in sums.items()}


def run(spec: RunSpec, split: Split | None = None, progress: bool = False) -> Run:
    """Train and evaluate ``spec`` (see the module docstring); same spec, same numbers.

    Args:
        spec: the run.
        split: the data, when already loaded: it must be the data set ``spec.dataset`` names.
        progress: show a progress bar while training.
    Raises:
        NonFiniteLossError: training diverged (:func:`run_and_store` records it as failed).
    """
    named = load_dataset(spec.dataset, **spec.dataset_options)
    if split is None:
        split = named
    elif split.name != spec.dataset or not all(
            torch.equal(getattr(split, part), getattr(named, part))
            for part in ("train", "val", "test")):
        # A spec must describe its data: a row whose numbers came from other data than
        # spec.dataset names could not be reproduced from the spec.
        raise ValueError(f"split {split.name!r} is not the data set spec.dataset names "
                         f"({spec.dataset!r}, options {spec.dataset_options}); pass "
                         "split=None or the data it names")
    threads_before = torch.get_num_threads()
    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    try:
        device = get_device(spec.device)
        env = environment(device)
        config = resolved_config(spec, split)
        seed_everything(spec.seed)
        data = split.train if getattr(config, "needs_data", False) else None
        model = build_model(spec.model, config, data=data)
        start = time.perf_counter()
        history = fit(model, split.train, split.val, spec.train, seed=spec.seed, device=device,
                      progress=progress)
        train_seconds = time.perf_counter() - start
        model.cpu().eval()
        metrics, test_ll = evaluate_per_example(model, split, spec.k, spec.seed)
        metrics.update(epochs=history.epochs, best_epoch=history.best_epoch,
                       best_val_loss=history.best_val_loss,
                       seconds_per_epoch=history.seconds_per_epoch,
                       train_seconds=train_seconds, num_params=count_parameters(model))
        for name in spec.extras:
            seed_everything(spec.seed)  # each extra's samples independent of the others
            metrics.update(EXTRA_METRICS[name](model, split, spec))
    finally:
        torch.set_num_threads(threads_before)
    return Run(spec, model, config, history, metrics, env, test_ll)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, k: int, seed: int) -> dict:
    """The test metrics of a trained model (seeded, so they do not depend on training time)."""
    return evaluate_per_example(model, split, k, seed)[0]


@torch.no_grad()
def evaluate_per_example(model: nn.Module, split: Split, k: int, seed: int
                         ) -> tuple[dict, torch.Tensor]:
    """:func:`evaluate`'s metrics and the per-example IW estimates of ln p(x) on the test set
    (shape ``(N_test,)``; their mean is ``-metrics["test_nll_iw"]``)."""
    seed_everything(seed)
    start = time.perf_counter()
    ll = iwae_log_likelihood(model, split.test, k=k)
    eval_seconds = time.perf_counter() - start
    test_elbo = elbo(model, split.test).mean().item()
    metrics = {"test_nll_iw": -ll.mean().item(), "test_elbo": test_elbo, "k": k,
               "eval_seconds": eval_seconds}
    # active units measure a learned encoder; a diffusion model's posterior is fixed noise
    units = (active_units_per_level(model, split.test) if hasattr(model, "posterior_means")
             else {})
    if units:
        metrics["active_units"] = sum(units.values())
    if len(units) > 1:  # a hierarchical model: each level's too
        metrics.update({f"active_units_{level}": n for level, n in units.items()})
    metrics["train_elbo"] = elbo(model, split.train).mean().item()
    metrics["test_nll_iw_bpd"] = bits_per_dim(metrics["test_nll_iw"], split.dim)
    metrics["test_neg_elbo_bpd"] = bits_per_dim(-test_elbo, split.dim)
    metrics.update(_test_terms(model, split.test))
    return metrics, ll


def _hole_mass(model, split, spec) -> dict:
    """Prior mass where the training set's aggregated posterior is below 0.1 x the prior."""
    return {"hole_mass": hole_mass(model.prior, aggregated_posterior(model, split.train))}


def _sample_quality(model, split, spec) -> dict:
    """A classifier's view of 2,000 generated images (decoder means); Digits only."""
    if not split.name.startswith("digits"):
        raise ValueError(f"sample_quality needs Digits labels; dataset is {split.name!r}")
    labels = load_digits_labels()["train"]
    scores = SampleScorer(split.train, labels)(model.sample(2000, mean=True))
    return {"sample_confidence": scores["confidence"],
            "sample_class_entropy": scores["class_entropy"]}


def _reconstruction(model, split, spec) -> dict:
    """Mean squared error per pixel, in pixel values, between each test image and
    ``model.reconstruct(x)`` (decoder means): through the code of a VAE, forward and back
    through a flow, and for a diffusion model noised to z_T and run back (its code)."""
    with eval_mode(model):
        x_hat = model.reconstruct(split.test)
    return {"reconstruction_mse": ((x_hat - split.test) ** 2).mean().item()}


def _sampling_seconds(model, split, spec) -> dict:
    """Seconds to generate 1,000 images, the median of 3 timings (the first call warms up)."""
    model.sample(10)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model.sample(1000)
        times.append(time.perf_counter() - start)
    return {"sampling_seconds": statistics.median(times)}


#: Extra metrics by name, each ``fn(model, split, spec) -> dict``, measured when a spec's
#: ``extras`` lists the name.
EXTRA_METRICS: dict[str, Callable] = {"hole_mass": _hole_mass, "sample_quality": _sample_quality,
                                      "reconstruction": _reconstruction,
                                      "sampling_seconds": _sampling_seconds}


# ------------------------------------------------------------------------- beside the store
def gallery(model: nn.Module, split: Split, num_samples: int = 16,
            num_reconstructions: int = 8, seed: int = 0) -> dict:
    """What a results page shows of a trained model, as float32 arrays of shape (n, D):
    ``samples`` (``model.sample(num_samples, mean=True)``, seeded: a VAE's decoder means at
    codes drawn from its prior, a diffusion model's chain with its last step averaged, a
    flow's draws, as it has no mean),
    ``originals`` (the first ``num_reconstructions`` test images) and ``reconstructions``
    (``model.reconstruct`` of them: through the code of a VAE, a flow's inverse, a diffusion
    model's noised-and-denoised chain)."""
    import numpy as np

    check_int(num_samples, "num_samples", minimum=1)
    check_int(num_reconstructions, "num_reconstructions", minimum=1)
    originals = split.test[:num_reconstructions]
    seed_everything(seed)
    with torch.no_grad(), eval_mode(model):  # devices follow the model; arrays come back
        samples = model.sample(num_samples, mean=True)
        reconstructions = model.reconstruct(originals.to(module_device(model)))
    return {name: np.asarray(t.detach().cpu(), dtype=np.float32) for name, t in
            (("samples", samples), ("originals", originals),
             ("reconstructions", reconstructions))}


def save_run_arrays(directory, run_id: str, **arrays) -> Path:
    """Write ``DIR/<run_id>.npz`` (atomically): per-run arrays kept beside a results store
    (a gallery, per-example scores), which a page reads with :func:`load_run_arrays`."""
    import numpy as np

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path):
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to tmp
            np.savez_compressed(f, **arrays)
    return atomic_write(directory / f"{run_id}.npz", write)


def load_run_arrays(directory, run_id: str) -> dict:
    """The arrays :func:`save_run_arrays` wrote for ``run_id``, as a dict of NumPy arrays."""
    import numpy as np

    path = Path(directory) / f"{run_id}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"no arrays for run {run_id!r}: expected {path}, written by "
                                "the comparison script that stored the run")
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


# ------------------------------------------------------------------------- the store
class ResultsStore:
    """A JSON-lines results file: one row per run, ``{"id", "spec", "status", "metrics",
    "error", "environment", "finished"}``.

    Rows are only ever added; ``append`` rewrites the file through a temporary file and a
    rename, so a reader never sees half a row. A file truncated by other means is reported
    with its line number.
    """

    def __init__(self, path):
        self.path = Path(path)

    def rows(self) -> list[dict]:
        """Every row, in the order they were added (an absent file has none)."""
        if not self.path.exists():
            return []
        rows = []
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{self.path}: line {number} is not a complete JSON row "
                                 f"(truncated?): {exc.msg}") from None
            if not isinstance(row, dict) or not {"id", "spec", "status"} <= set(row):
                raise ValueError(f"{self.path}: line {number} is not a results row "
                                 "(needs id, spec and status)")
            rows.append(row)
        return rows

    def row(self, row_id: str) -> dict:
        """The last row stored under ``row_id``."""
        matches = [r for r in self.rows() if r["id"] == row_id]
        if not matches:
            raise ValueError(f"no row with id {row_id!r} in {self.path}")
        return matches[-1]

    def completed_ids(self) -> set[str]:
        """Ids of the runs that finished (status ``ok``): a resumed sweep skips them."""
        return {r["id"] for r in self.rows() if r["status"] == "ok"}

    def append(self, row: dict) -> None:
        """Add ``row`` at the end, atomically (the whole file is rewritten and renamed)."""
        old = self.path.read_text() if self.path.exists() else ""
        if old and not old.endswith("\n"):
            raise ValueError(f"{self.path} does not end with a newline (truncated?); "
                             "repair or remove its last line before appending")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, old + json.dumps(row, sort_keys=True) + "\n")


def make_row(spec: RunSpec, result: Run | None = None, error: str | None = None,
             env: dict | None = None) -> dict:
    """The results row of a finished (``result``) or failed (``error``) run."""
    return {"id": spec.id, "spec": spec.to_dict(),
            "status": "ok" if result is not None else "failed",
            "metrics": result.metrics if result is not None else None,
            "error": error,
            "environment": result.environment if result is not None else env,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def run_and_store(spec: RunSpec, store: ResultsStore | None = None, split: Split | None = None,
                  progress: bool = False, after: Callable[[Run], None] | None = None
                  ) -> tuple[dict, Run | None]:
    """:func:`run`, turning a diverged run into a ``failed`` row; appends the row to ``store``
    when given. Returns ``(row, run)`` (``run`` is ``None`` when it failed).

    ``after(run)`` is called on a finished run *before* its row is stored: what it saves
    beside the store (images, per-example scores) exists for every ``ok`` row, so a sweep
    interrupted in between re-runs the spec rather than leaving a row without its files.
    """
    try:
        result = run(spec, split, progress)
        if after is not None:
            after(result)
        row = make_row(spec, result)
    except NonFiniteLossError as exc:
        result = None
        row = make_row(spec, error=f"{type(exc).__name__}: {exc}",
                       env=environment(get_device(spec.device)))
    if store is not None:
        store.append(row)
    return row, result


def _stored_row(spec: RunSpec, after: Callable[[Run], None] | None) -> dict:
    """A worker of :func:`run_missing` with ``jobs > 1``: the row, not yet stored."""
    return run_and_store(spec, after=after)[0]


def run_missing(specs: Sequence[RunSpec], store: ResultsStore,
                describe: Callable[[RunSpec, dict], str] | None = None,
                after: Callable[[Run], None] | None = None, jobs: int = 1) -> list[dict]:
    """Run the specs whose id ``store`` does not yet hold as finished (a comparison script's
    resumable loop), storing each row as it finishes and printing ``describe(spec, row)`` for
    it; ``after`` as in :func:`run_and_store`. Returns the new rows, in the order of ``specs``.

    ``jobs > 1`` runs that many specs at once in new worker processes (give each spec
    ``threads=1`` on a machine with that many cores); ``after`` then runs in the worker and
    must be a module-level function of an importable module (or of a script guarded by
    ``if __name__ == "__main__"``). Only this process writes the store, in the order of
    ``specs``: a row whose run finished early waits for the runs before it.
    """
    check_int(jobs, "jobs", minimum=1)
    done = store.completed_ids()
    todo = [s for s in specs if s.id not in done]
    print(f"{len(done)} runs found, {len(todo)} to go", flush=True)
    rows = []

    def keep(spec, row):
        rows.append(row)
        if describe is not None:
            print(describe(spec, row), flush=True)

    if jobs == 1:
        for spec in todo:
            keep(spec, run_and_store(spec, store, after=after)[0])
        return rows
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # "spawn": fresh workers. A forked copy of a process that has already run PyTorch can
    # deadlock on the intra-op thread pool it inherits (it did here, under pytest).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        for spec, row in zip(todo, pool.map(_stored_row, todo, [after] * len(todo))):
            store.append(row)  # one writer: this process
            keep(spec, row)
    return rows


# ------------------------------------------------------------------------- tables
def spec_value(row: dict, key: str):
    """A spec field of a row by dotted path, e.g. ``"model_config.prior"``; a missing
    ``model_config`` field takes the model config's default."""
    value = row["spec"]
    parts = key.split(".")
    for i, part in enumerate(parts):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif i == 1 and parts[0] == "model_config":
            config_cls = model_entry(row["spec"]["model"])[0]
            defaults = {f.name: _field_default(f) for f in dataclasses.fields(config_cls)}
            if part not in defaults:
                raise ValueError(f"unknown key {key!r}: {config_cls.__name__} has no {part!r}")
            value = _plain(defaults[part])
        else:
            raise ValueError(f"unknown key {key!r}: the spec has no {part!r}")
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def varying_keys(rows: Sequence[dict]) -> list[str]:
    """Dotted spec keys whose value differs between rows (the seed excluded)."""
    def leaves(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and v and k != "prior_kwargs":
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"
    keys = sorted({k for r in rows for k in leaves(r["spec"])} - {"seed"})
    return [k for k in keys if len({json.dumps(_get(r["spec"], k), sort_keys=True)
                                    for r in rows}) > 1]


def _get(d: dict, key: str):
    for part in key.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def summarise(rows: Sequence[dict], group_by: Sequence[str] | None = None,
              metrics: Sequence[str] = ("test_nll_iw", "test_elbo", "active_units")
              ) -> list[dict]:
    """Mean and sample sd over the rows of each group (the seeds, usually).

    Failed rows are counted (``failed``) but not averaged. Returns one dict per group, in
    the order groups first appear: the ``group_by`` values, ``n``, ``failed``, and
    ``<metric>`` / ``<metric>_sd`` for each metric.
    """
    group_by = list(varying_keys(rows) if group_by is None else group_by)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(spec_value(r, k) for k in group_by), []).append(r)
    out = []
    for key, members in groups.items():
        ok = [r for r in members if r["status"] == "ok"]
        entry = dict(zip(group_by, key))
        entry.update(n=len(ok), failed=len(members) - len(ok))
        for m in metrics:
            values = [float(r["metrics"][m]) for r in ok if m in r["metrics"]]
            if len(values) not in (0, len(ok)):
                raise ValueError(f"metric {m!r} is missing from some rows of group {entry}")
            entry[m] = statistics.mean(values) if values else math.nan
            entry[m + "_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        out.append(entry)
    return out


def markdown_table(rows: Sequence[dict], group_by: Sequence[str] | None = None,
                   metrics: Sequence[str] = ("test_nll_iw", "test_elbo", "active_units"),
                   digits: int = 2) -> str:
    """:func:`summarise` as a markdown table: ``mean ± sd (n)`` per metric."""
    summary = summarise(rows, group_by, metrics)
    group_by = list(varying_keys(rows) if group_by is None else group_by)
    head = [k.split(".")[-1] for k in group_by] + ["runs"] + list(metrics)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        cells = [str(s[k]) for k in group_by]
        cells.append(f"{s['n']}" + (f" (+{s['failed']} failed)" if s["failed"] else ""))
        cells += [f"{s[m]:.{digits}f} ± {s[m + '_sd']:.{digits}f}" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

"""Running a spec: :func:`run` builds the model (seeded), trains it with
:func:`~intro_dgm.training.fit` (early stopping on the validation -ELBO) and evaluates it on
the test set (:mod:`~intro_dgm.runs.metrics`); :func:`run_and_store` turns a diverged run into
a ``failed`` row and stores it; :func:`run_missing` is a sweep's resumable loop, on this
process or through any :class:`concurrent.futures.Executor`.
"""
from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..data import Split, load_dataset
from ..models import build_model
from ..training import History, NonFiniteLossError, fit
from ..utils import check_int, get_device, seed_everything
from .metrics import EXTRA_METRICS, METRIC_KEYS, count_parameters, evaluate_per_example
from .spec import RunSpec, resolved_config
from .store import ResultsStore, make_row, save_run_arrays


def environment(device: torch.device) -> dict:
    """What the numbers depend on beyond the spec: versions, the code that wrote them (git
    commit and whether the tree had uncommitted changes, when the package runs from a clone),
    threads, device and the processor (another processor prints other last digits)."""
    import numpy
    import scipy
    import sklearn

    from .. import __version__

    return {"intro_dgm": __version__, **code_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "scipy": scipy.__version__,
            "sklearn": sklearn.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "cpu": cpu_model(),
            "threads": torch.get_num_threads(), "device": str(device)}


def code_version() -> dict:
    """``{"commit", "dirty"}`` of the git checkout the package runs from; both ``None`` for an
    installed package (its version names the code then)."""
    import subprocess
    from pathlib import Path

    here = Path(__file__).resolve().parent

    def git(*args):
        return subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True,
                              timeout=30)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode:
            return {"commit": None, "dirty": None}
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):  # no git on this machine
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def cpu_model() -> str:
    """The processor's model name (Linux: /proc/cpuinfo; elsewhere what platform says)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass
class Run:
    """A trained model (on the CPU, eval mode), its history, its metrics and its spec;
    ``per_example`` holds the float64 per-example values the test metrics are means of (and
    the validation set's alike: :func:`~intro_dgm.runs.metrics.evaluate_per_example`), which
    are kept beside a store with the training curves (:meth:`arrays`)."""

    spec: RunSpec
    model: nn.Module
    config: object
    history: History
    metrics: dict
    environment: dict
    per_example: dict = field(default_factory=dict)

    @property
    def test_log_likelihood(self) -> torch.Tensor:
        """The per-example IW estimates of ln p(x) on the test set (their mean is
        ``-metrics["test_nll_iw"]``): a page's histogram needs no second evaluation."""
        return torch.from_numpy(self.per_example["test_log_likelihood"])

    def arrays(self) -> dict:
        """What is kept beside a store for every run: the per-example values and the full
        training curves (each epoch's training objective, validation -ELBO and seconds)."""
        h = self.history
        return {**self.per_example, "train_loss": np.asarray(h.train_loss),
                "val_loss": np.asarray(h.val_loss), "epoch_seconds": np.asarray(h.epoch_seconds)}

    def summary(self) -> str:
        """One line: epochs, test NLL and -ELBO, parameters, training time, extras."""
        m = self.metrics
        extras = "".join(f", {k} {m[k]:.3f}" for k in m if k not in METRIC_KEYS
                         and not k.startswith("test_") and isinstance(m[k], float))
        return (f"{m['epochs']} epochs (best {m['best_epoch'] + 1}), test NLL (S={m['k']}) "
                f"{m['test_nll_iw']:.2f}, -ELBO {-m['test_elbo']:.2f} nats{extras}, "
                f"{m['num_params']:,} parameters, {m['train_seconds']:.0f} s")


def run(spec: RunSpec, split: Split | None = None, progress: bool = False,
        checkpoint_path=None, resume: bool = False) -> Run:
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
        model = build_model(spec.model, config)
        model.initialise_from_data(split.train)  # e.g. a VampPrior's pseudo-inputs; else nothing
        start = time.perf_counter()
        history = fit(model, split.train, split.val, spec.train, seed=spec.seed, device=device,
                      progress=progress, checkpoint_path=checkpoint_path, resume=resume)
        train_seconds = time.perf_counter() - start
        model.eval()  # evaluated where it trained (on a GPU when there is one), then the CPU
        metrics, per_example = evaluate_per_example(model, split, spec.k, spec.seed)
        metrics.update(epochs=history.epochs, best_epoch=history.best_epoch,
                       best_val_loss=history.best_val_loss,
                       seconds_per_epoch=history.seconds_per_epoch,
                       train_seconds=train_seconds, num_params=count_parameters(model))
        for name in spec.extras:
            seed_everything(spec.seed)  # each extra's samples independent of the others
            metrics.update(EXTRA_METRICS[name](model, split, spec))
        model.cpu()
    finally:
        torch.set_num_threads(threads_before)
    return Run(spec, model, config, history, metrics, env, per_example)


#: ``after(run)`` of a sweep: arrays to keep beside the store for a finished run
#: (``{name: array}``) on top of :meth:`Run.arrays`, which every run keeps; or ``None``.
AfterHook = Callable[["Run"], "dict | None"]


def run_and_store(spec: RunSpec, store: ResultsStore | None = None, split: Split | None = None,
                  progress: bool = False, after: AfterHook | None = None,
                  checkpoint_path=None, resume: bool = False) -> tuple[dict, Run | None]:
    """:func:`run`, turning a diverged run into a ``failed`` row; with ``store``, saves the
    run's arrays (:meth:`Run.arrays`: per-example values, training curves) and those
    ``after(run)`` returns beside it (:attr:`ResultsStore.arrays_dir`), then appends the row.
    Returns ``(row, run)`` (``run`` is ``None`` when it failed).

    The arrays are written *before* the row: every ``ok`` row has its arrays, and a sweep
    interrupted in between re-runs the spec rather than leaving a row without its files.
    """
    row, arrays, result = _row_and_arrays(spec, split, progress, after, checkpoint_path, resume)
    if store is not None:
        _store(store, spec, row, arrays)
    return row, result


def _row_and_arrays(spec: RunSpec, split: Split | None, progress: bool,
                    after: AfterHook | None, checkpoint_path=None, resume: bool = False
                    ) -> tuple[dict, dict | None, Run | None]:
    try:
        result = run(spec, split, progress, checkpoint_path, resume)
        arrays = {**result.arrays(), **((after(result) if after is not None else None) or {})}
        return make_row(spec, result), arrays, result
    except NonFiniteLossError as exc:
        return (make_row(spec, error=f"{type(exc).__name__}: {exc}",
                         env=environment(get_device(spec.device))), None, None)


def _store(store: ResultsStore, spec: RunSpec, row: dict, arrays: dict | None) -> None:
    if arrays:
        save_run_arrays(store.arrays_dir, spec.id, **arrays)
    store.append(row)


def _worker(spec: RunSpec, after: AfterHook | None) -> tuple[dict, dict | None]:
    """What :func:`run_missing` sends to an executor: the row and the arrays, not yet stored
    (the process that writes the store saves both)."""
    row, arrays, _ = _row_and_arrays(spec, None, False, after)
    return row, arrays


def run_missing(specs: Sequence[RunSpec], store: ResultsStore,
                describe: Callable[[RunSpec, dict], str] | None = None,
                after: AfterHook | None = None, jobs: int = 1,
                executor: Executor | None = None) -> list[dict]:
    """Run the specs whose id ``store`` does not yet hold as finished (a comparison script's
    resumable loop), storing each row as it finishes (arrays from ``after`` first, as in
    :func:`run_and_store`) and printing ``describe(spec, row)`` for it. Returns the new rows,
    in the order of ``specs``.

    Where the runs happen: with ``executor`` (any :class:`concurrent.futures.Executor`: a
    ``ProcessPoolExecutor``, or a cluster's, e.g. Dask's ``Client.get_executor()``) each
    spec is submitted to it; else ``jobs > 1`` runs that many at once in new "spawn" worker
    processes (give each spec ``threads=1`` on a machine with that many cores); else here,
    one after another. In a worker, ``after`` must be a module-level function of an
    importable module (or of a script guarded by ``if __name__ == "__main__"``); it returns
    its arrays and only this process writes the store and the arrays, in the order of
    ``specs``: a row whose run finished early waits for the runs before it.
    """
    check_int(jobs, "jobs", minimum=1)
    done = store.completed_ids()
    todo = [s for s in specs if s.id not in done]
    print(f"{len(done)} runs found, {len(todo)} to go", flush=True)
    rows = []

    def keep(spec, row, arrays):
        _store(store, spec, row, arrays)
        rows.append(row)
        if describe is not None:
            print(describe(spec, row), flush=True)

    if executor is None and jobs == 1:
        for spec in todo:
            row, arrays, _ = _row_and_arrays(spec, None, False, after)
            keep(spec, row, arrays)
        return rows
    if executor is not None:
        _submit_all(executor, todo, after, keep)
        return rows
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # "spawn": fresh workers. A forked copy of a process that has already run PyTorch can
    # deadlock on the intra-op thread pool it inherits (it did here, under pytest).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        _submit_all(pool, todo, after, keep)
    return rows


def _submit_all(executor: Executor, todo: Sequence[RunSpec], after: AfterHook | None,
                keep: Callable) -> None:
    """Every spec to ``executor`` at once; results kept in the order of ``todo``."""
    futures = [executor.submit(_worker, spec, after) for spec in todo]
    for spec, future in zip(todo, futures):
        keep(spec, *future.result())

"""Where results live: a :class:`ResultsStore` (a JSON-lines file, one row per run) and, beside
it, one ``.npz`` of arrays per run (:func:`save_run_arrays`, :func:`load_run_arrays`): what a
page plots but a row cannot hold (per-example scores, a gallery, training curves), and for
the few runs a page studies further, the trained weights (:func:`state_arrays`,
:func:`stored_model`).

A row holds a run's spec, metrics, environment (library versions, threads, device) and
status; a run whose loss became NaN is stored with ``status: "failed"`` and the reason, so a
page can count failures. Rows are appended atomically and read back with clear errors; a
sweep resumes from :meth:`ResultsStore.completed_ids`. A store holds one finished (``ok``)
row per run: a second is refused (a failed row may be followed by its retry), so the same
run is never counted as two seeds.

The book's stores travel with the package (:data:`STORES_DIR`, package data of the wheel), so
a page finds them by name (:func:`open_store`) in a clone, after ``pip install`` and in
Colab alike; a missing store is an error that names the file and how to get it, never an
empty store.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..utils import atomic_write, atomic_write_text
from .results import metric_value, spec_value, varying_keys
from .tables import markdown_table

#: Where the book's results stores live: ``NAME_results.jsonl`` and the arrays beside it
#: (``NAME_arrays/``), plus a few JSON files of measurements (``NAME.json``). Inside the
#: package, so that an installed wheel has them too; the comparison scripts write here.
STORES_DIR = Path(__file__).resolve().parents[1] / "stores"

#: the make target that fills each store (named in the error for a missing one)
MAKE_TARGETS = {"priors": "compare-priors", "posteriors": "compare-posteriors",
                "hierarchical": "compare-hierarchical", "diffusion": "compare-diffusion",
                "digits": "compare-digits", "fashion": "compare-fashion",
                "diffusion_sampling": "benchmark"}


class ResultsStore:
    """A JSON-lines results file: one row per run, ``{"id", "spec", "status", "metrics",
    "error", "environment", "finished"}``.

    Rows are only ever added; ``append`` rewrites the file through a temporary file and a
    rename, so a reader never sees half a row, and refuses a second ``ok`` row of a run. A
    file truncated by other means is reported with its line number.
    """

    def __init__(self, path, arrays_dir=None):
        self.path = Path(path)
        #: where per-run arrays are kept beside the store: ``NAME_results.jsonl`` ->
        #: ``NAME_arrays/`` unless given (see :func:`save_run_arrays`)
        self.arrays_dir = (Path(arrays_dir) if arrays_dir is not None else
                           self.path.with_name(self.path.stem.removesuffix("_results")
                                               + "_arrays"))

    def rows(self) -> list[dict]:
        """Every row, in the order they were added (an absent file has none)."""
        if self.path.is_dir():
            raise ValueError(f"{self.path} is a directory, not a results file")
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
        """The row of run ``row_id``: its ``ok`` row, else the last one stored."""
        for row in self.final_rows():
            if row["id"] == row_id:
                return row
        raise ValueError(f"no row with id {row_id!r} in {self.path}")

    def final_rows(self) -> list[dict]:
        """One row per run, in the order the runs first appear: its ``ok`` row, else its last
        (a failed run and its retry count once, as the retry). What a table summarises."""
        final: dict[str, dict] = {}
        for row in self.rows():
            if final.get(row["id"], {}).get("status") != "ok":
                final[row["id"]] = row
        return list(final.values())

    def table(self, group_by=None, metrics=None) -> str:
        """:func:`~intro_dgm.runs.tables.markdown_table` of the runs (:meth:`final_rows`: a
        run counts once) with a column of their ids, which ``intro-dgm reproduce`` takes.
        ``metrics`` default to those of ``test_nll_iw``, ``test_elbo``, ``active_units`` the
        rows hold; an unknown name is an error listing the known ones."""
        rows = self.final_rows()
        ok = [r for r in rows if r["status"] == "ok"]
        if metrics is None:
            metrics = [m for m in ("test_nll_iw", "test_elbo", "active_units")
                       if ok and m in ok[0]["metrics"]]
        for m in metrics if ok else []:
            metric_value(ok[0], m)
        group_by = varying_keys(rows) if group_by is None else list(group_by)
        lines = markdown_table(rows, group_by, metrics).splitlines()
        ids: dict[tuple, list[str]] = {}
        for r in rows:
            ids.setdefault(tuple(spec_value(r, k) for k in group_by), []).append(
                r["id"] + ("" if r["status"] == "ok" else " (failed)"))
        lines[0], lines[1] = lines[0] + " ids |", lines[1] + "---|"
        for i, members in enumerate(ids.values(), start=2):
            lines[i] += f" {' '.join(members)} |"
        return "\n".join(lines)

    def completed_ids(self) -> set[str]:
        """Ids of the runs that finished (status ``ok``): a resumed sweep skips them."""
        return {r["id"] for r in self.rows() if r["status"] == "ok"}

    def check_can_add(self, run_id: str) -> None:
        """Raise a clear error now, before a run, if its ``ok`` row could not be added later:
        the file is damaged, a directory, under a file or not writable, or holds the run."""
        if run_id in self.completed_ids():
            raise ValueError(f"{self.path} holds run {run_id} already (status ok); a store keeps "
                             "one finished row per run: write a re-run to another file")
        existing = next(p for p in (self.path, *self.path.parents) if p.exists())
        folder = existing if existing != self.path else self.path.parent
        if not folder.is_dir():
            raise ValueError(f"{self.path}: {folder} is a file, not a directory")
        if not os.access(folder, os.W_OK) or (self.path.exists()
                                              and not os.access(self.path, os.W_OK)):
            raise ValueError(f"{self.path} is not writable (permission denied)")

    def append(self, row: dict) -> None:
        """Add ``row`` at the end, atomically (the whole file is rewritten and renamed); a
        second ``ok`` row of a run is refused (:meth:`check_can_add` says so before a run)."""
        old = self.path.read_text() if self.path.exists() else ""
        if old and not old.endswith("\n"):
            raise ValueError(f"{self.path} does not end with a newline (truncated?); "
                             "repair or remove its last line before appending")
        if row.get("status") == "ok":
            self.check_can_add(row["id"])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, old + json.dumps(row, sort_keys=True) + "\n")


def make_row(spec, result=None, error: str | None = None, env: dict | None = None) -> dict:
    """The results row of :class:`~intro_dgm.runs.spec.RunSpec` ``spec``: finished
    (``result``, a :class:`~intro_dgm.runs.runner.Run`) or failed (``error``)."""
    return {"id": spec.id, "spec": spec.to_dict(),
            "status": "ok" if result is not None else "failed",
            "metrics": result.metrics if result is not None else None,
            "error": error,
            "environment": result.environment if result is not None else env,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


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


#: the prefix of a model's weights among a run's arrays (:func:`state_arrays`)
STATE_PREFIX = "state."


def state_arrays(model) -> dict:
    """A trained model's ``state_dict`` as arrays named ``state.<key>``, for a sweep's
    after-hook to keep beside the run's row (a page then studies the model without training
    it again: :func:`stored_model`)."""
    return {STATE_PREFIX + key: value.detach().cpu().numpy()
            for key, value in model.state_dict().items()}


def stored_model(store: "ResultsStore", row: dict):
    """The trained model of a stored ``row`` whose arrays hold its weights (in ``<id>.npz``,
    or, for weights too large for the wheel, ``<id>_state.npz``): built from the row's spec
    (data fields from its data set), the weights loaded, in eval mode. A row without stored
    weights is an error naming it."""
    import torch

    from ..data import load_dataset
    from ..models import build_model
    from .spec import RunSpec, resolved_config

    arrays = load_run_arrays(store.arrays_dir, row["id"])
    if not any(key.startswith(STATE_PREFIX) for key in arrays):
        # large weights live in a file of their own, kept out of the wheel
        # (``<id>_state.npz``, the Fashion-MNIST models)
        try:
            arrays = load_run_arrays(store.arrays_dir, f"{row['id']}_state")
        except FileNotFoundError:
            arrays = {}
    state = {key[len(STATE_PREFIX):]: torch.from_numpy(value) for key, value in arrays.items()
             if key.startswith(STATE_PREFIX)}
    if not state:
        raise ValueError(f"run {row['id']} of {store.path.name} was stored without its "
                         "weights (a sweep keeps them with state_arrays)")
    spec = RunSpec.from_dict(row["spec"])
    split = load_dataset(spec.dataset, **spec.dataset_options)
    model = build_model(spec.model, resolved_config(spec, split))
    model.load_state_dict(state)
    return model.eval()


def load_run_arrays(directory, run_id: str) -> dict:
    """The arrays :func:`save_run_arrays` wrote for ``run_id``, as a dict of NumPy arrays."""
    import numpy as np

    path = Path(directory) / f"{run_id}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"no arrays for run {run_id!r}: expected {path}, written by "
                                "the comparison script that stored the run")
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


def _how_to_get(name: str) -> str:
    target = MAKE_TARGETS.get(name)
    fill = f"'make {target}' in a clone of the repository writes it" if target else \
        "no make target writes it"
    return (f"{fill}; a pip-installed intro_dgm ships the book's stores: reinstall it if "
            "the file was removed")


def store_path(name: str) -> Path:
    """The file of the book's results store ``name`` (``"priors"`` ->
    ``STORES_DIR/priors_results.jsonl``); a clear error, saying how to get it, if missing."""
    path = STORES_DIR / f"{name}_results.jsonl"
    if not path.is_file():
        known = sorted(p.name.removesuffix("_results.jsonl")
                       for p in STORES_DIR.glob("*_results.jsonl"))
        raise FileNotFoundError(f"no results store {name!r}: expected {path} ({_how_to_get(name)}"
                                f"); the stores are {', '.join(known) or 'none'}")
    return path


def results_file(value: str) -> Path:
    """The file ``value`` names: a results file's path, or the name of one of the book's
    stores (``"priors"``, :func:`store_path`): what ``intro-dgm table`` and ``reproduce``
    take. A bare word that is neither is a missing store (the error names the stores)."""
    path = Path(value)
    if path.exists() or path.suffix or len(path.parts) > 1:
        return path
    return store_path(value)


def open_store(name: str) -> "ResultsStore":
    """The book's results store ``name`` (e.g. ``"priors"``), for reading; its arrays are in
    ``store.arrays_dir``. A missing file is an error, never an empty store."""
    return ResultsStore(store_path(name))


def load_measurement(name: str) -> dict:
    """A JSON file of measurements kept with the stores (``STORES_DIR/NAME.json``, e.g.
    ``"diffusion_sampling"``), as a dict; a clear error if missing or unreadable."""
    path = STORES_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no measurement file {name!r}: expected {path} "
                                f"({_how_to_get(name)})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON (line {exc.lineno}): {exc.msg}") from None


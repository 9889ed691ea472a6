"""Saving and loading trained models: a ``state_dict`` plus the spec and config that rebuild it;
and the run directory ``intro-dgm train --out DIR`` writes, which is never lost.

The file holds only tensors and plain Python values, so it loads with
``torch.load(..., weights_only=True)`` (the default since PyTorch 2.6). Files are written
atomically (:func:`~intro_dgm.utils.atomic_write`), so an interrupted run never leaves a
half-written file.

A run directory (``checkpoint.pt``, ``spec.json``, ``metrics.json``) is written into a staging
directory beside it, ``DIR.partial`` (:func:`staging_dir`), which also holds the per-epoch
training state of :func:`~intro_dgm.training.fit` (:data:`TRAINING_STATE`), and is moved into
place only when complete (:func:`finish_run`): an interrupted run leaves ``DIR`` as it was and
a staging directory that ``--resume`` continues (:func:`check_run_directory`). What a run
needs beyond its spec is checked before the directory is opened (:func:`check_run`).
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
import pickle
import shutil
import signal
import zipfile
from pathlib import Path

import torch

from .analysis import aggregated_posterior
from .data import Split, load_dataset
from .models import MODELS, build_model, config_from_dict
from .models.schedules import make_betas
from .protocol import ResultsStore, RunSpec, resolved_config, run_and_store
from .training import inapplicable
from .utils import atomic_write, atomic_write_text, check_device

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
SPEC = "spec.json"
#: fit's per-epoch state in a staging directory (``fit(checkpoint_path=...)``)
TRAINING_STATE = "training_state.pt"


def save_checkpoint(directory, model_name: str, config, model: torch.nn.Module,
                    spec: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``DIR/checkpoint.pt``: ``{"model", "config", "spec", "state_dict", "extra"}``.

    ``config`` is the model's config object (with the data fields filled in); ``spec`` the
    run's :meth:`~intro_dgm.protocol.RunSpec.to_dict`, which holds the training config.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = json.loads(json.dumps(dataclasses.asdict(config)))  # tuples -> lists: plain values
    payload = {"model": model_name, "config": cfg, "spec": spec or {},
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "extra": extra or {}}
    return atomic_write(directory / CHECKPOINT, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(directory) -> dict:
    """The raw checkpoint dict of ``DIR`` (loaded with ``weights_only=True``); one clear line
    for a file that is not one (a spec.json, a truncated or foreign file)."""
    directory = Path(directory)
    path = directory / CHECKPOINT if directory.is_dir() else directory
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: expected the directory written by "
                                "'intro-dgm train --out DIR' (holding checkpoint.pt)")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        if path.suffix == ".json":
            raise ValueError(f"{path} is not a checkpoint: give the run directory "
                             f"{path.parent} (the one holding {CHECKPOINT})")
        raise ValueError(f"{path} is truncated or damaged (not a complete file torch.save "
                         "wrote); train the run again to rewrite it")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's message advises weights_only=False: unsafe
        raise ValueError(f"{path} holds objects other than tensors and plain values: it is "
                         "not an intro_dgm checkpoint, and is not loaded") from None
    except Exception as exc:
        raise ValueError(f"{path} is truncated or damaged: torch.load could not read it "
                         f"({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("model") not in MODELS \
            or not {"config", "state_dict"} <= set(payload):
        raise ValueError(f"{path} is not an intro_dgm checkpoint")
    return payload


def load_model(directory) -> torch.nn.Module:
    """Rebuild the trained model from ``DIR/checkpoint.pt``, in eval mode, on the CPU."""
    payload = load_checkpoint(directory)
    config = config_from_dict(payload["model"], payload["config"])
    # A data-initialised part (pseudo-inputs) is a placeholder until the trained values of
    # the state_dict replace it: loading needs no training data.
    model = build_model(payload["model"], config)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"{directory}: the weights do not fit the model its config describes "
                         f"({str(exc).splitlines()[0]})") from None
    return model.eval()


def write_metrics(directory, metrics: dict) -> Path:
    """Write ``DIR/metrics.json`` atomically (it appears only once the run has finished)."""
    return atomic_write_text(Path(directory) / METRICS,
                             json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def save_run(directory, result, row: dict) -> None:
    """A finished run (a :class:`~intro_dgm.protocol.Run` and its results row) as a run
    directory: checkpoint and spec first, metrics last (its presence means it finished)."""
    save_checkpoint(directory, result.spec.model, result.config, result.model,
                    spec=row["spec"], extra={"dataset": result.spec.dataset, "id": row["id"]})
    atomic_write_text(Path(directory) / SPEC,
                      json.dumps({"id": row["id"], "spec": row["spec"]}, indent=2) + "\n")
    write_metrics(directory, {"id": row["id"], **row["metrics"]})


def load_run(directory) -> tuple[torch.nn.Module, dict, Split]:
    """A saved run: its model (:func:`load_model`), its spec (a dict; ``{}`` in a checkpoint
    written before run specs) and its data set."""
    payload = load_checkpoint(directory)
    spec = payload.get("spec") or {}
    name = spec.get("dataset", (payload.get("extra") or {}).get("dataset", "digits"))
    return load_model(directory), spec, load_dataset(name, **spec.get("dataset_options", {}))


def read_spec(path) -> dict:
    """The run spec in a JSON file (as :meth:`~intro_dgm.protocol.RunSpec.to_dict` writes
    it, or a run directory's ``spec.json``); one clear line for a file that is not one."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"spec file {path} is a directory; give a JSON file (a run's spec.json)")
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"spec file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"spec file {path} is not valid JSON: {exc.msg} at line "
                         f"{exc.lineno}") from None
    except UnicodeDecodeError:
        raise ValueError(f"spec file {path} is not valid JSON: not a text file") from None
    if isinstance(values, dict) and set(values) == {"id", "spec"}:
        return values["spec"]  # a run directory's spec.json
    return values


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _schedule_ignores(schedule: str, steps: int, name: str, value) -> bool:
    """Whether a noise schedule ignores its option ``name`` (two values, the same betas)."""
    try:
        other = value / 2 if value else 1.0
        return bool((make_betas(schedule, steps, **{name: value})
                     == make_betas(schedule, steps, **{name: other})).all())
    except ValueError:  # the other value is out of range for it: the option is used
        return False


def check_run(spec: RunSpec, options: bool = True) -> Split:
    """Check, before a run starts, what it needs beyond its spec's own checks; returns its
    data. Refused (one line naming the option): a device this machine lacks, data that do not
    load, a config the model cannot be built from; with ``options``, also options without
    effect for the model or its noise schedule (they would still change the run's id) and
    extra metrics the data set or the model cannot give (they would fail after training)."""
    if spec.device is not None:
        check_device(spec.device, "--device")
    split = load_dataset(spec.dataset, **spec.dataset_options)
    config = resolved_config(spec, split)
    model = build_model(spec.model, config)
    if not options:
        return split
    for name, why in inapplicable(model, spec.train).items():
        raise ValueError(f"{_flag(name)} does not apply to --model {spec.model}: {why}")
    given = spec.model_config
    for name in list(inspect.signature(make_betas).parameters)[2:]:
        if given.get(name) is not None and _schedule_ignores(config.schedule, config.steps,
                                                             name, given[name]):
            raise ValueError(f"{_flag(name)} does not apply to --schedule {config.schedule}")
    if given.get("embedding_dim") is not None and given.get("shared") is False:
        raise ValueError("--embedding-dim does not apply with --no-shared (a network per step "
                         "takes no step embedding)")
    if "sample_quality" in spec.extras and not split.name.startswith("digits"):
        raise ValueError(f"--extras sample_quality needs the Digits labels (--dataset digits "
                         f"or digits-binary); --dataset {spec.dataset} has none")
    if "hole_mass" in spec.extras:
        try:
            aggregated_posterior(model, split.train[:2]), model.prior
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValueError(f"--extras hole_mass needs a VAE with a diagonal-Gaussian "
                             f"posterior and a prior; --model {spec.model} here: {exc}") from None
    return split


def staging_dir(out) -> Path:
    """Where the run for ``out`` is written until it is complete: ``out`` + ``.partial``."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def run_id_of(directory) -> str | None:
    """The run id ``DIR/spec.json`` names (``None`` without a readable one)."""
    try:
        return json.loads((Path(directory) / SPEC).read_text()).get("id")
    except (OSError, ValueError, AttributeError):
        return None


def check_run_directory(out, run_id: str, force: bool = False, resume: bool = False) -> Path:
    """Check ``--out`` before run ``run_id`` starts; return its staging directory. Refused:
    a file, a path under a file, the current directory, an existing run or other content
    (unless ``force``), a staging directory left by an interrupted run (unless ``resume``,
    for the same run, or ``force``), and ``resume`` with nothing to resume."""
    out = Path(out)
    if out.resolve() in (Path.cwd(), *Path.cwd().parents):
        raise ValueError(f"--out {out} is the current directory or holds it; name a new one")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"--out {out}: {existing} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        held = run_id_of(out)
        what = f"run {held}" if held else "files"
        raise ValueError(f"--out {out} holds {what} already: pass --force to replace it (it is "
                         "kept until the new run is complete), or choose another directory")
    staging = staging_dir(out)
    held = run_id_of(staging) if staging.is_dir() else None
    if resume and held != run_id:
        raise ValueError(f"--resume: nothing to resume for run {run_id}: " + (
            f"{staging} holds run {held}" if staging.exists() else f"no {staging}"))
    if staging.exists() and not (resume or force):
        raise ValueError(f"{staging} holds an interrupted run ({held or 'unknown'}): continue it "
                         "with --resume, or pass --force to start over")
    return staging


def open_staging(staging: Path, spec: RunSpec, resume: bool = False) -> None:
    """Create the staging directory with ``spec.json`` naming its run; with ``resume`` keep
    what it holds. The last check before a run: a directory that cannot be written is
    reported now, not after training."""
    if staging.exists() and not resume:
        shutil.rmtree(staging)  # --force: start over
    try:
        staging.mkdir(parents=True, exist_ok=resume)
        atomic_write_text(staging / SPEC, json.dumps({"id": spec.id, "spec": spec.to_dict()},
                                                     indent=2) + "\n")
    except OSError as exc:
        raise ValueError(f"--out {staging.with_suffix('')}: cannot write {staging} "
                         f"({exc.strerror or exc})") from None


def epochs_done(staging: Path) -> int:
    """The epochs the training state in a staging directory holds (0 without one)."""
    try:
        state = torch.load(Path(staging) / TRAINING_STATE, map_location="cpu", weights_only=True)
        return len(state["history"]["train_loss"])
    except (OSError, KeyError, TypeError, RuntimeError, pickle.UnpicklingError):
        return 0


def finish_run(staging: Path, out, result, row: dict) -> None:
    """Save a finished run into its staging directory (:func:`save_run`) and put it at
    ``out``: the old ``out`` renamed aside, the staging directory renamed to ``out`` (its
    training state dropped), the old removed. Ctrl-C is ignored meanwhile."""
    out = Path(out)
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: no signals here
        previous = None
    try:
        save_run(staging, result, row)
        (staging / TRAINING_STATE).unlink(missing_ok=True)
        if out.exists():
            old = out.with_name(f".{out.name}.replaced")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(staging, out)
            shutil.rmtree(old)
        else:
            os.replace(staging, out)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def prepare_run(spec: RunSpec, out, results=None, force: bool = False, resume: bool = False,
                options: bool = True) -> tuple[ResultsStore | None, Split]:
    """Everything run ``spec`` needs, checked before it starts, then its staging directory
    opened: the results file (:meth:`~intro_dgm.protocol.ResultsStore.check_can_add`), the
    directory ``out`` (:func:`check_run_directory`), the run itself (:func:`check_run`).
    Returns the store (``None`` without ``results``) and the data."""
    store = ResultsStore(results) if results is not None else None
    try:
        if store is not None:
            store.check_can_add(spec.id)
    except ValueError as exc:
        raise ValueError(f"--results {exc}") from None
    staging = check_run_directory(out, spec.id, force, resume)
    split = check_run(spec, options)
    open_staging(staging, spec, resume)
    return store, split


def run_into(out, spec: RunSpec, split: Split, store: ResultsStore | None = None,
             progress: bool = False, checkpoint: bool = False, resume: bool = False):
    """Run ``spec`` (:func:`~intro_dgm.protocol.run_and_store`) in the staging directory of
    ``out`` (:func:`open_staging`), with ``checkpoint`` every epoch there (``resume``: from
    the last one), and put a finished run at ``out`` (:func:`finish_run`); a diverged one
    leaves nothing. Returns ``(row, run)`` (``run`` is ``None`` when it diverged)."""
    staging = staging_dir(out)
    row, result = run_and_store(spec, store, split=split, progress=progress,
                                checkpoint_path=staging / TRAINING_STATE if checkpoint else None,
                                resume=resume)
    if result is None:
        shutil.rmtree(staging, ignore_errors=True)
    else:
        finish_run(staging, out, result, row)
    return row, result

"""Command line: ``intro-dgm train | evaluate | reproduce | table``.

* ``train --model NAME [options] --out DIR`` (or ``train --spec FILE --out DIR``): one run of
  :func:`~intro_dgm.protocol.run`; writes ``DIR/checkpoint.pt``, ``DIR/spec.json`` and, last,
  ``DIR/metrics.json``; ``--results FILE`` also appends the row to a results store. The
  options are generated from the dataclasses: a model's config fields (``--latent-dim``,
  ``--hidden``, ``--prior``, ...), the options of every prior's constructor
  (``--num-components``, ``--learn-weights``, ``--init``, ``--num-layers``; ``--prior-hidden``
  where a name is taken by the model), the options of every posterior family
  (``--num-steps``, ``--num-ortho``, ``--num-householder``), the
  :class:`~intro_dgm.training.TrainConfig` fields
  (``--lr``, ``--warmup-epochs``, ...) and the spec's own (``--dataset``, ``--seed``, ``--k``,
  ``--extras``, ``--threads``, ``--device``, ``--dataset-options``).
* ``evaluate DIR [--k K]``: re-evaluate a checkpoint on the test set.
* ``--data-dir DIR`` (``train``, ``evaluate``, ``reproduce``): where the files of a data set
  read from disk (``--dataset fashion-mnist``) are; it sets ``$INTRO_DGM_DATA_DIR`` and is
  not part of the run spec, so a run's id does not depend on where the files live.
* ``reproduce RESULTS ROW_ID --out DIR``: re-run a stored row and print the stored and the
  new metrics side by side (exit status 1 if a metric other than a time differs).
* ``table RESULTS [--group-by KEY ...] [--metrics M ...]``: mean ± sd over seeds, as markdown.

Errors in the arguments, a spec or a results file print one line
(``intro-dgm: error: ...``) and exit with status 2; nothing is written.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import sys
from pathlib import Path

from . import checkpoints
from .data import DATA_DIR_ENV, DATASETS, load_dataset
from .models import MODELS, model_entry
from .encoders import POSTERIORS
from .priors import PRIORS
from .runs.reproduce import REPRODUCE_RTOL, reproduction_report
from .protocol import (DATA_FIELDS, EXTRA_METRICS, ResultsStore, RunSpec, evaluate,
                       markdown_table, run_and_store, store_path)
from .training import TrainConfig
from .utils import seed_everything


class CLIError(Exception):
    """An error to report in one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise CLIError(message)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _number(kind, flag: str, positive: bool = False):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} must be {'an integer' if kind is int else 'a number'}, got {text!r}")
        if positive and value <= 0:
            raise argparse.ArgumentTypeError(f"{flag} must be > 0, got {value}")
        return value
    return parse


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--dataset-options must be a JSON object: {exc.msg}")
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--dataset-options must be a JSON object, got {text!r}")
    return value


def _add_option(group, flag: str, dest: str, annotation: str, help_text: str) -> bool:
    """Add a flag for a field of type ``annotation`` (a string: the modules use postponed
    annotations). Returns False for a type the command line cannot express."""
    base = annotation.replace(" | None", "").strip()
    kwargs = dict(dest=dest, default=None, help=help_text, metavar=dest.split("__")[-1].upper())
    if base == "bool":
        kwargs.pop("metavar")
        group.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
    elif base in ("int", "float"):
        group.add_argument(flag, type=_number(int if base == "int" else float, flag), **kwargs)
    elif base == "str":
        group.add_argument(flag, **kwargs)
    elif base == "tuple[int, ...]":
        group.add_argument(flag, type=_number(int, flag), nargs="+", **kwargs)
    else:
        return False
    return True


#: The parts of a model whose own options come from their constructors: config field ->
#: (the registry of names, the field holding the options, the callable whose signature
#: lists the options, the arguments the model supplies itself).
_PARTS = {
    "prior": (PRIORS, "prior_kwargs", lambda cls: cls,
              {"self", "latent_dim", "encoder", "input_dim", "data", "weights", "input_range"}),
    "posterior": (POSTERIORS, "posterior_kwargs", lambda entry: entry[0].from_mlp,
                  {"self", "input_layer", "input_dim", "hidden", "latent_dim", "kind"}),
}


def _part_options(part: str) -> dict[str, tuple[str, list[str]]]:
    """Every simple option of every member of ``part``: name -> (annotation, members)."""
    registry, _, signature_of, supplied = _PARTS[part]
    options: dict[str, tuple[str, list[str]]] = {}
    for member, entry in registry.items():
        for name, p in inspect.signature(signature_of(entry)).parameters.items():
            if name not in supplied and isinstance(p.annotation, str):
                options.setdefault(name, (p.annotation, []))[1].append(member)
    return options


def _part_flag(part: str, name: str) -> str:
    """``--name``, or ``--part-name`` where a model config field has that name."""
    return _flag(f"{part}_{name}" if name in _model_fields() else name)


def _model_fields() -> dict[str, str]:
    """Every command-line field of every registered model's config: name -> annotation."""
    fields = {}
    for config_cls, *_ in MODELS.values():
        for f in dataclasses.fields(config_cls):
            if f.name not in DATA_FIELDS:
                fields.setdefault(f.name, f.type)
    return fields


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command, with ``train``'s options generated from the configs."""
    parser = _Parser(prog="intro-dgm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    t = sub.add_parser("train", help="train a model; write DIR/checkpoint.pt, spec.json, metrics.json")
    t.add_argument("--spec", type=Path, help="a JSON run spec (instead of the options below)")
    t.add_argument("--model", default=None, choices=sorted(MODELS))
    g = t.add_argument_group("model config (fields of the model's config dataclass)")
    model_fields = _model_fields()
    for name, annotation in model_fields.items():
        _add_option(g, _flag(name), f"model__{name}", annotation, f"config field {name}")
    for part in _PARTS:
        g = t.add_argument_group(f"{part} options (arguments of the chosen {part}'s constructor)")
        for name, (annotation, users) in _part_options(part).items():
            _add_option(g, _part_flag(part, name), f"{part}__{name}", annotation,
                        f"{name} of --{part} {'/'.join(users)}")
    g = t.add_argument_group("training (fields of TrainConfig)")
    for f in dataclasses.fields(TrainConfig):
        _add_option(g, _flag(f.name), f"train__{f.name}", f.type, f"default {f.default}")
    g = t.add_argument_group("run")
    g.add_argument("--dataset", default=None, choices=DATASETS)
    g.add_argument("--dataset-options", type=_json_object, default=None, metavar="JSON",
                   help='options of the data set, e.g. \'{"p": 0.5}\' for two-gaussians, '
                        '\'{"binarise": "dynamic"}\' for fashion-mnist')
    g.add_argument("--seed", type=_number(int, "--seed"), default=None)
    g.add_argument("--k", type=_number(int, "--k", positive=True), default=None,
                   help="importance samples per test example (default 1000)")
    g.add_argument("--extras", nargs="+", choices=sorted(EXTRA_METRICS), default=None,
                   help="extra metrics to measure")
    g.add_argument("--threads", type=_number(int, "--threads", positive=True), default=None,
                   help="torch.set_num_threads during the run (default: PyTorch's choice)")
    g.add_argument("--device", default=None, help="cpu, cuda, ... (default: automatic)")
    _add_data_dir(t)
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--results", type=Path, help="also append the run's row to this results file")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("evaluate", help="re-evaluate a checkpoint on the test set")
    e.add_argument("directory")
    e.add_argument("--k", type=_number(int, "--k", positive=True), default=5000)
    e.add_argument("--seed", type=_number(int, "--seed"), default=0)
    e.add_argument("--threads", type=_number(int, "--threads", positive=True), default=None)
    _add_data_dir(e)

    r = sub.add_parser("reproduce", help="re-run a stored row; print stored and new metrics",
                       description="Re-run a stored row and compare: a loss within relative "
                       f"{REPRODUCE_RTOL:g} of the stored one counts as reproduced (another "
                       "processor or thread count sums in another order), counts (epochs, "
                       "active units, parameters) must be equal, times are not compared. "
                       "Exit status 0 when reproduced, 1 otherwise.")
    r.add_argument("results", type=_results_file,
                   help="a results file, or the name of one of the book's stores (e.g. priors)")
    r.add_argument("row_id")
    r.add_argument("--out", required=True, help="output directory for the new run")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_data_dir(r)

    b = sub.add_parser("table", help="mean ± sd over seeds of a results file, as markdown")
    b.add_argument("results", type=_results_file,
                   help="a results file, or the name of one of the book's stores (e.g. priors)")
    b.add_argument("--group-by", nargs="+", default=None,
                   help="dotted spec keys, e.g. model_config.prior train.warmup_epochs "
                        "(default: every key that varies, the seed excepted)")
    b.add_argument("--metrics", nargs="+", default=["test_nll_iw", "test_elbo", "active_units"])
    return parser


def _add_data_dir(parser) -> None:
    parser.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                        help=f"directory of the fashion-mnist IDX files (sets ${DATA_DIR_ENV}; "
                             "not part of the run spec)")


def _given(args, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in vars(args).items()
            if k.startswith(prefix) and v is not None}


def spec_from_args(args) -> RunSpec:
    """The :class:`RunSpec` that the ``train`` options describe."""
    run_opts = {k: getattr(args, k) for k in ("model", "dataset", "dataset_options", "seed", "k",
                                              "extras", "threads", "device")
                if getattr(args, k) is not None}
    model_cfg, train_opts = _given(args, "model__"), _given(args, "train__")
    part_opts = {part: _given(args, f"{part}__") for part in _PARTS}
    if args.spec is not None:
        named = (sorted(run_opts) + sorted(model_cfg) + sorted(train_opts)
                 + [_part_flag(part, n)[2:] for part, opts in part_opts.items() for n in opts])
        if named:
            raise CLIError(f"--spec describes the whole run; do not combine it with "
                           f"{_flag(named[0])}")
        try:
            values = json.loads(args.spec.read_text())
        except FileNotFoundError:
            raise CLIError(f"spec file {args.spec} does not exist")
        except json.JSONDecodeError as exc:
            raise CLIError(f"spec file {args.spec} is not valid JSON: {exc.msg} at line "
                           f"{exc.lineno}")
        return RunSpec.from_dict(values)
    model = run_opts.get("model", "vae")
    config_cls = model_entry(model).config
    accepted = {f.name for f in dataclasses.fields(config_cls)}
    for name in model_cfg:
        if name not in accepted:
            raise CLIError(f"{_flag(name)} does not apply to --model {model}")
    for part, opts in part_opts.items():
        if not opts:
            continue
        registry, kwargs_field, signature_of, supplied = _PARTS[part]
        if kwargs_field not in accepted:
            raise CLIError(f"--model {model} takes no {part} options")
        member = model_cfg.get(part, _default(config_cls, part))
        if member not in registry:
            raise CLIError(f"--{part} must be one of {', '.join(registry)}; got {member!r}")
        takes = inspect.signature(signature_of(registry[member])).parameters
        for name in opts:
            if name not in takes or name in supplied:
                raise CLIError(f"{_part_flag(part, name)} does not apply to --{part} {member}")
        model_cfg[kwargs_field] = opts
    if "hidden" in model_cfg:
        model_cfg["hidden"] = list(model_cfg["hidden"])
    return RunSpec(model_config=model_cfg, train=TrainConfig(**train_opts), **run_opts)


def _default(config_cls, name: str):
    """The default of field ``name`` of a config dataclass."""
    return next(f.default for f in dataclasses.fields(config_cls) if f.name == name)


def _save(out, result, row) -> None:
    """Checkpoint and spec first, metrics last: its presence means the run finished."""
    checkpoints.save_checkpoint(out, result.spec.model, result.config, result.model,
                                spec=row["spec"], extra={"dataset": result.spec.dataset,
                                                         "id": row["id"]})
    from .utils import atomic_write_text
    atomic_write_text(Path(out) / "spec.json",
                      json.dumps({"id": row["id"], "spec": row["spec"]}, indent=2) + "\n")
    checkpoints.write_metrics(out, {"id": row["id"], **row["metrics"]})


class RunFailed(Exception):
    """The run diverged; it was stored as failed (exit status 1)."""


def train(args) -> dict:
    """``intro-dgm train``: run the spec, store and save it; returns its results row."""
    spec = spec_from_args(args)
    store = ResultsStore(args.results) if args.results is not None else None
    if store is not None:
        store.rows()  # a damaged results file is reported before hours of training
    row, result = run_and_store(spec, store, progress=not args.quiet)
    if result is None:
        raise RunFailed(f"run {row['id']} failed: {row['error']}"
                        + (f" (stored as failed in {args.results})" if store else ""))
    _save(args.out, result, row)
    return row


def evaluate_checkpoint(args) -> dict:
    """``intro-dgm evaluate``: the test metrics of a saved model."""
    payload = checkpoints.load_checkpoint(args.directory)
    model = checkpoints.load_model(args.directory)
    spec = payload.get("spec") or {}  # checkpoints written before run specs: "extra" only
    split = load_dataset(spec.get("dataset", payload["extra"].get("dataset", "digits")),
                         **spec.get("dataset_options", {}))
    seed_everything(args.seed)
    return evaluate(model, split, args.k, args.seed)


def _results_file(value: str) -> Path:
    """A results file's path, or the name of one of the book's stores (``priors``, ...), which
    travel with the package (:func:`~intro_dgm.runs.store.store_path`)."""
    path = Path(value)
    if path.exists() or path.suffix or len(path.parts) > 1:
        return path
    try:
        return store_path(value)
    except FileNotFoundError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def reproduce(args) -> tuple[str, bool]:
    """``intro-dgm reproduce``: re-run a stored row; returns the report and whether every
    metric but the times reproduced (:func:`~intro_dgm.runs.reproduce.reproduction_report`)."""
    stored = ResultsStore(args.results).row(args.row_id)
    spec = RunSpec.from_dict(stored["spec"])
    if spec.id != stored["id"]:
        raise CLIError(f"row {args.row_id}: its spec hashes to {spec.id}, not its id "
                       "(the spec was edited, or a config default changed)")
    row, result = run_and_store(spec, None, progress=not args.quiet)
    if result is not None:
        _save(args.out, result, row)
    return reproduction_report(stored, row)


def main(argv=None) -> int:
    """Run one command (``argv`` as after ``intro-dgm``); returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise CLIError("a command is required: train, evaluate, reproduce or table "
                           "(see intro-dgm --help)")
        if getattr(args, "data_dir", None) is not None:
            if not args.data_dir.is_dir():
                raise CLIError(f"--data-dir {args.data_dir} is not a directory")
            os.environ[DATA_DIR_ENV] = str(args.data_dir)
        if args.command == "train":
            print(json.dumps(train(args), indent=2, sort_keys=True))
        elif args.command == "evaluate":
            if args.threads:
                import torch
                torch.set_num_threads(args.threads)
            print(json.dumps(evaluate_checkpoint(args), indent=2, sort_keys=True))
        elif args.command == "reproduce":
            text, same = reproduce(args)
            print(text)
            return 0 if same else 1
        else:
            if not args.results.exists():
                raise CLIError(f"results file {args.results} does not exist")
            print(markdown_table(ResultsStore(args.results).rows(), args.group_by, args.metrics))
    except RunFailed as exc:
        print(f"intro-dgm: {exc}", file=sys.stderr)
        return 1
    except (CLIError, ValueError, TypeError, KeyError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"intro-dgm: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

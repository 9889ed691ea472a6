"""The intro-dgm command line: train, evaluate, reproduce and table.

intro-dgm train writes a run to --out DIR through DIR.partial, checkpointed every epoch: DIR
is replaced only with --force, and an interrupted run continues, bit-identical, with the same
command and --resume. A mistake in the command, a spec or a results file prints one line
(intro-dgm: error: ...), exits with status 2 and writes nothing; a diverged run, or a bug in
intro_dgm (with its traceback), exits with status 1; an interrupted run with status 130.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import shlex
import shutil
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

import torch

from . import __version__, checkpoints
from .data import DATA_DIR_ENV, DATASETS
from .encoders import POSTERIORS
from .models import MODELS, model_entry
from .models.diffusion import DATA_TERMS, ESTIMATORS, OBJECTIVES, STEP_SAMPLING, VARIANCES
from .models.schedules import SCHEDULES
from .priors import PRIORS
from .protocol import DATA_FIELDS, EXTRA_METRICS, ResultsStore, RunSpec, evaluate
from .runs.reproduce import REPRODUCE_RTOL, reproduction_report
from .runs.store import results_file
from .training import OPTIMIZERS, TrainConfig

_EXAMPLES = """examples:
  intro-dgm train --latent-dim 2 --max-epochs 50 --out runs/vae2
  intro-dgm train --model ddgm --schedule cosine --out runs/ddgm --results runs/r.jsonl
  intro-dgm train --spec runs/vae2/spec.json --out runs/again   (the same run again)
  intro-dgm train --latent-dim 2 --max-epochs 50 --out runs/vae2 --resume   (after Ctrl-C)"""


class CLIError(Exception):
    """A mistake in the command (exit ``status`` 2), or another end told in one line: a
    diverged run (1), Ctrl-C (130)."""

    def __init__(self, message, status: int = 2):
        super().__init__(message)
        self.status = status


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
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--dataset-options must be a JSON object, got {text!r}")
    return value


def _add_option(group, flag: str, dest: str, annotation: str, help_text: str) -> None:
    """Add a flag for a field of type ``annotation`` (a string: postponed annotations); a
    type the command line cannot express gets none."""
    base, help_text = annotation.replace(" | None", "").strip(), help_text.replace("%", "%%")
    if base == "bool":
        group.add_argument(flag, action=argparse.BooleanOptionalAction, dest=dest, help=help_text)
    elif base in ("int", "float", "str", "tuple[int, ...]"):
        kind = str if base == "str" else _number(float if base == "float" else int, flag)
        group.add_argument(flag, type=kind, nargs="+" if base[0] == "t" else None, dest=dest,
                           help=help_text, metavar=dest.split("__")[-1].upper())


#: The parts of a model whose own options come from their constructors: config field ->
#: (the registry of names, the field holding the options, the callable whose signature
#: lists the options, the arguments the model supplies itself).
_PARTS = {
    "prior": (PRIORS, "prior_kwargs", lambda cls: cls,
              {"self", "latent_dim", "encoder", "input_dim", "data", "weights", "input_range"}),
    "posterior": (POSTERIORS, "posterior_kwargs", lambda entry: entry[0].from_mlp,
                  {"self", "input_layer", "input_dim", "hidden", "latent_dim", "kind"}),
}
#: config fields that name one of a set: the help lists the names each model takes
_CHOICES = {"prior": PRIORS, "posterior": POSTERIORS, "schedule": SCHEDULES,
            "data_term": DATA_TERMS, "variance": VARIANCES, "objective": OBJECTIVES,
            "step_sampling": STEP_SAMPLING, "estimator": ESTIMATORS, "optimizer": OPTIMIZERS,
            "dataset": DATASETS}


def _part_options(part: str) -> dict[str, tuple[str, dict[str, object]]]:
    """Every simple option of the members of ``part``: name -> (annotation, member -> default)."""
    registry, _, signature_of, supplied = _PARTS[part]
    options: dict[str, tuple[str, dict]] = {}
    for member, entry in registry.items():
        for name, p in inspect.signature(signature_of(entry)).parameters.items():
            if name not in supplied and isinstance(p.annotation, str):
                options.setdefault(name, (p.annotation, {}))[1][member] = p.default
    return options


def _part_flag(part: str, name: str) -> str:
    """``--name``, or ``--part-name`` where a model config field has that name."""
    return _flag(f"{part}_{name}" if name in _model_fields() else name)


def _model_fields() -> dict[str, str]:
    """Every command-line field of every registered model's config: name -> annotation."""
    fields: dict[str, str] = {}
    for config_cls, *_ in MODELS.values():
        fields.update({f.name: f.type for f in dataclasses.fields(config_cls)
                       if f.name not in DATA_FIELDS and f.name not in fields})
    return fields


def _shown(value) -> str:
    """A default as the command line writes it."""
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value)) or "none"
    if value is None or isinstance(value, bool) or value is inspect.Parameter.empty:
        return {None: "none", True: "on", False: "off"}.get(value, "required")
    return str(value)


def _accepts(cls, **values) -> bool:
    try:
        return cls(**values) is not None
    except (ValueError, TypeError):
        return False


def _help(name: str, owners: dict[str, type], lead: str = "") -> str:
    """A field's help from its configs: per owner (``--model`` names) the names it takes
    (alone, or beside another choice) and its default; owners that agree share a line."""
    texts: dict[str, list[str]] = {}
    for owner, cls in owners.items():
        found = {f.name: f for f in dataclasses.fields(cls)}
        if f := found.get(name):
            text = "default " + _shown(f.default if f.default_factory is dataclasses.MISSING
                                       else f.default_factory())
            if name in _CHOICES:
                others = [{o: v} for o in _CHOICES if o in found and o != name
                          for v in _CHOICES[o]]
                takes = [c for c in _CHOICES[name] if _accepts(cls, **{name: c})
                         or any(_accepts(cls, **{name: c}, **other) for other in others)]
                text = f"one of {', '.join(takes)}; {text}"
            texts.setdefault(text, []).append(owner)
    return "; ".join([lead] * bool(lead) + [(f"--model {', '.join(who)}: " if who[0] else "")
                                            + text for text, who in texts.items()])


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command, with ``train``'s options generated from the configs."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="intro-dgm", description=__doc__, formatter_class=raw)
    parser.add_argument("--version", action="version", version=f"intro-dgm {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    t = sub.add_parser("train", help="train a run: DIR/checkpoint.pt, spec.json, metrics.json",
                       epilog=_EXAMPLES, formatter_class=raw)
    t.add_argument("--spec", type=Path, help="a JSON run spec or a run's spec.json, instead of "
                   "the options below")
    t.add_argument("--model", choices=sorted(MODELS), help="default vae")
    g = t.add_argument_group("model config (each flag names the --model that takes it)")
    models = {name: entry.config for name, entry in MODELS.items()}
    for name, annotation in _model_fields().items():
        _add_option(g, _flag(name), f"model__{name}", annotation, _help(name, models))
    for part in _PARTS:
        g = t.add_argument_group(f"{part} options (those of the chosen --{part})")
        for name, (annotation, defaults) in _part_options(part).items():
            members: dict[str, list[str]] = {}
            for member, default in defaults.items():
                members.setdefault(_shown(default), []).append(member)
            _add_option(g, _part_flag(part, name), f"{part}__{name}", annotation, "; ".join(
                f"--{part} {', '.join(who)}: default {d}" for d, who in members.items()))
    g = t.add_argument_group("training (TrainConfig)")
    for f in dataclasses.fields(TrainConfig):
        _add_option(g, _flag(f.name), f"train__{f.name}", f.type,
                    _help(f.name, {"": TrainConfig}))
    g = t.add_argument_group("run (RunSpec)")
    for name, lead in (("dataset", ""), ("seed", "seeds the model, the batches and the "
                                         "evaluation"), ("k", "importance samples per example"),
                       ("threads", "torch.set_num_threads (none: PyTorch's choice)"),
                       ("device", "cpu, cuda, cuda:N or mps (none: CUDA where there is one)")):
        _add_option(g, _flag(name), name, RunSpec.__annotations__[name],
                    _help(name, {"": RunSpec}, lead))
    g.add_argument("--dataset-options", type=_json_object, metavar="JSON",
                   help='options of the data set, e.g. \'{"p": 0.5}\' for two-gaussians, '
                        '\'{"binarise": "dynamic"}\' for fashion-mnist')
    g.add_argument("--extras", nargs="+", choices=sorted(EXTRA_METRICS),
                   help="extra metrics (sample_quality: Digits only; hole_mass: a VAE)")
    t.add_argument("--out", required=True, metavar="DIR",
                   help="output directory (written through DIR.partial when complete)")
    t.add_argument("--force", action="store_true", help="replace --out, or restart DIR.partial")
    t.add_argument("--resume", action="store_true", help="continue the run in DIR.partial")
    t.add_argument("--results", type=Path, help="also add the run's row to this results file")
    e = sub.add_parser("evaluate", help="re-evaluate a saved run on the test set")
    e.add_argument("directory", help="a run directory (train --out DIR)")
    e.add_argument("--k", type=_number(int, "--k", positive=True), help="importance samples "
                   "per test example (default: the run's own, as in its metrics.json; "
                   "train's default is 1000)")
    e.add_argument("--seed", type=_number(int, "--seed"), help="default: the run's own")
    e.add_argument("--threads", type=_number(int, "--threads", positive=True))
    r = sub.add_parser("reproduce", help="re-run a stored row; print stored and new metrics",
                       description=f"A loss within relative {REPRODUCE_RTOL:g} of the stored "
                       "one counts as reproduced (another processor sums in another order), "
                       "counts must be equal, times are not compared; exit status 0 if so.")
    b = sub.add_parser("table", help="mean ± sd over seeds of a results file, as markdown")
    for p in (r, b):
        p.add_argument("results", type=results_file,
                       help="a results file, or the name of one of the book's stores (priors)")
    r.add_argument("row_id", help="the row's id (intro-dgm table shows them)")
    r.add_argument("--out", required=True, metavar="DIR", help="directory for the new run")
    r.add_argument("--force", action="store_true", help="replace what --out holds")
    for p in (t, r):
        p.add_argument("--quiet", action="store_true", help="no progress bar")
    for p in (t, e, r):
        p.add_argument("--data-dir", type=Path, metavar="DIR", help="directory of the fashion-"
                       f"mnist IDX files (sets ${DATA_DIR_ENV}; not part of the run spec)")
    b.add_argument("--group-by", nargs="+", help="dotted spec keys, e.g. model_config.prior "
                   "train.warmup_epochs (default: every key that varies, the seed excepted)")
    b.add_argument("--metrics", nargs="+", help="default test_nll_iw test_elbo active_units "
                   "(those the rows hold)")
    return parser


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
            return RunSpec.from_dict(checkpoints.read_spec(args.spec))
        except (ValueError, TypeError) as exc:
            raise CLIError(f"--spec: {exc}") from None
    model = run_opts.get("model", "vae")
    accepted = {f.name: f for f in dataclasses.fields(model_entry(model).config)}
    for name in model_cfg:
        if name not in accepted:
            raise CLIError(f"{_flag(name)} does not apply to --model {model}")
    for part, opts in part_opts.items():
        if not opts:
            continue
        registry, kwargs_field, signature_of, supplied = _PARTS[part]
        if kwargs_field not in accepted:
            raise CLIError(f"--model {model} takes no {part} options")
        member = model_cfg.get(part, accepted[part].default)
        if member not in registry:
            raise CLIError(f"--{part} must be one of {', '.join(registry)}; got {member!r}")
        takes = inspect.signature(signature_of(registry[member])).parameters
        for name in opts:
            if name not in takes or name in supplied:
                raise CLIError(f"{_part_flag(part, name)} does not apply to --{part} {member}")
        model_cfg[kwargs_field] = opts
    return RunSpec(model_config=model_cfg, train=TrainConfig(**train_opts), **run_opts)


@contextmanager
def _users_mistake():
    """What runs before any work is the command's: an error there is its (exit status 2)."""
    try:
        yield
    except CLIError:
        raise
    except (ValueError, TypeError, KeyError, OSError) as exc:
        raise CLIError(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc) from exc


def train(args, argv: list[str]) -> tuple[str, int]:
    """``intro-dgm train``: check all the run needs, run it (checkpointed every epoch in the
    staging directory), store its row, move it into place; returns the row (JSON)."""
    with _users_mistake():
        spec = spec_from_args(args)
        store, split = checkpoints.prepare_run(spec, args.out, args.results, args.force,
                                               args.resume)
    staging = checkpoints.staging_dir(args.out)
    try:
        row, result = checkpoints.run_into(args.out, spec, split, store, not args.quiet,
                                           checkpoint=True, resume=args.resume)
    except KeyboardInterrupt:
        again = shlex.join(["intro-dgm", *argv] + ([] if args.resume else ["--resume"]))
        raise CLIError(f"interrupted after {checkpoints.epochs_done(staging)} epoch(s), kept "
                       f"in {staging}; --out {args.out} is as it was; continue with: {again}",
                       130) from None
    if result is None:
        raise CLIError(f"run {row['id']} failed: {row['error']}"
                       + (f" (stored as failed in {args.results})" if store else ""), 1)
    return json.dumps(row, indent=2, sort_keys=True), 0


def evaluate_checkpoint(args, argv=None) -> tuple[str, int]:
    """``intro-dgm evaluate``: the test metrics of a saved model (JSON; by default with the
    run's own ``k`` and seed, as in its ``metrics.json``)."""
    with _users_mistake():
        model, spec, split = checkpoints.load_run(args.directory)
    if args.threads:
        torch.set_num_threads(args.threads)
    seed = args.seed if args.seed is not None else spec.get("seed", 0)  # evaluate seeds
    metrics = evaluate(model, split, args.k or spec.get("k", 1000), seed)
    return json.dumps(metrics, indent=2, sort_keys=True), 0


def reproduce(args, argv=None) -> tuple[str, int]:
    """``intro-dgm reproduce``: re-run a stored row; returns the report and 0 if every metric
    but the times reproduced (:func:`~intro_dgm.runs.reproduce.reproduction_report`), else 1."""
    with _users_mistake():
        stored = ResultsStore(args.results).row(args.row_id)
        spec = RunSpec.from_dict(stored["spec"])
        if spec.id != stored["id"]:
            raise CLIError(f"row {args.row_id}: its spec hashes to {spec.id}, not its id "
                           "(the spec was edited, or a config default changed)")
        _, split = checkpoints.prepare_run(spec, args.out, force=args.force,
                                           options=False)  # a stored row runs as it was
    try:
        row, _ = checkpoints.run_into(args.out, spec, split, progress=not args.quiet)
    except KeyboardInterrupt:
        shutil.rmtree(checkpoints.staging_dir(args.out), ignore_errors=True)
        raise CLIError(f"interrupted; nothing written, --out {args.out} is as it was",
                       130) from None
    text, same = reproduction_report(stored, row)
    return text, 0 if same else 1


def table(args, argv=None) -> tuple[str, int]:
    """``intro-dgm table``: :meth:`~intro_dgm.protocol.ResultsStore.table` (ids included)."""
    with _users_mistake():
        if not args.results.exists():
            raise CLIError(f"results file {args.results} does not exist")
        return ResultsStore(args.results).table(args.group_by, args.metrics), 0


def main(argv=None) -> int:
    """Run one command (``argv`` as after ``intro-dgm``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        with _users_mistake():
            try:
                args = build_parser().parse_args(argv)
            except SystemExit as exc:  # --help, --version
                return exc.code or 0
            if args.command is None:
                raise CLIError("a command is required: train, evaluate, reproduce or table "
                               "(see intro-dgm --help)")
            if getattr(args, "data_dir", None) is not None:
                if not args.data_dir.is_dir():
                    raise CLIError(f"--data-dir {args.data_dir} is not a directory")
                os.environ[DATA_DIR_ENV] = str(args.data_dir)
        text, status = {"train": train, "evaluate": evaluate_checkpoint, "reproduce": reproduce,
                        "table": table}[args.command](args, argv)
        print(text)
        return status
    except (CLIError, KeyboardInterrupt) as exc:
        status = getattr(exc, "status", 130)
        text = " ".join(str(exc).split()) or "interrupted; nothing was written"
        print(f"intro-dgm: {'error: ' * (status == 2)}{text}", file=sys.stderr)
        return status
    except Exception:  # a bug in the package, not the user's: say so, with the traceback
        traceback.print_exc()
        print("intro-dgm: the error above is a bug in intro_dgm, not a mistake in the command; "
              "please report it", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

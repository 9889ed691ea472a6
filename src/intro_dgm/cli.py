"""Command line: ``intro-dgm train ...`` and ``intro-dgm evaluate DIR``.

Errors in the arguments or the data print one line (``intro-dgm: error: ...``) and exit
with status 2; nothing is written unless the run finishes.
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys

import torch

from . import checkpoints
from .data import DATASETS, load_dataset
from .experiments import evaluate_on_test, run_vae
from .models import MODELS, VAEConfig
from .priors import PRIORS
from .training import OPTIMIZERS
from .utils import check_int, seed_everything


class CLIError(Exception):
    """An error to report in one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise CLIError(message)


def _positive_int(name):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {value}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="intro-dgm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    t = sub.add_parser("train", help="train a model and write DIR/metrics.json and a checkpoint")
    t.add_argument("--model", default="vae", choices=sorted(MODELS))
    t.add_argument("--dataset", default="digits", choices=DATASETS)
    t.add_argument("--prior", default="standard", choices=sorted(PRIORS))
    t.add_argument("--num-components", type=_positive_int("--num-components"), default=None,
                   help="K, components of a mixture prior (mog, vampprior, gtm, gtm-vampprior; "
                        "a perfect square for the gtm priors' 2-D grid); default 16")
    t.add_argument("--learn-weights", action=argparse.BooleanOptionalAction, default=None,
                   help="train the mixing weights or keep them uniform (mog, vampprior; "
                        "default: learned for mog, uniform for vampprior)")
    t.add_argument("--pseudo-init", choices=("random", "data"), default=None,
                   help="vampprior: pseudo-inputs uniform at random or training images")
    t.add_argument("--flow-layers", type=_positive_int("--flow-layers"), default=None,
                   help="flow: number of RealNVP coupling layers (default 4)")
    t.add_argument("--latent-dim", type=_positive_int("--latent-dim"), default=16)
    t.add_argument("--hidden", type=_positive_int("--hidden"), nargs="+", default=[256, 256],
                   help="hidden units per layer of encoder and decoder")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--optimizer", default="adamax", choices=sorted(OPTIMIZERS))
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--batch-size", type=_positive_int("--batch-size"), default=64)
    t.add_argument("--max-epochs", type=_positive_int("--max-epochs"), default=1000)
    t.add_argument("--patience", type=_positive_int("--patience"), default=20)
    t.add_argument("--warmup-epochs", type=int, default=0,
                   help="KL warm-up: beta rises linearly to 1 over this many epochs (0: none)")
    t.add_argument("--k", type=_positive_int("--k"), default=1000,
                   help="importance samples for the test log-likelihood")
    t.add_argument("--threads", type=_positive_int("--threads"), default=None,
                   help="torch.set_num_threads (default: PyTorch's choice)")
    t.add_argument("--device", default=None, help="cpu, cuda, ... (default: automatic)")
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    e = sub.add_parser("evaluate", help="re-evaluate a checkpoint on the test set")
    e.add_argument("directory")
    e.add_argument("--k", type=_positive_int("--k"), default=5000)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--threads", type=_positive_int("--threads"), default=None)
    return parser


def _prior_kwargs(args) -> dict:
    """The options of ``--prior``; an option the chosen prior does not use is an error."""
    accepted = inspect.signature(PRIORS[args.prior]).parameters  # the prior's own options
    given = {"num_components": args.num_components, "learn_weights": args.learn_weights,
             "init": args.pseudo_init, "num_layers": args.flow_layers}
    flags = {"num_components": "--num-components", "learn_weights": "--learn-weights",
             "init": "--pseudo-init", "num_layers": "--flow-layers"}
    for key, value in given.items():
        if value is not None and key not in accepted:
            raise CLIError(f"{flags[key]} does not apply to --prior {args.prior}")
    return {key: value for key, value in given.items() if value is not None}


def train(args) -> dict:
    check_int(args.seed, "--seed", minimum=0)
    split = load_dataset(args.dataset)
    likelihood = "categorical" if split.num_vals > 2 else "bernoulli"
    config = VAEConfig(input_dim=split.dim, num_vals=split.num_vals, latent_dim=args.latent_dim,
                       hidden=tuple(args.hidden), likelihood=likelihood, prior=args.prior,
                       prior_kwargs=_prior_kwargs(args))
    run = run_vae(config, split, args.seed, lr=args.lr, optimizer=args.optimizer,
                  batch_size=args.batch_size, max_epochs=args.max_epochs,
                  patience=args.patience, warmup_epochs=args.warmup_epochs, k=args.k,
                  device=args.device,
                  progress=not args.quiet)
    metrics = {"model": args.model, "dataset": args.dataset, **run.metrics}
    checkpoints.save_checkpoint(args.out, args.model, config, run.model,
                                extra={"dataset": args.dataset, "seed": args.seed})
    checkpoints.write_metrics(args.out, metrics)  # last: its presence means "finished"
    return metrics


def evaluate(args) -> dict:
    payload = checkpoints.load_checkpoint(args.directory)
    model = checkpoints.load_model(args.directory)
    split = load_dataset(payload["extra"].get("dataset", "digits"))
    seed_everything(args.seed)
    return evaluate_on_test(model, split.test, args.k)


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise CLIError("a command is required: train or evaluate (see intro-dgm --help)")
        if args.threads:
            torch.set_num_threads(args.threads)
        result = train(args) if args.command == "train" else evaluate(args)
    except (CLIError, ValueError, TypeError, FileNotFoundError) as exc:
        print(f"intro-dgm: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Command line: ``intro-dgm train ...`` and ``intro-dgm evaluate DIR``.

Errors in the arguments or the data print one line (``intro-dgm: error: ...``) and exit
with status 2; nothing is written unless the run finishes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from . import checkpoints
from .data import DATASETS, TensorLoader, load_dataset
from .evaluation import active_units, elbo, iwae_log_likelihood
from .models import MODELS, VAEConfig
from .priors import PRIORS
from .training import OPTIMIZERS, fit
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
    t.add_argument("--latent-dim", type=_positive_int("--latent-dim"), default=16)
    t.add_argument("--hidden", type=_positive_int("--hidden"), nargs="+", default=[256, 256],
                   help="hidden units per layer of encoder and decoder")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--optimizer", default="adamax", choices=sorted(OPTIMIZERS))
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--batch-size", type=_positive_int("--batch-size"), default=64)
    t.add_argument("--max-epochs", type=_positive_int("--max-epochs"), default=1000)
    t.add_argument("--patience", type=_positive_int("--patience"), default=20)
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


def _test_metrics(model, split, k: int) -> dict:
    start = time.perf_counter()
    ll = iwae_log_likelihood(model, split.test, k=k)
    seconds = time.perf_counter() - start
    return {"test_elbo": elbo(model, split.test).mean().item(),
            "test_nll_iw": -ll.mean().item(), "k": k, "eval_seconds": seconds,
            "active_units": active_units(model, split.test)}


def train(args) -> dict:
    check_int(args.seed, "--seed", minimum=0)
    split = load_dataset(args.dataset)
    likelihood = "categorical" if split.num_vals > 2 else "bernoulli"
    config = VAEConfig(input_dim=split.dim, num_vals=split.num_vals, latent_dim=args.latent_dim,
                       hidden=tuple(args.hidden), likelihood=likelihood, prior=args.prior)
    _, builder = MODELS[args.model]
    seed_everything(args.seed)
    model = builder(config)
    history = fit(model, TensorLoader(split.train, args.batch_size, shuffle=True, seed=args.seed),
                  TensorLoader(split.val, 1000), lr=args.lr, optimizer=args.optimizer,
                  max_epochs=args.max_epochs, patience=args.patience, seed=args.seed,
                  device=args.device, progress=not args.quiet)
    model.cpu()
    seed_everything(args.seed)
    metrics = {"model": args.model, "dataset": args.dataset, "prior": args.prior,
               "latent_dim": args.latent_dim, "seed": args.seed,
               "epochs": history.epochs, "best_epoch": history.best_epoch,
               "best_val_loss": history.best_val_loss,
               "seconds_per_epoch": history.seconds_per_epoch,
               "num_params": sum(p.numel() for p in model.parameters()),
               **_test_metrics(model, split, args.k)}
    checkpoints.save_checkpoint(args.out, args.model, config, model,
                                extra={"dataset": args.dataset, "seed": args.seed})
    checkpoints.write_metrics(args.out, metrics)  # last: its presence means "finished"
    return metrics


def evaluate(args) -> dict:
    payload = checkpoints.load_checkpoint(args.directory)
    model = checkpoints.load_model(args.directory)
    split = load_dataset(payload["extra"].get("dataset", "digits"))
    seed_everything(args.seed)
    return _test_metrics(model, split, args.k)


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

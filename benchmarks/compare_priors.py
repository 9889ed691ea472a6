"""Every prior on the Digits split at L=2 and L=16, three seeds each (the priors comparison page).

    make compare-priors            # = .venv/bin/python benchmarks/compare_priors.py --jobs 2

One protocol for all (:func:`intro_dgm.protocol.run`): the 2x256 MLP VAE with a categorical
decoder, Adamax 1e-3, batch 64, early stopping with patience 20 on the validation -ELBO --
once without and once with a KL warm-up of 50 epochs (as the VampPrior paper trained) --
then on the test set the importance-weighted NLL (K=1000), the -ELBO, the active units;
plus the parameter count, the training seconds (1 thread per run), the prior mass in holes
(extra metric ``hole_mass``) and a classifier's view of 2,000 generated images (extra
metric ``sample_quality``).

Every run is a :class:`intro_dgm.protocol.RunSpec`; its row goes to the results store
``src/intro_dgm/stores/priors_results.jsonl`` as soon as it finishes. Rows already there are skipped,
so an interrupted comparison resumes; any row is re-run with
``intro-dgm reproduce priors ROW_ID --out DIR``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from intro_dgm.protocol import ResultsStore, RunSpec, markdown_table, run_missing
from intro_dgm.runs.store import STORES_DIR
from intro_dgm.training import TrainConfig

RESULTS = STORES_DIR / "priors_results.jsonl"

#: The prior options of the comparison. Pseudo-input priors get more components than the
#: free mixtures: each of their components is an encoder posterior, narrow by design, so
#: K=16 of them cover the latent space poorly (test NLL 98.98 vs 97.44 nats for K=16 vs 64
#: at L=2, seed 0: ``intro-dgm train --latent-dim 2 --prior vampprior --init data
#: --num-components 16 --threads 1 --out DIR``); K=64 is a square, as the GTM grid needs.
PRIORS = {
    "standard": {},
    "mog": {"num_components": 16},
    "vampprior": {"num_components": 64, "init": "data"},
    "gtm": {"num_components": 16},
    "gtm-vampprior": {"num_components": 64},
    "flow": {"num_layers": 4},
}
#: what the pages call each prior (the rows' ``label``)
LABELS = {"standard": "standard", "mog": "MoG", "vampprior": "VampPrior", "gtm": "GTM",
          "gtm-vampprior": "GTM-VampPrior", "flow": "flow"}
LATENT_DIMS = (2, 16)
SEEDS = (0, 1, 2)
WARMUPS = (0, 50)  # epochs of KL warm-up (0: none)
K = 1000


def specs() -> list[RunSpec]:
    """The 72 runs, in the order they are run."""
    return [RunSpec(model="vae",
                    model_config={"latent_dim": L, "prior": p, "prior_kwargs": PRIORS[p]},
                    train=TrainConfig(warmup_epochs=w), dataset="digits", seed=s, k=K,
                    extras=("hole_mass", "sample_quality"), threads=1, device="cpu",
                    label=LABELS[p], group="warm-up" if w else "no warm-up")
            for w in WARMUPS for L in LATENT_DIMS for p in PRIORS for s in SEEDS]


def describe(spec: RunSpec, row: dict) -> str:
    m = row["metrics"] or {}
    return (f"{row['id']} {spec.model_config['prior']:>14} L={spec.model_config['latent_dim']:<3} "
            f"seed={spec.seed} warm-up={spec.train.warmup_epochs:<3} {row['status']} "
            f"NLL {m.get('test_nll_iw', float('nan')):.2f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (1 thread each)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    store = ResultsStore(args.out)
    run_missing(specs(), store, describe, jobs=args.jobs)
    print(markdown_table(store.rows(), ["train.warmup_epochs", "model_config.latent_dim",
                                        "model_config.prior"]))


if __name__ == "__main__":
    main()

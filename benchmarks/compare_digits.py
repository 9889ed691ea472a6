"""Every model of the book on the Digits split, one protocol, three seeds (the results page).

    make compare-digits            # = .venv/bin/python benchmarks/compare_digits.py --jobs 2

The chapters compare models within a family, each with the protocol its question needed.
This sweep puts one model of every family under *one* protocol
(:func:`intro_dgm.protocol.run`): Adamax 1e-3, batch 64, at most 2,000 epochs, early
stopping with patience 50 on the validation -ELBO, a KL warm-up of 50 epochs for every model
with a KL term (the DDGM's and RealNVP's losses have none: they train with beta = 1),
1 thread per run; on the test set the importance-weighted NLL with S = 1000 for every model
(for the DDGM each of the S samples is a chain of T = 100 steps: about six minutes of
evaluation per run, against seconds for a VAE),
the -ELBO, the active units, a classifier's view of 2,000 samples (``sample_quality``),
the reconstruction error, the time to draw 1,000 samples; plus parameters and seconds per
epoch. Each model keeps its chapter's configuration (16 latent dimensions, the 2x256 MLPs;
the hyperspherical VAE at 3 dimensions, where 06e finds it best; the tuned DDGM of 08c).

Beside each row of ``src/intro_dgm/stores/digits_results.jsonl``,
``src/intro_dgm/stores/digits_arrays/<id>.npz`` holds the validation curve with each epoch's seconds
and a gallery (samples and reconstructions), written before the row (a resumed sweep never
finds a row without its arrays). Rows already stored are skipped; any row re-runs with
``intro-dgm reproduce digits ROW_ID --out DIR``. About 25 minutes
with 2 jobs on 2 cores.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from intro_dgm.protocol import ResultsStore, Run, RunSpec, gallery, run_missing
from intro_dgm.runs.store import STORES_DIR

from compare_diffusion import RESULTS as DIFFUSION_STORE, chosen_tuned
from intro_dgm.training import TrainConfig

RESULTS = STORES_DIR / "digits_results.jsonl"  # the arrays: digits_arrays/ beside it
SEEDS = (0, 1, 2)
K = 1000
WITH_KL = TrainConfig(max_epochs=2000, patience=50, warmup_epochs=50)
WITHOUT_KL = TrainConfig(max_epochs=2000, patience=50)
EXTRAS = ("sample_quality", "reconstruction", "sampling_seconds")
def tuned_ddgm(store_path=DIFFUSION_STORE) -> dict:
    """The tuned DDGM of 08c, as chosen on validation numbers by compare_diffusion.py from
    its store (which must therefore be complete first)."""
    chosen = chosen_tuned(ResultsStore(store_path))
    if chosen is None:
        raise SystemExit(f"{store_path} does not hold the tuned DDGM's start group yet: run "
                         "'make compare-diffusion' first (the DDGM compared here is chosen "
                         "there, on validation numbers)")
    return chosen


VAMP = {"num_components": 64, "init": "data"}

#: label -> (chapter, model, config), in the book's order
MODELS = {
    "VAE, standard prior": ("02, 04a", "vae", {}),
    "mixture prior": ("04b", "vae", {"prior": "mog", "prior_kwargs": {"num_components": 16}}),
    "VampPrior": ("04c", "vae", {"prior": "vampprior", "prior_kwargs": VAMP}),
    "GTM prior": ("04d", "vae", {"prior": "gtm", "prior_kwargs": {"num_components": 16}}),
    "GTM-VampPrior": ("04e", "vae", {"prior": "gtm-vampprior",
                                     "prior_kwargs": {"num_components": 64}}),
    "flow prior": ("04f", "vae", {"prior": "flow", "prior_kwargs": {"num_layers": 4}}),
    "Householder posterior": ("06b", "vae", {"posterior": "householder",
                                             "posterior_kwargs": {"num_steps": 10}}),
    "Sylvester (orthogonal)": ("06c", "vae", {"posterior": "sylvester-orthogonal",
                                              "posterior_kwargs": {"num_steps": 4,
                                                                   "num_ortho": 8}}),
    "Sylvester (Householder)": ("06c", "vae", {"posterior": "sylvester-householder",
                                               "posterior_kwargs": {"num_steps": 4,
                                                                    "num_householder": 8}}),
    "Sylvester (triangular)": ("06c", "vae", {"posterior": "sylvester-triangular",
                                              "posterior_kwargs": {"num_steps": 4}}),
    "hyperspherical (L = 3)": ("06d", "vae", {"latent_dim": 3, "posterior": "vmf",
                                              "prior": "uniform-sphere"}),
    "two-level VAE": ("07a", "two-level", {}),
    "top-down VAE": ("07a", "top-down", {}),
    "hierarchical VampPrior": ("07a", "top-down", {"decoder_uses_top": True,
                                                   "prior": "vampprior", "prior_kwargs": VAMP}),
    # the tuned DDGM of 08c: its config is chosen on validation numbers by
    # compare_diffusion.py, and filled in by main() from that store (:func:`tuned_ddgm`)
    "DDGM (tuned)": ("08c", "ddgm", None),
    "RealNVP": ("08c", "realnvp", {}),
}
NO_KL = ("ddgm", "realnvp")


def spec_of(label: str, seed: int) -> RunSpec:
    _, model, config = MODELS[label]
    if config is None:
        raise RuntimeError("the tuned DDGM's config is not chosen yet: main() reads it from "
                           "the diffusion store")
    return RunSpec(model=model, model_config=config,
                   train=WITHOUT_KL if model in NO_KL else WITH_KL, dataset="digits",
                   seed=seed, k=K, extras=EXTRAS, threads=1,
                   device="cpu", label=label, group="digits")


def specs() -> list[RunSpec]:
    """The 48 runs: the expensive ones first, so two jobs finish together."""
    labels = sorted(MODELS, key=lambda m: m not in ("DDGM (tuned)", "Sylvester (orthogonal)"))
    return [spec_of(label, s) for label in labels for s in SEEDS]


def label(row: dict) -> str:
    """The page's name of a stored row (stored with its spec)."""
    return row["spec"]["label"]


def run_arrays(result: Run) -> dict:
    """The gallery of one finished run, beside what every run keeps (per-example values,
    training curves: :meth:`~intro_dgm.runs.runner.Run.arrays`)."""
    from intro_dgm.data import load_dataset

    return gallery(result.model, load_dataset("digits"), seed=result.spec.seed)


def describe(spec: RunSpec, row: dict) -> str:
    m = row["metrics"] or {}
    return (f"{row['id']} {label(row):>24} seed={spec.seed} {row['status']} "
            f"NLL {m.get('test_nll_iw', float('nan')):.2f} ({m.get('train_seconds', 0):.0f} s)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (1 thread each)")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="the results file (the arrays go to NAME_arrays/ beside it)")
    parser.add_argument("--diffusion-store", type=Path, default=DIFFUSION_STORE,
                        help="the complete diffusion store whose tuned DDGM is compared")
    args = parser.parse_args(argv)
    chapter, model, _ = MODELS["DDGM (tuned)"]
    MODELS["DDGM (tuned)"] = (chapter, model, tuned_ddgm(args.diffusion_store))
    store = ResultsStore(args.out)
    run_missing(specs(), store, describe, after=run_arrays, jobs=args.jobs)
    rows = store.rows()
    for name in MODELS:
        ok = [r["metrics"]["test_nll_iw"] for r in rows
              if r["status"] == "ok" and label(r) == name]
        if ok:
            print(f"{name:>24}: test NLL {np.mean(ok):.2f} over {len(ok)} seeds")


if __name__ == "__main__":
    main()

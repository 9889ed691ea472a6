"""Every posterior family on the Digits split, three seeds each (the posteriors comparison page).

    make compare-posteriors        # = .venv/bin/python benchmarks/compare_posteriors.py

One protocol for all (:func:`intro_dgm.protocol.run`), the same as the priors comparison:
the 2x256 MLP VAE with a categorical decoder and the standard Gaussian prior (the uniform
prior on the sphere for the vMF posterior), Adamax 1e-3, batch 64, early stopping with
patience 20 on the validation -ELBO; then on the test set the importance-weighted NLL
(K=1000), the -ELBO, the active units; the training -ELBO, parameters, seconds per epoch.

Two groups of runs:

* **flows at L = 16**: the diagonal Gaussian, Householder flows with T = 1 and T = 10, and
  O-, H-, T-SNF with T = 4 steps (M = 8 of L = 16 columns for O-SNF, 8 reflections per Q for
  H-SNF, named in the specs);
* **sphere against Gaussian** at small latent sizes: the vMF posterior on S^{m-1} with the
  uniform prior against the diagonal Gaussian with the standard prior, m = L in {3, 5, 10, 16}.

Every run is a :class:`intro_dgm.protocol.RunSpec`; its row goes to the results store
``src/intro_dgm/stores/posteriors_results.jsonl`` as soon as it finishes. Rows already there are
skipped, so an interrupted comparison resumes; any row is re-run with
``intro-dgm reproduce posteriors ROW_ID --out DIR``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from intro_dgm.protocol import ResultsStore, RunSpec, markdown_table, run_missing
from intro_dgm.runs.store import STORES_DIR

RESULTS = STORES_DIR / "posteriors_results.jsonl"

#: the flows group (L = 16): (posterior name, its options)
FLOWS = [
    ("gaussian", {}),
    ("householder", {"num_steps": 1}),
    ("householder", {"num_steps": 10}),
    # the bottleneck and reflections said out loud (the encoder's defaults, 8 of L = 16, as
    # in van den Berg et al.'s code): rows stored under {"num_steps": 4} alone ran the earlier
    # defaults M = L and P = 2, and these ids differ from theirs
    ("sylvester-orthogonal", {"num_steps": 4, "num_ortho": 8}),
    ("sylvester-householder", {"num_steps": 4, "num_householder": 8}),
    ("sylvester-triangular", {"num_steps": 4}),
]
#: what the pages call each posterior (the rows' ``label``; the sphere group adds L)
LABELS = {"gaussian": "Gaussian", "householder": "Householder", "vmf": "vMF",
          "sylvester-orthogonal": "Sylvester (orthogonal)",
          "sylvester-householder": "Sylvester (Householder)",
          "sylvester-triangular": "Sylvester (triangular)"}
FLOW_LATENT_DIM = 16
SPHERE_LATENT_DIMS = (3, 5, 10, 16)
SEEDS = (0, 1, 2)
K = 1000


def _spec(latent_dim: int, posterior: str, options: dict, seed: int, group: str) -> RunSpec:
    label = LABELS[posterior]
    if posterior == "householder":
        label += f" T = {options['num_steps']}"
    if group == "sphere":
        label += f", L = {latent_dim}"
    config = {"latent_dim": latent_dim, "posterior": posterior}
    if options:
        config["posterior_kwargs"] = options
    if posterior == "vmf":
        config["prior"] = "uniform-sphere"
    return RunSpec(model="vae", model_config=config, dataset="digits", seed=seed, k=K,
                   threads=1, device="cpu", label=label, group=group)


def specs(groups=("flows", "sphere")) -> list[RunSpec]:
    """The runs, in the order they are run (duplicates -- the Gaussian at L = 16 -- once, in
    the flows group: a page's sphere comparison at L = 16 selects it by its spec)."""
    out: list[RunSpec] = []
    if "flows" in groups:
        out += [_spec(FLOW_LATENT_DIM, p, o, s, "flows") for p, o in FLOWS for s in SEEDS]
    if "sphere" in groups:
        out += [_spec(L, p, {}, s, "sphere") for L in SPHERE_LATENT_DIMS for p in ("gaussian", "vmf")
                for s in SEEDS]
    unique: dict[str, RunSpec] = {}
    for spec in out:
        unique.setdefault(spec.id, spec)
    return list(unique.values())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", nargs="+", choices=("flows", "sphere"),
                        default=("flows", "sphere"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (1 thread each)")
    args = parser.parse_args(argv)
    store = ResultsStore(args.out)
    def describe(spec, row):
        m, c = row["metrics"] or {}, spec.model_config
        return (f"{row['id']} {c['posterior']:>22} {c.get('posterior_kwargs', {})} "
                f"L={c['latent_dim']:<3} seed={spec.seed} {row['status']} "
                f"NLL {m.get('test_nll_iw', float('nan')):.2f} "
                f"-ELBO {-m.get('test_elbo', float('nan')):.2f}")
    run_missing(specs(args.groups), store, describe, jobs=args.jobs)
    print(markdown_table(store.rows(), ["model_config.latent_dim", "model_config.posterior",
                                        "model_config.posterior_kwargs"]))


if __name__ == "__main__":
    main()

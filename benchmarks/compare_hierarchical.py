"""Hierarchical VAEs on the Digits split, three seeds each (the hierarchical comparison page).

    make compare-hierarchical      # = .venv/bin/python benchmarks/compare_hierarchical.py

One protocol for all (:func:`intro_dgm.protocol.run`): Adamax 1e-3, batch 64, early stopping
with patience 20 on the validation -ELBO, test IW-NLL with K=1000 over *all* latents, the
-ELBO, the KL and the active units of each level (``test_kl_z1``, ``test_kl_z2``,
``active_units_z1``, ``active_units_z2``), parameters, seconds per epoch. L1 = L2 = 16; the
x-side networks 2x256 as the one-level VAE's, the networks between latents 64 wide
(parameter counts within 10% of the VAE's).

Four groups:

* **collapse**: the bottom-up two-level VAE (4.76) and the top-down VAE, each trained
  plainly, with a KL warm-up of 50 epochs, and with free bits (eta = 0.1 nats per
  dimension: a floor of eta x 16 = 1.6 nats on each level's KL);
* **likelihood**: with the warm-up (the VampPrior paper's protocol), the one-level VAE,
  the two-level VAE without x in q(z2|z1) (4.77), and the hierarchical VampPrior (top-down,
  VampPrior with 64 data-initialised pseudo-inputs on z2, decoder p(x|z1, z2));
* **decoder**: collapse against the decoder's strength, both designs trained plainly with a
  linear decoder (weak) and a 2x1024 one (strong; the collapse group has the 2x256);
* **variants**: attempts at the likelihood target (beat the one-level VAE's test NLL with
  parameters within 10%), all with warm-up and free bits unless named: the decoder seeing
  z2, a smaller or wider top level, smaller levels, a wider z1 with a narrower x side,
  and the bottom-up model; and the decoder seeing z2 and the one-level VAE with patience
  50 instead of 20 (is early stopping what limits the hierarchy?).

Rows go to ``src/intro_dgm/stores/hierarchical_results.jsonl`` as they finish; a rerun skips them.
Any row: ``intro-dgm reproduce hierarchical ROW_ID --out DIR``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from intro_dgm.protocol import ResultsStore, RunSpec, markdown_table, run_missing
from intro_dgm.runs.store import STORES_DIR
from intro_dgm.training import TrainConfig

RESULTS = STORES_DIR / "hierarchical_results.jsonl"
SEEDS = (0, 1, 2)
K = 1000
#: training regimes of the collapse group
REGIMES = {"plain": TrainConfig(), "warm-up": TrainConfig(warmup_epochs=50),
           "free bits": TrainConfig(free_bits=0.1)}
HVAMP = {"prior": "vampprior", "decoder_uses_top": True,
         "prior_kwargs": {"num_components": 64, "init": "data"}}
GROUPS = ("collapse", "likelihood", "decoder", "variants")
#: decoder strength -> decoder_hidden
DECODERS = {"weak (linear)": [], "strong (2x1024)": [1024, 1024]}
WARM_FREE = TrainConfig(warmup_epochs=50, free_bits=0.1)
#: the variants group: (label, model, config, training)
VARIANTS = [
    ("top-down", "top-down", {}, WARM_FREE),
    ("top-down, decoder sees z2, warm-up", "top-down", {"decoder_uses_top": True},
     REGIMES["warm-up"]),
    ("top-down, decoder sees z2", "top-down", {"decoder_uses_top": True}, WARM_FREE),
    ("top-down, L2 = 4", "top-down", {"top_latent_dim": 4}, WARM_FREE),
    ("top-down, top 1x128", "top-down", {"top_hidden": [128]}, WARM_FREE),
    ("top-down, L1 = L2 = 8", "top-down", {"latent_dim": 8, "top_latent_dim": 8}, WARM_FREE),
    ("two-level", "two-level", {}, WARM_FREE),
    ("top-down, L1 = 32", "top-down",
     {"latent_dim": 32, "top_latent_dim": 8, "hidden": [256, 224]}, WARM_FREE),
    # is early stopping the limit? both the best hierarchy and the VAE with patience 50
    ("top-down, decoder sees z2, patience 50", "top-down", {"decoder_uses_top": True},
     TrainConfig(warmup_epochs=50, patience=50)),
    ("VAE, patience 50", "vae", {}, TrainConfig(warmup_epochs=50, patience=50)),
]


def specs(groups=GROUPS) -> list[RunSpec]:
    """The runs, in the order they are run."""
    out = []
    common = dict(k=K, threads=1, device="cpu")
    if "collapse" in groups:
        out += [RunSpec(model=m, train=t, seed=s, label=f"{m}, {regime}", group="collapse",
                        **common)
                for m in ("two-level", "top-down") for regime, t in REGIMES.items()
                for s in SEEDS]
    if "likelihood" in groups:
        warm = REGIMES["warm-up"]
        out += [RunSpec(model=m, model_config=c, train=warm, seed=s, label=name,
                        group="likelihood", **common)
                for name, m, c in (("VAE", "vae", {}),
                                   ("two-level, q(z2|z1)", "two-level",
                                    {"top_posterior_sees_x": False}),
                                   ("hierarchical VampPrior", "top-down", HVAMP))
                for s in SEEDS]
    if "decoder" in groups:
        out += [RunSpec(model=m, model_config={"decoder_hidden": h}, seed=s,
                        label=f"{m}, {name}", group="decoder", **common)
                for m in ("two-level", "top-down") for name, h in DECODERS.items()
                for s in SEEDS]
    if "variants" in groups:
        out += [RunSpec(model=m, model_config=c, train=t, seed=s, label=name, group="variants",
                        **common)
                for s in SEEDS for name, m, c, t in VARIANTS]
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", nargs="+", choices=GROUPS, default=GROUPS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (1 thread each)")
    args = parser.parse_args(argv)
    store = ResultsStore(args.out)
    def describe(spec, row):
        m = row["metrics"] or {}
        return (f"{row['id']} {spec.model:>9} {spec.model_config} warm-up={spec.train.warmup_epochs} "
                f"free-bits={spec.train.free_bits} seed={spec.seed} {row['status']} "
                f"NLL {m.get('test_nll_iw', float('nan')):.2f} "
                f"KL z1/z2 {m.get('test_kl_z1', float('nan')):.2f}/{m.get('test_kl_z2', float('nan')):.2f} "
                f"AU z1/z2 {m.get('active_units_z1')}/{m.get('active_units_z2')}")
    run_missing(specs(args.groups), store, describe, jobs=args.jobs)
    metrics = ("test_nll_iw", "test_elbo", "test_kl_z1", "test_kl_z2", "active_units_z1",
               "active_units_z2")
    # one table per model, grouped by whatever varies among its rows (the seed aside)
    for model in ("vae", "two-level", "top-down"):
        rows = [r for r in store.rows() if r["spec"]["model"] == model]
        if rows:
            print(f"\n{model}\n" + markdown_table(
                rows, None, metrics=metrics if model != "vae" else ("test_nll_iw", "test_elbo")))


if __name__ == "__main__":
    main()

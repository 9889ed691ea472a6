"""Diffusion models on the Digits split: how many steps, which schedule, which objective, and
the book's Table 4.1 measured (the diffusion comparison page reads the store).

    make compare-diffusion      # = .venv/bin/python benchmarks/compare_diffusion.py

One protocol for all (:func:`intro_dgm.protocol.run`): Adamax 1e-3, batch 64, early stopping
with patience 20 on the validation bound (for a diffusion model always its full ELBO, every
one of the T terms, whatever the training objective), on the test set the full ELBO and an
importance-weighted bound with k = 10 chains z_1..z_T per image (k x T network passes per
image), in nats and bits per dimension. The DDGM: a shared 2x256 noise predictor with a
sinusoidal step embedding, the discretised-Gaussian data term, sigma_t^2 = the posterior
variance, at most 300 epochs (a budget: its validation pass has T terms, so an epoch at
T = 1000 costs about 3 s here; the store's ``epochs`` says where a run stopped).

Two DDGMs are measured. The **linear** one is the DDPM recipe scaled to T steps (the
linear schedule from log-SNR 6.9, the discretised-Gaussian data term, steps drawn
independently, networks of 2x256 units, at most 300 epochs); it sits far above every VAE.
The **tuned** one changes what matters on 17-valued pixels (08c shows why): the chain starts
at a log-SNR chosen on validation numbers (noise of the size of the pixels' spread, not a
fraction of a bin) and falls linearly in log-SNR to -10; the data term is chosen with it (a
learned categorical decoder on z_1, or the discretised Gaussian); a batch's steps are
stratified over the chain; its networks have 2x512 units; it trains for up to 2000 epochs
with patience 50. Its table rows use ``TUNED_TABLE_K`` = 100 chains per test image for the
importance-weighted bound.

**The choice is made on validation numbers only** (:func:`chosen_tuned`): the tuned-start
group runs first; of its runs (each start in ``START_GRID`` with the categorical decoder,
and the discretised Gaussian at two starts) the one with the lowest validation -ELBO (its
``best_val_loss``, the full bound on the validation images) fixes the start and the data
term of the tuned-table and tuned-steps groups, and of the DDGM that
``benchmarks/compare_digits.py`` compares with every other model (which therefore runs after
this store is complete). No test number enters the choice.

Groups (the first four on the linear DDGM, the rest on the tuned one):

* **steps**: T from 5 to 1000 on the linear schedule, one seed each (sampling time measured);
* **schedules**: T = 100 with the cosine schedule and two log-SNR-linear ones, one seed each;
* **objective**: T = 100 trained on L_simple, three seeds (the bound's three are the table's);
* **table**: Table 4.1 with the linear DDGM, the one-level VAE (warm-up 50), the top-down VAE
  (free bits 0.1) and RealNVP on dequantised pixels, three seeds each, with the
  reconstruction error and the time to sample 1,000 images;
* **tuned-table**: the tuned DDGM, three seeds, with the same extras (Table 4.1's DDGM row);
  (no L_simple group for it: on its log-SNR-linear schedule every step has the same weight,
  so L_simple and the bound train the same model with Adamax, as 08b shows and measures);
* **tuned-start**: where the chain starts, log-SNR in START_GRID, one seed each, and the
  discretised-Gaussian data term (whose width is tied to the first step) at two starts;
* **tuned-steps**: T in TUNED_STEPS, one seed each, sampling time measured;
* **continuous**: the continuous-time model (``vdm``, :data:`VDM_CONFIG`), trained on the
  continuous bound and measured as its discretisation at T = 100, three seeds, with the table's
  extras; seed 0 keeps its weights beside its row (the continuous-time page studies it).

Rows go to ``src/intro_dgm/stores/diffusion_results.jsonl`` as they finish; a rerun skips them.
Any row: ``intro-dgm reproduce diffusion ROW_ID --out DIR``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from intro_dgm.protocol import ResultsStore, RunSpec, markdown_table, run_missing, state_arrays
from intro_dgm.runs.store import STORES_DIR
from intro_dgm.training import TrainConfig

RESULTS = STORES_DIR / "diffusion_results.jsonl"
SEEDS = (0, 1, 2)
GROUPS = ("table", "objective", "schedules", "steps", "tuned-table", "tuned-start", "tuned-steps",
          "continuous")
STEPS = (5, 10, 20, 50, 100, 200, 500, 1000)
TIMED = ("sampling_seconds",)
TABLE_EXTRAS = ("reconstruction", "sampling_seconds")
#: log-SNR of the linear schedule at T = 100 at its two ends (printed by the page)
LINEAR_ENDS = {"log_snr_1": 6.907, "log_snr_T": -10.80}
#: the linear DDGM's training budget (see the module docstring)
DDGM_TRAIN = TrainConfig(max_epochs=300)
#: where the tuned DDGM's chain may start (log-SNR of z_1), with the categorical decoder; the
#: discretised Gaussian (whose width is tied to the first step) at DISCRETISED_STARTS
START_GRID = (-2.0, 0.0, 1.0, 2.0, 4.0)
DISCRETISED_STARTS = (4.0, 6.0)
#: T = 1000 is left out: the validation pass alone (350 images x T terms through the wider
#: network) would take about 10 s per epoch; its sampling time is measured by
#: benchmarks/diffusion_sampling.py
TUNED_STEPS = (10, 20, 50, 100, 200)
#: the tuned DDGM before its start and data term are chosen (:func:`chosen_tuned`)
TUNED_BASE = {"steps": 100, "schedule": "log-snr", "log_snr_T": -10.0, "hidden": [512, 512],
              "step_sampling": "stratified"}
#: importance samples (chains z_1..z_T) per test image for the tuned DDGM's table rows
TUNED_TABLE_K = 100
TUNED_TRAIN = TrainConfig(max_epochs=2000, patience=50)
#: the continuous-time model: learned end points from log-SNR 4 to -10, a categorical decoder
#: on z_0, Fourier features, 2x512 units (the VDMConfig defaults), T = 100 for its numbers
VDM_CONFIG: dict = {}


def ddgm(steps=100, **fields) -> dict:
    return {"steps": steps, **fields}


def specs(groups=GROUPS, store: ResultsStore | None = None) -> list[RunSpec]:
    """The runs, in the order they are run; the tuned DDGM's table and steps groups only once
    ``store`` holds the whole tuned-start group (their config is chosen from it)."""
    common = dict(k=10, threads=1, device="cpu")
    out = []
    if "table" in groups:
        models = [("DDGM (linear)", "ddgm", ddgm(), DDGM_TRAIN),
                  ("VAE", "vae", {}, TrainConfig(warmup_epochs=50)),
                  ("top-down VAE", "top-down", {}, TrainConfig(free_bits=0.1)),
                  ("RealNVP", "realnvp", {}, TrainConfig())]
        out += [RunSpec(model=m, model_config=c, train=t, seed=s, extras=TABLE_EXTRAS,
                        label=name, group="table",
                        **{**common, "k": 1000 if m != "ddgm" else 10})
                for s in SEEDS for name, m, c, t in models]
    if "objective" in groups:
        out += [RunSpec(model="ddgm", model_config=ddgm(objective="simple"), train=DDGM_TRAIN,
                        seed=s, label="DDGM (linear), L_simple", group="objective", **common)
                for s in SEEDS]
    if "schedules" in groups:
        out += [RunSpec(model="ddgm", model_config=ddgm(**c), train=DDGM_TRAIN, label=name,
                        group="schedules", **common)
                for name, c in (("cosine", {"schedule": "cosine"}),
                                ("log-SNR linear, the linear schedule's ends",
                                 {"schedule": "log-snr", **LINEAR_ENDS}),
                                ("log-SNR linear, 10 to -10",
                                 {"schedule": "log-snr", "log_snr_1": 10.0, "log_snr_T": -10.0}))]
    if "steps" in groups:  # T = 100 is the table group's seed 0
        out += [RunSpec(model="ddgm", model_config=ddgm(T), train=DDGM_TRAIN, extras=TIMED,
                        label=f"DDGM (linear), T = {T}", group="steps", **common)
                for T in STEPS if T != 100]
    tuned = dict(model="ddgm", train=TUNED_TRAIN, **common)
    if "tuned-start" in groups:
        out += start_specs()
    if "continuous" in groups:
        out += [RunSpec(model_config=VDM_CONFIG, seed=s, extras=TABLE_EXTRAS,
                        label="VDM (continuous time)", group="continuous",
                        **{**tuned, "model": "vdm", "k": TUNED_TABLE_K}) for s in SEEDS]
    chosen = chosen_tuned(store) if store is not None else None
    if chosen is None:  # the later groups wait for the choice
        return out
    if "tuned-table" in groups:
        out += [RunSpec(model_config=chosen, seed=s, extras=TABLE_EXTRAS, label="DDGM (tuned)",
                        group="tuned-table", **{**tuned, "k": TUNED_TABLE_K}) for s in SEEDS]
    if "tuned-steps" in groups:  # T = 100 is the tuned-start group's run of the chosen config
        out += [RunSpec(model_config={**chosen, "steps": T}, extras=TIMED,
                        label=f"DDGM (tuned), T = {T}", group="tuned-steps", **tuned)
                for T in TUNED_STEPS if T != 100]
    return out


def start_specs() -> list[RunSpec]:
    """The tuned-start group: where the chain starts, and which data term, one seed each."""
    common = dict(model="ddgm", train=TUNED_TRAIN, k=10, threads=1, device="cpu")
    configs = [{**TUNED_BASE, "log_snr_1": start, "data_term": term}
               for term, starts in (("categorical", START_GRID),
                                    ("discretised-gaussian", DISCRETISED_STARTS))
               for start in starts]
    return [RunSpec(model_config=c, label=f"start {c['log_snr_1']:g}, {c['data_term']}",
                    group="tuned-start", **common) for c in configs]


def chosen_tuned(store: ResultsStore) -> dict | None:
    """The tuned DDGM's config: the tuned-start run with the lowest validation -ELBO
    (``best_val_loss``); ``None`` until every run of that group is in ``store``. Test numbers
    play no part."""
    rows = {r["id"]: r for r in store.rows() if r["status"] == "ok"}
    runs = [(rows[s.id]["metrics"]["best_val_loss"], s) for s in start_specs() if s.id in rows]
    if len(runs) < len(start_specs()):
        return None
    return dict(min(runs, key=lambda pair: pair[0])[1].model_config)


def keep_weights(result) -> dict:
    """The after-hook: seed 0 of the continuous-time model keeps its weights beside its row
    (about 5 MB; :func:`intro_dgm.protocol.stored_model` reads them back)."""
    if result.spec.group == "continuous" and result.spec.seed == 0:
        return state_arrays(result.model)
    return {}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", nargs="+", choices=GROUPS, default=GROUPS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (1 thread each)")
    args = parser.parse_args(argv)
    store = ResultsStore(args.out)
    def describe(spec, row):
        m = row["metrics"] or {}
        return (f"{row['id']} {spec.model:>8} {spec.model_config} seed={spec.seed} {row['status']} "
                f"-ELBO {-m.get('test_elbo', float('nan')):.2f} NLL {m.get('test_nll_iw', float('nan')):.2f} "
                f"epochs {m.get('epochs')} {m.get('train_seconds', float('nan')):.0f} s "
                f"sampling {m.get('sampling_seconds', float('nan')):.3f} s")
    # the choice, made on validation, then the runs that use it
    run_missing(specs(args.groups, store), store, describe, after=keep_weights, jobs=args.jobs)
    run_missing(specs(args.groups, store), store, describe, after=keep_weights, jobs=args.jobs)
    chosen = chosen_tuned(store)
    print(f"tuned DDGM chosen on validation: {chosen}")
    metrics = ("test_nll_iw", "test_elbo", "test_neg_elbo_bpd", "train_seconds")
    for model in ("ddgm", "vae", "top-down", "realnvp"):
        rows = [r for r in store.rows() if r["spec"]["model"] == model]
        if rows:
            print(f"\n{model}\n" + markdown_table(rows, None, metrics=metrics))


if __name__ == "__main__":
    main()

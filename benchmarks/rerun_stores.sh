#!/bin/sh
# Re-run all six results stores, each into a new file NAME_v2_results.jsonl (its arrays in
# NAME_v2_arrays/), in the order the sweeps depend on each other: the diffusion store first
# (it chooses the tuned DDGM on validation numbers), then the Digits comparison that uses
# that choice, then the rest. Resumable: every sweep skips the rows its file already holds,
# so running this again continues where an interrupted run stopped. About 5 hours of runs
# (each sweep's time is in the Makefile; with two jobs on two cores, about 3 hours).
#
#     make rerun-stores        # = sh benchmarks/rerun_stores.sh
#
# Run it from a clean checkout of a commit that has landed on main (e.g. a `git worktree`):
# every row records the commit, whether the tree was dirty and the processor. The NAME_v2
# files must not be tracked in that checkout (appending to a tracked file makes the tree
# dirty): to resume from a committed partial file, copy it to an untracked name first
# (CONTRIBUTING.md, "Re-running a store").
set -e
PY=${PY:-.venv/bin/python}
STORES=src/intro_dgm/stores
JOBS=${JOBS:-2}
$PY benchmarks/compare_diffusion.py --jobs "$JOBS" --out $STORES/diffusion_v2_results.jsonl
$PY benchmarks/compare_digits.py --jobs "$JOBS" --out $STORES/digits_v2_results.jsonl \
    --diffusion-store $STORES/diffusion_v2_results.jsonl
$PY benchmarks/compare_hierarchical.py --jobs "$JOBS" --out $STORES/hierarchical_v2_results.jsonl
$PY benchmarks/compare_posteriors.py --jobs "$JOBS" --out $STORES/posteriors_v2_results.jsonl
$PY benchmarks/compare_priors.py --jobs "$JOBS" --out $STORES/priors_v2_results.jsonl
$PY benchmarks/compare_fashion.py --out $STORES/fashion_v2_results.jsonl
echo "all six stores complete"

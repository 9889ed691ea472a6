"""Sampling speed of the mixture priors (run: ``make benchmark`` or this file).

Draws 100,000 points from each mixture prior with K=16 components for L in 2..40, median of
``--repeats`` runs (no gradients), and times, side by side in the same process, the way the
book's listings sample: a Python loop that draws one row at a time (pick a component, draw
one Gaussian vector) and concatenates the rows at the end. Prints both and the ratio; writes
them as JSON to ``--out`` (default benchmarks/priors_sampling.json).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from intro_dgm.models import VAEConfig, build_vae
from intro_dgm.priors import GTMPrior, GTMVampPrior, MoGPrior, VampPrior

N = 100_000
K = 16
LATENT_DIMS = (2, 4, 8, 16, 32, 40)


def make_priors(latent_dim: int) -> dict:
    torch.manual_seed(0)
    encoder = build_vae(VAEConfig(latent_dim=latent_dim)).encoder  # the book's 2x256 encoder
    return {"mog": MoGPrior(latent_dim, K),
            "vampprior": VampPrior(encoder, 64, K, input_range=(0.0, 16.0)),
            "gtm": GTMPrior(latent_dim, K),
            "gtm-vampprior": GTMVampPrior(encoder, 64, K, input_range=(0.0, 16.0))}


def row_by_row(prior, n: int) -> torch.Tensor:
    """One row per Python iteration, then a concatenation (the listings' way; with the
    standard deviation exp(log_var / 2), so only the speed differs)."""
    mu, log_var = prior.components()
    w = prior.log_weights().exp()
    rows = []
    for _ in range(n):
        k = torch.multinomial(w, 1)
        rows.append(mu[k] + torch.exp(0.5 * log_var[k]) * torch.randn_like(mu[k]))
    return torch.cat(rows)


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--loop-repeats", type=int, default=1,
                        help="repeats of the (slow) row-by-row loop")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("priors_sampling.json"))
    args = parser.parse_args(argv)
    results = []
    for latent_dim in LATENT_DIMS:
        for name, prior in make_priors(latent_dim).items():
            ours = median_seconds(lambda: prior.sample(N), args.repeats)
            loop = median_seconds(lambda: row_by_row(prior, N), args.loop_repeats)
            results.append({"prior": name, "latent_dim": latent_dim, "n": N, "k": K,
                            "vectorised_ms": 1e3 * ours, "row_by_row_ms": 1e3 * loop,
                            "ratio": loop / ours})
            print(f"{name:>14} L={latent_dim:<3} vectorised {1e3 * ours:7.1f} ms   "
                  f"row by row {1e3 * loop:9.0f} ms   ratio {loop / ours:7.0f}x", flush=True)
    worst = max(r["vectorised_ms"] for r in results)
    print(f"slowest vectorised sample of {N:,} points: {worst:.1f} ms (target < 50 ms)")
    args.out.write_text(json.dumps({"threads": torch.get_num_threads(), "results": results},
                                   indent=1) + "\n")


if __name__ == "__main__":
    main()

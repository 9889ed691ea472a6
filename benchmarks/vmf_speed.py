"""Speed of the von Mises-Fisher sampler: 100,000 reparameterised samples at m = 64.

    .venv/bin/python benchmarks/vmf_speed.py      # writes benchmarks/vmf_speed.json

Target (the hyperspherical VAE issue): < 100 ms on this CPU. Reported: the median of 15
repetitions of ``VonMisesFisher(mu, kappa).rsample(100_000)`` (float32, one direction ``mu``,
kappa in {0.1, 10, 1000}), measured side by side with the Gaussian reparameterisation of the
same size (``mu + sigma * randn``), the baseline every VAE pays, and their ratio; for m in
{3, 64, 256}, with the threads PyTorch chooses.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from intro_dgm.distributions import VonMisesFisher

OUT = Path(__file__).with_name("vmf_speed.json")
N, REPEATS = 100_000, 15


def median_ms(fn) -> float:
    fn()  # warm-up
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    rows = []
    for m in (3, 64, 256):
        mu = torch.randn(1, m)
        mu = mu / mu.norm()
        sigma = torch.ones(1, m)
        gauss = median_ms(lambda: mu + sigma * torch.randn(N, 1, m))
        for kappa in (0.1, 10.0, 1000.0):
            q = VonMisesFisher(mu, torch.tensor([kappa]))
            vmf = median_ms(lambda: q.rsample(N))
            rows.append({"m": m, "kappa": kappa, "vmf_ms": round(vmf, 1),
                         "gaussian_ms": round(gauss, 1), "ratio": round(vmf / gauss, 2)})
            print(f"m={m:3d} kappa={kappa:7g}: vMF {vmf:6.1f} ms, Gaussian {gauss:6.1f} ms, "
                  f"ratio {vmf / gauss:4.2f}", flush=True)
    OUT.write_text(json.dumps({"n": N, "repeats": REPEATS, "threads": torch.get_num_threads(),
                               "torch": torch.__version__, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()

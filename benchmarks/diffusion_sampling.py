"""Time to sample 1,000 Digits images from a DDGM against the number of steps T.

    .venv/bin/python benchmarks/diffusion_sampling.py   # writes src/intro_dgm/stores/diffusion_sampling.json

Target (the diffusion issue): 1,000 samples with T = 1000 in < 30 s on this CPU. Sampling
costs T passes of the noise predictor whatever its weights, so the networks here are
untrained, of the sizes the results store uses: the linear DDGM's 2x256 and the tuned DDGM's
2x512 (with its categorical decoder on z_1). Reported: the median of 5 timings of
``model.sample(1000)`` (after one warm-up call), for T in STEPS, side by side with the
one-level VAE of the same store (one pass of its decoder) and the ratio to it, on one thread
(as every run of the store) so the numbers do not depend on the machine's core count.
Run it on an idle machine: another process on the cores inflates every number.
"""
from __future__ import annotations

import json
import statistics
import time

import torch

from intro_dgm.models import build_model
from intro_dgm.runs.store import STORES_DIR

OUT = STORES_DIR / "diffusion_sampling.json"  # read by 08c (load_measurement)
STEPS = (10, 100, 1000)
REPEATS = 5
NETWORKS = {"linear (2x256)": {},
            "tuned (2x512)": {"schedule": "log-snr", "log_snr_1": 1.0, "log_snr_T": -10.0,
                              "hidden": [512, 512], "data_term": "categorical"}}


def median_seconds(model) -> float:
    model.sample(10)  # warm-up
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        model.sample(1000)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    vae = median_seconds(build_model("vae", {}).eval())
    print(f"VAE: {vae:.4f} s", flush=True)
    rows = []
    for name, fields in NETWORKS.items():
        for T in STEPS:
            seconds = median_seconds(build_model("ddgm", {**fields, "steps": T}).eval())
            rows.append({"network": name, "steps": T, "seconds": round(seconds, 4),
                         "ratio_to_vae": round(seconds / vae, 1)})
            print(f"DDGM {name}, T = {T:4d}: {seconds:7.3f} s ({seconds / vae:.0f} x the VAE)",
                  flush=True)
    OUT.write_text(json.dumps({"samples": 1000, "repeats": REPEATS, "threads": 1,
                               "torch": torch.__version__, "vae_seconds": round(vae, 4),
                               "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()

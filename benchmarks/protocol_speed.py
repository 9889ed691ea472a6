"""Training speed of the VAE before and after a change, measured side by side.

    .venv/bin/python benchmarks/protocol_speed.py [--baseline REV] [--rounds 5] [--epochs 20]

The package at git revision ``--baseline`` (default: the commit before the run-protocol
refactor) is extracted with ``git archive`` into a temporary folder. Then, in alternating
rounds, one fresh process imports the baseline and one imports this working tree; each
trains the book's VAE (2x256 MLPs, L=16, categorical decoder, Adamax, batch 64, validation
every epoch) for ``--epochs`` epochs on 1 thread and reports its seconds per epoch.
Alternating rounds let both see the same machine load. Writes medians and the ratio
(new / baseline) to ``benchmarks/protocol_speed.json``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "c38222c"  # main before "One protocol for every model"

# The same code runs against both versions: it uses only API that both have.
CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
import intro_dgm
assert intro_dgm.__file__.startswith(sys.argv[1]), intro_dgm.__file__
from intro_dgm.data import TensorLoader, load_digits_split
from intro_dgm.models import VAEConfig, build_vae
from intro_dgm.training import fit
digits = load_digits_split()
torch.manual_seed(0)
model = build_vae(VAEConfig(latent_dim=16))
epochs = int(sys.argv[2])
hist = fit(model, TensorLoader(digits.train, 64, shuffle=True), TensorLoader(digits.val, 350),
           max_epochs=epochs, patience=epochs, progress=False, device="cpu")
print(json.dumps({"epoch_seconds": hist.epoch_seconds, "val_loss": hist.val_loss}))
"""


def _time(src: Path, epochs: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(src), str(epochs)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE, help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("protocol_speed.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline, "src"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        old_src, new_src = Path(tmp) / "src", ROOT / "src"
        old, new, same_losses = [], [], True
        for r in range(args.rounds):
            a, b = _time(old_src, args.epochs), _time(new_src, args.epochs)
            old += a["epoch_seconds"]
            new += b["epoch_seconds"]
            same_losses &= a["val_loss"] == b["val_loss"]
            print(f"round {r + 1}: baseline {statistics.median(a['epoch_seconds']):.4f} s/epoch, "
                  f"new {statistics.median(b['epoch_seconds']):.4f} s/epoch", flush=True)
    result = {"baseline": args.baseline, "rounds": args.rounds, "epochs_per_round": args.epochs,
              "threads": 1, "baseline_s_per_epoch_median": statistics.median(old),
              "new_s_per_epoch_median": statistics.median(new),
              "ratio_new_over_baseline": statistics.median(new) / statistics.median(old),
              "identical_validation_losses": same_losses}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key:>30}: {value}")


if __name__ == "__main__":
    main()

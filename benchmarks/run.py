"""Benchmarks for the targets of the spine issue (run: ``make benchmark`` or this file).

1. Training speed, 1 thread: ``intro_dgm.training.fit`` against a loop written the way the
   book's companion code trains (``DataLoader`` over a ``Dataset``, one-hot categorical
   log-likelihood, Monte Carlo KL), same 2x256 MLP architecture, Adamax, batch 64, with
   validation every epoch. Median seconds per epoch over the same number of epochs, and
   the ratio, measured side by side in one process.
2. Importance-weighted NLL with K=5000 over the 447 test images: median of 3 runs.
3. Test NLL (K=1000) of the VAE with L=16 on the Digits split, mean and sd over 3 seeds.

Writes the figures as JSON to ``--out`` (default benchmarks/results.json) and prints them.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from intro_dgm.data import TensorLoader, load_digits_split
from intro_dgm.distributions import log_normal_diag, log_standard_normal
from intro_dgm.evaluation import elbo, iwae_log_likelihood
from intro_dgm.models import VAEConfig, build_vae
from intro_dgm.training import fit


class _CompanionStyleVAE(nn.Module):
    """The companion code's VAE, as its listings train it (for timing only)."""

    def __init__(self, D=64, L=16, M=256, num_vals=17):
        super().__init__()
        act = nn.LeakyReLU
        self.enc = nn.Sequential(nn.Linear(D, M), act(), nn.Linear(M, M), act(), nn.Linear(M, 2 * L))
        self.dec = nn.Sequential(nn.Linear(L, M), act(), nn.Linear(M, M), act(), nn.Linear(M, num_vals * D))
        self.D, self.num_vals = D, num_vals

    def forward(self, x):
        mu, log_var = torch.chunk(self.enc(x), 2, dim=1)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        log_p = F.log_softmax(self.dec(z).view(-1, self.D, self.num_vals), dim=-1)
        one_hot = F.one_hot(x.long(), num_classes=self.num_vals)
        rec = (one_hot * log_p).sum([-1, -2])
        kl = log_normal_diag(z, mu, log_var) - log_standard_normal(z)
        return -(rec - kl).mean()


class _Rows(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = x.cpu().numpy()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def companion_epoch_times(digits, epochs: int) -> list[float]:
    torch.manual_seed(0)
    model = _CompanionStyleVAE()
    opt = torch.optim.Adamax(model.parameters(), lr=1e-3)
    train = torch.utils.data.DataLoader(_Rows(digits.train), batch_size=64, shuffle=True)
    val = torch.utils.data.DataLoader(_Rows(digits.val), batch_size=64, shuffle=False)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for x in train:
            loss = model(x)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            sum(model(x).item() for x in val)
        times.append(time.perf_counter() - start)
    return times


def ours_epoch_times(digits, epochs: int) -> list[float]:
    model = build_vae(VAEConfig(latent_dim=16))
    hist = fit(model, TensorLoader(digits.train, 64, shuffle=True), TensorLoader(digits.val, 350),
               max_epochs=epochs, patience=epochs, progress=False, device="cpu")
    return hist.epoch_seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    parser.add_argument("--epochs", type=int, default=30, help="epochs timed per training loop")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    digits = load_digits_split()
    results = {"torch": torch.__version__, "default_threads": torch.get_num_threads()}

    # 1. training speed, one thread, alternating rounds so both see the same machine load
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ours, theirs = [], []
    for _ in range(2):
        theirs += companion_epoch_times(digits, args.epochs)
        ours += ours_epoch_times(digits, args.epochs)
    results["train_s_per_epoch_ours_median"] = statistics.median(ours)
    results["train_s_per_epoch_companion_style_median"] = statistics.median(theirs)
    results["train_speed_ratio_companion_over_ours"] = statistics.median(theirs) / statistics.median(ours)
    torch.set_num_threads(default_threads)

    # 3. quality over seeds (also gives a trained model for 2.)
    nlls, elbos, epochs, models = [], [], [], []
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        model = build_vae(VAEConfig(latent_dim=16))
        hist = fit(model, TensorLoader(digits.train, 64, shuffle=True, seed=seed),
                   TensorLoader(digits.val, 350), max_epochs=1000, patience=20, seed=seed,
                   progress=False, device="cpu")
        torch.manual_seed(seed)
        nlls.append(-iwae_log_likelihood(model, digits.test, k=1000).mean().item())
        elbos.append(-elbo(model, digits.test).mean().item())
        epochs.append(hist.epochs)
        models.append(model)
    results["test_nll_k1000_per_seed"] = nlls
    results["test_nll_k1000_mean"] = statistics.mean(nlls)
    results["test_nll_k1000_sd"] = statistics.stdev(nlls) if len(nlls) > 1 else 0.0
    results["test_neg_elbo_mean"] = statistics.mean(elbos)
    results["epochs_per_seed"] = epochs

    # 2. K = 5000 over the 447 test images, default threads
    secs = []
    for r in range(3):
        torch.manual_seed(r)
        start = time.perf_counter()
        nll5000 = -iwae_log_likelihood(models[0], digits.test, k=5000).mean().item()
        secs.append(time.perf_counter() - start)
    results["iwae_k5000_seconds_median"] = statistics.median(secs)
    results["test_nll_k5000_seed0"] = nll5000

    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    for k, v in results.items():
        print(f"{k:>42}: {v}")


if __name__ == "__main__":
    main()

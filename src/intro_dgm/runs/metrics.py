"""What a run measures: the test metrics every run reports (:func:`evaluate_per_example`) and
the extra metrics a spec may ask for by name (:data:`EXTRA_METRICS`), plus :func:`gallery`,
the samples and reconstructions a results page shows.

Every model is measured through the interface of :mod:`intro_dgm.models.base`: ``bound``
for the -ELBO and its terms, ``log_weights`` for the importance-weighted NLL, and, for a
latent-variable model, ``posterior_means`` for the active units.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from torch import nn

from ..analysis import aggregated_posterior, hole_mass
from ..data import Split, load_digits_labels
from ..evaluation import SampleScorer, active_units_per_level, bits_per_dim, elbo, evaluate_bound
from ..models import LatentVariableModel
from ..utils import Registry, check_int, eval_mode, module_device, seed_everything

#: The metrics every successful run reports (nats per example unless the name says bpd).
METRIC_KEYS = ("test_nll_iw", "test_elbo", "train_elbo", "k", "active_units", "epochs",
               "best_epoch", "best_val_loss", "seconds_per_epoch", "train_seconds",
               "eval_seconds", "num_params", "test_nll_iw_bpd", "test_neg_elbo_bpd")
#: the keys a model without a learned encoder (diffusion, flow) does not report
ENCODER_KEYS = ("active_units",)


def count_parameters(model: nn.Module) -> int:
    """Trainable numbers in ``model`` (shared modules, like a VampPrior's encoder, count once)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, k: int, seed: int) -> dict:
    """The test metrics of a trained model (seeded, so they do not depend on training time)."""
    return evaluate_per_example(model, split, k, seed)[0]


@torch.no_grad()
def evaluate_per_example(model: nn.Module, split: Split, k: int, seed: int
                         ) -> tuple[dict, dict[str, np.ndarray]]:
    """:func:`evaluate`'s metrics and the per-example values they are means of.

    One pass of :func:`~intro_dgm.evaluation.evaluate_bound` with S = ``k`` draws per test
    image gives ``test_nll_iw`` and, from the same draws, ``test_elbo`` (the mean
    log-weight) and ``test_<term>`` for each of its shares (``rec``, ``kl`` and the parts of
    ``kl``): the terms add up (``test_elbo = test_rec - test_kl``) and the IW bound is never
    below the ELBO, image by image. The KLs are these per-draw estimates, never a closed form.
    The same pass on the validation set is kept too. ``train_elbo`` is the cheap
    ``model.bound`` (one draw per image) on the training set, the estimate early stopping
    reads on the validation set. Every mean is taken in float64.

    Returns:
        ``(metrics, arrays)``: ``arrays`` holds float64 ``(N,)`` arrays ``test_log_likelihood``,
        ``test_elbo``, ``test_<term>`` and ``val_...`` alike, from which every stored test
        number is recomputed (``metrics["test_nll_iw"] = -test_log_likelihood.mean()``).
    """
    seed_everything(seed)
    start = time.perf_counter()
    test = evaluate_bound(model, split.test, k=k)
    eval_seconds = time.perf_counter() - start
    seed_everything(seed)
    val = evaluate_bound(model, split.val, k=k)
    arrays = {f"{part}_{name}": values.cpu().numpy()
              for part, values_of in (("test", test), ("val", val))
              for name, values in values_of.items()}
    metrics = {"test_nll_iw": -float(test["log_likelihood"].mean()),
               "test_elbo": float(test["elbo"].mean()), "k": k, "eval_seconds": eval_seconds}
    metrics.update({f"test_{name}": float(values.mean()) for name, values in test.items()
                    if name not in ("log_likelihood", "elbo")})
    # active units measure a learned encoder; a diffusion model's posterior is fixed noise
    units = (active_units_per_level(model, split.test)
             if isinstance(model, LatentVariableModel) else {})
    if units:
        metrics["active_units"] = sum(units.values())
    if len(units) > 1:  # a hierarchical model: each level's too
        metrics.update({f"active_units_{level}": n for level, n in units.items()})
    metrics["train_elbo"] = float(elbo(model, split.train).double().mean())
    metrics["test_nll_iw_bpd"] = bits_per_dim(metrics["test_nll_iw"], split.dim)
    metrics["test_neg_elbo_bpd"] = bits_per_dim(-metrics["test_elbo"], split.dim)
    return metrics, arrays


def _hole_mass(model, split, spec) -> dict:
    """Prior mass where the training set's aggregated posterior is below 0.1 x the prior."""
    return {"hole_mass": hole_mass(model.prior, aggregated_posterior(model, split.train))}


def _sample_quality(model, split, spec) -> dict:
    """A classifier's view of 2,000 generated images (decoder means); Digits only."""
    if not split.name.startswith("digits"):
        raise ValueError(f"sample_quality needs Digits labels; dataset is {split.name!r}")
    labels = load_digits_labels()["train"]
    scores = SampleScorer(split.train, labels)(model.sample(2000, mean=True))
    return {"sample_confidence": scores["confidence"],
            "sample_class_entropy": scores["class_entropy"]}


def mean_image_mse(train: torch.Tensor, test: torch.Tensor) -> float:
    """The scale of ``reconstruction_mse``: the squared error per pixel of "reconstructing"
    every test image by the mean training image, which needs no model."""
    return ((test.double() - train.double().mean(0)) ** 2).mean().item()


def _reconstruction(model, split, spec) -> dict:
    """Mean squared error per pixel, in pixel values, between each test image and
    ``model.reconstruct(x)`` (decoder means): through the code of a VAE, forward and back
    through a flow, and for a diffusion model noised to z_T and run back (its code)."""
    with eval_mode(model):
        x_hat = model.reconstruct(split.test).cpu()
    return {"reconstruction_mse": ((x_hat - split.test) ** 2).mean().item()}


def _sampling_seconds(model, split, spec) -> dict:
    """Seconds to generate 1,000 images, the median of 3 timings (the first call warms up)."""
    model.sample(10)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model.sample(1000)
        times.append(time.perf_counter() - start)
    return {"sampling_seconds": statistics.median(times)}


#: Extra metrics by name, each ``fn(model, split, spec) -> dict``, measured when a spec's
#: ``extras`` lists the name.
EXTRA_METRICS = Registry("extra metric", {
    "hole_mass": _hole_mass, "sample_quality": _sample_quality,
    "reconstruction": _reconstruction, "sampling_seconds": _sampling_seconds})


def gallery(model: nn.Module, split: Split, num_samples: int = 16,
            num_reconstructions: int = 8, seed: int = 0) -> dict:
    """What a results page shows of a trained model, as float32 arrays of shape (n, D):
    ``samples`` (``model.sample(num_samples, mean=True)``, seeded: a VAE's decoder means at
    codes drawn from its prior, a diffusion model's chain with its last step averaged, a
    flow's draws, as it has no mean),
    ``originals`` (the first ``num_reconstructions`` test images) and ``reconstructions``
    (``model.reconstruct`` of them: through the code of a VAE, a flow's inverse, a diffusion
    model's noised-and-denoised chain)."""
    import numpy as np

    check_int(num_samples, "num_samples", minimum=1)
    check_int(num_reconstructions, "num_reconstructions", minimum=1)
    originals = split.test[:num_reconstructions]
    seed_everything(seed)
    with torch.no_grad(), eval_mode(model):  # devices follow the model; arrays come back
        samples = model.sample(num_samples, mean=True)
        reconstructions = model.reconstruct(originals.to(module_device(model)))
    return {name: np.asarray(t.detach().cpu(), dtype=np.float32) for name, t in
            (("samples", samples), ("originals", originals),
             ("reconstructions", reconstructions))}

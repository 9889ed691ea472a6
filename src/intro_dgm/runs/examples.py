r"""A run's per-example values and what summarises them: the part of the results layer
that reads the arrays beside a store (:mod:`intro_dgm.runs.results` builds comparisons on
it).

* :func:`example_values` -- a run's per-example values of a metric, on the test or the
  validation images (:data:`PER_EXAMPLE`, ``gap``, any stored term);
* :func:`describe` / :class:`ExampleSummary` -- their mean, sd, median and trimmed mean:
  what a long tail does to a mean;
* :func:`trend` / :class:`Trend` -- how fast a training curve still falls at its end,
  against its noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: metric -> (per-example array, sign): the metric is ``sign * mean(array)``
PER_EXAMPLE = {"test_nll_iw": ("test_log_likelihood", -1.0), "test_elbo": ("test_elbo", 1.0),
               "neg_elbo": ("test_elbo", -1.0), "test_rec": ("test_rec", 1.0),
               "test_kl": ("test_kl", 1.0)}

SPLITS = ("test", "val")


def _split_view(arrays, split: str):
    """``arrays`` with a metric's ``test_`` arrays read from ``split``'s (``val_...``)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "test":
        return arrays
    return {key.replace(f"{split}_", "test_", 1): value for key, value in arrays.items()
            if key.startswith(f"{split}_")}


def _example_values(arrays, metric: str):
    """The per-example values whose mean is ``metric`` (a run's arrays, float64), or
    ``None`` for a metric without them: :data:`PER_EXAMPLE`; ``gap``, per image the IW bound
    minus the ELBO; any other stored test term by its own name (``test_kl_z1``, a DDGM's
    ``test_kl_steps``: the stores keep each, and tests/test_stores.py checks that their
    means are the metrics); each negated by a leading minus. A missing array: KeyError."""
    if metric.startswith("-"):
        values = _example_values(arrays, metric[1:])
        return None if values is None else -values
    if metric == "gap":
        return (arrays["test_log_likelihood"].astype(np.float64)
                - arrays["test_elbo"].astype(np.float64))
    if metric in PER_EXAMPLE:
        key, sign = PER_EXAMPLE[metric]
        return sign * arrays[key].astype(np.float64)
    if metric.startswith("test_"):
        return arrays[metric].astype(np.float64)
    return None


def _trimmed_mean(values, trim: float) -> float:
    """The mean of ``values`` without the ``trim`` share at each end (``floor(trim * n)``
    values cut from each side)."""
    if not 0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim!r}")
    v = np.sort(np.asarray(values, dtype=np.float64))
    cut = int(trim * v.size)
    return float(v[cut:v.size - cut].mean())


@dataclass(frozen=True)
class ExampleSummary:
    """A metric's per-example values summarised: mean, sample sd, count, median and the mean
    without the ``trim`` share at each end. Where one image can move the mean (a long tail),
    the median and the trimmed mean say what the typical image does."""

    mean: float
    sd: float
    n: int
    median: float
    trimmed: float
    trim: float

    @property
    def se(self) -> float:
        """Standard error of the mean over the examples (their sampling only)."""
        return self.sd / math.sqrt(self.n) if self.n > 1 else math.nan

    def __format__(self, spec: str) -> str:
        """``f"{s:.2f}"`` -> ``"108.04 (median 88.44, trimmed 106.28)"``."""
        spec = spec or ".2f"
        return (f"{self.mean:{spec}} (median {self.median:{spec}}, "
                f"trimmed {self.trimmed:{spec}})")


def describe(values, trim: float = 0.01) -> ExampleSummary:
    """:class:`ExampleSummary` of an array of per-example values (float64; finite)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0 or not np.isfinite(v).all():
        raise ValueError("values must be a non-empty array of finite numbers")
    return ExampleSummary(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0,
                          int(v.size), float(np.median(v)), _trimmed_mean(v, trim), trim)


def example_values(row: dict, metric: str, arrays_dir: str | Path,
                   split: str = "test") -> np.ndarray:
    """The per-example values (float64) whose mean is ``metric`` of ``row``, on the test or
    the validation images (``split="val"``): ``test_nll_iw`` gives each image's
    :math:`-\\ln p(x)` estimate, ``neg_elbo`` its :math:`-\\mathcal L`, ``gap``, a stored
    term by its name (``test_kl_z1``), each negated by a leading minus. An error names what
    the store does not keep."""
    from .store import load_run_arrays

    arrays = _split_view(load_run_arrays(arrays_dir, row["id"]), split)
    try:
        values = _example_values(arrays, metric)
    except KeyError as missing:
        raise ValueError(f"run {row['id']} keeps no per-example {split} values for "
                         f"{metric!r} (no array {missing})") from None
    if values is None:
        raise ValueError(f"metric {metric!r} has no per-example values: one of "
                         f"{', '.join(PER_EXAMPLE)}, 'gap' or a stored test term")
    return values


@dataclass(frozen=True)
class Trend:
    """A curve's end: the slope of a least-squares line through its last ``n`` points (per
    step; negative: still falling) and the step-to-step noise, the sd of one point about
    its neighbours (sd of the differences / sqrt 2)."""

    slope: float
    noise: float
    n: int


def trend(curve, last: int = 30) -> Trend:
    """:class:`Trend` of the last ``last`` points of a curve (a validation loss per epoch):
    is it still falling, and by more than its noise?"""
    v = np.asarray(curve, dtype=np.float64).ravel()
    if not isinstance(last, int) or last < 3:
        raise ValueError(f"last must be an integer >= 3, got {last!r}")
    if v.size < last:
        raise ValueError(f"curve has {v.size} points, fewer than last={last}")
    tail = v[-last:]
    slope = float(np.polyfit(np.arange(last), tail, 1)[0])
    return Trend(slope, float(np.diff(tail).std(ddof=1) / math.sqrt(2)), last)

r"""The results layer: what a page does with the rows of a store, written once.

* :func:`spec_value`, :func:`varying_keys` -- a spec field of a row by dotted key, and the
  keys whose values differ between rows;
* :func:`select` -- the rows that match spec values (dotted keys), a label or a group;
* :func:`metric_value` -- a stored metric of a row, a derived one (:data:`DERIVED`:
  ``neg_elbo`` :math:`= -\mathcal L`, ``gap`` :math:`= -\mathcal L - \mathrm{NLL}`, a
  diffusion model's log-SNR at its ends, ...), or either negated (``"-test_rec"``);
* :func:`summary` / :class:`Summary` -- mean, sample sd, n and standard error of a metric over
  rows (the seeds, usually), formatted ``mean ± sd (n)``;
* :func:`ranked`, :func:`rank_correlation` -- the labels of a set of runs ordered by a
  metric's mean, and the rank correlation of two metrics' means across labels;
* :func:`compare` -- the difference of a metric between two sets of runs, with its standard
  error: paired on per-example values where the store keeps them (image by image, averaged
  over the seeds both sets share), over seeds otherwise; :class:`Comparison` says which;
* per-example values, a long tail's summaries and a curve's end are
  :mod:`intro_dgm.runs.examples` (:func:`~intro_dgm.runs.examples.example_values`,
  :func:`~intro_dgm.runs.examples.describe`, :func:`~intro_dgm.runs.examples.trend`).

Tables of many groups are :func:`~intro_dgm.runs.tables.markdown_table`, which takes derived
metric names too.
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models import model_entry
from .examples import _example_values, _split_view, _trimmed_mean
from .spec import _field_default, _plain

def _diffusion_log_snr(row: dict):
    """The log-SNR of a diffusion run's schedule (from its spec; no network is built)."""
    from ..models import config_from_dict
    from ..models.schedules import log_snr_of

    if row["spec"]["model"] != "ddgm":
        raise KeyError("a log-SNR schedule belongs to a DDGM run")
    return log_snr_of(config_from_dict("ddgm", row["spec"]["model_config"]).betas())


#: metrics computed from a row (its stored metrics, or its spec): name -> function of the row
DERIVED: dict[str, Callable[[dict], float]] = {
    "neg_elbo": lambda row: -row["metrics"]["test_elbo"],
    "gap": lambda row: -row["metrics"]["test_elbo"] - row["metrics"]["test_nll_iw"],
    # how much worse the test bound is than the training bound (nats): overfitting
    "train_test_gap": lambda row: row["metrics"]["train_elbo"] - row["metrics"]["test_elbo"],
    # the epoch whose weights were kept, counted from 1
    "epoch_kept": lambda row: row["metrics"]["best_epoch"] + 1,
    # a DDGM's log-SNR where its chain starts (rho_1) and ends (rho_T), the steps where it is
    # negative (more noise than signal), and the standard deviation of z_1's noise
    "rho_1": lambda row: float(_diffusion_log_snr(row)[0]),
    "rho_T": lambda row: float(_diffusion_log_snr(row)[-1]),
    "negative_log_snr_steps": lambda row: int((_diffusion_log_snr(row) < 0).sum()),
    "z1_noise_sd": lambda row: math.sqrt(1 / (1 + math.exp(float(_diffusion_log_snr(row)[0])))),
}


def spec_value(row: dict, key: str):
    """A spec field of a row by dotted path, e.g. ``"model_config.prior"``; a missing
    ``model_config`` field takes the model config's default."""
    value = row["spec"]
    parts = key.split(".")
    for i, part in enumerate(parts):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif i == 1 and parts[0] == "model_config":
            config_cls = model_entry(row["spec"]["model"]).config
            defaults = {f.name: _field_default(f) for f in dataclasses.fields(config_cls)}
            if part not in defaults:
                raise ValueError(f"unknown key {key!r}: {config_cls.__name__} has no {part!r}")
            value = _plain(defaults[part])
        else:
            raise ValueError(f"unknown key {key!r}: the spec has no {part!r}")
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def varying_keys(rows: Sequence[dict]) -> list[str]:
    """Dotted spec keys whose value differs between rows (the seed excluded)."""
    def leaves(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and v and k != "prior_kwargs":
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"
    keys = sorted({k for r in rows for k in leaves(r["spec"])} - {"seed"})
    return [k for k in keys if len({json.dumps(_get(r["spec"], k), sort_keys=True)
                                    for r in rows}) > 1]


def _get(d: dict, key: str):
    for part in key.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def metric_value(row: dict, name: str) -> float:
    """Metric ``name`` of a row: a stored one or a :data:`DERIVED` one, negated with a leading
    minus (``"-test_rec"``: the data term as a cost); a clear error for a name the row does
    not have (listing the ones it has)."""
    if name.startswith("-"):
        return -metric_value(row, name[1:])
    metrics = row.get("metrics") or {}
    if name in metrics:
        return float(metrics[name])
    if name in DERIVED:
        try:
            return float(DERIVED[name](row))
        except KeyError:
            pass
    known = sorted([*metrics, *DERIVED])
    raise ValueError(f"metric must be one of {', '.join(known)} (or one negated, '-name'); "
                     f"got {name!r} (row {row['id']})")


def select(rows: Sequence[dict], where: dict | None = None, *, label=None, group=None,
           status: str | None = "ok", order_by: str | None = None) -> list[dict]:
    """The rows whose spec has every ``where`` value (dotted keys, e.g.
    ``{"model": "vae", "model_config.prior": "mog"}``; a model-config field a row leaves out
    takes its default), the given ``label`` and ``group`` (spec fields that name a run), and
    ``status`` (``None``: any). A set of values (``group={"table", "tuned-table"}``) accepts
    any of them. In the order of ``rows``, or sorted by ``order_by``: a spec key (``"seed"``,
    ``"model_config.steps"``) or a metric, stored or derived (:func:`metric_value`)."""
    wanted = dict(where or {})
    if label is not None:
        wanted["label"] = label
    if group is not None:
        wanted["group"] = group
    accepted = {key: ({_plain_value(v) for v in value} if isinstance(value, (set, frozenset))
                      else {_plain_value(value)}) for key, value in wanted.items()}
    # a key that one model's config lacks (a DDGM's data_term, for a VAE row) does not match
    # that row; a key that no row has is a typo, and an error
    known: set[str] = set()

    def matches(row, key, values):
        try:
            value = _spec_field(row, key)
        except ValueError:
            return False
        known.add(key)
        return value in values

    out = [row for row in rows if (status is None or row["status"] == status)
           and all(matches(row, key, values) for key, values in accepted.items())]
    unknown = [key for key in accepted if key not in known]
    if unknown and not out and rows:
        _spec_field(rows[0], unknown[0])  # raises, naming the key
    if order_by is not None:
        out.sort(key=lambda row: _order_value(row, order_by))
    return out


def _order_value(row: dict, key: str):
    try:
        return _spec_field(row, key)
    except ValueError:
        return metric_value(row, key)


def _spec_field(row: dict, key: str):
    if key in ("label", "group"):  # rows stored before these fields existed have neither
        return row["spec"].get(key)
    return spec_value(row, key)


def _plain_value(value):
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list, tuple)) else value


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation, count and standard error of the mean of a metric."""

    mean: float
    sd: float
    n: int

    @property
    def se(self) -> float:
        return self.sd / math.sqrt(self.n) if self.n > 1 else math.nan

    def __format__(self, spec: str) -> str:
        """``f"{s:.2f}"`` -> ``"93.06 ± 0.48 (3)"``: mean ± sd (n)."""
        spec = spec or ".2f"
        return f"{self.mean:{spec}} ± {self.sd:{spec}} ({self.n})"


def summary(rows: Sequence[dict], metric: str) -> Summary:
    """:class:`Summary` of ``metric`` over ``rows`` (an error for no rows)."""
    values = [metric_value(r, metric) for r in rows]
    if not values:
        raise ValueError(f"no rows to summarise {metric!r} over")
    return Summary(statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0,
                   len(values))


def ranked(rows: Sequence[dict], metric: str, by: str = "label") -> list:
    """The values of spec key ``by`` (default the runs' labels) among ``rows``, ordered by the
    mean of ``metric`` over each one's finished runs, lowest first."""
    groups: dict = {}
    for row in rows:
        if row["status"] == "ok":
            groups.setdefault(_spec_field(row, by), []).append(row)
    return sorted(groups, key=lambda key: summary(groups[key], metric).mean)


def rank_correlation(rows: Sequence[dict], metric_a: str, metric_b: str,
                     by: str = "label") -> float:
    """Spearman's rank correlation, across the values of ``by`` (the labels), between the
    means of two metrics over each one's runs: do models that rank well on one rank well on
    the other?"""
    from scipy.stats import spearmanr

    keys = ranked(rows, metric_a, by)
    ok = [r for r in rows if r["status"] == "ok"]
    means = [[summary([r for r in ok if _spec_field(r, by) == key], m).mean for key in keys]
             for m in (metric_a, metric_b)]
    return float(spearmanr(*means).statistic)


@dataclass(frozen=True)
class Comparison:
    """``a - b`` of a metric: the mean difference, its standard error and what it was paired
    on: ``"images"`` (per-example values, ``n`` test images, averaged over ``seeds`` shared
    seeds), ``"seeds"`` (per-seed metrics paired by seed, ``n`` seeds) or ``"unpaired"``
    (different seeds: Welch's standard error of two means, ``n`` the smaller count)."""

    metric: str
    diff: float
    se: float
    n: int
    paired_on: str
    seeds: int
    #: paired on images only (NaN otherwise): the median and the trimmed mean (``trim`` of
    #: the per-image differences cut at each end) of the differences, the share of images
    #: where ``a - b > 0``, and the standard error had the two sides been independent,
    #: sqrt((var_a + var_b) / N), what pairing saves
    median: float = math.nan
    trimmed: float = math.nan
    positive_share: float = math.nan
    se_unpaired: float = math.nan

    @property
    def z(self) -> float:
        """The difference in standard errors."""
        return self.diff / self.se if self.se > 0 else math.inf

    def __str__(self) -> str:
        what = {"images": f"paired on {self.n} test images ({self.seeds} seed"
                          f"{'s' if self.seeds != 1 else ''})",
                "seeds": f"paired on {self.n} seeds",
                "unpaired": f"unpaired, n = {self.n}"}[self.paired_on]
        return f"{self.metric}: {self.diff:+.2f} ± {self.se:.2f} (se, {what})"


def compare(a: Sequence[dict], b: Sequence[dict], metric: str,
            arrays_dir: str | Path | None = None, *, paired: bool = True,
            split: str = "test", trim: float = 0.01) -> Comparison:
    """``metric`` of the runs ``a`` minus that of the runs ``b``.

    With ``arrays_dir`` (the store's, :attr:`~intro_dgm.runs.store.ResultsStore.arrays_dir`)
    holding both sides' per-example values of the metric for the seeds they share, the
    difference is paired image by image: per image, the difference averaged over the shared
    seeds; the mean over images, with standard error sd/sqrt(N). This se counts the choice
    of test images only, not training noise (a lower bound on the uncertainty of the models'
    difference). Otherwise, with the same seeds on both sides: the per-seed differences,
    paired; with different seeds: Welch's standard error of two independent means.
    ``paired=False`` asks for Welch's standard error whatever the seeds (what a reader who
    has only the two summaries would compute; a paired se is usually smaller, as shared
    seeds share their luck). ``split="val"`` pairs on the validation images' values instead
    (stores that keep them); ``trim`` is the share cut at each end for
    :attr:`Comparison.trimmed`.
    """
    by_seed_a = {r["spec"]["seed"]: r for r in a}
    by_seed_b = {r["spec"]["seed"]: r for r in b}
    shared = sorted(set(by_seed_a) & set(by_seed_b))
    if not a or not b:
        raise ValueError("compare needs at least one run on each side")
    if not isinstance(paired, bool):
        raise ValueError(f"paired must be True or False, got {paired!r}")
    if paired and arrays_dir is not None and shared:
        from .store import load_run_arrays

        try:
            sides = [tuple(_example_values(_split_view(load_run_arrays(arrays_dir, r["id"]),
                                                       split), metric)
                           for r in (by_seed_a[s], by_seed_b[s])) for s in shared]
            d = None if sides[0][0] is None else np.mean([x - y for x, y in sides], axis=0)
        except (FileNotFoundError, KeyError):
            d = None
        if d is not None:
            xa, xb = (np.mean([side[i] for side in sides], axis=0) for i in (0, 1))
            return Comparison(metric, float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size)),
                              int(d.size), "images", len(shared),
                              median=float(np.median(d)), trimmed=_trimmed_mean(d, trim),
                              positive_share=float((d > 0).mean()),
                              se_unpaired=float(math.sqrt((xa.var(ddof=1) + xb.var(ddof=1))
                                                          / d.size)))
    if split != "test":
        raise ValueError(f"split={split!r} needs the per-example values of both sides: "
                         "give the store's arrays_dir")
    if paired and len(shared) > 1 and len(shared) == len(a) == len(b):
        d = [metric_value(by_seed_a[s], metric) - metric_value(by_seed_b[s], metric)
             for s in shared]
        return Comparison(metric, statistics.mean(d), statistics.stdev(d) / math.sqrt(len(d)),
                          len(d), "seeds", len(d))
    sa, sb = summary(a, metric), summary(b, metric)
    se = math.sqrt(sa.sd ** 2 / sa.n + sb.sd ** 2 / sb.n)
    return Comparison(metric, sa.mean - sb.mean, se, min(sa.n, sb.n), "unpaired", len(shared))

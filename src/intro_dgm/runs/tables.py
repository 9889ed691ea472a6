"""Tables of a results store: every group of rows (by the spec keys that vary, or those
given) summarised as mean and sd over its seeds, for stored and derived metrics
(:func:`summarise`, :func:`markdown_table`); runs' per-example values summarised by mean,
median and trimmed mean (:func:`example_table`); and a table of cells computed elsewhere
(:func:`markdown_rows`). Selecting rows and naming metrics is the results layer's
(:mod:`intro_dgm.runs.results`).
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

import numpy as np

from .examples import describe, example_values
from .results import metric_value, spec_value, varying_keys


def summarise(rows: Sequence[dict], group_by: Sequence[str] | None = None,
              metrics: Sequence[str] = ("test_nll_iw", "test_elbo", "active_units")
              ) -> list[dict]:
    """Mean and sample sd over the rows of each group (the seeds, usually).

    Failed rows are counted (``failed``) but not averaged. Returns one dict per group, in
    the order groups first appear: the ``group_by`` values, ``n``, ``failed``, and
    ``<metric>`` / ``<metric>_sd`` for each metric.
    """
    group_by = list(varying_keys(rows) if group_by is None else group_by)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(spec_value(r, k) for k in group_by), []).append(r)
    out = []
    for key, members in groups.items():
        ok = [r for r in members if r["status"] == "ok"]
        entry = dict(zip(group_by, key))
        entry.update(n=len(ok), failed=len(members) - len(ok))
        for m in metrics:
            values = [metric_value(r, m) for r in ok if _has(r, m)]
            if len(values) not in (0, len(ok)):
                raise ValueError(f"metric {m!r} is missing from some rows of group {entry}")
            entry[m] = statistics.mean(values) if values else math.nan
            entry[m + "_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        out.append(entry)
    return out


#: how a table shows a metric over a group's runs
SHOW = ("sd", "mean", "each")


def markdown_table(rows: Sequence[dict], group_by: Sequence[str] | None = None,
                   metrics: Sequence = ("test_nll_iw", "test_elbo", "active_units"),
                   digits: int = 2, *, headers: Mapping[str, str] | None = None,
                   notes: Mapping[str, Mapping] | None = None,
                   order: Sequence | None = None, sort: str | None = None) -> str:
    """:func:`summarise` as a markdown table, one line per group, and a column of the runs
    counted.

    ``metrics``: metric names (stored, derived or negated: :func:`metric_value`), or tuples
    ``(name, format)`` / ``(name, format, show)``: a format other than ``digits`` decimals
    (``".3f"``, ``",.0f"``, ``"d"``), and ``show`` one of :data:`SHOW`: ``"sd"`` (the
    default, ``mean ± sd``; a group of one run: its value alone), ``"mean"`` (the mean
    alone: a setting shared by the group's runs) or ``"each"`` (every run's value, in the
    rows' order). A metric no run of a group has shows as "–".
    ``headers``: the column header of a group key or a metric (default: the key's last part,
    the metric's name). ``notes``: columns of fixed text, ``{header: {group value: text}}``,
    keyed by the group's first ``group_by`` value (what a table says of a model that no run
    measures, e.g. whether it is invertible), placed after the metrics. ``order``: the
    groups' first values in the order to show them (the others follow); ``sort``: a metric
    whose group mean orders the lines instead.
    """
    columns = [(m, f".{digits}f", "sd") if isinstance(m, str) else
               (*m, "sd") if len(m) == 2 else tuple(m) for m in metrics]
    for name, _, show in columns:
        if show not in SHOW:
            raise ValueError(f"show must be one of {', '.join(SHOW)}; got {show!r} for {name!r}")
    group_by = list(varying_keys(rows) if group_by is None else group_by)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(spec_value(r, k) for k in group_by), []).append(r)
    keys = list(groups)
    if order is not None:
        rank = {value: i for i, value in enumerate(order)}
        keys.sort(key=lambda key: rank.get(key[0] if key else None, len(rank)))
    if sort is not None:
        keys.sort(key=lambda key: statistics.mean(
            [metric_value(r, sort) for r in groups[key] if r["status"] == "ok"] or [math.inf]))
    headers, notes = dict(headers or {}), dict(notes or {})
    head = ([headers.get(k, k.split(".")[-1]) for k in group_by] + ["runs"]
            + [headers.get(name, name) for name, _, _ in columns] + list(notes))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in keys:
        ok = [r for r in groups[key] if r["status"] == "ok"]
        failed = len(groups[key]) - len(ok)
        cells = [str(v) for v in key]
        cells.append(f"{len(ok)}" + (f" (+{failed} failed)" if failed else ""))
        for m, fmt, show in columns:
            values = [metric_value(r, m) for r in ok if _has(r, m)]
            if len(values) not in (0, len(ok)):
                raise ValueError(f"metric {m!r} is missing from some rows of group {key}")
            cells.append(_cell(values, fmt, show))
        cells += [str(texts.get(key[0], "")) if key else "" for texts in notes.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(values: list[float], fmt: str, show: str) -> str:
    if not values:
        return "–"
    if fmt.endswith("d"):  # a count: whole numbers
        values = [round(v) for v in values]
    if show == "each":
        return ", ".join(f"{v:{fmt}}" for v in values)
    mean = statistics.mean(values)
    mean = round(mean) if fmt.endswith("d") else mean
    if show == "mean" or len(values) == 1:
        return f"{mean:{fmt}}"
    return f"{mean:{fmt}} ± {statistics.stdev(values):{fmt.replace('d', '.1f')}}"


def _has(row: dict, metric: str) -> bool:
    try:
        metric_value(row, metric)
    except (ValueError, KeyError):
        return False
    return True


#: what :func:`example_table` can show of a metric's per-example values
STATISTICS = {"mean": "mean", "median": "median", "trimmed": "trimmed mean", "se": "se"}


def example_table(rows: Sequence[dict], metrics: Sequence[str], arrays_dir,
                  statistics_: Sequence[str] = ("mean", "median", "trimmed"), *,
                  by: str = "label", split: str = "test", trim: float = 0.01,
                  digits: int = 2, headers: Mapping[str, str] | None = None,
                  order: Sequence | None = None) -> str:
    """A markdown table, one line per value of ``by`` (the runs' labels): for each metric,
    the chosen statistics (:data:`STATISTICS`) of its per-example values on the ``split``
    images (:func:`~intro_dgm.runs.results.example_values`), each image's value averaged
    over the group's seeds first. The trimmed mean cuts ``trim`` at each end."""
    for name in statistics_:
        if name not in STATISTICS:
            raise ValueError(f"statistics must be among {', '.join(STATISTICS)}; got {name!r}")
    groups: dict = {}
    for r in rows:
        if r["status"] == "ok":
            groups.setdefault(spec_value(r, by), []).append(r)
    keys = list(groups)
    if order is not None:
        rank = {value: i for i, value in enumerate(order)}
        keys.sort(key=lambda key: rank.get(key, len(rank)))
    headers = dict(headers or {})
    head = [headers.get(by, by.split(".")[-1]), "runs"] + [
        f"{headers.get(m, m)}, {STATISTICS[st]}" for m in metrics for st in statistics_]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in keys:
        cells = [str(key), str(len(groups[key]))]
        for m in metrics:
            per_image = np.mean([example_values(r, m, arrays_dir, split)
                                 for r in groups[key]], axis=0)
            d = describe(per_image, trim)
            cells += [f"{getattr(d, st):,.{digits}f}" for st in statistics_]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_rows(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A markdown table of cells computed elsewhere (strings, or numbers shown as given):
    for what no store row holds, such as a paper's numbers beside ours or scores computed
    from per-example arrays. Every row must have one cell per header."""
    if not headers:
        raise ValueError("headers must name at least one column")
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    for i, row in enumerate(rows):
        if len(row) != len(headers):
            raise ValueError(f"row {i} has {len(row)} cells, the headers {len(headers)}")
        lines.append("| " + " | ".join(map(str, row)) + " |")
    return "\n".join(lines)

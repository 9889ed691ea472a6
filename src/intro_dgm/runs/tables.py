"""Tables of a results store: every group of rows (by the spec keys that vary, or those
given) summarised as mean and sd over its seeds, for stored and derived metrics
(:func:`summarise`, :func:`markdown_table`). Selecting rows and naming metrics is the
results layer's (:mod:`intro_dgm.runs.results`).
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

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


def markdown_table(rows: Sequence[dict], group_by: Sequence[str] | None = None,
                   metrics: Sequence = ("test_nll_iw", "test_elbo", "active_units"),
                   digits: int = 2, *, headers: Mapping[str, str] | None = None,
                   notes: Mapping[str, Mapping] | None = None) -> str:
    """:func:`summarise` as a markdown table, one line per group: ``mean ± sd`` per metric
    (a group of one run: its value alone), and a column of the runs counted.

    ``metrics``: metric names (stored or derived), or ``(name, format)`` pairs for a format
    other than ``digits`` decimals (``("test_nll_iw_bpd", ".3f")``, ``("num_params", ",.0f")``).
    ``headers``: the column header of a group key or a metric (default: the key's last part,
    the metric's name). ``notes``: columns of fixed text, ``{header: {group value: text}}``,
    keyed by the group's first ``group_by`` value (what a table says of a model that no run
    measures, e.g. whether it is invertible), placed after the metrics.
    """
    columns = [(m, f".{digits}f") if isinstance(m, str) else tuple(m) for m in metrics]
    summary = summarise(rows, group_by, [name for name, _ in columns])
    group_by = list(varying_keys(rows) if group_by is None else group_by)
    headers, notes = dict(headers or {}), dict(notes or {})
    head = ([headers.get(k, k.split(".")[-1]) for k in group_by] + ["runs"]
            + [headers.get(name, name) for name, _ in columns] + list(notes))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        cells = [str(s[k]) for k in group_by]
        cells.append(f"{s['n']}" + (f" (+{s['failed']} failed)" if s["failed"] else ""))
        cells += [f"{s[m]:{fmt}}" + (f" ± {s[m + '_sd']:{fmt}}" if s["n"] > 1 else "")
                  for m, fmt in columns]
        cells += [str(texts.get(s[group_by[0]], "")) if group_by else ""
                  for texts in notes.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _has(row: dict, metric: str) -> bool:
    try:
        metric_value(row, metric)
    except (ValueError, KeyError):
        return False
    return True

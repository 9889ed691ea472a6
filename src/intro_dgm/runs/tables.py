"""Reading a results store: select a spec field of a row (:func:`spec_value`), find what varies
between rows (:func:`varying_keys`), and summarise a metric over seeds as mean and sd
(:func:`summarise`, :func:`markdown_table`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Sequence

from ..models import model_entry
from .spec import _field_default, _plain


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
            values = [float(r["metrics"][m]) for r in ok if m in r["metrics"]]
            if len(values) not in (0, len(ok)):
                raise ValueError(f"metric {m!r} is missing from some rows of group {entry}")
            entry[m] = statistics.mean(values) if values else math.nan
            entry[m + "_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        out.append(entry)
    return out


def markdown_table(rows: Sequence[dict], group_by: Sequence[str] | None = None,
                   metrics: Sequence[str] = ("test_nll_iw", "test_elbo", "active_units"),
                   digits: int = 2) -> str:
    """:func:`summarise` as a markdown table: ``mean ± sd (n)`` per metric."""
    summary = summarise(rows, group_by, metrics)
    group_by = list(varying_keys(rows) if group_by is None else group_by)
    head = [k.split(".")[-1] for k in group_by] + ["runs"] + list(metrics)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        cells = [str(s[k]) for k in group_by]
        cells.append(f"{s['n']}" + (f" (+{s['failed']} failed)" if s["failed"] else ""))
        cells += [f"{s[m]:.{digits}f} ± {s[m + '_sd']:.{digits}f}" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

"""Whether a re-run reproduces a stored row: :func:`reproduction_report` compares the stored
and the new metrics within a stated tolerance (:data:`REPRODUCE_RTOL` on losses, counts
exact, times not compared), says which metrics moved and by how much, and names the
environment difference when there is one (``intro-dgm reproduce`` prints it).
"""
from __future__ import annotations

#: ``reproduce`` tolerates this relative difference on a loss (another processor, or
#: another thread count, sums in another order: measured drift across processors 3e-5);
#: counts (epochs, active units, parameters) must be equal.
REPRODUCE_RTOL = 1e-4


def is_timing(key: str) -> bool:
    """Metrics that measure time differ between two runs of the same spec."""
    return "seconds" in key


def compare_metric(key: str, a, b) -> tuple[str, bool]:
    """A metric's verdict (stored ``a``, new ``b``) and whether it counts as reproduced."""
    if is_timing(key):
        return "time (differs by nature)", True
    if a == b:
        return "identical", True
    if isinstance(a, bool) or isinstance(b, bool) or not all(
            isinstance(v, (int, float)) for v in (a, b)):
        return "DIFFERS", False
    if isinstance(a, int) and isinstance(b, int):
        return f"DIFFERS by {b - a:+d} (a count must be equal)", False
    rel = abs(b - a) / max(abs(a), abs(b))
    if rel <= REPRODUCE_RTOL:
        return f"within tolerance (relative {rel:.1e})", True
    return f"MOVED by {b - a:+.6g} (relative {rel:.1e})", False


def reproduction_report(stored: dict, row: dict) -> tuple[str, bool]:
    """A markdown report of a stored results row against a new row of the same spec, and
    whether the new one reproduces it (status equal, every metric within tolerance)."""
    old, new = stored.get("metrics") or {}, row.get("metrics") or {}
    lines = [f"row {stored['id']}: stored status {stored['status']}, new status {row['status']}",
             "", "| metric | stored | new | |", "|---|---|---|---|"]
    same = stored["status"] == row["status"]
    moved = []
    for key in sorted(set(old) | set(new)):
        verdict, ok = compare_metric(key, old.get(key), new.get(key))
        if not ok:
            same = False
            moved.append(key)
        lines.append(f"| {key} | {old.get(key)} | {new.get(key)} | {verdict} |")
    env_old, env_new = stored.get("environment") or {}, row.get("environment") or {}
    changed = [k for k in sorted(set(env_old) | set(env_new)) if env_old.get(k) != env_new.get(k)]
    lines.append("")
    lines.append("environment: " + ("unchanged" if not changed else "changed: " + ", ".join(
        f"{k} {env_old.get(k)} -> {env_new.get(k)}" for k in changed)))
    lines.append(f"reproduced: every metric within relative {REPRODUCE_RTOL:g} of the stored "
                 "one, counts equal (times aside)" if same else
                 f"NOT reproduced: {', '.join(moved) or 'the status'} moved beyond relative "
                 f"{REPRODUCE_RTOL:g} (or a count changed)")
    return "\n".join(lines), same

"""Prose tied to outputs: every decimal number in a page's text must be printed by that page.

    python tools/check_prose.py EXECUTED_DIR [--report FILE]
    python tools/check_prose.py notebooks --cache _build/.jupyter_cache   # after make book

EXECUTED_DIR holds the executed notebooks. With ``--cache``, the folder holds the source
notebooks and each one's outputs come from that jupyter-cache (where a full-mode `make book`
keeps them: a notebook the build takes from its cache is written to _build/jupyter_execute
without its outputs). For each notebook, every
decimal number in its markdown cells (outside math, code spans, links and citations) must
appear in that notebook's own outputs, as printed (the sign aside: prose writes −1.5 where
code prints -1.5). A number that no computation of the page produced carries a mark right
after it, an HTML comment that Jupyter, Colab and the book all hide, naming its kind:

* ``<!-- cite:KEY -->``: quoted from a paper, KEY a citation key of references.bib;
* ``<!-- eq -->``: an equation, section, table, figure or listing number of a source;
* ``<!-- const -->``: a constant or a setting chosen, not measured (a learning rate, a cap).

A mark of another kind, or a ``cite`` without a known key, is an error. Exit status 1 when any
number is neither printed nor marked; the summary line says how many were checked and
exempted by kind.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("cite", "eq", "const")
#: a decimal number, possibly signed (ASCII or Unicode minus), not part of a word or a longer
#: number (a version 2.13.0, an identifier x1.5)
NUMBER = re.compile(r"(?<![\w.])[-−]?\d[\d,]*\.\d+(?!\w|\.\d)")
MARK = re.compile(r"\s*<!--\s*([^>]*?)\s*-->")
#: what is not prose: display and inline math, code, MyST roles and directives' options,
#: links' targets, HTML comments other than marks are handled separately
SKIP = [re.compile(p, re.S) for p in (
    r"\$\$.*?\$\$", r"(?<!\\)\$[^$\n]+?(?<!\\)\$", r"```.*?```", r"`[^`\n]*`",
    r"\{(?:cite|cite:t|cite:p|eq|doc|ref|numref|math)\}`[^`]*`", r"\]\([^)]*\)",
    r"^:[\w-]+:.*$", r"https?://\S+")]


@dataclass
class PageReport:
    name: str
    checked: int = 0
    exempt: dict = field(default_factory=lambda: {k: 0 for k in KINDS})
    missing: list = field(default_factory=list)
    bad_marks: list = field(default_factory=list)


def _blank(text: str) -> str:
    """``text`` with the non-prose spans replaced by spaces (offsets kept)."""
    for pattern in SKIP:
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    return text


def _outputs(cells) -> str:
    parts = []
    for c in cells:
        for o in c.get("outputs", []):
            if "text" in o:
                parts.append("".join(o["text"]))
            for mime in ("text/plain", "text/markdown", "text/html", "text/latex"):
                if mime in o.get("data", {}):
                    parts.append("".join(o["data"][mime]))
    return "\n".join(parts).replace("−", "-")


def _citation_keys(bib: Path) -> set[str]:
    return set(re.findall(r"@\w+\{\s*([^,\s]+)\s*,", bib.read_text())) if bib.exists() else set()


def _executed_cells(path: Path, cache) -> list:
    """The cells of notebook ``path`` with their outputs: as stored, or from ``cache`` (a
    jupyter-cache) by the same lookup myst-nb makes; KeyError when it holds no run."""
    if cache is None:
        return json.loads(path.read_text())["cells"]
    import nbformat

    _, merged = cache.merge_match_into_notebook(nbformat.read(path, as_version=4))
    return merged.cells


def check_notebook(path: Path, keys: set[str], cache=None) -> PageReport:
    cells = _executed_cells(path, cache)
    printed = _outputs(cells)
    report = PageReport(path.stem)
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"])
        prose = _blank(text)
        for m in NUMBER.finditer(prose):
            number = m.group(0).lstrip("-−")
            mark = MARK.match(text, m.end())
            if mark:
                kind, _, key = mark.group(1).partition(":")
                if kind not in KINDS or (kind == "cite") != bool(key) or \
                        (kind == "cite" and key not in keys):
                    report.bad_marks.append(f"{number} <!-- {mark.group(1)} -->")
                else:
                    report.exempt[kind] += 1
                continue
            report.checked += 1
            if not re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", printed):
                context = text[max(0, m.start() - 40):m.end() + 20].replace("\n", " ")
                report.missing.append(f"{m.group(0)}  (…{context}…)")
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("executed", type=Path, help="folder of executed notebooks (or, with "
                        "--cache, of the source notebooks)")
    parser.add_argument("--cache", type=Path, help="a jupyter-cache folder holding the runs")
    parser.add_argument("--bib", type=Path, default=ROOT / "references.bib")
    parser.add_argument("--report", type=Path, help="write the per-page findings as JSON")
    args = parser.parse_args(argv)
    paths = sorted(args.executed.glob("*.ipynb"))
    if not paths:
        print(f"check_prose: no executed notebooks in {args.executed}", file=sys.stderr)
        return 2
    keys = _citation_keys(args.bib)
    cache = None
    if args.cache is not None:
        from jupyter_cache import get_cache

        if not args.cache.is_dir():
            print(f"check_prose: --cache must be a jupyter-cache folder, got {args.cache}",
                  file=sys.stderr)
            return 2
        cache = get_cache(str(args.cache))
    reports = []
    for p in paths:
        try:
            reports.append(check_notebook(p, keys, cache))
        except KeyError:
            print(f"check_prose: {p.name} has no run in {args.cache} (was it executed?)",
                  file=sys.stderr)
            return 2
    for r in reports:
        for item in r.missing:
            print(f"{r.name}: not printed by the page: {item}")
        for item in r.bad_marks:
            print(f"{r.name}: a mark without a known kind ({', '.join(KINDS)}; cite:KEY): {item}")
    checked = sum(r.checked for r in reports)
    missing = sum(len(r.missing) for r in reports)
    bad = sum(len(r.bad_marks) for r in reports)
    exempt = {k: sum(r.exempt[k] for r in reports) for k in KINDS}
    print(f"prose check: {checked} numbers checked in {len(reports)} pages, {missing} not "
          f"printed; {sum(exempt.values())} exempt by mark ("
          + ", ".join(f"{k} {v}" for k, v in exempt.items()) + f"); {bad} bad marks")
    if args.report:
        args.report.write_text(json.dumps([r.__dict__ for r in reports], indent=1) + "\n")
    return 1 if missing or bad else 0


if __name__ == "__main__":
    sys.exit(main())

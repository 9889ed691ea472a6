"""The rendered page shows the teaching code: no code line runs past the cell, plumbing is
collapsed.

**The width.** A code cell of the rendered book (Jupyter Book 1, sphinx-book-theme) is 786 px
wide when the window is 1,440 px wide or wider and holds 88 characters of its code font
(measured in headless Chromium: a line of 88 characters fits, one of 90 overflows; at a
1,280 px window the cell is 672 px, 74 characters). ``LIMIT`` is therefore 88, black's
default; the browser test in ``test_rendered_book.py`` checks the built page with the
widest code line at that window size.

**Plumbing.** A code cell whose job is to set the page up rather than to teach is collapsed
(the ``hide-input`` tag: the rendered page shows a "Show code cell source" toggle, the cell's
output stays visible): the cell that installs the package on Colab and imports, and every
cell that reads a results store or a stored measurement.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LIMIT = 88
#: what makes a code cell plumbing: the Colab install cell, or reading stored results
PLUMBING = re.compile(r"google\.colab|\b(open_store|load_measurement|ResultsStore)\(")
COLLAPSED = {"hide-input", "hide-cell"}


def code_cells(notebook: dict):
    return [c for c in notebook["cells"] if c["cell_type"] == "code"]


def wide_lines(notebook: dict, limit: int = LIMIT) -> list[tuple[str, int, int]]:
    """(cell id, line number, width) of every code line wider than ``limit``."""
    return [(cell.get("id"), number, len(line))
            for cell in code_cells(notebook)
            for number, line in enumerate("".join(cell["source"]).splitlines(), start=1)
            if len(line) > limit]


def uncollapsed_plumbing(notebook: dict) -> list[str]:
    """Ids of the plumbing cells that the rendered page would show in full."""
    return [cell.get("id") for cell in code_cells(notebook)
            if PLUMBING.search("".join(cell["source"]))
            and not COLLAPSED & set(cell["metadata"].get("tags", []))]


def _notebook(*cells):
    return {"cells": [{"cell_type": "code", "id": f"c{i}", "metadata": metadata,
                       "source": source} for i, (source, metadata) in enumerate(cells)]}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_code_line_is_wider_than_the_rendered_cell(path):
    wide = wide_lines(json.loads(path.read_text()))
    assert not wide, (f"{path.name}: code lines wider than {LIMIT} characters run past the "
                      f"rendered cell (cell id, line, width): {wide}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_plumbing_cells_are_collapsed(path):
    notebook = json.loads(path.read_text())
    assert any(PLUMBING.search("".join(c["source"])) for c in code_cells(notebook)), \
        f"{path.name} has no install cell: the rule below found nothing to check"
    missing = uncollapsed_plumbing(notebook)
    assert not missing, (f"{path.name}: plumbing cells (install, reading stored results) "
                         f"without the hide-input tag: {missing}")


def test_the_checks_catch_what_they_look_for():
    fits, too_wide = "x = 1  # " + "." * (LIMIT - 9), "y = 2  # " + "." * (LIMIT - 8)
    notebook = _notebook((fits + "\n" + too_wide, {}),
                         ('rows = open_store("priors").rows()', {}),
                         ('rows = open_store("priors").rows()', {"tags": ["hide-input"]}),
                         ("z = x + y", {}))
    assert wide_lines(notebook) == [("c0", 2, LIMIT + 1)]
    assert uncollapsed_plumbing(notebook) == ["c1"]

"""Every chapter page has the same skeleton: learning goals at the top, a summary, exercises
with a collapsible solution each, and markdown cells short enough to read as paragraphs."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_MARKDOWN_LINES = 45


def _markdown(path):
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


def _section(cells, heading):
    """The text from ``heading`` to the next level-2 heading (over consecutive cells)."""
    text = "\n".join(cells)
    match = re.search(rf"^{re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    return None if match is None else match.group(1)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_learning_goals_open_the_page(path):
    first = _markdown(path)[0]
    goals = re.search(r"\*\*You will learn\*\*\s*\n((?:\s*- .+\n?)+)", first)
    assert goals, f"{path.name}: the first cell needs '**You will learn**' and a list"
    assert len(re.findall(r"^\s*- ", goals.group(1), re.M)) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_summary_and_exercises_with_solutions(path):
    cells = _markdown(path)
    summary = _section(cells, "## Summary")
    assert summary and re.search(r"^- ", summary, re.M), f"{path.name}: needs '## Summary' with points"
    exercises = _section(cells, "## Exercises")
    assert exercises is not None, f"{path.name}: needs '## Exercises'"
    numbered = re.findall(r"^\d+\. ", exercises, re.M)
    solutions = re.findall(r"^:::\{admonition\} Solution\s*\n:class: dropdown", exercises, re.M)
    assert len(numbered) >= 2, f"{path.name}: at least two exercises"
    assert len(solutions) == len(numbered), \
        f"{path.name}: {len(numbered)} exercises but {len(solutions)} collapsible solutions"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_markdown_cells_are_short(path):
    for cell in _markdown(path):
        lines = cell.count("\n") + 1
        assert lines <= MAX_MARKDOWN_LINES, \
            f"{path.name}: a markdown cell of {lines} lines starting {cell[:60]!r}; split it"


def _stores_read(path):
    """The results stores a notebook's code cells open (``open_store("NAME")``), as file names
    (``NAME_results.jsonl``)."""
    cells = json.loads(path.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return {f"{name}_results.jsonl" for name in re.findall(r'open_store\("(\w+)"\)', code)}


def _intro_store_list():
    """book/intro.md's list of results stores: ``{store: set of page prefixes like '04g'}``,
    one bullet per store, starting with the store's file name in backticks."""
    text = (ROOT / "book" / "intro.md").read_text()
    listed = {}
    for bullet in re.findall(r"^- `(\w+_results\.jsonl)`(.*?)(?=^- |^\s*$)", text, re.M | re.S):
        store, rest = bullet
        listed[store] = set(re.findall(r"\b(\d\d[a-z]?)\b", rest))
    return listed


def test_intro_names_every_results_store_and_the_pages_that_read_it():
    """The intro says which numbers are not computed on the page itself: every store a
    notebook reads is listed with that notebook, and every page listed reads its store."""
    listed = _intro_store_list()
    assert listed, "book/intro.md lists no results stores"
    makefile = (ROOT / "Makefile").read_text()
    for path in NOTEBOOKS:
        prefix = path.name.split("_", 1)[0]
        for store in _stores_read(path):
            assert store in listed, f"{path.name} reads {store}, which book/intro.md does not list"
            assert prefix in listed[store], \
                f"{path.name} reads {store}; book/intro.md's bullet for it does not name {prefix}"
    on_disk = {p.name.split("_", 1)[0]: p for p in NOTEBOOKS}
    for store, prefixes in listed.items():
        assert store in makefile, f"no make target in the Makefile writes {store}"
        missing = sorted(prefixes - on_disk.keys())
        assert not missing, \
            f"book/intro.md says pages {missing} read {store}; no notebook has that prefix"
        for prefix in sorted(prefixes):
            assert store in _stores_read(on_disk[prefix]), \
                f"book/intro.md says {on_disk[prefix].name} reads {store}; it does not"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_where_the_source_differs_boxes_have_a_class(path):
    """Every "Where the source differs" box names its class on the next line (``:class: note``),
    so that all of them render alike."""
    text = "\n".join(_markdown(path))
    boxes = re.findall(r"^:::+\{admonition\} Where the source differs\s*\n(.*)", text, re.M)
    for following in boxes:
        assert re.match(r":class: \S", following), \
            f"{path.name}: a 'Where the source differs' box without a ':class:' line"

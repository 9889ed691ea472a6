"""The results pages read their numbers through the package's results layer.

A results page (it reads a results store and compares runs) may select rows, summarise them
and lay out tables only through :mod:`intro_dgm.runs.results`, :mod:`intro_dgm.runs.examples`
and :mod:`intro_dgm.runs.tables` (``select``, ``summary``, ``compare``, ``describe``,
``markdown_table``, ``markdown_rows``, ...);
whatever else it computes is a package function. So no code cell of such a page defines a
function (``def``, ``lambda``), takes a mean, a standard deviation, a median or a variance
itself, or builds a markdown table by hand. The patterns are :data:`FORBIDDEN`.

Allowed (:data:`ALLOWED`): a line that only draws (matplotlib: ``ax.``, ``plt.``, ``fig.``)
may compute what it draws (a reference line at a mean, say), since a figure is not a
number a reader copies.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the results pages: every page that reads a results store and compares runs
PAGES = ("04g_prior_comparison", "06e_posterior_comparison", "07b_hierarchical_comparison",
         "08c_diffusion_comparison", "09a_results", "09b_fashion_mnist",
         "09c_out_of_distribution")
FORBIDDEN = {
    "a function defined on the page": re.compile(r"^\s*def\s|\blambda\b"),
    "a mean, sd, median or variance": re.compile(
        r"\.(mean|std|var|median)\(|\b(np|numpy|torch|statistics)\.(mean|std|var|median|"
        r"average|nanmean|stdev|pstdev)\(|\bsum\([^)]*\)\s*/\s*len\("),
    "a table built by hand": re.compile(r"\|\s*-{3}|[\"']\|\s|\"\s\|\s*\"\.join"),
}
ALLOWED = re.compile(r"^\s*(ax|axes|plt|fig)\b[\w\[\], .]*\.")


def offences(source: str) -> list[tuple[int, str, str]]:
    """(line number, what, line) of every forbidden computation in a code cell's source."""
    found = []
    for number, line in enumerate(source.splitlines(), start=1):
        if ALLOWED.match(line):
            continue
        for what, pattern in FORBIDDEN.items():
            if pattern.search(line):
                found.append((number, what, line.strip()))
    return found


@pytest.mark.parametrize("page", PAGES)
def test_a_results_page_computes_through_the_results_layer(page):
    cells = json.loads((ROOT / "notebooks" / f"{page}.ipynb").read_text())["cells"]
    bad = [(cell.get("id"), *o) for cell in cells if cell["cell_type"] == "code"
           for o in offences("".join(cell["source"]))]
    assert not bad, f"{page}: computations outside the results layer (cell, line, what): {bad}"


@pytest.mark.parametrize("source, what", [
    ("def name(row):\n    return row['id']", "a function defined on the page"),
    ("key = sorted(rows, key=lambda r: r['seed'])", "a function defined on the page"),
    ("m = np.mean([r['metrics']['x'] for r in rows])", "a mean, sd, median or variance"),
    ("m = values.std()", "a mean, sd, median or variance"),
    ("m = sum(v) / len(v)", "a mean, sd, median or variance"),
    ("lines = ['| model | NLL |', '|---|---|']", "a table built by hand"),
    ("row = f'| {name} | {nll:.2f} |'", "a table built by hand"),
])
def test_the_patterns_catch_what_they_name(source, what):
    assert [o[1] for o in offences(source)] == [what]


def test_the_allowed_lines_and_the_layer_pass():
    source = ("ax.axhline(values.mean(), color='grey')\n"
              "vae = summary(select(rows, label='VAE'), 'test_nll_iw')\n"
              "print(f'{vae.mean:.2f}')\n"
              "Markdown(markdown_table(rows, ['label'], ['test_nll_iw']))")
    assert offences(source) == []

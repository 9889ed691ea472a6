"""The rendered book, opened as a reader would: headless Chromium on each page.

The pages are those of ``_toc.yml`` (its root and every ``file:`` entry), so a new chapter is
checked as soon as it is in the table of contents. ``MINIMUMS`` must name exactly those pages
(two tests check this, with or without a built book): a new page needs its minimums.

The browser checks run when ``INTRO_DGM_BOOK_HTML`` names a built book (``make test`` builds
one in fast mode and sets it): MathJax rendered every formula (no raw ``\\(`` left, no MathJax
error), chapter pages show their figures (image files exist and are non-empty), and every
internal link points at an existing file and anchor.
"""
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = os.environ.get("INTRO_DGM_BOOK_HTML")
needs_book = pytest.mark.skipif(not BOOK, reason="set INTRO_DGM_BOOK_HTML to a built book (make test does)")


def toc_files(toc_path=ROOT / "_toc.yml"):
    """The root and every ``file:`` entry of a table of contents, in reading order."""
    toc = yaml.safe_load(Path(toc_path).read_text())
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return files


def html_page(file):
    """The built page of a toc entry: ``notebooks/02_vae`` (or ``.ipynb``/``.md``) -> ``.html``."""
    return re.sub(r"\.(md|ipynb|rst)$", "", file) + ".html"


def toc_pages(toc_path=ROOT / "_toc.yml"):
    return [html_page(f) for f in toc_files(toc_path)]


#: Every page of the table of contents.
PAGES = toc_pages()

MINIMUMS = {  # page -> (minimum number of figures made by its code, minimum rendered formulas)
    "book/intro.html": (0, 0),
    "book/how_to_run.html": (0, 0),  # prose, commands and the execution table; no formulas
    "book/notation.html": (0, 20),
    "book/api.html": (0, 40),  # the docstrings' :math: roles (75 when it was added)
    "book/references.html": (0, 0),
    "notebooks/01_latent_variable_models.html": (6, 20),
    "notebooks/02_vae.html": (7, 20),
    "notebooks/03_rewriting_elbo.html": (2, 20),
    "notebooks/04a_standard_prior.html": (2, 6),
    "notebooks/04b_mog_prior.html": (3, 6),
    "notebooks/04c_vampprior.html": (4, 15),
    "notebooks/04d_gtm_prior.html": (2, 9),
    "notebooks/04e_gtm_vampprior.html": (3, 7),
    "notebooks/04f_flow_prior.html": (2, 10),
    "notebooks/04g_prior_comparison.html": (1, 18),
    "notebooks/04h_latent_explorer.html": (3, 1),
    "notebooks/05_two_gaussians.html": (1, 14),
    "notebooks/06a_posterior_gap.html": (2, 20),
    "notebooks/06b_householder_flows.html": (2, 20),
    "notebooks/06c_sylvester_flows.html": (4, 20),
    "notebooks/06d_hyperspherical_vae.html": (3, 20),
    "notebooks/06e_posterior_comparison.html": (1, 5),
    "notebooks/07a_hierarchical_vaes.html": (3, 20),
    "notebooks/07b_hierarchical_comparison.html": (2, 3),
    "notebooks/08a_diffusion_models.html": (4, 20),
    "notebooks/08b_ddpm.html": (3, 20),
    "notebooks/08c_diffusion_comparison.html": (5, 15),
    "notebooks/08d_continuous_time.html": (2, 20),
    "notebooks/09a_results.html": (4, 4),
    "notebooks/09b_fashion_mnist.html": (4, 4),
    "notebooks/09c_out_of_distribution.html": (5, 4),
}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync",
                  "--virtual-time-budget=10000", "--dump-dom"]


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.links, self.images, self.text = set(), [], [], []
        self.math, self.math_errors, self._skip = 0, 0, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])
        if tag == "mjx-container":
            self.math += 1
        if tag == "mjx-merror" or "merror" in a.get("class", "").split():
            self.math_errors += 1
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def _minimums(rel):
    if rel not in MINIMUMS:
        pytest.fail(f"{rel} is in _toc.yml but has no entry in MINIMUMS")
    return MINIMUMS[rel]


def test_every_toc_page_has_minimums():
    missing = [rel for rel in PAGES if rel not in MINIMUMS]
    assert not missing, f"pages in _toc.yml without an entry in MINIMUMS: {', '.join(missing)}"


def test_minimums_name_only_toc_pages():
    extra = [rel for rel in MINIMUMS if rel not in PAGES]
    assert not extra, f"MINIMUMS names pages that are not in _toc.yml: {', '.join(extra)}"


def _chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if shutil.which("apt-get"):  # make test installs it where it can: its absence is a fault
            pytest.fail("chromium is not installed (make test installs Debian's chromium)")
        pytest.skip("no chromium and no apt-get to install it: the browser check is skipped "
                    "(install Chromium to run it)")
    return exe


@pytest.fixture(scope="module")
def rendered():
    root = Path(BOOK).resolve()
    pages = {}
    with tempfile.TemporaryDirectory() as profile:
        for rel in PAGES:
            path = root / rel
            assert path.is_file(), f"page {rel} was not built"
            dom = subprocess.run([_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", path.as_uri()],
                                 capture_output=True, text=True, timeout=120).stdout
            assert "</html>" in dom, f"Chromium did not render {rel}"
            parser = _Page()
            parser.feed(dom)
            pages[rel] = parser
    return root, pages


@needs_book
@pytest.mark.parametrize("rel", PAGES)
def test_math_is_rendered(rendered, rel):
    root, pages = rendered
    page = pages[rel]
    text = "".join(page.text)
    assert page.math_errors == 0, f"MathJax reported {page.math_errors} errors on {rel}"
    assert "\\(" not in text and "\\[" not in text, f"raw TeX left unrendered on {rel}"
    assert "$$" not in text
    expected = _minimums(rel)[1]
    assert page.math >= expected, f"expected >= {expected} rendered formulas on {rel}, found {page.math}"


@needs_book
@pytest.mark.parametrize("rel", PAGES)
def test_figures_are_shown(rendered, rel):
    root, pages = rendered
    figures = [s for s in pages[rel].images if "_images/" in s]
    expected = _minimums(rel)[0]
    assert len(figures) >= expected, f"{rel}: {len(figures)} figures, expected >= {expected}"
    for src in figures:
        f = (root / rel).parent / unquote(src)
        assert f.is_file() and f.stat().st_size > 1000, f"{rel}: figure {src} missing or empty"


@needs_book
@pytest.mark.parametrize("rel", PAGES)
def test_internal_links_resolve(rendered, rel):
    root, pages = rendered
    checked = 0
    for href in pages[rel].links:
        url = urlparse(href)
        if url.scheme in ("http", "https", "mailto", "javascript") or href.startswith("//"):
            continue
        target = (root / rel) if not url.path else ((root / rel).parent / unquote(url.path)).resolve()
        assert target.exists(), f"{rel}: broken link {href}"
        if url.fragment and target.suffix == ".html":
            ids = pages[str(target.relative_to(root))].ids if str(target.relative_to(root)) in pages \
                else set(re.findall(r'id="([^"]+)"', target.read_text()))
            assert url.fragment in ids, f"{rel}: link {href} points at a missing anchor"
        checked += 1
    assert checked > 5


_OVERFLOW_PROBE = """<script>window.addEventListener('load', () => setTimeout(() => {
  const wide = [...document.querySelectorAll('div.cell_input pre')]
    .filter(pre => pre.scrollWidth > pre.clientWidth).length;
  const cells = document.querySelectorAll('div.cell_input pre').length;
  const out = document.createElement('div');
  out.id = 'overflow-probe';
  out.textContent = cells + ' ' + wide;
  document.body.appendChild(out);
}, 300));</script>"""


def _widest_code_page():
    """The toc notebook whose widest code line is the widest of the book, and that width."""
    import json

    widths = {}
    for file in toc_files():
        path = ROOT / (file if file.endswith(".ipynb") else file + ".ipynb")
        if path.suffix == ".ipynb" and path.is_file():
            cells = json.loads(path.read_text())["cells"]
            widths[html_page(file)] = max(len(line) for c in cells if c["cell_type"] == "code"
                                          for line in "".join(c["source"]).splitlines())
    page = max(widths, key=widths.get)
    return page, widths[page]


@needs_book
def test_the_widest_code_line_fits_its_rendered_cell():
    """At a window 1,440 px wide (the cell at its full width: tests/test_notebook_style.py),
    no code cell of the page with the book's widest code line scrolls sideways."""
    rel, width = _widest_code_page()
    page = Path(BOOK).resolve() / rel
    probe = page.with_name(page.stem + "_overflow_probe.html")
    probe.write_text(page.read_text().replace("</body>", _OVERFLOW_PROBE + "</body>"))
    try:
        with tempfile.TemporaryDirectory() as profile:
            dom = subprocess.run([_chromium(), *CHROMIUM_FLAGS, "--window-size=1440,900",
                                  f"--user-data-dir={profile}", probe.as_uri()],
                                 capture_output=True, text=True, timeout=120).stdout
    finally:
        probe.unlink()
    found = re.search(r'id="overflow-probe">(\d+) (\d+)<', dom)
    assert found, f"the overflow probe did not run on {rel}"
    cells, wide = map(int, found.groups())
    assert cells > 0
    assert wide == 0, f"{rel}: {wide} of {cells} code cells overflow (widest line {width} characters)"


@needs_book
def test_plumbing_cells_render_collapsed():
    """Cells tagged hide-input render their code inside a closed toggle (tests/test_notebook_style.py
    checks which cells carry the tag)."""
    for rel in PAGES:
        if not rel.startswith("notebooks/"):
            continue
        html = (Path(BOOK).resolve() / rel).read_text()
        toggles = re.findall(r'<details class="[^"]*\bhide above-input"[^>]*>', html)
        assert toggles, f"{rel}: no collapsed code cell (the install cell at least is plumbing)"
        assert not [t for t in toggles if re.search(r"\sopen\b", t)], \
            f"{rel}: a collapsed cell renders open"

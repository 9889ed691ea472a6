"""The rendered book, opened as a reader would: headless Chromium on each page.

Runs when ``INTRO_DGM_BOOK_HTML`` names a built book (``make test`` builds one in fast
mode and sets it). Checks: MathJax rendered every formula (no raw ``\\(`` left, no MathJax
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

BOOK = os.environ.get("INTRO_DGM_BOOK_HTML")
pytestmark = pytest.mark.skipif(not BOOK, reason="set INTRO_DGM_BOOK_HTML to a built book (make test does)")

PAGES = {  # page -> (minimum number of figures made by its code, minimum rendered formulas)
    "book/intro.html": (0, 0),
    "book/notation.html": (0, 20),
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


def _chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed (make test installs Debian's chromium)")
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


@pytest.mark.parametrize("rel", PAGES)
def test_math_is_rendered(rendered, rel):
    root, pages = rendered
    page = pages[rel]
    text = "".join(page.text)
    assert page.math_errors == 0, f"MathJax reported {page.math_errors} errors on {rel}"
    assert "\\(" not in text and "\\[" not in text, f"raw TeX left unrendered on {rel}"
    assert "$$" not in text
    expected = PAGES[rel][1]
    assert page.math >= expected, f"expected >= {expected} rendered formulas on {rel}, found {page.math}"


@pytest.mark.parametrize("rel", PAGES)
def test_figures_are_shown(rendered, rel):
    root, pages = rendered
    figures = [s for s in pages[rel].images if "_images/" in s]
    expected = PAGES[rel][0]
    assert len(figures) >= expected, f"{rel}: {len(figures)} figures, expected >= {expected}"
    for src in figures:
        f = (root / rel).parent / unquote(src)
        assert f.is_file() and f.stat().st_size > 1000, f"{rel}: figure {src} missing or empty"


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

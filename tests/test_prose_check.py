"""tools/check_prose.py: a number in a page's text must be printed by the page, or carry a
mark naming its kind. Shown failing on a planted wrong number and passing on a printed one."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import check_prose  # noqa: E402

KEYS = check_prose._citation_keys(ROOT / "references.bib")


def _page(tmp_path, text, printed):
    nb = {"cells": [{"cell_type": "markdown", "source": [text], "metadata": {}},
                    {"cell_type": "code", "source": ["print(x)"], "metadata": {},
                     "outputs": [{"output_type": "stream", "name": "stdout", "text": [printed]}]}]}
    path = tmp_path / "page.ipynb"
    path.write_text(json.dumps(nb))
    return check_prose.check_notebook(path, KEYS)


def test_a_printed_number_passes_and_a_planted_one_fails(tmp_path):
    ok = _page(tmp_path, "The test NLL is 93.06 nats, the ELBO −96.91.", "NLL 93.06, ELBO -96.91\n")
    assert ok.checked == 2 and not ok.missing
    planted = _page(tmp_path, "The test NLL is 93.07 nats.", "NLL 93.06\n")
    assert planted.checked == 1 and planted.missing and planted.missing[0].startswith("93.07")
    # a number must be printed as a whole, not found inside a longer one
    assert _page(tmp_path, "about 3.06 nats", "NLL 93.06\n").missing


def test_math_code_links_and_citations_are_not_prose(tmp_path):
    text = ("Here $\\sigma = 0.35$ and $$x = 1.25$$, `lr=0.001`, [the paper](https://x.org/1.2) "
            "and {cite:t}`tomczak2022` say nothing a page must print.")
    r = _page(tmp_path, text, "")
    assert r.checked == 0 and not r.missing


def test_marks_name_their_kind(tmp_path):
    key = sorted(KEYS)[0]
    r = _page(tmp_path, f"the paper's 85.57<!-- cite:{key} -->, Table 4.1<!-- eq -->, a cap "
                        "of 0.999 <!-- const -->", "")
    assert r.checked == 0 and r.exempt == {"cite": 1, "eq": 1, "const": 1} and not r.bad_marks
    bad = _page(tmp_path, "85.57<!-- paper -->, 1.5<!-- cite:nosuchkey -->, 2.5<!-- cite -->", "")
    assert len(bad.bad_marks) == 3


def test_the_command_line_exits_1_on_a_missing_number(tmp_path, capsys):
    _page(tmp_path, "The test NLL is 93.07 nats.", "NLL 93.06\n")
    assert check_prose.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "not printed by the page: 93.07" in out
    assert "prose check: 1 numbers checked in 1 pages, 1 not printed" in out
    _page(tmp_path, "The test NLL is 93.06 nats.", "NLL 93.06\n")
    assert check_prose.main([str(tmp_path)]) == 0


def test_outputs_can_come_from_the_build_cache(tmp_path, capsys):
    # what `make book` checks: the source notebook, its outputs from jupyter-book's cache
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    (tmp_path / "notebooks").mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("The NLL is 93.06 nats."),
                nbformat.v4.new_code_cell("print(93.06)")]
    path = tmp_path / "notebooks" / "page.ipynb"
    nbformat.write(nb, path)  # the source: no outputs
    cache_dir = tmp_path / "cache"
    argv = [str(tmp_path / "notebooks"), "--cache", str(cache_dir)]
    assert check_prose.main(argv[:1]) == 1  # without the cache: nothing printed
    capsys.readouterr()
    executed = nbformat.v4.new_notebook(metadata=nb.metadata, cells=[
        nb.cells[0], nbformat.v4.new_code_cell(
            "print(93.06)", outputs=[nbformat.v4.new_output("stream", text="93.06\n")])])
    get_cache(str(cache_dir)).cache_notebook_bundle(CacheBundleIn(executed, str(path)),
                                                    check_validity=False)
    assert check_prose.main(argv) == 0
    assert "1 numbers checked in 1 pages, 0 not printed" in capsys.readouterr().out
    # a page the cache holds no run of is an error, not a pass
    nb.cells[1].source = "print(93.07)"
    nbformat.write(nb, path)
    assert check_prose.main(argv) == 2
    assert "has no run in" in capsys.readouterr().err

"""tools/execute_book.py fills jupyter-book's cache so that the build only renders: a
notebook it runs is found by the lookup myst-nb does (the same hash of its code), with its
outputs; a cached notebook is not run again; a failing one is not cached."""
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
# importable by name: the worker processes unpickle the function they run from it
sys.path.insert(0, str(ROOT / "tools"))
import execute_book  # noqa: E402


def _notebook(path: Path, source: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nbformat.write(nb, path)


def test_executed_notebooks_are_found_by_myst_nbs_lookup_and_failures_are_not(tmp_path, capsys):
    from jupyter_cache import get_cache

    (tmp_path / "notebooks").mkdir()
    _notebook(tmp_path / "notebooks" / "a.ipynb", "import os\nprint(6 * 7, os.getcwd())")
    _notebook(tmp_path / "notebooks" / "b.ipynb", "raise ValueError('planted')")
    cache_dir = tmp_path / "cache"
    argv = ["--root", str(tmp_path), "--cache", str(cache_dir), "--jobs", "2"]
    assert execute_book.main(argv) == 1  # b fails
    out = capsys.readouterr().out
    assert "b.ipynb: FAILED" in out and "ValueError" in out
    cache = get_cache(str(cache_dir))
    record = cache.match_cache_notebook(nbformat.read(tmp_path / "notebooks" / "a.ipynb", 4))
    _, merged = cache.merge_match_into_notebook(
        nbformat.read(tmp_path / "notebooks" / "a.ipynb", 4))
    text = merged.cells[0].outputs[0]["text"]
    # run in the notebook's own folder, as myst-nb runs it
    assert text.startswith("42 ") and text.strip().endswith(str(tmp_path / "notebooks"))
    assert record.data["execution_seconds"] > 0
    with pytest.raises(KeyError):
        cache.match_cache_notebook(nbformat.read(tmp_path / "notebooks" / "b.ipynb", 4))
    # a second run finds a in the cache and runs only b again
    execute_book.main(argv)
    assert "1 of 2 notebooks cached; running 1" in capsys.readouterr().out


def test_bad_arguments_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        execute_book.main(["--root", str(tmp_path)])
    assert "--root must be a folder with a notebooks/ folder" in capsys.readouterr().err

"""Every page runs alone, as in Colab: against the installed wheel, in an empty folder.

``make test`` runs ``tools/run_notebooks_alone.py`` once (it builds the wheel, installs it in
a fresh virtual environment and executes each notebook alone in fast mode) and points
``INTRO_DGM_NOTEBOOK_REPORT`` at its report; the fast book is built from the notebooks that
run executed. Without the variable (a plain ``pytest``) these tests are skipped.
"""
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REPORT = os.environ.get("INTRO_DGM_NOTEBOOK_REPORT")
needs_report = pytest.mark.skipif(
    not REPORT, reason="set INTRO_DGM_NOTEBOOK_REPORT to a report of tools/run_notebooks_alone.py "
                       "(make test does)")


@pytest.fixture(scope="module")
def report():
    return json.loads(Path(REPORT).read_text())


@needs_report
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_page_ran_alone_against_the_wheel(path, report):
    result = report["notebooks"].get(path.name)
    assert result is not None, f"{path.name} was not run (tools/run_notebooks_alone.py --only?)"
    assert result["error"] is None, f"{path.name} failed when run alone: {result['error']}"
    venv = Path(report["python"]).parents[1]
    package = Path(result["package"])
    assert venv in package.parents, f"{path.name} imported intro_dgm from {package}, not the wheel"
    assert ROOT / "src" not in package.parents
    assert path.name in result["files"]  # it ran in its own folder, beside nothing of ours
    assert not {"benchmarks", "src", "notebooks", "book"} & set(result["files"])


@needs_report
def test_the_fast_book_is_built_from_the_executed_notebooks(report):
    executed = Path(report["python"]).parents[2] / "book" / "notebooks"
    for path in NOTEBOOKS:
        cells = json.loads((executed / path.name).read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert all(c.get("execution_count") for c in code), f"{path.name}: a cell did not run"
        source = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        assert ["".join(c["source"]) for c in code] == ["".join(c["source"]) for c in source], \
            f"{path.name}: the executed copy is not the notebook (or kept the probe cell)"

"""The wheel a reader installs (pip, Colab) carries what the pages read: every results store,
the arrays beside them and the measurement files; a missing store is an error, not an empty one."""
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from intro_dgm.runs import store as stores

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _code(path):
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(ROOT)], check=True)
    (wheel,) = out.glob("intro_dgm-*.whl")
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def test_the_wheel_holds_every_store_and_array_the_pages_read(wheel_files):
    named = set()
    for path in NOTEBOOKS:
        code = _code(path)
        named |= {f"{n}_results.jsonl" for n in re.findall(r'open_store\("(\w+)"\)', code)}
        named |= {f"{n}.json" for n in re.findall(r'load_measurement\("(\w+)"\)', code)}
    assert named, "no page reads a store by name"
    for name in sorted(named):
        assert (stores.STORES_DIR / name).is_file(), f"a page reads {name}, which does not exist"
    # every file of the stores, but the large weights no page loads (pyproject.toml)
    shipped = {p.relative_to(stores.STORES_DIR.parents[1]).as_posix()
               for p in stores.STORES_DIR.rglob("*")
               if p.is_file() and not p.name.endswith("_state.npz")}
    assert {f"intro_dgm/stores/{n}" for n in named} <= shipped
    missing = sorted(shipped - wheel_files)
    assert not missing, f"the wheel lacks {missing[:5]} ({len(missing)} files)"
    assert any(f.endswith(".npz") for f in shipped)  # the arrays beside the stores too
    assert not [f for f in wheel_files if f.endswith("_state.npz")]


def test_no_page_reads_a_file_of_the_repository_by_a_relative_path():
    for path in NOTEBOOKS:
        code = _code(path)
        assert not re.search(r"""["'](\.\./|\.\.\\)|Path\(["']\.\.["']\)""", code), \
            f"{path.name} reads a file by a path relative to the repository (Colab has none)"


def test_a_missing_store_is_an_error_naming_the_file_and_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(stores, "STORES_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no results store 'priors': expected "
                       rf"{re.escape(str(tmp_path))}/priors_results\.jsonl \('make compare-priors'"):
        stores.open_store("priors")
    with pytest.raises(FileNotFoundError, match="'make benchmark'"):
        stores.load_measurement("diffusion_sampling")
    (tmp_path / "diffusion_sampling.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        stores.load_measurement("diffusion_sampling")
    (tmp_path / "priors_results.jsonl").write_text('{"id": "a", "spec": {}, "status": "ok"}\n')
    assert [r["id"] for r in stores.open_store("priors").rows()] == ["a"]

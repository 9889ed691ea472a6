"""Run every notebook as a reader in Colab does: the package installed from its wheel, each
notebook alone in an empty folder. `make test` runs this once; the fast book is then built
from the notebooks it executed (no notebook runs twice), and tests/test_notebooks_alone.py
reads its report.

    python tools/run_notebooks_alone.py OUT_DIR [--jobs 2] [--only 02_vae ...]

Steps:
1. build the wheel of this checkout (``pip wheel --no-build-isolation``: offline, seconds);
2. make a fresh virtual environment ``OUT_DIR/venv`` and install into it the local CPU torch
   (``torch==2.13.0`` where that wheel is on disk, else any ``torch>=2.1``), the wheel with
   its dependencies, and what a notebook server has (ipykernel, nbclient, ipywidgets 7.7.1 as
   in Colab); a venv left by an earlier run is reused, with the new wheel reinstalled;
3. copy each notebook alone into an empty folder ``OUT_DIR/alone/NAME/`` and execute it there
   with the venv's kernel in fast mode (``INTRO_DGM_FAST=1``), two at a time on 2 cores (each
   notebook runs PyTorch on one thread); a last cell, removed again before saving, records
   where ``intro_dgm`` was imported from and what the folder held afterwards;
4. write the executed notebooks to ``OUT_DIR/book/notebooks/`` beside a copy of the book's
   sources whose ``_config.yml`` executes nothing, and the report ``OUT_DIR/report.json``.

The script fails (exit 1) only when it could not do these steps; a notebook that raises is
recorded in the report, and the test names it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Colab's ipywidgets (the widgets must work on 7.7 and 8)
COLAB_IPYWIDGETS = "ipywidgets==7.7.1"
PROBE = ("import intro_dgm as _m, os as _os, json as _j\n"
         "print('INTRO_DGM_PROBE' + _j.dumps({'package': _m.__file__, "
         "'files': sorted(_os.listdir('.'))}))")


def sh(*args):
    """Run a command; its output is shown only if it fails (pip's notes would drown the log)."""
    print("+", " ".join(str(a) for a in args), flush=True)
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if done.returncode:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
        raise subprocess.CalledProcessError(done.returncode, args)


def build_wheel(out: Path) -> Path:
    wheels = out / "wheel"
    shutil.rmtree(wheels, ignore_errors=True)
    sh(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
       "-w", wheels, ROOT)
    shutil.rmtree(ROOT / "build", ignore_errors=True)  # setuptools' staging folder
    (wheel,) = wheels.glob("intro_dgm-*.whl")
    return wheel


def make_venv(out: Path, wheel: Path) -> Path:
    venv = out / "venv"
    python = venv / "bin" / "python"
    if not python.exists():
        sh(sys.executable, "-m", "venv", venv)
        sh(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        try:  # the local CPU wheel; a bare "torch" could pull a CUDA build of several GB
            sh(python, "-m", "pip", "install", "--quiet", "torch==2.13.0")
        except subprocess.CalledProcessError:
            sh(python, "-m", "pip", "install", "--quiet", "torch>=2.1")
        sh(python, "-m", "pip", "install", "--quiet", wheel, "ipykernel", "nbclient",
           COLAB_IPYWIDGETS)
    else:  # the same environment, the new wheel
        sh(python, "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", wheel)
    return python


EXECUTE = r'''
import json, sys
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
source, target, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3])
nb = nbformat.read(source, as_version=4)
nb.cells.append(nbformat.v4.new_code_cell(sys.argv[4]))
client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                        resources={"metadata": {"path": "."}})
error = None
try:
    client.execute()
except CellExecutionError as exc:
    error = str(exc).strip().splitlines()[-1][:500] if str(exc).strip() else repr(exc)
probe = {}
for output in nb.cells[-1].get("outputs", []):
    text = output.get("text", "")
    if "INTRO_DGM_PROBE" in text:
        probe = json.loads(text.split("INTRO_DGM_PROBE", 1)[1].strip().splitlines()[0])
nb.cells.pop()  # the probe is not part of the page
nbformat.write(nb, target)
print("RESULT" + json.dumps({"error": error, **probe}))
'''


def execute(python: Path, notebook: Path, out: Path, timeout: int) -> dict:
    folder = out / "alone" / notebook.stem
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy(notebook, folder / notebook.name)  # the notebook and nothing else
    target = out / "book" / "notebooks" / notebook.name
    env = {**os.environ, "INTRO_DGM_FAST": "1", "PYTHONPATH": "",
           "IPYTHONDIR": str(ROOT / ".ipython")}  # a profile that silences a kernel warning
    env.pop("VIRTUAL_ENV", None)
    start = time.perf_counter()
    done = subprocess.run([python, "-c", EXECUTE, notebook.name, target, str(timeout), PROBE],
                          cwd=folder, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    result = {"error": f"the executor failed: {done.stderr.strip()[-500:]}"}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT"):
            result = json.loads(line[len("RESULT"):])
    result.update(seconds=round(seconds, 1), folder=str(folder))
    status = "ok" if result["error"] is None else f"FAILED: {result['error']}"
    print(f"{notebook.name}: {seconds:.0f} s, {status}", flush=True)
    return result


def stage_book(out: Path) -> None:
    """The book's sources beside the executed notebooks, with execution switched off."""
    book = out / "book"
    for name in ("_toc.yml", "references.bib"):
        shutil.copy(ROOT / name, book / name)
    shutil.rmtree(book / "book", ignore_errors=True)
    shutil.copytree(ROOT / "book", book / "book")
    config = (ROOT / "_config.yml").read_text()
    config, n = re.subn(r"^(  execute_notebooks:).*$", r"\1 'off'", config, flags=re.M)
    if n != 1:
        raise SystemExit("_config.yml: no 'execute_notebooks:' line to switch off")
    (book / "_config.yml").write_text(config)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--only", nargs="*", help="notebook names (default: all)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    (out / "book" / "notebooks").mkdir(parents=True, exist_ok=True)
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if args.only:
        notebooks = [p for p in notebooks if p.stem in args.only or p.name in args.only]
    start = time.perf_counter()
    python = make_venv(out, build_wheel(out))
    setup = time.perf_counter() - start
    # the longest first, so that the two workers finish together
    last = {}
    if (out / "report.json").exists():
        last = json.loads((out / "report.json").read_text()).get("notebooks", {})
    notebooks.sort(key=lambda p: -last.get(p.name, {}).get("seconds", 0))
    with ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip([p.name for p in notebooks],
                           pool.map(lambda p: execute(python, p, out, args.timeout), notebooks)))
    stage_book(out)
    report = {"python": str(python), "setup_seconds": round(setup, 1),
              "seconds": round(time.perf_counter() - start, 1), "notebooks": results}
    (out / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    failed = [name for name, r in results.items() if r["error"] is not None]
    print(f"{len(results) - len(failed)} of {len(results)} notebooks ran alone against the "
          f"wheel in {report['seconds']:.0f} s (setup {setup:.0f} s); failed: "
          f"{', '.join(failed) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run each notebook alone, in an empty folder, with the Python that runs this script.

The weekly workflow .github/workflows/colab.yml runs it inside Colab's runtime image after
``pip install .``, so the notebooks meet Colab's Python, PyTorch and ipywidgets::

    python .github/colab/run_notebooks.py NOTEBOOK_DIR OUT_DIR [--timeout S] [--only NAME ...]

Each notebook is copied alone into ``OUT_DIR/NAME/`` and executed there (nbclient, the
``python3`` kernel; set ``INTRO_DGM_FAST=1`` for fast mode); the executed copy stays there.
``OUT_DIR/report.json`` records the versions (Python, torch, ipywidgets, intro_dgm: what the
bug-report template asks for) and, per notebook, its seconds and error. The exit status is 1
when a notebook raised, and the failures are named; ``tools/run_notebooks_alone.py`` (``make
test``) instead builds its own fresh environment from the wheel, which is not what Colab has.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path


def versions() -> dict:
    """The versions a bug report asks for, from the installed distributions."""
    found = {"python": platform.python_version()}
    for name in ("torch", "ipywidgets", "intro_dgm"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def run_alone(notebook: Path, out: Path, timeout: int) -> dict:
    """Execute ``notebook`` alone in ``out/NAME/``; returns its seconds and error (or None)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    folder = out / notebook.stem
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    target = folder / notebook.name
    shutil.copy(notebook, target)  # the notebook and nothing else
    nb = nbformat.read(target, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(folder)}})
    start, error = time.perf_counter(), None
    try:
        client.execute()
    except CellExecutionError as exc:
        lines = str(exc).strip().splitlines()
        error = lines[-1][:500] if lines else repr(exc)
    except Exception as exc:  # a dead kernel, a timeout: recorded, the next notebook runs
        error = f"{type(exc).__name__}: {exc}"[:500]
    seconds = round(time.perf_counter() - start, 1)
    nbformat.write(nb, target)
    print(f"{notebook.name}: {seconds:.0f} s, {'ok' if error is None else 'FAILED: ' + error}",
          flush=True)
    return {"seconds": seconds, "error": error}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", type=Path, help="folder of the notebooks")
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--only", nargs="*", help="notebook names (default: all)")
    args = parser.parse_args(argv)
    notebooks = sorted(args.notebooks.glob("*.ipynb"))
    if args.only:
        notebooks = [p for p in notebooks if p.stem in args.only or p.name in args.only]
    if not notebooks:
        print(f"no notebooks in {args.notebooks}", file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    report = {"versions": versions(), "notebooks": {}}
    print("versions:", json.dumps(report["versions"]), flush=True)
    for notebook in notebooks:
        report["notebooks"][notebook.name] = run_alone(notebook.resolve(), out, args.timeout)
    (out / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    failed = [name for name, r in report["notebooks"].items() if r["error"] is not None]
    print(f"{len(notebooks) - len(failed)} of {len(notebooks)} notebooks ran; failed: "
          f"{', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

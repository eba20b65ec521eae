# The course's commands. `make lab` and `make test` are the two a new user needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
# nbval runs the notebooks in the tiny `ci` preset; `make course` / `make notebooks` use BT_PRESET.
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: help venv lab test test-py test-nb test-browser browser-deps browser-note check-sync course notebooks sync bench clean

help:
	@echo "make lab        - create .venv if missing, install the project, start JupyterLab on notebooks/"
	@echo "make test       - the whole suite: pytest, notebooks in sync, nbval over the notebooks (ci preset)"
	@echo "make course     - execute every notebook headless (preset from BT_PRESET) into build/"
	@echo "make notebooks  - re-execute the committed notebooks in place (teaching preset, real data)"
	@echo "make sync       - update each notebook's .ipynb from its .py percent script"
	@echo "make bench      - run every benchmark (prints JSON)"
	@echo "make test-browser - JupyterLab in Chromium: run notebooks 01-02, move explorer sliders"

venv: $(STAMP)

# Re-installs when pyproject.toml changes; the kernel spec lives inside the venv.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (barlow-twins-course)"
	touch $(STAMP)

# JupyterLab refuses to run as root unless told to (containers, CI).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks $(ROOT_FLAG) $(LAB_ARGS)

# CI (CI=true) also runs the real-browser test; elsewhere `make test-browser` runs it on demand.
test: test-py check-sync test-nb $(if $(CI),test-browser,browser-note)

test-py: $(STAMP)
	$(BIN)/python -m pytest tests --ignore=tests/browser $(PYTEST_ARGS)

browser-note:
	@echo "note: the real-browser test did not run here; \`make test-browser\` runs it (CI always does)."

# Debian's Chromium, driven by Playwright's Python package (from the dev extras).
browser-deps:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "Install Chromium (Debian/Ubuntu: sudo apt-get install chromium) or set BT_CHROMIUM"; exit 1; fi; }

test-browser: $(STAMP) browser-deps
	$(BIN)/python -m pytest tests/browser -v $(PYTEST_ARGS)

check-sync: $(STAMP)
	$(BIN)/python tools/check_notebooks.py $(NOTEBOOKS)

test-nb: $(STAMP)
	@if [ -n "$(NOTEBOOKS)" ]; then \
	  BT_PRESET=ci $(BIN)/python -m pytest --nbval-lax --nbval-current-env \
	    --nbval-sanitize-with notebooks/nbval_sanitize.cfg -p no:cacheprovider $(NOTEBOOKS); \
	else echo "no notebooks yet"; fi

course: $(STAMP)
	mkdir -p build
	@for nb in $(NOTEBOOKS); do \
	  echo "== $$nb"; \
	  $(BIN)/jupytext --to ipynb --execute --output build/$$(basename $$nb) $$nb || exit 1; \
	done

# The committed outputs: the teaching preset on real CIFAR-10 (set BT_DATA_DIR when offline).
notebooks: $(STAMP)
	BT_PRESET=$${BT_PRESET:-teaching} $(BIN)/python benchmarks/time_notebooks.py --in-place

sync: $(STAMP)
	$(BIN)/jupytext --sync notebooks/[0-9][0-9]_*.py

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf build .pytest_cache

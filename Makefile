# Two commands do the whole set-up on a fresh machine with Python >= 3.11:
#   make demo   # install, then train a model on the bundled demo survey
#   make test   # install, then run the test suite (the reduced CI set)
# `make test-full` runs the slow tests too (same as BAYESDSM_FULL_TESTS=1).
# `make wheel-demo` runs a short demo from the built wheel in a fresh venv, as CI does.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-full lint bench clean wheel-demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,sim,dask]"
	# astrolachesis ships the MIST bolometric-correction tables; only its data file is used,
	# and its own dependencies (numba, dynesty, ...) are not needed: hence --no-deps.
	$(BIN)/python -m pip install --quiet --no-deps "astrolachesis>=1.0.9"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bayesdsm demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=20

test-full: $(STAMP)
	BAYESDSM_FULL_TESTS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=20

# A user's install: build the wheel, install it alone into a fresh venv in a temporary folder
# (no repository, no sim extra) and run a short demo there, which must read the demo survey
# from the wheel's package data. A few minutes, mostly installing the dependencies.
wheel-demo: SHELL := /bin/bash
wheel-demo: $(STAMP)
	set -euo pipefail; tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/bayesdsm-wheel.XXXXXX"); \
	step() { echo "wheel-demo: $$1 ($$((SECONDS - t)) s)"; t=$$SECONDS; }; \
	trap 'rm -rf "$$tmp"; step "removed $$tmp"' EXIT; t=$$SECONDS; \
	rm -rf build; \
	$(BIN)/python -m pip wheel --quiet --no-deps -w "$$tmp/dist" .; \
	$(BIN)/python -m zipfile -l "$$tmp"/dist/bayesdsm-*.whl | grep -F bayesdsm/_demo/demo_survey.parquet; \
	step "built the wheel"; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install --quiet --no-compile "$$tmp"/dist/bayesdsm-*.whl; \
	step "installed it into a fresh venv"; \
	cd "$$tmp"; \
	env -u PYTHONPATH -u BAYESDSM_DATA_DIR JAX_PLATFORMS=cpu MPLBACKEND=Agg \
		venv/bin/bayesdsm demo --out demo --iterations 1 --epochs 1 --quiet 2>&1 | tee demo.log; \
	grep -q "demo survey: $$tmp/venv/.*/site-packages/bayesdsm/_demo/demo_survey.parquet" demo.log; \
	test -s demo/model.bdsm && test -s demo/report/report.html; \
	step "ran bayesdsm demo (1 iteration x 1 epoch, with the report) from $$tmp"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache

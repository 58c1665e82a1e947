# Two commands do the whole set-up on a fresh machine with Python >= 3.11:
#   make demo   # install, then train a model on the bundled demo survey
#   make test   # install, then run the test suite (the reduced CI set)
# `make test-full` runs the slow tests too (same as BAYESDSM_FULL_TESTS=1).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-full lint bench clean

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

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache

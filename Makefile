# Set-up on a fresh machine needs only Python 3.11 and pip: `make demo`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sccluster-installed

.PHONY: demo test lint install clean distclean

## Cluster the bundled demo subset and print cells, clusters found, ARI/NMI/ACC and time.
demo: $(STAMP)
	$(BIN)/sccluster demo

## Lint, format check, types and the layers contract, then the default test suite (slow tests skipped;
## `$(BIN)/python -m pytest --runslow` includes them), with the 25 slowest tests listed to keep the suite short.
test: lint
	$(BIN)/python -m pytest -q --durations=25

## The static checks alone (the same as .pre-commit-config.yaml runs).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

install: $(STAMP)

# torch is installed first and pinned: the CPU wheel of 2.13.0 is available locally, whereas an
# unpinned `torch` requirement would pull several GB of CUDA packages.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install "torch==2.13.0"
	$(BIN)/python -m pip install -e ".[test]"
	touch $(STAMP)

clean:
	rm -rf demo_clustered.h5ad .pytest_cache

distclean: clean
	rm -rf $(VENV)

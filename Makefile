# Quickstart: `make run` (the main job on the default env) and `make test` (the tests).
# Both install what they need into .venv first; `make install` is idempotent and instant
# once done (it reruns only when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip --disable-pip-version-check -qq

.PHONY: install run test bench lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: 2.13.0 is the CPU wheel; unpinned, pip would fetch a CUDA build.
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[dev]"
	touch $(STAMP)

# The maze pipeline so far: demonstrations, then the open-loop skill prior SPiRL uses
# (about 25 min on 2 cores). Both steps keep what an earlier run made: an existing dataset is
# reused and the prior continues from its last checkpoint (resume=auto).
run: install
	HF_HUB_OFFLINE=1 $(BIN)/skillcritic-data env=maze data.exist_ok=true
	HF_HUB_OFFLINE=1 $(BIN)/skillcritic-prior env=maze prior=open_loop resume=auto

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

# Speed figures (loader, prior training per variant) on the default maze dataset.
bench: install
	HF_HUB_OFFLINE=1 $(BIN)/skillcritic-data env=maze data.exist_ok=true
	$(BIN)/python benchmarks/loader.py
	$(BIN)/python benchmarks/prior.py

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: install
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

clean:
	rm -rf $(VENV) dist build .pytest_cache .ruff_cache

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

# The short maze pipeline: demonstrations, the cond_decoder skill prior (5000 updates), then a
# short Skill-Critic run (100k env steps: warm-up, warm start, hybrid); about 25 min on 2 cores.
# Each step keeps what an earlier run made (an existing dataset is reused, the prior and the
# agent continue from their last checkpoints: resume=auto).
run: install
	HF_HUB_OFFLINE=1 $(BIN)/skillcritic-data env=maze data.exist_ok=true
	HF_HUB_OFFLINE=1 $(BIN)/skillcritic-prior env=maze prior=cond_decoder trainer.max_steps=5000 resume=auto
	HF_HUB_OFFLINE=1 $(BIN)/skillcritic-rl env=maze agent=skill_critic total_env_steps=100000 \
		epoch_env_steps=25000 agent.warm_start_env_steps=25000 resume=auto
	@echo "outputs: data/skillcritic/maze-demos-v0 (demonstrations),"
	@echo "  outputs/prior/maze/cond_decoder/default/seed0 (skill prior),"
	@echo "  outputs/rl/maze/skill_critic/default/seed0 (agent: checkpoints, videos, pictures);"
	@echo "  curves: .venv/bin/tensorboard --logdir outputs"

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

# Speed figures: loader, prior training per variant, RL per agent (default maze dataset), racing sim.
bench: install
	HF_HUB_OFFLINE=1 $(BIN)/skillcritic-data env=maze data.exist_ok=true
	$(BIN)/python benchmarks/loader.py
	$(BIN)/python benchmarks/prior.py
	$(BIN)/python benchmarks/rl.py
	$(BIN)/python benchmarks/racing.py

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: install
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

clean:
	rm -rf $(VENV) dist build .pytest_cache .ruff_cache

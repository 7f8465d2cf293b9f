# Two commands set up everything on a fresh machine with Python 3.11:
#   make test    create or reuse .venv, install pinned dependencies and vivit_jax
#                (editable), run the suite
#   make train   the default training run (configs/synthetic.py) on this machine
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKDIR ?= workdirs/synthetic
PYTEST_WORKERS ?= 2

.PHONY: install test lint format train stats clean

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt -c constraints.txt
	# The package itself, editable: `import vivit_jax` works from any directory.
	$(BIN)/python -m pip install -q -e . --no-deps
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) tests

lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .

train: $(STAMP)
	$(BIN)/python main.py --config=configs/synthetic.py --workdir=$(WORKDIR)

stats: $(STAMP)
	$(BIN)/python -m vivit_jax.tools.model_stats --all

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache vivit_jax.egg-info

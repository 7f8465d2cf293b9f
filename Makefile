# Two commands set up everything on a fresh machine with Python 3.11:
#   make test    create or reuse .venv, install pinned dependencies and vivit_jax
#                (editable), run the suite
#   make train   the default training run (configs/synthetic.py) on this machine
# On a TPU VM or a CUDA 12 GPU machine, `make install ACCEL=tpu` (or ACCEL=cuda12) also installs
# jax's plugin for it: the pyproject.toml extra of that name, pinned by constraints-accel.txt.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Empty or cpu: jax's CPU backend only, exactly what CI installs.
ACCEL ?=
ACCELERATORS := tpu cuda12
ifneq ($(filter-out cpu $(ACCELERATORS),$(ACCEL))$(word 2,$(ACCEL)),)
$(error ACCEL=$(ACCEL): use cpu (the default) or one of: $(ACCELERATORS))
endif
EXTRA := $(filter $(ACCELERATORS),$(ACCEL))
# One stamp per extra, so that changing ACCEL installs again.
STAMP := $(VENV)/.installed$(if $(EXTRA),-$(EXTRA))
WORKDIR ?= workdirs/synthetic
PYTEST_WORKERS ?= 2

.PHONY: install libtpu cuda-plugin test lint format train stats clean

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml $(if $(EXTRA),constraints-accel.txt)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt -c constraints.txt
	# The package itself, editable: `import vivit_jax` works from any directory.
ifeq ($(EXTRA),)
	$(BIN)/python -m pip install -q -e . --no-deps
else
	$(BIN)/python -m pip install -q -e '.[$(EXTRA)]' -c constraints.txt -c constraints-accel.txt
endif
	touch $(STAMP)

install: $(STAMP)

# libtpu beside the environment, not importable from it: `vivit_jax.tools.fit` compiles for TPU
# slices with it (no TPU needed), and JAX in .venv never looks for a TPU. 213 MB to download.
LIBTPU := $(VENV)/libtpu/.installed
$(LIBTPU): constraints-accel.txt | $(STAMP)
	$(BIN)/python -m pip install -q --no-deps --upgrade --target $(VENV)/libtpu \
	  -c constraints-accel.txt libtpu
	touch $(LIBTPU)

libtpu: $(LIBTPU)

# JAX's CUDA 12 plugin beside the environment, the same way: `vivit_jax.tools.fit
# --topology=8xh100` compiles for H100s with it (no GPU and no CUDA libraries needed).
# 182 MB to download.
CUDA_PLUGIN := $(VENV)/cuda12/.installed
$(CUDA_PLUGIN): constraints-accel.txt | $(STAMP)
	$(BIN)/python -m pip install -q --no-deps --upgrade --target $(VENV)/cuda12 \
	  -c constraints-accel.txt jax-cuda12-plugin jax-cuda12-pjrt
	touch $(CUDA_PLUGIN)

cuda-plugin: $(CUDA_PLUGIN)

test: $(STAMP) $(LIBTPU) $(CUDA_PLUGIN)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal tests

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

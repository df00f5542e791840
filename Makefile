# Entry points, all safe on a fresh machine:
#   make demo  - set up .venv and train the main example job locally (garfield run)
#   make test  - set up .venv, run the static checks (make lint), build/fetch the test control plane
#                and tools, run the whole suite
#   make report - the cost-of-resilience report: bench/results/resilience.md and its plots
#   make lint  - the static checks alone: ruff, import-linter's layer contracts, mypy (pyproject.toml)
# torch==2.13.0 is installed first: it is the CPU build on this machine's disk, and it satisfies
# the project's torch>=2.3 so pip never pulls a multi-GB CUDA build.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.garfield-installed

.PHONY: setup demo lint test test-fast bench report crds clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,tensorflow]'
	touch $@

setup: $(STAMP)

demo: setup
	$(BIN)/garfield run examples/mnist-msmw.yaml

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: setup lint
	bash scripts/test-setup.sh
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not cluster"

# The peers' venv for bench/gars.py: byzfl requires torchvision, which brings torch 2.14.1 (a CUDA
# build) in place of the CPU torch 2.13.0, and a test run in that venv then crashes on import; so
# the peers live apart and .venv stays as `make setup` made it.
BENCH_VENV  ?= .venv-bench
BENCH_BIN   := $(BENCH_VENV)/bin
BENCH_STAMP := $(BENCH_VENV)/.garfield-installed

$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_BIN)/python -m pip install --quiet --upgrade pip
	$(BENCH_BIN)/python -m pip install --quiet -e '.[bench]'
	$(BENCH_BIN)/python -m pip install --quiet --no-deps byzpy==0.1.4  # pins torch<2.6; its code runs on newer
	touch $@

bench: setup $(BENCH_STAMP)
	$(BENCH_BIN)/python bench/gars.py
	$(BIN)/python bench/throughput.py
	bash scripts/test-setup.sh
	$(BIN)/python bench/operator.py

# The cost-of-resilience report (bench/results/resilience.md and its PNGs): simulations of the
# rule x attack x momentum grids and real runs for the timings; under 30 minutes on 2 cores.
report: setup
	$(BIN)/garfield report --output-dir bench/results

crds: setup
	PATH=$(CURDIR)/$(BIN):$$PATH bash scripts/sync-crds.sh
	$(BIN)/python scripts/gen-spec-reference.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) build *.egg-info runs

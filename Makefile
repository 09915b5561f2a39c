# Every target creates .venv when it is missing and installs the project into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
export HF_HUB_OFFLINE ?= 1
export WANDB_SILENT ?= true

.PHONY: install train lint test test-fast bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev,sweep,slurm]'
	rm -f $(VENV)/.installed-*
	touch $@

train: $(STAMP)
	$(PY) train.py experiment=quickstart $(ARGS)

# ruff (pyproject: pyflakes, pycodestyle, import order, bugbear, pyupgrade); make test runs it first.
LINT_PATHS := src tests scripts train.py eval.py predict.py export.py

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)

test: $(STAMP) lint
	$(PY) -m pytest -m "not gpu" --durations=15 $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not gpu" --durations=15 $(PYTEST_ARGS)

# Side-by-side benchmarks (scripts/bench): make bench ARGS=--quick, or ARGS="textcls --repeats 3".
BENCH_STAMP := $(VENV)/.bench-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -e '.[bench]'
	rm -f $(VENV)/.bench-*
	touch $@

bench: $(BENCH_STAMP)
	$(PY) -m scripts.bench $(ARGS)

clean:
	rm -rf outputs logs multirun wandb .pytest_cache

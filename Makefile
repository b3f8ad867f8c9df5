# One-command set-up: `make test` and `make serve` create .venv when missing and install into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
RUN_STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_ARGS ?=
HOST ?= 127.0.0.1
PORT ?= 8000

export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: test serve lint install install-dev bench soak clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $(RUN_STAMP)

$(RUN_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $(RUN_STAMP)

install: $(RUN_STAMP)

install-dev: $(STAMP)

# Serve the bundled digits model (model_repository/) on $(HOST):$(PORT).
serve: $(RUN_STAMP)
	$(PY) -m service --host $(HOST) --port $(PORT) --model-repository model_repository

test: $(STAMP)
	$(PY) -m pytest

# Long reliability runs (pytest marker "soak", deselected by make test): 10 minutes of mixed traffic
# against the bundled model; TPSERVE_SOAK_SECONDS=60 make soak for a shortened run.
soak: $(STAMP)
	$(PY) -m pytest -m soak -s tests/reliability

$(BENCH_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

# Performance report: engine + serving sweeps -> bench/results/<date>-<machine>.{json,png} and bench/README.md.
# make bench BENCH_ARGS=--quick for a short run.
bench: $(RUN_STAMP) $(BENCH_STAMP)
	$(PY) -m bench.report $(BENCH_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check layers model_zoo service tests bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

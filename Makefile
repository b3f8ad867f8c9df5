# One-command set-up: `make test` and `make serve` create .venv when missing and install into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
RUN_STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: test serve lint install install-dev bench clean

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

lint: $(STAMP)
	$(PY) -m ruff check layers model_zoo service tests bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# One-command set-up: `make test` and `make serve` create .venv when missing and install into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: test lint install-dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install-dev: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check layers model_zoo service tests bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

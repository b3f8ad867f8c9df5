# One-command set-up: `make test` and `make serve` create .venv when missing and install into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
RUN_STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_ARGS ?=
GPU_CHECK_ARGS ?=
# Every pip install below takes its versions from this lock (the image uses the same file).
LOCK := requirements.lock
UV_VERSION := 0.13.9
UV_ARGS ?=
# make serve HOST=0.0.0.0 PORT=9000; unset, the server's own settings decide (TPSERVE_* variables, or
# 127.0.0.1:8000 and ./model_repository), so `TPSERVE_MODEL_REPOSITORY=... make serve` is honoured.
HOST ?=
PORT ?=

export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: test serve lint install install-dev bench gpu-check soak clean lock protos

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml $(LOCK) | $(PY)
	$(PY) -m pip install --quiet -c $(LOCK) -e '.[dev]'
	touch $(STAMP) $(RUN_STAMP)

$(RUN_STAMP): pyproject.toml $(LOCK) | $(PY)
	$(PY) -m pip install --quiet -c $(LOCK) -e .
	touch $(RUN_STAMP)

install: $(RUN_STAMP)

install-dev: $(STAMP)

# Serve the bundled digits model (model_repository/, the default repository) on 127.0.0.1:8000.
serve: $(RUN_STAMP)
	$(PY) -m service$(if $(HOST), --host $(HOST))$(if $(PORT), --port $(PORT))

test: $(STAMP)
	$(PY) -m pytest

# Long reliability runs (pytest marker "soak", deselected by make test): 10 minutes of mixed traffic
# against the bundled model; TPSERVE_SOAK_SECONDS=60 make soak for a shortened run. It also holds the
# time bounds (overload p99 and recovery, how fast attacks are refused) that make test only reports:
# run it on a quiet machine. `make test` itself asserts no elapsed time (a busy CI machine must not fail it).
# pytest's exit status 5 ("no tests ran") fails both targets, like any other non-zero status.
soak: $(STAMP)
	$(PY) -m pytest -m soak -s tests/reliability

$(BENCH_STAMP): pyproject.toml $(LOCK) | $(PY)
	$(PY) -m pip install --quiet -c $(LOCK) -e '.[bench]'
	touch $(BENCH_STAMP)

# Performance report: engine + serving sweeps -> bench/results/<date>-<machine>.{json,png} and bench/README.md.
# make bench BENCH_ARGS=--quick for a short run.
bench: $(RUN_STAMP) $(BENCH_STAMP)
	$(PY) -m bench.report $(BENCH_ARGS)

# GPU machine check (bench/gpu_check.py): GPUs seen, native NHWC/NCHW kernels, one replica per GPU,
# engine rows/s at batch 1..256 and served req/s at c=64/256 per TPSERVE_WORKERS (default 1,2,4)
# -> bench/results/gpu-check-<date>.json. Where nvidia-smi exists, TensorFlow's CUDA wheels are added
# from the lock first. Exits 2 without a GPU; GPU_CHECK_ARGS=--allow-cpu runs the same steps on the CPU.
gpu-check: $(RUN_STAMP) $(BENCH_STAMP)
	@if command -v nvidia-smi >/dev/null 2>&1 && [ ! -f $(VENV)/.installed-cuda ]; then \
		$(PY) -m pip install --quiet -c $(LOCK) 'tensorflow[and-cuda]' && touch $(VENV)/.installed-cuda; fi
	$(PY) -m bench.gpu_check $(GPU_CHECK_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check layers model_zoo service tests bench examples

# Re-resolve requirements.lock after changing dependencies in pyproject.toml (pins already in the lock
# are kept when they still fit; `make lock UV_ARGS=--upgrade` moves everything to the newest versions).
# uv's resolver, pinned, in a throw-away venv under build/. The command is also the lock's header.
lock:
	$(PYTHON) -m venv build/uv-venv
	build/uv-venv/bin/pip install --quiet 'uv==$(UV_VERSION)'
	build/uv-venv/bin/uv pip compile --native-tls pyproject.toml deploy/tensorflow-variants.in --all-extras \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 $(UV_ARGS) -o $(LOCK)

# Regenerate service/grpc/kserve_v2_pb2*.py from protos/kserve_v2.proto and service/grpc/tfserving/*_pb2*.py from
# protos/tfserving/*.proto (TF Serving's gRPC API) (committed: the server needs only
# grpcio + protobuf). grpcio-tools is pinned: its protoc decides the gencode version (1.74.0 -> 6.31.1, the
# oldest protobuf TensorFlow 2.21 accepts). protos/generate.py holds the protoc command and the post-edits.
GRPC_TOOLS_VERSION := 1.74.0
protos:
	$(PYTHON) -m venv build/protoc-venv
	build/protoc-venv/bin/pip install --quiet 'grpcio-tools==$(GRPC_TOOLS_VERSION)'
	build/protoc-venv/bin/python protos/generate.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

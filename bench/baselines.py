"""Two baseline servers for bench/serve.py, same request format as the service's ``/predict``.

* ``naive``: loads the same model (same predictor code) and runs it once per request in FastAPI's
  thread pool — no batching, no queue, no deadlines.
* ``floor``: parses and validates the request exactly as the service does, then answers outputs of
  the right shape without running any model: the HTTP + JSON cost alone.

    python -m bench.baselines naive --model-repository model_repository --model digits --port 8101
"""
from __future__ import annotations

import argparse
import os

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from service.http import json_response, parse_json, read_body
from service.model import ModelConfig
from service.repository import ModelRepository
from service.settings import Settings, load_config_file
from service.validation import to_batch


def build_app(kind: str, repo_dir: str, model_name: str) -> FastAPI:
    # TensorFlow's own defaults (every core for both pools), as a naive deployment would run it;
    # the service's automatic thread choice is what is being compared against.
    ncpu = os.cpu_count() or 1
    settings = Settings(model_repository=repo_dir, warmup=True, intra_op_threads=ncpu, inter_op_threads=ncpu)
    repo = ModelRepository(settings)
    cfg = next(c for c in repo.scan() if isinstance(c, ModelConfig) and c.name == model_name)
    batching = load_config_file(next((repo.root / model_name).glob("config.*"))).get("batching", {})
    model = repo.load(cfg, batching.get("max_batch_size", settings.batching.max_batch_size))
    app = FastAPI()
    outputs_one = model.run_batch(0, {s.name: model._filler(s, 1) for s in model.inputs})

    if kind == "naive":
        @app.post("/predict")
        async def predict(request: Request):
            payload = parse_json(await read_body(request, settings.max_body_bytes))
            arrays = to_batch(model.inputs, payload["inputs"], 4096)
            out = await run_in_threadpool(model.run_batch, 0, arrays)   # one model call per request
            return json_response({"model": model.name, "version": model.version, "outputs": out})
    else:
        @app.post("/predict")
        async def predict(request: Request):
            payload = parse_json(await read_body(request, settings.max_body_bytes))
            arrays = to_batch(model.inputs, payload["inputs"], 4096)
            n = len(next(iter(arrays.values())))
            out = {k: np.repeat(v, n, axis=0) for k, v in outputs_one.items()}
            return json_response({"model": model.name, "version": model.version, "outputs": out})
    return app


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["naive", "floor"])
    p.add_argument("--model-repository", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8101)
    a = p.parse_args(argv)
    uvicorn.run(build_app(a.kind, a.model_repository, a.model), host=a.host, port=a.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()

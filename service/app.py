"""``create_app(settings)``: the FastAPI application."""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .auth import ApiKeyMiddleware
from .docs import ASSETS_PATH, DOCS_PATHS, docs_served, install_docs
from .errors import InvalidRequest
from .http import (
    HeadAsGet,
    add_error_handlers,
    deadline_from,
    finite_outputs,
    instrument,
    json_response,
    multipart_file,
    parse_json,
    read_body,
)
from .images import IMAGE_TYPES, image_row, run_image_work
from .images import top_k as top_k_labels
from .inference import infer
from .manager import ModelManager
from .metrics import Metrics
from .npy import NPY_TYPES, load_npy
from .protocols import kserve, tfserving
from .schemas import ErrorBody, LiveStatus, ModelStatus, PredictRequest, PredictResponse, ReadyStatus
from .settings import Settings
from .validation import check_array, to_batch

__all__ = ["create_app"]

logger = logging.getLogger("tpserve")

_ERRORS = {code: {"model": ErrorBody, "description": desc} for code, desc in (
    (400, "invalid request (the body names the field, the expected and the received value)"),
    (404, "unknown model"), (408, "the body did not arrive within TPSERVE_BODY_TIMEOUT_S"),
    (413, "body or image above the limit"), (415, "unsupported image format"), (429, "queue full; see Retry-After"),
    (500, "the batch holding this request failed"), (503, "model not ready or server shutting down"),
    (504, "deadline passed before the request ran"))}


def create_app(settings: Settings | None = None, *, registry: CollectorRegistry | None = None,
               repository=None, manager=None, metrics: Metrics | None = None) -> FastAPI:
    """Build the app.

    Embedded (the default): the app owns a :class:`ModelManager` over ``repository`` (default
    :class:`service.repository.ModelRepository` over ``settings.model_repository``; tests may pass
    another object with ``scan()`` and ``load()``). A front-end process of the multi-process server
    passes ``manager`` (the engine's mirror, same interface: ``start``/``stop``/``get``/``find``/...)
    and its ``metrics`` instead; ``registry`` then is what ``/metrics`` collects."""
    settings = settings or Settings()
    if manager is None:
        metrics = Metrics(registry)
        if repository is None:
            from .repository import ModelRepository  # the one module that imports TensorFlow

            repository = ModelRepository(settings)
        manager = ModelManager(settings, metrics, repository)
    elif metrics is None:
        raise TypeError("create_app(manager=...) needs the metrics that manager reports to")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Load in the background: /healthz answers at once, /readyz says 503 until every model is warm.
        loading = asyncio.create_task(manager.start())

        def _loaded(task: asyncio.Task):
            if not task.cancelled() and task.exception() is not None:
                logger.error("model loading crashed: %r", task.exception())
            ok, reasons = manager.readiness()
            logger.info("tpserve ready=%s %s", ok, "; ".join(reasons))

        loading.add_done_callback(_loaded)
        app.state.loading = loading
        try:
            yield
        finally:
            # one deadline (TPSERVE_SHUTDOWN_TIMEOUT_S, or the SIGTERM drain's) for everything; a load
            # still running is cancelled and never swapped in
            await manager.stop()

    # docs: see service.docs; no trailing-slash redirects: Starlette builds them from the client's Host header
    app = FastAPI(title="tpserve", version="0.1.0", lifespan=lifespan,
                  description="Serves tensorpack-style TensorFlow models with dynamic batching.",
                  docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.manager = manager

    add_error_handlers(app)
    install_docs(app, settings)

    @app.get("/healthz", tags=["health"], response_model=LiveStatus, responses={503: {"model": LiveStatus}},
             summary="Liveness: the process is up (503 when a batch has hung past liveness_stuck_batch_s)")
    async def healthz():
        why = manager.liveness()       # the same answer as /v2/health/live
        if why is not None:
            return json_response({"status": "stuck", "reason": why}, status=503)
        return {"status": "alive"}

    @app.get("/readyz", tags=["health"], response_model=ReadyStatus, responses={503: {"model": ReadyStatus}},
             summary="Readiness: every configured model is loaded and warmed up")
    async def readyz():
        ok, reasons = manager.readiness()
        if ok:
            return {"status": "ready", "reasons": []}
        return json_response({"status": "not ready", "reasons": reasons}, status=503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus_metrics():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/models", tags=["models"], response_model=list[ModelStatus],
             summary="Served models: versions, state, input/output signatures, labels")
    async def list_models():
        return [e.status() for e in manager.entries.values()]

    @app.post("/predict", tags=["inference"], response_model=PredictResponse, responses=_ERRORS,
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": PredictRequest.model_json_schema(
                      ref_template="#/components/schemas/{model}")},
                  "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
                  "image/png": {"schema": {"type": "string", "format": "binary"}},
                  "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                  "multipart/form-data": {"schema": {"type": "object", "properties": {
                      "image": {"type": "string", "format": "binary"}}}}}},
                  "parameters": [
                      {"name": "model", "in": "query", "required": False, "schema": {"type": "string"},
                       "description": "model name (else the body's 'model', else the only model)"},
                      {"name": "version", "in": "query", "required": False, "schema": {"type": "string"},
                       "description": "serve only if this version is the one loaded"},
                      {"name": "top_k", "in": "query", "required": False,
                       "schema": {"type": "integer", "minimum": 1, "default": 5},
                       "description": "labels returned for an uploaded image"}]},
              summary="Run a model on a batch of inputs (JSON) or classify one uploaded image")
    # (query parameters: documented in openapi_extra below; parsed by hand for speed)
    async def predict(request: Request):
        # Query parameters are read by hand: declaring them makes FastAPI validate a pydantic model
        # per request, which was the largest single cost of this route under load.
        query = request.query_params
        model, version = query.get("model"), query.get("version")
        with instrument(metrics, "predict") as obs:
            top_k = _int_param(query, "top_k", 5)
            body = await read_body(request, settings.max_body_bytes)
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype in IMAGE_TYPES or ctype == "multipart/form-data":
                entry = manager.get(model, version)
                obs.model = entry.name
                return await classify_upload(request, entry, body, ctype, top_k, version)
            if ctype in NPY_TYPES:
                # A .npy array as the body: the batch for a single-input model, no JSON parsing.
                entry = manager.get(model, version)
                obs.model = entry.name
                spec = _single_input(entry.model)
                arrays = {spec.name: check_array(spec, load_npy(body), spec.name)}
                if len(arrays[spec.name]) > settings.max_rows_per_request:
                    raise InvalidRequest(f"{len(arrays[spec.name])} rows in one request, limit is "
                                         f"{settings.max_rows_per_request}", field=spec.name)
                deadline = deadline_from(None, request.headers.get("x-request-timeout-ms"),
                                         settings.default_timeout_ms)
                available = [s.name for s in entry.model.outputs]
                wanted = query.getlist("output") or available
                bad = [w for w in wanted if w not in available]
                if bad:   # checked before running the model
                    raise InvalidRequest(f"unknown output(s) {bad}; this model has {available}", field="output",
                                         expected=available, received=bad)
                result, served = await infer(manager, entry, arrays, deadline, version)
                return json_response({"model": entry.name, "version": served,
                                      "outputs": finite_outputs({k: result[k] for k in wanted}, _BINARY_HINT)})
            payload = parse_json(body, manager.json_budget(model), model)
            version = payload.get("version", version)
            entry = manager.get(payload.get("model", model), version)
            obs.model = entry.name
            model = entry.model
            if "inputs" not in payload:
                raise InvalidRequest("missing 'inputs'", field="inputs",
                                     expected={s.name: s.signature()["shape"] for s in model.inputs})
            unknown_keys = sorted(set(payload) - {"model", "version", "inputs", "outputs", "timeout_ms"})
            if unknown_keys:
                raise InvalidRequest(f"unknown field(s) {unknown_keys}", field=unknown_keys[0],
                                     expected=["model", "version", "inputs", "outputs", "timeout_ms"])
            available = [s.name for s in model.outputs]
            wanted = payload.get("outputs") or available
            if not isinstance(wanted, list) or not all(isinstance(w, str) for w in wanted):
                raise InvalidRequest("'outputs' must be a list of output names", field="outputs", expected=available)
            bad = [w for w in wanted if w not in available]
            if bad:
                raise InvalidRequest(f"unknown output(s) {bad}; this model has {available}", field="outputs",
                                     expected=available, received=bad)
            deadline = deadline_from(payload.get("timeout_ms"), request.headers.get("x-request-timeout-ms"),
                                     settings.default_timeout_ms)
            arrays = to_batch(model.inputs, payload["inputs"], settings.max_rows_per_request,
                              maybe_bools=b"true" in body or b"false" in body)
            result, served = await infer(manager, entry, arrays, deadline, version)
            return json_response({"model": entry.name, "version": served,
                                  "outputs": finite_outputs({k: result[k] for k in wanted}, _BINARY_HINT)})

    async def classify_upload(request: Request, entry, body: bytes, ctype: str, k: int, version: str | None):
        if k < 1:
            raise InvalidRequest("top_k must be >= 1", field="top_k", received=k)
        if ctype == "multipart/form-data":
            data = await multipart_file(request, body)
        else:
            data = body
        row = (await run_image_work(image_row, entry.model, data, settings))[None]
        deadline = deadline_from(None, request.headers.get("x-request-timeout-ms"), settings.default_timeout_ms)
        out, served = await infer(manager, entry, {entry.model.inputs[0].name: row}, deadline, version)
        prob = out["prob"] if "prob" in out else next(iter(out.values()))
        finite_outputs({"prob": prob})
        return json_response({"model": entry.name, "version": served,
                              "top_k": top_k_labels(prob, entry.model.labels, k)[0]})

    app.include_router(tfserving.router)
    app.include_router(kserve.router)
    if settings.api_keys:
        docs = docs_served(settings)
        app.add_middleware(ApiKeyMiddleware, keys=settings.api_keys,
                           open_paths=[*settings.open_paths, *(DOCS_PATHS if docs else ())],
                           open_prefixes=(ASSETS_PATH + "/",) if docs else ())
    app.add_middleware(HeadAsGet)
    return app


_BINARY_HINT = "; the v2 binary extension (binary_data_output) carries it"


def _int_param(query, name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"query parameter {name!r} must be an integer", field=name, received=raw[:40]) from None


def _single_input(model):
    if len(model.inputs) != 1:
        raise InvalidRequest(f"a .npy body feeds a single-input model; {model.name!r} takes "
                             f"{[s.name for s in model.inputs]}: send JSON", field="body")
    return model.inputs[0]

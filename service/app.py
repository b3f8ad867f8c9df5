"""``create_app(settings)``: the FastAPI application."""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .auth import ApiKeyMiddleware
from .docs import ASSETS_PATH, DOCS_PATHS, docs_served, install_docs
from .fastpath import App
from .http import HeadAsGet, add_error_handlers, json_response
from .manager import ModelManager
from .metrics import Metrics
from .protocols import kserve, predict, stats, tfserving
from .schemas import LiveStatus, ModelStatus, ReadyStatus
from .settings import Settings

__all__ = ["create_app"]

logger = logging.getLogger("tpserve")


def create_app(settings: Settings | None = None, *, registry: CollectorRegistry | None = None,
               repository=None, manager=None, metrics: Metrics | None = None) -> FastAPI:
    """Build the app.

    Embedded (the default): the app owns a :class:`ModelManager` over ``repository`` (default
    :class:`service.repository.ModelRepository` over ``settings.model_repository``; tests may pass
    another object with ``scan()`` and ``load()``). A front-end process of the multi-process server
    passes ``manager`` (the engine's mirror, same interface: ``start``/``stop``/``get``/``find``/...)
    and its ``metrics`` instead; ``registry`` then is what ``/metrics`` collects."""
    settings = settings or Settings()
    front_end = manager is not None       # one of several front-end processes (service.frontend)
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
        grpc_server = None
        if settings.grpc_port:
            from .grpc import start_grpc_server

            # several front-end processes share the gRPC port as they share the HTTP one (SO_REUSEPORT);
            # one process alone binds it exclusively, so a port in use is an error, not a silent share
            grpc_server = await start_grpc_server(settings, manager, metrics, reuse_port=front_end)
        try:
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop(3.0)
            # one deadline (TPSERVE_SHUTDOWN_TIMEOUT_S, or the SIGTERM drain's) for everything; a load
            # still running is cancelled and never swapped in
            await manager.stop()

    # docs: see service.docs; no trailing-slash redirects: Starlette builds them from the client's Host header
    app = App(title="tpserve", version="0.1.0", lifespan=lifespan,
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

    app.include_router(predict.router)
    app.include_router(tfserving.router)
    app.include_router(stats.router)    # before kserve: /v2/models/stats is not a model named "stats"
    app.include_router(kserve.router)
    if settings.api_keys:
        docs = docs_served(settings)
        keys = {"keys": settings.api_keys, "open_paths": [*settings.open_paths, *(DOCS_PATHS if docs else ())],
                "open_prefixes": (ASSETS_PATH + "/",) if docs else ()}
        app.add_middleware(ApiKeyMiddleware, **keys)
        app.protect(ApiKeyMiddleware, **keys)       # the inference routes' direct path (service.fastpath)
    app.add_middleware(HeadAsGet)
    return app

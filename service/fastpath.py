"""The inference routes without FastAPI's per-request layers.

Under load the front end's CPU is the server's limit, and a request to ``POST /predict`` spent about
half of it in the layers between uvicorn and the route: the middleware stack, matching the path
against every route's regex, the endpoint wrappers. :class:`App` is the FastAPI app with one
difference: ``POST`` requests to the inference routes (``/predict``, ``/v2/models/{m}[/versions/{v}]/infer``,
``/v1/models/{m}[/versions/{v}]:predict|:classify``) call the same endpoint functions directly, behind
the same API-key check, with the same error answers (:func:`service.http.error_response`; an
unexpected exception is logged and answered 500). Every other request, and these paths with another
method, go through FastAPI as before; the OpenAPI schema still documents the routes.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI
from starlette.requests import ClientDisconnect, Request

from .batcher import BatcherError
from .errors import ServiceError
from .http import error_response, json_response

__all__ = ["App"]

logger = logging.getLogger("tpserve")


def _match(path: str):
    """(endpoint, path parameters) for an inference route, else None."""
    from .protocols import kserve, predict, tfserving

    if path == "/predict":
        return predict.predict, {}
    parts = path.split("/")
    if len(parts) < 4 or parts[0] or parts[2] != "models" or not parts[3]:
        return None
    if parts[1] == "v2" and parts[-1] == "infer":
        if len(parts) == 5:
            return kserve.infer_latest, {"name": parts[3]}
        if len(parts) == 7 and parts[4] == "versions" and parts[5]:
            return kserve.infer_version, {"name": parts[3], "version": parts[5]}
    elif parts[1] == "v1":
        if len(parts) == 4:
            return tfserving.post_model, {"name_verb": parts[3]}
        if len(parts) == 6 and parts[4] == "versions" and parts[5]:
            return tfserving.post_model_version, {"name": parts[3], "version_verb": parts[5]}
    return None


class App(FastAPI):
    """FastAPI, with the inference routes served directly (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._hot = self._serve
        self._matches: dict[str, tuple | None] = {}

    def protect(self, middleware_cls, **kwargs):
        """Put the inference routes behind ``middleware_cls`` (the API keys) too."""
        self._hot = middleware_cls(self._serve, **kwargs)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            hit = self._matches.get(path, False)
            if hit is False:
                hit = _match(path)
                if len(self._matches) < 4096:       # paths clients send: bounded, most are a handful
                    self._matches[path] = hit
            if hit is not None:
                scope["app"] = self
                scope["tpserve.route"] = hit
                return await self._hot(scope, receive, send)
        await super().__call__(scope, receive, send)

    async def _serve(self, scope, receive, send):
        endpoint, params = scope["tpserve.route"]
        scope["path_params"] = params          # as the router sets them (codecs may read them)
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request, **params)
        except (ServiceError, BatcherError) as e:
            response = error_response(e)
        except ClientDisconnect:
            return                  # nobody to answer (uvicorn knows the client left)
        except Exception:
            logger.exception("unexpected error serving POST %s", scope["path"][:200])
            response = json_response({"error": "internal server error (the server log has the details)"},
                                     status=500)
        await response(scope, receive, send)

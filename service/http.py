"""HTTP plumbing shared by the routers: bounded body reading, JSON in/out, error mapping (every
error, the router's 404/405 included, answers ``{"error": ...}``), HEAD, metrics."""
from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from .batcher import (
    BatcherError,
    BatchFailed,
    DeadlineExceeded,
    ModelUnavailable,
    QueueFull,
    RequestTooLarge,
    ShuttingDown,
)
from .errors import InvalidRequest, PayloadTooLarge, RequestTimeout, ServiceError, clip
from .metrics import Metrics
from .validation import JsonBudget, check_json_budget, check_json_counts, json_counts

__all__ = ["read_body", "parse_json", "json_response", "finite_outputs", "NonFiniteOutput", "error_response", "instrument", "deadline_from",
           "multipart_file", "content_type", "add_error_handlers", "HeadAsGet"]

_ORJSON_OPTS = orjson.OPT_SERIALIZE_NUMPY


class NonFiniteOutput(ServiceError):
    """The model computed NaN or Inf, which JSON cannot carry (orjson would write null with a 200)."""

    status = 500


def finite_outputs(outputs: dict, hint: str = "") -> dict:
    """``outputs`` unchanged when every float is finite; else a 500 that names the output (JSON has no
    NaN/Inf, and a silent ``null`` would read as a valid answer)."""
    for name, arr in outputs.items():
        a = np.asarray(arr)
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            raise NonFiniteOutput(f"the model's output {name!r} holds NaN or Inf, which JSON cannot carry{hint}",
                                  field=name, expected="finite numbers", received="NaN/Inf")
    return outputs


def json_response(content, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(content, option=_ORJSON_OPTS), status_code=status, headers=headers,
                    media_type="application/json")


def to_service_error(exc: Exception) -> ServiceError:
    """The one mapping from domain/batcher errors to HTTP statuses."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, QueueFull):
        err = ServiceError(str(exc), headers={"Retry-After": str(int(math.ceil(exc.retry_after_s)))})
        err.status = 429
        return err
    if isinstance(exc, RequestTooLarge):
        return PayloadTooLarge(str(exc), expected=f"<= {exc.limit} rows", received=exc.rows)
    if isinstance(exc, DeadlineExceeded):
        err = ServiceError(str(exc))
        err.status = 504
        return err
    if isinstance(exc, (ShuttingDown, ModelUnavailable)):
        err = ServiceError(str(exc))
        err.status = 503
        return err
    if isinstance(exc, BatchFailed):
        return ServiceError(str(exc))
    raise TypeError(f"not a domain error: {exc!r}")


def error_response(exc: Exception) -> Response:
    err = to_service_error(exc)
    return json_response(err.body(), status=err.status, headers=err.headers)


def add_error_handlers(app: FastAPI):
    """Every error answers the documented ``{"error": ...}`` body (clients such as tritonclient read
    that key): domain errors, the router's 404 and 405, request validation, and unexpected ones."""

    async def domain_error(request: Request, exc: Exception):
        return error_response(exc)

    async def http_error(request: Request, exc: HTTPException):
        # raised by the router itself: no route for the path (404) or not for this method (405)
        path, method, headers = clip(request.url.path, 100), clip(request.method, 20), dict(exc.headers or {})
        if exc.status_code == 404:
            message = f"no endpoint {method} {path}{_slash_hint(request)}"
        elif exc.status_code == 405:
            allowed = headers.get("Allow", "")
            if "GET" in allowed.split(", "):
                headers["Allow"] = allowed = f"{allowed}, HEAD"     # served by HeadAsGet
            message = f"method {method} is not allowed on {path}; allowed: {allowed}"
        else:
            message = clip(exc.detail, 200)
        return json_response({"error": message}, status=exc.status_code, headers=headers)

    async def validation_error(request: Request, exc: RequestValidationError):
        first = (exc.errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        return error_response(InvalidRequest(f"invalid request: {clip(first.get('msg', 'invalid'), 200)}",
                                             field=where))

    async def unexpected_error(request: Request, exc: Exception):
        # Starlette logs the traceback after this answer; the client learns nothing of the internals
        return json_response({"error": "internal server error (the server log has the details)"}, status=500)

    app.add_exception_handler(ServiceError, domain_error)
    app.add_exception_handler(BatcherError, domain_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)


def _slash_hint(request: Request) -> str:
    """Trailing slashes are not redirected (Starlette builds the redirect from the client's Host
    header): the 404 names the path that exists instead."""
    path = request.url.path
    if len(path) < 2 or not path.endswith("/"):
        return ""
    scope = {**request.scope, "path": path.rstrip("/")}
    if any(route.matches(scope)[0] != Match.NONE for route in request.app.router.routes):
        return f" (without the trailing slash: {clip(scope['path'], 100)})"
    return ""


class HeadAsGet:
    """``HEAD`` is ``GET`` without the body (RFC 9110); probes and load balancers use it on
    ``/healthz``, ``/readyz``, ``/metrics``, ``/models``. FastAPI routes answer only the methods
    they declare, so the GET route serves HEAD here and the body is dropped (the headers,
    ``Content-Length`` included, stay those of the GET answer)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def send_headers_only(message):
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)


# The body is left unread on these answers: close the connection rather than drain what the client still sends.
_CLOSE = {"Connection": "close"}


async def read_body(request: Request, limit: int, timeout_s: float | None = None,
                    budget: JsonBudget | None = None, model: str | None = None) -> bytes:
    """Read the body, refusing (413) as soon as it exceeds ``limit`` bytes, and (408) when it has not
    fully arrived within ``timeout_s`` (default: the app's ``settings.body_timeout_s``; a client that
    trickles bytes or declares more than it sends must not hold a request open forever).

    ``budget``: the body is JSON for ``model``; it is refused (413, connection closed) at the first chunk
    that takes it past the containers/values any valid request can hold, so a 32 MB ``[[],[],...]`` costs
    the server one chunk, not 32 MB of reading (:func:`service.validation.check_json_counts`)."""
    if timeout_s is None:
        timeout_s = getattr(getattr(request.app.state, "settings", None), "body_timeout_s", None)
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise InvalidRequest("Content-Length is not an integer", field="Content-Length",
                                 received=declared[:40]) from None
        if n > limit:
            raise PayloadTooLarge(f"request body is {n} bytes, the limit is {limit} bytes (TPSERVE_MAX_BODY_BYTES)",
                                  expected=f"<= {limit} bytes", received=n, headers=_CLOSE)
    chunks, size = [], 0
    containers = commas = 0
    receive = request.receive       # the ASGI messages themselves: no stream generator per request
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes (TPSERVE_MAX_BODY_BYTES)",
                                          expected=f"<= {limit} bytes", received=f"> {limit} bytes", headers=_CLOSE)
                if budget is not None and message.get("more_body", False):
                    c, n = json_counts(chunk)
                    containers, commas = containers + c, commas + n
                    try:
                        check_json_counts(containers, commas, budget, model)
                    except PayloadTooLarge as e:
                        e.headers = _CLOSE      # the rest of the body is not read
                        raise
                if not message.get("more_body", False):
                    if not chunks:
                        return chunk        # one message: the usual case
                    chunks.append(chunk)
                    break
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout_s:g} s ({size} bytes received; "
                             "TPSERVE_BODY_TIMEOUT_S)", received=f"{size} bytes", headers=_CLOSE) from None
    return b"".join(chunks)


def parse_json(body: bytes, budget: JsonBudget | None = None, model: str | None = None) -> dict:
    """The body as a JSON object; with a ``budget``, a body that holds more lists/values than any valid
    request to ``model`` is refused (413) from byte counts before it is parsed."""
    if not body:
        raise InvalidRequest("empty request body; expected a JSON object", expected="JSON object", received="empty")
    check_json_budget(body, budget, model)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        hint = ""
        if b"NaN" in body or b"Infinity" in body:
            hint = " (NaN and Infinity are not valid JSON numbers; send finite values)"
        raise InvalidRequest(f"malformed JSON: {e}{hint}", expected="JSON object", received="invalid JSON") from None
    if not isinstance(payload, dict):
        raise InvalidRequest(f"the body must be a JSON object, got {type(payload).__name__}",
                             expected="JSON object", received=type(payload).__name__)
    return payload


def deadline_from(payload_timeout_ms, header_value: str | None, default_ms: float | None) -> float | None:
    """A monotonic deadline from the body's ``timeout_ms``, else the header, else the default."""
    value = payload_timeout_ms
    field = "timeout_ms"
    if value is None and header_value is not None:
        field = "X-Request-Timeout-Ms"
        try:
            value = float(header_value)
        except ValueError:
            raise InvalidRequest("X-Request-Timeout-Ms must be a number of milliseconds", field=field,
                                 received=header_value[:40]) from None
    if value is None:
        value = default_ms
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value <= 3_600_000):
        raise InvalidRequest(f"{field} must be a number of milliseconds in (0, 3600000]", field=field,
                             expected="(0, 3600000]", received=str(value)[:40])
    return time.monotonic() + value / 1000.0


class instrument:
    """``with instrument(metrics, route) as obs:``: count the request and time it, by model/route/status,
    whatever happens (``obs.model``/``obs.code`` may be set inside; an exception sets the code it maps
    to). A class, not a generator context manager: it runs on every request."""

    __slots__ = ("metrics", "route", "model", "code", "t0")

    def __init__(self, metrics: Metrics, route: str):
        self.metrics, self.route = metrics, route
        self.model, self.code = "unknown", 200

    def __enter__(self):
        self.t0 = time.monotonic()
        return self

    def __exit__(self, kind, exc, tb):
        if exc is not None and self.code == 200:
            self.code = to_service_error(exc).status if isinstance(exc, (ServiceError, BatcherError)) else 500
        self.metrics.observe_request(self.model, self.route, str(self.code), time.monotonic() - self.t0)
        return False


def content_type(request: Request) -> str:
    """The request's media type, lower case, without parameters (``"image/png"``, ``""`` when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def multipart_file(request: Request, body: bytes) -> bytes:
    """The first uploaded file of a multipart body (already read under the size limit)."""
    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, receive).form(max_files=1, max_fields=8)
    except Exception as e:  # noqa: BLE001 - malformed multipart
        raise InvalidRequest(f"malformed multipart body: {e}", field="image") from None
    try:
        files = [v for v in form.values() if hasattr(v, "read")]
        if not files:
            raise InvalidRequest("the multipart body holds no file; send the image as a file field named 'image'",
                                 field="image")
        return await files[0].read()
    finally:
        await form.close()

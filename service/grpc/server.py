"""KServe v2 / Triton over gRPC (``inference.GRPCInferenceService``) on its own port; TF Serving's gRPC API
(:mod:`service.grpc.tfserving_api`) is served on the same server and port. The transport is
:mod:`service.grpc.h2` (this project's HTTP/2 server for unary calls, on the app's event loop); grpcio
provides the generated stubs' handler registrations and the status codes.

RPCs: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelConfig, ModelInfer,
ModelStatistics, RepositoryIndex, RepositoryModelLoad and RepositoryModelUnload (model control as
``TPSERVE_MODEL_CONTROL`` allows: FAILED_PRECONDITION otherwise). A ``version`` / ``model_version`` is
a number or one of the model's version labels. Every answer is the HTTP v2 route's, in protobuf: the same
metadata, configuration, index, statistics (:mod:`service.protocols.stats`), validation
(:mod:`service.validation`) and error texts; errors carry the gRPC code of :data:`GRPC_CODES`.

ModelInfer:

* inputs as ``raw_input_contents`` (one little-endian byte string per input, what ``tritonclient``
  sends; the fast path) or typed ``contents`` (``fp32_contents``, ``int_contents``, ...: every input
  the same way). Outputs come back the same way: ``raw_output_contents`` for raw requests, ``contents``
  for typed ones (FP16 has no typed field: then every output is raw).
* ``outputs[i].parameters["classification"]`` (int64 k): the k highest values per row as BYTES
  ``"value:index[:label]"``, as over HTTP.
* deadline: the earliest of the call's gRPC deadline, ``parameters["timeout"]`` (int64 microseconds,
  Triton's per-request timeout) and ``TPSERVE_DEFAULT_TIMEOUT_MS``.
* counted in ``tpserve_requests_total`` / ``tpserve_request_duration_seconds`` with route
  ``grpc:infer`` and the HTTP status the same error gets over HTTP (a call cancelled by its client: 499,
  or 504 when its gRPC deadline passed).

Models are reached only through the manager interface (``get``/``find``/``entries``/``readiness``/
``liveness``/``version_not_loaded``/``load``/``unload``/``accepting``) and :func:`service.inference.infer`,
so a front-end process can serve this over a mirror of the engine's manager.

API keys (``TPSERVE_API_KEYS``): as over HTTP, ``authorization: Bearer <key>`` metadata on every RPC
but the health ones that ``open_paths`` leaves open (``/v2/health/live`` -> ServerLive,
``/v2/health/ready`` -> ServerReady); missing: UNAUTHENTICATED, wrong: PERMISSION_DENIED.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import struct
import time

import grpc
import numpy as np
from google.protobuf import json_format

from ..batcher import BatcherError
from ..errors import InvalidRequest, ServiceError, clip
from ..http import deadline_from, instrument, to_service_error
from ..inference import infer
from ..protocols import kserve
from ..protocols.stats import model_statistics
from ..validation import check_batch
from . import kserve_v2_pb2 as pb
from . import kserve_v2_pb2_grpc as pb_grpc
from .h2 import H2Server, Registry

__all__ = ["start_grpc_server", "GrpcServer", "GRPC_CODES", "grpc_status", "answer", "call_deadline"]

logger = logging.getLogger("tpserve")

SERVICE = "inference.GRPCInferenceService"
ROUTE = "grpc:infer"

# The one mapping from service errors to gRPC: by the HTTP status the same error gets over HTTP
# (service.http.to_service_error), so both protocols classify every error alike.
GRPC_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.FAILED_PRECONDITION,   # model control the server's mode does not allow
    413: grpc.StatusCode.INVALID_ARGUMENT,      # larger than the queue could ever hold: retrying cannot help
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,    # queue full: retry later (trailers say when)
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

# Where typed contents of each datatype travel (InferTensorContents); FP16 has no field (raw only).
_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
             "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
             "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
             "FP64": "fp64_contents", "BYTES": "bytes_contents"}
_CONTENT_FIELDS = sorted(set(_CONTENTS.values()))
_OPEN_PATHS = {"/v2/health/live": "ServerLive", "/v2/health/ready": "ServerReady"}


def grpc_status(exc: Exception) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    """(code, message, trailing metadata) for a service or batcher error. A full queue (429) carries its
    retry hint as ``retry-after`` (seconds, as the HTTP header) and ``grpc-retry-pushback-ms`` (which
    gRPC clients with a retry policy honour)."""
    err = to_service_error(exc)
    code = GRPC_CODES.get(err.status, grpc.StatusCode.UNKNOWN)
    trailers: tuple[tuple[str, str], ...] = ()
    retry = err.headers.get("Retry-After")
    if retry is not None:
        trailers = (("retry-after", retry), ("grpc-retry-pushback-ms", str(int(retry) * 1000)))
    message = err.message
    if err.field is not None:
        message = f"{message} (field: {err.field})"
    return code, message, trailers


async def answer(context, fn, *args):
    """``await fn(*args)``; a service or batcher error aborts the call with its :data:`GRPC_CODES` code (and
    trailers), anything else with INTERNAL (logged; the client learns nothing of the internals)."""
    try:
        return await fn(*args)
    except (ServiceError, BatcherError) as e:
        code, message, trailers = grpc_status(e)
    except Exception:  # noqa: BLE001 - the client learns nothing of the internals
        logger.exception("gRPC %s failed", getattr(fn, "__name__", fn))
        code, message, trailers = grpc.StatusCode.INTERNAL, "internal server error (the server log has the " \
                                                             "details)", ()
    if trailers:
        context.set_trailing_metadata(trailers)
    await context.abort(code, message)


def _version(v: str) -> str | None:
    return v or None


def _tensor_metadata(rows: list[dict]):
    return [pb.ModelMetadataResponse.TensorMetadata(name=t["name"], datatype=t["datatype"], shape=t["shape"])
            for t in rows]


class Servicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, settings, manager, metrics):
        self.settings = settings
        self.manager = manager
        self.metrics = metrics

    # ------------------------------------------------------------------ plumbing
    async def _answer(self, context, fn, *args):
        return await answer(context, fn, *args)

    @staticmethod
    def _name(name: str, field: str = "name") -> str:
        if not name:
            raise InvalidRequest(f"'{field}' is required (the model's name)", field=field)
        return name

    # ------------------------------------------------------------------ health and metadata
    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=self.manager.liveness() is None)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.manager.readiness()[0])

    async def ModelReady(self, request, context):
        async def ready():
            name, version = self._name(request.name), _version(request.version)
            entry = self.manager.find(name, version)
            ok = entry.state == "READY" and entry.health() is None and (version is not None or self.manager.accepting)
            return pb.ModelReadyResponse(ready=ok)
        return await self._answer(context, ready)

    async def ServerMetadata(self, request, context):
        meta = await kserve.server_metadata()
        return pb.ServerMetadataResponse(name=meta["name"], version=meta["version"], extensions=meta["extensions"])

    async def ModelMetadata(self, request, context):
        async def metadata():
            name, version = self._name(request.name), _version(request.version)
            m = kserve._model_metadata(self.manager.find(name, version))
            return pb.ModelMetadataResponse(name=m["name"], versions=m["versions"], platform=m["platform"],
                                            inputs=_tensor_metadata(m["inputs"]),
                                            outputs=_tensor_metadata(m["outputs"]))
        return await self._answer(context, metadata)

    async def ModelConfig(self, request, context):
        async def config():
            entry = self.manager.find(self._name(request.name), _version(request.version))
            out = pb.ModelConfigResponse()
            json_format.ParseDict(kserve._model_config(entry), out.config, ignore_unknown_fields=True)
            return out
        return await self._answer(context, config)

    async def ModelStatistics(self, request, context):
        async def statistics():
            stats = model_statistics(self.manager, self.metrics.registry, request.name or None,
                                     _version(request.version))
            return json_format.ParseDict(stats, pb.ModelStatisticsResponse(), ignore_unknown_fields=True)
        return await self._answer(context, statistics)

    # ------------------------------------------------------------------ repository
    async def RepositoryIndex(self, request, context):
        out = pb.RepositoryIndexResponse()
        for row in kserve.repository_index(self.manager, request.ready):
            out.models.add(name=row["name"], version=row.get("version", ""), state=row["state"],
                           reason=row.get("reason", ""))
        return out

    async def _control(self, context, request, action: str, allowed: set[str]):
        async def control():
            name = self._name(request.model_name, "model_name")
            unsupported = sorted(set(request.parameters) - allowed)
            if unsupported:
                raise InvalidRequest(f"{action} parameters {unsupported} are not supported: models are read from "
                                     "the model repository (edit its files, then load)", field="parameters",
                                     received=unsupported)
            result = await getattr(self.manager, action)(name)
            answer, status = kserve.control_answer(self.manager, name, result)
            if status != 200:
                raise ServiceError(answer["error"])
            return (pb.RepositoryModelLoadResponse if action == "load" else pb.RepositoryModelUnloadResponse)()
        return await self._answer(context, control)

    async def RepositoryModelLoad(self, request, context):
        return await self._control(context, request, "load", set())

    async def RepositoryModelUnload(self, request, context):
        return await self._control(context, request, "unload", {"unload_dependents"})

    # ------------------------------------------------------------------ inference
    async def ModelInfer(self, request, context):
        return await self._answer(context, self._infer, request, context)

    async def _infer(self, request, context):
        settings, manager = self.settings, self.manager
        with instrument(self.metrics, ROUTE) as obs:
            try:
                version = _version(request.model_version)
                entry = manager.get(self._name(request.model_name, "model_name"), version)
                obs.model = entry.name
                model = entry.model
                raw = len(request.raw_input_contents) > 0
                arrays = check_batch(model.inputs, _input_arrays(model, request, settings.max_rows_per_request),
                                     settings.max_rows_per_request, "inputs",
                                     {n: f"inputs[{i}]" for i, n in enumerate(t.name for t in request.inputs)},
                                     getattr(entry.config, "validate_range", True))
                wanted = _requested_outputs(model, request)
                deadline = _deadline(request, context, settings.default_timeout_ms)
                out, served = await infer(manager, entry, arrays, deadline, version)
                return _response(model, request, out, served, wanted, raw)
            except asyncio.CancelledError:
                remaining = context.time_remaining()
                obs.code = 504 if remaining is not None and remaining <= 0 else 499
                raise


def _input_arrays(model, request, max_rows: int) -> dict[str, np.ndarray]:
    """The request's inputs as arrays, as sent (errors as the HTTP v2 route's); not yet checked against the specs."""
    if not request.inputs:
        raise InvalidRequest("'inputs' must be a non-empty list of tensors", field="inputs")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidRequest(f"raw_input_contents holds {len(raw)} tensors for {len(request.inputs)} inputs: "
                             "send every input raw or none", field="raw_input_contents",
                             expected=len(request.inputs), received=len(raw))
    specs = {s.name: s for s in model.inputs}
    arrays = {}
    for i, t in enumerate(request.inputs):
        field = f"inputs[{i}]"
        name, dt, shape = t.name, t.datatype, list(t.shape)
        if name not in specs:
            raise InvalidRequest(f"{field}: unknown input {clip(name, 60)!r}; this model takes {sorted(specs)}",
                                 field=f"{field}.name", expected=sorted(specs), received=clip(name, 60))
        if name in arrays:
            raise InvalidRequest(f"{field}: input {name!r} given twice", field=f"{field}.name")
        if dt not in kserve.DATATYPES:
            raise InvalidRequest(f"{field}: unsupported datatype {clip(dt, 20)!r}", field=f"{field}.datatype",
                                 expected=sorted(kserve.DATATYPES), received=clip(dt, 20))
        count = kserve.declared_count(shape, field, max_rows)
        dtype = np.dtype(kserve.DATATYPES[dt])
        if raw:
            data = raw[i]
            if len(data) != count * dtype.itemsize:
                raise InvalidRequest(f"{field}: raw_input_contents[{i}] holds {len(data)} bytes; shape {shape} of "
                                     f"{dt} is {count * dtype.itemsize} bytes", field=f"raw_input_contents[{i}]",
                                     expected=count * dtype.itemsize, received=len(data))
            if t.HasField("contents"):
                raise InvalidRequest(f"{field}: data in both 'contents' and raw_input_contents",
                                     field=f"{field}.contents")
            arr = np.frombuffer(data, dtype=dtype.newbyteorder("<")).reshape(shape)
            if dt == "BOOL" and arr.size and arr.view(np.uint8).max() > 1:
                raise InvalidRequest(f"{field}: BOOL raw data must be bytes 0 or 1", field=f"raw_input_contents[{i}]")
        else:
            arr = _typed_contents(t, dt, dtype, count, field).reshape(shape)
        if shape[0] > max_rows:
            raise InvalidRequest(f"{field}: {shape[0]} rows, limit is {max_rows}", field=f"{field}.shape")
        arrays[name] = arr
    missing = sorted(set(specs) - set(arrays))
    if missing:
        raise InvalidRequest(f"missing input(s) {missing}", field="inputs", expected=sorted(specs))
    return arrays    # checked by validation.check_batch, as every codec's


def _typed_contents(t, dt: str, dtype: np.dtype, count: int, field: str) -> np.ndarray:
    where = _CONTENTS.get(dt)
    if where is None:
        raise InvalidRequest(f"{field}: {dt} has no typed contents field; send it in raw_input_contents",
                             field=f"{field}.contents")
    c = t.contents
    misplaced = [f for f in _CONTENT_FIELDS if f != where and len(getattr(c, f))]
    if misplaced:
        raise InvalidRequest(f"{field}: {dt} data goes in contents.{where}, not in contents.{misplaced[0]}",
                             field=f"{field}.contents.{misplaced[0]}", expected=f"contents.{where}")
    values = getattr(c, where)
    if len(values) != count:
        raise InvalidRequest(f"{field}: contents.{where} has {len(values)} elements, shape {list(t.shape)} needs "
                             f"{count}", field=f"{field}.contents.{where}", expected=count, received=len(values))
    wide = np.array(values, dtype=np.float32 if dt == "FP32" else None)
    if dtype.kind in "iu" and wide.size:
        # int_contents/uint_contents are 32-bit: INT8/16 and UINT8/16 values must fit the declared type
        info = np.iinfo(dtype)
        if wide.min() < info.min or wide.max() > info.max:
            raise InvalidRequest(f"{field}: contents.{where} must hold integers in [{info.min}, {info.max}] for {dt}",
                                 field=f"{field}.contents.{where}", expected=f"{dt} integers")
    return wide.astype(dtype, copy=False) if wide.size else np.zeros(0, dtype)


def _requested_outputs(model, request) -> list[tuple[str, int]]:
    """(output name, classification count; 0 = the tensor itself), checked before inference."""
    specs = {s.name: s for s in model.outputs}
    names = list(specs)
    if not request.outputs:
        return [(n, 0) for n in names]
    out = []
    for i, o in enumerate(request.outputs):
        if o.name not in specs:
            raise InvalidRequest(f"outputs[{i}]: unknown output {clip(o.name)!r}; this model has {names}",
                                 field=f"outputs[{i}].name", expected=names, received=clip(o.name))
        k = 0
        if "classification" in o.parameters:
            p = o.parameters["classification"]
            kind = p.WhichOneof("parameter_choice")
            k = getattr(p, kind) if kind in ("int64_param", "uint64_param") else None
            if k is None or k < 0:
                raise InvalidRequest(f"outputs[{i}].parameters.classification must be a non-negative integer (how "
                                     "many classes to return; 0 = the tensor itself)",
                                     field=f"outputs[{i}].parameters.classification", expected="int64_param >= 0",
                                     received=kind)
            if k and np.dtype(specs[o.name].dtype).kind not in "iuf":
                raise InvalidRequest(f"outputs[{i}]: classification needs a numeric output; {o.name!r} is "
                                     f"{np.dtype(specs[o.name].dtype).name}",
                                     field=f"outputs[{i}].parameters.classification")
        out.append((o.name, k))
    return out


def _deadline(request, context, default_ms: float | None) -> float | None:
    timeout_ms = None
    if "timeout" in request.parameters:
        p = request.parameters["timeout"]
        kind = p.WhichOneof("parameter_choice")
        us = getattr(p, kind) if kind in ("int64_param", "uint64_param") else None
        if us is None or not 0 < us <= 3_600_000_000:
            raise InvalidRequest("parameters.timeout must be an integer number of microseconds in (0, 3600000000]",
                                 field="parameters.timeout", expected="int64_param in (0, 3600000000]",
                                 received=kind if us is None else us)
        timeout_ms = us / 1000.0
    return call_deadline(context, timeout_ms, default_ms)


def call_deadline(context, timeout_ms: float | None, default_ms: float | None) -> float | None:
    """The earliest of the call's gRPC deadline, ``timeout_ms`` (None: ``default_ms``) from now."""
    deadline = deadline_from(timeout_ms, None, default_ms)
    remaining = context.time_remaining()
    if remaining is not None:
        call_deadline = time.monotonic() + max(0.0, remaining)
        deadline = call_deadline if deadline is None else min(deadline, call_deadline)
    return deadline


def _response(model, request, out: dict[str, np.ndarray], served: str, wanted, raw: bool):
    resp = pb.ModelInferResponse(model_name=request.model_name, model_version=served, id=request.id)
    tensors = []
    for name, k in wanted:
        a = np.ascontiguousarray(out[name])
        if k:
            strings = kserve._classes(a, k, model.labels)
            tensors.append((name, "BYTES", [len(a), min(k, a.size // max(len(a), 1))], strings))
        else:
            tensors.append((name, kserve.v2_datatype(a.dtype), list(a.shape), a))
    raw = raw or any(dt == "FP16" for _, dt, _, _ in tensors)     # FP16 has no typed field
    for name, dt, shape, data in tensors:
        t = resp.outputs.add(name=name, datatype=dt, shape=shape)
        if dt == "BYTES":
            if raw:
                resp.raw_output_contents.append(b"".join(struct.pack("<I", len(s)) + s for s in data))
            else:
                t.contents.bytes_contents.extend(data)
        elif raw:
            resp.raw_output_contents.append(data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes())
        else:
            getattr(t.contents, _CONTENTS[dt]).extend(data.reshape(-1).tolist())
    return resp


def api_key_check(keys: list[str], open_methods: set[str]):
    """``check(method, metadata) -> None | (code, message)``: ``authorization: Bearer <key>`` metadata on every
    RPC but ``open_methods`` (keys compared in constant time, every one)."""
    keys_b = [k.encode() for k in keys]
    open_paths = {f"/{SERVICE}/{m}" for m in open_methods}

    def check(method: str, metadata) -> tuple[int, str] | None:
        if method in open_paths:
            return None
        token = None
        for key, value in metadata or ():
            if key == "authorization":
                scheme, _, rest = (value.decode() if isinstance(value, bytes) else value).partition(" ")
                if scheme.lower() == "bearer":
                    token = rest.strip().encode()
                break
        if token is None:
            return (grpc.StatusCode.UNAUTHENTICATED.value[0],
                    "missing API key: send 'authorization: Bearer <key>' metadata")
        ok = False
        for key in keys_b:          # no early exit: every key is compared
            ok |= hmac.compare_digest(token, key)
        return None if ok else (grpc.StatusCode.PERMISSION_DENIED.value[0], "invalid API key")
    return check


class GrpcServer:
    """A started gRPC server: ``port`` (the bound one), ``await stop(grace_s)``."""

    def __init__(self, server: H2Server, address: str, port: int):
        self._server = server
        self.address = address
        self.port = port

    async def stop(self, grace_s: float | None = 5.0):
        """Refuse new RPCs at once; RPCs in progress get ``grace_s`` seconds to finish, then are cancelled."""
        await self._server.stop(grace_s)


async def start_grpc_server(settings, manager, metrics, *, host: str | None = None, port: int | None = None,
                            reuse_port: bool = False) -> GrpcServer:
    """Start serving ``inference.GRPCInferenceService`` (and TF Serving's services) on ``host:port`` (default
    ``settings.host`` and ``settings.grpc_port``; port 0 here binds any free port: read ``.port``), over
    :mod:`service.grpc.h2`. Call it on the event loop that runs ``manager`` (the app's). ``reuse_port``: let
    several processes bind the same port (SO_REUSEPORT, the kernel spreads connections); off by default, so a
    port already taken fails loudly instead of being shared."""
    host = settings.host if host is None else host
    port = settings.grpc_port if port is None else port
    registry = Registry()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(settings, manager, metrics), registry)
    from .tfserving_api import add_tfserving_servicers
    add_tfserving_servicers(registry, settings, manager, metrics)     # TF Serving's API on the same port
    keys = list(settings.api_keys)
    authorize = api_key_check(keys, {m for p, m in _OPEN_PATHS.items() if p in settings.open_paths}) if keys else None
    server = H2Server(registry.handlers, max_message=settings.max_body_bytes, max_calls=settings.max_connections,
                      max_connections=settings.max_connections, max_header_bytes=settings.max_header_bytes,
                      authorize=authorize)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = await server.start(host, port, reuse_port=reuse_port)
    except OSError as e:
        raise OSError(f"cannot listen for gRPC on {address}: {e}") from None
    logger.info("gRPC (KServe v2 / Triton, TF Serving) listening on %s", address.rsplit(":", 1)[0] + f":{bound}")
    return GrpcServer(server, address, bound)

"""KServe v2 / Triton HTTP protocol, with Triton's binary tensor data, classification, model
configuration and model repository extensions.

* ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``
* ``GET /v2/models/{name}[/versions/{v}]`` (metadata), ``.../ready``, ``.../config`` (Triton's model
  configuration JSON). ``{v}`` is a version number or one of the model's version labels; without it,
  the newest loaded version answers.
* ``POST /v2/models/{name}[/versions/{v}]/infer``: JSON tensors, or a JSON header of
  ``Inference-Header-Content-Length`` bytes followed by raw little-endian tensor bytes for inputs
  whose ``parameters.binary_data_size`` is set. Outputs come back as binary when requested
  (``outputs[i].parameters.binary_data`` or ``parameters.binary_data_output``: JSON booleans, as in
  Triton). ``outputs[i].parameters.classification = k`` returns, per row, the k highest values of
  that output as BYTES strings ``"value:index"`` or ``"value:index:label"`` (Triton's format; labels
  when the model has one per element of the output).
* ``POST /v2/repository/index``: every loaded model version and its state.
* ``POST /v2/repository/models/{name}/load`` / ``unload``: model control (``TPSERVE_MODEL_CONTROL``).
"""
from __future__ import annotations

import struct

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..errors import InvalidRequest, ModelNotReady, clip
from ..http import json_response, parse_json, read_body
from ..pipeline import Codec, run
from ..schemas import (
    V2_INDEX_REQUEST_BODY,
    V2_REQUEST_BODY,
    V2HealthReady,
    V2IndexEntry,
    V2InferResponse,
    V2ModelConfig,
    V2ModelMetadata,
    V2Ready,
    error_responses,
)
from ..validation import check_input_names, check_json_budget, check_outputs, numbers_array

__all__ = ["router", "DATATYPES"]

router = APIRouter(tags=["KServe v2 protocol"])

DATATYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
             "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
             "FP32": np.float32, "FP64": np.float64}
_NP_TO_V2 = {np.dtype(v): k for k, v in DATATYPES.items()}
HEADER_LEN = "inference-header-content-length"


def declared_count(shape, field: str, max_rows: int) -> int:
    """The element count of a tensor's declared ``shape`` (HTTP JSON, binary and gRPC alike): a list of
    at most 8 non-negative integers, refused (400) before anything is allocated when it is far beyond
    what any request can hold."""
    if (not isinstance(shape, list) or not shape or len(shape) > 8
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d for d in shape)):
        raise InvalidRequest(f"{field}: 'shape' must be a list of non-negative integers", field=f"{field}.shape",
                             received=str(shape)[:80])
    count = 1
    for d in shape:
        count *= d
        if count > max_rows * 10_000_000:
            raise InvalidRequest(f"{field}: declared shape {shape} is far larger than any request can be",
                                 field=f"{field}.shape", received=shape)
    return count


def v2_datatype(dtype) -> str:
    return _NP_TO_V2.get(np.dtype(dtype), "BYTES")


@router.get("/v2", summary="Server metadata")
async def server_metadata():
    return {"name": "tpserve", "version": "0.1.0", "extensions": [
        "binary_tensor_data", "classification", "model_configuration", "model_repository", "statistics"]}


@router.get("/v2/health/live", summary="Liveness (the same answer as /healthz)",
            responses={503: {"description": "not live: a batch has hung past TPSERVE_LIVENESS_STUCK_BATCH_S"}})
async def live(request: Request):
    why = request.app.state.manager.liveness()
    if why is not None:
        return json_response({"live": False, "reason": why}, status=503)
    return {"live": True}


@router.get("/v2/health/ready", summary="Readiness", response_model=V2HealthReady,
            responses={503: {"model": V2HealthReady, "description": "not ready (reasons say why)"}})
async def ready(request: Request):
    ok, reasons = request.app.state.manager.readiness()
    return json_response({"ready": ok, **({} if ok else {"reasons": reasons})}, status=200 if ok else 503)


def _model_metadata(entry):
    m = entry.model
    if m is None:
        raise ModelNotReady(f"model {entry.name!r} is {entry.state}" + (f": {entry.error}" if entry.error else ""))
    return {"name": entry.name, "versions": entry.versions, "platform": "tensorflow_graphdef",
            "inputs": [{"name": s.name, "datatype": v2_datatype(s.dtype), "shape": [-1, *[
                -1 if d is None else d for d in s.shape]]} for s in m.inputs],
            "outputs": [{"name": s.name, "datatype": v2_datatype(s.dtype), "shape": [-1, *[
                -1 if d is None else d for d in s.shape]]} for s in m.outputs]}


_META = {"response_model": V2ModelMetadata, "responses": error_responses(404, 503)}
_READY = {"response_model": V2Ready, "responses": {**error_responses(404),
                                                   503: {"model": V2Ready, "description": "not ready"}}}
_INFER = {"openapi_extra": V2_REQUEST_BODY, "response_model": V2InferResponse,
          "responses": {200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                              "description": "JSON, or with binary outputs a JSON header of "
                                             "Inference-Header-Content-Length bytes followed by the raw tensors"},
                        **error_responses(400, 404, 408, 413, 429, 500, 503, 504)}}


@router.get("/v2/models/{name}", summary="Model metadata", **_META)
async def model_metadata(request: Request, name: str):
    return json_response(_model_metadata(request.app.state.manager.find(name)))


@router.get("/v2/models/{name}/versions/{version}", summary="Model metadata (a version by number or label)", **_META)
async def model_version_metadata(request: Request, name: str, version: str):
    return json_response(_model_metadata(request.app.state.manager.find(name, version)))


@router.get("/v2/models/{name}/ready", summary="Model readiness", **_READY)
async def model_ready(request: Request, name: str):
    entry = request.app.state.manager.find(name)
    ok = entry.state == "READY" and request.app.state.manager.accepting and entry.health() is None
    return json_response({"name": name, "ready": ok}, status=200 if ok else 503)


@router.get("/v2/models/{name}/versions/{version}/ready", summary="Model version readiness (number or label)",
            **_READY)
async def model_version_ready(request: Request, name: str, version: str):
    entry = request.app.state.manager.find(name, version)
    ok = entry.state == "READY" and entry.health() is None
    return json_response({"name": name, "ready": ok}, status=200 if ok else 503)


# Triton's model configuration types (model_config.proto): TYPE_ + the v2 datatype, BYTES is TYPE_STRING
_CONFIG_TYPES = {**{k: f"TYPE_{k}" for k in DATATYPES}, "BYTES": "TYPE_STRING"}


def _tensor_config(spec, is_input: bool) -> dict:
    out = {"name": spec.name, "data_type": _CONFIG_TYPES[v2_datatype(spec.dtype)]}
    if is_input:
        out["format"] = "FORMAT_NONE"
    dims = [-1 if d is None else d for d in spec.shape]
    # dims exclude the batch dimension; one value per row is Triton's dims [1] reshaped to []
    out.update({"dims": dims} if dims else {"dims": [1], "reshape": {"shape": []}})
    return out


def _model_config(entry) -> dict:
    m = entry.model
    if m is None:
        raise ModelNotReady(f"model {entry.name!r} is {entry.state}" + (f": {entry.error}" if entry.error else ""))
    b = entry.batching
    gpus = [int(d.rsplit(":", 1)[1]) for d in m.devices if d.startswith("/gpu")]
    group = {"name": entry.name, "kind": "KIND_GPU", "count": 1, "gpus": gpus} if gpus else \
        {"name": entry.name, "kind": "KIND_CPU", "count": len(m.devices)}
    return {"name": entry.name, "platform": "tensorflow_graphdef", "backend": "tensorflow",
            "version_policy": entry.config.version_policy.to_config() if entry.config is not None else {},
            "max_batch_size": b.max_batch_size,
            "input": [_tensor_config(s, True) for s in m.inputs],
            "output": [_tensor_config(s, False) for s in m.outputs],
            "dynamic_batching": {"max_queue_delay_microseconds": round(b.max_queue_delay_ms * 1000)},
            "instance_group": [group],
            "parameters": {"architecture": {"string_value": str(m.architecture)}}}


_CONFIG = {"response_model": V2ModelConfig, "responses": error_responses(404, 503)}


@router.get("/v2/models/{name}/config", summary="Model configuration (Triton's model configuration extension)",
            **_CONFIG)
async def model_config(request: Request, name: str):
    return json_response(_model_config(request.app.state.manager.find(name)))


@router.get("/v2/models/{name}/versions/{version}/config", summary="Model configuration (a version by number or "
            "label)", **_CONFIG)
async def model_version_config(request: Request, name: str, version: str):
    return json_response(_model_config(request.app.state.manager.find(name, version)))


def repository_index(manager, ready_only: bool = False) -> list[dict]:
    """Triton's repository index: a row per loaded version of each model (``READY``, or ``UNAVAILABLE`` when
    that version's batches fail or hang), and one row for a model with none loaded (``LOADING``, or
    ``UNAVAILABLE`` when it failed or was unloaded, with the reason). ``ready_only``: the READY rows."""
    rows = []
    for e in manager.entries.values():
        for slot in e.slots.values():
            unhealthy = slot.health()
            reason = "; ".join(x for x in (unhealthy, e.error if slot is e.newest else None) if x)
            rows.append({"name": e.name, "version": slot.version, "state": "UNAVAILABLE" if unhealthy else "READY",
                         **({"reason": reason} if reason else {})})
        if not e.slots:
            state = "LOADING" if e.state == "LOADING" else "UNAVAILABLE"      # FAILED, UNLOADED
            rows.append({"name": e.name, "state": state, **({"reason": e.error} if e.error else {})})
    return [r for r in rows if r["state"] == "READY"] if ready_only else rows


@router.post("/v2/repository/index", summary="Every model version and its state (Triton's repository "
             "extension)", response_model=list[V2IndexEntry], openapi_extra=V2_INDEX_REQUEST_BODY,
             responses=error_responses(400, 408, 413))
async def repository_index_route(request: Request):
    body = await read_body(request, 64 * 1024)
    ready_only = False
    if body.strip():
        ready_only = parse_json(body).get("ready", False)
        if not isinstance(ready_only, bool):
            raise InvalidRequest("'ready' must be a JSON boolean", field="ready", expected="true or false",
                                 received=clip(ready_only, 20))
    return json_response(repository_index(request.app.state.manager, ready_only))


async def _control_body(request: Request, action: str):
    """A load/unload request body: empty, or ``{"parameters": {...}}`` whose only accepted key is unload's
    ``unload_dependents`` (no dependents here); a config or files in the load request are refused (400):
    this server reads models from its repository."""
    body = await read_body(request, 64 * 1024)
    if not body.strip():
        return
    params = parse_json(body).get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidRequest("'parameters' must be a JSON object", field="parameters", received=clip(params, 40))
    unsupported = sorted(set(params) - ({"unload_dependents"} if action == "unload" else set()))
    if unsupported:
        raise InvalidRequest(f"{action} parameters {unsupported} are not supported: models are read from the "
                             "model repository (edit its files, then load)", field="parameters",
                             received=unsupported)


def control_answer(manager, name: str, result: str) -> tuple[dict, int]:
    """The JSON answer (and status) of a load or unload: 500 when the load failed."""
    entry = manager.entries.get(name)
    versions = entry.versions if entry is not None else []
    body = {"name": name, "version": versions[-1] if versions else None, "versions": versions}
    if result.startswith("failed") or "; failed" in result or result.startswith("no version") or \
            (entry is not None and entry.state == "FAILED"):
        return {"error": f"model {name!r}: {result}", **body}, 500
    return {**body, "result": result}, 200


@router.post("/v2/repository/models/{name}/load", summary="Load a model now (Triton's repository extension)",
             description="Reads the model's config from the repository and serves the versions its version policy "
                         "selects. TPSERVE_MODEL_CONTROL=poll: polls this model now; explicit: also loads a model "
                         "that is not loaded (or new in the repository); none: refused (409).",
             responses=error_responses(400, 404, 409, 500))
async def repository_load(request: Request, name: str):
    await _control_body(request, "load")
    manager = request.app.state.manager
    answer, status = control_answer(manager, name, await manager.load(name))
    return json_response(answer, status=status)


@router.post("/v2/repository/models/{name}/unload", summary="Unload a model (Triton's repository extension)",
             description="TPSERVE_MODEL_CONTROL=explicit only (else 409). New requests to the model get 404 at once; "
                         "the requests it had accepted are answered (its queues drain) before this returns.",
             responses=error_responses(400, 404, 409))
async def repository_unload(request: Request, name: str):
    await _control_body(request, "unload")
    manager = request.app.state.manager
    answer, status = control_answer(manager, name, await manager.unload(name))
    return json_response(answer, status=status)


def _parse_request(body: bytes, header_len: str | None, budget=None, model: str | None = None):
    if header_len is not None:
        try:
            n = int(header_len)
        except ValueError:
            raise InvalidRequest("Inference-Header-Content-Length must be an integer", field=HEADER_LEN,
                                 received=header_len[:40]) from None
        if not 0 < n <= len(body):
            raise InvalidRequest(f"Inference-Header-Content-Length {n} does not fit the {len(body)}-byte body",
                                 field=HEADER_LEN, expected=f"1..{len(body)}", received=n)
        head, binary = body[:n], memoryview(body)[n:]
    else:
        head, binary = body, memoryview(b"")
    check_json_budget(bytes(head), budget, model)      # before parsing: see service.validation
    try:
        payload = orjson.loads(head)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"malformed JSON in the inference header: {e}") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("the inference request must be a JSON object")
    return payload, binary


def _input_arrays(model, payload, binary, max_rows):
    """The request's tensors (JSON ``data`` or binary) -> (one array per input, as declared and sent;
    where each one is in the request, for error messages)."""
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequest("'inputs' must be a non-empty list of tensors", field="inputs")
    specs = {s.name: s for s in model.inputs}
    arrays, fields, offset = {}, {}, 0
    for i, t in enumerate(inputs):
        field = f"inputs[{i}]"
        if not isinstance(t, dict):
            raise InvalidRequest(f"{field} must be an object", field=field)
        name, shape, dt = t.get("name"), t.get("shape"), t.get("datatype")
        if not isinstance(name, str) or name not in specs:
            raise InvalidRequest(f"{field}: unknown input {str(name)[:60]!r}; this model takes {sorted(specs)}",
                                 field=f"{field}.name", expected=sorted(specs), received=str(name)[:60])
        if name in arrays:
            raise InvalidRequest(f"{field}: input {name!r} given twice", field=f"{field}.name")
        if not isinstance(dt, str) or dt not in DATATYPES:
            raise InvalidRequest(f"{field}: unsupported datatype {str(dt)[:20]!r}", field=f"{field}.datatype",
                                 expected=sorted(DATATYPES), received=str(dt)[:20])
        count = declared_count(shape, field, max_rows)
        dtype = np.dtype(DATATYPES[dt])
        params = t.get("parameters")
        params = {} if params is None else params
        if not isinstance(params, dict):
            raise InvalidRequest(f"{field}: 'parameters' must be an object", field=f"{field}.parameters",
                                 received=type(params).__name__)
        size = params.get("binary_data_size")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise InvalidRequest(f"{field}: binary_data_size must be a non-negative integer",
                                     field=f"{field}.parameters.binary_data_size", received=str(size)[:20])
            if size != count * dtype.itemsize:
                raise InvalidRequest(f"{field}: binary_data_size {size} does not match shape {shape} of {dt} "
                                     f"({count * dtype.itemsize} bytes)", field=f"{field}.parameters.binary_data_size",
                                     expected=count * dtype.itemsize, received=size)
            if offset + size > len(binary):
                raise InvalidRequest(f"{field}: the body holds {len(binary) - offset} bytes of binary data, "
                                     f"{size} declared", field=f"{field}.parameters.binary_data_size",
                                     expected=size, received=len(binary) - offset)
            arr = np.frombuffer(binary[offset:offset + size], dtype=dtype.newbyteorder("<")).reshape(shape)
            offset += size
            if dt == "BOOL" and arr.size and arr.view(np.uint8).max() > 1:
                raise InvalidRequest(f"{field}: BOOL binary data must be bytes 0 or 1", field=f"{field}.data")
        else:
            data = t.get("data")
            if not isinstance(data, list):
                raise InvalidRequest(f"{field}: 'data' must be a list (or use binary_data_size)", field=f"{field}.data")
            if dt == "BOOL" and not _all_booleans(data):
                # as Triton: JSON true/false only (NumPy would turn 2.5, 1 or "x" into True)
                raise InvalidRequest(f"{field}: BOOL 'data' must hold JSON true or false values",
                                     field=f"{field}.data", expected="true or false")
            if dt == "BOOL":
                arr = np.asarray(data, dtype=bool)
            else:
                arr = numbers_array(data, f"{field}: 'data'", f"{field}.data", f"{dt} numbers")
                if dtype.kind == "f":
                    with np.errstate(over="ignore"):     # overflow -> Inf, refused by check_array
                        arr = arr.astype(dtype)
            if dtype.kind in "iu":
                # integers arrive as JSON numbers: refuse fractions and out-of-range values instead of
                # silently truncating or wrapping them
                info = np.iinfo(dtype)
                if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)) or (
                        arr.size and (arr.min() < info.min or arr.max() > info.max)):
                    raise InvalidRequest(f"{field}: 'data' must hold integers in [{info.min}, {info.max}] for {dt}",
                                         field=f"{field}.data", expected=f"{dt} integers")
                arr = arr.astype(dtype)
            if arr.size != count:
                raise InvalidRequest(f"{field}: 'data' has {arr.size} elements, shape {shape} needs {count}",
                                     field=f"{field}.data", expected=count, received=int(arr.size))
            arr = arr.reshape(shape)
        arrays[name] = arr
        fields[name] = field
    if offset != len(binary):
        raise InvalidRequest(f"the body has {len(binary) - offset} bytes of binary data that no input declared",
                             expected=offset, received=len(binary))
    check_input_names(model.inputs, arrays)
    return arrays, fields


def _all_booleans(data: list) -> bool:
    stack = [data]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(v)
        elif not isinstance(v, bool):
            return False
    return True


def _parameters(obj: dict, field: str) -> dict:
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidRequest(f"'{field}' must be an object", field=field, received=type(params).__name__)
    return params


def _flag(params: dict, key: str, default: bool, field: str) -> bool:
    """A JSON boolean parameter: as Triton, the string "false" (or 0/1) is refused, not read as true."""
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise InvalidRequest(f"{field} must be a JSON boolean (true or false)", field=field,
                             expected="true or false", received=clip(value, 20))
    return value


def _requested_outputs(model, payload) -> list[tuple[str, bool, int]]:
    """(output name, as binary, classification count; 0 = the tensor itself), checked before inference."""
    specs = {s.name: s for s in model.outputs}
    names = list(specs)
    default_binary = _flag(_parameters(payload, "parameters"), "binary_data_output", False,
                           "parameters.binary_data_output")
    req = payload.get("outputs")
    if req is None:
        return [(n, default_binary, 0) for n in names]
    if not isinstance(req, list):
        raise InvalidRequest("'outputs' must be a list", field="outputs")
    out = []
    for i, o in enumerate(req):
        n = o.get("name") if isinstance(o, dict) else None
        if not isinstance(n, str):
            raise InvalidRequest(f"outputs[{i}] must be an object with a 'name' string", field=f"outputs[{i}].name",
                                 expected=names, received=clip(n))
        check_outputs(model.outputs, [n], f"outputs[{i}].name")
        field = f"outputs[{i}].parameters"
        params = _parameters(o, field)
        k = params.get("classification", 0)
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise InvalidRequest(f"{field}.classification must be a non-negative integer (how many classes to "
                                 "return; 0 = the tensor itself)", field=f"{field}.classification",
                                 expected="integer >= 0", received=clip(k, 20))
        if k and np.dtype(specs[n].dtype).kind not in "iuf":
            raise InvalidRequest(f"outputs[{i}]: classification needs a numeric output; {n!r} is "
                                 f"{np.dtype(specs[n].dtype).name}", field=f"{field}.classification")
        out.append((n, _flag(params, "binary_data", default_binary, f"{field}.binary_data"), k))
    return out


def _classes(a: np.ndarray, k: int, labels) -> list[bytes]:
    """Triton's classification strings, row after row: the ``k`` highest values of each row (ties: the
    lower index first), ``"value:index"`` plus ``":label"`` when ``labels`` name every element of a row.
    Values print as C's ``%f`` for floats (what Triton's ``std::to_string`` gives), integers as integers."""
    rows = a.reshape(len(a), -1)
    k = min(k, rows.shape[1])
    order = np.argsort(-rows.astype(np.float64), axis=1, kind="stable")[:, :k]
    labels = labels if labels is not None and len(labels) == rows.shape[1] else None
    as_text = (lambda v: f"{float(v):f}") if rows.dtype.kind == "f" else (lambda v: str(int(v)))
    return [(f"{as_text(row[j])}:{j}" + (f":{labels[j]}" if labels else "")).encode()
            for row, idx in zip(rows, order, strict=True) for j in idx]


def _encode_outputs(model, out: dict[str, np.ndarray], wanted) -> tuple[list[dict], list[bytes]]:
    """The response's output descriptors, and the raw bytes of those sent as binary (in order)."""
    outputs, chunks = [], []
    for n, as_binary, k in wanted:
        a = np.ascontiguousarray(out[n])
        if k:
            strings = _classes(a, k, model.labels)
            desc = {"name": n, "datatype": "BYTES", "shape": [len(a), min(k, a.size // len(a))]}
            # binary BYTES: each element is a 4-byte little-endian length, then the bytes
            raw = b"".join(struct.pack("<I", len(s)) + s for s in strings) if as_binary else None
            data = [s.decode() for s in strings]
        else:
            desc = {"name": n, "datatype": v2_datatype(a.dtype), "shape": list(a.shape)}
            raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes() if as_binary else None
            data = a.reshape(-1)
        if as_binary:
            desc["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            desc["data"] = data
        outputs.append(desc)
    return outputs, chunks


class _Infer(Codec):
    """``/infer``: JSON tensors, or a JSON header followed by binary ones; outputs as JSON, binary or
    classification strings (``call.state``: the requested outputs)."""

    route = "v2:infer"
    hint = "; ask for it as binary data (parameters.binary_data: true)"

    def body_budget(self, call):
        # a JSON header followed by binary tensors: only the header is JSON (checked once it is cut out)
        return None if HEADER_LEN in call.request.headers else call.manager.json_budget(call.name)

    async def decode(self, call, model):
        payload, binary = _parse_request(call.body, call.request.headers.get(HEADER_LEN),
                                         call.manager.json_budget(call.name), call.name)
        if not isinstance(payload.get("id", ""), str):
            raise InvalidRequest("'id' must be a string", field="id", received=type(payload["id"]).__name__)
        call.payload = payload
        arrays, call.fields = _input_arrays(model, payload, binary, call.settings.max_rows_per_request)
        call.state = _requested_outputs(model, payload)
        params = payload.get("parameters") or {}
        call.timeout_ms = params.get("timeout_ms") if isinstance(params, dict) else None
        return arrays

    def json_outputs(self, call, out):
        # binary outputs carry NaN/Inf as IEEE bytes; classification strings hold no numbers
        return {n: out[n] for n, as_binary, k in call.state if not as_binary and not k}

    def encode(self, call, entry, out, served):
        outputs, chunks = _encode_outputs(entry.model, out, call.state)
        resp = {"model_name": entry.name, "model_version": served, "outputs": outputs}
        if "id" in call.payload:
            resp["id"] = call.payload["id"]
        head = orjson.dumps(resp, option=orjson.OPT_SERIALIZE_NUMPY)
        if not chunks:
            return Response(head, media_type="application/json")
        return Response(head + b"".join(chunks), media_type="application/octet-stream",
                        headers={"Inference-Header-Content-Length": str(len(head))})


_INFER_CODEC = _Infer()


@router.post("/v2/models/{name}/infer", summary="Inference (JSON or binary tensors)", **_INFER)
async def infer_latest(request: Request, name: str):
    return await run(request, _INFER_CODEC, name)


@router.post("/v2/models/{name}/versions/{version}/infer", summary="Inference on a version (number or label)",
             **_INFER)
async def infer_version(request: Request, name: str, version: str):
    return await run(request, _INFER_CODEC, name, version)

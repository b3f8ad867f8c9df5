"""TensorFlow Serving's REST API, so existing TF Serving clients work unchanged.

* ``GET  /v1/models/{name}[/versions/{v}]``            model status
* ``GET  /v1/models/{name}[/versions/{v}]/metadata``   signature
* ``POST /v1/models/{name}[/versions/{v}]:predict``    ``instances`` (rows) or ``inputs`` (columns)
* ``POST /v1/models/{name}[/versions/{v}]:classify``   top-k labels and scores (also takes an image body)

Errors are ``{"error": "..."}`` as in TF Serving. A ``{"b64": "..."}`` value for an image model is a
base64-encoded PNG/JPEG, decoded and preprocessed as the model's zoo entry specifies.
"""
from __future__ import annotations

import base64
import binascii

import numpy as np
from fastapi import APIRouter, Request

from ..errors import InvalidRequest, ModelNotReady, UnknownModel, clip
from ..http import (
    deadline_from,
    finite_outputs,
    instrument,
    json_response,
    multipart_file,
    parse_json,
    read_body,
)
from ..images import IMAGE_TYPES, image_row, run_image_work, top_k
from ..inference import infer
from ..schemas import V1_REQUEST_BODY, V1PredictResponse, V1Status, error_responses
from ..validation import to_batch

__all__ = ["router"]

router = APIRouter(tags=["TF Serving REST API"])


def _split(name_verb: str) -> tuple[str, str | None]:
    name, sep, verb = name_verb.partition(":")
    return name, (verb if sep else None)


def _status(entry, version=None):
    state = {"READY": "AVAILABLE", "LOADING": "LOADING", "FAILED": "END"}.get(entry.state, "UNKNOWN")
    ver = entry.version or "0"
    if version is not None and str(version) != ver:
        raise UnknownModel(f"model {entry.name!r} version {clip(version, 20)!r} is not served; serving {ver}")
    unhealthy = entry.health()
    ok = entry.state == "READY" and unhealthy is None
    return {"model_version_status": [{"version": ver, "state": state, "status": {
        "error_code": "OK" if ok else "UNAVAILABLE", "error_message": unhealthy or entry.error or ""}}]}


def _dtype_name(dt) -> str:
    return {"float32": "DT_FLOAT", "float64": "DT_DOUBLE", "uint8": "DT_UINT8", "int32": "DT_INT32",
            "int64": "DT_INT64", "float16": "DT_HALF"}.get(np.dtype(dt).name, "DT_INVALID")


def _tensor_info(spec):
    dims = [{"size": "-1"}] + [{"size": str(-1 if d is None else d)} for d in spec.shape]
    return {"dtype": _dtype_name(spec.dtype), "tensor_shape": {"dim": dims}, "name": spec.name + ":0"}


def _metadata(entry, version=None):
    _status(entry, version)
    m = entry.model
    if m is None:
        raise ModelNotReady(f"model {entry.name!r} is {entry.state}" + (f": {entry.error}" if entry.error else ""))
    sig = {"inputs": {s.name: _tensor_info(s) for s in m.inputs},
           "outputs": {s.name: _tensor_info(s) for s in m.outputs}, "method_name": "tensorflow/serving/predict"}
    return {"model_spec": {"name": entry.name, "signature_name": "", "version": entry.version},
            "metadata": {"signature_def": {"signature_def": {"serving_default": sig}}}}


async def _get(request: Request, name_verb: str, version: str | None = None):
    name, verb = _split(name_verb)
    entry = request.app.state.manager.find(name)
    if verb is None:
        return json_response(_status(entry, version))
    if verb == "metadata":
        return json_response(_metadata(entry, version))
    raise UnknownModel(f"unknown path verb {clip(verb)!r}; GET supports the status and /metadata")


_GET = {"responses": error_responses(404)}
_GET_META = {"responses": error_responses(404, 503)}
_POST = {"response_model": V1PredictResponse, "openapi_extra": V1_REQUEST_BODY,
         "responses": error_responses(400, 404, 408, 413, 415, 429, 500, 503, 504)}


@router.get("/v1/models/{name}", summary="TF Serving model status", response_model=V1Status, **_GET)
async def model_status(request: Request, name: str):
    return await _get(request, name)


@router.get("/v1/models/{name}/metadata", summary="TF Serving model metadata (signature)", **_GET_META)
async def model_metadata(request: Request, name: str):
    return await _get(request, name + ":metadata")


@router.get("/v1/models/{name}/versions/{version}", summary="TF Serving model status (pinned version)",
            response_model=V1Status, **_GET)
async def model_version_status(request: Request, name: str, version: str):
    return await _get(request, name, version)


@router.get("/v1/models/{name}/versions/{version}/metadata", summary="TF Serving metadata (pinned version)",
            **_GET_META)
async def model_version_metadata(request: Request, name: str, version: str):
    return await _get(request, name + ":metadata", version)


def _decode_value(spec, value, settings, model, field):
    """One instance value: nested list, or {"b64": ...} image bytes for an image model."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        try:
            raw = base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise InvalidRequest("invalid base64 in 'b64'", field=field, expected="base64 text") from None
        return image_row(model, raw, settings, field)
    return value


def _rows_to_columns(model, instances, settings):
    """TF Serving row format -> {input: list of per-row values}."""
    if not isinstance(instances, list) or not instances:
        raise InvalidRequest("'instances' must be a non-empty list", field="instances", expected="list of rows")
    names = [s.name for s in model.inputs]
    cols: dict[str, list] = {n: [] for n in names}
    for i, inst in enumerate(instances):
        if isinstance(inst, dict) and not (set(inst) == {"b64"}):
            extra = sorted(set(inst) - set(names))
            missing = [n for n in names if n not in inst]
            if extra or missing:
                raise InvalidRequest(f"instance {i}: inputs must be {names}, got {sorted(inst)}",
                                     field=f"instances[{i}]", expected=names, received=sorted(inst))
            for s in model.inputs:
                cols[s.name].append(_decode_value(s, inst[s.name], settings, model, f"instances[{i}].{s.name}"))
        else:
            if len(names) != 1:
                raise InvalidRequest(f"instance {i}: this model takes {names}; send objects", field=f"instances[{i}]")
            cols[names[0]].append(_decode_value(model.inputs[0], inst, settings, model, f"instances[{i}]"))
    return {n: (np.stack(v) if v and isinstance(v[0], np.ndarray) else v) for n, v in cols.items()}


_SIGNATURES = ("", "serving_default")     # every served model has this one signature, as TF Serving names it


def _batch_from(model, payload, settings):
    sig = payload.get("signature_name", "")
    if not isinstance(sig, str) or sig not in _SIGNATURES:
        raise InvalidRequest(f"unknown signature_name {clip(str(sig))!r}; this model serves 'serving_default'",
                             field="signature_name", expected=list(_SIGNATURES), received=clip(str(sig)))
    if "instances" in payload and "inputs" in payload:
        raise InvalidRequest("send either 'instances' (row format) or 'inputs' (columnar), not both")
    if "instances" in payload:
        cols = _rows_to_columns(model, payload["instances"], settings)
        row_format = True
    elif "inputs" in payload:
        cols = payload["inputs"]
        if not isinstance(cols, dict):
            cols = {model.inputs[0].name: cols} if len(model.inputs) == 1 else cols
        row_format = False
    else:
        raise InvalidRequest("missing 'instances' or 'inputs'", expected=["instances", "inputs"])
    arrays = {}
    for s in model.inputs:
        v = cols.get(s.name) if isinstance(cols, dict) else None
        if isinstance(v, np.ndarray):
            from ..validation import check_array

            arrays[s.name] = check_array(s, v, s.name)
    rest = {k: v for k, v in cols.items() if k not in arrays} if isinstance(cols, dict) else cols
    if rest:
        arrays.update(to_batch([s for s in model.inputs if s.name not in arrays], rest,
                               settings.max_rows_per_request, field="instances" if row_format else "inputs"))
    return arrays, row_format


@router.post("/v1/models/{name_verb}", summary="TF Serving :predict / :classify", **_POST)
async def post_model(request: Request, name_verb: str):
    return await _post(request, name_verb, None)


@router.post("/v1/models/{name}/versions/{version_verb}", summary="TF Serving :predict / :classify (pinned)", **_POST)
async def post_model_version(request: Request, name: str, version_verb: str):
    version, verb = _split(version_verb)
    return await _post(request, f"{name}:{verb}" if verb else name, version)


async def _post(request: Request, name_verb: str, version: str | None):
    app = request.app
    settings, manager = app.state.settings, app.state.manager
    name, verb = _split(name_verb)
    route = f"v1:{verb}" if verb in ("predict", "classify") else "v1"
    with instrument(app.state.metrics, route) as obs:
        if verb not in ("predict", "classify"):
            raise UnknownModel(f"unknown verb {clip(verb)!r}; POST supports :predict and :classify",
                               expected=[":predict", ":classify"], received=clip(verb))
        entry = manager.get(name, version)
        obs.model = entry.name
        model = entry.model
        body = await read_body(request, settings.max_body_bytes)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype in IMAGE_TYPES or ctype == "multipart/form-data":
            data = await multipart_file(request, body) if ctype == "multipart/form-data" else body
            arrays = {model.inputs[0].name: (await run_image_work(image_row, model, data, settings))[None]}
            payload, row_format = {}, True
        else:
            payload = parse_json(body, manager.json_budget(entry.name), entry.name)
            if b'"b64"' in body:     # base64 images inside the JSON: decode them off the event loop
                arrays, row_format = await run_image_work(_batch_from, model, payload, settings)
            else:
                arrays, row_format = _batch_from(model, payload, settings)
        deadline = deadline_from(payload.get("timeout_ms"), request.headers.get("x-request-timeout-ms"),
                                 settings.default_timeout_ms)
        k = payload.get("top_k", 5)
        if verb == "classify" and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            # checked before running the model
            raise InvalidRequest("'top_k' must be a positive integer", field="top_k", received=str(k)[:20])
        out, _ = await infer(manager, entry, arrays, deadline, version)
        finite_outputs(out, "; the v2 binary extension (binary_data_output) carries it")
        if verb == "classify":
            prob_name = "prob" if "prob" in out else next(iter(out))
            results = top_k(out[prob_name], model.labels, k)
            return json_response({"results": [[[r["label"], r["score"]] for r in row] for row in results]})
        names = [s.name for s in model.outputs]
        if row_format:
            n = len(next(iter(out.values())))
            if len(names) == 1:
                preds = out[names[0]]
            else:
                preds = [{k: out[k][i] for k in names} for i in range(n)]
            return json_response({"predictions": preds})
        return json_response({"outputs": out[names[0]] if len(names) == 1 else {k: out[k] for k in names}})

"""TensorFlow Serving's REST API, so existing TF Serving clients work unchanged.

* ``GET  /v1/models/{name}[/versions/{v}|/labels/{l}]``            model status (every loaded version)
* ``GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata``   signature
* ``POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict``    ``instances`` (rows) or ``inputs`` (columns)
* ``POST /v1/models/{name}[/versions/{v}|/labels/{l}]:classify``   top-k labels and scores (also takes an image body)

Without a version or label, the newest loaded version answers; a label is one of the model config's
``version_labels``.

Errors are ``{"error": "..."}`` as in TF Serving. A ``{"b64": "..."}`` value for an image model is a
base64-encoded PNG/JPEG, decoded and preprocessed as the model's zoo entry specifies.
"""
from __future__ import annotations

import base64
import binascii

import numpy as np
from fastapi import APIRouter, Request

from ..errors import InvalidRequest, ModelNotReady, UnknownModel, clip
from ..http import content_type, json_response, parse_json
from ..images import IMAGE_TYPES, RawImageBatch, image_row, run_image_work, stack_rows, top_k
from ..manager import PinnedEntry
from ..pipeline import Codec, image_upload, run
from ..schemas import V1_REQUEST_BODY, V1PredictResponse, V1Status, error_responses
from ..validation import lists_to_arrays

__all__ = ["router"]

router = APIRouter(tags=["TF Serving REST API"])


def _split(name_verb: str) -> tuple[str, str | None]:
    name, sep, verb = name_verb.partition(":")
    return name, (verb if sep else None)


def _status(manager, name: str, version=None):
    """TF Serving's GetModelStatus: every loaded version (AVAILABLE), or the one ``version`` names (a number or a
    label); a model with none loaded: one row in its state (version 0)."""
    entry = manager.find(name, version)
    if isinstance(entry, PinnedEntry):
        slots = [entry.slot]
    else:
        slots = list(reversed(entry.slots.values()))
    rows = []
    for slot in slots:
        unhealthy = slot.health()
        rows.append({"version": slot.version, "state": "AVAILABLE", "status": {
            "error_code": "OK" if unhealthy is None else "UNAVAILABLE", "error_message": unhealthy or ""}})
    if not rows:
        state = {"LOADING": "LOADING", "FAILED": "END", "UNLOADED": "END"}.get(entry.state, "UNKNOWN")
        rows.append({"version": "0", "state": state, "status": {"error_code": "UNAVAILABLE",
                                                               "error_message": entry.error or ""}})
    return {"model_version_status": rows}


def _dtype_name(dt) -> str:
    return {"float32": "DT_FLOAT", "float64": "DT_DOUBLE", "uint8": "DT_UINT8", "int32": "DT_INT32",
            "int64": "DT_INT64", "float16": "DT_HALF"}.get(np.dtype(dt).name, "DT_INVALID")


def _tensor_info(spec):
    dims = [{"size": "-1"}] + [{"size": str(-1 if d is None else d)} for d in spec.shape]
    return {"dtype": _dtype_name(spec.dtype), "tensor_shape": {"dim": dims}, "name": spec.name + ":0"}


def _metadata(manager, name: str, version=None):
    entry = manager.find(name, version)
    m = entry.model
    if m is None:
        raise ModelNotReady(f"model {entry.name!r} is {entry.state}" + (f": {entry.error}" if entry.error else ""))
    sig = {"inputs": {s.name: _tensor_info(s) for s in m.inputs},
           "outputs": {s.name: _tensor_info(s) for s in m.outputs}, "method_name": "tensorflow/serving/predict"}
    return {"model_spec": {"name": entry.name, "signature_name": "", "version": entry.version},
            "metadata": {"signature_def": {"signature_def": {"serving_default": sig}}}}


async def _get(request: Request, name_verb: str, version: str | None = None):
    name, verb = _split(name_verb)
    manager = request.app.state.manager
    if verb is None:
        return json_response(_status(manager, name, version))
    if verb == "metadata":
        return json_response(_metadata(manager, name, version))
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


@router.get("/v1/models/{name}/labels/{label}", summary="TF Serving model status (a version label)",
            response_model=V1Status, **_GET)
async def model_label_status(request: Request, name: str, label: str):
    return await _get(request, name, _label(label))


@router.get("/v1/models/{name}/labels/{label}/metadata", summary="TF Serving metadata (a version label)",
            **_GET_META)
async def model_label_metadata(request: Request, name: str, label: str):
    return await _get(request, name + ":metadata", _label(label))


def _label(label: str) -> str:
    """A label from a ``/labels/{l}`` path: a number there is refused, as TF Serving does (use ``/versions/``)."""
    if label.isdigit():
        raise InvalidRequest(f"{label!r} is a version number, not a label: use /versions/{label}", field="label",
                             received=clip(label, 20))
    return label


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
    """TF Serving row format -> {input: list of per-row values, or the stacked rows of b64 images}."""
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
    for n, v in cols.items():
        images = sum(isinstance(x, np.ndarray) for x in v)
        if images == len(v):
            cols[n] = stack_rows(v)
        elif images:     # the image rows would skip the checks that the others get
            raise InvalidRequest(f"input {n!r}: either every instance is a {{\"b64\": ...}} image or none is",
                                 field="instances", expected="all b64 images or all nested lists")
    return cols


_SIGNATURES = ("", "serving_default")     # every served model has this one signature, as TF Serving names it


def _arrays(call, model) -> dict[str, np.ndarray]:
    """A JSON body's ``instances`` (rows) or ``inputs`` (columns) -> one array per input, as sent (b64
    images decoded and preprocessed: exempt from the range check); ``call.state``: the row format."""
    payload = call.payload
    sig = payload.get("signature_name", "")
    if not isinstance(sig, str) or sig not in _SIGNATURES:
        raise InvalidRequest(f"unknown signature_name {clip(str(sig))!r}; this model serves 'serving_default'",
                             field="signature_name", expected=list(_SIGNATURES), received=clip(str(sig)))
    if "instances" in payload and "inputs" in payload:
        raise InvalidRequest("send either 'instances' (row format) or 'inputs' (columnar), not both")
    if "instances" in payload:
        cols = _rows_to_columns(model, payload["instances"], call.settings)
        call.field, call.state = "instances", True
    elif "inputs" in payload:
        cols = payload["inputs"]
        if not isinstance(cols, dict) and len(model.inputs) == 1:
            cols = {model.inputs[0].name: cols}
        call.state = False
    else:
        raise InvalidRequest("missing 'instances' or 'inputs'", expected=["instances", "inputs"])
    body = call.body
    maybe_bools = b"true" in body or b"false" in body
    images = {n: v for n, v in cols.items() if isinstance(v, (np.ndarray, RawImageBatch))} if call.state else None
    if not images:
        return lists_to_arrays(model.inputs, cols, call.field, maybe_bools)
    call.preprocessed = tuple(images)
    rest = [s for s in model.inputs if s.name not in images]
    arrays = lists_to_arrays(rest, {s.name: cols[s.name] for s in rest}, call.field, maybe_bools) if rest else {}
    return {**arrays, **images}


_UPLOADS = (*IMAGE_TYPES, "multipart/form-data")


class _Predict(Codec):
    """``:predict``: the outputs, as ``predictions`` (row format, image bodies) or ``outputs`` (columnar)."""

    route = "v1:predict"
    hint = "; the v2 binary extension (binary_data_output) carries it"

    def body_budget(self, call):
        return None if content_type(call.request) in _UPLOADS else call.manager.json_budget(call.name)

    async def decode(self, call, model):
        if content_type(call.request) in _UPLOADS:
            call.state = True
            return await image_upload(call, model)
        payload = call.payload = parse_json(call.body, call.manager.json_budget(call.name), call.name)
        call.timeout_ms = payload.get("timeout_ms")
        self.options(call, payload)
        if b'"b64"' in call.body:     # base64 images inside the JSON: decode them off the event loop
            return await run_image_work(_arrays, call, model)
        return _arrays(call, model)

    def options(self, call, payload):
        """The verb's own body fields, checked before the model runs."""

    def encode(self, call, entry, out, served):
        names = [s.name for s in entry.model.outputs]
        if call.state:    # row format
            if len(names) == 1:
                return json_response({"predictions": out[names[0]]})
            n = len(out[names[0]])
            return json_response({"predictions": [{k: out[k][i] for k in names} for i in range(n)]})
        return json_response({"outputs": out[names[0]] if len(names) == 1 else {k: out[k] for k in names}})


class _Classify(_Predict):
    """``:classify``: per row, the ``top_k`` best labels and scores of ``prob`` (else the first output)."""

    route = "v1:classify"

    def options(self, call, payload):
        k = payload.get("top_k", 5)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidRequest("'top_k' must be a positive integer", field="top_k", received=str(k)[:20])
        call.top_k = k

    def encode(self, call, entry, out, served):
        results = top_k(out["prob"] if "prob" in out else next(iter(out.values())), entry.model.labels, call.top_k)
        return json_response({"results": [[[r["label"], r["score"]] for r in row] for row in results]})


class _UnknownVerb(Codec):
    route = "v1"

    def prepare(self, call):
        params = call.request.path_params
        verb = _split(params.get("version_verb") or params.get("label_verb") or params["name_verb"])[1]
        raise UnknownModel(f"unknown verb {clip(verb)!r}; POST supports :predict and :classify",
                           expected=[":predict", ":classify"], received=clip(verb))


_VERBS = {"predict": _Predict(), "classify": _Classify()}
_UNKNOWN_VERB = _UnknownVerb()


@router.post("/v1/models/{name_verb}", summary="TF Serving :predict / :classify", **_POST)
async def post_model(request: Request, name_verb: str):
    name, verb = _split(name_verb)
    return await run(request, _VERBS.get(verb, _UNKNOWN_VERB), name)


@router.post("/v1/models/{name}/versions/{version_verb}", summary="TF Serving :predict / :classify (pinned)", **_POST)
async def post_model_version(request: Request, name: str, version_verb: str):
    version, verb = _split(version_verb)
    return await run(request, _VERBS.get(verb, _UNKNOWN_VERB), name, version)


@router.post("/v1/models/{name}/labels/{label_verb}", summary="TF Serving :predict / :classify (a version label)",
             **_POST)
async def post_model_label(request: Request, name: str, label_verb: str):
    label, verb = _split(label_verb)
    return await run(request, _VERBS.get(verb, _UNKNOWN_VERB), name, _label(label))

"""``POST /predict``: the service's own format, one codec per content type (see :mod:`service.pipeline`).

* JSON: ``{"model"?, "version"?, "inputs": {name: nested list} | nested list, "outputs"?, "timeout_ms"?}``
  -> ``{"model", "version", "outputs": {name: nested list}}``
* ``.npy`` (``application/x-npy``): the batch of a single-input model, read without JSON parsing;
  ``?output=`` (repeatable) picks outputs -> the same JSON answer
* PNG/JPEG, raw or as the file of a multipart body: one image -> ``{"model", "version", "top_k": [...]}``

``?model=`` and ``?version=`` work for all three (a JSON body's ``model``/``version`` win).
"""
from __future__ import annotations

from fastapi import APIRouter, Request

from ..errors import InvalidRequest
from ..http import content_type, json_response, parse_json
from ..images import IMAGE_TYPES, top_k
from ..npy import NPY_TYPES, load_npy
from ..pipeline import Codec, image_upload, run
from ..schemas import PREDICT_REQUEST_BODY, PredictResponse, error_responses
from ..validation import lists_to_arrays

__all__ = ["router", "JsonCodec", "NpyCodec", "ImageCodec"]

router = APIRouter(tags=["inference"])

_JSON_KEYS = ["model", "version", "inputs", "outputs", "timeout_ms"]


def _int_param(query, name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"query parameter {name!r} must be an integer", field=name, received=raw[:40]) from None


class _Predict(Codec):
    route = "predict"
    hint = "; the v2 binary extension (binary_data_output) carries it"

    def prepare(self, call):
        # Query parameters are read by hand: declaring them makes FastAPI validate a pydantic model
        # per request, which was the largest single cost of this route under load.
        if not call.request.scope.get("query_string"):
            return                  # the common case: nothing to parse (the Call's defaults hold)
        query = call.request.query_params
        call.name, call.version = query.get("model"), query.get("version")
        call.top_k = _int_param(query, "top_k", 5)

    def json_outputs(self, call, out):
        return out if call.wanted is None else {k: out[k] for k in call.wanted}

    def encode(self, call, entry, out, served):
        return json_response({"model": entry.name, "version": served, "outputs": self.json_outputs(call, out)})


class JsonCodec(_Predict):
    """A JSON object; its ``model``/``version`` name the model, so it is parsed before the model is known
    (against the JSON budget of ``?model=``, or of the largest model)."""

    def body_budget(self, call):
        return call.manager.json_budget(call.name)

    def parse(self, call):
        payload = parse_json(call.body, call.manager.json_budget(call.name), call.name)
        call.payload = payload
        call.name = payload.get("model", call.name)
        call.version = payload.get("version", call.version)

    async def decode(self, call, model):
        payload = call.payload
        if "inputs" not in payload:
            raise InvalidRequest("missing 'inputs'", field="inputs",
                                 expected={s.name: s.signature()["shape"] for s in model.inputs})
        unknown_keys = sorted(set(payload) - set(_JSON_KEYS))
        if unknown_keys:
            raise InvalidRequest(f"unknown field(s) {unknown_keys}", field=unknown_keys[0], expected=_JSON_KEYS)
        wanted = payload.get("outputs")
        if wanted:
            if not isinstance(wanted, list) or not all(isinstance(w, str) for w in wanted):
                raise InvalidRequest("'outputs' must be a list of output names", field="outputs",
                                     expected=[s.name for s in model.outputs])
            call.wanted = wanted
        call.timeout_ms = payload.get("timeout_ms")
        body = call.body
        return lists_to_arrays(model.inputs, payload["inputs"], maybe_bools=b"true" in body or b"false" in body)


class NpyCodec(_Predict):
    """A ``.npy`` body: the batch of a single-input model, a zero-copy view of the body."""

    async def decode(self, call, model):
        if len(model.inputs) != 1:
            raise InvalidRequest(f"a .npy body feeds a single-input model; {model.name!r} takes "
                                 f"{[s.name for s in model.inputs]}: send JSON", field="body")
        name = model.inputs[0].name
        call.wanted = call.request.query_params.getlist("output") or None
        call.wanted_field = "output"
        call.field, call.fields = name, {name: name}
        return {name: load_npy(call.body)}


class ImageCodec(_Predict):
    """A PNG/JPEG upload for an image model: the ``top_k`` best labels of its first (or ``prob``) output."""

    hint = ""

    async def decode(self, call, model):
        if call.top_k < 1:
            raise InvalidRequest("top_k must be >= 1", field="top_k", received=call.top_k)
        return await image_upload(call, model)

    def json_outputs(self, call, out):
        return {"prob": out["prob"] if "prob" in out else next(iter(out.values()))}

    def encode(self, call, entry, out, served):
        prob = self.json_outputs(call, out)["prob"]
        return json_response({"model": entry.name, "version": served,
                              "top_k": top_k(prob, entry.model.labels, call.top_k)[0]})


_JSON = JsonCodec()
_CODECS = {**dict.fromkeys([*IMAGE_TYPES, "multipart/form-data"], ImageCodec()), **dict.fromkeys(NPY_TYPES, NpyCodec())}


@router.post("/predict", response_model=PredictResponse, openapi_extra=PREDICT_REQUEST_BODY,
             responses=error_responses(400, 404, 408, 413, 415, 429, 500, 503, 504),
             summary="Run a model on a batch of inputs (JSON or .npy) or classify one uploaded image")
async def predict(request: Request):
    return await run(request, _CODECS.get(content_type(request), _JSON))

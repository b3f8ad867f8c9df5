"""Pydantic models that document the JSON bodies in OpenAPI (/docs).

Bodies are parsed with orjson and validated against each model's tensor specs by
:mod:`service.validation` (fast for large nested lists); these classes describe the same shapes.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["LiveStatus", "PredictRequest", "PredictResponse", "ErrorBody", "ModelStatus", "ReadyStatus", "error_responses",
           "V1Status", "V1PredictResponse", "V1_REQUEST_BODY", "V2ModelMetadata", "V2Ready", "V2HealthReady",
           "V2InferRequest", "V2InferResponse", "V2_REQUEST_BODY", "ERROR_TEXT", "V2ModelConfig", "V2IndexEntry",
           "V2_INDEX_REQUEST_BODY", "PREDICT_REQUEST_BODY"]

NestedList = list[Any]


class PredictRequest(BaseModel):
    model: str | None = Field(None, description="model name; optional when exactly one model is served")
    version: str | None = Field(None, description="pin a version: refused (404) unless it is the one served")
    inputs: dict[str, NestedList] | NestedList = Field(
        ..., description="input name -> nested list (batch first), or a bare nested list for a single-input model")
    outputs: list[str] | None = Field(None, description="subset of output names to return (default: all)")
    timeout_ms: float | None = Field(None, gt=0, description="deadline; also X-Request-Timeout-Ms header")

    model_config = {"json_schema_extra": {"examples": [{"inputs": [[[0.0] * 28] * 28], "outputs": ["prob"]}]}}


class PredictResponse(BaseModel):
    model: str
    version: str
    outputs: dict[str, NestedList] | None = Field(None, description="JSON requests: output name -> rows")
    top_k: list[dict[str, Any]] | None = Field(None, description="image uploads: the k best labels and scores")


_BINARY = {"schema": {"type": "string", "format": "binary"}}

# /predict's body (by content type) and query parameters: documented here, read by hand (see
# service.protocols.predict); declaring them would make FastAPI validate a pydantic model per request
PREDICT_REQUEST_BODY = {
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": PredictRequest.model_json_schema(ref_template="#/components/schemas/{model}")},
        "application/x-npy": _BINARY, "image/png": _BINARY, "image/jpeg": _BINARY,
        "multipart/form-data": {"schema": {"type": "object", "properties": {"image": _BINARY["schema"]}}}}},
    "parameters": [
        {"name": "model", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "model name (else the body's 'model', else the only model)"},
        {"name": "version", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "serve only if this version is the one loaded"},
        {"name": "output", "in": "query", "required": False, "schema": {"type": "array", "items": {"type": "string"}},
         "description": ".npy bodies: the outputs to return (default: all)"},
        {"name": "top_k", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "default": 5},
         "description": "labels returned for an uploaded image"}]}


class ErrorBody(BaseModel):
    error: str = Field(..., description="what was wrong")
    field: str | None = Field(None, description="the request field at fault")
    expected: Any = None
    received: Any = None


class VersionMemory(BaseModel):
    variables_bytes: int = Field(..., description="bytes of the version's variables (weights, BatchNorm statistics)")
    replicas: int = Field(..., description="replicas of the version (one per device)")
    resident_growth_bytes: int | None = Field(None, description=(
        "how much the serving process's resident memory grew while this version loaded and warmed up"))


class VersionStatus(BaseModel):
    version: str
    state: str = Field(..., description="READY, or UNAVAILABLE while its batches fail or hang")
    load_seconds: float | None = None
    devices: list[str] = []
    memory: VersionMemory | None = None
    error: str | None = None


class ModelStatus(BaseModel):
    name: str
    state: str = Field(..., description="LOADING, READY, FAILED, UNAVAILABLE or UNLOADED")
    version: str | None = Field(None, description="the newest loaded version: what unversioned requests reach")
    versions: list[VersionStatus] = Field([], description="every loaded version, oldest first")
    version_policy: dict[str, Any] | None = None
    version_labels: dict[str, int] | None = None
    architecture: str | None = None
    options: dict[str, Any] | None = None
    error: str | None = None
    inputs: list[dict[str, Any]] | None = None
    outputs: list[dict[str, Any]] | None = None
    labels: list[str] | None = None
    devices: list[str] | None = None
    batching: dict[str, Any] | None = None


class LiveStatus(BaseModel):
    status: str = Field(..., description="'alive', or 'stuck' when a batch has hung (then HTTP 503)")
    reason: str | None = None


class ReadyStatus(BaseModel):
    status: str
    reasons: list[str] = []


ERROR_TEXT = {
    400: "invalid request (the body names the field, the expected and the received value)",
    404: "unknown model, version or verb",
    408: "the request body did not arrive within TPSERVE_BODY_TIMEOUT_S (the connection is closed)",
    409: "model control that TPSERVE_MODEL_CONTROL does not allow",
    413: "body or image above the limit (the connection is closed when the body was left unread)",
    415: "unsupported image format",
    429: "queue full; see Retry-After",
    500: "the batch holding this request failed, or a model load failed (the reason is in 'error')",
    503: "model not ready or unavailable, or server shutting down",
    504: "deadline passed before the request ran",
}


def error_responses(*codes: int) -> dict:
    """OpenAPI ``responses`` entries: ``ErrorBody`` for each status code."""
    return {c: {"model": ErrorBody, "description": ERROR_TEXT[c]} for c in codes}


# ---------------------------------------------------------------------------- TF Serving REST (documentation)
class V1VersionStatus(BaseModel):
    version: str
    state: str
    status: dict[str, Any]


class V1Status(BaseModel):
    model_version_status: list[V1VersionStatus]


class V1PredictResponse(BaseModel):
    """``predictions`` (row format), ``outputs`` (columnar) or ``results`` (:classify): exactly one is present."""
    predictions: list[Any] | None = None
    outputs: list[Any] | dict[str, Any] | None = None
    results: list[list[list[Any]]] | None = None


V1_REQUEST_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "description": "'instances' (rows) or 'inputs' (columns)",
                                    "properties": {"instances": {"type": "array"}, "inputs": {},
                                                   "timeout_ms": {"type": "number"},
                                                   "top_k": {"type": "integer", "minimum": 1}}}},
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}}


# ---------------------------------------------------------------------------- KServe v2 (documentation)
class V2TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(BaseModel):
    name: str
    versions: list[str | None]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2ModelConfig(BaseModel):
    """Triton's model configuration (``model_config.proto`` as JSON), the fields this server fills."""
    name: str
    platform: str
    backend: str
    version_policy: dict[str, Any]
    max_batch_size: int = Field(..., description="most rows in one executed batch (a request may carry up to "
                                                 "TPSERVE_MAX_ROWS_PER_REQUEST: it is split)")
    input: list[dict[str, Any]] = Field(..., description="name, data_type (TYPE_FP32...), format, dims "
                                                         "(without the batch dimension; -1 = any)")
    output: list[dict[str, Any]]
    dynamic_batching: dict[str, Any]
    instance_group: list[dict[str, Any]]
    parameters: dict[str, Any] | None = None


class V2IndexEntry(BaseModel):
    name: str
    version: str | None = Field(None, description="the served version (absent while none is loaded)")
    state: str = Field(..., description="READY, LOADING or UNAVAILABLE")
    reason: str | None = Field(None, description="why not READY, or a newer version's load failure")


V2_INDEX_REQUEST_BODY = {"requestBody": {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "properties": {"ready": {"type": "boolean", "description": "list only READY models"}}}}}}}


class V2Ready(BaseModel):
    name: str
    ready: bool


class V2HealthReady(BaseModel):
    ready: bool
    reasons: list[str] | None = None


class V2InputTensor(BaseModel):
    name: str
    datatype: str = Field(..., description="BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64")
    shape: list[int]
    data: list[Any] | None = Field(None, description="row-major values (or use parameters.binary_data_size)")
    parameters: dict[str, Any] | None = None


class V2RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = Field(None, description="{'binary_data': true} for raw bytes")


class V2InferRequest(BaseModel):
    id: str | None = None
    inputs: list[V2InputTensor]
    outputs: list[V2RequestedOutput] | None = None
    parameters: dict[str, Any] | None = Field(None, description="binary_data_output, timeout_ms")


class V2OutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


class V2InferResponse(BaseModel):
    model_name: str
    model_version: str | None
    id: Any = None
    outputs: list[V2OutputTensor]


def _inlined(model: type[BaseModel]) -> dict:
    """The model's JSON schema with its ``$defs`` inlined (an ``openapi_extra`` schema is not resolved by FastAPI)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(defs[ref.rsplit("/", 1)[1]])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


V2_REQUEST_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": _inlined(V2InferRequest)},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary", "description": (
        "a JSON inference header of Inference-Header-Content-Length bytes, then the raw tensors")}}}}}

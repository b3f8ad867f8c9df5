"""Pydantic models that document the JSON bodies in OpenAPI (/docs).

Bodies are parsed with orjson and validated against each model's tensor specs by
:mod:`service.validation` (fast for large nested lists); these classes describe the same shapes.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["PredictRequest", "PredictResponse", "ErrorBody", "ModelStatus", "ReadyStatus"]

NestedList = list[Any]


class PredictRequest(BaseModel):
    model: str | None = Field(None, description="model name; optional when exactly one model is served")
    inputs: dict[str, NestedList] | NestedList = Field(
        ..., description="input name -> nested list (batch first), or a bare nested list for a single-input model")
    outputs: list[str] | None = Field(None, description="subset of output names to return (default: all)")
    timeout_ms: float | None = Field(None, gt=0, description="deadline; also X-Request-Timeout-Ms header")

    model_config = {"json_schema_extra": {"examples": [{"inputs": [[[0.0] * 28] * 28], "outputs": ["prob"]}]}}


class PredictResponse(BaseModel):
    model: str
    version: str
    outputs: dict[str, NestedList]


class ErrorBody(BaseModel):
    error: str = Field(..., description="what was wrong")
    field: str | None = Field(None, description="the request field at fault")
    expected: Any = None
    received: Any = None


class ModelStatus(BaseModel):
    name: str
    state: str
    version: str | None = None
    architecture: str | None = None
    options: dict[str, Any] | None = None
    error: str | None = None
    inputs: list[dict[str, Any]] | None = None
    outputs: list[dict[str, Any]] | None = None
    labels: list[str] | None = None
    devices: list[str] | None = None
    batching: dict[str, Any] | None = None


class ReadyStatus(BaseModel):
    status: str
    reasons: list[str] = []

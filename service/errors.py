"""Domain errors and their one mapping to HTTP (status + JSON body)."""
from __future__ import annotations

from typing import Any

__all__ = ["ServiceError", "InvalidRequest", "PayloadTooLarge", "RequestTimeout", "UnknownModel", "ModelNotReady",
           "NotAcceptingWork", "ModelControlDisabled", "clip"]


def clip(text: Any, limit: int = 64) -> str:
    """``text`` as a string of at most about ``limit`` characters, for quoting client input in an
    error message (a 60 KB path segment is not echoed back whole)."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"


class ServiceError(Exception):
    """An error with an HTTP status and a JSON body ``{"error": ..., "field"?, "expected"?, "received"?}``."""

    status = 500

    def __init__(self, message: str, *, field: str | None = None, expected: Any = None, received: Any = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.expected = expected
        self.received = received
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.expected is not None:
            out["expected"] = self.expected
        if self.received is not None:
            out["received"] = self.received
        return out


class InvalidRequest(ServiceError):
    status = 400


class PayloadTooLarge(ServiceError):
    status = 413


class RequestTimeout(ServiceError):
    status = 408


class UnknownModel(ServiceError):
    status = 404


class ModelNotReady(ServiceError):
    status = 503


class NotAcceptingWork(ServiceError):
    status = 503


class ModelControlDisabled(ServiceError):
    """Loading or unloading through the API that ``TPSERVE_MODEL_CONTROL`` does not allow."""

    status = 409

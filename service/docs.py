"""``/docs`` (Swagger UI), ``/redoc`` and ``/openapi.json``: served or not as ``settings.docs``
says, with the pages' scripts and styles served locally (no CDN: the docs work offline), and an
OpenAPI schema that describes what the service really answers.

Whether they are served (``TPSERVE_DOCS``): ``auto`` (the default) serves them only when no API
keys are set, ``on`` always, ``off`` never. When served they never need a key: the schema
describes the API and holds no secret or path; with keys set it declares the bearer scheme, so
Swagger UI's *Authorize* button takes a key for *Try it out*.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from .http import json_response
from .schemas import ERROR_TEXT
from .settings import Settings

__all__ = ["DOCS_PATHS", "ASSETS_PATH", "docs_served", "install_docs", "asset_dir"]

DOCS_PATHS = ("/docs", "/redoc", "/openapi.json")
ASSETS_PATH = "/docs/assets"
_ERROR_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}


def docs_served(settings: Settings) -> bool:
    """True when ``/docs``, ``/redoc`` and ``/openapi.json`` are served (see the module docstring)."""
    return settings.docs == "on" or (settings.docs == "auto" and not settings.api_keys)


def asset_dir() -> Path:
    """Swagger UI and ReDoc bundles (with a favicon) from the pinned ``fastapi-offline`` package."""
    import fastapi_offline

    path = Path(fastapi_offline.__file__).parent / "static"
    missing = [n for n in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
               if not (path / n).is_file()]
    if missing:
        raise RuntimeError(f"the fastapi-offline package lacks the docs assets {missing}; reinstall it")
    return path


def install_docs(app: FastAPI, settings: Settings):
    """Replace FastAPI's schema builder by :func:`_finish_schema`'s, and add the docs routes when
    they are served. ``app`` must be built with ``docs_url``, ``redoc_url`` and ``openapi_url`` None."""
    build = app.openapi          # FastAPI's own builder (it caches in app.openapi_schema)
    finished: list[dict] = []    # the finished schema, built once

    def openapi() -> dict:
        if not finished:
            schema = build()
            _finish_schema(schema, settings)
            finished.append(schema)
        return finished[0]

    app.openapi = openapi
    if not docs_served(settings):
        return
    app.mount(ASSETS_PATH, StaticFiles(directory=asset_dir()), name="docs-assets")

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_json():
        return json_response(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(openapi_url=f"{root}/openapi.json", title=f"{app.title} - Swagger UI",
                                   swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
                                   swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png", oauth2_redirect_url=None)

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=f"{root}/openapi.json", title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png", with_google_fonts=False)


def _finish_schema(schema: dict, settings: Settings):
    """FastAPI declares a 422 ``{"detail": [...]}`` on every route with parameters; this service
    answers request validation errors with 400 ``ErrorBody`` (see ``http.add_error_handlers``):
    declare that instead. With API keys, declare the bearer scheme and the 401/403 answers on every
    path that needs a key."""
    components = schema.setdefault("components", {})
    open_paths = set(settings.open_paths)
    for path, operations in schema.get("paths", {}).items():
        for op in operations.values():
            responses = op.setdefault("responses", {})
            if responses.pop("422", None) is not None:
                responses.setdefault("400", {"description": ERROR_TEXT[400], "content": _ERROR_REF})
            if settings.api_keys and path not in open_paths:
                op["security"] = [{"bearer": []}]
                responses.setdefault("401", {"description": "missing API key", "content": _ERROR_REF})
                responses.setdefault("403", {"description": "invalid API key", "content": _ERROR_REF})
    schemas = components.get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    if settings.api_keys:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}

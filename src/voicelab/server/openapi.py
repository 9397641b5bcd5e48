"""The served OpenAPI schema, made to say what the server does.

FastAPI documents validation errors as 422 with its own body; this server answers them 400 in OpenAI's
error shape, and adds statuses (401, 404, 413, 429, 502, 503) and content types (audio, SSE, Prometheus
text) FastAPI cannot infer. ``openapi_schema(app)`` post-processes FastAPI's schema accordingly, and the
API fuzz test (tests/test_server_fuzz.py) checks every response against it.

Swagger UI's assets are served from the ``swagger-ui-bundle`` package, so ``/docs`` works offline.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from voicelab.server.encoding import FORMATS

DOCS_URL = "/docs"
OPENAPI_URL = "/openapi.json"
SWAGGER_ASSETS_URL = "/docs-assets"
SSE_MEDIA_TYPE = "text/event-stream"
METRICS_MEDIA_TYPE = "text/plain"


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """OpenAI's error shape, used by every non-2xx answer."""

    error: ErrorDetail


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


V1_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Bad request: invalid JSON, a value out of range, an unknown field"),
    401: _error("Missing or wrong API key (only when VOICELAB_API_KEYS is set)"),
    413: _error("Request body larger than VOICELAB_MAX_REQUEST_BYTES"),
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}
SPEECH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Audio in the response format, or Server-Sent Events with stream_format 'sse'",
        "content": {
            **{info.media_type: _BINARY for info in FORMATS.values()},
            SSE_MEDIA_TYPE: {"schema": {"type": "string"}},
        },
    },
    404: _error("Unknown voice (the message lists the voices served)"),
    429: _error("Too many concurrent speech requests; retry after Retry-After seconds"),
    502: _error("The speech engine failed (error, invalid tokens, generation ended early)"),
    503: _error("The speech engine is unreachable; retry after Retry-After seconds"),
}
HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {503: {"description": "The engine is unreachable"}}
METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text exposition format",
        "content": {METRICS_MEDIA_TYPE: {"schema": {"type": "string"}}},
    }
}
BODY_VALIDATION_STATUS = "422"
ERROR_BODY_REF = {"$ref": "#/components/schemas/ErrorBody"}
GUARD_ERRORS = {
    "400": "A Host name not in VOICELAB_ALLOWED_HOSTS, or a bad request",
    "401": "Missing or wrong API key (only when VOICELAB_API_KEYS is set)",
    "403": "A state-changing request sent by another site's page (Origin / Sec-Fetch-Site)",
    "413": "Request body larger than VOICELAB_MAX_REQUEST_BYTES",
}


def _guard_statuses(method: str, path: str) -> list[str]:
    """What ``server.guard`` may answer for this operation before its route runs."""
    from voicelab.server.browser_policy import SAFE_METHODS
    from voicelab.server.guard import BODY_METHODS, needs_key

    method = method.upper()
    statuses = ["400"]
    if needs_key(method, path):
        statuses.append("401")
    if method not in SAFE_METHODS:
        statuses.append("403")
    if method in BODY_METHODS:
        statuses.append("413")
    return statuses


def _add_guard_errors(schema: dict[str, Any]) -> None:
    """Every operation documents the guard's answers (routes added later included)."""
    schema.setdefault("components", {}).setdefault("schemas", {}).setdefault(
        "ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    )
    for path, path_item in schema.get("paths", {}).items():
        for method, operation in path_item.items():
            responses = operation.setdefault("responses", {})
            for status in _guard_statuses(method, path):
                responses.setdefault(
                    status,
                    {
                        "description": GUARD_ERRORS[status],
                        "content": {"application/json": {"schema": ERROR_BODY_REF}},
                    },
                )


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema with 422 replaced by the 400 the server sends and the guard's answers added, cached
    on the app."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            responses.pop(BODY_VALIDATION_STATUS, None)
            ok = responses.get("200", {}).get("content", {})
            if len(ok) > 1:  # FastAPI adds application/json to routes that answer something else
                ok.pop("application/json", None)
    _add_guard_errors(schema)
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    app.openapi_schema = schema
    return schema


def install_docs(app: FastAPI, *, enabled: bool) -> None:
    """``/openapi.json`` and Swagger UI at ``/docs`` (assets from the package), or neither."""
    app.openapi = lambda: openapi_schema(app)  # type: ignore[method-assign]
    if not enabled:
        return
    from swagger_ui_bundle import swagger_ui_path

    app.mount(SWAGGER_ASSETS_URL, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get(OPENAPI_URL, include_in_schema=False)
    async def _schema() -> dict[str, Any]:
        return openapi_schema(app)

    page = get_swagger_ui_html(
        openapi_url=OPENAPI_URL,
        title=f"{app.title} - API",
        swagger_js_url=f"{SWAGGER_ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER_ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER_ASSETS_URL}/favicon-32x32.png",
    ).body
    headers = {"Content-Security-Policy": docs_csp(page.decode())}

    @app.get(DOCS_URL, include_in_schema=False)
    async def _docs() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)


_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def docs_csp(html: str) -> str:
    """The Swagger UI page's policy: its own files, plus its one inline start-up script by hash (no other
    inline script runs). Its styles are set inline by the bundle, so styles may be inline."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )

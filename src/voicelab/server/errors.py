"""Errors at the HTTP edge, all in OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.

The core raises specific exceptions (unknown voice, engine unavailable, ...); this module is the one
place that maps them to a status code, so clients written for OpenAI (the SDK raises ``NotFoundError``,
``RateLimitError`` ... from the status) behave as they would against OpenAI.
"""

from __future__ import annotations

import json
import logging
import re
from http import HTTPStatus
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from voicelab.engine.base import (
    EngineError,
    EngineRequestError,
    EngineUnavailableError,
    IncompleteGenerationError,
    UnknownVoiceError,
)
from voicelab.orpheus import ContractError
from voicelab.server.encoding import UnsupportedFormatError
from voicelab.server.registry import VoiceNotFoundError

logger = logging.getLogger(__name__)

INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
RATE_LIMIT = "rate_limit_error"
SERVER_ERROR = "server_error"
RETRY_AFTER_S = 1
SHOULD_RETRY_HEADER = "x-should-retry"
"""Read by the OpenAI SDKs before their automatic retries: "false" stops them, "true" forces them."""
RETRYABLE_STATUSES = (429, 503)
"""Busy or engine (re)starting: a retry shortly may succeed. Any other failure would fail (or cost a full
generation) again, so clients are told not to retry it."""
AUTH_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="voicelab"'}


class StreamAbortedError(RuntimeError):
    """Generation failed after the 200 header went out; raised to make the server cut the transfer."""


class ApiError(Exception):
    """An error response: HTTP status plus OpenAI's error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers
        self.extra = extra
        """Fields beside ``error`` in the body (the clip as it is now, on an edit conflict)."""

    def body(self) -> dict:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return {"error": error, **(self.extra or {})}

    def response(self) -> JSONResponse:
        headers = {SHOULD_RETRY_HEADER: "true" if self.status in RETRYABLE_STATUSES else "false"}
        headers.update(self.headers or {})
        return ErrorResponse(self.body(), status_code=self.status, headers=headers)


class ErrorResponse(JSONResponse):
    """JSON escaped to ASCII, so a message quoting the client's text (a lone surrogate included) always
    encodes."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


SHORT_FOLDER_NAMES = {
    "prepared_dir": "prepared",
    "voices_dir": "voices",
    "raw_dir": "raw_audio",
    "jobs_dir": "jobs",
}
"""What answers call the data folders, in place of the server's absolute paths (the studio's jobs name
all four in their logs and step notes)."""


def without_server_paths(message: str, settings) -> str:
    """``message`` with the absolute paths of the data folders replaced by their short names (``prepared``,
    ``voices``): clients learn nothing about the server's file system (the log keeps the full paths)."""
    spellings = {}
    for setting, short in SHORT_FOLDER_NAMES.items():
        if (value := getattr(settings, setting, None)) is None:
            continue
        folder = Path(value)
        for spelled in {str(folder.resolve()), str(folder.absolute())}:
            spellings[spelled] = short
    for spelled in sorted(spellings, key=len, reverse=True):  # the longest first: a folder inside another
        message = re.sub(re.escape(spelled) + r"(?![\w.-])", spellings[spelled], message)
    return message


def to_api_error(exc: Exception) -> ApiError:
    """Map a core exception to its HTTP error (unknown types become a 500 that hides the details)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, VoiceNotFoundError):
        return ApiError(404, str(exc), param="voice", code="voice_not_found")
    if isinstance(exc, UnsupportedFormatError):
        return ApiError(400, str(exc), param="response_format", code="unsupported_response_format")
    if isinstance(exc, EngineUnavailableError):
        return ApiError(
            503,
            f"speech engine unavailable: {exc}",
            type=SERVER_ERROR,
            code="engine_unavailable",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    if isinstance(exc, UnknownVoiceError):
        return ApiError(404, str(exc), param="voice", code="voice_not_found")
    if isinstance(exc, EngineRequestError):
        # vLLM's 400s are about the request (e.g. a prompt longer than the context); the rest are its own failures.
        if exc.status_code == HTTPStatus.BAD_REQUEST:
            return ApiError(400, f"speech engine rejected the request: {exc}", code="engine_rejected_request")
        return ApiError(502, f"speech engine error: {exc}", type=SERVER_ERROR, code="engine_error")
    if isinstance(exc, IncompleteGenerationError):
        return ApiError(
            502, f"generation ended early: {exc}", type=SERVER_ERROR, code="incomplete_generation"
        )
    if isinstance(exc, EngineError):
        return ApiError(502, f"speech engine error: {exc}", type=SERVER_ERROR, code="engine_error")
    if isinstance(exc, ContractError):
        return ApiError(
            502,
            f"the model produced invalid audio tokens: {exc}",
            type=SERVER_ERROR,
            code="invalid_audio_tokens",
        )
    return ApiError(500, "internal server error", type=SERVER_ERROR, code="internal_error")


JSON_CONTENT_TYPE = "application/json"
OBJECT_EXPECTED = ("model_attributes_type", "dict_type", "model_type")
"""Pydantic's error types for "the body is not a JSON object"."""
EMPTY_INPUT_MESSAGE = "input is empty: give the text to speak"
BODY_PARSE_FAILED = "There was an error parsing the body"
"""FastAPI's detail when the body cannot be decoded at all (invalid UTF-8, JSON nested too deep)."""


def _validation_error(exc: RequestValidationError, content_type: str = JSON_CONTENT_TYPE) -> ApiError:
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":  # its loc is a character offset, not a parameter
        return ApiError(
            400,
            f"the request body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}",
            code="invalid_json",
        )
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    param = ".".join(loc) or None
    if not loc and first.get("type") in OBJECT_EXPECTED and JSON_CONTENT_TYPE not in content_type:
        # FastAPI parses JSON only when told it is JSON; `curl -d` sends a form type by default.
        return ApiError(
            400,
            f"the body must be a JSON object sent with 'Content-Type: {JSON_CONTENT_TYPE}' "
            f"(got {content_type or 'no Content-Type'}; with curl add -H 'Content-Type: {JSON_CONTENT_TYPE}')",
            code="invalid_content_type",
        )
    if first.get("type") == "string_unicode":
        # Valid JSON ("\\ud800") but not text: a lone UTF-16 surrogate, which no tokenizer can encode.
        return ApiError(
            400,
            f"{param}: contains a lone UTF-16 surrogate (e.g. \\ud800); send valid Unicode text",
            param=param,
            code="invalid_text",
        )
    if param == "input" and first.get("type") in ("string_too_short", "string_pattern_mismatch"):
        return ApiError(400, EMPTY_INPUT_MESSAGE, param="input", code="empty_input")
    message = first.get("msg", "invalid request")
    if param:
        message = f"{param}: {message}"
    extra = len(exc.errors()) - 1
    if extra > 0:
        message += f" (and {extra} more problem{'s' if extra > 1 else ''})"
    return ApiError(400, message, param=param, code="invalid_value")


HTTP_ERROR_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
}


def _http_error(exc: StarletteHTTPException) -> ApiError:
    """A framework error (no route, wrong method, undecodable body) in OpenAI's shape, headers kept
    (``Allow`` on 405)."""
    error_type = INVALID_REQUEST if exc.status_code < 500 else SERVER_ERROR
    code = HTTP_ERROR_CODES.get(exc.status_code, "http_error")
    message = str(exc.detail)
    if exc.status_code == 400 and message == BODY_PARSE_FAILED:
        message = (
            "the request body could not be decoded: send a UTF-8 JSON object, nested at most a few levels"
        )
        code = "invalid_json"
    return ApiError(exc.status_code, message, type=error_type, code=code, headers=dict(exc.headers or {}))


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> str:
    """Every method some route serves at the request's path, for ``Allow`` on a 405.

    Starlette names only the methods of the first route whose path matched; a path served by several
    routes (GET and PUT of a studio clip) would be answered ``Allow: GET`` alone. Each method is tried
    against every route, as the router itself would match it.
    """
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in HTTP_METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc, request.headers.get("content-type", "")).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = _http_error(exc)
        if exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED and (allow := allowed_methods(request)):
            error.headers = {**(error.headers or {}), "Allow": allow}
        return error.response()

    for exc_type in (VoiceNotFoundError, UnsupportedFormatError, EngineError, ContractError):

        @app.exception_handler(exc_type)
        async def _core(request: Request, exc: Exception) -> JSONResponse:
            return to_api_error(exc).response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return to_api_error(exc).response()

"""The checks every request passes before its body is read: the API key, then the body's size.

An ASGI middleware rather than a FastAPI dependency, because FastAPI reads and parses the whole body before
any dependency runs: a 100 MB POST without a key would be read into memory before the 401. Here a request
without a valid key is answered from its headers alone, a declared ``Content-Length`` over the limit gets
413 at once, and a chunked body is read only up to the limit (then 413) and handed on from memory.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from pydantic import SecretStr

from voicelab.server.errors import AUTH_CHALLENGE, AUTHENTICATION, ApiError

PROTECTED_PREFIXES = ("/v1/", "/studio/api/")  # the API and the studio page's endpoints
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
STREAMED_PREFIX = "/studio/api/uploads/"
"""Recordings uploaded to the studio: streamed to disk by their route under their own cap (a declared
size over it is refused here), never held in memory."""


def check_api_key(authorization: str, keys: Sequence[SecretStr]) -> None:
    """Bearer key check; a no-op when no keys are configured. Raises a 401 ``ApiError``."""
    if not keys:
        return
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "missing API key: send 'Authorization: Bearer <key>'",
            type=AUTHENTICATION,
            code="missing_api_key",
            headers=AUTH_CHALLENGE,
        )
    token_bytes = token.strip().encode()
    # compare_digest against every key, so the time taken does not reveal which prefix matched.
    if not any(secrets.compare_digest(token_bytes, key.get_secret_value().encode()) for key in keys):
        raise ApiError(
            401, "invalid API key", type=AUTHENTICATION, code="invalid_api_key", headers=AUTH_CHALLENGE
        )


def too_large(limit: int, size: int | None = None) -> ApiError:
    told = f"{size} bytes" if size is not None else "more bytes"
    return ApiError(
        413,
        f"request body is {told}; the limit is {limit} bytes (VOICELAB_MAX_REQUEST_BYTES, by default derived "
        "from VOICELAB_MAX_INPUT_CHARS). Split the text into several requests",
        code="request_too_large",
    )


def too_large_upload(limit: int, size: int | None = None) -> ApiError:
    told = f"{size} bytes" if size is not None else "larger than that"
    return ApiError(
        413,
        f"the upload limit is {limit} bytes (VOICELAB_MAX_UPLOAD_BYTES) and the file is {told}: split the "
        "recording, or put it in the recordings folder and run voicelab-voice",
        code="upload_too_large",
    )


def _header(scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


class RequestGuard:
    """ASGI middleware: API key (``/v1/*``, ``/studio/api/*``) and body size limit, both before the body is read."""

    def __init__(
        self, app, *, api_keys: Sequence[SecretStr], max_body_bytes: int, max_upload_bytes: int | None = None
    ) -> None:
        self.app = app
        self.api_keys = list(api_keys)
        self.limit = max_body_bytes
        self.upload_limit = max_upload_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            if scope["path"].startswith(PROTECTED_PREFIXES):
                check_api_key(_header(scope, b"authorization"), self.api_keys)
            if (
                scope["method"] in BODY_METHODS
                and self.upload_limit
                and scope["path"].startswith(STREAMED_PREFIX)
            ):
                declared = _header(scope, b"content-length")
                if declared.strip().isdigit() and int(declared) > self.upload_limit:
                    raise too_large_upload(self.upload_limit, int(declared))
            elif scope["method"] in BODY_METHODS:
                receive = await self._bounded_body(scope, receive)
        except ApiError as e:
            await e.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _bounded_body(self, scope, receive):
        """Read the body (at most ``limit`` bytes) and return a ``receive`` that replays it."""
        declared = _header(scope, b"content-length")
        if declared.strip().isdigit() and int(declared) > self.limit:
            raise too_large(self.limit, int(declared))
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left; let the app see it
                return _replay([message], receive)
            size += len(message.get("body", b""))
            if size > self.limit:
                raise too_large(self.limit)
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return _replay([{"type": "http.request", "body": b"".join(parts), "more_body": False}], receive)


def _replay(messages: list[dict], receive):
    pending = list(messages)

    async def replayed():
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed

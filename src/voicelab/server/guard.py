"""The checks every request passes before its body is read: the Host name, where a state-changing request
comes from (``browser_policy``), the API key, then the body's size.

An ASGI middleware rather than a FastAPI dependency, because FastAPI reads and parses the whole body before
any dependency runs: a 100 MB POST without a key would be read into memory before the 401. Here a request
without a valid key is answered from its headers alone, a declared ``Content-Length`` over the limit gets
413 at once, and a chunked body is read only up to the limit (then 413) and handed on from memory.

The rules follow from the method and the path alone, so a route added later gets them without a line of
its own: every request must name an allowed host; every state-changing request (any method but GET, HEAD,
OPTIONS) must come from this server's own page or from a program that is not a browser, and needs the key
when keys are set, wherever its route lives; reads need the key under ``/v1/`` and ``/studio/api/``.
Uploads (``STREAMED_PREFIX``) pass the same checks; only their body is left to their route, which streams
it to disk under its own cap.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from pydantic import SecretStr

from voicelab.server.browser_policy import SAFE_METHODS, cross_site_reason, host_allowed
from voicelab.server.errors import AUTH_CHALLENGE, AUTHENTICATION, ApiError

PROTECTED_PREFIXES = ("/v1/", "/studio/api/")  # the API and the studio page's endpoints: reads need the key
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
STREAMED_PREFIX = "/studio/api/uploads/"
"""Recordings uploaded to the studio: streamed to disk by their route under their own cap (a declared
size over it is refused here), never held in memory. Host, same-site and key apply to them as to every
write."""


def needs_key(method: str, path: str) -> bool:
    """Whether the API key (when keys are set) guards this request: every state-changing one, and reads
    of the API and the studio's endpoints."""
    return method.upper() not in SAFE_METHODS or path.startswith(PROTECTED_PREFIXES)


def check_host(host_header: str, patterns: list[str]) -> None:
    """Raise 400 ``invalid_host`` unless the request names a host this server answers to.

    A request without a Host header (an HTTP/1.0 tool) cannot come from a browser and passes.
    """
    if not host_header or host_allowed(host_header, patterns):
        return
    raise ApiError(
        400,
        f"this server does not answer to the host name {host_header[:100]!r}; if that is how clients "
        "reach it, add the name to VOICELAB_ALLOWED_HOSTS (docs/deploy.md)",
        code="invalid_host",
    )


def check_same_site(method: str, sec_fetch_site: str, origin: str, host_header: str) -> None:
    """Raise 403 ``cross_site_request`` for a state-changing request another site's page sent."""
    reason = cross_site_reason(method, sec_fetch_site, origin, host_header)
    if reason is not None:
        raise ApiError(
            403,
            f"{method} refused: {reason}. Only the studio page served here, or a program that is not a "
            "browser, may change anything",
            type="permission_error",
            code="cross_site_request",
        )


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


def has_valid_key(authorization: str, keys: Sequence[SecretStr]) -> bool:
    """True when no keys are set or ``authorization`` carries one of them."""
    try:
        check_api_key(authorization, keys)
    except ApiError:
        return False
    return True


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
    """ASGI middleware: Host, same-site writes, API key and body size limit, all before the body is read."""

    def __init__(
        self,
        app,
        *,
        api_keys: Sequence[SecretStr],
        max_body_bytes: int,
        allowed_hosts: Sequence[str],
        max_upload_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.api_keys = list(api_keys)
        self.limit = max_body_bytes
        self.allowed_hosts = list(allowed_hosts)
        self.upload_limit = max_upload_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            host = _header(scope, b"host")
            check_host(host, self.allowed_hosts)
            method = scope["method"]
            check_same_site(method, _header(scope, b"sec-fetch-site"), _header(scope, b"origin"), host)
            if needs_key(method, scope["path"]):
                check_api_key(_header(scope, b"authorization"), self.api_keys)
            if method in BODY_METHODS and self.upload_limit and scope["path"].startswith(STREAMED_PREFIX):
                declared = _header(scope, b"content-length")
                if declared.strip().isdigit() and int(declared) > self.upload_limit:
                    raise too_large_upload(self.upload_limit, int(declared))
            elif method in BODY_METHODS:
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

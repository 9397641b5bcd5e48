"""What keeps other web sites out: the Host allow-list, same-origin writes, and headers on every answer.

The server listens on 127.0.0.1 by default, yet any page a browser on the same machine opens can aim
requests at it:

- DNS rebinding: a page on ``attacker.example`` makes its own name resolve to 127.0.0.1 and then reads
  the API as if it were its own origin. The browser still sends ``Host: attacker.example``, so the server
  answers only the names in ``VOICELAB_ALLOWED_HOSTS`` (default: 127.0.0.1, localhost, [::1]; any port).
- Cross-site requests: any page can send a form POST or a no-cors ``fetch`` to 127.0.0.1. It cannot read
  the answer, but the request runs. A state-changing request (any method but GET, HEAD, OPTIONS) whose
  ``Sec-Fetch-Site`` says another site sent it, or whose ``Origin`` is not the server's own, is refused
  with 403 before anything runs. Programs that are not browsers (curl, the OpenAI SDK) send neither
  header and are not affected.
- Framing, type sniffing, active content: every answer carries ``X-Content-Type-Options: nosniff`` and
  forbids framing; HTML pages get a Content-Security-Policy that allows only the server's own scripts and
  styles; every other answer gets one that allows nothing, so an SVG or HTML file served as data never
  runs script even when opened directly.

``server.guard.RequestGuard`` applies the two request rules to every route, present and future, before
the body is read; ``SecurityHeaders`` adds the headers to every response. This module has no heavy imports:
the settings check ``VOICELAB_ALLOWED_HOSTS`` with it (``--help`` of the commands stays instant).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders

ANY_HOST = "*"
"""``VOICELAB_ALLOWED_HOSTS=*``: no Host check (only behind a proxy that checks Host itself)."""
SUBDOMAIN_PREFIX = "*."
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing (RFC 9110 section 9.2.1); every other method is state-changing."""
SAME_ORIGIN_FETCH_SITES = frozenset({"same-origin", "none"})
"""``Sec-Fetch-Site`` values of a request from the page itself or typed by the user (``cross-site`` and
``same-site``, another origin on the same site, are refused for state-changing requests)."""
DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(r"^[a-z0-9_.-]+$")
_IPV6 = re.compile(r"^\[[0-9a-f:.]+\]$")

PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""The studio page: its own script, style and API only; pictures and audio it fetched itself (blob:)."""
DATA_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
"""Every answer that is not a page (JSON, audio, pictures, files): nothing in it may run or load."""
FIXED_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
CSP_HEADER = "content-security-policy"
HTML_MEDIA_TYPE = "text/html"


def split_host(value: str) -> tuple[str, int | None]:
    """``host[:port]`` (a Host header, or an allow-list entry) as (lower-case name, port or None).

    IPv6 addresses keep their brackets (``[::1]``); a trailing dot is dropped. Raises ``ValueError`` for
    something that is no host name.
    """
    value = value.strip().lower()
    port: int | None = None
    if value.startswith("["):
        name, _, rest = value.partition("]")
        name += "]"
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{value!r} is no host name")
            port = _port(rest[1:], value)
        if not _IPV6.match(name):
            raise ValueError(f"{value!r} is no host name")
        return name, port
    name, colon, rest = value.partition(":")
    if colon:
        port = _port(rest, value)
    name = name.rstrip(".")
    if not name or not _HOST_NAME.match(name):
        raise ValueError(f"{value!r} is no host name")
    return name, port


def _port(text: str, value: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 2**16:
        raise ValueError(f"{value!r} has no valid port")
    return int(text)


def check_host_pattern(pattern: str) -> str:
    """One ``VOICELAB_ALLOWED_HOSTS`` entry, normalised; ``ValueError`` naming it when it cannot match."""
    pattern = pattern.strip().lower()
    if pattern == ANY_HOST:
        return pattern
    if ":" in pattern and not pattern.startswith("["):
        if pattern.count(":") > 1:  # a bare IPv6 address
            pattern = f"[{pattern}]"
        else:
            raise ValueError(f"allowed host {pattern!r}: give the name without a port (every port matches)")
    wildcard = pattern.startswith(SUBDOMAIN_PREFIX)
    try:
        name, port = split_host(pattern.removeprefix(SUBDOMAIN_PREFIX))
    except ValueError as e:
        raise ValueError(f"allowed host {pattern!r}: {e}") from None
    if port is not None:
        raise ValueError(f"allowed host {pattern!r}: give the name without a port (every port matches)")
    return SUBDOMAIN_PREFIX + name if wildcard else name


def host_allowed(host_header: str, patterns: list[str]) -> bool:
    """True when the Host header names one of ``patterns`` (any port)."""
    if ANY_HOST in patterns:
        return True
    try:
        name, _ = split_host(host_header)
    except ValueError:
        return False
    for pattern in patterns:
        if name == pattern:
            return True
        if pattern.startswith(SUBDOMAIN_PREFIX) and name.endswith(pattern[1:]):
            return True
    return False


def _origin_matches(origin: str, host_header: str) -> bool:
    try:
        parts = urlsplit(origin)
        origin_name, origin_port = split_host(parts.netloc)
        host_name, host_port = split_host(host_header)
    except ValueError:
        return False
    default = DEFAULT_PORTS.get(parts.scheme)
    if default is None:
        return False
    return origin_name == host_name and (origin_port or default) == (host_port or default)


def cross_site_reason(method: str, sec_fetch_site: str, origin: str, host_header: str) -> str | None:
    """Why a request must be refused as sent by another site's page; None when it may run."""
    if method.upper() in SAFE_METHODS:
        return None
    site = sec_fetch_site.strip().lower()
    if site and site not in SAME_ORIGIN_FETCH_SITES:
        return f"the browser says a page on another site sent it (Sec-Fetch-Site: {site})"
    if origin and not _origin_matches(origin.strip(), host_header):
        return f"it comes from a page of another origin (Origin: {origin[:100]})"
    return None


class SecurityHeaders:
    """ASGI middleware: nosniff, no framing and a Content-Security-Policy on every response.

    A route that sets its own Content-Security-Policy (the Swagger UI page) keeps it.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in FIXED_HEADERS.items():
                    headers.setdefault(name, value)
                if CSP_HEADER not in headers:
                    page = headers.get("content-type", "").startswith(HTML_MEDIA_TYPE)
                    headers[CSP_HEADER] = PAGE_CSP if page else DATA_CSP
            await send(message)

        await self.app(scope, receive, send_with_headers)

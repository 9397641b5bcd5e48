"""Where this server can be reached from: only this machine (loopback), or beyond it.

The app is built before uvicorn binds its socket, and ``make serve HOST=...``, ``uvicorn --host``, a
``--uds`` socket or a socket inherited from a process manager all end in the same place: a listening
socket held by this process. So the app asks the process: every listening socket it holds (found through
its open file descriptors) must be bound to a loopback address for the server to count as local. A Unix
socket counts as beyond this machine (it usually sits behind a reverse proxy). A request that arrived on a
non-loopback address says the same, whatever the sockets looked like.

A reverse proxy on the same machine that forwards outside traffic to 127.0.0.1 cannot be told apart from
a local browser: docs/deploy.md says to switch the feature off (or set API keys) there.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from dataclasses import dataclass

FD_DIRS = ("/proc/self/fd", "/dev/fd")
"""Where the process' open descriptors are listed (Linux, then macOS and the BSDs)."""


@dataclass(frozen=True)
class Listening:
    addresses: tuple[str, ...]
    """``host:port`` or the Unix socket path of each listening socket."""
    local_only: bool


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _descriptors() -> list[int]:
    for folder in FD_DIRS:
        with contextlib.suppress(OSError):
            return [int(name) for name in os.listdir(folder) if name.isdigit()]
    return []


def _listening(fd: int) -> tuple[int, object] | None:
    """(family, address) of ``fd`` when it is a listening socket, else None."""
    try:
        copy = os.dup(fd)
    except OSError:
        return None  # closed since it was listed
    try:
        sock = socket.socket(fileno=copy)
    except OSError:
        os.close(copy)
        return None  # not a socket
    with sock:
        try:
            if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                return None
            return sock.family, sock.getsockname()
        except OSError:
            return None


def listening_sockets() -> Listening:
    """This process' listening sockets, and whether all of them are loopback only."""
    found, local = [], True
    for fd in _descriptors():
        entry = _listening(fd)
        if entry is None:
            continue
        family, address = entry
        if family in (socket.AF_INET, socket.AF_INET6):
            host, port = address[0], address[1]
            found.append(f"{host}:{port}")
            local = local and is_loopback(host)
        elif family == socket.AF_UNIX:
            found.append(str(address))
            local = False
    return Listening(tuple(found), local)

"""Run an ASGI app on a real local port in a background thread (for clients that need real HTTP)."""

from __future__ import annotations

import socket
import threading
import time

STARTUP_POLL_S = 0.02
LOCAL_URL = "http://127.0.0.1"
"""Where in-process test clients say they are: a host the server answers to by default (Starlette's
TestClient would otherwise send ``Host: testserver``, which ``VOICELAB_ALLOWED_HOSTS`` refuses)."""


def local_client(app, **kwargs):
    """``fastapi.testclient.TestClient`` for ``app``, addressed as 127.0.0.1 like a local client."""
    from fastapi.testclient import TestClient

    return TestClient(app, base_url=LOCAL_URL, **kwargs)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ServerThread:
    """``with ServerThread(app) as server: server.url`` -- uvicorn, lifespan included, stopped on exit."""

    def __init__(self, app, host: str = "127.0.0.1", port: int | None = None, *, backlog: int = 2048):
        """``backlog``: the listen queue (uvicorn's default); a load test opening many connections at once
        needs it above their number, or connections are refused or retried by the kernel."""
        import uvicorn

        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(
            app, host=host, port=self.port, log_level="warning", lifespan="on", backlog=backlog
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> ServerThread:
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the test server stopped during start-up (see the log above)")
            time.sleep(STARTUP_POLL_S)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self._thread.join()


HEALTH_POLL_S = 0.5


def wait_until_healthy(url: str, process) -> dict:
    """Poll ``url``/health until a server started as ``process`` (a ``subprocess.Popen``) answers 200; fail
    as soon as the process dies, with the end of its output when it was captured."""
    import httpx

    while True:
        if process.poll() is not None:
            output = process.stdout.read()[-3000:] if process.stdout else ""
            raise AssertionError(f"the server exited with {process.returncode}:\n{output}")
        try:
            response = httpx.get(f"{url}/health")
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(HEALTH_POLL_S)


class IdleEngine:
    """An engine for apps whose tests exercise the studio or its jobs: it only has to start and stop."""

    async def health(self) -> bool:
        return True

    async def load_voice(self, voice) -> None:
        pass

    async def unload_voice(self, name: str) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def idle_backend(_settings):
    """A ``backend_factory`` for ``create_app`` giving the idle engine and no synthesizer."""
    from voicelab.server.backend import Backend

    return Backend(kind="fake", engine=IdleEngine(), synthesizer=None)


class SlowSite:
    """A web server whose every answer waits until released, then is a 404: a job that downloads for as long
    as a test needs (``site.url``; ``site.close()`` releases and stops it)."""

    def __init__(self) -> None:
        import http.server

        self.release = threading.Event()
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                site.release.wait()
                self.send_error(404, "gone")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/talk.wav"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()

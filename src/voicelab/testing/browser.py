"""The studio in a real browser, for tests: the distribution's Chromium driven by Playwright.

Chromium is launched by path (``apt-get install chromium``); nothing is downloaded. The ``browser`` and
``page`` fixtures and the ``BROWSER_MARKS`` of a browser test module are in tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--host-resolver-rules=MAP rebind.attacker.test 127.0.0.1",  # DNS rebinding, without DNS
]
KEY = "studio-browser-key"
"""The API key the browser tests' servers require and their pages type in."""
STEP_TIMEOUT_MS = 20_000  # Playwright's own wait bound per step (a loaded 2-core CI machine is slow)
TOKEN_DELAY_S = 0.005  # the stand-in vLLM paces its tokens, so audio arrives over time as from a GPU


def open_with_key(page, server, key: str = KEY) -> None:
    """Open the studio of ``server`` and type ``key`` into its API key field."""
    page.goto(server.url + "/")
    page.locator("#api-key").fill(key)
    page.locator("#api-key").press("Enter")


def screenshot(page, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

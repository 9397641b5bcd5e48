"""The TTS server: ``create_app(settings)`` builds the FastAPI app; the lifespan does the heavy work.

    make dev                                     # uvicorn --factory voicelab.server.app:create_app
    VOICELAB_VLLM_URL=http://127.0.0.1:8001 make dev   # with vLLM (`make vllm`) as the engine

Start-up: load the backend (tokenizer, SNAC, local model or vLLM client), scan ``voices/`` and load
every valid voice into the engine. Nothing happens at import time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from voicelab.cli.common import SERVER_LOG_FORMAT, setup_logging
from voicelab.server.backend import BackendFactory, build_backend
from voicelab.server.browser_policy import SecurityHeaders
from voicelab.server.errors import StreamAbortedError, install_error_handlers
from voicelab.server.guard import RequestGuard
from voicelab.server.metrics import ServerMetrics
from voicelab.server.openapi import install_docs
from voicelab.server.registry import VoiceRegistry
from voicelab.server.routes import public, v1
from voicelab.server.settings import Settings, SettingsError, load_settings
from voicelab.server.speech import ConcurrencyLimiter
from voicelab.server.studio import install_studio
from voicelab.server.studio_jobs import install_jobs, running_jobs

logger = logging.getLogger(__name__)


class CutAbortedStreams:
    """ASGI middleware for a stream that fails after its 200 header went out (``StreamAbortedError``).

    The failure is already logged with its cause where it happened. Returning without the final body
    message makes the HTTP server drop the connection, so the client sees a broken transfer (not a short
    file that looks complete), and the log gets one line from the server instead of a second traceback.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        try:
            await self.app(scope, receive, send)
        except StreamAbortedError:
            return


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = app.state
    settings: Settings = state.settings
    logger.info("voicelab: loading the %s engine backend", settings.engine_kind)
    state.backend = await state.backend_factory(settings)
    try:
        report = await state.registry.reload(state.backend.engine)
        state.metrics.voices.set(len(state.registry.voices))
        if not state.registry.voices:
            logger.warning(
                "no voices served from %s (skipped: %s); train one with `make train-lora`, then POST /v1/voices/reload",
                settings.voices_dir,
                report.skipped or "none",
            )
        async with running_jobs(app):
            yield
    finally:
        await state.backend.aclose()


def create_app(settings: Settings | None = None, *, backend_factory: BackendFactory | None = None) -> FastAPI:
    """The app for ``settings`` (default: ``Settings()`` from ``VOICELAB_*`` env).

    ``backend_factory`` replaces the engine/synthesizer built at start-up (tests pass fakes or tiny models).
    """
    if settings is None:
        try:
            settings = load_settings()
        except SettingsError as e:
            # uvicorn --factory would print a pydantic traceback; the variable and the fix are what matter
            raise SystemExit(f"voicelab: bad server settings: {e}") from e
    setup_logging(level=settings.log_level, fmt=SERVER_LOG_FORMAT)
    # The docs routes are added by install_docs: Swagger UI from the package (offline), no ReDoc (CDN only).
    app = FastAPI(
        title="voicelab TTS",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.backend_factory = backend_factory or build_backend
    app.state.registry = VoiceRegistry(
        settings.voices_dir,
        base_model=settings.base_model,
        max_lora_rank=settings.max_lora_rank,
        snac_model=settings.snac_model,
        engine_resolves=settings.engine_kind == "vllm" and settings.vllm_lora_resolver,
    )
    app.state.limiter = ConcurrencyLimiter(settings.max_concurrent_requests)
    app.state.metrics = ServerMetrics()
    app.state.started_at = time.time()
    install_error_handlers(app)
    app.add_middleware(CutAbortedStreams)
    # Added last, so it runs first: host, origin, key and size are checked before anything reads the body.
    app.add_middleware(
        RequestGuard,
        api_keys=settings.api_keys,
        max_body_bytes=settings.request_body_limit,
        allowed_hosts=settings.allowed_hosts,
        max_upload_bytes=settings.max_upload_bytes,
    )
    app.add_middleware(SecurityHeaders)  # outermost: the guard's refusals carry the headers too
    app.include_router(v1)
    app.include_router(public)
    install_studio(app)
    install_jobs(app)
    install_docs(app, enabled=settings.docs)
    return app

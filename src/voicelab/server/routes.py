"""HTTP routes: thin handlers over the registry, the backend and the speech module."""

from __future__ import annotations

import logging
import time
from contextlib import AsyncExitStack

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from voicelab.server import openapi, speech
from voicelab.server.errors import to_api_error, without_server_paths
from voicelab.server.guard import has_valid_key
from voicelab.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

logger = logging.getLogger(__name__)

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # proxies must not buffer audio
SDK_HEADER_PREFIX = "x-stainless-"
"""Every request from an official OpenAI SDK carries ``X-Stainless-*`` headers."""
SDK_STREAMING_HEADER = "x-stainless-raw-response"
"""The SDK sets it to "stream" for ``with_streaming_response``; otherwise it reads the whole body before
returning, and retries the whole request (twice by default) when a transfer breaks."""


class SpeechStreamingResponse(StreamingResponse):
    """A streaming response that owns its speech job: leaving ``owner`` (the job's exit stack) closes the
    job once the transfer ends, however it ends (even when the client left before the first byte, when the
    body generator never starts)."""

    def __init__(self, content, owner: AsyncExitStack, **kwargs):
        super().__init__(content, **kwargs)
        self.owner = owner

    async def __call__(self, scope, receive, send) -> None:
        async with self.owner:
            try:
                await super().__call__(scope, receive, send)
            finally:
                await self.body_iterator.aclose()


v1 = APIRouter(prefix="/v1", responses=openapi.V1_ERRORS)
public = APIRouter()


def _services(request: Request) -> speech.SpeechServices:
    state = request.app.state
    return speech.SpeechServices(state.settings, state.registry, state.backend, state.limiter, state.metrics)


def reads_whole_body(request: Request) -> bool:
    """A client that waits for the whole body anyway (the OpenAI SDK's ``create``) gains nothing from a
    streamed transfer, and a stream cut short would look to it like a network error it retries. Buffering
    turns such a failure into a real status with ``x-should-retry: false``: one clear error, no retries."""
    headers = request.headers
    from_sdk = any(name.startswith(SDK_HEADER_PREFIX) for name in headers)
    return from_sdk and headers.get(SDK_STREAMING_HEADER) != "stream"


@v1.post("/audio/speech", response_model=None, responses=openapi.SPEECH_RESPONSES)
async def create_speech(body: speech.SpeechRequest, request: Request) -> Response:
    started = time.perf_counter()
    try:
        async with AsyncExitStack() as stack:
            job = await stack.enter_async_context(speech.SpeechJob(_services(request), body, started))
            media_type = job.encoder.media_type
            if body.stream_format == "sse":
                return SpeechStreamingResponse(
                    speech.sse_body(job),
                    stack.pop_all(),
                    media_type=speech.SSE_MEDIA_TYPE,
                    headers=STREAM_HEADERS,
                )
            if job.encoder.info.streams and body.speed == 1.0 and not reads_whole_body(request):
                return SpeechStreamingResponse(
                    speech.audio_body(job), stack.pop_all(), media_type=media_type, headers=STREAM_HEADERS
                )
            # Nothing is sent before generation ends, so a failure is still a proper status.
            return Response(await speech.buffered_body(job, request.is_disconnected), media_type=media_type)
    except speech.ClientGoneError:
        logger.info("client hung up while voice %s was generating; stopped", body.voice_name)
        return Response(status_code=speech.CLIENT_CLOSED_REQUEST)
    except Exception as e:
        api = to_api_error(e)
        if api.status >= 500:
            logger.warning("speech request for voice %s failed: %s", body.voice_name, e)
        raise api from e


@v1.get("/audio/voices")
async def list_voices(request: Request) -> dict:
    registry = request.app.state.registry
    return {"object": "list", "voices": [registry.voices[name].describe() for name in registry.names()]}


@v1.get("/models")
async def list_models(request: Request) -> dict:
    """The model (OpenAI's shape) and, as vLLM lists adapters, each voice with the model as parent."""
    state = request.app.state
    created = int(state.started_at)
    model_id = state.settings.model_id
    data = [{"id": model_id, "object": "model", "created": created, "owned_by": "voicelab", "parent": None}]
    data += [
        {"id": name, "object": "model", "created": created, "owned_by": "voicelab", "parent": model_id}
        for name in state.registry.names()
    ]
    return {"object": "list", "data": data}


@v1.post("/voices/reload")
async def reload_voices(request: Request) -> dict:
    state = request.app.state
    report = await state.registry.reload(state.backend.engine)
    state.metrics.voices.set(len(state.registry.voices))
    body = {**report.as_dict(), "voices": state.registry.names()}
    for part in ("skipped", "failed"):  # reasons name files: without the server's paths
        body[part] = {name: without_server_paths(why, state.settings) for name, why in body[part].items()}
    return body


@public.get("/health", responses=openapi.HEALTH_RESPONSES)
async def health(request: Request) -> JSONResponse:
    state = request.app.state
    try:
        reachable = bool(await state.backend.engine.health())
    except Exception as e:  # health must answer, whatever the engine does
        logger.warning("engine health check failed: %s", e)
        reachable = False
    # Open to anyone: counts only. Names are behind the key (/v1/audio/voices), skip reasons (which name
    # server paths) in the log and in the reload report.
    body = {
        "status": "ok" if reachable else "engine_unavailable",
        "engine": state.backend.kind,
        "engine_reachable": reachable,
        "voices": len(state.registry.voices),
        "voices_skipped": len(state.registry.skipped),
    }
    return JSONResponse(body, status_code=200 if reachable else 503)


@public.get("/metrics", response_class=PlainTextResponse, responses=openapi.METRICS_RESPONSES)
async def metrics(request: Request) -> Response:
    """Open to scrapers; voice names only for a request with a valid key when keys are set."""
    with_voices = has_valid_key(request.headers.get("authorization", ""), request.app.state.settings.api_keys)
    return Response(
        request.app.state.metrics.render(with_voices=with_voices), media_type=METRICS_CONTENT_TYPE
    )

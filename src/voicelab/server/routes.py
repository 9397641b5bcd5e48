"""HTTP routes: thin handlers over the registry, the backend and the speech module."""

from __future__ import annotations

import logging
import secrets
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from voicelab.server import speech
from voicelab.server.errors import AUTHENTICATION, ApiError, to_api_error
from voicelab.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

logger = logging.getLogger(__name__)

CLIENT_CLOSED_REQUEST = 499  # nginx's status for "the client went away first"; nobody receives it
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # proxies must not buffer audio


class SpeechStreamingResponse(StreamingResponse):
    """A streaming response that always ends its speech job, even when the client left before the first
    byte (the body generator then never starts, so its own ``finally`` would never free the slot)."""

    def __init__(self, content, job: speech.SpeechJob, **kwargs):
        super().__init__(content, **kwargs)
        self.job = job

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()
            await self.job.close()


def require_api_key(request: Request) -> None:
    """Bearer key check for /v1 routes; a no-op when no keys are configured."""
    keys = request.app.state.settings.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "missing API key: send 'Authorization: Bearer <key>'",
            type=AUTHENTICATION,
            code="missing_api_key",
        )
    token = token.strip().encode()
    # compare_digest against every key, so the time taken does not reveal which prefix matched.
    if not any(secrets.compare_digest(token, key.get_secret_value().encode()) for key in keys):
        raise ApiError(401, "invalid API key", type=AUTHENTICATION, code="invalid_api_key")


v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])
public = APIRouter()


def _services(request: Request) -> speech.SpeechServices:
    state = request.app.state
    return speech.SpeechServices(state.settings, state.registry, state.backend, state.limiter, state.metrics)


@v1.post("/audio/speech", response_model=None)
async def create_speech(body: speech.SpeechRequest, request: Request) -> Response:
    started = time.perf_counter()
    services = _services(request)
    label = speech.voice_label(services.registry, body.voice_name)
    try:
        job = await speech.open_speech(services, body, started)
        if body.stream_format == "sse":
            response: Response = SpeechStreamingResponse(
                speech.sse_body(job), job, media_type=speech.SSE_MEDIA_TYPE, headers=STREAM_HEADERS
            )
        elif job.encoder.info.streams and body.speed == 1.0:
            response = SpeechStreamingResponse(
                speech.audio_body(job), job, media_type=job.encoder.media_type, headers=STREAM_HEADERS
            )
        else:
            # Nothing can be sent before generation ends, so wait for it: a failure is still a proper status.
            body_bytes = await speech.buffered_body(job, request.is_disconnected)
            response = Response(body_bytes, media_type=job.encoder.media_type)
    except speech.ClientGoneError:
        logger.info("client hung up while voice %s was generating; stopped", body.voice_name)
        services.metrics.requests.labels(label, body.response_format, str(CLIENT_CLOSED_REQUEST)).inc()
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    except Exception as e:
        api = to_api_error(e)
        services.metrics.requests.labels(label, body.response_format, str(api.status)).inc()
        services.metrics.errors.labels(label, api.code or "error").inc()
        if api.status >= 500:
            logger.warning("speech request for voice %s failed: %s", body.voice_name, e)
        raise api from e
    services.metrics.requests.labels(label, body.response_format, "200").inc()
    return response


@v1.get("/audio/voices")
async def list_voices(request: Request) -> dict:
    registry = request.app.state.registry
    return {"voices": [registry.voices[name].describe() for name in registry.names()]}


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
    return {**report.as_dict(), "voices": state.registry.names()}


@public.get("/health")
async def health(request: Request) -> JSONResponse:
    state = request.app.state
    try:
        reachable = bool(await state.backend.engine.health())
    except Exception as e:  # health must answer, whatever the engine does
        logger.warning("engine health check failed: %s", e)
        reachable = False
    voices = state.registry.names()
    body = {
        "status": "ok" if reachable else "engine_unavailable",
        "engine": state.backend.kind,
        "engine_reachable": reachable,
        "voices": voices,
        "voices_skipped": state.registry.skipped,
    }
    return JSONResponse(body, status_code=200 if reachable else 503)


@public.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=METRICS_CONTENT_TYPE)

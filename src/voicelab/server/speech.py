"""``POST /v1/audio/speech`` behind the route: request model, validation, generation, encoding.

Errors that can be known before audio exists (bad input, unknown voice, engine down, too busy) must
become proper HTTP statuses, so the first audio chunk is awaited BEFORE the response starts; after that
the status is already 200 and a failure can only cut the stream (audio) or send an error event (sse).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from http import HTTPStatus
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import ClientDisconnect

from voicelab import orpheus
from voicelab.engine.base import IncompleteGenerationError, SamplingParams, UnknownVoiceError
from voicelab.engine.synthesizer import Usage
from voicelab.server.backend import Backend
from voicelab.server.encoding import AudioEncoder, encode_whole, time_stretch
from voicelab.server.errors import (
    RATE_LIMIT,
    RETRY_AFTER_S,
    SERVER_ERROR,
    ApiError,
    StreamAbortedError,
    to_api_error,
)
from voicelab.server.metrics import UNKNOWN_VOICE_LABEL, ServerMetrics
from voicelab.server.registry import VoiceEntry, VoiceRegistry
from voicelab.server.settings import Settings

logger = logging.getLogger(__name__)

MIN_SPEED, MAX_SPEED = 0.25, 4.0  # OpenAI's range
MAX_TOKENS_LIMIT = 8192
"""No request can generate more than the served context length (see vllm_command.DEFAULT_MAX_MODEL_LEN)."""
MIN_TEMPERATURE = 1e-5
"""vLLM samples greedily below this; the embedded engine's float32 logits overflow far below it."""
MIN_TOP_P = 1e-5
"""Smaller values round to 0 in float32 and would leave no token to sample."""
MIN_SEED, MAX_SEED = -(2**63), 2**63 - 1
"""torch's generator and vLLM both take a signed 64-bit seed."""
NON_BLANK = r"\S"
"""The schema's pattern for ``input``: at least one character that is not whitespace."""
SSE_MEDIA_TYPE = "text/event-stream"


class VoiceRef(BaseModel):
    """The SDK's custom-voice form ``{"id": "name"}``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str


class SpeechRequest(BaseModel):
    """OpenAI's speech request, plus Orpheus sampling fields.

    Unknown fields are refused, since a misspelt sampling field silently ignored (vLLM's behaviour) is
    worse than an error. Types are strict (``"seed": false`` or ``"speed": "2"`` are refused, not coerced)
    and numbers finite: every value the schema accepts is one both engines can run.
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    model: str | None = Field(None, description="Accepted for compatibility; the voice picks the adapter")
    input: str = Field(
        min_length=1, pattern=NON_BLANK, description="Text to speak (at most VOICELAB_MAX_INPUT_CHARS)"
    )
    voice: str | VoiceRef
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=MIN_SPEED, le=MAX_SPEED)
    stream_format: Literal["audio", "sse"] = "audio"
    instructions: str | None = Field(None, description="Ignored: Orpheus has no instruction conditioning")
    temperature: float | None = Field(None, ge=MIN_TEMPERATURE, le=2)
    top_p: float | None = Field(None, ge=MIN_TOP_P, le=1)
    repetition_penalty: float | None = Field(None, ge=1, le=2)
    max_tokens: int | None = Field(None, ge=orpheus.CODES_PER_FRAME + 1, le=MAX_TOKENS_LIMIT)
    seed: int | None = Field(None, ge=MIN_SEED, le=MAX_SEED)

    @property
    def voice_name(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceRef) else self.voice


class ConcurrencyLimiter:
    """Refuses (rather than queues) work beyond ``limit`` in flight: a client gets 429 at once and can
    retry, instead of waiting behind a queue with no bound on latency."""

    def __init__(self, limit: int):
        self.limit = limit
        self.active = 0

    def try_acquire(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active = max(0, self.active - 1)


@dataclass
class SpeechServices:
    """What the speech route needs, gathered from ``app.state``."""

    settings: Settings
    registry: VoiceRegistry
    backend: Backend
    limiter: ConcurrencyLimiter
    metrics: ServerMetrics


def check_input(text: str, max_chars: int) -> str:
    if not text or not text.strip():
        raise ApiError(400, "input is empty: give the text to speak", param="input", code="empty_input")
    if len(text) > max_chars:
        raise ApiError(
            400,
            f"input is {len(text)} characters; the limit is {max_chars}. Split the text into several requests",
            param="input",
            code="input_too_long",
        )
    return text


def sampling_for(request: SpeechRequest, settings: Settings) -> SamplingParams:
    defaults = settings.default_sampling()
    return SamplingParams(
        temperature=request.temperature if request.temperature is not None else defaults.temperature,
        top_p=request.top_p if request.top_p is not None else defaults.top_p,
        repetition_penalty=(
            request.repetition_penalty
            if request.repetition_penalty is not None
            else defaults.repetition_penalty
        ),
        max_tokens=request.max_tokens,
        seed=request.seed,
    )


CLIENT_CLOSED_REQUEST = 499
"""nginx's status for "the client went away first" (nobody receives it; it labels the metrics)."""
CLIENT_GONE = (asyncio.CancelledError, OSError, ClientDisconnect)
"""What a hang-up looks like from inside the response."""


class ClientGoneError(Exception):
    """The client hung up while a buffered format was being generated."""


class SpeechJob:
    """One speech generation and the concurrency slot it holds: ``async with SpeechJob(...) as job``.

    Entering validates the request, reserves a slot (429 when none is free), starts generating and waits
    for the first chunk, so every error that can be known before audio exists becomes a proper status.
    Leaving (or a failed entry) is the one place that stops generation, frees the slot and counts the
    request in the metrics with its outcome: 200 when the whole body was produced, the error's status when
    it failed (a stream cut after its 200 header included), 499 when the client left first.
    """

    def __init__(self, services: SpeechServices, request: SpeechRequest, started: float):
        self.services = services
        self.request = request
        self.started = started
        self.entry: VoiceEntry | None = None
        self.encoder: AudioEncoder = None  # type: ignore[assignment]  # set on entry, before any audio
        self.chunks: AsyncIterator[np.ndarray] | None = None
        self.first: np.ndarray | None = None
        self.tokens = Usage()
        self.samples = 0
        self.status: int | None = None
        """The outcome, once known (``succeeded``/``failed``)."""
        self._error_code: str | None = None
        self._holds_slot = False
        self._closed = False

    @property
    def voice(self) -> str:
        return self.entry.name if self.entry else self.request.voice_name

    async def __aenter__(self) -> SpeechJob:
        try:
            await self._open()
        except BaseException as e:
            await self._close(e)
            raise
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        await self._close(exc)

    async def _open(self) -> None:
        services, request = self.services, self.request
        text = check_input(request.input, services.settings.max_input_chars)
        self.encoder = AudioEncoder(request.response_format)
        self.entry = services.registry.get(request.voice_name)
        if not services.limiter.try_acquire():
            raise ApiError(
                429,
                f"too many concurrent speech requests (limit {services.limiter.limit}); retry shortly",
                type=RATE_LIMIT,
                code="too_many_concurrent_requests",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self._holds_slot = True
        services.metrics.in_flight.inc()
        if request.instructions:
            logger.debug("ignoring instructions for voice %s: Orpheus has no instruction input", self.voice)
        params = sampling_for(request, services.settings)
        self.chunks, self.first = await _start(services, self.entry, text, params, self.tokens)
        elapsed = time.perf_counter() - self.started
        services.metrics.time_to_first_audio.labels(self.voice).observe(elapsed)

    def succeeded(self) -> None:
        self.status = HTTPStatus.OK

    def failed(self, error: BaseException) -> ApiError:
        """Record a failure after the response started; returns its OpenAI error."""
        api = to_api_error(error)
        self.status, self._error_code = api.status, api.code
        logger.error("voice %s: speech failed after %d samples: %s", self.voice, self.samples, error)
        return api

    async def _close(self, error: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.chunks is not None:
                await _close_quietly(self.chunks)  # stops the generation if it is still running
        finally:
            if self._holds_slot:
                self.services.limiter.release()
                self.services.metrics.in_flight.dec()
            self._count(error)

    def _count(self, error: BaseException | None) -> None:
        if (
            self.status is None
            and error is not None
            and not isinstance(error, (ClientGoneError, *CLIENT_GONE))
        ):
            api = to_api_error(error)
            self.status, self._error_code = api.status, api.code
        status = self.status or CLIENT_CLOSED_REQUEST
        metrics = self.services.metrics
        # The voice found when the request began: one removed mid-stream keeps its counts
        label = self.entry.name if self.entry else UNKNOWN_VOICE_LABEL
        metrics.requests.labels(label, self.request.response_format, str(int(status))).inc()
        if status >= HTTPStatus.BAD_REQUEST and status != CLIENT_CLOSED_REQUEST:
            metrics.errors.labels(label, self._error_code or "error").inc()

    async def audio(self) -> AsyncIterator[np.ndarray]:
        """Every chunk, the first included, counted into the metrics as it passes.

        A client that set ``max_tokens`` asked for at most that much audio: reaching it ends the audio
        normally (as OpenAI completions end with finish_reason "length"), with everything generated so far.
        Without it, the budget is derived from the text, so running out means the model rambled: an error.
        A stream cut short for any other reason is an error either way.
        """
        if self.first is None or self.chunks is None:
            return
        yield self._count_audio(self.first)
        try:
            async for chunk in self.chunks:
                yield self._count_audio(chunk)
        except IncompleteGenerationError as e:
            if self.request.max_tokens is None or e.reason != IncompleteGenerationError.LENGTH:
                raise
            logger.info(
                "voice %s: ended at the requested max_tokens=%d: %s", self.voice, self.request.max_tokens, e
            )

    def _count_audio(self, chunk: np.ndarray) -> np.ndarray:
        self.samples += len(chunk)
        self.services.metrics.audio_seconds.labels(self.voice).inc(len(chunk) / orpheus.SAMPLE_RATE)
        return chunk

    async def encoded(
        self, is_disconnected: Callable[[], Awaitable[bool]] | None = None
    ) -> AsyncIterator[bytes]:
        """The response body's pieces. wav/pcm at speed 1 leave as decoded; otherwise after the end."""
        if self.request.speed == 1.0:
            async for chunk in self.audio():
                data = self.encoder.feed(chunk)
                if data:
                    yield data
                if is_disconnected is not None and await is_disconnected():
                    # A buffered body sends nothing until the end, so a hang-up is only seen by asking.
                    raise ClientGoneError
            tail = await asyncio.to_thread(self.encoder.finish)
            if tail:
                yield tail
            return
        # A time stretch needs the whole utterance; the result is one complete file (exact WAV sizes).
        collected = []
        async for chunk in self.audio():
            collected.append(chunk)
            if is_disconnected is not None and await is_disconnected():
                raise ClientGoneError
        audio = np.concatenate(collected) if collected else np.zeros(0, dtype=np.float32)
        stretched = await asyncio.to_thread(time_stretch, audio, self.request.speed)
        yield await asyncio.to_thread(encode_whole, stretched, self.encoder.format, self.encoder.sample_rate)

    def usage(self) -> dict[str, int]:
        """OpenAI's usage for the SSE done event: prompt token ids in, generated tokens out."""
        return {
            "input_tokens": self.tokens.prompt_tokens,
            "output_tokens": self.tokens.generated_tokens,
            "total_tokens": self.tokens.total_tokens,
        }


async def _start(
    services: SpeechServices, entry: VoiceEntry, text: str, params: SamplingParams, tokens: Usage
) -> tuple[AsyncIterator[np.ndarray], np.ndarray | None]:
    engine = services.backend.engine
    for attempt in (1, 2):
        await services.registry.ensure_loaded(engine, entry)
        chunks = services.backend.synthesizer.stream(entry.voice, text, params, usage=tokens)
        try:
            return chunks, await anext(chunks)
        except StopAsyncIteration:
            return chunks, None
        except UnknownVoiceError as e:
            await _close_quietly(chunks)
            services.registry.mark_unloaded(entry.name)
            if attempt == 2:
                # The voice is served and was just loaded: losing it again is the engine's fault, not the
                # client's (a 404 would make the SDK raise NotFoundError for a voice /v1/audio/voices lists).
                raise ApiError(
                    HTTPStatus.BAD_GATEWAY,
                    f"the speech engine lost voice {entry.name!r} again right after loading it ({e}); "
                    "check the engine's log (is it restarting?)",
                    type=SERVER_ERROR,
                    code="engine_lost_voice",
                ) from e
            # The engine lost an adapter we serve (vLLM restarted after us): load it again, once.
            logger.warning("engine does not know voice %s; loading it again", entry.name)
        except BaseException:
            await _close_quietly(chunks)
            raise
    raise AssertionError("unreachable")


async def _close_quietly(chunks: AsyncIterator[np.ndarray]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        with suppress(Exception):
            await aclose()


def sse_event(payload: dict) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


async def sse_body(job: SpeechJob) -> AsyncIterator[bytes]:
    """``speech.audio.delta`` events with base64 audio in the response format, then ``speech.audio.done``.
    A failure after the first event becomes an ``error`` event (the status is already 200)."""
    try:
        async for data in job.encoded():
            yield sse_event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")})
        yield sse_event({"type": "speech.audio.done", "usage": job.usage()})
    except Exception as e:
        yield sse_event({"type": "error", **job.failed(e).body()})
        return
    job.succeeded()


async def audio_body(job: SpeechJob) -> AsyncIterator[bytes]:
    """Streamed audio bytes (wav/pcm). A failure mid-stream aborts the response, so the client sees a
    broken transfer instead of a short file that looks complete."""
    try:
        async for data in job.encoded():
            yield data
    except Exception as e:
        job.failed(e)
        raise StreamAbortedError(
            f"voice {job.voice}: audio stream aborted after {job.samples} samples: {e}"
        ) from e
    job.succeeded()


async def buffered_body(job: SpeechJob, is_disconnected: Callable[[], Awaitable[bool]]) -> bytes:
    """The whole body, for responses that cannot start before generation ends (mp3/flac/opus/aac, a speed
    change, or a client that reads the whole body anyway). Nothing has been sent yet, so errors propagate
    unchanged and become proper statuses; ``ClientGoneError`` when the client hangs up meanwhile."""
    body = b"".join([piece async for piece in job.encoded(is_disconnected)])
    job.succeeded()
    return body

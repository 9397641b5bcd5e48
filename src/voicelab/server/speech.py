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
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from voicelab import orpheus
from voicelab.engine.base import IncompleteGenerationError, SamplingParams, UnknownVoiceError
from voicelab.engine.synthesizer import Usage
from voicelab.server.backend import Backend
from voicelab.server.encoding import AudioEncoder, encode_whole, time_stretch
from voicelab.server.errors import RATE_LIMIT, RETRY_AFTER_S, ApiError, StreamAbortedError, to_api_error
from voicelab.server.metrics import UNKNOWN_VOICE_LABEL, ServerMetrics
from voicelab.server.registry import VoiceEntry, VoiceRegistry
from voicelab.server.settings import Settings

logger = logging.getLogger(__name__)

MIN_SPEED, MAX_SPEED = 0.25, 4.0  # OpenAI's range
MAX_TOKENS_LIMIT = 8192
"""No request can generate more than the served context length (see vllm_command.DEFAULT_MAX_MODEL_LEN)."""
SSE_MEDIA_TYPE = "text/event-stream"


class VoiceRef(BaseModel):
    """The SDK's custom-voice form ``{"id": "name"}``."""

    id: str


class SpeechRequest(BaseModel):
    """OpenAI's speech request, plus Orpheus sampling fields. Unknown fields are refused, since a
    misspelt sampling field silently ignored (vLLM's behaviour) is worse than an error."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="Accepted for compatibility; the voice picks the adapter")
    input: str = Field(description="Text to speak")
    voice: str | VoiceRef
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=MIN_SPEED, le=MAX_SPEED)
    stream_format: Literal["audio", "sse"] = "audio"
    instructions: str | None = Field(None, description="Ignored: Orpheus has no instruction conditioning")
    temperature: float | None = Field(None, gt=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    repetition_penalty: float | None = Field(None, ge=1, le=2)
    max_tokens: int | None = Field(None, ge=orpheus.CODES_PER_FRAME + 1, le=MAX_TOKENS_LIMIT)
    seed: int | None = None

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


@dataclass
class SpeechJob:
    """A generation whose first chunk has arrived (or which produced no audio at all)."""

    services: SpeechServices
    entry: VoiceEntry
    request: SpeechRequest
    encoder: AudioEncoder
    chunks: AsyncIterator[np.ndarray]
    first: np.ndarray | None
    tokens: Usage
    samples: int = 0
    _closed: bool = field(default=False, repr=False)

    @property
    def voice(self) -> str:
        return self.entry.name

    async def audio(self) -> AsyncIterator[np.ndarray]:
        """Every chunk, the first included, counted into the metrics as it passes.

        A client that set ``max_tokens`` asked for at most that much audio: reaching it ends the audio
        normally (as OpenAI completions end with finish_reason "length"), with everything generated so far.
        Without it, the budget is derived from the text, so running out means the model rambled: an error.
        A stream cut short for any other reason is an error either way.
        """
        if self.first is None:
            return
        yield self._count(self.first)
        try:
            async for chunk in self.chunks:
                yield self._count(chunk)
        except IncompleteGenerationError as e:
            if self.request.max_tokens is None or e.reason != IncompleteGenerationError.LENGTH:
                raise
            logger.info(
                "voice %s: ended at the requested max_tokens=%d: %s", self.voice, self.request.max_tokens, e
            )

    def _count(self, chunk: np.ndarray) -> np.ndarray:
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
                elif is_disconnected is not None and await is_disconnected():
                    # Buffered formats send nothing until the end, so a hang-up is only seen by asking.
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

    async def close(self) -> None:
        """Stop generation (if still running) and free the concurrency slot; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            aclose = getattr(self.chunks, "aclose", None)
            if aclose is not None:
                with suppress(Exception):
                    await aclose()
        finally:
            self.services.limiter.release()
            self.services.metrics.in_flight.dec()


class ClientGoneError(Exception):
    """The client hung up while a buffered format was being generated."""


async def open_speech(services: SpeechServices, request: SpeechRequest, started: float) -> SpeechJob:
    """Validate, reserve a slot, start generating and wait for the first chunk.

    Raises ``ApiError`` or a core error (mapped by the caller); on any failure nothing stays running.
    """
    text = check_input(request.input, services.settings.max_input_chars)
    encoder = AudioEncoder(request.response_format)
    entry = services.registry.get(request.voice_name)
    if not services.limiter.try_acquire():
        raise ApiError(
            429,
            f"too many concurrent speech requests (limit {services.limiter.limit}); retry shortly",
            type=RATE_LIMIT,
            code="too_many_concurrent_requests",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    services.metrics.in_flight.inc()
    params = sampling_for(request, services.settings)
    if request.instructions:
        logger.debug("ignoring instructions for voice %s: Orpheus has no instruction input", entry.name)
    tokens = Usage()
    try:
        chunks, first = await _start(services, entry, text, params, tokens)
    except BaseException:
        services.limiter.release()
        services.metrics.in_flight.dec()
        raise
    services.metrics.time_to_first_audio.labels(entry.name).observe(time.perf_counter() - started)
    return SpeechJob(services, entry, request, encoder, chunks, first, tokens)


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
        except UnknownVoiceError:
            await _close_quietly(chunks)
            if attempt == 2:
                raise
            # The engine lost an adapter we serve (vLLM restarted after us): load it again, once.
            logger.warning("engine does not know voice %s; loading it again", entry.name)
            services.registry.mark_unloaded(entry.name)
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
        api = to_api_error(e)
        record_stream_failure(job, api, e)
        yield sse_event({"type": "error", **api.body()})
    finally:
        await job.close()


async def audio_body(job: SpeechJob) -> AsyncIterator[bytes]:
    """Streamed audio bytes (wav/pcm). A failure mid-stream aborts the response, so the client sees a
    broken transfer instead of a short file that looks complete."""
    try:
        async for data in job.encoded():
            yield data
    except Exception as e:
        record_stream_failure(job, to_api_error(e), e)
        raise StreamAbortedError(
            f"voice {job.voice}: audio stream aborted after {job.samples} samples: {e}"
        ) from e
    finally:
        await job.close()


async def buffered_body(job: SpeechJob, is_disconnected: Callable[[], Awaitable[bool]]) -> bytes:
    """The whole body, for responses that cannot start before generation ends (mp3/flac/opus/aac, or a
    speed change). Nothing has been sent yet, so errors propagate unchanged and become proper statuses;
    ``ClientGoneError`` when the client hangs up meanwhile (generation is stopped)."""
    try:
        return b"".join([piece async for piece in job.encoded(is_disconnected)])
    finally:
        await job.close()


def record_stream_failure(job: SpeechJob, api: ApiError, error: Exception) -> None:
    logger.error("voice %s: speech failed after %d samples: %s", job.voice, job.samples, error)
    job.services.metrics.errors.labels(job.voice, api.code or "error").inc()


def voice_label(registry: VoiceRegistry, name: str) -> str:
    return name if name in registry.voices else UNKNOWN_VOICE_LABEL

"""The engine interface: voice + prompt ids in, generated token chunks out (async, streaming).

Two implementations: ``VLLMEngine`` (HTTP to a vLLM OpenAI-compatible server, production) and
``LocalEngine`` (transformers + peft in process). The speech layer above turns their chunks into audio
through the contract module's ``AudioTokenParser`` and the streaming SNAC decoder.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from voicelab import orpheus

DEFAULT_TEMPERATURE = 0.6
DEFAULT_TOP_P = 0.9
DEFAULT_REPETITION_PENALTY = 1.1  # the model card: >= 1.1 is required for stable output


class EngineError(Exception):
    """Base class for engine failures; the message is safe to show a client."""


class EngineUnavailableError(EngineError):
    """The engine cannot be reached (connection refused, timeout, not started)."""


class EngineRequestError(EngineError):
    """The engine answered with an error (HTTP error body, or an error event mid-stream)."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


class UnknownVoiceError(EngineError):
    """The engine does not know this voice/adapter."""


class IncompleteGenerationError(EngineError):
    """The stream ended without the end-of-speech token: it hit max_tokens, or it was cut short.

    ``reason`` tells the two apart: ``LENGTH`` (the token budget ran out, finish_reason "length") or
    ``CUT`` (the engine stopped or the stream broke without saying why). A client that set max_tokens
    asked for the first; the second is a failure whatever the client asked.
    """

    LENGTH = "length"
    CUT = "cut"

    def __init__(self, message: str, reason: str = CUT):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Voice:
    """What an engine needs to speak as a voice."""

    name: str
    """Adapter name (vLLM ``model`` field); letters, digits, ``_`` and ``-``."""
    adapter_path: Path | None = None
    """Folder holding ``adapter_config.json``; None means the base model itself."""
    prompt_prefix: str = ""
    """Prepended to the input text exactly as in training (recorded in ``voice.json``)."""


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    repetition_penalty: float = DEFAULT_REPETITION_PENALTY
    max_tokens: int | None = None
    """None: derived from the text length (``orpheus.max_new_tokens_for_text``)."""
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = orpheus.STOP_TOKEN_IDS


@dataclass(frozen=True)
class TokenChunk:
    """One streamed update: generated ids when the engine returns them, else their text spelling."""

    ids: tuple[int, ...] | None = None
    text: str | None = None
    finish_reason: str | None = None
    """'stop' (end of speech reached), 'length' (max_tokens hit), or None while streaming."""


@runtime_checkable
class TokenEngine(Protocol):
    """Generates Orpheus tokens for a voice. Cancelling the consumer must cancel the generation."""

    def generate(
        self, voice: Voice, prompt_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[TokenChunk]: ...

    async def health(self) -> bool:
        """True when the engine can serve requests now."""
        ...

    async def load_voice(self, voice: Voice) -> None:
        """Make a voice available (vLLM: runtime adapter loading; local: load the peft adapter)."""
        ...

    async def unload_voice(self, name: str) -> None: ...

    async def aclose(self) -> None: ...

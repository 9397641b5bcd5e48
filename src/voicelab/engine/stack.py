"""The speech stack: tokenizer, streaming SNAC decoder, token engine and the synthesizer over them.

``build_speech_stack(settings)`` is the one assembly of them, used by the server's start-up
(``server/backend.py``) and by ``make evaluate`` (``evaluate/runtime.py``), so both speak through the
same pieces: vLLM over HTTP when ``settings.vllm_url`` is set, else the embedded engine. Heavy: it loads
the tokenizer, SNAC and (embedded) the base model; never call it at import time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voicelab.engine.base import EngineUnavailableError, TokenEngine

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StackSettings:
    """What the stack is built from (the server's settings and evaluate's flags both map to it)."""

    base_model: str
    snac_model: str
    device: str = "cpu"
    """Device of the embedded engine."""
    snac_device: str | None = None
    """Device SNAC decodes on; None: ``device``."""
    vllm_url: str | None = None
    """Generate through this vLLM server; None: the embedded engine."""
    vllm_api_key: str | None = None
    vllm_timeout_s: float | None = None
    """None: the engine's default."""
    check_vllm_health: bool = False
    """Ask vLLM's ``/health`` first and raise ``EngineUnavailableError`` when it does not answer."""

    @property
    def kind(self) -> str:
        return "vllm" if self.vllm_url else "local"


@dataclass
class SpeechStack:
    kind: str
    """'vllm' or 'local'."""
    tokenizer: Any
    decoder: Any  # engine.decoder.StreamingSnacDecoder
    engine: TokenEngine
    """The engine the synthesizer drives (``wrap_engine``'s result when one was given)."""
    synthesizer: Any  # engine.synthesizer.Synthesizer

    async def aclose(self) -> None:
        """Release the decoder, then the engine."""
        await self.decoder.aclose()
        await self.engine.aclose()


async def build_speech_stack(
    settings: StackSettings, *, wrap_engine: Callable[[TokenEngine], TokenEngine] | None = None
) -> SpeechStack:
    """Load and assemble the stack. ``wrap_engine``: put a wrapper between the synthesizer and the engine
    (evaluate records the frames each generation produced).

    The engine comes first: vLLM's health is checked (``check_vllm_health``) before anything loads, and
    the embedded engine checks the base model's tokenizer against the Orpheus contract before it loads
    the weights, so a non-Orpheus base model stops here. Then the tokenizer and the SNAC decoder.
    """
    from voicelab.engine.decoder import StreamingSnacDecoder
    from voicelab.engine.synthesizer import Synthesizer
    from voicelab.models import load_tokenizer

    engine = await _open_engine(settings)
    try:
        tokenizer = await asyncio.to_thread(load_tokenizer, settings.base_model)
        decoder = await asyncio.to_thread(
            StreamingSnacDecoder, settings.snac_model, settings.snac_device or settings.device
        )
    except BaseException:
        await engine.aclose()
        raise
    if wrap_engine is not None:
        engine = wrap_engine(engine)
    synthesizer = Synthesizer(engine, tokenizer, decoder)
    return SpeechStack(settings.kind, tokenizer, decoder, engine, synthesizer)


async def _open_engine(settings: StackSettings) -> TokenEngine:
    """vLLM over HTTP (its health checked when asked), or the embedded engine (loads the base model)."""
    if not settings.vllm_url:
        from voicelab.engine.local import LocalEngine

        return await asyncio.to_thread(LocalEngine, settings.base_model, device=settings.device)
    from voicelab.engine.vllm import VLLMEngine

    options: dict[str, Any] = {"api_key": settings.vllm_api_key, "base_model": settings.base_model}
    if settings.vllm_timeout_s is not None:
        options["timeout"] = settings.vllm_timeout_s
    engine = VLLMEngine(settings.vllm_url, **options)
    if settings.check_vllm_health:
        try:
            await _require_health(engine, settings.vllm_url)
        except BaseException:
            await engine.aclose()
            raise
    return engine


async def require_vllm(url: str, **options: Any) -> None:
    """Raise ``EngineUnavailableError`` unless vLLM at ``url`` answers ``/health`` (a check before any
    model loads)."""
    from voicelab.engine.vllm import VLLMEngine

    engine = VLLMEngine(url, **options)
    try:
        await _require_health(engine, url)
    finally:
        await engine.aclose()


async def _require_health(engine: TokenEngine, url: str) -> None:
    if not await engine.health():
        raise EngineUnavailableError(
            f"vLLM at {url} is not reachable (no answer on /health): start it with "
            "`make vllm`, check --vllm-url, or leave --vllm-url out to use the embedded engine"
        )

"""The speech backend the server drives: a token engine and a synthesizer on top of it.

``build_backend(settings)`` picks the engine (vLLM over HTTP, or the embedded local engine) and loads
the tokenizer and the SNAC decoder once. It runs in the app's lifespan, never at import time; tests pass
their own factory to ``create_app`` instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from voicelab.engine.base import SamplingParams, TokenEngine, Voice
from voicelab.engine.synthesizer import Usage
from voicelab.server.settings import Settings

logger = logging.getLogger(__name__)


class SpeechSynthesizer(Protocol):
    def stream(
        self, voice: Voice, text: str, params: SamplingParams | None = None, *, usage: Usage | None = None
    ) -> AsyncIterator[np.ndarray]:
        """float32 mono chunks at 24 kHz; closing the iterator cancels generation upstream.
        ``usage`` is filled with the prompt and generated token counts as it runs."""
        ...


@dataclass
class Backend:
    kind: str
    """'vllm' or 'local' (or a test's own name)."""
    engine: TokenEngine
    synthesizer: SpeechSynthesizer
    extra_closers: tuple[Any, ...] = ()
    """Other objects with ``aclose()``/``close()`` to release at shutdown (e.g. the decoder)."""

    async def aclose(self) -> None:
        for closer in self.extra_closers:
            close = getattr(closer, "aclose", None) or getattr(closer, "close", None)
            if close is not None:
                result = close()
                if asyncio.iscoroutine(result):
                    await result
        await self.engine.aclose()


BackendFactory = Callable[[Settings], Awaitable[Backend]]


async def build_backend(settings: Settings) -> Backend:
    """The production backend for ``settings`` (heavy: loads the tokenizer, SNAC and maybe the model)."""
    from voicelab.engine.decoder import StreamingSnacDecoder
    from voicelab.engine.synthesizer import Synthesizer
    from voicelab.models import load_tokenizer

    kind = settings.engine_kind
    # first, and checked against the Orpheus contract: a non-Orpheus base model stops the start-up here
    tokenizer = await asyncio.to_thread(load_tokenizer, settings.base_model)
    decoder = await asyncio.to_thread(StreamingSnacDecoder, settings.snac_model, settings.snac_device)
    engine: TokenEngine
    if kind == "vllm":
        from voicelab.engine.vllm import VLLMEngine

        api_key = settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
        engine = VLLMEngine(
            settings.vllm_url,
            api_key=api_key,
            timeout=settings.vllm_timeout_s,
            base_model=settings.base_model,
        )
        logger.info("engine: vLLM at %s (base model %s)", settings.vllm_url, settings.base_model)
    else:
        from voicelab.engine.local import LocalEngine

        engine = await asyncio.to_thread(LocalEngine, settings.base_model, device=settings.device)
        logger.info("engine: local %s on %s", settings.base_model, settings.device)
    synthesizer = Synthesizer(engine, tokenizer, decoder)
    return Backend(kind=kind, engine=engine, synthesizer=synthesizer, extra_closers=(decoder,))

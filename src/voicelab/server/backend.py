"""The speech backend the server drives: a token engine and a synthesizer on top of it.

``build_backend(settings)`` builds the speech stack (``voicelab.engine.stack.build_speech_stack``: vLLM
over HTTP or the embedded local engine, the tokenizer and the SNAC decoder, loaded once). It runs in the
app's lifespan, never at import time; tests pass their own factory to ``create_app`` instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from voicelab.engine.base import SamplingParams, TokenEngine, Voice
from voicelab.engine.stack import StackSettings, build_speech_stack
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


def stack_settings(settings: Settings) -> StackSettings:
    """The server's settings, as the speech stack takes them."""
    vllm = settings.engine_kind == "vllm"
    api_key = settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
    return StackSettings(
        base_model=settings.base_model,
        snac_model=settings.snac_model,
        device=settings.device,
        snac_device=settings.snac_device,
        vllm_url=settings.vllm_url if vllm else None,
        vllm_api_key=api_key if vllm else None,
        vllm_timeout_s=settings.vllm_timeout_s,
    )


async def build_backend(settings: Settings) -> Backend:
    """The production backend for ``settings`` (heavy: loads the tokenizer, SNAC and maybe the model)."""
    stack = await build_speech_stack(stack_settings(settings))
    if stack.kind == "vllm":
        logger.info("engine: vLLM at %s (base model %s)", settings.vllm_url, settings.base_model)
    else:
        logger.info("engine: local %s on %s", settings.base_model, settings.device)
    return Backend(
        kind=stack.kind, engine=stack.engine, synthesizer=stack.synthesizer, extra_closers=(stack.decoder,)
    )

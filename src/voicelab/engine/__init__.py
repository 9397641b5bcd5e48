"""Text -> Orpheus tokens -> streaming 24 kHz audio, through vLLM or an embedded transformers engine.

Nothing heavy is imported here: torch, transformers, peft and snac load inside constructors. Models load
through ``voicelab.models`` (the tokenizer with ``voicelab.models.load_tokenizer``). The names below load
their module on first use, so a light submodule (``engine.base``, whose sampling defaults the server's
settings read) comes without numpy and httpx, and ``make vllm``'s --help stays instant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voicelab.engine.base import (
        EngineError,
        EngineRequestError,
        EngineUnavailableError,
        IncompleteGenerationError,
        SamplingParams,
        TokenChunk,
        TokenEngine,
        UnknownVoiceError,
        Voice,
    )
    from voicelab.engine.decoder import StreamingSnacDecoder
    from voicelab.engine.local import LocalEngine
    from voicelab.engine.stack import SpeechStack, StackSettings, build_speech_stack, require_vllm
    from voicelab.engine.synthesizer import Synthesizer, Usage, split_text
    from voicelab.engine.vllm import VLLMEngine

_MODULE_OF = {
    **dict.fromkeys(
        (
            "EngineError",
            "EngineRequestError",
            "EngineUnavailableError",
            "IncompleteGenerationError",
            "SamplingParams",
            "TokenChunk",
            "TokenEngine",
            "UnknownVoiceError",
            "Voice",
        ),
        "base",
    ),
    "StreamingSnacDecoder": "decoder",
    "LocalEngine": "local",
    **dict.fromkeys(("SpeechStack", "StackSettings", "build_speech_stack", "require_vllm"), "stack"),
    **dict.fromkeys(("Synthesizer", "Usage", "split_text"), "synthesizer"),
    "VLLMEngine": "vllm",
}
"""Each public name and the submodule that defines it."""


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # found directly from now on
    return value


__all__ = [
    "EngineError",
    "EngineRequestError",
    "EngineUnavailableError",
    "IncompleteGenerationError",
    "LocalEngine",
    "SamplingParams",
    "SpeechStack",
    "StackSettings",
    "StreamingSnacDecoder",
    "Synthesizer",
    "TokenChunk",
    "TokenEngine",
    "UnknownVoiceError",
    "Usage",
    "VLLMEngine",
    "Voice",
    "build_speech_stack",
    "require_vllm",
    "split_text",
]

"""Text -> Orpheus tokens -> streaming 24 kHz audio, through vLLM or an embedded transformers engine.

Nothing heavy is imported here: torch, transformers, peft and snac load inside constructors. Models load
through ``voicelab.models`` (the tokenizer with ``voicelab.models.load_tokenizer``).
"""

from __future__ import annotations

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

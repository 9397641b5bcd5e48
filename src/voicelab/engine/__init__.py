"""Text -> Orpheus tokens -> streaming 24 kHz audio, through vLLM or an embedded transformers engine.

Nothing heavy is imported here: torch, transformers, peft and snac load inside constructors.
"""

from __future__ import annotations

from pathlib import Path

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
from voicelab.engine.synthesizer import Synthesizer, Usage, split_text
from voicelab.engine.vllm import VLLMEngine


def load_tokenizer(base_model: str | Path):
    """The base model's tokenizer (``AutoTokenizer.from_pretrained``; a hub id or a local folder)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(base_model))
    except (OSError, ValueError) as e:
        raise RuntimeError(
            f"could not load the tokenizer of {base_model!r}: {e}. Give the Orpheus base model's hub id "
            "or a folder holding tokenizer.json"
        ) from e


__all__ = [
    "EngineError",
    "EngineRequestError",
    "EngineUnavailableError",
    "IncompleteGenerationError",
    "LocalEngine",
    "SamplingParams",
    "StreamingSnacDecoder",
    "Synthesizer",
    "TokenChunk",
    "TokenEngine",
    "UnknownVoiceError",
    "Usage",
    "VLLMEngine",
    "Voice",
    "load_tokenizer",
    "split_text",
]

"""Tiny random models and synthetic speech, built offline, for tests and benchmarks.

Nothing here downloads anything. Each builder writes a folder (or file) that loads through the same
public call users make with real weights: ``AutoModelForCausalLM.from_pretrained(dir)``,
``AutoTokenizer.from_pretrained(dir)``, ``SNAC.from_pretrained(dir)``, ``whisper.load_model(file)``,
``demucs.pretrained.get_model(name, repo=dir)``.
"""

from voicelab.testing.espeak import espeak_available, speak, speech_like_noise
from voicelab.testing.models import (
    REAL_SNAC_CONFIG,
    SHARP_OUTPUT_SCALE,
    TINY_DEMUCS_NAME,
    TINY_SNAC_CONFIG,
    build_tiny_demucs,
    build_tiny_orpheus,
    build_tiny_snac,
    build_tiny_tokenizer,
    build_tiny_whisper,
)

__all__ = [
    "REAL_SNAC_CONFIG",
    "SHARP_OUTPUT_SCALE",
    "TINY_DEMUCS_NAME",
    "TINY_SNAC_CONFIG",
    "build_tiny_demucs",
    "build_tiny_orpheus",
    "build_tiny_snac",
    "build_tiny_tokenizer",
    "build_tiny_whisper",
    "espeak_available",
    "speak",
    "speech_like_noise",
]

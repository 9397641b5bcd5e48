"""voicelab: raw recordings of a character -> an Orpheus TTS LoRA voice, served over HTTP."""

__version__ = "0.1.0"

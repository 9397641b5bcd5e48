"""Load a trained voice in process (transformers + peft) and generate its audio tokens.

For checks and local use without vLLM: the prompt is built by the contract module with the prefix
recorded in ``voice.json``, exactly as serving builds it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicelab import orpheus
from voicelab.voice import VoiceMetadata

logger = logging.getLogger(__name__)


@dataclass
class LoadedVoice:
    metadata: VoiceMetadata
    model: Any  # PeftModel over the base model, eval mode
    tokenizer: Any


def load_voice_model(voice_dir: Path, *, base_model: str | None = None, device: str = "cpu") -> LoadedVoice:
    """Base model (``voice.json``'s, or ``base_model`` to point at a local copy) + the voice's adapter."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    metadata = VoiceMetadata.read(voice_dir)
    source = base_model or metadata.base_model
    base = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(voice_dir)).to(torch.device(device)).eval()
    return LoadedVoice(metadata, model, AutoTokenizer.from_pretrained(source))


def generate_audio_tokens(
    voice: LoadedVoice,
    text: str,
    *,
    max_new_tokens: int | None = None,
    greedy: bool = True,
    temperature: float = 0.6,
    top_p: float = 0.9,
    repetition_penalty: float = 1.1,
) -> list[int]:
    """Generated ids after the inference prompt, up to and including ``END_OF_SPEECH`` when it comes."""
    import torch

    prompt = orpheus.inference_prompt_ids(voice.tokenizer, text, voice.metadata.prompt_prefix)
    device = next(voice.model.parameters()).device
    sampling = {} if greedy else {"temperature": temperature, "top_p": top_p}
    with torch.inference_mode():
        out = voice.model.generate(
            input_ids=torch.tensor([prompt], device=device),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long, device=device),
            max_new_tokens=max_new_tokens or orpheus.max_new_tokens_for_text(text),
            do_sample=not greedy,
            repetition_penalty=1.0 if greedy else repetition_penalty,
            eos_token_id=orpheus.END_OF_SPEECH,
            pad_token_id=orpheus.PAD,
            **sampling,
        )
    return out[0, len(prompt) :].tolist()

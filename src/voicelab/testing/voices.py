"""Voice folders for tests: a config-only folder (fast, for registry/API tests) and a real tiny LoRA."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from voicelab.voice import (
    ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHTS_FILE,
    LORA_TARGET_MODULES,
    VOICE_FILE,
    VoiceMetadata,
    default_prompt_prefix,
)


def lora_config_dict(base_model: str, rank: int = 8, **overrides: Any) -> dict[str, Any]:
    """An ``adapter_config.json`` as peft writes it for a vLLM-servable LoRA; ``overrides`` break it."""
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": rank,
        "lora_alpha": 2 * rank,
        "lora_dropout": 0.0,
        "target_modules": list(LORA_TARGET_MODULES),
        "bias": "none",
        "modules_to_save": None,
        "use_dora": False,
        "use_rslora": False,
    }
    config.update(overrides)
    return config


def write_voice_folder(
    voices_dir: Path | str,
    name: str,
    *,
    base_model: str,
    rank: int = 8,
    prompt_prefix: str | None = None,
    with_voice_json: bool = True,
    **config_overrides: Any,
) -> Path:
    """A voice folder whose weights file is a placeholder: enough for the registry, not for an engine."""
    folder = Path(voices_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    config = lora_config_dict(base_model, rank, **config_overrides)
    (folder / ADAPTER_CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / ADAPTER_WEIGHTS_FILE).write_bytes(b"placeholder")
    if with_voice_json:
        meta = VoiceMetadata(
            name=name,
            base_model=base_model,
            prompt_prefix=default_prompt_prefix(name) if prompt_prefix is None else prompt_prefix,
        )
        (folder / VOICE_FILE).write_text(meta.to_json(), encoding="utf-8")
    return folder


def build_tiny_voice(
    voices_dir: Path | str, name: str, base_model_dir: Path | str, *, rank: int = 8, seed: int = 0
) -> Path:
    """A real peft LoRA on the tiny Orpheus (random, non-zero B so it changes the output) + voice.json."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base_model = str(base_model_dir)
    model = AutoModelForCausalLM.from_pretrained(base_model)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=list(LORA_TARGET_MODULES),
        bias="none",
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for param_name, param in peft_model.named_parameters():
            if "lora_B" in param_name:
                param.normal_(std=0.02)
    folder = Path(voices_dir) / name
    peft_model.save_pretrained(folder)
    meta = VoiceMetadata(name=name, base_model=base_model, prompt_prefix=default_prompt_prefix(name))
    (folder / VOICE_FILE).write_text(meta.to_json(), encoding="utf-8")
    return folder

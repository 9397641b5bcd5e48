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
    metadata: dict[str, Any] | None = None,
    **config_overrides: Any,
) -> Path:
    """A voice folder whose weights file is a placeholder: enough for the registry, not for an engine.
    ``metadata``: more fields of voice.json (dataset stats, training, final loss, ...)."""
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
            **(metadata or {}),
        )
        (folder / VOICE_FILE).write_text(meta.to_json(), encoding="utf-8")
    return folder


TRAINED_METADATA = {
    "dataset": {"clips_used": 118, "clips_held_out": 6, "audio_seconds": 853.2},
    "training": {"steps": 354, "lora_rank": 8},
    "final_loss": 4.123456789012345,
    "final_eval_loss": 4.387654321098765,
    "created_at": "2026-11-30T06:20:32+00:00",
}
"""voice.json fields of a plausible finished training (17-digit floats, as Python writes them)."""


def write_loss_curve(voice_dir: Path | str, steps: int = 60) -> Path:
    """The loss log and loss curve as training writes them, for a loss that falls."""
    from voicelab.training.report import plot_loss
    from voicelab.voice import LossPoint, VoiceFolder

    points = [
        LossPoint(step, step / steps, 6.0 - 2.0 * step / steps, eval_loss=6.2 - 1.8 * step / steps)
        for step in range(1, steps + 1)
    ]
    voice = VoiceFolder(voice_dir)
    voice.write_loss_log(points)
    return voice.write_loss_curve(lambda tmp: plot_loss(tmp, points, voice.name))


EVAL_SUMMARY = {
    "speaker_similarity": 0.8123456789,
    "base_speaker_similarity": 0.6012345678,
    "similarity_gain": 0.2111111111,
    "wer": 0.2345678901,
    "cer": 0.0612345678,
    "dnsmos_ovrl": 3.1234567,
    "dnsmos_sig": 3.4567891,
    "dnsmos_bak": 3.9876543,
    "speech_rate": 2.7345678,
    "dataset_speech_rate": 2.6123456,
    "speech_rate_ratio": 1.0467891,
    "samples": 16,
    "hit_max_tokens": 0,
    "too_long": 0,
    "long_silences": 1,
    "longest_silence_s": 1.2345678,
    "max_code_overlap": None,
    "closest_training_clip": None,
    "overfit_sentences": 0,
}
"""An evaluation's headline numbers: one check fails (word error rate), one cannot be measured."""


def write_evaluation(voice_dir: Path | str, summary: dict[str, Any] | None = None) -> Path:
    """The evaluation as ``make evaluate`` writes it (the numbers with their checks, the summary),
    without samples."""
    from voicelab.evaluate import Thresholds, verdicts, write_outputs
    from voicelab.evaluate.runtime import SCHEMA_VERSION
    from voicelab.voice import VoiceFolder

    summary = {**EVAL_SUMMARY, **(summary or {})}
    thresholds = Thresholds()
    voice = VoiceFolder(voice_dir)
    report = {
        "schema": SCHEMA_VERSION,
        "voice": voice.name,
        "created_at": "2026-12-01T09:30:00+00:00",
        "settings": {"engine": "vllm"},
        "thresholds": vars(thresholds),
        "models": {"base_model": "canopylabs/orpheus-tts-0.1-pretrained"},
        "reference": {"source": "held-out", "clips": ["a", "b"], "self_similarity": 0.86},
        "summary": summary,
        "checks": verdicts(summary, thresholds),
    }
    return write_outputs(voice, voice.eval_dir, report, [])


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

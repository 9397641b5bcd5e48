"""What a trained voice is on disk, and the rules vLLM applies to its LoRA adapter.

A voice is a folder ``voices/{name}/`` holding a peft LoRA adapter (``adapter_config.json`` +
``adapter_model.safetensors``) and ``voice.json`` (how it was made, and the prompt prefix serving must use).
Training writes it; the server's registry reads it. Both use this module.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from voicelab import orpheus
from voicelab.errors import UsageError

ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
VOICE_FILE = "voice.json"
ENGINE_NAME = "orpheus"
DEFAULT_BASE_MODEL = "canopylabs/orpheus-tts-0.1-pretrained"
"""The user guide's base model; an adapter records the base it was trained on in ``base_model_name_or_path``."""
DEFAULT_SNAC_MODEL = "hubertsiuzdak/snac_24khz"

VOICE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # 64: MAX_VOICE_NAME_CHARS
"""A voice name is a folder name and a vLLM adapter name: letters, digits, '_' and '-' only."""

LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The seven Llama projections; vLLM serves LoRA on these."""
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""Values vLLM accepts for ``--max-lora-rank`` (its default is 16)."""


class InvalidVoiceNameError(UsageError, ValueError):
    """A voice name that is not a safe folder and vLLM adapter name."""


def validate_voice_name(name: str) -> str:
    """Return ``name`` if it is a safe folder/adapter name, else raise with what is allowed."""
    if not VOICE_NAME_RE.fullmatch(name or ""):
        raise InvalidVoiceNameError(
            f"invalid voice name {name!r}: use 1-64 letters, digits, '_' or '-' "
            "(it becomes a folder under voices/ and a vLLM adapter name)"
        )
    return name


_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9_-]+")
MAX_VOICE_NAME_CHARS = 64


def suggest_voice_name(text: str) -> str:
    """A valid voice name close to ``text``: each run of other characters becomes ``_``
    (``"Old Keeper"`` -> ``"Old_Keeper"``), cut to the allowed length; ``"voice"`` when nothing is left."""
    name = _NOT_IN_A_NAME.sub("_", text).strip("_")[:MAX_VOICE_NAME_CHARS]
    return name or "voice"


def default_prompt_prefix(name: str) -> str:
    """The prefix training puts before each transcript: the multi-speaker convention ``"{name}: "``."""
    return f"{name}: "


@dataclass
class VoiceMetadata:
    """Contents of ``voice.json``."""

    name: str
    base_model: str
    prompt_prefix: str
    engine: str = ENGINE_NAME
    snac_model: str = DEFAULT_SNAC_MODEL
    sample_rate: int = orpheus.SAMPLE_RATE
    drop_duplicate_frames: bool = False
    dataset: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    final_loss: float | None = None
    final_eval_loss: float | None = None
    eval_clips: list[str] = field(default_factory=list)
    """Clips held out of training (``make evaluate`` uses them as the speaker reference)."""
    created_at: str | None = None
    voicelab_version: str | None = None
    base_model_fingerprint: str | None = None
    """The base model's content (``voicelab.model_identity``): the same model at another path is accepted."""
    base_model_hub_id: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VoiceMetadata:
        known = {f for f in cls.__dataclass_fields__}
        missing = [k for k in ("name", "base_model", "prompt_prefix") if k not in data]
        if missing:
            raise ValueError(f"voice.json lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def read(cls, folder: Path) -> VoiceMetadata:
        path = Path(folder) / VOICE_FILE
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError, ValueError, TypeError) as e:
            raise ValueError(f"{path}: unreadable voice.json ({e})") from e


def smallest_vllm_rank(rank: int) -> int:
    """The smallest ``--max-lora-rank`` value vLLM allows that fits ``rank``."""
    for allowed in VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise ValueError(f"LoRA rank {rank} is above vLLM's largest --max-lora-rank ({VLLM_LORA_RANKS[-1]})")


def adapter_problems(
    config: dict[str, Any],
    *,
    max_lora_rank: int | None = None,
    base_model: str | None = None,
) -> list[str]:
    """Reasons vLLM would refuse this ``adapter_config.json`` (empty list: it will load).

    Rules from vLLM's LoRA loading: LoRA only; no ``modules_to_save`` (no resized/trained embeddings or
    lm_head); no DoRA; bias "none"; targets among the Llama projections; rank within ``--max-lora-rank``.
    ``base_model``, when given, must equal ``base_model_name_or_path``.
    """
    problems = []
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type != "LORA":
        problems.append(f"peft_type is {config.get('peft_type')!r}, vLLM serves only LORA adapters")
    if config.get("modules_to_save"):
        problems.append(
            f"modules_to_save={config['modules_to_save']!r}: vLLM cannot load adapters that train whole "
            "modules (retrain without modules_to_save)"
        )
    if config.get("use_dora"):
        problems.append("use_dora=true: vLLM does not serve DoRA adapters")
    if config.get("bias", "none") != "none":
        problems.append(f"bias={config.get('bias')!r}: vLLM needs bias 'none'")
    targets = config.get("target_modules") or []
    if isinstance(targets, str):
        problems.append(f"target_modules is a pattern ({targets!r}); list the Llama projections instead")
    else:
        unknown = sorted(set(targets) - set(LORA_TARGET_MODULES))
        if unknown:
            problems.append(f"target_modules {unknown} are not Llama projections vLLM serves LoRA on")
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        problems.append(f"rank r={rank!r} is not a positive integer")
    elif max_lora_rank is not None and rank > max_lora_rank:
        problems.append(f"rank {rank} is above the served --max-lora-rank {max_lora_rank}")
    elif rank > VLLM_LORA_RANKS[-1]:
        problems.append(f"rank {rank} is above vLLM's largest --max-lora-rank {VLLM_LORA_RANKS[-1]}")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        problems.append("rank_pattern/alpha_pattern are set; vLLM support for them is unreliable")
    if base_model is not None and config.get("base_model_name_or_path") != base_model:
        problems.append(
            f"trained on base model {config.get('base_model_name_or_path')!r}, but {base_model!r} is served"
        )
    return problems

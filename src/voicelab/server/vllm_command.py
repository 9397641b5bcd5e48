"""The ``vllm serve`` command line for the base model with every voice as a LoRA adapter (pure functions).

Facts behind each flag are in ``shared/design/serving.md``: vLLM's default ``--max-lora-rank`` is 16
(a rank-32 voice would fail to load), ``--max-loras`` defaults to 1 (one voice per batch), Orpheus'
config claims a 131072-token context (memory for nothing; it was trained at 8192) and float32 (``auto``
would pick fp16, not the bf16 it was trained in). Runtime adapter loading must be switched on by env.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from voicelab.voice import VLLM_LORA_RANKS, smallest_vllm_rank

DEFAULT_HOST = "127.0.0.1"
"""vLLM's own --api-key guards only /v1; keep it on a private interface behind the voicelab API."""
DEFAULT_PORT = 8001
"""8000 is where `make dev` serves the voicelab API."""
DEFAULT_MAX_MODEL_LEN = 8192
"""Orpheus' training length; a prompt plus ~100 s of audio fits."""
DEFAULT_DTYPE = "bfloat16"
DEFAULT_GPU_MEMORY_UTILIZATION = 0.85
"""vLLM's default is 0.9; leave room for SNAC when it decodes on the same GPU."""
DEFAULT_RANK_WITHOUT_VOICES = 32
"""The guide's default training rank: with no voices yet, the first one trained can still be hot-loaded."""
MAX_LORAS_CAP = 8
"""Adapters in one batch; each slot reserves GPU memory for a max-rank adapter."""
CPU_LORA_HEADROOM = 8
"""Extra CPU-cache slots for voices added at runtime (POST /v1/voices/reload)."""
RUNTIME_LORA_ENV = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    path: Path
    rank: int


@dataclass(frozen=True)
class VLLMServeOptions:
    base_model: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_model_len: int = DEFAULT_MAX_MODEL_LEN
    dtype: str = DEFAULT_DTYPE
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    max_lora_rank: int | None = None
    """None: the smallest value vLLM allows that fits the largest adapter."""
    max_loras: int | None = None
    """None: one slot per voice, at most ``MAX_LORAS_CAP``."""


def lora_rank_for(adapters: Sequence[AdapterSpec], requested: int | None = None) -> int:
    """``--max-lora-rank``: ``requested`` if given (checked), else the smallest allowed that fits them all."""
    largest = max((a.rank for a in adapters), default=DEFAULT_RANK_WITHOUT_VOICES)
    if requested is None:
        return smallest_vllm_rank(largest)
    if requested not in VLLM_LORA_RANKS:
        raise ValueError(f"--max-lora-rank {requested} is not one vLLM accepts: {list(VLLM_LORA_RANKS)}")
    if adapters and requested < largest:  # with no voice yet, any rank vLLM accepts will do
        too_big = sorted(a.name for a in adapters if a.rank > requested)
        raise ValueError(f"--max-lora-rank {requested} is below the rank of voices {too_big} ({largest})")
    return requested


def build_vllm_command(vllm: str, adapters: Sequence[AdapterSpec], options: VLLMServeOptions) -> list[str]:
    """The argv of ``vllm serve`` for ``options.base_model`` with each adapter under its voice name."""
    if options.max_model_len > DEFAULT_MAX_MODEL_LEN:
        raise ValueError(
            f"--max-model-len {options.max_model_len} is above Orpheus' training length {DEFAULT_MAX_MODEL_LEN}"
        )
    max_loras = options.max_loras or min(max(len(adapters), 1), MAX_LORAS_CAP)
    if max_loras < 1:
        raise ValueError("--max-loras must be at least 1")
    max_cpu_loras = max(max_loras, len(adapters) + CPU_LORA_HEADROOM)
    cmd = [
        vllm,
        "serve",
        options.base_model,
        "--host",
        options.host,
        "--port",
        str(options.port),
        "--dtype",
        options.dtype,
        "--max-model-len",
        str(options.max_model_len),
        "--gpu-memory-utilization",
        str(options.gpu_memory_utilization),
        "--enable-lora",
        "--max-lora-rank",
        str(lora_rank_for(adapters, options.max_lora_rank)),
        "--max-loras",
        str(max_loras),
        "--max-cpu-loras",
        str(max_cpu_loras),
    ]
    if adapters:
        cmd.append("--lora-modules")
        cmd.extend(f"{a.name}={Path(a.path).resolve()}" for a in sorted(adapters, key=lambda a: a.name))
    return cmd


def vllm_environment(base_env: Mapping[str, str]) -> dict[str, str]:
    """The environment vLLM runs with: the caller's, plus runtime adapter loading switched on."""
    return {**base_env, **RUNTIME_LORA_ENV}

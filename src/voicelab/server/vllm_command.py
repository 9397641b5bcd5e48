"""The ``vllm serve`` command line for the base model with every voice as a LoRA adapter (pure functions).

Every flag and environment variable used here was checked against vLLM's source for the version the
Makefile pins; docs/deploy.md records where each comes from. In short: vLLM's default ``--max-lora-rank``
is 16 (a rank-32 voice would fail to load), ``--max-loras`` defaults to 1 (one voice per batch), Orpheus'
config claims a 131072-token context (memory for nothing; it was trained at 8192) and float32 (``auto``
would pick fp16, not the bf16 it was trained in). Runtime adapter loading must be switched on by env.

Voices reach vLLM in one of three ways (``LORA_LOADING_MODES``): ``static`` names each voice with
``--lora-modules`` at start-up; ``resolver`` lets vLLM's filesystem LoRA resolver plugin load
``voices/NAME/`` the first time a request asks for model ``NAME`` (every replica finds every voice on the
shared folder, with no load call); ``both`` does the two.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from voicelab.options import option, port_number, positive_int
from voicelab.voice import ADAPTER_CONFIG_FILE, VLLM_LORA_RANKS, smallest_vllm_rank

DEFAULT_HOST = "127.0.0.1"
"""vLLM's own --api-key guards only /v1; keep it on a private interface behind the voicelab API."""
API_KEY_FLAG = "--api-key"
"""vLLM's own key; it guards /v1/..., runtime LoRA loading (/v1/load_lora_adapter) included."""
LOOPBACK_NAMES = ("localhost",)
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
"""Needed by /v1/load_lora_adapter and by every LoRA resolver (vLLM consults resolvers only with it)."""
RESOLVER_PLUGIN = "lora_filesystem_resolver"
"""The entry-point name of vLLM's filesystem resolver in its ``vllm.general_plugins`` group."""
PLUGINS_ENV = "VLLM_PLUGINS"
"""Comma-separated plugins vLLM loads; unset loads them all."""
RESOLVER_DIR_ENV = "VLLM_LORA_RESOLVER_CACHE_DIR"
"""The folder the filesystem resolver looks in: ``<dir>/<requested model>/adapter_config.json``."""
LORA_LOADING_MODES = ("static", "resolver", "both")
SINGLE_API_SERVER = 1
"""vLLM starts one front-end process per data-parallel rank by default, and refuses runtime LoRA updating
(which the resolver needs) with more than one; one front-end also keeps one table of loaded adapters."""


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    path: Path
    rank: int


@dataclass(frozen=True)
class VLLMServeOptions:
    """The ``vllm serve`` settings; each is a flag of ``make vllm`` (``cli/serve_vllm.py``), declared here."""

    base_model: str = option("--base-model", help="hub id or folder of the base model")
    """No default here: ``make vllm`` takes the server's (``VOICELAB_BASE_MODEL``)."""
    host: str = option("--host", default=DEFAULT_HOST, help="interface vLLM binds (keep it private)")
    port: int = option(
        "--port", type=port_number, default=DEFAULT_PORT, help="vLLM port (make dev uses 8000)"
    )
    max_model_len: int = option(
        "--max-model-len", type=positive_int, default=DEFAULT_MAX_MODEL_LEN, help="context length"
    )
    dtype: str = option("--dtype", default=DEFAULT_DTYPE, help="weights dtype (bfloat16 needs sm80+)")
    gpu_memory_utilization: float = option(
        "--gpu-memory-utilization", type=float, default=DEFAULT_GPU_MEMORY_UTILIZATION, help="GPU share"
    )
    max_lora_rank: int | None = option(
        "--max-lora-rank",
        type=int,
        default=None,
        help="default: smallest allowed value fitting every voice (with the resolver, also voices trained "
        "later: up to --skip-rank-above)",
    )
    """None: the smallest value vLLM allows that fits the largest adapter."""
    max_loras: int | None = option(
        "--max-loras",
        type=positive_int,
        default=None,
        help="voices in one batch; each slot reserves GPU memory for an adapter of --max-lora-rank "
        "(default: one per voice, <= 8; 8 with the resolver)",
    )
    """None: ``default_max_loras``. Each slot reserves GPU memory for one adapter of ``max_lora_rank``."""
    data_parallel_size: int = option(
        "--data-parallel-size",
        type=positive_int,
        default=1,
        help="model copies behind one endpoint, one GPU each (or --tensor-parallel-size GPUs each)",
    )
    """Engines behind one endpoint, one model copy each (GPUs = data x tensor parallel size)."""
    tensor_parallel_size: int = option(
        "--tensor-parallel-size", type=positive_int, default=1, help="GPUs one model copy is split over"
    )
    """GPUs one model copy is split over (a 3B model fits one GPU: raise it only for small GPUs)."""
    lora_loading: str = option(
        "--voice-loading",
        choices=LORA_LOADING_MODES,
        default="static",
        help="static: --lora-modules per voice; resolver: vLLM loads voices/NAME on first use; both",
    )
    """One of ``LORA_LOADING_MODES``."""


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


def default_max_loras(n_voices: int, lora_loading: str) -> int:
    """One batch slot per voice known now, at most ``MAX_LORAS_CAP``; with the resolver more voices come
    later without a restart, so it reserves the cap."""
    if lora_loading == "static":
        return min(max(n_voices, 1), MAX_LORAS_CAP)
    return MAX_LORAS_CAP


def build_vllm_command(vllm: str, adapters: Sequence[AdapterSpec], options: VLLMServeOptions) -> list[str]:
    """The argv of ``vllm serve`` for ``options.base_model`` with each adapter under its voice name."""
    if options.max_model_len > DEFAULT_MAX_MODEL_LEN:
        raise ValueError(
            f"--max-model-len {options.max_model_len} is above Orpheus' training length {DEFAULT_MAX_MODEL_LEN}"
        )
    if options.lora_loading not in LORA_LOADING_MODES:
        raise ValueError(f"voice loading {options.lora_loading!r} is not one of {list(LORA_LOADING_MODES)}")
    for flag, size in (
        ("--data-parallel-size", options.data_parallel_size),
        ("--tensor-parallel-size", options.tensor_parallel_size),
    ):
        if size < 1:
            raise ValueError(f"{flag} must be at least 1, got {size}")
    max_loras = options.max_loras or default_max_loras(len(adapters), options.lora_loading)
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
    if options.tensor_parallel_size > 1:
        cmd += ["--tensor-parallel-size", str(options.tensor_parallel_size)]
    if options.data_parallel_size > 1:
        cmd += ["--data-parallel-size", str(options.data_parallel_size)]
        cmd += ["--api-server-count", str(SINGLE_API_SERVER)]
    if adapters and options.lora_loading in ("static", "both"):
        cmd.append("--lora-modules")
        cmd.extend(f"{a.name}={Path(a.path).resolve()}" for a in sorted(adapters, key=lambda a: a.name))
    return cmd


def resolver_environment(voices_dir: Path | str, base_env: Mapping[str, str]) -> dict[str, str]:
    """The variables that make vLLM's filesystem resolver serve ``voices_dir/NAME`` as model ``NAME``.

    A ``VLLM_PLUGINS`` list the caller already set is kept, with the resolver added to it.
    """
    plugins = [p for p in base_env.get(PLUGINS_ENV, "").split(",") if p.strip()]
    if RESOLVER_PLUGIN not in plugins:
        plugins.append(RESOLVER_PLUGIN)
    return {PLUGINS_ENV: ",".join(plugins), RESOLVER_DIR_ENV: str(Path(voices_dir).resolve())}


def vllm_environment(
    base_env: Mapping[str, str], *, lora_loading: str = "static", voices_dir: Path | str | None = None
) -> dict[str, str]:
    """The environment vLLM runs with: the caller's, runtime adapter loading on, and the resolver's
    variables when ``lora_loading`` uses it (then ``voices_dir`` is required)."""
    env = {**base_env, **RUNTIME_LORA_ENV}
    if lora_loading in ("resolver", "both"):
        if voices_dir is None:
            raise ValueError(f"voice loading {lora_loading!r} needs the voices folder")
        env.update(resolver_environment(voices_dir, base_env))
    return env


def resolver_mismatches(adapters_base_models: Mapping[str, str | None], served_model: str) -> dict[str, str]:
    """Voices vLLM's filesystem resolver would not load, with the reason.

    The resolver loads a folder only when its ``adapter_config.json`` says ``peft_type`` LORA and its
    ``base_model_name_or_path`` is exactly the model argument vLLM was started with (the same string: a
    local path and a hub id of the same weights do not match).
    """
    return {
        name: f"{ADAPTER_CONFIG_FILE} has base_model_name_or_path {recorded!r}, vLLM serves {served_model!r}"
        for name, recorded in sorted(adapters_base_models.items())
        if recorded != served_model
    }

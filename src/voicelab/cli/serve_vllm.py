"""Start vLLM for the Orpheus base model with every valid voice in voices/ as a LoRA adapter.

    make vllm                          # .venv-vllm/bin/vllm, voices/, base model from VOICELAB_BASE_MODEL
                                       # (the environment, then .env, as the API reads them)
    make vllm ARGS="--dry-run"         # print the command only
    make vllm ARGS="--port 8001 -- --tensor-parallel-size 2"   # after --: passed to vllm serve as is

Voices vLLM would refuse (modules_to_save, DoRA, rank too high, another base model) are listed and left
out: one bad static adapter stops vLLM's start-up. Runtime adapter loading is switched on, so the API's
POST /v1/voices/reload can add voices trained later. Point the API at it with
VOICELAB_VLLM_URL=http://HOST:PORT.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path

from voicelab.cli.common import EXIT_OK, EXIT_USAGE, HelpFormatter, positive_int


def build_parser(defaults) -> argparse.ArgumentParser:
    from voicelab.server import vllm_command as vc

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--vllm", default="vllm", help="vllm executable (make vllm: .venv-vllm/bin/vllm)")
    parser.add_argument("--dry-run", action="store_true", help="print the command and exit")
    parser.add_argument("--voices-dir", type=Path, default=defaults.voices_dir, help="folder of voices")
    parser.add_argument(
        "--base-model", default=defaults.base_model, help="hub id or folder of the base model"
    )
    parser.add_argument("--host", default=vc.DEFAULT_HOST, help="interface vLLM binds (keep it private)")
    parser.add_argument(
        "--port", type=positive_int, default=vc.DEFAULT_PORT, help="vLLM port (make dev uses 8000)"
    )
    parser.add_argument(
        "--max-model-len", type=positive_int, default=vc.DEFAULT_MAX_MODEL_LEN, help="context length"
    )
    parser.add_argument("--dtype", default=vc.DEFAULT_DTYPE, help="weights dtype (bfloat16 needs sm80+)")
    parser.add_argument(
        "--gpu-memory-utilization", type=float, default=vc.DEFAULT_GPU_MEMORY_UTILIZATION, help="GPU share"
    )
    parser.add_argument(
        "--max-lora-rank", type=int, default=None, help="default: smallest allowed value fitting every voice"
    )
    parser.add_argument(
        "--skip-rank-above",
        type=int,
        default=defaults.max_lora_rank,
        help="voices with a larger rank are left out (VOICELAB_MAX_LORA_RANK)",
    )
    parser.add_argument(
        "--max-loras",
        type=positive_int,
        default=None,
        help="adapters per batch (default: one per voice, <= 8)",
    )
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more vllm serve arguments")
    return parser


def main(argv: list[str] | None = None) -> int:
    from voicelab.server import vllm_command as vc
    from voicelab.server.registry import scan_voices
    from voicelab.server.settings import SettingsError, load_settings

    try:
        defaults = load_settings()  # VOICELAB_* and .env, as the API reads them: both sides agree
    except SettingsError as e:
        print(f"error: bad server settings: {e}", file=sys.stderr)
        return EXIT_USAGE
    parser = build_parser(defaults)
    args = parser.parse_args(argv)
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    if not 0 < args.gpu_memory_utilization <= 1:
        parser.error(
            f"--gpu-memory-utilization is a share of GPU memory in (0, 1], got {args.gpu_memory_utilization}"
        )
    exe = None
    if not args.dry_run:
        exe = shutil.which(args.vllm)
        if exe is None:
            print(
                f"error: vLLM executable {args.vllm!r} not found; on a GPU machine run `make install-vllm` "
                "once (it creates .venv-vllm, apart from the project's .venv), or pass --vllm PATH; "
                '`make vllm ARGS="--dry-run"` only prints the command',
                file=sys.stderr,
            )
            return EXIT_USAGE
    if not args.voices_dir.is_dir():
        print(
            f"warning: voices folder {args.voices_dir} does not exist: serving no voice yet "
            "(train one with `make train-lora`, or pass --voices-dir)",
            file=sys.stderr,
        )

    scan = scan_voices(args.voices_dir, base_model=args.base_model, max_lora_rank=args.skip_rank_above)
    for name, reason in scan.skipped.items():
        print(f"skipping voice {name}: {reason}", file=sys.stderr)
    adapters = [vc.AdapterSpec(e.name, e.voice.adapter_path, e.rank) for e in scan.voices.values()]
    options = vc.VLLMServeOptions(
        base_model=args.base_model,
        host=args.host,
        port=args.port,
        max_model_len=args.max_model_len,
        dtype=args.dtype,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_lora_rank=args.max_lora_rank,
        max_loras=args.max_loras,
    )
    try:
        cmd = [*vc.build_vllm_command(args.vllm, adapters, options), *extra]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    env = vc.vllm_environment(os.environ)
    names = ", ".join(a.name for a in adapters) or "none yet"
    print(f"voices: {names}")
    print(" ".join(f"{k}={v}" for k, v in vc.RUNTIME_LORA_ENV.items()) + " " + shlex.join(cmd))
    print(f"point the API at it: VOICELAB_VLLM_URL=http://{args.host}:{args.port} make dev")
    if exe is None:  # --dry-run
        return EXIT_OK
    sys.stdout.flush()
    os.execve(exe, [exe, *cmd[1:]], env)
    return EXIT_OK  # not reached: execve replaces this process


if __name__ == "__main__":
    sys.exit(main())

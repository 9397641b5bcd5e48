"""Start vLLM for the Orpheus base model with every valid voice in voices/ as a LoRA adapter.

    make vllm                          # .venv-vllm/bin/vllm, voices/, base model from VOICELAB_BASE_MODEL
                                       # (the environment, then .env, as the API reads them)
    make vllm ARGS="--dry-run"         # print the command only
    make vllm ARGS="--data-parallel-size 2 --lora-resolver"   # 2 GPUs, one endpoint, voices found on use
    make vllm ARGS="--port 8001 -- --seed 1"   # after --: passed to vllm serve as is

Voice loading (--voice-loading): "static" names each voice with --lora-modules (a voice trained later
needs the API's POST /v1/voices/reload); "resolver" switches on vLLM's filesystem LoRA resolver over
voices/, so a request for voice NAME loads voices/NAME on first use, on every replica that shares the
folder, with no load call (set VOICELAB_VLLM_LORA_RESOLVER=true for the API); "both" does the two.
The resolver only loads a voice whose adapter_config.json names as base_model_name_or_path exactly the
--base-model given here; voices that do not are listed.

Voices vLLM would refuse (modules_to_save, DoRA, rank too high, another base model) are listed and left
out: one bad static adapter stops vLLM's start-up. Point the API at it with VOICELAB_VLLM_URL=http://HOST:PORT.
See docs/deploy.md for several GPUs and several machines.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path

from voicelab.cli.common import EXIT_OK, EXIT_USAGE, HelpFormatter

SERVE_FLAGS = (
    "base_model",
    "host",
    "port",
    "max_model_len",
    "dtype",
    "gpu_memory_utilization",
    "max_lora_rank",
)
PARALLEL_FLAGS = ("data_parallel_size", "tensor_parallel_size")
"""The ``VLLMServeOptions`` fields in the order --help lists their flags (with ``--max-loras`` and
``--voice-loading`` between them); the command's own flags (``--vllm``, ``--dry-run``, ``--voices-dir``,
``--skip-rank-above``) say what to run and which voices to scan, and are not options of vLLM."""


def build_parser(defaults) -> argparse.ArgumentParser:
    """The flags of ``VLLMServeOptions`` (declared on its fields) and this command's own; ``defaults``: the
    server's settings, whose voices folder, base model and rank limit are the defaults here too."""
    from voicelab.options import add_options
    from voicelab.server.vllm_command import VLLMServeOptions

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--vllm", default="vllm", help="vllm executable (make vllm: .venv-vllm/bin/vllm)")
    parser.add_argument("--dry-run", action="store_true", help="print the command and exit")
    parser.add_argument("--voices-dir", type=Path, default=defaults.voices_dir, help="folder of voices")
    add_options(parser, VLLMServeOptions, SERVE_FLAGS)
    parser.add_argument(
        "--skip-rank-above",
        type=int,
        default=defaults.max_lora_rank,
        help="voices with a larger rank are left out (VOICELAB_MAX_LORA_RANK)",
    )
    add_options(parser, VLLMServeOptions, ["max_loras", "lora_loading"])
    parser.add_argument(
        "--lora-resolver",
        dest="lora_loading",
        action="store_const",
        const="resolver",
        help="short for --voice-loading resolver",
    )
    add_options(parser, VLLMServeOptions, PARALLEL_FLAGS)
    parser.set_defaults(base_model=defaults.base_model)
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more vllm serve arguments")
    return parser


def warn_resolver_mismatches(adapters, base_model: str) -> None:
    """Name the voices vLLM's filesystem resolver would not load (another base_model_name_or_path)."""
    from voicelab.server import vllm_command as vc
    from voicelab.voice import VoiceFolder

    recorded = {}
    for a in adapters:
        recorded[a.name] = VoiceFolder(a.path).read_adapter_config().get("base_model_name_or_path")
    for name, reason in vc.resolver_mismatches(recorded, base_model).items():
        print(
            f"warning: the LoRA resolver will not load voice {name}: {reason}; pass --base-model with "
            "exactly that string, or use --voice-loading both to load it statically",
            file=sys.stderr,
        )


def serve_options(args, adapters):
    """The ``VLLMServeOptions`` for the parsed arguments. Raises ValueError for a rank vLLM cannot take."""
    from dataclasses import replace

    from voicelab.options import from_args
    from voicelab.server.vllm_command import VLLMServeOptions
    from voicelab.voice import smallest_vllm_rank

    options = from_args(VLLMServeOptions, args)
    if options.lora_loading != "static" and options.max_lora_rank is None:
        # Voices trained after start-up must fit too: reserve the largest rank the API serves.
        rank = smallest_vllm_rank(max([a.rank for a in adapters] + [args.skip_rank_above]))
        options = replace(options, max_lora_rank=rank)
    return options


def check_base_model(base_model: str, *, dry_run: bool) -> bool:
    """False (after one line saying why, the same as the API's and train-lora's) for a base model vLLM
    surely cannot load. A dry run only warns: its command may be meant for another machine."""
    from voicelab.models import ModelLoadError, check_base_model_source

    try:
        check_base_model_source(base_model)
    except ModelLoadError as e:
        print(f"{'warning' if dry_run else 'error'}: {e}", file=sys.stderr)
        return dry_run
    return True


def warn_open_lora_loading(host: str, extra: list[str]) -> None:
    """vLLM on an interface other machines reach, with runtime LoRA loading on and no ``--api-key``: anyone
    who reaches the port can load any adapter path on this machine and generate with it."""
    from voicelab.server import vllm_command as vc

    if (
        vc.is_loopback(host)
        or vc.API_KEY_FLAG in extra
        or any(a.startswith(f"{vc.API_KEY_FLAG}=") for a in extra)
    ):
        return
    print(
        f"warning: vLLM will listen on {host} with runtime LoRA loading switched on and no {vc.API_KEY_FLAG}: "
        "anyone who can reach the port can load adapters and generate speech. Keep --host 127.0.0.1 "
        f"behind the voicelab API, or add `-- {vc.API_KEY_FLAG} KEY` and set VOICELAB_VLLM_API_KEY=KEY "
        "for the API",
        file=sys.stderr,
    )


def find_vllm(name: str) -> str | None:
    exe = shutil.which(name)
    if exe is None:
        print(
            f"error: vLLM executable {name!r} not found; on a GPU machine run `make install-vllm` "
            "once (it creates .venv-vllm, apart from the project's .venv), or pass --vllm PATH; "
            '`make vllm ARGS="--dry-run"` only prints the command',
            file=sys.stderr,
        )
    return exe


def print_plan(args, adapters, cmd: list[str], env: dict[str, str]) -> None:
    """The voices, the exact command with the variables it needs, and how to point the API at it."""
    from voicelab.server import vllm_command as vc

    resolver = args.lora_loading != "static"
    set_here = [*vc.RUNTIME_LORA_ENV, *((vc.PLUGINS_ENV, vc.RESOLVER_DIR_ENV) if resolver else ())]
    names = ", ".join(a.name for a in adapters) or "none yet"
    later = f" (and any folder added later to {env[vc.RESOLVER_DIR_ENV]})" if resolver else ""
    print(f"voices: {names}{later}")
    print(" ".join(f"{k}={shlex.quote(env[k])}" for k in set_here) + " " + shlex.join(cmd))
    api_env = f"VOICELAB_VLLM_URL=http://{args.host}:{args.port}"
    if resolver:
        api_env += " VOICELAB_VLLM_LORA_RESOLVER=true"
    print(f"point the API at it: {api_env} make dev")


def main(argv: list[str] | None = None) -> int:
    from voicelab.server.settings import SettingsError, load_settings

    try:
        defaults = load_settings()  # VOICELAB_* and .env, as the API reads them: both sides agree
    except SettingsError as e:
        print(f"error: bad server settings: {e}", file=sys.stderr)
        return EXIT_USAGE
    parser = build_parser(defaults)
    args = parser.parse_args(argv)
    # imported after parsing: --help needs neither (the voice scan loads httpx)
    from voicelab.server import vllm_command as vc
    from voicelab.server.registry import scan_voices

    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    if not 0 < args.gpu_memory_utilization <= 1:
        parser.error(
            f"--gpu-memory-utilization is a share of GPU memory in (0, 1], got {args.gpu_memory_utilization}"
        )
    warn_open_lora_loading(args.host, extra)
    exe = None  # vLLM missing first: installing it is the first thing to do
    if not args.dry_run and (exe := find_vllm(args.vllm)) is None:
        return EXIT_USAGE
    if not check_base_model(args.base_model, dry_run=args.dry_run):
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
    if args.lora_loading != "static":
        warn_resolver_mismatches(adapters, args.base_model)
    try:
        cmd = [*vc.build_vllm_command(args.vllm, adapters, serve_options(args, adapters)), *extra]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    env = vc.vllm_environment(os.environ, lora_loading=args.lora_loading, voices_dir=args.voices_dir)
    print_plan(args, adapters, cmd, env)
    if exe is None:  # --dry-run
        return EXIT_OK
    if args.lora_loading != "static":
        args.voices_dir.mkdir(parents=True, exist_ok=True)  # vLLM refuses a resolver folder that is missing
    sys.stdout.flush()
    os.execve(exe, [exe, *cmd[1:]], env)
    return EXIT_OK  # not reached: execve replaces this process


if __name__ == "__main__":
    sys.exit(main())

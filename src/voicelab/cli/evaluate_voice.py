"""Evaluate a trained voice: does it sound like the character, say the words, and stay natural?

  python scripts/evaluate_voice.py NAME                 # voices/NAME/eval/{eval.json,summary.md,samples/}
  python scripts/evaluate_voice.py --all                # every voice under --voices-dir
  python scripts/evaluate_voice.py NAME --compare OTHER # OTHER: a voice name or a checkpoint folder

The voice speaks the texts of the clips train-lora held out and a fixed set of novel sentences through the
engine the server uses (embedded by default, vLLM with --vllm-url); the base model speaks them too. Then:
speaker similarity to the held-out clips (and the base model's, and the difference), Whisper WER/CER
against the text, DNSMOS, speech rate against the dataset's, runaways, long silences, and overlap of the
novel sentences' audio codes with training clips (overfitting), and the expressive tags: each tag the voice
was trained with, and the rest of Orpheus' set, spoken with and without the tag, judged rendered, ignored
or read aloud. Each check gets a verdict against a
threshold flag below; README step 4 says what to do when one fails.

Exit codes: 0 evaluated (see the verdicts; --strict: 1 when a check fails), 1 a voice could not be
evaluated (engine unreachable, generation failed), 2 bad invocation or unusable voice.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from dataclasses import fields, replace
from pathlib import Path

from voicelab import progress
from voicelab.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    HelpFormatter,
    require_local_model,
    run_step,
    setup_logging,
)
from voicelab.evaluate_settings import EvalSettings, Thresholds
from voicelab.options import add_options, from_args

logger = logging.getLogger("voicelab.evaluate")


VOICE_FLAGS = ("voices_dir",)
MODEL_FLAGS = ("base_model", "snac_model")
WHISPER_FLAGS = ("whisper_model", "whisper_backend", "language")
SAMPLING_FLAGS = (
    "sentences",
    "max_heldout",
    "temperature",
    "top_p",
    "repetition_penalty",
    "seed",
    "max_tokens",
)
TAGS_CHECK_FLAGS = ("tag_sentences", "tags")
"""The ``EvalSettings`` fields in the order --help lists their flags (the thresholds follow, in a group);
each flag, default and help is declared on its field (``voicelab.evaluate_settings``). The command's own
flags choose the voices (NAME, --all, --compare, --dataset-dir), or are resolved here before they reach
the settings (--device auto, --vllm-url from the server's settings)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    _add_voice_flags(p)
    _add_model_flags(p)
    add_options(p, EvalSettings, SAMPLING_FLAGS + TAGS_CHECK_FLAGS)
    group = p.add_argument_group("thresholds (a check fails past them)")
    add_options(group, EvalSettings, [f"thresholds.{f.name}" for f in fields(Thresholds)])
    p.add_argument("--strict", action="store_true", help="exit 1 when a check fails")
    add_options(p, EvalSettings, ["progress"])
    progress.add_argument(p)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _add_voice_flags(p: argparse.ArgumentParser) -> None:
    """Which voice (or voices) to evaluate, and where its files are."""
    from voicelab.voice import VOICE_FILE

    p.add_argument("name", nargs="?", help="the voice to evaluate (a folder under --voices-dir)")
    p.add_argument("--all", action="store_true", help="evaluate every voice under --voices-dir")
    p.add_argument(
        "--compare",
        metavar="OTHER",
        help="evaluate NAME and OTHER (another voice, or a checkpoint folder of NAME) side by side",
    )
    add_options(p, EvalSettings, VOICE_FLAGS)
    p.add_argument(
        "--dataset-dir", type=Path, help=f"the voice's prepared folder (default: from {VOICE_FILE})"
    )
    add_options(p, EvalSettings, MODEL_FLAGS)


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    """The engine that speaks (vLLM or embedded) and the Whisper model that listens."""
    p.add_argument(
        "--vllm-url",
        help="generate through this vLLM server (e.g. http://127.0.0.1:8001); default: VOICELAB_VLLM_URL "
        "(environment or .env, as the API reads it), else the embedded engine",
    )
    p.add_argument("--device", default="auto", help="torch device of the models run here (auto: cuda if any)")
    add_options(p, EvalSettings, WHISPER_FLAGS)


def _server_vllm_url() -> str | None:
    """The API's ``VOICELAB_VLLM_URL`` (read by the one settings object), so evaluate speaks through the
    same engine as the server."""
    from voicelab.errors import UsageError
    from voicelab.server.settings import SettingsError, load_settings

    try:
        return load_settings().vllm_url
    except SettingsError as e:
        raise UsageError(f"bad server settings: {e}") from e


def settings_from(args: argparse.Namespace) -> EvalSettings:
    """The settings the flags describe, with --device auto and the vLLM URL resolved."""
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return replace(from_args(EvalSettings, args), device=device, vllm_url=args.vllm_url or _server_vllm_url())


def select_voices(args: argparse.Namespace) -> tuple[list, list[str]]:
    """The voices (or checkpoints) to evaluate, and the errors of those that cannot be."""
    from voicelab import evaluate as ev
    from voicelab.errors import UsageError
    from voicelab.voice import InvalidVoiceNameError, trained_voices

    requests: list[tuple[str, Path | None]] = []
    if args.all:
        requests = [(voice.name, None) for voice in trained_voices(args.voices_dir)]
        if not requests:
            return [], [f"no trained voice in {args.voices_dir} (train one with `make train-lora`)"]
    else:
        requests = [(args.name, None)]
        if args.compare:
            other = Path(args.compare).expanduser()
            is_voice = (args.voices_dir / args.compare).is_dir() and "/" not in args.compare
            if not is_voice and not other.is_dir() and ("/" in args.compare or other.is_absolute()):
                return [], [_no_checkpoint(args)]
            requests.append((args.compare, None) if is_voice or not other.is_dir() else (args.name, other))
    voices, errors = [], []
    for name, adapter in requests:
        try:
            voices.append(
                ev.load_voice_under_test(
                    args.voices_dir, name, adapter_dir=adapter, dataset_dir=args.dataset_dir
                )
            )
        except (UsageError, InvalidVoiceNameError) as e:
            errors.append(f"{name}: {e}")
    return voices, errors


def _no_checkpoint(args: argparse.Namespace) -> str:
    """The error of a --compare path that is no folder: what it should be, and the checkpoints there are."""
    from voicelab.voice import checkpoints_dir

    where = checkpoints_dir(args.voices_dir, args.name)
    found = sorted(p.name for p in where.glob("checkpoint-*") if p.is_dir()) if where.is_dir() else []
    kept = f"{args.name}'s checkpoints: {', '.join(found)} in {where}" if found else f"{where} holds none"
    return f"--compare {args.compare}: no such checkpoint folder, and not a voice name ({kept})"


def keep_writable(voices: list) -> tuple[list, list[str]]:
    """The voices whose folder can take the evaluation, and an error for each other one (checked before
    any model loads, so a read-only folder fails in a second, not after the whole evaluation)."""
    from voicelab.fileio import probe_writable

    kept, errors = [], []
    for vut in voices:
        try:
            probe_writable(vut.voice_dir)
            kept.append(vut)
        except OSError as e:
            errors.append(f"{vut.label}: cannot write the evaluation into {vut.voice_dir} ({e.strerror})")
    return kept, errors


async def run_all(voices: list, settings) -> tuple[list[dict], list[str]]:
    """Evaluate each voice with one set of loaded models; returns the reports and the failures."""
    from voicelab import evaluate as ev
    from voicelab.engine import EngineError
    from voicelab.orpheus import ContractError

    first = voices[0].metadata
    base_model = settings.base_model or first.base_model
    snac_model = settings.snac_model or first.snac_model
    runtime = await ev.open_runtime(settings, base_model, snac_model)
    reports, failures = [], []
    try:
        for vut in voices:
            if not settings.base_model and vut.metadata.base_model != base_model:
                failures.append(
                    f"{vut.label}: trained on {vut.metadata.base_model!r}, not {base_model!r}; "
                    "evaluate it on its own (or pass --base-model)"
                )
                continue
            try:
                report, samples = await ev.evaluate_voice(vut, runtime, settings)
            except (EngineError, ContractError) as e:
                failures.append(f"{vut.label}: {e}")
                continue
            path = ev.write_outputs(vut.folder, vut.eval_dir, report, samples)
            print(ev.render_summary(report))
            print(f"written: {path}\n")
            reports.append(report)
    finally:
        await runtime.aclose()
    return reports, failures


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks argparse cannot express; each one ends the run with exit code 2."""
    if bool(args.name) == args.all:
        parser.error("name a voice, or pass --all")
    if args.compare and args.all:
        parser.error("--compare compares NAME with OTHER; it does not combine with --all")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    setup_logging(args.verbose)
    progress.configure(args.progress_file, "evaluate")
    return run_step(
        lambda: _evaluate(args),
        verbose=args.verbose,
        on_interrupt="interrupted; the evaluations finished before it are written",
    )


def _evaluate(args: argparse.Namespace) -> int:
    from voicelab import transcribe as tr
    from voicelab.engine import EngineError
    from voicelab.models import check_base_model_source, check_snac_source

    # every input before any model loads: the same messages as train-lora's and the server's
    require_local_model(args.whisper_model, "--whisper-model", "Whisper checkpoint")
    tr.check_model(args.whisper_backend, args.whisper_model)
    for flag, value in (("--base-model", args.base_model), ("--snac-model", args.snac_model)):
        if value:  # a file given for the folder, said with its flag; a missing one by the shared checks
            require_local_model(value, flag, "model folder", folder=True, missing_ok=True)
    if args.base_model:
        check_base_model_source(args.base_model)
    if args.snac_model:
        check_snac_source(args.snac_model)
    voices, errors = select_voices(args)
    voices, unwritable = keep_writable(voices)
    errors += unwritable
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if not voices or (errors and not args.all):
        # NAME and --compare OTHER go together: one that cannot be evaluated stops both before any
        # model loads; --all evaluates the others and reports the rest at the end.
        if voices:
            print("nothing evaluated: fix the above first", file=sys.stderr)
        return EXIT_USAGE
    if not args.progress:  # transformers' own bars too ("Loading weights")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        reports, failures = asyncio.run(run_all(voices, settings_from(args)))
    except EngineError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    if args.compare and len(reports) == 2:
        _write_comparison(voices[0], reports)
    failed_checks = sum(c["verdict"] == "FAIL" for r in reports for c in r["checks"])
    print(
        f"evaluated {len(reports)} voice(s); {failed_checks} check(s) failed; "
        f"{len(errors) + len(failures)} voice(s) could not be evaluated"
    )
    if errors or failures:
        return EXIT_USAGE if errors and not failures else EXIT_FAILURE
    return EXIT_FAILURE if args.strict and failed_checks else EXIT_OK


def _write_comparison(vut, reports: list[dict]) -> None:
    from voicelab import evaluate as ev

    table = ev.compare_table(reports)
    out = vut.folder.write_comparison(reports[1]["voice"].replace("@", "-"), table)
    print(table)
    print(f"written: {out}")


if __name__ == "__main__":
    sys.exit(main())

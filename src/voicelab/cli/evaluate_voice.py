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
from dataclasses import fields
from pathlib import Path

from voicelab import progress
from voicelab.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    HelpFormatter,
    finite_float,
    non_negative_int,
    positive_int,
    require_local_model,
    run_step,
    setup_logging,
)
from voicelab.options import add_options, from_args

logger = logging.getLogger("voicelab.evaluate")


def tag_list(value: str) -> tuple[str, ...]:
    """``--tags laugh,sigh``: Orpheus tags, with or without the angle brackets."""
    from voicelab.dataset import ORPHEUS_TAGS

    tags = tuple(t.strip().strip("<>").lower() for t in value.split(",") if t.strip())
    unknown = [t for t in tags if t not in ORPHEUS_TAGS]
    if unknown or not tags:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown) or 'nothing'}: not an Orpheus tag; use some of {','.join(ORPHEUS_TAGS)}"
        )
    return tags


def _add_tags_check_flags(p: argparse.ArgumentParser, default_sentences: int) -> None:
    from voicelab.dataset import ORPHEUS_TAGS
    from voicelab.evaluate.tag_check import TAG_SENTENCES

    p.add_argument(
        "--tag-sentences",
        type=non_negative_int,
        default=default_sentences,
        help=f"tags check: sentences per tag, each also spoken without the tag (at most "
        f"{len(TAG_SENTENCES)}; 0: no tags check)",
    )
    p.add_argument(
        "--tags",
        type=tag_list,
        help="tags check: only these tags, comma-separated (default: the voice's trained tags and the rest "
        "of Orpheus' set: " + ",".join(ORPHEUS_TAGS) + ")",
    )


def build_parser() -> argparse.ArgumentParser:
    from voicelab.evaluate import EvalSettings, Thresholds

    defaults = EvalSettings()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    _add_voice_flags(p)
    _add_model_flags(p, defaults)
    _add_sampling_flags(p, defaults)
    _add_tags_check_flags(p, defaults.tag_sentences)
    group = p.add_argument_group("thresholds (a check fails past them)")
    add_options(group, Thresholds, [f.name for f in fields(Thresholds)])
    p.add_argument("--strict", action="store_true", help="exit 1 when a check fails")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
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
    p.add_argument("--voices-dir", type=Path, default=Path("voices"), help="root folder of the voices")
    p.add_argument(
        "--dataset-dir", type=Path, help=f"the voice's prepared folder (default: from {VOICE_FILE})"
    )
    p.add_argument(
        "--base-model", help=f"Orpheus checkpoint: hub id or local folder (default: {VOICE_FILE}'s)"
    )
    p.add_argument(
        "--snac-model", help=f"SNAC 24 kHz codec: hub id or local folder (default: {VOICE_FILE}'s)"
    )


def _add_model_flags(p: argparse.ArgumentParser, defaults) -> None:
    """The engine that speaks (vLLM or embedded) and the Whisper model that listens."""
    p.add_argument(
        "--vllm-url",
        help="generate through this vLLM server (e.g. http://127.0.0.1:8001); default: VOICELAB_VLLM_URL "
        "(environment or .env, as the API reads it), else the embedded engine",
    )
    p.add_argument("--device", default="auto", help="torch device of the models run here (auto: cuda if any)")
    p.add_argument(
        "--whisper-model",
        default=defaults.whisper_model,
        help="Whisper model name or local checkpoint path, as in `make transcribe`",
    )
    p.add_argument(
        "--whisper-backend",
        choices=("openai-whisper", "faster-whisper"),
        default=defaults.whisper_backend,
        help="Whisper implementation",
    )
    p.add_argument("--language", default=defaults.language, help="language of the voice")


def _add_sampling_flags(p: argparse.ArgumentParser, defaults) -> None:
    """What is spoken (novel and held-out texts) and how it is sampled."""
    from voicelab.evaluate import NOVEL_SENTENCES

    p.add_argument(
        "--sentences",
        type=non_negative_int,
        default=len(NOVEL_SENTENCES),
        help=f"how many of the {len(NOVEL_SENTENCES)} novel sentences to speak",
    )
    p.add_argument(
        "--max-heldout",
        type=non_negative_int,
        default=defaults.max_heldout,
        help="held-out texts to speak at most",
    )
    p.add_argument(
        "--temperature", type=finite_float, default=defaults.temperature, help="sampling temperature"
    )
    p.add_argument("--top-p", type=finite_float, default=defaults.top_p, help="nucleus sampling")
    p.add_argument(
        "--repetition-penalty",
        type=finite_float,
        default=defaults.repetition_penalty,
        help="repetition penalty",
    )
    p.add_argument("--seed", type=int, default=defaults.seed, help="sampling seed (same seed, same samples)")
    p.add_argument(
        "--max-tokens",
        type=positive_int,
        help="generated tokens per piece at most (default: the server's budget, derived from the text)",
    )


def _server_vllm_url() -> str | None:
    """The API's ``VOICELAB_VLLM_URL`` (read by the one settings object), so evaluate speaks through the
    same engine as the server."""
    from voicelab.errors import UsageError
    from voicelab.server.settings import SettingsError, load_settings

    try:
        return load_settings().vllm_url
    except SettingsError as e:
        raise UsageError(f"bad server settings: {e}") from e


def settings_from(args: argparse.Namespace):
    import torch

    from voicelab.evaluate import EvalSettings, Thresholds

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return EvalSettings(
        voices_dir=args.voices_dir,
        base_model=args.base_model,
        snac_model=args.snac_model,
        device=device,
        vllm_url=args.vllm_url or _server_vllm_url(),
        whisper_model=args.whisper_model,
        whisper_backend=args.whisper_backend,
        language=args.language,
        sentences=args.sentences,
        max_heldout=args.max_heldout,
        temperature=args.temperature,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
        max_tokens=args.max_tokens,
        tag_sentences=args.tag_sentences,
        tags=args.tags,
        thresholds=from_args(Thresholds, args),
        progress=not args.no_progress,
    )


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
    if args.no_progress:  # transformers' own bars too ("Loading weights")
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

"""Transcribe a folder of WAV clips with Whisper into transcript.csv (filename,text).

Resumable: clips already in the output (or seen by an earlier run) are not transcribed again, so adding
clips later costs only the new ones; --overwrite starts over. Also writes transcript_review.csv: the
clips worth a listen, riskiest first, with the reasons (Whisper's doubts, another speaker, background
noise or music, distorted speech, odd speech rate), and dataset_report.png, a picture of the dataset.
--exclude-flagged leaves flagged clips out of training (excluded.csv) without deleting them. Example:

    python scripts/transcribe.py prepared/NAME/ --model large
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from voicelab import dataset, progress
from voicelab.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    HelpFormatter,
    require_local_model,
    require_output_file,
    run_step,
    setup_logging,
)
from voicelab.dataset import TRANSCRIPT_FILE
from voicelab.errors import UsageError
from voicelab.options import add_options, from_args
from voicelab.transcribe_settings import DEFAULT_BATCH_SIZE, TranscribeSettings

if TYPE_CHECKING:  # voicelab.transcribe loads numpy: imported where the work starts, not for --help
    from voicelab import transcribe as tr

OUTPUT_HELP = f"output CSV path (default: {{input_dir}}/{TRANSCRIPT_FILE})"


WHISPER_FLAGS = (
    "model",
    "language",
    "device",
    "backend",
    "batch_size",
    "compute_type",
    "threads",
    "beam_size",
    "temperature",
    "temperature_increment_on_fallback",
    "max_fallbacks",
)
REVIEW_FLAGS = ("speaker_threshold", "reference", "exclude_flagged", "no_quality", "tags")
"""The ``TranscribeSettings`` fields in the order --help lists their flags; each flag, default and help is
declared on its field (``voicelab.transcribe_settings``). The command's own flags (INPUT_DIR, --output,
--not-prepared, --overwrite, --no-progress) say which clips and where, and go to no settings object."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("input_dir", type=Path, help="folder of .wav clips (what prepare-audio wrote)")
    parser.add_argument("--output", type=Path, default=None, help=OUTPUT_HELP)
    add_options(parser, TranscribeSettings, WHISPER_FLAGS)
    add_options(parser, TranscribeSettings, REVIEW_FLAGS)
    parser.add_argument(
        "--not-prepared",
        action="store_true",
        help="transcribe a folder prepare-audio did not make even when its files look like raw recordings "
        "(not mono, over 30 s, audio in sub-folders); by default that stops with exit 2",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="transcribe every clip again instead of resuming"
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the progress bar (without a terminal: the log line every 5%% of the audio)",
    )
    progress.add_argument(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every clip (debug detail)")
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks argparse cannot express; each one ends the run with exit code 2."""
    if args.backend != "faster-whisper" and (args.batch_size is not None or args.compute_type != "auto"):
        parser.error("--batch-size and --compute-type apply to --backend faster-whisper only")
    if args.threads < 0:
        parser.error("--threads must be 0 (library default) or more")
    if not 0.0 <= args.temperature <= 1.0 or args.temperature_increment_on_fallback < 0:
        parser.error("--temperature must be in [0, 1] and --temperature-increment-on-fallback >= 0")
    if not -1.0 <= args.speaker_threshold <= 1.0:
        parser.error("--speaker-threshold is a cosine similarity: between -1 and 1 (default 0.75)")
    if args.no_quality and (args.reference or args.exclude_flagged):
        parser.error("--reference and --exclude-flagged need the audio measures: drop --no-quality")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    setup_logging(args.verbose)
    progress.configure(args.progress_file, "transcribe")
    return run_step(
        lambda: _transcribe(args, from_args(TranscribeSettings, args)),
        verbose=args.verbose,
        on_interrupt="interrupted: every row written so far is kept; rerun the same command to resume",
    )


def _transcribe(args: argparse.Namespace, settings: TranscribeSettings) -> int:
    from voicelab import transcribe as tr

    require_local_model(settings.model, "--model", "Whisper checkpoint or model folder")
    clips = dataset.find_clips(args.input_dir)
    if not args.not_prepared:
        _refuse_raw_recordings(args.input_dir, clips)
    output = require_output_file(
        args.output or dataset.PreparedDataset(args.input_dir).transcript_path, "--output"
    )
    language = tr.normalize_language(settings.language)
    tr.check_model(settings.backend, settings.model)
    try:
        plan = tr.plan_resume(clips, output, overwrite=args.overwrite)
    except dataset.TranscriptFormatError as e:
        raise UsageError(
            f"{e}\nrefusing to overwrite it: pass another --output, or fix or move that file"
        ) from e
    reference = tr.resolve_reference(settings.reference, args.input_dir)
    # nothing new: no need to load a model just to rebuild the review
    transcriber = _load_transcriber(settings, language) if plan.todo else None
    quality = None
    if not settings.no_quality:
        quality = tr.QualityOptions(
            device=settings.device,
            reference=reference,
            speaker_threshold=settings.speaker_threshold,
            exclude_flagged=settings.exclude_flagged,
        )
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():  # log lines above the progress bar, not through it
        summary = tr.transcribe_clips(
            clips, output, transcriber, plan, progress=not args.no_progress, quality=quality
        )
    print(format_summary(summary, args.input_dir))
    _print_quality(summary, settings)
    if summary.failed:
        print("unreadable clips (skipped):\n  " + "\n  ".join(summary.failed), file=sys.stderr)
        print(f"finished with errors: {len(summary.failed)} clip(s) unreadable; exit status {EXIT_FAILURE}")
        return EXIT_FAILURE
    return EXIT_OK


def _load_transcriber(settings: TranscribeSettings, language: str):
    from voicelab import transcribe as tr

    return tr.load_transcriber(
        settings.backend,
        settings.model,
        device=settings.device,
        options=tr.DecodeOptions(
            language=language,
            beam_size=settings.beam_size,
            temperatures=tr.temperature_schedule(
                settings.temperature, settings.temperature_increment_on_fallback, settings.max_fallbacks
            ),
            annotations=settings.tags,
        ),
        compute_type=settings.compute_type,
        batch_size=settings.batch_size or DEFAULT_BATCH_SIZE,
        threads=settings.threads,
    )


def _refuse_raw_recordings(input_dir: Path, clips: list[Path]) -> None:
    from voicelab.unprepared import refuse_raw_recordings
    from voicelab.voice import suggest_voice_name

    name = suggest_voice_name(input_dir.resolve().name)
    refuse_raw_recordings(input_dir, clips, Path("prepared") / name)


def format_summary(summary: tr.TranscribeSummary, input_dir: Path) -> str:
    """The end-of-run report: rows written and kept, what was skipped, where the review is."""
    from voicelab import transcribe as tr

    lines = [
        f"{summary.output}: {summary.rows} rows; {summary.transcribed} new from {summary.audio_s / 60:.1f} min "
        f"of audio, {summary.kept} clips done by an earlier run, {summary.empty} empty (skipped), "
        f"{len(summary.failed)} unreadable, of {summary.clips} clips"
    ]
    if summary.rowless > 0:
        lines.append(
            f"{summary.rowless} clips done earlier have no row (deleted by hand, or no speech found): "
            "not transcribed again (--overwrite redoes every clip)"
        )
    if summary.changed:
        lines.append(f"{len(summary.changed)} clips had new audio under an old name: transcribed again")
    if summary.kept_edits:
        lines.append(
            f"{len(summary.kept_edits)} clips got a row from someone else while this ran (the studio): "
            "theirs kept, Whisper's not written: " + tr.list_some(summary.kept_edits)
        )
    if summary.missing:
        lines.append(
            f"{len(summary.missing)} rows name clips not in {input_dir} (kept; training skips them): "
            + tr.list_some(summary.missing)
        )
    lines += dataset.describe_tags(summary.tags)
    lines += [
        f"  {dataset.unknown_tag_message(spelled)} (Whisper wrote it {times}x; removed)"
        for spelled, times in sorted(summary.unknown_tags.items())
    ]
    if summary.flagged:
        lines.append(f"{summary.flagged} clips flagged for a listen, riskiest first: {summary.review_path}")
    else:
        lines.append(f"no clip flagged for review ({summary.review_path})")
    return "\n".join(lines)


def _print_quality(summary: tr.TranscribeSummary, settings: TranscribeSettings) -> None:
    if settings.no_quality:
        return
    if summary.measured:
        reused = summary.clips - summary.measured - len(summary.failed)
        print(
            f"audio measures (speaker, DNSMOS, speech time) for {summary.measured} clips in "
            f"{summary.quality_s:.1f} s beside Whisper ({summary.quality_wait_s:.1f} s waited for)"
            + (
                f"; {reused} reused from {dataset.PreparedDataset.of_transcript(summary.output).signals_path.name}"
                if reused > 0
                else ""
            )
        )
    if summary.other_speaker or summary.noisy:
        print(
            f"  {summary.other_speaker} clips sound like another speaker (similarity < "
            f"{settings.speaker_threshold:g}), {summary.noisy} noisy or distorted (DNSMOS)"
        )
        if summary.excluded_new:
            print(f"  {summary.excluded_new} of them added to {summary.excluded_path}: training skips them")
        if summary.kept_restored:
            one = summary.kept_restored == 1
            print(
                f"  {summary.kept_restored} of them {'stays' if one else 'stay'} in training: a person "
                f"restored {'it' if one else 'them'} ({dataset.DECISIONS_FILE}; delete a line there to let "
                "the flags decide again)"
            )
        elif not settings.exclude_flagged:
            print(
                f"  listen to them; --exclude-flagged leaves them out of training ({dataset.EXCLUDED_FILE})"
            )
    if summary.report_path is not None:
        print(f"dataset report: {summary.report_path}")


if __name__ == "__main__":
    sys.exit(main())

"""Split raw recordings into 3-13 s training clips with normalised loudness.

INPUT is a folder of recordings (searched recursively: WAV, MP3, FLAC, OGG, M4A, OPUS, WEBM, ...) or one
file; OUTPUT receives 16-bit mono WAV clips named {stem}_{index:03d}.wav and manifest.csv. Clips are cut
only inside pauses, trimmed to a short natural pad and normalised to the target RMS. A rerun skips
sources already in the manifest (add recordings later and rerun); --overwrite redoes everything.

example: make prepare-audio ARGS="raw_audio/$CHARACTER/ prepared/$CHARACTER/"
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from voicelab.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    HelpFormatter,
    finite_float,
    positive_float,
    positive_int,
    require_output_dir,
    run_step,
    setup_logging,
)

logger = logging.getLogger(__name__)

MIN_SAMPLE_RATE = 8000  # telephone audio; below it speech loses the consonants a voice is made of


def _not_positive_db(text: str) -> float:
    value = finite_float(text)
    if value > 0:
        raise argparse.ArgumentTypeError(f"dBFS levels are 0 or below (0 = full scale), got {text}")
    return value


def _logs_above_the_bar():
    """Log lines above tqdm's bar on a terminal; elsewhere no bar is drawn and tqdm is not imported."""
    if not sys.stderr.isatty():
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


def warn_if_not_a_voice_name(output: Path) -> None:
    """The guide names the voice after its dataset folder (prepared/$CHARACTER/): say now, before the
    work, when that name cannot be a voice name, rather than at train-lora after transcribing."""
    from voicelab.voice import VOICE_NAME_RE, suggest_voice_name

    given = output if output.name else output.resolve()  # "prepared/x/" as typed; "." as a real name
    name = given.name
    if not VOICE_NAME_RE.fullmatch(name):
        better = given.with_name(suggest_voice_name(name))
        logger.warning(
            "%r cannot be a voice name (1-64 letters, digits, '_' or '-'), and the guide's later steps name "
            "the voice after this folder: use e.g. %s as OUTPUT (or give train-lora another NAME)",
            name,
            better,
        )


def build_parser() -> argparse.ArgumentParser:
    from voicelab.dataset import MANIFEST_FILE

    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("input", type=Path, metavar="INPUT", help="folder of recordings, or one audio file")
    parser.add_argument(
        "output", type=Path, metavar="OUTPUT", help=f"folder for the clips and {MANIFEST_FILE}"
    )
    parser.add_argument(
        "--sample-rate",
        type=positive_int,
        default=24000,
        help=f"target sample rate in Hz, at least {MIN_SAMPLE_RATE} (Orpheus/SNAC: 24000)",
    )
    parser.add_argument("--min-duration", type=positive_float, default=3.0, help="minimum clip duration (s)")
    parser.add_argument("--max-duration", type=positive_float, default=13.0, help="maximum clip duration (s)")
    parser.add_argument(
        "--silence-threshold",
        type=_not_positive_db,
        default=-40.0,
        help="10 ms frames quieter than this (dBFS RMS) are silence",
    )
    parser.add_argument(
        "--silence-min-len",
        type=positive_int,
        default=500,
        help="a pause is at least this long (ms); clips are cut only inside pauses",
    )
    parser.add_argument(
        "--target-loudness",
        type=_not_positive_db,
        default=-20.0,
        help="RMS loudness of every clip (dBFS); lowered per clip where needed so that no sample clips",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="redo every source (deletes the clips the manifest lists)"
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="try again the recordings an earlier run left out (unreadable, or no clip) even if unchanged",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step (voicelab detail only)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.sample_rate < MIN_SAMPLE_RATE:
        parser.error(f"--sample-rate must be at least {MIN_SAMPLE_RATE} Hz, got {args.sample_rate}")
    if args.min_duration >= args.max_duration:
        parser.error(
            f"--min-duration ({args.min_duration}) must be below --max-duration ({args.max_duration})"
        )
    setup_logging(args.verbose)
    return run_step(
        lambda: _prepare(args),
        verbose=args.verbose,
        on_interrupt="interrupted: the clips and manifest rows written so far are kept; "
        "rerun the same command to go on with the remaining recordings",
    )


def _prepare(args: argparse.Namespace) -> int:
    from voicelab.prepare import PrepareSettings, check_paths, find_sources, prepare_dataset
    from voicelab.prepare_summary import format_summary

    check_paths(args.input, args.output)
    find_sources(args.input)  # a missing or empty INPUT is reported before OUTPUT is created
    warn_if_not_a_voice_name(args.output)
    require_output_dir(args.output, "OUTPUT")
    settings = PrepareSettings(
        sample_rate=args.sample_rate,
        min_duration=args.min_duration,
        max_duration=args.max_duration,
        silence_threshold=args.silence_threshold,
        silence_min_len_ms=args.silence_min_len,
        target_loudness=args.target_loudness,
    )
    with _logs_above_the_bar():
        report = prepare_dataset(
            args.input, args.output, settings, overwrite=args.overwrite, retry_left_out=args.retry_failed
        )
    print(format_summary(report))
    written = len(report.new_records)
    if report.failed:
        print(
            f"finished with errors: {written} clip(s) written; {len(report.failed)} of "
            f"{len(report.results)} file(s) failed (listed above); exit status {EXIT_FAILURE}"
        )
        return EXIT_FAILURE
    print(f"done: {written} clip(s) written from {len(report.results)} file(s)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

"""Split raw recordings into 3-13 s training clips with normalised loudness.

INPUT is a folder of recordings (searched recursively: WAV, MP3, FLAC, OGG, M4A, OPUS, WEBM, ...) or one
file; OUTPUT receives 16-bit mono WAV clips named {stem}_{index:03d}.wav and manifest.csv. Clips are cut
only inside pauses, trimmed to a short natural pad and normalised to the target RMS. A rerun skips
sources already in the manifest (add recordings later and rerun); --overwrite redoes everything.

example: make prepare-audio ARGS="raw_audio/$CHARACTER/ prepared/$CHARACTER/"
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from voicelab.cli import HelpFormatter

EXIT_OK, EXIT_SOME_FAILED, EXIT_BAD_INVOCATION = 0, 1, 2
MIN_SAMPLE_RATE = 8000  # telephone audio; below it speech loses the consonants a voice is made of


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def _not_positive_db(text: str) -> float:
    value = float(text)
    if value > 0:
        raise argparse.ArgumentTypeError(f"dBFS levels are 0 or below (0 = full scale), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prepare_audio.py",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("input", type=Path, metavar="INPUT", help="folder of recordings, or one audio file")
    parser.add_argument("output", type=Path, metavar="OUTPUT", help="folder for the clips and manifest.csv")
    parser.add_argument(
        "--sample-rate",
        type=_positive(int),
        default=24000,
        help="target sample rate in Hz (Orpheus/SNAC: 24000)",
    )
    parser.add_argument(
        "--min-duration", type=_positive(float), default=3.0, help="minimum clip duration (s)"
    )
    parser.add_argument(
        "--max-duration", type=_positive(float), default=13.0, help="maximum clip duration (s)"
    )
    parser.add_argument(
        "--silence-threshold",
        type=_not_positive_db,
        default=-40.0,
        help="10 ms frames quieter than this (dBFS RMS) are silence",
    )
    parser.add_argument(
        "--silence-min-len",
        type=_positive(int),
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
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step (INFO level)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.min_duration >= args.max_duration:
        parser.error(
            f"--min-duration ({args.min_duration}) must be below --max-duration ({args.max_duration})"
        )
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )

    from tqdm.contrib.logging import logging_redirect_tqdm

    from voicelab.prepare import PrepareError, PrepareSettings, format_summary, prepare_dataset

    settings = PrepareSettings(
        sample_rate=args.sample_rate,
        min_duration=args.min_duration,
        max_duration=args.max_duration,
        silence_threshold=args.silence_threshold,
        silence_min_len_ms=args.silence_min_len,
        target_loudness=args.target_loudness,
    )
    try:
        with logging_redirect_tqdm():
            report = prepare_dataset(args.input, args.output, settings, overwrite=args.overwrite)
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INVOCATION
    print(format_summary(report))
    return EXIT_SOME_FAILED if report.failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

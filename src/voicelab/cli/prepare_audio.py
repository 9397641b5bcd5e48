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

from voicelab import progress
from voicelab.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    HelpFormatter,
    require_output_dir,
    run_step,
    setup_logging,
)
from voicelab.options import add_options, from_args
from voicelab.prepare_settings import MIN_SAMPLE_RATE, PrepareSettings

logger = logging.getLogger(__name__)


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


SPLIT_FLAGS = (
    "sample_rate",
    "min_duration",
    "max_duration",
    "silence_threshold",
    "silence_min_len_ms",
    "target_loudness",
)
VOICE_FLAGS = ("speaker_threshold", "music_bed")
"""The flags that tune keeping one voice: given without a voice to keep (``--reference`` or ``--speaker
auto``), they are refused."""
SEPARATION_FLAGS = ("separate_vocals", "demucs_model", "demucs_repo", "device")
"""The ``PrepareSettings`` fields in the order --help lists their flags, by group; each flag, default and
help is declared on its field (``voicelab.prepare_settings``)."""


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
    add_options(parser, PrepareSettings, SPLIT_FLAGS)
    _add_voice_flags(parser)
    _add_separation_flags(parser)
    parser.add_argument(
        "--overwrite", action="store_true", help="redo every source (deletes the clips the manifest lists)"
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="try again the recordings an earlier run left out (unreadable, or no clip) even if unchanged",
    )
    progress.add_argument(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step (voicelab detail only)")
    return parser


def _add_separation_flags(parser: argparse.ArgumentParser) -> None:
    """Vocal separation (demucs), an optional extra: its own help group."""
    separation = parser.add_argument_group(
        "vocal separation (optional extra: pip install -e '.[separation]')",
        "separate each recording's vocals from the music under them (demucs) before anything else",
    )
    add_options(separation, PrepareSettings, SEPARATION_FLAGS)


def _add_voice_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that keep one voice (--reference, --speaker auto) and tune it."""
    voice = parser.add_argument_group(
        "sources with other voices or music",
        "keep only the character's voice: cuts fall at every change of voice as well as in pauses, and "
        "stretches too short to tell whose they are are dropped",
    )
    add_options(voice.add_mutually_exclusive_group(), PrepareSettings, ["reference", "speaker"])
    add_options(voice, PrepareSettings, VOICE_FLAGS)


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks argparse cannot express; each one ends the run with exit code 2."""
    if args.sample_rate < MIN_SAMPLE_RATE:
        parser.error(f"--sample-rate must be at least {MIN_SAMPLE_RATE} Hz, got {args.sample_rate}")
    if args.min_duration >= args.max_duration:
        parser.error(
            f"--min-duration ({args.min_duration}) must be below --max-duration ({args.max_duration})"
        )
    if not (args.reference or args.speaker):
        for name in VOICE_FLAGS:
            if getattr(args, name) is not None:  # their flags default to None: not given
                parser.error(f"--{name.replace('_', '-')} applies only with --reference or --speaker auto")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    setup_logging(args.verbose)
    progress.configure(args.progress_file, "prepare-audio")
    return run_step(
        lambda: _prepare(args),
        verbose=args.verbose,
        on_interrupt="interrupted: the clips and manifest rows written so far are kept; "
        "rerun the same command to go on with the remaining recordings",
    )


def _prepare(args: argparse.Namespace) -> int:
    from voicelab.prepare import check_paths, find_sources, prepare_dataset
    from voicelab.prepare_summary import format_summary

    check_paths(args.input, args.output)
    find_sources(args.input)  # a missing or empty INPUT is reported before OUTPUT is created
    warn_if_not_a_voice_name(args.output)
    settings = from_args(PrepareSettings, args)
    # a bad reference or separation model is reported before OUTPUT is created
    reference = separator = None
    if settings.reference:
        from voicelab.speaker_turns import load_reference

        reference = load_reference(settings.reference)
    if settings.separate_vocals:
        from voicelab.prepare import load_separator

        separator = load_separator(settings)
    require_output_dir(args.output, "OUTPUT")
    with _logs_above_the_bar():
        report = prepare_dataset(
            args.input,
            args.output,
            settings,
            overwrite=args.overwrite,
            retry_left_out=args.retry_failed,
            reference=reference,
            separator=separator,
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

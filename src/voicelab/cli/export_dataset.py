"""Export a prepared dataset as a Hugging Face audiofolder (the clips + metadata.csv), to share or publish.

The export holds the clips train-lora would use (transcribed, not in excluded.csv) and metadata.csv with
the columns file_name,text. Load it with the datasets package, offline:

    python scripts/export_dataset.py prepared/NAME/ exports/NAME/
    python -c 'import datasets; print(datasets.load_dataset("audiofolder", data_dir="exports/NAME"))'

Publish it as a dataset repository (after `.venv/bin/hf auth login`):

    .venv/bin/hf upload --repo-type dataset YOU/NAME exports/NAME .
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from voicelab.cli.common import EXIT_FAILURE, EXIT_OK, HelpFormatter, run_step, setup_logging


def build_parser() -> argparse.ArgumentParser:
    from voicelab import dataset, hf_export

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("dataset_dir", type=Path, help="prepared dataset folder (prepared/NAME/)")
    parser.add_argument("out_dir", type=Path, help="folder to write the audiofolder to (exports/NAME/)")
    parser.add_argument(
        "--transcript",
        type=Path,
        default=None,
        help=f"transcript CSV (default: {{dataset_dir}}/{dataset.TRANSCRIPT_FILE})",
    )
    parser.add_argument(
        "--include-excluded",
        action="store_true",
        help=f"also export the clips listed in {dataset.EXCLUDED_FILE}",
    )
    parser.add_argument(
        "--text-column",
        default=hf_export.DEFAULT_TEXT_COLUMN,
        help="name of the text column in metadata.csv (e.g. transcription)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty out_dir")
    parser.add_argument("-v", "--verbose", action="store_true", help="list each clip left out and why")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_step(
        lambda: _export(args),
        verbose=args.verbose,
        on_interrupt="interrupted: nothing exported (the partial copy was removed); rerun the same command",
    )


def _export(args: argparse.Namespace) -> int:
    from voicelab import hf_export

    report = hf_export.export_audiofolder(
        args.dataset_dir,
        args.out_dir,
        transcript=args.transcript,
        include_excluded=args.include_excluded,
        text_column=args.text_column,
        overwrite=args.overwrite,
    )
    left_out = _left_out(len(report.skipped), report.excluded)
    print(
        f"{report.out_dir}: {report.exported} clips and {hf_export.METADATA_FILE} exported{left_out}; "
        f'load with datasets.load_dataset("audiofolder", data_dir="{report.out_dir}")'
    )
    if report.unreadable:
        listed = "\n  ".join(f"{name}: {reason}" for name, reason in report.unreadable)
        print(f"unreadable clips (not exported; train-lora skips them too):\n  {listed}", file=sys.stderr)
        print(
            f"finished with errors: {len(report.unreadable)} clip(s) unreadable; exit status {EXIT_FAILURE}"
        )
        return EXIT_FAILURE
    return EXIT_OK


def _left_out(n: int, excluded: int) -> str:
    """'; 3 transcript rows left out (1 in excluded.csv, 2 without text or clip; -v lists them)'."""
    from voicelab.dataset import EXCLUDED_FILE

    if not n:
        return ""
    parts = [f"{excluded} in {EXCLUDED_FILE}"] if excluded else []
    if n - excluded:
        parts.append(f"{n - excluded} without text or clip")
    return f"; {n} transcript row{'s' if n != 1 else ''} left out ({', '.join(parts)}; -v lists them)"


if __name__ == "__main__":
    sys.exit(main())

"""A prepared dataset as a Hugging Face ``audiofolder``: the clips training uses, plus ``metadata.csv``.

``datasets.load_dataset("audiofolder", data_dir=OUT)`` loads the folder (one ``train`` split, columns
``audio`` and ``text``), and the hub recognises the same layout when the folder is uploaded as a dataset
repository. The export holds exactly what train-lora would train on: rows of ``transcript.csv`` with text,
whose WAV exists, not listed in ``excluded.csv`` (unless asked). Nothing here needs the ``datasets`` package.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from voicelab import dataset
from voicelab.errors import UsageError
from voicelab.fileio import probe_writable, write_text_atomic

logger = logging.getLogger(__name__)

METADATA_FILE = "metadata.csv"
FILE_NAME_COLUMN = "file_name"
"""The column ``audiofolder`` joins to the audio files."""
DEFAULT_TEXT_COLUMN = "text"
"""transcript.csv's name for it, and what Orpheus fine-tuning scripts read."""
STAGING_PREFIX = ".export-"


class ExportError(UsageError):
    """The export cannot be written as asked (output exists, or it would overwrite the dataset)."""


@dataclass
class ExportReport:
    out_dir: Path
    exported: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(clip key, reason) for every transcript row left out."""
    excluded: int = 0
    """How many of ``skipped`` a person left out (``excluded.csv``); the others lack text or a clip."""
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    """(clip key, reason) for clips left out because their audio cannot be read, as train-lora skips them:
    a fault in the dataset, so the export step ends with a non-zero status."""


def export_audiofolder(
    dataset_dir: Path | str,
    out_dir: Path | str,
    *,
    transcript: Path | str | None = None,
    include_excluded: bool = False,
    text_column: str = DEFAULT_TEXT_COLUMN,
    overwrite: bool = False,
) -> ExportReport:
    """Write ``out_dir`` (clips + ``metadata.csv``) from ``dataset_dir``; see the module docstring.

    The folder is assembled beside ``out_dir`` and renamed into place, so a failed export leaves nothing
    half-written; an existing ``out_dir`` is replaced only with ``overwrite``.
    """
    from voicelab.training import dataset as training_rows  # numpy: loaded here, not for --help

    ds = dataset.PreparedDataset(dataset_dir, transcript or None).require()
    dataset_dir = ds.dir
    out_dir = Path(out_dir)
    _check_output(dataset_dir, out_dir, text_column, overwrite)
    exclusions = {} if include_excluded else ds.read_exclusions()
    rows, skipped = training_rows.read_training_rows(ds, exclusions)
    clips, missing = training_rows.resolve_clips(ds, rows)
    report = ExportReport(out_dir, skipped=[(s.key, s.reason) for s in [*skipped, *missing]])
    clips = _readable(clips, report)
    if not clips:
        first = f", e.g. {report.skipped[0][0]}: {report.skipped[0][1]}" if report.skipped else ""
        raise ExportError(
            f"{dataset_dir}: no clip to export ({len(report.skipped)} transcript rows skipped{first}); "
            "transcribe the clips first (make transcribe)"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f"{STAGING_PREFIX}{out_dir.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        table = io.StringIO()
        writer = csv.writer(table, lineterminator="\n")
        writer.writerow([FILE_NAME_COLUMN, text_column])
        for clip in clips:
            shutil.copy2(clip.path, staging / clip.path.name)
            writer.writerow([clip.path.name, clip.text])
        write_text_atomic(staging / METADATA_FILE, table.getvalue())
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.exported = len(clips)
    report.excluded = sum(name in exclusions for name, _ in report.skipped)
    for name, reason in report.skipped:
        logger.debug("not exported: %s (%s)", name, reason)  # the summary counts them; -v lists them
    return report


def _readable(clips: list, report: ExportReport) -> list:
    """The clips whose audio train-lora can read (``training.dataset.load_clip_audio``); each other one is
    logged and recorded in ``report.unreadable``."""
    from voicelab.audio import AudioError
    from voicelab.training import dataset as training_rows

    kept = []
    for clip in clips:
        try:
            training_rows.load_clip_audio(clip)
        except AudioError as e:
            logger.error("not exported: %s (%s)", clip.key, e)
            report.unreadable.append((clip.key, str(e)))
            continue
        kept.append(clip)
    return kept


def _check_output(dataset_dir: Path, out_dir: Path, text_column: str, overwrite: bool) -> None:
    if text_column == FILE_NAME_COLUMN or not text_column.strip():
        raise ExportError(f"--text-column {text_column!r}: give a column name other than {FILE_NAME_COLUMN}")
    resolved = out_dir.resolve()
    if resolved == dataset_dir.resolve() or dataset_dir.resolve().is_relative_to(resolved):
        raise ExportError(f"{out_dir}: the export would replace the dataset itself; choose another folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} is a file; give a folder for the export")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ExportError(f"{out_dir} exists and is not empty; pass --overwrite to replace it")
    try:  # the export is assembled beside out_dir: that folder must take new files
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        probe_writable(out_dir.parent)
    except OSError as e:
        raise ExportError(
            f"{out_dir}: cannot write into {out_dir.parent} ({e.strerror}); choose a writable place"
        ) from e

"""The training side of a prepared dataset: a strict ``transcript.csv`` reader and the clip checks.

A dataset folder holds 24 kHz mono WAV clips and ``transcript.csv`` (header ``filename,text``; filename is
the clip's stem, without ``.wav``). Rows that cannot be used (missing WAV, empty text, unreadable audio)
are skipped, listed and counted; problems with the file itself (no such file, wrong header, duplicate
filenames) raise, because they mean the wrong file was passed.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicelab import orpheus
from voicelab.audio import AudioError, read_audio

logger = logging.getLogger(__name__)

TRANSCRIPT_HEADER = ("filename", "text")
TRANSCRIPT_FILE = "transcript.csv"
CLIP_SUFFIX = ".wav"


class DatasetError(ValueError):
    """A dataset that cannot be used at all; the message names the file and what to do."""


class TranscriptError(DatasetError):
    """A transcript CSV with a wrong header, duplicate filenames, or that cannot be read."""


@dataclass(frozen=True)
class TranscriptRow:
    filename: str
    text: str
    line: int  # 1-based line in the CSV, for messages


@dataclass(frozen=True)
class Skipped:
    """A row left out of training and why."""

    filename: str
    reason: str


@dataclass(frozen=True)
class Clip:
    """A usable row: its WAV path and transcript text."""

    name: str
    path: Path
    text: str


def read_transcript(path: Path) -> tuple[list[TranscriptRow], list[Skipped]]:
    """Read ``filename,text`` rows strictly.

    Returns (rows, skipped). Rows with empty text or the wrong number of fields are skipped; a missing
    file, a wrong header or duplicate filenames raise ``TranscriptError``.
    """
    path = Path(path)
    if not path.is_file():
        raise TranscriptError(
            f"{path}: transcript not found (run `make transcribe` first, or pass --transcript PATH)"
        )
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            records = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise TranscriptError(f"{path}: cannot read the transcript CSV ({e})") from e
    if not records:
        raise TranscriptError(f"{path}: empty file, expected a '{','.join(TRANSCRIPT_HEADER)}' header")
    header = tuple(field.strip().lower() for field in records[0])
    if header != TRANSCRIPT_HEADER:
        raise TranscriptError(
            f"{path}: header is {','.join(records[0])!r}, expected {','.join(TRANSCRIPT_HEADER)!r} "
            "(one row per clip: the WAV name without .wav, then its text)"
        )
    rows: list[TranscriptRow] = []
    skipped: list[Skipped] = []
    for line, record in enumerate(records[1:], start=2):
        if not record or not any(field.strip() for field in record):
            continue  # blank line
        if len(record) != len(TRANSCRIPT_HEADER):
            skipped.append(Skipped(record[0].strip(), f"line {line}: {len(record)} fields, expected 2"))
            continue
        filename, text = _clip_stem(record[0].strip()), record[1].strip()
        if not text:
            skipped.append(Skipped(filename, f"line {line}: empty text"))
            continue
        rows.append(TranscriptRow(filename, text, line))
    counts = Counter(row.filename for row in rows)
    duplicates = sorted(name for name, n in counts.items() if n > 1)
    if duplicates:
        raise TranscriptError(
            f"{path}: duplicate filenames {duplicates[:10]}{' ...' if len(duplicates) > 10 else ''}; "
            "each clip must appear once"
        )
    return rows, skipped


def _clip_stem(filename: str) -> str:
    """``"a.wav"`` and ``"a"`` name the same clip."""
    return filename[: -len(CLIP_SUFFIX)] if filename.lower().endswith(CLIP_SUFFIX) else filename


def clip_path(dataset_dir: Path, filename: str) -> Path | None:
    """The WAV a row names, or None when the name would leave ``dataset_dir`` or is empty."""
    name = f"{_clip_stem(filename)}{CLIP_SUFFIX}"
    if not _clip_stem(filename) or Path(name).name != name or name.startswith("."):
        return None
    return dataset_dir / name


def resolve_clips(dataset_dir: Path, rows: list[TranscriptRow]) -> tuple[list[Clip], list[Skipped]]:
    """Rows -> clips whose WAV exists in ``dataset_dir``; the others are skipped with the reason."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise DatasetError(f"{dataset_dir}: dataset folder not found (run `make prepare-audio` first)")
    clips, skipped = [], []
    for row in rows:
        path = clip_path(dataset_dir, row.filename)
        if path is None:
            skipped.append(
                Skipped(row.filename, f"line {row.line}: not a clip name inside the dataset folder")
            )
        elif not path.is_file():
            skipped.append(Skipped(row.filename, f"line {row.line}: {path.name} not found in {dataset_dir}"))
        else:
            clips.append(Clip(row.filename, path, row.text))
    return clips, skipped


def load_clip_audio(clip: Clip) -> np.ndarray:
    """The clip as float32 ``(T,)`` at 24 kHz mono (converted when the file is not); raises ``AudioError``."""
    audio, _ = read_audio(clip.path, orpheus.SAMPLE_RATE)
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{clip.path}: audio holds NaN or infinite samples")
    return np.ascontiguousarray(audio, dtype=np.float32)

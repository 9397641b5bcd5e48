"""The training side of a prepared dataset: the transcript's rows checked for training, and the clips.

A dataset folder holds 24 kHz mono WAV clips and ``transcript.csv`` (header ``filename,text``; filename is
the clip's stem, without ``.wav``), read by ``voicelab.transcript.read_transcript``, the one reader of
that format. Rows that cannot be used (missing WAV, empty text, unreadable audio) are skipped, listed and
counted; problems with the file itself (no such file, not a ``filename,text`` CSV, duplicate filenames)
raise, because they mean the wrong file was passed.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicelab import orpheus, transcript
from voicelab.audio import AudioError, read_audio

logger = logging.getLogger(__name__)

TRANSCRIPT_HEADER = transcript.HEADER
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
    """The transcript's rows for training: (rows, skipped).

    Rows with empty text are skipped; a missing file, a malformed CSV (wrong header, a row without exactly
    two fields) or duplicate filenames raise ``TranscriptError``.
    """
    path = Path(path)
    if not path.is_file():
        raise TranscriptError(
            f"{path}: transcript not found (run `make transcribe` first, or pass --transcript PATH)"
        )
    try:
        records = transcript.read_transcript(path)
    except (OSError, transcript.TranscriptFormatError) as e:
        raise TranscriptError(str(e)) from e
    rows: list[TranscriptRow] = []
    skipped: list[Skipped] = []
    for raw_name, raw_text in records:
        filename, text = _clip_stem(raw_name), raw_text.strip()
        if not text:
            skipped.append(Skipped(filename, "empty text"))
            continue
        rows.append(TranscriptRow(filename, text))
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
            skipped.append(Skipped(row.filename, "not a clip name inside the dataset folder"))
        elif not path.is_file():
            skipped.append(Skipped(row.filename, f"{path.name} not found in {dataset_dir}"))
        else:
            clips.append(Clip(row.filename, path, row.text))
    return clips, skipped


def load_clip_audio(clip: Clip) -> np.ndarray:
    """The clip as float32 ``(T,)`` at 24 kHz mono (converted when the file is not); raises ``AudioError``."""
    audio, _ = read_audio(clip.path, orpheus.SAMPLE_RATE)
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{clip.path}: audio holds NaN or infinite samples")
    return np.ascontiguousarray(audio, dtype=np.float32)

"""The training side of a prepared dataset: the transcript's rows checked for training, and the clips.

The folder and its files are ``voicelab.dataset``'s; this module picks what training can use. Rows that
cannot be used (missing WAV, empty text, excluded by a person in ``excluded.csv``, unreadable audio) are
skipped, listed and counted. Every text goes through ``dataset.normalize_tags``, so training carries each
expressive tag exactly as the serving prompt will (``<laugh>``) and no unknown annotation; problems with the file itself (no such file, not a ``filename,text`` CSV,
duplicate filenames) raise, because they mean the wrong file was passed.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicelab import dataset, orpheus
from voicelab.audio import AudioError, read_audio

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TranscriptRow:
    filename: str
    text: str
    """The text as training uses it: tags normalised (``dataset.normalize_tags``)."""
    unknown_tags: tuple[str, ...] = ()
    """Annotations removed from the text because no Orpheus tag means them (``<giggle>``)."""


@dataclass(frozen=True)
class Skipped:
    """A row left out of training and why."""

    filename: str
    reason: str


@dataclass(frozen=True)
class Clip:
    """A usable row: its WAV path and transcript text (tags normalised)."""

    name: str
    path: Path
    text: str
    unknown_tags: tuple[str, ...] = ()


def read_training_rows(
    path: Path, exclusions: dict[str, str] | None = None
) -> tuple[list[TranscriptRow], list[Skipped]]:
    """The transcript's rows for training: (rows, skipped), texts through the tag normaliser.

    Rows with empty text (annotations alone count as empty), and clips listed in ``exclusions`` (key -> reason, from ``excluded.csv``), are
    skipped; a missing file, a malformed CSV or duplicate filenames raise ``dataset.DatasetError``.
    """
    path = Path(path)
    if not path.is_file():
        raise dataset.DatasetError(
            f"{path}: transcript not found (run `make transcribe` first, or pass --transcript PATH)"
        )
    try:
        records = dataset.read_transcript(path)
    except OSError as e:
        raise dataset.DatasetError(f"{path}: cannot read it ({e})") from e
    exclusions = exclusions or {}
    rows: list[TranscriptRow] = []
    skipped: list[Skipped] = []
    for filename, raw_text in records:
        tagged = dataset.normalize_tags(raw_text.strip())
        text = tagged.text.strip()
        if filename in exclusions:
            skipped.append(Skipped(filename, f"excluded ({dataset.EXCLUDED_FILE}): {exclusions[filename]}"))
        elif not text:
            why = f"no spoken text (only {' '.join(tagged.unknown)})" if tagged.unknown else "empty text"
            skipped.append(Skipped(filename, why))
        else:
            rows.append(TranscriptRow(filename, text, tagged.unknown))
    counts = Counter(row.filename for row in rows)
    duplicates = sorted(name for name, n in counts.items() if n > 1)
    if duplicates:
        raise dataset.DatasetError(
            f"{path}: duplicate filenames {duplicates[:10]}{' ...' if len(duplicates) > 10 else ''}; "
            "each clip must appear once"
        )
    return rows, skipped


def resolve_clips(dataset_dir: Path, rows: list[TranscriptRow]) -> tuple[list[Clip], list[Skipped]]:
    """Rows -> clips whose WAV exists in ``dataset_dir``; the others are skipped with the reason."""
    dataset_dir = dataset.require_dataset_dir(dataset_dir)
    clips, skipped = [], []
    for row in rows:
        path = dataset.clip_path(dataset_dir, row.filename)
        if path is None:
            skipped.append(Skipped(row.filename, "not a clip name inside the dataset folder"))
        elif not path.is_file():
            skipped.append(Skipped(row.filename, f"{path.name} not found in {dataset_dir}"))
        else:
            clips.append(Clip(row.filename, path, row.text, row.unknown_tags))
    return clips, skipped


def load_clip_audio(clip: Clip) -> np.ndarray:
    """The clip as float32 ``(T,)`` at 24 kHz mono (converted when the file is not); raises ``AudioError``."""
    audio, _ = read_audio(clip.path, orpheus.SAMPLE_RATE)
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{clip.path}: audio holds NaN or infinite samples")
    return np.ascontiguousarray(audio, dtype=np.float32)

"""The training side of a prepared dataset: the transcript's rows checked for training, and the clips.

The folder and its files are ``voicelab.dataset.PreparedDataset``'s; this module picks what training
can use. Rows that
cannot be used (missing WAV, empty text, excluded by a person in ``excluded.csv``, unreadable audio) are
skipped, listed and counted. Every text goes through ``dataset.normalize_tags``, so training carries each
expressive tag exactly as the serving prompt will (``<laugh>``) and no unknown annotation; problems with
the file itself (no such file, not a ``filename,text`` CSV, duplicate keys) raise, because they mean the
wrong file was passed.
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
    key: str
    text: str
    """The text as training uses it: tags normalised (``dataset.normalize_tags``)."""
    unknown_tags: tuple[str, ...] = ()
    """Annotations removed from the text because no Orpheus tag means them (``<giggle>``)."""


@dataclass(frozen=True)
class Skipped:
    """A row left out of training and why."""

    key: str
    reason: str
    excluded: bool = False
    """Left out on purpose (``excluded.csv``), not for a problem: counted once, not warned about one by one."""


@dataclass(frozen=True)
class Clip:
    """A usable row: its key, WAV path and transcript text (tags normalised)."""

    key: str
    path: Path
    text: str
    unknown_tags: tuple[str, ...] = ()


def read_training_rows(
    transcript: dataset.PreparedDataset | Path | str, exclusions: dict[str, str] | None = None
) -> tuple[list[TranscriptRow], list[Skipped]]:
    """The rows of a dataset's transcript (or of a transcript file) for training: (rows, skipped), texts
    through the tag normaliser.

    Rows with empty text (annotations alone count as empty), and clips listed in ``exclusions`` (key ->
    reason, from ``excluded.csv``), are skipped; a missing file, a malformed CSV or duplicate keys raise
    ``dataset.DatasetError``.
    """
    if isinstance(transcript, dataset.PreparedDataset):
        ds = transcript
    else:  # a transcript file
        ds = dataset.PreparedDataset(Path(transcript).parent, transcript)
    path = ds.transcript_path
    if not path.is_file():
        raise dataset.DatasetError(
            f"{path}: transcript not found (run `make transcribe` first, or pass --transcript PATH)"
        )
    try:
        records = ds.read_transcript()
    except OSError as e:
        raise dataset.DatasetError(f"{path}: cannot read it ({e})") from e
    exclusions = exclusions or {}
    rows: list[TranscriptRow] = []
    skipped: list[Skipped] = []
    for key, raw_text in records:
        tagged = dataset.normalize_tags(raw_text.strip())
        text = tagged.text.strip()
        if key in exclusions:
            reason = f"excluded ({ds.excluded_path.name}): {exclusions[key]}"
            skipped.append(Skipped(key, reason, excluded=True))
        elif not text:
            why = f"no spoken text (only {' '.join(tagged.unknown)})" if tagged.unknown else "empty text"
            skipped.append(Skipped(key, why))
        else:
            rows.append(TranscriptRow(key, text, tagged.unknown))
    counts = Counter(row.key for row in rows)
    duplicates = sorted(name for name, n in counts.items() if n > 1)
    if duplicates:
        raise dataset.DatasetError(
            f"{path}: duplicate filenames {duplicates[:10]}{' ...' if len(duplicates) > 10 else ''}; "
            "each clip must appear once"
        )
    return rows, skipped


def resolve_clips(
    folder: dataset.PreparedDataset | Path | str, rows: list[TranscriptRow]
) -> tuple[list[Clip], list[Skipped]]:
    """Rows -> clips whose WAV exists in the dataset's folder; the others are skipped with the reason."""
    ds = folder if isinstance(folder, dataset.PreparedDataset) else dataset.PreparedDataset(folder)
    ds.require()
    clips, skipped = [], []
    for row in rows:
        path = ds.clip_path(row.key)
        if path is None:
            skipped.append(Skipped(row.key, "not a clip name inside the dataset folder"))
        elif not path.is_file():
            skipped.append(Skipped(row.key, f"{path.name} not found in {ds.dir}"))
        else:
            clips.append(Clip(row.key, path, row.text, row.unknown_tags))
    return clips, skipped


def load_clip_audio(clip: Clip) -> np.ndarray:
    """The clip as float32 ``(T,)`` at 24 kHz mono (converted when the file is not); raises ``AudioError``."""
    audio, _ = read_audio(clip.path, orpheus.SAMPLE_RATE)
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{clip.path}: audio holds NaN or infinite samples")
    return np.ascontiguousarray(audio, dtype=np.float32)

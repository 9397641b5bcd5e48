"""Resuming a transcription: what an earlier run left, and which clips are still to do.

The transcript's rows and the signals file's records are kept (a clip Whisper saw is never sent again,
an empty one included); a clip whose audio changed under the same key is done again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from voicelab.dataset import ClipSignals, PreparedDataset, clip_key

logger = logging.getLogger(__name__)


def clip_duration_s(path: Path) -> float | None:
    """Seconds of audio from the file header (no decode), ``None`` if unreadable."""
    import soundfile as sf

    try:
        return float(sf.info(path).duration)
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None


CHANGED_CLIP_TOLERANCE_S = 0.01
"""A clip whose length differs from the one Whisper saw by more than this (one 10 ms frame; resampling to
16 kHz moves it by under a sample) is a new clip under an old name, e.g. after prepare-audio --overwrite."""
NAMES_SHOWN = 5  # how many clip names a warning lists before "..."


@dataclass
class ResumePlan:
    rows: dict[str, str]  # kept transcript rows, key -> text
    signals: dict[str, ClipSignals]  # kept Whisper records
    todo: list[Path]  # clips still to transcribe, sorted
    missing: list[str] = field(default_factory=list)
    """Kept rows whose clip is not in the folder (deleted or renamed): training skips them."""
    changed: list[str] = field(default_factory=list)
    """Clips whose audio changed since they were transcribed: their old rows are dropped and redone."""
    fresh: bool = False
    """--overwrite: every row is dropped at the start and every clip transcribed again."""


def list_some(names: Sequence[str]) -> str:
    """The first ``NAMES_SHOWN`` names, comma-separated, and how many there are in all when more."""
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f", ... ({len(names)} in all)" if len(names) > NAMES_SHOWN else "")


def plan_resume(clips: Sequence[Path], output: PreparedDataset | Path, *, overwrite: bool) -> ResumePlan:
    """What an earlier run left: its rows are kept and their clips skipped, unless ``overwrite``.

    A clip whose length no longer matches what Whisper saw was replaced (same name, new audio): it is
    transcribed again and its old row dropped, with a warning. Rows naming clips that are gone are kept
    (a hand-corrected row is never deleted behind the user's back) and reported.

    ``output``: the dataset (or its transcript file) the run writes. Raises ``TranscriptFormatError``
    when the transcript exists but is not a ``filename,text`` CSV, so a wrong file is never overwritten
    by accident.
    """
    if overwrite:
        return ResumePlan({}, {}, list(clips), fresh=True)
    ds = PreparedDataset.of_transcript(output)
    rows = dict(ds.read_transcript_for_resume())
    signals = ds.read_signals()
    changed = _changed_clips(clips, signals)
    for key in changed:
        del signals[key]
        rows.pop(key, None)
    output = ds.transcript_path
    if changed:
        logger.warning(
            "%d clip(s) changed since %s was written (new audio under the same name): transcribing them "
            "again, their old rows are replaced: %s",
            len(changed),
            output,
            list_some(changed),
        )
    missing = sorted(set(rows) - {clip_key(c) for c in clips})
    if missing:
        logger.warning(
            "%s: %d row(s) name clips that are not in %s (kept; training skips them; delete the rows "
            "or restore the clips): %s",
            output,
            len(missing),
            clips[0].parent if clips else output.parent,
            list_some(missing),
        )
    done = set(rows) | set(signals)
    return ResumePlan(rows, signals, [c for c in clips if clip_key(c) not in done], missing, changed)


def _changed_clips(clips: Sequence[Path], signals: dict[str, ClipSignals]) -> list[str]:
    """Keys of the clips whose length no longer matches what Whisper saw (new audio, same key)."""
    changed = []
    for clip in clips:
        rec = signals.get(clip_key(clip))
        if rec is None or rec.duration_s is None:
            continue
        now = clip_duration_s(clip)
        if now is not None and abs(now - rec.duration_s) > CHANGED_CLIP_TOLERANCE_S:
            changed.append(clip_key(clip))
    return changed

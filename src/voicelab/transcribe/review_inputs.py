"""The end of a transcription: what the review looks at, and the files written from it.

The review (``voicelab.review``) judges every transcript row, plus clips whose transcript came out empty;
its list goes to the review file, and with the audio measures the flagged clips may go to excluded.csv
and the dataset gets its report picture (``voicelab.dataset_report``). All through ``PreparedDataset``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from voicelab.dataset import ClipSignals, PreparedDataset, clip_key
from voicelab.review import (
    DEFAULT_SPEAKER_THRESHOLD,
    KEPT_VOICE,
    REFERENCE_CLIPS,
    ReviewItem,
    SpeakerContext,
    review,
    review_rows,
    speaker_context,
)
from voicelab.transcribe.backends import WHISPER_SAMPLE_RATE
from voicelab.transcribe.resume import clip_duration_s
from voicelab.transcribe.signals import QualityOptions, quality_device

logger = logging.getLogger(__name__)

OTHER_SPEAKER_REASON = "other speaker"
"""How the review's other-speaker reasons begin (the other quality reasons are noise and distortion)."""


@dataclass
class ReviewOutcome:
    """What the end of a run wrote: how many clips the review lists and why, the files written."""

    flagged: int = 0
    other_speaker: int = 0
    noisy: int = 0
    excluded_new: int = 0
    kept_restored: int = 0
    """Flagged clips left in training because a person restored them earlier."""
    excluded_path: Path | None = None
    report_path: Path | None = None


def review_inputs(
    rows: dict[str, str], signals: dict[str, ClipSignals], clips: Sequence[Path]
) -> list[ClipSignals]:
    """What the review looks at: every transcript row, plus clips present whose transcript came out empty.

    Whisper's numbers are used only while the row still has Whisper's text; a row the user corrected is
    judged on its text, duration and audio measures.
    """
    by_key = {clip_key(c): c for c in clips}
    out = []
    for key, text in rows.items():
        rec = signals.get(key)
        if rec is not None and rec.text == text:
            out.append(rec)
            continue
        if rec is not None and rec.duration_s is not None:  # the audio measures still hold; Whisper's do not
            out.append(replace(rec, text=text, avg_logprob=None, no_speech_prob=None, compression_ratio=None))
            continue
        duration = clip_duration_s(by_key[key]) if key in by_key else None
        out.append(ClipSignals(key, text, duration))
    out.extend(rec for key, rec in signals.items() if not rec.text and key in by_key and key not in rows)
    return out


def finish_review(
    ds: PreparedDataset,
    clips: Sequence[Path],
    rows: dict[str, str],
    signals: dict[str, ClipSignals],
    read: Callable[[Path], np.ndarray],
    quality: QualityOptions | None,
) -> ReviewOutcome:
    """The review file, and with ``quality`` excluded.csv and the dataset report."""
    inputs = review_inputs(rows, signals, clips)
    reference, reference_name = _reference(ds, read, quality)
    threshold = quality.speaker_threshold if quality is not None else DEFAULT_SPEAKER_THRESHOLD
    speakers = speaker_context(
        inputs, reference=reference, threshold=threshold, reference_name=reference_name
    )
    items = review(inputs, speakers)
    ds.write_review(review_rows(items))
    outcome = ReviewOutcome(
        flagged=len(items),
        other_speaker=sum(any(r.startswith(OTHER_SPEAKER_REASON) for r in i.quality_reasons) for i in items),
        noisy=sum(any(not r.startswith(OTHER_SPEAKER_REASON) for r in i.quality_reasons) for i in items),
    )
    if quality is not None:
        _finish_quality(ds, items, inputs, speakers, quality, outcome)
    return outcome


def _reference(ds: PreparedDataset, read: Callable[[Path], np.ndarray], quality: QualityOptions | None):
    """What speaker similarity is measured to, and its name in the review: the user's reference clips;
    else the voice prepare-audio kept (``--reference`` or ``--speaker auto``, its saved voice print); else
    ``None``, the dominant voice."""
    if quality is None:
        return None, REFERENCE_CLIPS
    if quality.reference:
        from voicelab.quality import speaker_embeddings

        prints = speaker_embeddings(
            [read(p) for p in quality.reference], WHISPER_SAMPLE_RATE, device=quality_device(quality.device)
        )
        return prints, REFERENCE_CLIPS
    kept = ds.read_voice_print()
    if kept is None:
        return None, REFERENCE_CLIPS
    logger.info("speaker similarity measured to the voice prepare-audio kept (%s)", ds.voice_print_path)
    return np.asarray(kept[0], dtype=np.float32), KEPT_VOICE


def _finish_quality(
    ds: PreparedDataset,
    items: Sequence[ReviewItem],
    inputs: Sequence[ClipSignals],
    speakers: SpeakerContext,
    quality: QualityOptions,
    outcome: ReviewOutcome,
) -> None:
    """excluded.csv (new flags added; a person's entries kept) and the dataset report."""
    flagged = {i.signals.key: "; ".join(i.quality_reasons) for i in items if i.quality_reasons}
    added: dict[str, str] = {}

    def add_flagged(excluded: dict[str, str]) -> dict[str, str]:  # merged as the file is now; a person's stay
        if quality.exclude_flagged:
            restored = ds.restored_clips()  # a person's restore outlives the flag (read under the same lock)
            outcome.kept_restored = sum(k in restored for k in flagged)
            added.update({k: v for k, v in flagged.items() if k not in excluded and k not in restored})
        return {**excluded, **added}

    excluded = ds.update_exclusions(add_flagged)
    if added:
        outcome.excluded_path = ds.excluded_path
    outcome.excluded_new = len(added)
    if quality.report:
        from voicelab.dataset_report import write_dataset_report

        try:
            outcome.report_path = write_dataset_report(ds, inputs, speakers, excluded=excluded)
        except (OSError, ValueError) as e:  # the report is a view; the transcript and review stand
            logger.warning("%s not written: %s", ds.report_path, e)

"""Prepared dataset folders for tests: silent clips of given lengths, their transcript and review."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLIP_RATE = 24000  # prepare-audio writes 24 kHz clips


def write_reviewed_dataset(
    folder: Path | str, texts: dict[str, str], seconds: list[float] | tuple[float, ...], rate: int = CLIP_RATE
) -> Path:
    """``folder`` as transcribe leaves it: ``{key}.wav`` per text (silent, ``seconds`` long, 16-bit),
    ``transcript.csv``, ``transcript_signals.jsonl`` (Whisper heard exactly ``texts``, confidently) and
    ``transcript_review.csv`` judged by the real review.
    """
    from voicelab.dataset import ClipSignals, PreparedDataset
    from voicelab.review import review, review_rows

    ds = PreparedDataset(folder)
    ds.dir.mkdir(parents=True)
    signals = []
    for (key, text), length in zip(texts.items(), seconds, strict=True):
        ds.write_clip(key, np.zeros(int(rate * length), np.float32), rate)
        signals.append(
            ClipSignals(key, text, length, avg_logprob=-0.2, no_speech_prob=0.01, compression_ratio=1.2)
        )
    ds.write_transcript(texts.items())
    ds.write_signals({s.key: s for s in signals})
    ds.write_review(review_rows(review(signals)))
    return ds.dir

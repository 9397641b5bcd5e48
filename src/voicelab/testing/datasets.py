"""Prepared dataset folders for tests: silent clips of given lengths, their transcript and review."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLIP_RATE = 24000  # prepare-audio writes 24 kHz clips


def write_reviewed_dataset(
    folder: Path | str,
    texts: dict[str, str],
    seconds: list[float] | tuple[float, ...],
    rate: int = CLIP_RATE,
    *,
    with_report: bool = False,
) -> Path:
    """``folder`` as transcribe leaves it: ``{key}.wav`` per text (silent, ``seconds`` long, 16-bit),
    ``transcript.csv``, ``transcript_signals.jsonl`` (Whisper heard exactly ``texts``, confidently) and
    ``transcript_review.csv`` judged by the real review. ``with_report``: also the audio measures (one
    speaker, clean) and the dataset report drawn from them, as transcribe's quality step leaves them.
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
    if with_report:
        signals = _with_measures(signals)
    ds.write_signals({s.key: s for s in signals})
    ds.write_review(review_rows(review(signals)))
    if with_report:
        from voicelab.dataset_report import write_dataset_report
        from voicelab.review import speaker_context

        write_dataset_report(ds, signals, speaker_context(signals))
    return ds.dir


EMBEDDING_DIM = 256  # Resemblyzer's


def _with_measures(signals: list) -> list:
    """The audio measures transcribe adds: one speaker's embeddings (a shared direction plus a little
    noise each) and clean DNSMOS scores, drawn from a fixed seed."""
    from dataclasses import replace

    rng = np.random.default_rng(0)
    voice = rng.normal(size=EMBEDDING_DIM)
    out = []
    for s in signals:
        emb = voice + 0.6 * rng.normal(size=EMBEDDING_DIM)  # similarities spread around 0.85
        emb = (emb / np.linalg.norm(emb)).tolist()
        out.append(
            replace(s, speech_s=s.duration_s, dnsmos_sig=3.5, dnsmos_bak=4.0, dnsmos_ovrl=3.2, embedding=emb)
        )
    return out

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
    """``folder`` as transcribe leaves it: ``{name}.wav`` per text (silent, ``seconds`` long, 16-bit),
    ``transcript.csv``, ``transcript_signals.jsonl`` (Whisper heard exactly ``texts``, confidently) and
    ``transcript_review.csv`` judged by the real review. ``with_report``: also the audio measures (one
    speaker, clean) and the dataset report drawn from them, as transcribe's quality step leaves them.
    """
    import soundfile as sf

    from voicelab.dataset import REVIEW_FILE, SIGNALS_FILE, TRANSCRIPT_FILE, write_transcript
    from voicelab.review import ClipSignals, review, write_review
    from voicelab.transcribe import write_signals

    folder = Path(folder)
    folder.mkdir(parents=True)
    signals = []
    for (name, text), length in zip(texts.items(), seconds, strict=True):
        sf.write(folder / f"{name}.wav", np.zeros(int(rate * length), np.float32), rate, subtype="PCM_16")
        signals.append(
            ClipSignals(name, text, length, avg_logprob=-0.2, no_speech_prob=0.01, compression_ratio=1.2)
        )
    write_transcript(folder / TRANSCRIPT_FILE, texts.items())
    if with_report:
        signals = _with_measures(signals)
    write_signals(folder / SIGNALS_FILE, {s.filename: s for s in signals})
    write_review(folder / REVIEW_FILE, review(signals))
    if with_report:
        from voicelab.dataset_report import write_dataset_report
        from voicelab.review import speaker_context

        write_dataset_report(folder / "dataset_report.png", signals, speaker_context(signals))
    return folder


EMBEDDING_DIM = 256  # Resemblyzer's


def _with_measures(signals: list) -> list:
    """The audio measures transcribe adds: one speaker's embeddings (a shared direction plus a little
    noise each) and clean DNSMOS scores, drawn from a fixed seed."""
    from dataclasses import replace

    rng = np.random.default_rng(0)
    voice = rng.normal(size=EMBEDDING_DIM)
    out = []
    for s in signals:
        emb = voice + 0.1 * rng.normal(size=EMBEDDING_DIM)
        emb = (emb / np.linalg.norm(emb)).tolist()
        out.append(
            replace(s, speech_s=s.duration_s, dnsmos_sig=3.5, dnsmos_bak=4.0, dnsmos_ovrl=3.2, embedding=emb)
        )
    return out

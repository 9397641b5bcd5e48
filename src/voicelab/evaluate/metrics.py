"""The measures of ``make evaluate``, on generated samples and on the dataset's clips.

Pure functions first (text normalisation and error rates, SNAC code overlap, silences), then the
``measure_*`` steps that fill each ``Sample``'s metrics with them (speaker similarity, intelligibility
through Whisper, delivery, overfitting) and the training clips' codes they compare against.
"""

from __future__ import annotations

import logging
import math
import string
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from voicelab import orpheus
from voicelab.evaluate.plans import VoiceUnderTest
from voicelab.evaluate.recording import Sample
from voicelab.progress import progress_bar

logger = logging.getLogger(__name__)

OVERLAP_NGRAM_FRAMES = 2
"""Code overlap counts runs of 2 whole SNAC frames (14 codes, ~0.17 s): one shared frame happens by chance
in silence, a shared pair of frames in different speech almost never does."""
SILENCE_FRAME_S = 0.020
SILENCE_RANGE_DB = 35.0
"""A silence is a run of 20 ms frames more than 35 dB below the sample's loud level (its 95th percentile
frame): the pause depth prepare-audio cuts at. Leading and trailing silence is not counted."""
SILENCE_LOUD_PERCENTILE = 95
WHISPER_SAMPLE_RATE = 16_000
_PUNCTUATION = str.maketrans({c: " " for c in string.punctuation + "“”‘’…—–"})


def normalize_text(text: str) -> str:
    """Lower case, punctuation to spaces, single spaces: what WER should compare (not commas)."""
    return " ".join(text.lower().translate(_PUNCTUATION).split())


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[float, float]:
    """Corpus WER and CER (jiwer) of ``hypotheses`` against ``references``, both normalised first."""
    import jiwer

    refs = [normalize_text(r) for r in references]
    hyps = [normalize_text(h) for h in hypotheses]
    if not refs or not all(refs):
        raise ValueError("WER needs non-empty reference texts")
    return float(jiwer.wer(refs, hyps)), float(jiwer.cer(refs, hyps))


def _frame_ngrams(frames: np.ndarray, n: int) -> list[tuple[int, ...]]:
    flat = [tuple(int(c) for c in row) for row in np.asarray(frames).reshape(-1, orpheus.CODES_PER_FRAME)]
    return [tuple(x for frame in flat[i : i + n] for x in frame) for i in range(len(flat) - n + 1)]


def _share_in(grams: list, other: list) -> float:
    if not grams:
        return 0.0
    present = set(other)
    return sum(g in present for g in grams) / len(grams)


def code_overlap(generated: np.ndarray, clip: np.ndarray, n: int = OVERLAP_NGRAM_FRAMES) -> float:
    """How much of one is a copy of the other (0 to 1): the larger of the share of ``generated``'s runs of
    ``n`` SNAC frames found in ``clip`` and the share of ``clip``'s found in ``generated`` (a replayed
    clip followed by more audio still counts)."""
    gen, ref = _frame_ngrams(generated, n), _frame_ngrams(clip, n)
    return max(_share_in(gen, ref), _share_in(ref, gen))


def nearest_clip(generated: np.ndarray, clips: dict[str, np.ndarray]) -> tuple[str | None, float]:
    """The key of the training clip sharing most of ``generated``'s codes, and that share."""
    best, score = None, 0.0
    for key, frames in clips.items():
        overlap = code_overlap(generated, frames)
        if best is None or overlap > score:
            best, score = key, overlap
    return best, score


def longest_silence(audio: np.ndarray, sample_rate: int = orpheus.SAMPLE_RATE) -> float:
    """Seconds of the longest silence between the first and last sound of ``audio``."""
    frame = max(1, round(SILENCE_FRAME_S * sample_rate))
    n = len(audio) // frame
    if n == 0:
        return 0.0
    power = np.mean(np.square(audio[: n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    db = 10 * np.log10(np.maximum(power, 1e-20))
    loud = db >= np.percentile(db, SILENCE_LOUD_PERCENTILE) - SILENCE_RANGE_DB
    if not loud.any():
        return 0.0
    idx = np.flatnonzero(loud)
    gaps = np.diff(idx) - 1  # quiet frames between consecutive loud ones
    return float(gaps.max(initial=0) * frame / sample_rate)


def mean_of(values: Iterable[float | None]) -> float | None:
    """The mean of the finite values (None when there is none)."""
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def median_of(values: Iterable[float | None]) -> float | None:
    """The median of the finite values (None when there is none)."""
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(kept)) if kept else None


def finite_or_none(value: Any) -> Any:
    """JSON-safe numbers: NaN and infinities become None (recursively through dicts and lists)."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def measure_speaker(samples: Sequence[Sample], reference_audio: Sequence[np.ndarray]) -> dict[str, Any]:
    """Each sample's similarity to the reference clips' voice (their dominant speaker's centroid)."""
    from voicelab import quality

    ref_emb = quality.speaker_embeddings(list(reference_audio), orpheus.SAMPLE_RATE)
    centroid = quality.dominant_speaker(ref_emb)
    voiced = [s for s in samples if len(s.audio)]
    if voiced:
        emb = quality.speaker_embeddings([s.audio for s in voiced], orpheus.SAMPLE_RATE)
        for sample, sim in zip(voiced, quality.cosine_similarity(emb, centroid), strict=True):
            sample.metrics["speaker_similarity"] = float(sim)
    return {"reference_self_similarity": mean_of(quality.cosine_similarity(ref_emb, centroid).tolist())}


def measure_intelligibility(samples: Sequence[Sample], transcriber, *, progress: bool = True) -> None:
    """Whisper's transcript of each sample, and its WER/CER against the text it was asked to say."""
    from voicelab.audio import resample

    for sample in progress_bar(
        samples, desc="transcribing", unit="sample", disable=None if progress else True
    ):
        heard = ""
        if len(sample.audio):
            audio16 = resample(sample.audio, orpheus.SAMPLE_RATE, WHISPER_SAMPLE_RATE).astype(np.float32)
            heard = transcriber.transcribe_batch([audio16])[0].text
        sample.metrics["transcript"] = heard.strip()
        if normalize_text(sample.text):  # a text of punctuation alone has no words to miss
            sample.metrics["wer"], sample.metrics["cer"] = error_rates([sample.text], [heard])


def dnsmos_or_none(audio: np.ndarray) -> dict[str, float] | None:
    """DNSMOS P.835 of one clip as a dict, or None for a clip without sound."""
    from voicelab import quality

    if not len(audio) or not np.any(audio):
        return None
    return asdict(quality.dnsmos(audio, orpheus.SAMPLE_RATE))


def dataset_speech_rate(texts: Sequence[str], audios: Sequence[np.ndarray]) -> float | None:
    """Median words per second of speech over the reference clips."""
    from voicelab import quality

    rates = [
        quality.speech_rate(t, quality.speech_seconds(a, orpheus.SAMPLE_RATE))
        for t, a in zip(texts, audios, strict=True)
    ]
    return median_of(rates)


def measure_delivery(
    samples: Sequence[Sample], reference_rate: float | None, *, progress: bool = True
) -> None:
    """Per sample: DNSMOS, speech rate, length against what the text needs, longest inner silence."""
    from voicelab import quality

    for sample in progress_bar(samples, desc="scoring", unit="sample", disable=None if progress else True):
        speech = quality.speech_seconds(sample.audio, orpheus.SAMPLE_RATE) if len(sample.audio) else 0.0
        words = len(sample.text.split())
        expected = words / reference_rate if reference_rate else None
        sample.metrics.update(
            seconds=sample.seconds,
            speech_seconds=speech,
            speech_rate=quality.speech_rate(sample.text, speech),
            duration_ratio=sample.seconds / expected if expected else None,
            longest_silence_s=longest_silence(sample.audio),
            dnsmos=dnsmos_or_none(sample.audio),
        )


def measure_overfitting(samples: Sequence[Sample], training_codes: dict[str, np.ndarray]) -> None:
    """For each novel sentence, the training clip whose codes it shares most of."""
    for sample in samples:
        if sample.kind != "novel":
            continue
        key, overlap = nearest_clip(sample.frames, training_codes) if training_codes else (None, None)
        sample.metrics.update(nearest_training_clip=key, code_overlap=overlap)


def training_codes(vut: VoiceUnderTest, snac_model: str, device: str, *, progress: bool = True) -> dict:
    """SNAC frames of every training clip, from the dataset's code cache when train-lora filled it (the
    codec is loaded only for clips the cache lacks)."""
    from voicelab import models
    from voicelab.training import dataset as ds
    from voicelab.training import snac_codec

    def load():
        return models.load_snac(snac_model, device)

    snac, fingerprint = None, snac_codec.checkpoint_fingerprint(snac_model)
    if fingerprint is None:  # a hub id not downloaded yet: loading fetches its files
        snac = load()
        fingerprint = snac_codec.checkpoint_fingerprint(snac_model) or snac_codec.weights_fingerprint(snac)
    frames, _ = snac_codec.encode_clips(
        [(c.key, lambda c=c: ds.load_clip_audio(c)) for c in vut.training_clips],
        snac,
        fingerprint,
        cache=snac_codec.CodeCache(vut.dataset.snac_cache_dir),
        load_model=load,
        device=device,
        batch_size=snac_codec.auto_batch_size(device),
        on_error=lambda key, e: logger.warning("training clip %s unreadable: %s", key, e),
        progress=progress,
    )
    return frames

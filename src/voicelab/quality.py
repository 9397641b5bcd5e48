"""Per-clip quality measures: who is speaking, how clean the audio is, how fast the speech is.

- ``speaker_embeddings``: a 256-d voice print per clip from Resemblyzer's GE2E speaker encoder (its
  weights ship inside the ``resemblyzer`` wheel, so nothing is downloaded).
- ``dominant_speaker`` / ``cosine_similarity``: the dataset's main voice (a centroid that ignores a
  minority of other speakers) and each clip's similarity to it.
- ``dnsmos``: Microsoft's DNSMOS P.835 scores (SIG speech quality, BAK background, OVRL overall, 1-5),
  run from the ONNX models that ship inside the ``speechmos`` wheel.
- ``speech_rate`` / ``speech_seconds``: words per second of actual speech (pauses excluded).

Both models load through ``voicelab.models.quality`` (once per process). Heavy imports (torch, librosa,
onnxruntime) happen inside functions.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from voicelab.models.quality import EMBEDDING_DIM, MEL_CHANNELS, dnsmos_model, speaker_encoder

SAMPLE_RATE = 16_000
"""Both models work on 16 kHz mono; other rates are resampled first."""

# Resemblyzer's GE2E encoder (its hparams): mel channels (MEL_CHANNELS) from 25 ms windows every 10 ms;
# an utterance is scored as overlapping 1.6 s partials (the model: voicelab.models.quality).
MEL_WINDOW_S = 0.025
MEL_HOP_S = 0.010
PARTIAL_FRAMES = 160  # 1.6 s of 10 ms frames
PARTIALS_PER_SECOND = 1.3  # Resemblyzer's default overlap: a new partial every ~0.77 s
MIN_LAST_PARTIAL_COVERAGE = 0.75  # a zero-padded last partial counts only if 75% of it is audio
LEVEL_TARGET_DBFS = -30.0  # Resemblyzer normalises quiet input up to this level before the mel
PARTIALS_PER_FORWARD = 256  # partials per LSTM batch: bounds memory on long datasets (~25 MB of mels)

# DNSMOS P.835 (the "sig_bak_ovr" model): scores 9.01 s windows, hopped by 1 s; a shorter clip is
# repeated up to one window (the reference implementation's rule).
DNSMOS_WINDOW_S = 9.01
DNSMOS_HOP_S = 1.0

# Robust centroid: the clips whose median similarity to all others is in the top half seed the
# centroid. A clip of the main voice is close to most clips whenever that voice holds over half of them;
# a clip of another voice is not, so it never seeds.
CENTROID_SEED_QUANTILE = 0.5
CENTROID_REFINE_STEPS = 2

# Speech frames for speech_seconds: 20 ms frames within 35 dB of the clip's loud level (its 95th
# percentile frame), the same pause depth prepare-audio cuts at relative to speech.
SPEECH_FRAME_S = 0.020
SPEECH_LOUD_PERCENTILE = 95
SPEECH_RANGE_DB = 35.0


@dataclass(frozen=True)
class DnsmosScore:
    """DNSMOS P.835 mean opinion scores, 1 (bad) to 5 (excellent)."""

    sig: float  # the speech itself (distortion)
    bak: float  # background: noise, music, hum (higher = cleaner)
    ovrl: float  # overall


def _to_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    from voicelab.audio import resample, to_mono

    audio = to_mono(audio)
    return resample(audio, sample_rate, SAMPLE_RATE) if sample_rate != SAMPLE_RATE else audio


# ------------------------------------------------------------------------------------ speaker embedding


def _partial_mels(audio: np.ndarray) -> np.ndarray:
    """``(P, PARTIAL_FRAMES, MEL_CHANNELS)`` mel partials covering a 16 kHz clip (Resemblyzer's slicing)."""
    import librosa

    hop = round(SAMPLE_RATE * MEL_HOP_S)
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    if rms > 0:
        gain_db = LEVEL_TARGET_DBFS - 20 * np.log10(rms)
        if gain_db > 0:  # raise quiet clips only, as Resemblyzer does
            audio = audio * np.float32(10 ** (gain_db / 20))
    n_frames = int(np.ceil((len(audio) + 1) / hop))
    step = round(SAMPLE_RATE / PARTIALS_PER_SECOND / hop)
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    coverage = (len(audio) - starts[-1] * hop) / (PARTIAL_FRAMES * hop)
    if coverage < MIN_LAST_PARTIAL_COVERAGE and len(starts) > 1:
        starts.pop()
    needed = (starts[-1] + PARTIAL_FRAMES) * hop
    audio = np.pad(audio, (0, max(needed - len(audio), 0)))
    mel = librosa.feature.melspectrogram(
        y=audio.astype(np.float32, copy=False),
        sr=SAMPLE_RATE,
        n_fft=round(SAMPLE_RATE * MEL_WINDOW_S),
        hop_length=hop,
        n_mels=MEL_CHANNELS,
    ).T.astype(np.float32)
    return np.stack([mel[s : s + PARTIAL_FRAMES] for s in starts])


def speaker_embeddings(audios: Sequence[np.ndarray], sample_rate: int, *, device: str = "cpu") -> np.ndarray:
    """``(N, 256)`` float32 voice prints, L2-normalised (a silent clip gives a zero row).

    Each clip is the normalised mean of its 1.6 s partials' embeddings; all partials of all clips go
    through the encoder in shared batches.
    """
    import torch

    if not audios:
        return np.zeros((0, EMBEDDING_DIM), np.float32)
    model = speaker_encoder(device)
    partials = [_partial_mels(_to_16k(a, sample_rate)) for a in audios]
    stacked = np.concatenate(partials)
    outs = []
    with torch.inference_mode():
        for lo in range(0, len(stacked), PARTIALS_PER_FORWARD):
            batch = torch.from_numpy(stacked[lo : lo + PARTIALS_PER_FORWARD]).to(device)
            outs.append(model(batch).float().cpu().numpy())
    flat = np.concatenate(outs)
    bounds = np.cumsum([0] + [len(p) for p in partials])
    means = np.stack([flat[a:b].mean(axis=0) for a, b in itertools.pairwise(bounds)])
    silent = np.array([not np.any(a) for a in audios])
    means[silent] = 0.0  # no voice to print: a zero row is similar to nothing
    return _normalise_rows(means)


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def dominant_speaker(embeddings: np.ndarray) -> np.ndarray:
    """The unit centroid of the voice most clips share, unmoved by a minority of other speakers.

    Clips whose median similarity to all clips is in the top half seed a mean; it is then refined on the
    clips at least as close to it as the median clip.
    """
    emb = _normalise_rows(embeddings)
    if emb.ndim != 2 or len(emb) == 0:
        raise ValueError("dominant_speaker needs a non-empty (N, D) array of embeddings")
    typical = np.median(emb @ emb.T, axis=1)
    keep = typical >= np.quantile(typical, CENTROID_SEED_QUANTILE)
    centroid = _normalise_rows(emb[keep].mean(axis=0))
    for _ in range(CENTROID_REFINE_STEPS):
        sims = emb @ centroid
        centroid = _normalise_rows(emb[sims >= np.median(sims)].mean(axis=0))
    return centroid


def cosine_similarity(embeddings: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``(N,)`` cosine similarity of each embedding to ``reference`` (one ``(D,)`` vector, or ``(M, D)``
    reference clips, averaged into one voice)."""
    ref = np.asarray(reference, dtype=np.float32)
    if ref.ndim == 2:
        ref = _normalise_rows(ref).mean(axis=0)
    ref = _normalise_rows(ref)
    return (_normalise_rows(embeddings) @ ref).astype(np.float32)


# ------------------------------------------------------------------------------------------------ DNSMOS


def dnsmos(audio: np.ndarray, sample_rate: int) -> DnsmosScore:
    """DNSMOS P.835 scores of one clip: the mean over its 9 s windows (a shorter clip is looped to 9 s).

    Only the P.835 model runs; speechmos's own ``__call__`` also runs the P.808 model, which adds a third
    to the time for a score the review does not use.
    """
    model = dnsmos_model()
    audio = np.clip(_to_16k(audio, sample_rate), -1.0, 1.0).astype(np.float32)
    if not audio.size or not np.any(audio):
        raise ValueError("DNSMOS needs a clip with sound in it (got silence)")
    window = int(DNSMOS_WINDOW_S * SAMPLE_RATE)
    hop = int(DNSMOS_HOP_S * SAMPLE_RATE)
    if len(audio) < window:
        audio = np.tile(audio, int(np.ceil(window / len(audio))))
    scores = []
    for start in range(0, len(audio) - window + 1, hop):
        raw = model.onnx_sess.run(None, {"input_1": audio[None, start : start + window]})[0][0]
        scores.append(model.get_polyfit_val(*raw, False))  # raw network outputs -> calibrated MOS
    sig, bak, ovrl = np.mean(np.asarray(scores, dtype=np.float64), axis=0)
    return DnsmosScore(sig=float(sig), bak=float(bak), ovrl=float(ovrl))


# ------------------------------------------------------------------------------------------- speech rate


def speech_seconds(audio: np.ndarray, sample_rate: int) -> float:
    """Seconds of ``audio`` that hold speech: frames within ``SPEECH_RANGE_DB`` of its loud level."""
    from voicelab.audio import to_mono

    audio = to_mono(audio)
    frame = max(1, round(SPEECH_FRAME_S * sample_rate))
    n = len(audio) // frame
    if n == 0:
        return 0.0
    power = np.mean(np.square(audio[: n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    db = 10 * np.log10(np.maximum(power, 1e-20))
    loud = np.percentile(db, SPEECH_LOUD_PERCENTILE)
    return float(np.count_nonzero(db >= loud - SPEECH_RANGE_DB) * frame / sample_rate)


def speech_rate(text: str, speech_seconds: float) -> float:
    """Words per second of speech (``nan`` when there is no speech to divide by)."""
    words = len(text.split())
    if speech_seconds <= 0:
        return float("nan")
    return words / speech_seconds

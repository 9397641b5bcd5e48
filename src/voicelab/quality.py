"""Per-clip quality measures: who is speaking, how clean the audio is, how fast the speech is.

- ``speaker_embeddings``: a 256-d voice print per clip from Resemblyzer's GE2E speaker encoder (its
  weights ship inside the ``resemblyzer`` wheel, so nothing is downloaded).
- ``dominant_speaker`` / ``cosine_similarity``: the dataset's main voice (a centroid that ignores a
  minority of other speakers) and each clip's similarity to it.
- ``dnsmos``: Microsoft's DNSMOS P.835 scores (SIG speech quality, BAK background, OVRL overall, 1-5),
  run from the ONNX models that ship inside the ``speechmos`` wheel.
- ``speech_rate`` / ``speech_seconds``: words per second of actual speech (pauses excluded).
- ``voice_mels`` / ``embed_mel_windows``: the same encoder over windows of any length, batched, for
  prepare-audio's choice of who speaks where (``voicelab.speaker_turns``); ``dnsmos_many``: DNSMOS of
  several clips in shared runs. This module is the one home of what the speaker encoder measures.

Both models load through ``voicelab.models.quality`` (once per process). Heavy imports (torch,
onnxruntime) happen inside functions.
"""

from __future__ import annotations

import functools
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
PARTIALS_PER_FORWARD = 64  # partials per encoder batch: bounds memory (the LSTM's gate inputs: ~42 MB)

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


def _level_up(audio: np.ndarray) -> np.ndarray:
    """Raise quiet audio to ``LEVEL_TARGET_DBFS`` RMS (never lower it), as Resemblyzer does."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    if rms > 0:
        gain_db = LEVEL_TARGET_DBFS - 20 * np.log10(rms)
        if gain_db > 0:
            return audio * np.float32(10 ** (gain_db / 20))
    return audio


def mel_frames(audio: np.ndarray) -> np.ndarray:
    """``(F, MEL_CHANNELS)`` float32: the encoder's input for 16 kHz mono audio, one frame per 10 ms
    (Resemblyzer's mel: linear power, 25 ms Hann windows, centred), ``F = len(audio) // hop + 1``.

    The same numbers as ``librosa.feature.melspectrogram`` with these settings (to float32 rounding),
    computed in numpy: importing librosa costs seconds of start-up (numba), longer than the work.
    """
    n_fft = round(SAMPLE_RATE * MEL_WINDOW_S)
    hop = round(SAMPLE_RATE * MEL_HOP_S)
    padded = np.pad(np.asarray(audio, dtype=np.float32), n_fft // 2)  # librosa: centred, zero-padded
    n = 1 + (len(padded) - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n]
    power = np.abs(np.fft.rfft(frames * _hann(n_fft), axis=1)) ** 2
    return (power.astype(np.float32) @ _mel_filters(n_fft).T).astype(np.float32)


def _hann(n: int) -> np.ndarray:
    """The periodic Hann window (librosa's and scipy's ``get_window("hann", n)``)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def _slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Hz -> mel on Slaney's scale (librosa's default): linear to 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _slaney_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


@functools.lru_cache(maxsize=4)
def _mel_filters(n_fft: int) -> np.ndarray:
    """``(MEL_CHANNELS, n_fft // 2 + 1)`` triangular filters, Slaney area-normalised, 0 Hz to Nyquist
    (``librosa.filters.mel(sr=16000, n_fft=n_fft, n_mels=40)``)."""
    fft_hz = np.linspace(0, SAMPLE_RATE / 2, n_fft // 2 + 1)
    mel_hz = _slaney_hz(np.linspace(_slaney_mel(0.0), _slaney_mel(SAMPLE_RATE / 2), MEL_CHANNELS + 2))
    gaps = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / gaps[:-1, None]
    upper = ramps[2:] / gaps[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:MEL_CHANNELS]))[:, None]
    return weights.astype(np.float32)


def voice_mels(audio: np.ndarray) -> np.ndarray:
    """The encoder's input for a stretch of 16 kHz audio: raised to Resemblyzer's level, as a clip is."""
    return mel_frames(_level_up(audio))


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row (or the one vector) scaled to length 1; zero rows stay zero."""
    return _normalise_rows(x)


def _partial_mels(audio: np.ndarray) -> np.ndarray:
    """``(P, PARTIAL_FRAMES, MEL_CHANNELS)`` mel partials covering a 16 kHz clip (Resemblyzer's slicing)."""
    hop = round(SAMPLE_RATE * MEL_HOP_S)
    audio = _level_up(audio)
    n_frames = int(np.ceil((len(audio) + 1) / hop))
    step = round(SAMPLE_RATE / PARTIALS_PER_SECOND / hop)
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    coverage = (len(audio) - starts[-1] * hop) / (PARTIAL_FRAMES * hop)
    if coverage < MIN_LAST_PARTIAL_COVERAGE and len(starts) > 1:
        starts.pop()
    needed = (starts[-1] + PARTIAL_FRAMES) * hop
    mel = mel_frames(np.pad(audio, (0, max(needed - len(audio), 0))))
    return np.stack([mel[s : s + PARTIAL_FRAMES] for s in starts])


WINDOWS_PER_FORWARD = 64
"""Windows run together through the encoder, sorted by length; each step of the LSTM computes only the
windows still running, so their lengths may differ. The cost is the LSTM's matrix products (1.35 M
multiply-adds per frame, compute-bound): 4.5 ms of CPU per second of audio here (docs/benchmarks.md)."""
ENCODER_THREADS = 1
"""BLAS threads for the encoder's matrix products: on the shared 2-core machine a second BLAS thread spent
10x the CPU spinning for a core it did not get (docs/benchmarks.md). Running groups of windows on two
Python threads instead left the CPU as it was and grew the peak memory of an hour of audio from 190 to
420 MB (each thread's allocator keeps its own freed buffers), for no wall time measurable under load."""


def embed_mel_windows(mels: Sequence[np.ndarray], *, device: str = "cpu") -> np.ndarray:
    """``(W, 256)`` L2-normalised voice prints of mel windows of any lengths (``(T_i, MEL_CHANNELS)``),
    each the encoder's state after its own last frame, windows batched by length."""
    from threadpoolctl import threadpool_limits

    out = np.zeros((len(mels), EMBEDDING_DIM), np.float32)
    if not len(mels):
        return out
    encoder = speaker_encoder(device)
    order = np.argsort([len(m) for m in mels], kind="stable")
    with threadpool_limits(limits=ENCODER_THREADS, user_api="blas"):
        for lo in range(0, len(order), WINDOWS_PER_FORWARD):
            group = order[lo : lo + WINDOWS_PER_FORWARD]
            lengths = np.array([len(mels[k]) for k in group])
            batch = np.zeros((len(group), int(lengths.max()), MEL_CHANNELS), np.float32)
            for row, k in enumerate(group):
                batch[row, : lengths[row]] = mels[k]
            out[group] = encoder(batch, lengths)
    return out


def speaker_embeddings(audios: Sequence[np.ndarray], sample_rate: int, *, device: str = "cpu") -> np.ndarray:
    """``(N, 256)`` float32 voice prints, L2-normalised (a silent clip gives a zero row).

    Each clip is the normalised mean of its 1.6 s partials' embeddings; all partials of all clips go
    through the encoder in shared batches.
    """
    from threadpoolctl import threadpool_limits

    if not audios:
        return np.zeros((0, EMBEDDING_DIM), np.float32)
    encoder = speaker_encoder(device)
    partials = [_partial_mels(_to_16k(a, sample_rate)) for a in audios]
    stacked = np.concatenate(partials)
    with threadpool_limits(limits=ENCODER_THREADS, user_api="blas"):
        flat = np.concatenate(
            [
                encoder(stacked[lo : lo + PARTIALS_PER_FORWARD])
                for lo in range(0, len(stacked), PARTIALS_PER_FORWARD)
            ]
        )
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
    scores = [
        model.scores(audio[None, start : start + window])[0]
        for start in range(0, len(audio) - window + 1, hop)
    ]
    sig, bak, ovrl = np.mean(np.asarray(scores, dtype=np.float64), axis=0)
    return DnsmosScore(sig=float(sig), bak=float(bak), ovrl=float(ovrl))


DNSMOS_WINDOWS_PER_RUN = 32
"""9 s windows scored per ONNX run (the model's batch axis is free): 32 windows are 18 MB of input."""


def dnsmos_many(audios: Sequence[np.ndarray], sample_rate: int) -> list[DnsmosScore]:
    """``dnsmos`` of several clips, their windows scored together in batched runs of the same model (the
    per-clip values to float rounding; ``tests/test_quality.py`` compares them)."""
    model = dnsmos_model()
    window = int(DNSMOS_WINDOW_S * SAMPLE_RATE)
    hop = int(DNSMOS_HOP_S * SAMPLE_RATE)
    windows, owner = [], []
    for index, audio in enumerate(audios):
        audio = np.clip(_to_16k(audio, sample_rate), -1.0, 1.0).astype(np.float32)
        if not audio.size or not np.any(audio):
            raise ValueError(f"DNSMOS needs clips with sound in them (clip {index} is silence)")
        if len(audio) < window:
            audio = np.tile(audio, int(np.ceil(window / len(audio))))
        for start in range(0, len(audio) - window + 1, hop):
            windows.append(audio[start : start + window])
            owner.append(index)
    scores = np.concatenate(
        [
            model.scores(np.stack(windows[lo : lo + DNSMOS_WINDOWS_PER_RUN]))
            for lo in range(0, len(windows), DNSMOS_WINDOWS_PER_RUN)
        ]
    )
    out = []
    for index in range(len(audios)):
        sig, bak, ovrl = scores[np.asarray(owner) == index].mean(axis=0)
        out.append(DnsmosScore(sig=float(sig), bak=float(bak), ovrl=float(ovrl)))
    return out


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

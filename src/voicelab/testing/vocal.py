"""Constructed non-speech vocal sounds (a laugh-like burst, a sigh-like exhale), to put between espeak
sentences: what the non-speech sound measure (``voicelab.vocal_events``) is sanity-tested on.

They are made to have what a laugh and a sigh have acoustically, not to sound convincing: a laugh is a
train of short voiced "ha" syllables at 4-5 per second, each with a breathy onset, on a high pitch that
falls from syllable to syllable; a sigh is a breathy (noise) exhale with a falling envelope and a little
voicing at its start.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HARMONICS = 12  # a glottal-pulse-like tone: harmonics falling off as 1/k
ONSET_S = 0.03  # the breathy "h" before each "ha"
SYLLABLE_S = 0.12
PITCH_FALL = 0.04  # each syllable 4% lower than the one before
PEAK = 0.5  # peak amplitude: about espeak's speech level


def _harmonic_tone(f0: float, n: int, sample_rate: int) -> np.ndarray:
    t = np.arange(n) / sample_rate
    return sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, HARMONICS + 1))


def _to_peak(x: np.ndarray) -> np.ndarray:
    return (PEAK * x / max(float(np.abs(x).max()), 1e-9)).astype(np.float32)


def laugh_burst(
    sample_rate: int, *, syllables: int = 5, rate_hz: float = 4.5, f0: float = 260.0, seed: int = 0
) -> np.ndarray:
    """A laugh-like train of ``syllables`` breathy voiced bursts, ``rate_hz`` per second, float32 mono."""
    rng = np.random.default_rng(seed)
    period, length, onset = (round(s * sample_rate) for s in (1 / rate_hz, SYLLABLE_S, ONSET_S))
    out = np.zeros(period * syllables)
    for k in range(syllables):
        voiced = 0.7 * _harmonic_tone(f0 * (1 - PITCH_FALL * k), length, sample_rate)
        syllable = (voiced + 0.6 * rng.standard_normal(length)) * np.sin(
            np.pi * np.arange(length) / length
        ) ** 1.5
        syllable[:onset] = 0.4 * rng.standard_normal(onset) * np.linspace(0.0, 1.0, onset)
        out[k * period : k * period + length] = syllable
    return _to_peak(out)


def sigh(sample_rate: int, *, seconds: float = 0.9, f0: float = 180.0, seed: int = 0) -> np.ndarray:
    """A sigh-like exhale: low-passed breath noise with a falling envelope, voiced at its start."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sample_rate)
    envelope = np.exp(-3.0 * np.arange(n) / n) * np.minimum(1.0, np.arange(n) / (0.1 * sample_rate))
    breath = np.convolve(rng.standard_normal(n), np.ones(8) / 8, mode="same")
    voicing = _harmonic_tone(f0, n, sample_rate) * np.exp(-8.0 * np.arange(n) / n)
    return _to_peak((breath * 3 + 0.3 * voicing) * envelope)


def join(parts: Sequence[np.ndarray], sample_rate: int, gap_s: float = 0.2) -> np.ndarray:
    """``parts`` one after another with ``gap_s`` of silence between them (float32 mono)."""
    gap = np.zeros(round(gap_s * sample_rate), np.float32)
    pieces = []
    for i, part in enumerate(parts):
        pieces += [gap] if i else []
        pieces.append(np.asarray(part, np.float32))
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

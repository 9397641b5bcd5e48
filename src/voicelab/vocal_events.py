"""Non-speech sounds in a clip (a laugh, a sigh, a cough): where they are, measured offline.

The signal: loud sound that a voice activity detector does not call speech. Every 32 ms window of the
clip (at 16 kHz) gets Silero VAD's speech probability and its level. A window is *sounding* when its
level is within ``EVENT_RANGE_DB`` of the clip's loud level (its 95th percentile window), and a
*non-speech* window when it is sounding and its speech probability is under ``SPEECH_PROBABILITY``. An
event is a stretch of non-speech windows, silences of up to ``MAX_GAP_S`` inside it included (the pauses
between the "ha"s of a laugh), that ends at speech or a longer silence; it counts when its non-speech
windows add up to ``MIN_EVENT_SOUND_S``.

What it does not know: whether the sound is vocal. A door slam or a music sting loud enough counts too
(transcribe's review already flags music under speech through DNSMOS); a quiet breath does not. How
reliable it is on constructed audio (espeak speech, laugh- and sigh-like bursts, the word "laugh"
spoken) is measured by ``benchmarks/bench_vocal_events.py`` and written down in docs/tags.md.

Used by transcribe's review (a clip with a long non-speech sound but no tag in its text) and by
``make evaluate``'s tags check (did the voice make a sound where the tag was?).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

VAD_SAMPLE_RATE = 16_000
VAD_WINDOW = 512
"""Samples Silero VAD scores at once at 16 kHz (32 ms)."""
WINDOW_S = VAD_WINDOW / VAD_SAMPLE_RATE
SPEECH_PROBABILITY = 0.5
"""Silero's own threshold between speech and not speech."""
LOUD_PERCENTILE = 95
EVENT_RANGE_DB = 20.0
"""How far under the clip's loud level a non-speech sound may be and still count: a laugh, cough or
gasp is about as loud as the speech; a breath between phrases is typically 20-30 dB under it, so it
does not count; a sigh is on the line (docs/tags.md)."""
MAX_GAP_S = 0.3
"""Silence an event may hold: between the syllables of a laugh (~0.1 s at 4-5 per second) and well under
the pause between two laughs or a laugh and the next words."""
MIN_EVENT_SOUND_S = 0.3
"""Non-speech sound an event must hold: longer than Silero's lag at the edges of words (1-3 windows)."""
_SILENT_DB = -120.0

_vad_lock = threading.Lock()
"""Silero VAD keeps state between windows: one clip at a time through the one model of the process."""


@dataclass(frozen=True)
class SoundEvent:
    """A non-speech sound: where it is (seconds into the clip) and how much of it sounds."""

    start_s: float
    end_s: float
    sounding_s: float

    @property
    def centre_s(self) -> float:
        return (self.start_s + self.end_s) / 2


@dataclass(frozen=True)
class WindowMeasures:
    """Per 32 ms window: Silero's speech probability and the level in dBFS."""

    speech: np.ndarray
    level_db: np.ndarray

    def sounding(self) -> np.ndarray:
        if not len(self.level_db):
            return np.zeros(0, bool)
        loud = np.percentile(self.level_db, LOUD_PERCENTILE)
        return (self.level_db >= loud - EVENT_RANGE_DB) & (self.level_db > _SILENT_DB)

    def sound_span_s(self) -> tuple[float, float] | None:
        """From the first to the end of the last sounding window, or None for a silent clip."""
        idx = np.flatnonzero(self.sounding())
        return None if not len(idx) else (idx[0] * WINDOW_S, (idx[-1] + 1) * WINDOW_S)


def find_events(measures: WindowMeasures) -> list[SoundEvent]:
    """The non-speech sound events of a clip's window measures (pure; see the module docstring)."""
    sounding = measures.sounding()
    nonspeech = sounding & (measures.speech < SPEECH_PROBABILITY)
    max_gap = round(MAX_GAP_S / WINDOW_S)
    events: list[SoundEvent] = []
    run: list[int] | None = None  # [first window, last window, non-speech windows]

    def close() -> None:
        if run is not None and run[2] * WINDOW_S >= MIN_EVENT_SOUND_S:
            events.append(SoundEvent(run[0] * WINDOW_S, (run[1] + 1) * WINDOW_S, run[2] * WINDOW_S))

    for i in range(len(sounding)):
        if nonspeech[i]:
            if run is not None and i - run[1] - 1 > max_gap:
                close()
                run = None
            run = [i, i, 0] if run is None else run
            run[1], run[2] = i, run[2] + 1
        elif sounding[i]:  # speech ends an event
            close()
            run = None
    close()
    return events


def measure_windows(audio: np.ndarray, sample_rate: int) -> WindowMeasures:
    """Silero's speech probability and the level of each 32 ms window of ``audio`` (mono float)."""
    import torch

    from voicelab.audio import resample
    from voicelab.models.quality import vad_model

    x = np.asarray(audio, np.float32).reshape(-1)
    if sample_rate != VAD_SAMPLE_RATE:
        x = resample(x, sample_rate, VAD_SAMPLE_RATE).astype(np.float32)
    n = len(x) // VAD_WINDOW
    windows = x[: n * VAD_WINDOW].reshape(n, VAD_WINDOW)
    power = np.mean(np.square(windows, dtype=np.float64), axis=1)
    level = 10 * np.log10(np.maximum(power, 10 ** (_SILENT_DB / 10)))
    speech = np.zeros(n)
    with _vad_lock:
        vad = vad_model()
        vad.reset_states()
        with torch.no_grad():
            for i in range(n):
                speech[i] = float(vad(torch.from_numpy(windows[i].copy()), VAD_SAMPLE_RATE))
    return WindowMeasures(speech, level)


def sound_events(audio: np.ndarray, sample_rate: int) -> list[SoundEvent]:
    """The non-speech sound events of one clip."""
    return find_events(measure_windows(audio, sample_rate))


def longest(events: Sequence[SoundEvent]) -> SoundEvent | None:
    return max(events, key=lambda e: e.sounding_s, default=None)

"""Real and speech-like audio for tests and benchmarks, made on the spot (espeak-ng, numpy)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(
    parts: Sequence[str | float],
    out_path: Path | str,
    *,
    voice: str = "en-us",
    words_per_minute: int = 160,
) -> Path:
    """Speak ``parts`` with espeak-ng into a WAV file (22.05 kHz mono 16-bit, espeak's native format).

    ``parts`` mixes sentences (str) and pauses in seconds (float), e.g.
    ``["Hello there.", 0.9, "How are you?"]``; pauses are SSML breaks, placed exactly.
    """
    if not espeak_available():
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    body = []
    for part in parts:
        if isinstance(part, str):
            body.append(escape(part))
        else:
            body.append(f'<break time="{round(float(part) * 1000)}ms"/>')
    ssml = f"<speak>{' '.join(body)}</speak>"
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".ssml", delete=False) as f:
        f.write(ssml)
        ssml_path = f.name
    try:
        subprocess.run(
            [
                "espeak-ng",
                "-m",
                "-v",
                voice,
                "-s",
                str(words_per_minute),
                "-f",
                ssml_path,
                "-w",
                str(out_path),
            ],
            check=True,
            capture_output=True,
        )
    finally:
        Path(ssml_path).unlink(missing_ok=True)
    return out_path


def speech_like_noise(
    segments: Sequence[tuple[float, float]],
    sample_rate: int,
    *,
    channels: int = 1,
    level_dbfs: float = -18.0,
    floor_dbfs: float = -70.0,
    seed: int = 0,
) -> np.ndarray:
    """Synthetic "speech": amplitude-modulated harmonic bursts separated by near-silent gaps.

    ``segments`` alternates (kind, seconds) implicitly: a sequence of ``(speech_s, pause_s)`` pairs.
    Returns float32 ``(T, channels)`` in [-1, 1]. Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    pieces = []
    for speech_s, pause_s in segments:
        n = round(speech_s * sample_rate)
        t = np.arange(n) / sample_rate
        f0 = rng.uniform(100, 220)
        tone = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 6))
        syllables = 0.55 + 0.45 * np.sin(2 * np.pi * rng.uniform(3, 5) * t) ** 2
        voiced = tone * syllables + 0.05 * rng.standard_normal(n)
        voiced *= 10 ** (level_dbfs / 20) / max(np.sqrt(np.mean(voiced**2)), 1e-9)
        ramp = min(n // 2, int(0.01 * sample_rate))
        if ramp:
            fade = np.linspace(0.0, 1.0, ramp)
            voiced[:ramp] *= fade
            voiced[-ramp:] *= fade[::-1]
        pieces.append(voiced)
        m = round(pause_s * sample_rate)
        pieces.append(10 ** (floor_dbfs / 20) * rng.standard_normal(m))
    mono = np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)
    return np.repeat(mono[:, None], channels, axis=1)

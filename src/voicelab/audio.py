"""Audio I/O shared by every step: decode any input to float32, resample, downmix, write 16-bit WAV.

Conventions: audio arrays are float32 in [-1, 1]; mono is ``(T,)``, multi-channel is ``(T, C)``.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np

from voicelab.fileio import atomic_output

logger = logging.getLogger(__name__)

SOUNDFILE_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif"})
"""Decoded in-process by libsndfile (soundfile)."""
FFMPEG_SUFFIXES = frozenset({".m4a", ".mp4", ".aac", ".opus", ".webm", ".mka", ".wma"})
"""Need the ffmpeg CLI (what yt-dlp leaves behind when it does not convert)."""
AUDIO_SUFFIXES = SOUNDFILE_SUFFIXES | FFMPEG_SUFFIXES

PCM16_MAX = 32767  # int16 full scale; float 1.0 maps here


class AudioError(Exception):
    """Audio that cannot be used; the message names the file and the reason."""


class AudioDecodeError(AudioError):
    """A file that is empty, truncated, corrupt or not audio."""


class FFmpegNotFoundError(AudioError):
    """A format that needs the ffmpeg CLI, on a machine without it."""


def is_audio_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith(".")


def find_ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise FFmpegNotFoundError(
            "ffmpeg is needed to decode this format but is not installed: install it "
            "(Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg) or convert the file to WAV/FLAC"
        )
    return exe


def to_mono(audio: np.ndarray) -> np.ndarray:
    """``(T,)`` or ``(T, C)`` -> ``(T,)`` float32, by averaging channels."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        return audio.mean(axis=1, dtype=np.float32) if audio.shape[1] > 1 else audio[:, 0]
    return audio


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """High-quality resampling (soxr, VHQ) of ``(T,)`` or ``(T, C)`` float32 audio."""
    if orig_rate == target_rate:
        return np.asarray(audio, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(audio, dtype=np.float32), orig_rate, target_rate, quality="VHQ")


def read_audio(path: Path | str, sample_rate: int | None = None, *, mono: bool = True) -> tuple[np.ndarray, int]:
    """Decode a whole file to float32 (``(T,)`` when mono), resampled to ``sample_rate`` if given.

    Raises ``AudioDecodeError`` (empty, corrupt, not audio) or ``FFmpegNotFoundError``; both name the file.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"{path}: file is empty")
    if path.suffix.lower() in FFMPEG_SUFFIXES:
        audio, rate = _read_with_ffmpeg(path)
    else:
        audio, rate = _read_with_soundfile(path)
    if audio.shape[0] == 0:
        raise AudioDecodeError(f"{path}: decodes to no audio samples")
    if mono:
        audio = to_mono(audio)
    if sample_rate is not None and sample_rate != rate:
        audio = resample(audio, rate, sample_rate)
        rate = sample_rate
    return audio, rate


def _read_with_soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise AudioDecodeError(f"{path}: cannot decode audio ({e})") from e
    return audio, int(rate)


def _read_with_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    exe = find_ffmpeg()
    rate, channels = probe_with_ffmpeg(path)
    cmd = [exe, "-nostdin", "-v", "error", "-i", str(path), "-vn", "-f", "f32le", "-acodec", "pcm_f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioDecodeError(f"{path}: ffmpeg cannot decode it ({reason[-1] if reason else 'unknown error'})")
    audio = np.frombuffer(proc.stdout, dtype=np.float32)
    return audio[: len(audio) // channels * channels].reshape(-1, channels), rate


def probe_with_ffmpeg(path: Path) -> tuple[int, int]:
    """(sample rate, channels) of the first audio stream, read from ffmpeg's stream description."""
    import re

    exe = find_ffmpeg()
    proc = subprocess.run([exe, "-nostdin", "-hide_banner", "-i", str(path)], capture_output=True, check=False)
    text = proc.stderr.decode(errors="replace")
    match = re.search(r"Audio: .*?, (\d+) Hz, ([^,]+)", text)
    if not match:
        raise AudioDecodeError(f"{path}: ffmpeg finds no audio stream in it")
    layout = match.group(2).strip()
    named = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "5.0": 5, "5.1": 6, "6.1": 7, "7.1": 8}
    channels = named.get(layout.split("(")[0])
    if channels is None:
        count = re.match(r"(\d+) channels", layout)
        channels = int(count.group(1)) if count else 2
    return int(match.group(1)), channels


def float_to_pcm16(audio: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] -> int16, clipped (never wrapped)."""
    scaled = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * PCM16_MAX
    return np.round(scaled).astype(np.int16)


def write_wav(path: Path | str, audio: np.ndarray, sample_rate: int) -> Path:
    """Write 16-bit PCM WAV atomically (temp name, then rename)."""
    import soundfile as sf

    path = Path(path)
    with atomic_output(path) as tmp:
        sf.write(tmp, float_to_pcm16(audio), sample_rate, subtype="PCM_16", format="WAV")
    return path

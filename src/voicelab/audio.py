"""Audio I/O shared by every step: decode any input to float32, resample, downmix, write 16-bit WAV.

Conventions: audio arrays are float32 in [-1, 1]; mono is ``(T,)``, multi-channel is ``(T, C)``.

Two ways in: ``read_audio`` decodes a whole file (short clips), ``open_audio(...).blocks()`` and
``stream_mono`` decode block by block so that hours of audio take a bounded amount of memory.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
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
PCM16_SCALE = 1.0 / 32768  # libsndfile's int16 -> float scaling (a power of two: exact in float32)
RESAMPLE_QUALITY = "HQ"
"""soxr's HQ: 20-bit precision (-120 dB), beyond the 16-bit clips written (-96 dB), and faster than VHQ
(28-bit; docs/benchmarks.md): on 10 min of speech the two differ by at most 3.5e-6, a tenth of one 16-bit
step."""

BLOCK_FRAMES = 1 << 16
"""Frames decoded per block when streaming: ~1.5 s at 44.1 kHz, 2 MiB for 8 float32 channels."""
FLOAT32_BYTES = 4
FFMPEG_CHANNEL_LAYOUTS = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "5.0": 5, "5.1": 6, "6.1": 7, "7.1": 8}
"""ffmpeg's names for common channel layouts (its stream line says ``stereo``, not ``2 channels``)."""

# libsndfile's public error codes (sndfile.h, SF_ERR_*); other codes are internal and their text can mislead.
_SF_ERR_SYSTEM = 2
_SF_ERR_ACCURATE = frozenset({1, 3, 4})  # UNRECOGNISED_FORMAT, MALFORMED_FILE, UNSUPPORTED_ENCODING


class AudioError(Exception):
    """Audio that cannot be used; the message names the file and the reason."""


class AudioDecodeError(AudioError):
    """A file that is empty, truncated, corrupt or not audio."""


class AudioTruncatedError(AudioDecodeError):
    """A file whose header promises more audio than it holds (an interrupted download or copy)."""


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
        channels = audio.shape[1]
        if channels == 1:
            return audio[:, 0]
        # A matrix-vector product, not .mean(axis=1): numpy reduces a short inner axis element by element.
        return audio @ np.full(channels, 1.0 / channels, dtype=np.float32)
    return audio


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """High-quality resampling (soxr, ``RESAMPLE_QUALITY``) of ``(T,)`` or ``(T, C)`` float32 audio."""
    if orig_rate == target_rate:
        return np.asarray(audio, dtype=np.float32)
    import soxr

    return soxr.resample(
        np.asarray(audio, dtype=np.float32), orig_rate, target_rate, quality=RESAMPLE_QUALITY
    )


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header (or ffmpeg's stream description)."""

    path: Path
    sample_rate: int
    channels: int
    frames: int | None
    """Samples per channel; ``None`` when the container does not say (some streams from ffmpeg)."""
    backend: str
    """``"soundfile"`` (libsndfile, in process) or ``"ffmpeg"`` (the CLI, through a pipe)."""

    @property
    def duration_s(self) -> float | None:
        return None if self.frames is None else self.frames / self.sample_rate


def open_audio(path: Path | str) -> AudioInfo:
    """Read the header of ``path`` and pick its decoder; nothing is decoded yet.

    Files libsndfile cannot open (an .mp3 that is really AAC, an odd WAV codec) are retried with
    ffmpeg when it is installed. Raises ``AudioDecodeError`` (missing, empty, not audio) or
    ``FFmpegNotFoundError``; both name the file.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"{path}: file is empty")
    if path.suffix.lower() in FFMPEG_SUFFIXES:
        try:
            return _ffmpeg_info(path)
        except FFmpegNotFoundError as e:
            raise FFmpegNotFoundError(f"{path}: {e}") from e
    try:
        if path.suffix.lower() == ".mp3" and not _looks_like_mp3(path):
            # libsndfile's mpg123 would print resync noise to stderr before failing on these bytes.
            raise AudioDecodeError(
                f"{path}: not a readable audio file: no MP3 header (ID3 tag or frame sync)"
            )
        return _soundfile_info(path)
    except AudioTruncatedError:
        raise  # ffmpeg would read the part that is there just as quietly
    except AudioDecodeError as sf_error:
        if shutil.which("ffmpeg") is None:
            raise
        try:
            info = _ffmpeg_info(path)
        except AudioDecodeError as ff_error:
            raise AudioDecodeError(f"{sf_error}; ffmpeg cannot read it either") from ff_error
        logger.info("%s: libsndfile cannot read it, decoding with ffmpeg", path)
        return info


def iter_blocks(info: AudioInfo, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Decode ``info.path`` block by block: float32 ``(n, channels)``, ``n <= block_frames``.

    Raises ``AudioDecodeError`` naming the file when the data turns out corrupt or truncated mid-way.
    """
    if info.backend == "ffmpeg":
        yield from _ffmpeg_blocks(info, block_frames)
    else:
        yield from _soundfile_blocks(info, block_frames)


def stream_mono(
    info: AudioInfo, sample_rate: int, block_frames: int = BLOCK_FRAMES
) -> Iterator[tuple[np.ndarray, int]]:
    """Decode, downmix and resample (soxr ``RESAMPLE_QUALITY``, streaming) block by block.

    Yields ``(mono, consumed)``: float32 ``(n,)`` samples at ``sample_rate`` and how many source frames
    were read to produce them (for progress in source time). Memory stays a few blocks whatever the
    file length; the concatenated output equals a whole-file resample up to float rounding.
    """
    import soxr

    stream = None
    if info.sample_rate != sample_rate:
        stream = soxr.ResampleStream(
            info.sample_rate, sample_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY
        )
    for block in iter_blocks(info, block_frames):
        mono = to_mono(block)
        yield (mono if stream is None else stream.resample_chunk(mono)), len(block)
    if stream is not None:
        yield stream.resample_chunk(np.zeros(0, np.float32), last=True), 0


def read_audio(
    path: Path | str, sample_rate: int | None = None, *, mono: bool = True
) -> tuple[np.ndarray, int]:
    """Decode a whole file to float32 (``(T,)`` when mono), resampled to ``sample_rate`` if given.

    Raises ``AudioDecodeError`` (empty, corrupt, not audio) or ``FFmpegNotFoundError``; both name the file.
    """
    info = open_audio(path)
    blocks = list(iter_blocks(info))
    if not blocks:
        raise AudioDecodeError(f"{info.path}: decodes to no audio samples")
    audio = np.concatenate(blocks)
    rate = info.sample_rate
    if mono:
        audio = to_mono(audio)
    if sample_rate is not None and sample_rate != rate:
        audio = resample(audio, rate, sample_rate)
        rate = sample_rate
    return audio, rate


MP3_FRAME_SYNC = 0xFFE0  # the 11 set bits every MPEG audio frame header starts with


def _looks_like_mp3(path: Path) -> bool:
    """An ID3v2 tag or an MPEG frame sync at the start: what every MP3 encoder writes first."""
    with path.open("rb") as f:
        head = f.read(3)
    if head.startswith(b"ID3"):
        return True
    return len(head) >= 2 and (int.from_bytes(head[:2], "big") & MP3_FRAME_SYNC) == MP3_FRAME_SYNC


def _soundfile_error(path: Path, error: Exception) -> AudioDecodeError:
    """A message that says what is wrong.

    libsndfile's own text can mislead: for a text file named .mp3 it says "File does not exist or is not
    a regular file (possibly a pipe?)". Only the codes whose text is accurate are passed on.
    """
    code = getattr(error, "code", None)
    detail = (getattr(error, "error_string", "") or "").strip()
    if code == _SF_ERR_SYSTEM and detail:
        return AudioDecodeError(f"{path}: cannot open it ({detail})")
    reason = "not a readable audio file: the data is not valid audio or is corrupt"
    if code in _SF_ERR_ACCURATE and detail:
        reason += f" (libsndfile: {detail})"
    return AudioDecodeError(f"{path}: {reason}")


def _soundfile_info(path: Path) -> AudioInfo:
    import soundfile as sf

    try:
        with sf.SoundFile(path) as f:
            info = AudioInfo(path, int(f.samplerate), int(f.channels), int(f.frames), "soundfile")
            is_wav = f.format in ("WAV", "WAVEX")
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise _soundfile_error(path, e) from e
    if is_wav:
        _check_wav_length(path)
    return info


WAV_UNKNOWN_SIZES = frozenset({0, 0xFFFFFFFF})
"""data-chunk sizes a streaming writer leaves when it cannot seek back: "unknown", not a promise."""


def _check_wav_length(path: Path) -> None:
    """Raise ``AudioTruncatedError`` when the RIFF data chunk's size passes the end of the file.

    libsndfile reads such a file up to where its data stops without a word, so a half-downloaded
    recording would pass for a short one.
    """
    import struct

    size = path.stat().st_size
    with path.open("rb") as f:
        if f.read(4) != b"RIFF" or len(f.read(4)) < 4 or f.read(4) != b"WAVE":
            return  # RF64 and friends: leave them to libsndfile
        block_align = rate = 0
        while True:
            head = f.read(8)
            if len(head) < 8:
                return
            chunk_id, chunk_size = head[:4], struct.unpack("<I", head[4:])[0]
            if chunk_id == b"fmt ":
                fmt = f.read(chunk_size)
                if len(fmt) >= 14:  # WAVEFORMAT: format tag, channels, rate, bytes/s, block align
                    rate, _bytes_per_s, block_align = struct.unpack("<IIH", fmt[4:14])
                f.seek(chunk_size % 2, 1)  # chunks are padded to an even length
                continue
            if chunk_id == b"data":
                found = size - f.tell()
                if chunk_size in WAV_UNKNOWN_SIZES or chunk_size <= found:
                    return
                if rate and block_align:
                    per_s = rate * block_align
                    told = f"{chunk_size / per_s:.1f} s of audio but holds {found / per_s:.1f} s"
                else:
                    told = f"{chunk_size} bytes of audio but holds {found}"
                raise AudioTruncatedError(
                    f"{path}: truncated WAV: its header promises {told} (an interrupted download or copy?); "
                    "get a complete copy, or re-save what is there (ffmpeg -i in.wav fixed.wav) to use it"
                )
            f.seek(chunk_size + chunk_size % 2, 1)


def _soundfile_blocks(info: AudioInfo, block_frames: int) -> Iterator[np.ndarray]:
    import soundfile as sf

    try:
        with sf.SoundFile(info.path) as f:
            # 16-bit PCM is read as int16 and scaled here: same floats, cheaper than libsndfile's float read
            # (docs/benchmarks.md)
            as_int16 = f.subtype == "PCM_16"
            while True:
                block = f.read(block_frames, dtype="int16" if as_int16 else "float32", always_2d=True)
                if len(block) == 0:
                    return
                yield np.multiply(block, PCM16_SCALE, dtype=np.float32) if as_int16 else block
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise AudioDecodeError(
            f"{info.path}: decoding failed part-way, the file is probably truncated or corrupt "
            f"({getattr(e, 'error_string', '') or e})"
        ) from e


def _ffmpeg_info(path: Path) -> AudioInfo:
    exe = find_ffmpeg()
    proc = subprocess.run(
        [exe, "-nostdin", "-hide_banner", "-i", str(path)], capture_output=True, check=False
    )
    text = proc.stderr.decode(errors="replace")
    match = re.search(r"Audio: .*?, (\d+) Hz, ([^,]+)", text)
    if not match:
        last = text.strip().splitlines()[-1:] or ["no output"]
        raise AudioDecodeError(f"{path}: ffmpeg finds no audio stream in it ({last[0]})")
    layout = match.group(2).strip()
    channels = FFMPEG_CHANNEL_LAYOUTS.get(layout.split("(")[0])
    if channels is None:
        count = re.match(r"(\d+) channels", layout)
        channels = int(count.group(1)) if count else 2
    rate = int(match.group(1))
    duration = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", text)
    frames = None
    if duration:
        hours, minutes, seconds = int(duration.group(1)), int(duration.group(2)), float(duration.group(3))
        frames = round((hours * 3600 + minutes * 60 + seconds) * rate)
    return AudioInfo(path, rate, channels, frames, "ffmpeg")


def _ffmpeg_blocks(info: AudioInfo, block_frames: int) -> Iterator[np.ndarray]:
    exe = find_ffmpeg()
    cmd = [exe, "-nostdin", "-v", "error", "-i", str(info.path), "-vn", "-ac", str(info.channels)]
    cmd += ["-f", "f32le", "-acodec", "pcm_f32le", "-"]
    frame_bytes = FLOAT32_BYTES * info.channels
    # stderr goes to a file, not a pipe: a corrupt input can make ffmpeg write more than a pipe
    # buffer holds, which would block it while we wait on stdout.
    with tempfile.TemporaryFile() as err, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err) as proc:
        try:
            pending = b""
            while chunk := proc.stdout.read(block_frames * frame_bytes):
                data = pending + chunk
                usable = len(data) // frame_bytes * frame_bytes
                pending = data[usable:]
                if usable:
                    yield np.frombuffer(data[:usable], dtype=np.float32).reshape(-1, info.channels)
            returncode = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(Exception):
                    proc.wait()
        if returncode != 0:
            err.seek(0)
            lines = err.read().decode(errors="replace").strip().splitlines()
            reason = lines[-1] if lines else f"exit status {returncode}"
            raise AudioDecodeError(f"{info.path}: ffmpeg cannot decode it ({reason})")


def float_to_pcm16(audio: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] -> int16, clipped (never wrapped)."""
    scaled = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * PCM16_MAX
    return np.round(scaled).astype(np.int16)


def write_wav(path: Path | str, audio: np.ndarray, sample_rate: int) -> Path:
    """Write 16-bit PCM WAV atomically (temp name, then rename)."""
    import wave  # the same bytes as libsndfile's PCM_16 WAV, without its fsync on close (per clip)

    path = Path(path)
    pcm = float_to_pcm16(audio)
    with atomic_output(path) as tmp, wave.open(str(tmp), "wb") as f:
        f.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        f.setsampwidth(pcm.itemsize)
        f.setframerate(sample_rate)
        f.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())
    return path

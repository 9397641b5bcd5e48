"""Audio response encoders: float32 chunks at 24 kHz in, bytes of the requested format out.

``wav`` and ``pcm`` are streamed: every decoded chunk becomes bytes at once (the WAV header goes out
first with "unknown length" sizes, as streaming servers do, since the length is not known yet). ``mp3``,
``flac`` and ``opus`` go through libsndfile (soundfile), ``aac`` through PyAV (FFmpeg's AAC encoder) when
it is installed; these are encoded once the whole utterance is generated, because their writers need the
complete signal (FLAC's header is rewritten at the end; libsndfile's MP3/Ogg writers are not chunk APIs).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np

from voicelab.audio import float_to_pcm16
from voicelab.orpheus import SAMPLE_RATE

PCM_SAMPLE_WIDTH = 2  # bytes per 16-bit sample
CHANNELS = 1
WAV_UNKNOWN_SIZE = 0xFFFFFFFF
"""RIFF/data size for a stream whose length is not known yet; players read to the end of the data."""
WAV_FORMAT_PCM = 1  # WAVE_FORMAT_PCM, the fmt chunk's format tag for integer PCM
WAV_FMT_BODY = struct.Struct("<HHIIHH")  # format tag, channels, rate, byte rate, block align, bits: 16 bytes
WAV_HEADER_BYTES = 44  # "RIFF" + size + "WAVE" + "fmt " + size + fmt body + "data" + size
WAV_RIFF_OVERHEAD = 8  # the RIFF size counts everything after "RIFF" and the size field itself
AAC_BITRATE = 96_000
OPENAI_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


class UnsupportedFormatError(ValueError):
    """A response format this installation cannot encode."""


@dataclass(frozen=True)
class FormatInfo:
    media_type: str
    streams: bool
    """True: bytes leave as each chunk is decoded. False: encoded after generation ends."""


FORMATS: dict[str, FormatInfo] = {
    "wav": FormatInfo("audio/wav", True),
    "pcm": FormatInfo("audio/pcm", True),
    "mp3": FormatInfo("audio/mpeg", False),
    "flac": FormatInfo("audio/flac", False),
    "opus": FormatInfo("audio/ogg", False),
    "aac": FormatInfo("audio/aac", False),
}
# libsndfile (format, subtype) for the formats it writes.
_SOUNDFILE_FORMATS = {"mp3": ("MP3", "MPEG_LAYER_III"), "flac": ("FLAC", "PCM_16"), "opus": ("OGG", "OPUS")}


def aac_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def supported_formats() -> list[str]:
    return [f for f in OPENAI_FORMATS if f != "aac" or aac_available()]


def wav_header(sample_rate: int = SAMPLE_RATE, data_bytes: int | None = None) -> bytes:
    """A 44-byte PCM16 mono WAV header; ``data_bytes=None`` writes the streaming "unknown" sizes."""
    if data_bytes is None:
        riff_size = data_size = WAV_UNKNOWN_SIZE
    else:
        data_size = data_bytes
        riff_size = WAV_HEADER_BYTES - WAV_RIFF_OVERHEAD + data_bytes
    block_align = CHANNELS * PCM_SAMPLE_WIDTH
    fmt_body = WAV_FMT_BODY.pack(
        WAV_FORMAT_PCM, CHANNELS, sample_rate, sample_rate * block_align, block_align, 8 * PCM_SAMPLE_WIDTH
    )
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVEfmt "
        + struct.pack("<I", WAV_FMT_BODY.size)
        + fmt_body
        + b"data"
        + struct.pack("<I", data_size)
    )


def pcm_bytes(chunk: np.ndarray) -> bytes:
    """float32 ``(T,)`` -> 16-bit little-endian PCM bytes."""
    return float_to_pcm16(chunk).astype("<i2", copy=False).tobytes()


class AudioEncoder:
    """``feed`` each float32 chunk, then ``finish``; both return the bytes ready to send (maybe empty)."""

    def __init__(self, fmt: str, sample_rate: int = SAMPLE_RATE):
        if fmt not in FORMATS:
            raise UnsupportedFormatError(f"unknown response_format {fmt!r}; supported: {supported_formats()}")
        if fmt == "aac" and not aac_available():
            raise UnsupportedFormatError(
                "response_format 'aac' needs PyAV (pip install av); supported here: "
                + ", ".join(supported_formats())
            )
        self.format = fmt
        self.sample_rate = sample_rate
        self.info = FORMATS[fmt]
        self.samples = 0
        self._header_sent = False
        self._collected: list[np.ndarray] = []

    @property
    def media_type(self) -> str:
        return self.info.media_type

    def feed(self, chunk: np.ndarray) -> bytes:
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        self.samples += len(chunk)
        if not self.info.streams:
            self._collected.append(chunk)
            return b""
        data = pcm_bytes(chunk)
        if self.format == "wav" and not self._header_sent:
            self._header_sent = True
            return wav_header(self.sample_rate) + data
        return data

    def finish(self) -> bytes:
        if self.info.streams:
            if self.format == "wav" and not self._header_sent:  # no audio at all: still a valid empty WAV
                self._header_sent = True
                return wav_header(self.sample_rate, data_bytes=0)
            return b""
        audio = np.concatenate(self._collected) if self._collected else np.zeros(0, dtype=np.float32)
        self._collected = []
        return encode_whole(audio, self.format, self.sample_rate)


def encode_whole(audio: np.ndarray, fmt: str, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A complete float32 ``(T,)`` signal -> one file's bytes (exact sizes in the WAV header)."""
    if fmt == "pcm":
        return pcm_bytes(audio)
    if fmt == "wav":
        data = pcm_bytes(audio)
        return wav_header(sample_rate, data_bytes=len(data)) + data
    if fmt == "aac":
        return _encode_aac(audio, sample_rate)
    import soundfile as sf

    container, subtype = _SOUNDFILE_FORMATS[fmt]
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1.0, 1.0), sample_rate, format=container, subtype=subtype)
    return buffer.getvalue()


def _encode_aac(audio: np.ndarray, sample_rate: int) -> bytes:
    """AAC-LC in ADTS framing (what OpenAI's ``aac`` is: a raw .aac stream, no MP4 container)."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="adts") as container:
        stream = container.add_stream("aac", rate=sample_rate)
        stream.layout = "mono"
        stream.bit_rate = AAC_BITRATE
        frame = av.AudioFrame.from_ndarray(
            np.clip(audio, -1.0, 1.0).astype(np.float32)[None, :], format="fltp", layout="mono"
        )
        frame.sample_rate = sample_rate
        if len(audio):
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def time_stretch(audio: np.ndarray, speed: float) -> np.ndarray:
    """Play ``speed`` times faster with the pitch kept (phase vocoder, librosa). 1.0 returns the input."""
    if speed == 1.0 or len(audio) == 0:
        return audio
    import librosa

    return librosa.effects.time_stretch(np.asarray(audio, dtype=np.float32), rate=speed).astype(np.float32)

"""Streaming decode and the errors users see for files that are not usable audio."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from voicelab import audio
from voicelab.audio import AudioDecodeError, FFmpegNotFoundError
from voicelab.testing import speech_like_noise

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


@pytest.fixture(scope="module")
def stereo_wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio_io") / "stereo.wav"
    sf.write(path, speech_like_noise([(1.0, 0.5), (1.0, 0.2)], 44100, channels=2), 44100, subtype="PCM_16")
    return path


def test_open_audio_reads_the_header_only(stereo_wav):
    info = audio.open_audio(stereo_wav)
    assert (info.sample_rate, info.channels, info.frames, info.backend) == (44100, 2, 119070, "soundfile")
    assert info.duration_s == pytest.approx(2.7)


def test_streamed_resample_matches_the_whole_file_resample(stereo_wav):
    whole, rate = audio.read_audio(stereo_wav, 24000)
    info = audio.open_audio(stereo_wav)
    blocks = list(audio.stream_mono(info, 24000, block_frames=1000))
    streamed = np.concatenate([b for b, _ in blocks])
    assert rate == 24000
    assert sum(consumed for _, consumed in blocks) == info.frames
    assert abs(len(streamed) - len(whole)) <= 1
    n = min(len(streamed), len(whole))
    np.testing.assert_allclose(streamed[:n], whole[:n], atol=1e-4)


def test_a_text_file_named_mp3_says_it_is_not_audio(tmp_path):
    bad = tmp_path / "notes.mp3"
    bad.write_text("these are my notes, not a recording\n")
    with pytest.raises(AudioDecodeError, match=r"notes\.mp3: not a readable audio file") as info:
        audio.read_audio(bad)
    assert "does not exist" not in str(info.value)  # libsndfile's misleading text is not passed on


def test_a_text_file_named_wav_and_an_empty_file_name_the_file(tmp_path):
    (tmp_path / "fake.wav").write_bytes(b"RIFF? no, just bytes" * 10)
    (tmp_path / "empty.flac").write_bytes(b"")
    with pytest.raises(AudioDecodeError, match=r"fake\.wav: not a readable audio file"):
        audio.open_audio(tmp_path / "fake.wav")
    with pytest.raises(AudioDecodeError, match=r"empty\.flac: file is empty"):
        audio.open_audio(tmp_path / "empty.flac")
    with pytest.raises(AudioDecodeError, match=r"missing\.wav: no such file"):
        audio.open_audio(tmp_path / "missing.wav")


def test_a_truncated_flac_fails_naming_the_file(tmp_path, stereo_wav):
    data, rate = sf.read(stereo_wav)
    flac = tmp_path / "full.flac"
    sf.write(flac, data, rate)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    with pytest.raises(AudioDecodeError, match=r"cut\.flac: decoding failed part-way"):
        audio.read_audio(cut)


@needs_ffmpeg
def test_an_m4a_named_mp3_decodes_through_ffmpeg(tmp_path, stereo_wav):
    m4a = tmp_path / "song.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(stereo_wav), str(m4a)], check=True)
    misnamed = tmp_path / "song.mp3"
    misnamed.write_bytes(m4a.read_bytes())
    info = audio.open_audio(misnamed)
    assert info.backend == "ffmpeg" and info.channels == 2
    decoded, rate = audio.read_audio(misnamed, 24000)
    assert rate == 24000 and abs(len(decoded) / rate - 2.7) < 0.05


@needs_ffmpeg
def test_ffmpeg_formats_without_ffmpeg_say_to_install_it(tmp_path, stereo_wav, monkeypatch):
    opus = tmp_path / "talk.opus"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(stereo_wav), "-ar", "48000", str(opus)], check=True)
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(FFmpegNotFoundError, match=r"talk\.opus: ffmpeg is needed.*install"):
        audio.read_audio(opus)


@needs_ffmpeg
def test_corrupt_ffmpeg_format_names_the_file(tmp_path):
    bad = tmp_path / "video.webm"
    bad.write_bytes(b"\x1a\x45\xdf\xa3" + b"garbage" * 100)
    with pytest.raises(AudioDecodeError, match=r"video\.webm"):
        audio.read_audio(bad)

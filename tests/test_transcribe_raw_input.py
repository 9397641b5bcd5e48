"""transcribe pointed at raw recordings (no manifest.csv, stereo, long, a sub-folder) says to run
prepare-audio first and writes nothing there; a dataset made elsewhere (mono clips) is transcribed."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from voicelab.cli import transcribe as transcribe_cli
from voicelab.unprepared import raw_recording_signs

RAW_RATE = 44100


def _tone(seconds: float, rate: int, channels: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.1 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


@pytest.fixture
def raw_folder(tmp_path):
    """What a newcomer has in raw_audio/NAME/: 44.1 kHz stereo recordings, one in a sub-folder, an MP3."""
    folder = tmp_path / "raw_audio" / "Old Keeper"
    (folder / "extra").mkdir(parents=True)
    for name in ("intro", "tale", "outro"):
        sf.write(folder / f"{name}.wav", _tone(4.0, RAW_RATE, 2), RAW_RATE)
    sf.write(folder / "long.wav", _tone(31.0, RAW_RATE, 1), RAW_RATE)
    sf.write(folder / "extra" / "more.wav", _tone(3.0, RAW_RATE, 2), RAW_RATE)
    (folder / "notes.mp3").write_bytes(b"ID3")
    return folder


def test_raw_recordings_are_refused_before_anything_is_written(raw_folder, capsys):
    before = sorted(p.name for p in raw_folder.iterdir())
    assert transcribe_cli.main([str(raw_folder), "--model", "tiny", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "looks like raw recordings" in err and "run prepare-audio first" in err
    assert "3 of 4 WAVs are not mono (44.1 kHz)" in err
    assert (
        "1 last over 30 s (the longest 0.5 min)" in err
        and "1 audio file in sub-folders (extra)" in err
        and "1 non-WAV recording (notes.mp3)" in err
    )
    assert f"make prepare-audio ARGS=\"'{raw_folder}/' prepared/Old_Keeper/\"" in err  # quoted; a voice name
    assert "--not-prepared" in err
    assert sorted(p.name for p in raw_folder.iterdir()) == before  # nothing written into raw_audio/


def test_mono_clips_made_elsewhere_are_not_raw(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for i in range(3):
        sf.write(folder / f"clip_{i:03d}.wav", _tone(5.0, 22050, 1), 22050)  # any rate: training resamples
    assert raw_recording_signs(folder, sorted(folder.glob("*.wav"))) == []


def test_a_prepared_folder_is_never_raw(raw_folder):
    (raw_folder / "manifest.csv").write_text("clip,source\n")
    assert raw_recording_signs(raw_folder, sorted(raw_folder.glob("*.wav"))) == []


def test_not_prepared_transcribes_them_anyway(tmp_path, tiny_whisper_path, fast_transcribe_flags, capsys):
    folder = tmp_path / "stereo"
    folder.mkdir()
    sf.write(folder / "take.wav", _tone(3.0, RAW_RATE, 2), RAW_RATE)
    argv = [str(folder), "--model", str(tiny_whisper_path), "--device", "cpu", "--no-quality"]
    assert transcribe_cli.main([*argv, *fast_transcribe_flags]) == 2
    assert transcribe_cli.main([*argv, *fast_transcribe_flags, "--not-prepared"]) == 0
    assert (folder / "transcript.csv").exists()

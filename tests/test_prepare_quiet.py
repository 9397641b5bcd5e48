"""prepare-audio on quiet recordings (cut in pauses, not in quiet word endings) and on truncated WAVs."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from voicelab import dataset, prepare, segment
from voicelab.cli import prepare_audio
from voicelab.testing import speak

QUIET_DBFS = -35.0  # speech level of the quiet take (RMS over its speech)
MIN_EDGE_DEPTH_DB = 15.0
EDGE = slice(round(0.015 * 24_000), round(0.045 * 24_000))  # 30 ms just past the 10 ms fade
SENTENCES_AND_PAUSES = [
    "Well, I suppose we could try the northern road instead.",
    0.4,
    "It is longer, but the bridge there is still standing.",
    0.7,
    "We would have to leave before sunrise though.",
    0.3,
    "Pack light, bring water, and keep your lantern dry.",
    0.9,
    "The last time I went that way it rained for three days.",
    0.5,
    "Nobody else on the road, just the sound of the river below.",
    0.6,
    "If we are lucky the inn at the crossing will have rooms.",
    0.35,
    "Otherwise we sleep under the old oak again, like last summer.",
    0.8,
    "I did not mind it, honestly, the stars were beautiful.",
    0.45,
    "Still, a real bed would be nice after a long day of walking.",
]


@pytest.fixture(scope="module")
def quiet_run(speech_dir, tmp_path_factory):
    """A quiet take: speech around -35 dBFS, digital silence between, pauses of 0.3-0.9 s."""
    root = tmp_path_factory.mktemp("quiet")
    raw = root / "raw"
    path = speak(SENTENCES_AND_PAUSES, raw / "quiet_take.wav", voice="en-us")
    speech, rate = sf.read(path, dtype="float32")
    voiced = np.abs(speech) > 0
    gain = 10 ** (QUIET_DBFS / 20) / np.sqrt(np.mean(speech[voiced].astype(np.float64) ** 2))
    sf.write(path, (speech * gain).astype(np.float32), rate, subtype="PCM_16")
    out = root / "out"
    assert prepare_audio.main([str(raw), str(out)]) == 0
    return out, list(csv.DictReader((out / dataset.MANIFEST_FILE).open()))


def test_quiet_recording_is_cut_only_in_pauses_with_default_flags(quiet_run, capsys):
    out, rows = quiet_run
    assert len(rows) >= 3
    shallow = []
    for row in rows:
        clip, _ = sf.read(out / dataset.clip_filename(row["clip"]), dtype="float64")
        clip_rms = segment.rms_dbfs(clip)
        for side, part, cut in (
            ("start", clip[EDGE], row["start_cut"]),
            ("end", clip[::-1][EDGE], row["end_cut"]),
        ):
            if cut == segment.CUT_FILE_EDGE:
                continue  # the source itself starts or ends there
            depth = clip_rms - segment.rms_dbfs(part)
            if depth < MIN_EDGE_DEPTH_DB:
                shallow.append((row["clip"], side, round(depth, 1)))
    assert shallow == [], "clip edges inside speech"
    assert {r["cut_method"] for r in rows} == {segment.METHOD_ADAPTIVE}
    assert all(float(r["threshold_dbfs"]) < -40.0 for r in rows)


def test_the_fixed_threshold_alone_would_cut_inside_quiet_speech(quiet_run):
    """What the adaptive threshold fixes: at -40 dBFS, quiet word endings read as pauses."""
    out, _rows = quiet_run
    audio, rate = sf.read(out.parent / "raw" / "quiet_take.wav", dtype="float32")
    builder = segment.EnvelopeBuilder(segment.frame_hop(rate))
    builder.add(audio)
    env = builder.finish()
    params = prepare.PrepareSettings(sample_rate=rate).split_params()
    fixed = segment.plan_clips(env, params)
    threshold, method = segment.choose_threshold(env, params.threshold_db)
    assert method == segment.METHOD_ADAPTIVE and threshold < params.threshold_db
    speech_frames = env > threshold
    # at -40 dBFS, some clip edges land on frames the adaptive threshold counts as speech
    edges = [c.start for c in fixed.clips if c.start > 0] + [
        c.end - 1 for c in fixed.clips if c.end < len(env)
    ]
    assert any(speech_frames[max(e - 2, 0) : e + 3].any() for e in edges)


def test_a_normal_level_recording_keeps_the_fixed_threshold():
    rng = np.random.default_rng(0)
    from voicelab.testing import speech_like_noise

    audio = speech_like_noise([(2.0, 0.8)] * 4, 24_000, level_dbfs=-18.0)[:, 0]
    builder = segment.EnvelopeBuilder(segment.frame_hop(24_000))
    builder.add(audio + 1e-5 * rng.standard_normal(len(audio)).astype(np.float32))
    assert segment.choose_threshold(builder.finish(), -40.0) == (-40.0, segment.METHOD_FIXED)


def test_summary_names_the_adaptive_files(quiet_run, tmp_path, capsys):
    out, _ = quiet_run
    assert prepare_audio.main([str(out.parent / "raw"), str(tmp_path / "again")]) == 0
    summary = capsys.readouterr().out
    assert "1 quiet one(s) at an adaptive threshold" in summary and "quiet_take.wav (" in summary


def test_truncated_wav_is_named_as_truncated_and_fails_the_run(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    from voicelab.testing import speech_like_noise

    audio = speech_like_noise([(3.5, 0.8)] * 4, 24_000)
    sf.write(raw / "good.wav", audio, 24_000, subtype="PCM_16")
    sf.write(tmp_path / "whole.wav", audio, 24_000, subtype="PCM_16")
    data = (tmp_path / "whole.wav").read_bytes()
    (raw / "cut_short.wav").write_bytes(data[: len(data) // 4])  # a download stopped at a quarter

    assert prepare_audio.main([str(raw), str(tmp_path / "out")]) == 1
    summary = capsys.readouterr().out
    line = next(line for line in summary.splitlines() if "cut_short.wav" in line)
    assert "truncated WAV" in line and "promises 17.2 s of audio but holds 4.3 s" in line
    assert "no clips from" not in summary  # not passed off as a file with too little speech
    rows = list(csv.DictReader((tmp_path / "out" / dataset.MANIFEST_FILE).open()))
    assert {r["source"] for r in rows} == {"good.wav"}


def test_streamed_wav_with_unknown_length_is_not_called_truncated(tmp_path):
    from voicelab.audio import open_audio

    path = tmp_path / "streamed.wav"
    sf.write(path, np.zeros(24_000, np.float32), 24_000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    data[at : at + 4] = (0xFFFFFFFF).to_bytes(4, "little")  # what a writer that cannot seek leaves
    path.write_bytes(bytes(data))
    assert open_audio(path).sample_rate == 24_000


def test_old_manifests_without_the_cut_method_still_read(tmp_path):
    rec = dataset.ClipRecord("a_000", "a.wav", 0.0, 3.0, 3.0, -20.0, -3.0, 1.0, False, "pause", "pause")
    path = tmp_path / dataset.MANIFEST_FILE
    cols = dataset.ClipRecord.older_field_names()
    row = rec.to_row()
    path.write_text(",".join(cols) + "\n" + ",".join(row[c] for c in cols) + "\n", encoding="utf-8")
    (back,) = dataset.read_manifest(path)
    assert back.cut_method == segment.METHOD_FIXED and back.threshold_dbfs is None


def _pink_noise(seconds: float, rate: int, level_dbfs: float, seed: int = 0) -> np.ndarray:
    """Pink (1/f power) noise at ``level_dbfs`` RMS: the spectrum of room tone and hiss."""
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, n)
    return (noise * 10 ** (level_dbfs / 20) / np.sqrt(np.mean(noise**2))).astype(np.float32)


@pytest.mark.parametrize("level_dbfs", [-66.0, -50.0])
def test_room_tone_alone_gives_no_clip(tmp_path, capsys, level_dbfs):
    """20 s of pink noise: no speech stands out of the floor, so nothing is called speech."""
    raw = tmp_path / "raw"
    raw.mkdir()
    sf.write(raw / "room_tone.wav", _pink_noise(20.0, 24_000, level_dbfs), 24_000, subtype="PCM_16")
    assert prepare_audio.main([str(raw), str(tmp_path / "out")]) == 0
    assert "clips written: 0" in capsys.readouterr().out
    assert not list((tmp_path / "out").glob("*.wav"))
    left_out = dataset.read_sources_left_out(tmp_path / "out")
    assert list(left_out) == ["room_tone.wav"]


def test_room_tone_keeps_its_level_spread_under_the_speech_rule():
    """What tells noise from a quiet take: pink noise's 10 ms levels spread over a few dB only."""
    audio = _pink_noise(20.0, 24_000, -66.0)
    builder = segment.EnvelopeBuilder(segment.frame_hop(24_000))
    builder.add(audio)
    env = builder.finish()
    spread = np.percentile(env, segment.SPEECH_LEVEL_PERCENTILE) - np.percentile(
        env, segment.NOISE_FLOOR_PERCENTILE
    )
    assert spread < segment.MIN_SPEECH_OVER_FLOOR_DB / 2
    assert segment.choose_threshold(env, -40.0) == (-40.0, segment.METHOD_FIXED)

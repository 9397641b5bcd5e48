"""prepare-audio end to end: formats and rates, clip format and loudness, clean edges, bad input, reruns."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO
from voicelab import audio, dataset, dataset_tiers, prepare, prepare_summary
from voicelab.cli import prepare_audio
from voicelab.prepare import PrepareSettings, prepare_dataset
from voicelab.testing import speak, speech_like_noise

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")

TARGET_RATE = 24000
TARGET_DBFS = -20.0
# The reference recording: 0.6 s room tone, 4.0 s speech, 0.8 s pause, 3.5 s speech, 0.7 s room tone.
LEAD_S, SPEECH1_S, PAUSE_S, SPEECH2_S, TAIL_S = 0.6, 4.0, 0.8, 3.5, 0.7
PAD_S = 0.15
EXPECTED_CLIPS = [
    (LEAD_S - PAD_S, LEAD_S + SPEECH1_S + PAD_S),
    (LEAD_S + SPEECH1_S + PAUSE_S - PAD_S, LEAD_S + SPEECH1_S + PAUSE_S + SPEECH2_S + PAD_S),
]


def reference(rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """The reference recording as float32 ``(T, channels)`` at ``rate``."""
    rng = np.random.default_rng(seed)
    lead = (10 ** (-70 / 20) * rng.standard_normal((round(LEAD_S * rate), 1))).astype(np.float32)
    body = speech_like_noise([(SPEECH1_S, PAUSE_S), (SPEECH2_S, TAIL_S)], rate, seed=seed)
    return np.repeat(np.concatenate([lead, body]), channels, axis=1)


def ffmpeg_encode(wav: Path, out: Path, *extra: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), *extra, str(out)], check=True)
    wav.unlink()


# name -> (sample rate, channels, how to write it)
FORMATS = {
    "u8_8k_mono.wav": (8000, 1, "PCM_U8"),
    "pcm16_11k_stereo.wav": (11025, 2, "PCM_16"),
    "pcm24_16k_mono.wav": (16000, 1, "PCM_24"),
    "pcm32_22k_stereo.wav": (22050, 2, "PCM_32"),
    "float_44k_6ch.wav": (44100, 6, "FLOAT"),
    "double_96k_stereo.wav": (96000, 2, "DOUBLE"),
    "flac_192k_stereo.flac": (192000, 2, "PCM_24"),
    "vorbis_48k_stereo.ogg": (48000, 2, "VORBIS"),
    "mp3_44k_stereo.mp3": (44100, 2, "MPEG_LAYER_III"),
    "aac_44k_stereo.m4a": (44100, 2, "ffmpeg"),
    "opus_48k_stereo.opus": (48000, 2, "ffmpeg"),
    "opus_48k_mono.webm": (48000, 1, "ffmpeg"),
}


@pytest.fixture(scope="module")
def formats_run(tmp_path_factory):
    """Every format/rate/channel layout of the reference recording, prepared in one run."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    root = tmp_path_factory.mktemp("formats")
    raw, out = root / "raw", root / "out"
    raw.mkdir()
    for name, (rate, channels, subtype) in FORMATS.items():
        signal = reference(rate, channels)
        if subtype == "ffmpeg":
            wav = raw / f".{name}.wav"
            sf.write(wav, signal, rate, subtype="FLOAT")
            ffmpeg_encode(wav, raw / name)
        else:
            sf.write(raw / name, signal, rate, subtype=subtype)
    report = prepare_dataset(raw, out, PrepareSettings(), progress=False)
    rows = list(csv.DictReader((out / dataset.MANIFEST_FILE).open()))
    return report, rows, out


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_rate_and_layout_is_cut_at_the_same_pauses(formats_run, name):
    _, rows, _ = formats_run
    cuts = [(float(r["start_s"]), float(r["end_s"])) for r in rows if r["source"] == name]
    lossy = Path(name).suffix in {".mp3", ".m4a", ".opus", ".webm", ".ogg"}  # encoder delay, pre-echo
    tolerance = 0.06 if lossy else 0.015
    assert len(cuts) == len(EXPECTED_CLIPS), cuts
    for (start, end), (want_start, want_end) in zip(cuts, EXPECTED_CLIPS, strict=True):
        assert start == pytest.approx(want_start, abs=tolerance)
        assert end == pytest.approx(want_end, abs=tolerance)


def test_all_formats_succeed_and_clips_are_named_by_stem_and_index(formats_run):
    report, rows, out = formats_run
    assert not report.failed
    expected = sorted(f"{Path(n).stem}_{i:03d}" for n in FORMATS for i in range(len(EXPECTED_CLIPS)))
    assert sorted(r["clip"] for r in rows) == expected  # the clip key, as in transcript.csv
    assert sorted(p.stem for p in out.glob("*.wav")) == expected
    assert [
        p.name for p in out.iterdir() if p.name.startswith(".") and p.name != dataset.LOCK_FILE
    ] == []  # no temp or scratch left


def test_clips_are_16bit_mono_wav_at_the_target_rate_within_the_duration_bounds(formats_run):
    _, rows, out = formats_run
    for row in rows:
        info = sf.info(out / dataset.clip_filename(row["clip"]))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (
            TARGET_RATE,
            1,
            "PCM_16",
            "WAV",
        )
        assert 3.0 <= info.duration <= 13.0
        assert info.duration == pytest.approx(float(row["duration_s"]), abs=1e-3)
        assert float(row["end_s"]) - float(row["start_s"]) == pytest.approx(info.duration, abs=1e-3)


def test_loudness_is_on_target_and_no_sample_clips(formats_run):
    _, rows, out = formats_run
    for row in rows:
        samples, _ = sf.read(out / dataset.clip_filename(row["clip"]), dtype="int16")
        assert np.abs(samples.astype(np.int32)).max() < audio.PCM16_MAX  # never at full scale
        level = 20 * np.log10(np.sqrt(np.mean((samples / audio.PCM16_MAX) ** 2)))
        if row["peak_limited"] == "no":
            assert level == pytest.approx(TARGET_DBFS, abs=0.5)
        else:
            assert level < TARGET_DBFS
        assert level == pytest.approx(float(row["rms_dbfs"]), abs=0.05)
        assert abs(samples[0]) <= 1 and abs(samples[-1]) <= 1  # faded in and out: no click


def test_peak_guard_lowers_the_gain_and_says_so(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    signal = 0.3 * reference(24000)[:, 0]  # speech at about -28 dBFS: the gain to -20 is about +8 dB
    clicks = np.arange(round(1.0 * 24000), round(4.0 * 24000), 2400)
    signal[clicks] = 0.9  # sparse clicks: low RMS, high peak, so -20 dBFS RMS would clip
    sf.write(raw / "clicky.wav", signal, 24000, subtype="FLOAT")
    prepare_dataset(raw, tmp_path / "out", progress=False)
    rows = list(csv.DictReader((tmp_path / "out" / dataset.MANIFEST_FILE).open()))
    first = rows[0]
    assert first["peak_limited"] == "yes"
    assert float(first["peak_dbfs"]) == pytest.approx(prepare.PEAK_CEILING_DBFS, abs=0.01)
    assert float(first["rms_dbfs"]) < TARGET_DBFS - 0.5


def test_normalise_hits_the_target_and_fades_start_from_zero():
    rng = np.random.default_rng(3)
    noise = (0.01 * rng.standard_normal(24000)).astype(np.float32)
    scaled, gain, limited = prepare.normalise(noise, -20.0)
    assert not limited and 20 * np.log10(np.sqrt(np.mean(scaled.astype(np.float64) ** 2))) == pytest.approx(
        -20.0
    )
    assert gain == pytest.approx(20.0, abs=0.2)  # noise at about -40 dBFS
    faded = prepare.apply_fades(np.ones(1000, np.float32), 240)
    assert faded[0] < 0.001 and faded[-1] < 0.001 and faded[500] == 1.0
    silent, gain, limited = prepare.normalise(np.zeros(100, np.float32), -20.0)
    assert gain == 0.0 and not limited and not silent.any()


@pytest.fixture(scope="module")
def espeak_run(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("espeak")
    speak(
        [
            "The quick brown fox jumps over the lazy dog, and then it runs away.",
            0.9,
            "Nobody saw where it went.",
            1.2,
            "Many years later, an old farmer said he had seen it near the river, drinking quietly at dawn.",
            0.7,
            "That was the end of the story.",
        ],
        root / "raw" / "story.wav",
    )
    # espeak-ng starts speaking at the first sample; a recording has room tone around the speech.
    speech, rate = sf.read(root / "raw" / "story.wav", dtype="float32")
    room_tone = np.zeros(round(0.5 * rate), np.float32)
    sf.write(root / "raw" / "story.wav", np.concatenate([room_tone, speech, room_tone]), rate)
    prepare_dataset(root / "raw", root / "out", progress=False)
    return root / "out", list(csv.DictReader((root / "out" / dataset.MANIFEST_FILE).open()))


def test_real_speech_clips_start_and_end_in_quiet_pads(espeak_run):
    out, rows = espeak_run
    assert len(rows) >= 2
    edge = slice(round(0.02 * TARGET_RATE), round(0.12 * TARGET_RATE))  # inside the pad, past the fade
    for row in rows:
        clip, _ = sf.read(out / dataset.clip_filename(row["clip"]), dtype="float32")
        threshold_after_gain = -40.0 + float(row["gain_db"])
        for part in (clip[edge], clip[::-1][edge]):
            level = 20 * np.log10(np.sqrt(np.mean(part.astype(np.float64) ** 2)) + 1e-12)
            assert level < threshold_after_gain, (row["clip"], level)
        assert (row["start_cut"], row["end_cut"]) == ("pause", "pause")


# ------------------------------------------------------------------------------------------ the CLI


@pytest.fixture
def good_wav(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    sf.write(raw / "good.wav", reference(22050), 22050, subtype="PCM_16")
    return raw


def run_cli(*args) -> int:
    return prepare_audio.main([str(a) for a in args])


def test_help_is_instant_and_shows_defaults():
    proc = subprocess.run(
        [sys.executable, "scripts/prepare_audio.py", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0
    for flag, default in [
        ("--sample-rate", "24000"),
        ("--silence-min-len", "500"),
        ("--target-loudness", "-20.0"),
    ]:
        assert flag in proc.stdout and f"(default: {default})" in proc.stdout


@pytest.mark.parametrize(
    "flags",
    [
        ["--min-duration", "13", "--max-duration", "3"],
        ["--min-duration", "5", "--max-duration", "5"],
        ["--sample-rate", "0"],
        ["--sample-rate", "-24000"],
        ["--min-duration", "0"],
        ["--max-duration", "-1"],
        ["--silence-min-len", "0"],
        ["--silence-threshold", "10"],
        ["--sample-rate", "100"],  # positive but below any speech rate
        ["--min-duration", "nan"],  # float() takes nan/inf: they used to end in a traceback
        ["--max-duration", "inf"],
        ["--silence-threshold", "nan"],  # used to pass and silently make nothing count as silence
        ["--target-loudness", "-inf"],
    ],
)
def test_bad_flags_are_argparse_errors(good_wav, tmp_path, flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(good_wav, tmp_path / "out", *flags)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_or_empty_input_and_output_inside_input_exit_2(tmp_path, good_wav, capsys):
    assert run_cli(tmp_path / "nowhere", tmp_path / "out") == 2
    assert "nowhere does not exist" in capsys.readouterr().err
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("no audio here")
    assert run_cli(tmp_path / "docs", tmp_path / "out") == 2
    assert "holds no audio files" in capsys.readouterr().err
    assert run_cli(good_wav, good_wav / "clips") == 2
    assert "inside INPUT" in capsys.readouterr().err
    assert run_cli(good_wav, good_wav) == 2
    assert not (good_wav / "clips").exists() and not (good_wav / dataset.MANIFEST_FILE).exists()


def test_a_single_file_input_works(good_wav, tmp_path, capsys):
    assert run_cli(good_wav / "good.wav", tmp_path / "out") == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.wav")) == ["good_000.wav", "good_001.wav"]
    summary = capsys.readouterr().out
    assert "clips written: 2" in summary and "Dataset: 2 clips" in summary and "Too few" in summary


def test_bad_files_are_reported_one_line_each_and_the_rest_is_prepared(good_wav, tmp_path, capsys):
    (good_wav / "notes.mp3").write_text("not audio at all\n")
    (good_wav / "empty.wav").write_bytes(b"")
    (good_wav / "random.ogg").write_bytes(np.random.default_rng(0).bytes(5000))
    flac = tmp_path / "whole.flac"
    sf.write(flac, reference(44100, 2), 44100)
    (good_wav / "truncated.flac").write_bytes(flac.read_bytes()[: flac.stat().st_size // 3])
    sf.write(good_wav / "silent.wav", np.zeros(24000 * 5, np.float32), 24000)
    out = tmp_path / "out"
    assert run_cli(good_wav, out) == 1
    summary = capsys.readouterr().out
    bad = ["notes.mp3", "empty.wav", "random.ogg", "truncated.flac"]
    failure_lines = [line for line in summary.splitlines() if any(name in line for name in bad)]
    assert len(failure_lines) == len(bad)  # one line per bad file, naming it
    assert "not a readable audio file" in summary and "file is empty" in summary
    assert "no clips from 1 file(s): silent.wav" in summary
    rows = list(csv.DictReader((out / dataset.MANIFEST_FILE).open()))
    assert {r["source"] for r in rows} == {"good.wav"}
    assert sorted(p.name for p in out.glob("*.wav")) == ["good_000.wav", "good_001.wav"]


def test_a_file_name_that_is_not_utf8_is_named_skipped_and_the_rest_prepared(good_wav, tmp_path, capsys):
    import os

    shutil.copy(good_wav / "good.wav", os.fsencode(good_wav) + b"/bad\xff.wav")
    out = tmp_path / "out"
    assert run_cli(good_wav, out) == 1
    summary = capsys.readouterr().out
    assert "bad\\xff.wav: the file name is not valid UTF-8" in summary
    assert {r["source"] for r in csv.DictReader((out / dataset.MANIFEST_FILE).open())} == {"good.wav"}
    assert not (out / dataset.SOURCES_LEFT_OUT_FILE).exists()  # it cannot hold the name either
    assert run_cli(good_wav, out) == 1  # named again, and the good file is not redone
    summary = capsys.readouterr().out
    assert "1 already done (skipped)" in summary and "clips written: 0" in summary
    assert "bad\\xff.wav" in summary


@needs_ffmpeg
def test_missing_ffmpeg_says_to_install_it(good_wav, tmp_path, monkeypatch, capsys):
    wav = tmp_path / "talk.wav"
    sf.write(wav, reference(44100, 2), 44100)
    ffmpeg_encode(wav, good_wav / "talk.m4a")
    empty_bin = tmp_path / "empty_bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    assert run_cli(good_wav, tmp_path / "out") == 1
    summary = capsys.readouterr().out
    assert "talk.m4a: ffmpeg is needed" in summary and "install" in summary
    assert (tmp_path / "out" / "good_000.wav").exists()


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.wav")}


def test_rerun_skips_done_sources_adds_new_ones_and_overwrite_redoes(good_wav, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(good_wav, out) == 0
    manifest = (out / dataset.MANIFEST_FILE).read_bytes()
    before = _mtimes(out)
    assert run_cli(good_wav, out) == 0
    assert "1 already done (skipped)" in capsys.readouterr().out
    assert (out / dataset.MANIFEST_FILE).read_bytes() == manifest and _mtimes(out) == before

    sf.write(good_wav / "later.flac", reference(48000, 2, seed=5), 48000)
    assert run_cli(good_wav, out) == 0
    after = _mtimes(out)
    assert {k: after[k] for k in before} == before  # old clips untouched
    assert sorted(set(after) - set(before)) == ["later_000.wav", "later_001.wav"]
    rows = list(csv.DictReader((out / dataset.MANIFEST_FILE).open()))
    assert [r["source"] for r in rows] == ["good.wav"] * 2 + ["later.flac"] * 2
    assert "Dataset: 4 clips" in capsys.readouterr().out

    (out / "good_007.wav").write_bytes(b"stale clip from an older run")
    assert run_cli(good_wav, out, "--overwrite") == 0
    assert sorted(_mtimes(out)) == ["good_000.wav", "good_001.wav", "later_000.wav", "later_001.wav"]
    assert all(_mtimes(out)[k] != after[k] for k in after)


def test_a_crash_never_leaves_a_manifest_row_without_its_clip(good_wav, tmp_path, monkeypatch):
    sf.write(good_wav / "zzz.wav", reference(16000, seed=2), 16000)
    out = tmp_path / "out"
    real_write = audio.write_wav
    calls = []

    def crash_on_third_clip(path, samples, rate):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C while zzz.wav was being cut
        return real_write(path, samples, rate)

    monkeypatch.setattr(audio, "write_wav", crash_on_third_clip)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(good_wav, out, progress=False)
    rows = list(csv.DictReader((out / dataset.MANIFEST_FILE).open()))
    assert [r["clip"] for r in rows] == ["good_000", "good_001"]
    assert all((out / dataset.clip_filename(r["clip"])).exists() for r in rows)
    assert [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != dataset.LOCK_FILE] == []

    monkeypatch.setattr(audio, "write_wav", real_write)
    prepare_dataset(good_wav, out, progress=False)
    rows = list(csv.DictReader((out / dataset.MANIFEST_FILE).open()))
    assert [r["clip"] for r in rows] == ["good_000", "good_001", "zzz_000", "zzz_001"]
    assert sorted(p.stem for p in out.glob("*.wav")) == [r["clip"] for r in rows]


def test_same_file_names_in_different_folders_get_distinct_clip_names(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / "raw" / folder).mkdir(parents=True)
        sf.write(tmp_path / "raw" / folder / "talk.wav", reference(24000), 24000)
    report = prepare_dataset(tmp_path / "raw", tmp_path / "out", progress=False)
    assert [(r.key, r.source) for r in report.dataset] == [
        ("talk_000", "a/talk.wav"),
        ("talk_001", "a/talk.wav"),
        ("b_talk_000", "b/talk.wav"),
        ("b_talk_001", "b/talk.wav"),
    ]


def test_dataset_levels_follow_the_guide_table():
    assert dataset_tiers.dataset_level(3)[2] == "Too few"
    assert dataset_tiers.dataset_level(7)[2] == "Poor"
    assert dataset_tiers.dataset_level(10)[2] == "Poor"
    assert dataset_tiers.dataset_level(15)[2] == "Poor to moderate"  # the gap in the guide's table
    assert dataset_tiers.dataset_level(20)[2] == "Moderate"
    assert dataset_tiers.dataset_level(99)[2] == "Good"
    assert dataset_tiers.dataset_level(150)[2] == "Very good"
    assert dataset_tiers.dataset_level(200)[2] == "Diminishing returns"


def test_dataset_level_is_the_lower_of_clips_and_minutes():
    # 70 clips of 6 min: "Good" by clips, "Moderate" by minutes -> Moderate
    assert dataset_tiers.dataset_level(70, 6.0)[2] == "Moderate"
    assert dataset_tiers.dataset_level(70, 16.0)[2] == "Good"
    assert dataset_tiers.dataset_level(250, 31.0)[2] == "Very good"
    assert dataset_tiers.dataset_level(30, 0.5)[2] == "Too few"
    assert dataset_tiers.level_basis(70, 6.0) == "70 clips reach Good, 6.0 min only Moderate"
    assert dataset_tiers.level_basis(30, 20.0) == "20.0 min reach Good, 30 clips only Moderate"
    assert dataset_tiers.level_basis(60, 20.0) == "60 clips and 20.0 min both reach Good"


def test_duration_histogram_reads_as_aligned_one_second_bins():
    lines = prepare_summary.duration_histogram([3.2, 4.5, 4.6, 9.9, 12.0, 13.0], 3.0, 13.0, width=10)
    assert len(lines) == 10  # 3-4 s ... 12-13 s
    assert lines[0] == "    3-4 s | #####      1"
    assert lines[1] == "    4-5 s | ########## 2"
    assert lines[-1] == "  12-13 s | ########## 2"  # a clip of exactly --max-duration lands in the last bin
    assert len({line.index("|") for line in lines}) == 1  # bars start in one column
    assert sum(int(line.split()[-1]) for line in lines) == 6


def test_an_output_folder_name_that_cannot_be_a_voice_name_is_warned_with_a_better_one(
    good_wav, tmp_path, caplog
):
    from voicelab.voice import suggest_voice_name, validate_voice_name

    assert prepare_audio.main([str(good_wav), str(tmp_path / "prepared" / "Old Keeper")]) == 0
    warning = caplog.text
    assert "'Old Keeper' cannot be a voice name" in warning
    assert str(tmp_path / "prepared" / "Old_Keeper") in warning
    caplog.clear()
    assert prepare_audio.main([str(good_wav), str(tmp_path / "prepared" / "old_keeper")]) == 0
    assert "cannot be a voice name" not in caplog.text
    for odd in ("Old Keeper", "élan vital!", "a" * 80, "???", "ok-name_1"):
        assert validate_voice_name(suggest_voice_name(odd))
    assert suggest_voice_name("ok-name_1") == "ok-name_1"

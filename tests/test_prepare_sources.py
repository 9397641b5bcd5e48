"""prepare-audio on sources with other voices and music: --reference, --speaker auto, --music-bed.

The recordings are built once per session (conftest ``built_sources``) from espeak-ng voices that the GE2E
speaker encoder tells apart: the character is ``en-us``; the others are ``en-us+f3``, ``en-gb-x-rp+f2``
and ``en-us+klatt`` (0.54-0.76 against the character's 0.78-0.93, docs/benchmarks.md). Two accents of one
espeak voice (``en-us`` and ``en-gb-x-rp``) and ``en-us+croak`` are one speaker to the encoder (0.88-0.96):
no test uses them as "another voice", and one test shows the encoder cannot separate them.
"""

from __future__ import annotations

import contextlib
import csv
import io

import numpy as np
import pytest
import soundfile as sf

from voicelab import dataset, segment, speaker_turns
from voicelab.cli import prepare_audio
from voicelab.testing import conversations as cv

MIN_CHARACTER_KEPT = 0.95  # of the character's speech in turns of 3 s or more
MAX_OTHER_SHARE = 0.01  # of the speech seconds inside kept clips


def _rows(out):
    return list(csv.DictReader((out / dataset.MANIFEST_FILE).open()))


@pytest.fixture(scope="module")
def with_reference(built_sources, tmp_path_factory):
    """The one end-to-end run in the default test run: the folder, one reference, default flags."""
    out = tmp_path_factory.mktemp("with_reference") / "out"
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        code = prepare_audio.main(
            [str(built_sources["raw"]), str(out), "--reference", str(built_sources["reference"])]
        )
    assert "check that --reference" not in summary.getvalue()  # the character is most of the speech here
    return code, out


def test_reference_keeps_the_character_and_nobody_else(built_sources, with_reference, capsys):
    code, out = with_reference
    assert code == 0
    rows = _rows(out)
    talks = cv.score(built_sources["talks"], rows)
    assert talks.character_kept >= MIN_CHARACTER_KEPT, talks
    assert talks.other_share <= MAX_OTHER_SHARE, talks
    everything = cv.score([*built_sources["talks"], built_sources["music_take"]], rows)
    assert everything.two_voice_clips == [], everything
    assert everything.music_only_clips == [], everything
    # default --music-bed drop: the music take gives no clip; it is named, with the reason
    assert not [r for r in rows if r["source"] == "music_take.wav"]
    assert "music" in dataset.read_sources_left_out(out)["music_take.wav"].reason


def test_manifest_and_summary_say_what_was_kept(built_sources, with_reference):
    _code, out = with_reference
    rows = _rows(out)
    assert all(float(r["speaker_similarity"]) >= speaker_turns.SPEAKER_THRESHOLD for r in rows)
    assert {r["music"] for r in rows} == {"no"}
    assert any(segment.CUT_VOICE in (r["start_cut"], r["end_cut"]) for r in rows)
    per_source = dataset.PreparedDataset(out).read_source_voices()
    assert set(per_source) == {"talk_one.wav", "talk_two.wav", "music_take.wav"}
    for name in ("talk_one.wav", "talk_two.wav"):
        assert per_source[name].other_voices_min > 0.1 and per_source[name].kept_min > 0.5
    assert per_source["music_take.wav"].music_min > 0.5 and per_source["music_take.wav"].kept_min == 0


def test_without_flags_other_voices_are_kept_as_today(built_sources, tmp_path):
    """What --reference fixes: cut only at pauses, clips hold the host's voice too."""
    out = tmp_path / "out"
    assert prepare_audio.main([str(built_sources["raw"]), str(out)]) == 0
    score = cv.score(built_sources["talks"], _rows(out))
    assert score.other_share > 0.1 and score.two_voice_clips
    # and the music intro becomes clips: music is looked for only when a voice is kept
    assert cv.score([built_sources["music_take"]], _rows(out)).music_only_clips


@pytest.mark.slow
def test_speaker_auto_picks_the_voice_that_speaks_most(built_sources, tmp_path, capsys):
    out = tmp_path / "out"
    assert prepare_audio.main([str(built_sources["raw"]), str(out), "--speaker", "auto"]) == 0
    summary = capsys.readouterr().out
    assert "voice kept (--speaker auto): the one that speaks most" in summary
    assert "other voices found: " in summary
    rows = _rows(out)
    score = cv.score(built_sources["talks"], rows)
    assert score.character_kept >= MIN_CHARACTER_KEPT and score.other_share <= MAX_OTHER_SHARE, score
    assert score.two_voice_clips == []
    # a rerun with a new recording keeps the voice the first run picked (the dataset stays one voice)
    raw = tmp_path / "raw"
    raw.mkdir()
    for item in built_sources["raw"].iterdir():
        (raw / item.name).symlink_to(item)
    cv.build_recording(
        [("en-us+f3", cv.OTHER_LINES[3]), 0.3, (cv.TARGET_VOICE, cv.TARGET_LINES[9])], raw / "new.wav"
    )
    assert prepare_audio.main([str(raw), str(out), "--speaker", "auto"]) == 0
    summary = capsys.readouterr().out
    assert "the one an earlier run picked" in summary
    assert [r for r in _rows(out) if r["source"] == "new.wav"]


def test_music_bed_keep_marks_the_clips_over_music(built_sources, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "music_take.wav").symlink_to(built_sources["music_take"].path)
    out = tmp_path / "out"
    args = [str(raw), str(out), "--reference", str(built_sources["reference"]), "--music-bed", "keep"]
    assert prepare_audio.main(args) == 0
    rows = _rows(out)
    assert rows and {r["music"] for r in rows} == {"bed"}
    score = cv.score([built_sources["music_take"]], rows)
    assert score.music_only_clips == [] and score.two_voice_clips == []
    # the first 20 s are music alone: no clip starts there
    assert min(float(r["start_s"]) for r in rows) >= 19.0


def test_a_recording_where_the_character_never_speaks_is_named(built_sources, tmp_path, capsys):
    raw = tmp_path / "raw"
    cv.build_recording(
        [
            ("en-us+f3", cv.OTHER_LINES[0]),
            0.4,
            ("en-us+klatt", cv.OTHER_LINES[1]),
            0.3,
            ("en-us+f3", cv.OTHER_LINES[2]),
        ],
        raw / "hosts_only.wav",
    )
    out = tmp_path / "out"
    assert prepare_audio.main([str(raw), str(out), "--reference", str(built_sources["reference"])]) == 0
    summary = capsys.readouterr().out
    assert "the character never speaks in 1 file(s)" in summary and "hosts_only.wav" in summary
    assert "the reference's voice is 0% of the speech judged" in summary
    assert "check that --reference is a clean recording of the character alone" in summary
    reason = dataset.read_sources_left_out(out)["hosts_only.wav"].reason
    assert "never speaks" in reason


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        ("missing", "no such file"),
        ("text", "not usable audio"),
        ("silent", "silence only"),
        ("short", "under the 2 s a reference needs"),
        ("two_voices", "holds two voices"),
    ],
)
def test_a_bad_reference_gets_one_line_and_exit_2(built_sources, tmp_path, capsys, make, expected):
    ref = tmp_path / f"{make}.wav"
    if make == "text":
        ref.write_text("not audio at all")
    elif make == "silent":
        sf.write(ref, np.zeros(24_000 * 3, np.float32), 24_000)
    elif make == "short":
        cv.build_recording([(cv.TARGET_VOICE, "Hello.")], ref)
    elif make == "two_voices":
        cv.build_recording([(cv.TARGET_VOICE, cv.TARGET_LINES[0]), 0.4, ("en-us+f3", cv.OTHER_LINES[0])], ref)
    out = tmp_path / "out"
    assert prepare_audio.main([str(built_sources["raw"]), str(out), "--reference", str(ref)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and str(ref) in err[0], err
    assert not out.exists()  # reported before anything is written


@pytest.mark.parametrize("flag", [["--music-bed", "keep"], ["--speaker-threshold", "0.8"]])
def test_a_voice_flag_without_a_voice_to_keep_is_a_usage_error(tmp_path, capsys, flag):
    """--music-bed and --speaker-threshold tune keeping one voice: alone they would do nothing, silently."""
    raw = tmp_path / "raw"
    raw.mkdir()
    with pytest.raises(SystemExit) as exit_:
        prepare_audio.main([str(raw), str(tmp_path / "out"), *flag])
    assert exit_.value.code == 2
    assert f"{flag[0]} applies only with --reference or --speaker auto" in capsys.readouterr().err


@pytest.mark.slow
def test_the_encoder_cannot_tell_two_accents_of_one_espeak_voice(built_sources, tmp_path):
    """en-gb-x-rp is en-us with British vowels: one speaker to GE2E, so it is never used as 'another
    voice' in these tests."""
    reference = speaker_turns.load_reference([built_sources["reference"]])
    for voice in cv.SAME_SPEAKER_VOICES:
        other = cv.build_recording([(voice, cv.TARGET_LINES[1])], tmp_path / f"{voice}.wav")
        emb, _, _ = speaker_turns.reference_windows(other.path)
        assert float(np.mean(emb @ reference.embedding)) >= speaker_turns.SPEAKER_THRESHOLD, voice
    for voice in cv.OTHER_VOICES:
        other = cv.build_recording([(voice, cv.TARGET_LINES[1])], tmp_path / f"{voice}.wav")
        emb, _, _ = speaker_turns.reference_windows(other.path)
        assert float(np.max(emb @ reference.embedding)) < speaker_turns.SPEAKER_THRESHOLD, voice


def test_old_manifests_without_the_voice_columns_still_read(tmp_path):
    rec = dataset.ClipRecord(
        "a_000", "a.wav", 0.0, 3.0, 3.0, -20.0, -3.0, 1.0, False, "pause", "pause", "fixed", -40.0
    )
    path = tmp_path / dataset.MANIFEST_FILE
    cols = dataset.ClipRecord.field_names()[:-2]
    row = rec.to_row()
    path.write_text(",".join(cols) + "\n" + ",".join(row[c] for c in cols) + "\n", encoding="utf-8")
    (back,) = dataset.read_manifest(path)
    assert back.speaker_similarity is None and back.music == ""


def test_the_dataset_report_shows_the_minutes_dropped_per_source(built_sources, with_reference):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from voicelab.dataset import ClipSignals
    from voicelab.dataset_report import _dropped_bars, write_dataset_report
    from voicelab.review import SpeakerContext

    _code, out = with_reference
    _fig, ax = plt.subplots()
    names = ["talk_one.wav", "talk_two.wav"]
    ds = dataset.PreparedDataset(out)
    voices = ds.read_source_voices()
    _dropped_bars(ax, names, [1.0, 1.0], voices)
    widths = sorted(round(p.get_width(), 3) for p in ax.patches)
    assert widths == sorted(
        round(w, 3) for n in names for w in (voices[n].other_voices_min, voices[n].music_min)
    )
    plt.close("all")
    clips = [ClipSignals(r["clip"], "text", float(r["duration_s"])) for r in _rows(out)]
    png = write_dataset_report(ds, clips, SpeakerContext({}, None))
    assert png.stat().st_size > 0

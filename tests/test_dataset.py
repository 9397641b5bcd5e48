"""The prepared folder's module: one clip key everywhere, exclusions, and the folder check."""

from __future__ import annotations

import pytest

from voicelab import dataset
from voicelab.errors import UsageError
from voicelab.training import dataset as training_data


def test_one_clip_key_whatever_the_spelling(tmp_path):
    assert dataset.clip_key("talk_003") == dataset.clip_key("talk_003.wav") == "talk_003"
    assert dataset.clip_key(tmp_path / "talk_003.wav") == "talk_003"
    assert dataset.clip_filename("talk_003.wav") == "talk_003.wav"
    assert dataset.indexed_key("talk", 7) == "talk_007"


def test_transcript_rows_named_with_wav_are_read_as_keys(tmp_path):
    path = tmp_path / dataset.TRANSCRIPT_FILE
    path.write_text("filename,text\nclip_001.wav,Hello.\nclip_000,Hi.\n", encoding="utf-8")
    assert dataset.read_transcript(path) == [("clip_001", "Hello."), ("clip_000", "Hi.")]
    dataset.write_transcript(path, dataset.read_transcript(path))
    assert path.read_text(encoding="utf-8") == "filename,text\nclip_000,Hi.\nclip_001,Hello.\n"


def test_exclusions_round_trip_and_disappear_when_empty(tmp_path):
    assert dataset.read_exclusions(tmp_path) == {}
    dataset.write_exclusions(tmp_path, {"b.wav": "other speaker, similarity 0.41", "a": "music bed"})
    assert (tmp_path / dataset.EXCLUDED_FILE).read_text(encoding="utf-8").splitlines() == [
        "filename,reason",
        "a,music bed",
        'b,"other speaker, similarity 0.41"',
    ]
    assert dataset.read_exclusions(tmp_path) == {"a": "music bed", "b": "other speaker, similarity 0.41"}
    dataset.write_exclusions(tmp_path, {})
    assert not (tmp_path / dataset.EXCLUDED_FILE).exists()


def test_training_skips_excluded_clips_with_the_reason_and_keeps_their_text(tmp_path):
    dataset.write_transcript(tmp_path / dataset.TRANSCRIPT_FILE, [("a", "One."), ("b", "Two.")])
    dataset.write_exclusions(tmp_path, {"b": "not the character"})
    rows, skipped = training_data.read_training_rows(
        tmp_path / dataset.TRANSCRIPT_FILE, dataset.read_exclusions(tmp_path)
    )
    assert [r.key for r in rows] == ["a"]
    assert [(s.key, s.reason) for s in skipped] == [("b", "excluded (excluded.csv): not the character")]
    assert dict(dataset.read_transcript(tmp_path / dataset.TRANSCRIPT_FILE))["b"] == "Two."


@pytest.mark.parametrize("make", ["missing", "file"])
def test_a_dataset_folder_that_is_not_one_is_a_usage_error(tmp_path, make):
    path = tmp_path / "prepared"
    if make == "file":
        path.write_text("x")
    with pytest.raises(UsageError, match="make prepare-audio"):
        dataset.require_dataset_dir(path)
    with pytest.raises(dataset.DatasetError):
        dataset.find_clips(path)


def test_old_manifests_with_wav_names_read_as_keys(tmp_path):
    record = dataset.ClipRecord(
        "t_000", "t.wav", 0.0, 3.0, 3.0, -20.0, -3.0, 1.0, False, "file-edge", "pause"
    )
    dataset.write_manifest(tmp_path / dataset.MANIFEST_FILE, [record])
    text = (tmp_path / dataset.MANIFEST_FILE).read_text().replace("t_000,", "t_000.wav,")
    (tmp_path / dataset.MANIFEST_FILE).write_text(text)
    assert dataset.read_manifest(tmp_path / dataset.MANIFEST_FILE) == [record]

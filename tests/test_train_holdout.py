"""train-lora --eval-clips: which clips are held out, the eval loss in the log and curve, voice.json."""

from __future__ import annotations

import csv
import math

import pytest

from test_train_lora import common_args, make_dataset
from voicelab.cli import train_lora
from voicelab.training import holdout
from voicelab.training.report import loss_points
from voicelab.voice import LossPoint, VoiceFolder, VoiceMetadata


def test_default_share_is_five_percent_with_a_floor_of_two_from_twenty_clips():
    assert holdout.default_eval_count(19) == 0
    assert holdout.default_eval_count(20) == 2
    assert holdout.default_eval_count(100) == 5
    assert holdout.default_eval_count(1000) == 50


def test_choice_is_deterministic_per_seed_and_keeps_the_order():
    names = [f"clip_{i:03d}" for i in range(100)]
    first = holdout.choose_eval_clips(names, 5, seed=1)
    assert first == holdout.choose_eval_clips(names, 5, seed=1)
    assert first != holdout.choose_eval_clips(names, 5, seed=2)
    assert len(first) == 5 and first == sorted(first)
    assert holdout.choose_eval_clips(names, 0, seed=1) == []


def test_whole_recordings_are_held_out_when_the_manifest_names_them():
    names = [f"clip_{i:03d}" for i in range(60)]
    sources = {n: f"rec{i // 3}.wav" for i, n in enumerate(names)}  # 20 recordings of 3 clips
    for seed in range(5):
        chosen = holdout.choose_eval_clips(names, 3, seed=seed, sources=sources)
        held_sources = {sources[n] for n in chosen}
        trained_sources = {sources[n] for n in names if n not in chosen}
        assert len(chosen) >= 3 and not held_sources & trained_sources


def test_one_long_recording_falls_back_to_single_clips(caplog):
    names = [f"clip_{i:03d}" for i in range(40)]
    sources = {n: ("long.wav" if i < 39 else "short.wav") for i, n in enumerate(names)}
    chosen = holdout.choose_eval_clips(names, 3, seed=0, sources=sources)
    assert len(chosen) == 3
    assert "share a recording" in caplog.text


def test_holding_out_every_clip_is_refused():
    with pytest.raises(holdout.HoldoutError, match="at least one must stay"):
        holdout.choose_eval_clips(["a", "b"], 2, seed=0)


def test_eval_entries_merge_into_the_training_points_by_step():
    history = [
        {"loss": 2.0, "learning_rate": 1e-4, "grad_norm": 1.0, "epoch": 0.5, "step": 2},
        {"eval_loss": 2.5, "epoch": 0.5, "step": 2},
        {"eval_loss": 2.4, "epoch": 0.75, "step": 3},
        {"train_runtime": 1.0, "train_loss": 2.0, "epoch": 1.0, "step": 3},
    ]
    assert loss_points(history) == [
        LossPoint(2, 0.5, 2.0, 1e-4, 1.0, eval_loss=2.5),
        LossPoint(3, 0.75, None, eval_loss=2.4),
    ]


@pytest.fixture(scope="module")
def held_out_voice(tmp_path_factory, tiny_orpheus_dir, tiny_snac_dir):
    root = tmp_path_factory.mktemp("holdout")
    data = make_dataset(root / "data")
    voices = root / "voices"
    args = common_args(voices, tiny_orpheus_dir, tiny_snac_dir)
    rc = train_lora.main(
        [
            "hana",
            str(data),
            *args,
            "--eval-clips",
            "1",
            "--max-steps",
            "3",
            "--logging-steps",
            "2",
            "--eval-steps",
            "2",
            "--no-early-stop",
        ]
    )
    return rc, voices / "hana"


def test_held_out_clip_is_scored_and_recorded(held_out_voice):
    rc, voice = held_out_voice
    assert rc == 0
    meta = VoiceMetadata.read(voice)
    assert len(meta.eval_clips) == 1 and meta.eval_clips[0] in {"clip0", "clip1", "stereo"}
    assert meta.dataset["clips_used"] == 2 and meta.dataset["clips_held_out"] == 1
    assert meta.final_eval_loss is not None and math.isfinite(meta.final_eval_loss)
    points = VoiceFolder(voice).read_loss_log()
    assert [p.step for p in points] == [2, 3]
    assert all(p.eval_loss is not None and math.isfinite(p.eval_loss) for p in points)
    assert points[-1].eval_loss == pytest.approx(meta.final_eval_loss, abs=1e-6)
    # --no-early-stop: every step trained, the last one published, whatever the eval loss did
    assert not meta.stopping["early_stopping"] and meta.stopping["stop_reason"] == "completed"
    assert meta.stopping["published_step"] == meta.stopping["stopped_at_step"] == 3
    assert "--no-early-stop" in meta.stopping["stop_detail"]
    with VoiceFolder(voice).loss_log_path.open(newline="") as f:
        assert "eval_loss" in next(csv.reader(f))
    assert VoiceFolder(voice).loss_curve_path.read_bytes().startswith(b"\x89PNG")


def test_small_dataset_holds_out_nothing_by_default_and_says_so(
    tmp_path, tiny_orpheus_dir, tiny_snac_dir, caplog
):
    data = make_dataset(tmp_path / "data")
    args = common_args(tmp_path / "voices", tiny_orpheus_dir, tiny_snac_dir)
    assert train_lora.main(["ivan", str(data), *args, "--max-steps", "1", "--logging-steps", "1"]) == 0
    meta = VoiceMetadata.read(tmp_path / "voices" / "ivan")
    assert meta.eval_clips == [] and meta.final_eval_loss is None
    assert "none is held out" in caplog.text
    assert all(p.eval_loss is None for p in VoiceFolder(tmp_path / "voices" / "ivan").read_loss_log())


def test_eval_clips_must_leave_a_training_clip(tmp_path, tiny_orpheus_dir, tiny_snac_dir, capsys):
    data = make_dataset(tmp_path / "data")
    args = common_args(tmp_path / "voices", tiny_orpheus_dir, tiny_snac_dir)
    assert train_lora.main(["jo", str(data), *args, "--eval-clips", "3"]) == 2
    assert "at least one must stay" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        train_lora.main(["jo", str(data), *args, "--eval-clips", "-1"])
    assert exit_info.value.code == 2 and "--eval-clips" in capsys.readouterr().err

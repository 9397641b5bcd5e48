"""train-lora chooses its own length: --epochs auto from the guide's table, early stopping on the held-out
eval loss with the best checkpoint published, and Ctrl-C + --resume keeping the best-so-far record.

The datasets here are built code by code: each clip's SNAC frames are put in the code cache under the key
of its WAV (snac_codec's public cache), so train-lora takes the real path from the cache on and the test
decides exactly what the model sees. Training clips repeat one frame; the held-out clip repeats another
("unlike the training clips"), so once the model memorises the training frame the eval loss rises. The
base model is the tiny one with a real model's logit range (``testing.SHARP_OUTPUT_SCALE``): the plain
tiny model cannot become confident enough to overfit in a few steps.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from test_train_lora import common_args, write_transcript
from voicelab import orpheus, testing
from voicelab.audio import write_wav
from voicelab.cli import train_lora
from voicelab.dataset import PreparedDataset
from voicelab.training import build, holdout, length, snac_codec
from voicelab.training import dataset as ds
from voicelab.voice import ADAPTER_WEIGHTS_FILE, LossPoint, VoiceFolder, VoiceMetadata, checkpoints_dir

SR = orpheus.SAMPLE_RATE
CLIP_FRAMES = 6  # 42 audio tokens: the memorised part outweighs the shared prompt once learnt
TEXT = "Hi."
OVERFIT_LR = "5e-3"  # with a constant rate the eval loss turns after about 4 steps (measured)
PATIENCE = 3
CLIPS = ("a", "b", "c")
TRAIN_FRAME, OTHER_FRAME = np.random.default_rng(0).integers(0, orpheus.CODEBOOK_SIZE, (2, 1, 7))


@pytest.fixture(scope="module")
def sharp_orpheus_dir(tmp_path_factory):
    return testing.build_tiny_orpheus(
        tmp_path_factory.mktemp("sharp_orpheus"), output_scale=testing.SHARP_OUTPUT_SCALE
    )


def held_out_name(seed: int = 42) -> str:
    """The clip train-lora holds out with --eval-clips 1 (the real choice, so the test can make it differ)."""
    return holdout.choose_eval_clips(list(CLIPS), 1, seed)[0]


def make_coded_dataset(folder: Path, snac_dir: Path, *, held_out_unlike: bool) -> Path:
    """Three clips saying TEXT: the training ones with TRAIN_FRAME repeated, the held-out one with
    OTHER_FRAME (``held_out_unlike``) or TRAIN_FRAME too. Their codes go into the SNAC cache."""
    folder.mkdir(parents=True)
    cache = snac_codec.CodeCache(PreparedDataset(folder).snac_cache_dir)
    fingerprint = snac_codec.checkpoint_fingerprint(str(snac_dir))
    held = held_out_name()
    for seed, name in enumerate(CLIPS):
        noise = np.random.default_rng(seed).uniform(-0.1, 0.1, CLIP_FRAMES * orpheus.SAMPLES_PER_FRAME)
        write_wav(folder / f"{name}.wav", noise.astype(np.float32), SR)
        audio = ds.load_clip_audio(ds.Clip(name, folder / f"{name}.wav", TEXT))
        frame = OTHER_FRAME if name == held and held_out_unlike else TRAIN_FRAME
        cache.put(snac_codec.cache_key(audio, fingerprint), np.repeat(frame, CLIP_FRAMES, axis=0))
    write_transcript(folder, [(name, TEXT) for name in CLIPS])
    return folder


def overfit_argv(name: str, data: Path, voices: Path, model: Path, snac: Path, *extra: str) -> list[str]:
    return [
        name,
        str(data),
        *common_args(voices, model, snac),
        "--eval-clips",
        "1",
        "--learning-rate",
        OVERFIT_LR,
        "--lr-scheduler",
        "constant",
        "--logging-steps",
        "1",
        "--early-stop-patience",
        str(PATIENCE),
        "--keep-checkpoints",
        *extra,
    ]


def adapter(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / ADAPTER_WEIGHTS_FILE)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    assert all(torch.equal(a[k], b[k]) for k in a)


# --- --epochs auto: the guide's table ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("clips", "epochs"), [(1, 5), (29, 5), (30, 3), (61, 3), (100, 3), (101, 1), (5000, 1)]
)
def test_auto_epochs_follow_the_guides_table_at_its_boundaries(clips, epochs):
    assert length.auto_epochs(clips) == epochs


def test_plan_says_what_it_chose_and_an_explicit_number_wins(caplog):
    common = {
        "max_steps": None,
        "n_held_out": 3,
        "epoch_steps": 58,
        "eval_steps": None,
        "early_stop": True,
        "patience": 4,
        "eval_clips_asked": None,
    }
    with caplog.at_level(logging.INFO, logger="voicelab"):
        plan = length.plan_length(epochs=None, n_train=61, **common)
    assert plan.epochs == 3 and plan.epochs_from == "auto: 61 clips, per the guide's table"
    assert "61 clips: 3 epochs, per the guide's table" in caplog.text
    assert plan.eval_steps == 15 and plan.early_stopping  # a quarter of 58 steps, rounded up
    explicit = length.plan_length(epochs=2, n_train=61, **common)
    assert explicit.epochs == 2 and explicit.epochs_from == "--epochs"


def test_without_held_out_clips_it_says_it_cannot_stop_early(caplog):
    plan = length.plan_length(
        epochs=None,
        max_steps=None,
        n_train=12,
        n_held_out=0,
        epoch_steps=12,
        eval_steps=None,
        early_stop=True,
        patience=4,
        eval_clips_asked=None,
    )
    assert not plan.early_stopping and plan.eval_steps is None
    assert "cannot stop early" in caplog.text and "12 clips is too few" in caplog.text
    assert "--eval-clips" in caplog.text


# --- early stopping on tiny models ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory, sharp_orpheus_dir, tiny_snac_dir):
    root = tmp_path_factory.mktemp("overfit")
    data = make_coded_dataset(root / "data", tiny_snac_dir, held_out_unlike=True)
    voices = root / "voices"
    rc = train_lora.main(overfit_argv("olga", data, voices, sharp_orpheus_dir, tiny_snac_dir))
    return rc, voices


def test_rising_eval_loss_stops_early_and_publishes_the_best_checkpoint(overfit_run):
    rc, voices = overfit_run
    assert rc == 0
    meta = VoiceMetadata.read(voices / "olga")
    stop = meta.stopping
    planned = 5 * 2  # auto: 2 training clips -> 5 epochs of 2 steps
    assert meta.training["epochs"] == 5 and stop["epochs_from"].startswith("auto: 2 clips")
    assert stop["early_stopping"] and stop["eval_steps"] == 1 and stop["stop_reason"] == length.STOP_EARLY
    assert 1 < stop["best_step"] < stop["stopped_at_step"] < planned
    assert stop["stopped_at_step"] == stop["best_step"] + PATIENCE
    assert stop["published_step"] == stop["best_step"]

    # the best step is the lowest eval loss of the log, and every later one is higher
    scored = [(p.step, p.eval_loss) for p in VoiceFolder(voices / "olga").read_loss_log() if p.eval_loss]
    assert [s for s, _ in scored] == list(range(1, stop["stopped_at_step"] + 1))
    best_step, best_loss = min(scored, key=lambda sl: sl[1])
    assert best_step == stop["best_step"] and math.isclose(best_loss, stop["best_eval_loss"], rel_tol=1e-6)
    assert all(loss > best_loss for step, loss in scored if step > best_step)

    # the voice's adapter is exactly the best checkpoint's, not the last step's
    checkpoints = checkpoints_dir(voices, "olga")
    assert_same_weights(adapter(voices / "olga"), adapter(checkpoints / f"checkpoint-{best_step}"))
    last = adapter(checkpoints / f"checkpoint-{stop['stopped_at_step']}")
    assert not all(torch.equal(last[k], v) for k, v in adapter(voices / "olga").items())


def test_the_api_and_evaluate_see_the_chosen_checkpoint(overfit_run, sharp_orpheus_dir):
    from voicelab.evaluate import load_voice_under_test
    from voicelab.server.registry import scan_voices

    _, voices = overfit_run
    stop = VoiceMetadata.read(voices / "olga").stopping
    summary = scan_voices(voices, base_model=str(sharp_orpheus_dir)).voices["olga"].describe()["training"]
    assert summary["best_step"] == summary["published_step"] == stop["best_step"]
    assert summary["stopped_at_step"] == stop["stopped_at_step"] and summary["stop_reason"] == "early_stopped"
    assert summary["epochs"] == 5 and summary["best_eval_loss"] == stop["best_eval_loss"]
    # `make evaluate --compare CHECKPOINT` on either kept checkpoint: the best and the last
    kept = sorted(checkpoints_dir(voices, "olga").iterdir())
    assert {p.name for p in kept} == {
        f"checkpoint-{stop['best_step']}",
        f"checkpoint-{stop['stopped_at_step']}",
    }
    for checkpoint in kept:
        vut = load_voice_under_test(voices, "olga", adapter_dir=checkpoint)
        assert vut.label == f"olga@{checkpoint.name}" and vut.reference_is_heldout


def test_improving_run_obeys_epochs_2_and_runs_to_the_end(tmp_path, sharp_orpheus_dir, tiny_snac_dir, caplog):
    data = make_coded_dataset(tmp_path / "data", tiny_snac_dir, held_out_unlike=False)
    voices = tmp_path / "voices"
    argv = overfit_argv("ivy", data, voices, sharp_orpheus_dir, tiny_snac_dir, "--epochs", "2")
    assert train_lora.main([*argv, "--eval-steps", "2"]) == 0
    meta = VoiceMetadata.read(voices / "ivy")
    stop = meta.stopping
    assert meta.training["epochs"] == 2 and stop["epochs_from"] == "--epochs"
    assert "per the guide's table" not in caplog.text
    assert stop["stop_reason"] == length.STOP_COMPLETED and stop["stopped_at_step"] == 2 * 2
    assert stop["best_step"] == stop["published_step"] == 4
    scored = [(p.step, p.eval_loss) for p in VoiceFolder(voices / "ivy").read_loss_log() if p.eval_loss]
    assert [s for s, _ in scored] == [2, 4] and scored[1][1] < scored[0][1]  # held out like the others
    assert_same_weights(adapter(voices / "ivy"), adapter(checkpoints_dir(voices, "ivy") / "checkpoint-4"))


@pytest.mark.slow  # resuming itself: test_train_lora.py::test_interrupt_saves_checkpoint_and_resume_finishes
def test_resume_after_ctrl_c_keeps_the_best_so_far(tmp_path, sharp_orpheus_dir, tiny_snac_dir, overfit_run):
    """Interrupted one step after the best checkpoint: the resumed process never saw that evaluation, yet
    it stops where the uninterrupted run stopped and publishes the same best checkpoint."""
    from transformers import TrainerCallback

    uninterrupted = VoiceMetadata.read(overfit_run[1] / "olga").stopping
    data = make_coded_dataset(tmp_path / "data", tiny_snac_dir, held_out_unlike=True)
    voices = tmp_path / "voices"
    argv = overfit_argv("olga", data, voices, sharp_orpheus_dir, tiny_snac_dir)
    interrupt_at = uninterrupted["best_step"] + 1

    class CtrlC(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == interrupt_at - 1:  # pressed during step interrupt_at
                os.kill(os.getpid(), signal.SIGINT)

    request = train_lora.request_from_args(train_lora.build_parser().parse_args(argv))
    result = build.train_voice(request, extra_callbacks=[CtrlC()])
    assert result.interrupted and result.global_step == interrupt_at
    assert not (voices / "olga").exists()

    assert train_lora.main([*argv, "--resume"]) == 0
    stop = VoiceMetadata.read(voices / "olga").stopping
    assert stop["best_step"] == uninterrupted["best_step"] == stop["published_step"]
    assert stop["stopped_at_step"] == uninterrupted["stopped_at_step"], "the patience count was kept too"
    assert math.isclose(stop["best_eval_loss"], uninterrupted["best_eval_loss"], rel_tol=1e-5)
    best = checkpoints_dir(voices, "olga") / f"checkpoint-{stop['best_step']}"
    assert_same_weights(adapter(voices / "olga"), adapter(best))
    assert VoiceFolder(voices / "olga").loss_curve_path.is_file()


def test_loss_curve_marks_the_published_checkpoint(tmp_path):
    from voicelab.training.report import plot_loss

    points = [LossPoint(s, s / 4, 3.0 - s / 10, eval_loss=2.0 + abs(s - 3) / 10) for s in range(1, 7)]
    plain = plot_loss(tmp_path / "plain.png", points, "t")
    marked = plot_loss(tmp_path / "marked.png", points, "t", published_step=3)
    assert plain.read_bytes() != marked.read_bytes()

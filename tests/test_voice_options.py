"""voicelab-voice's flags come from the steps' own parsers: spelt as each step spells them, a clash between
two steps settled in one place (voicelab.cli.pipeline.options), a flag added to a step passed through with no
change anywhere else."""

from __future__ import annotations

import argparse

import pytest

from voicelab.cli import train_lora, voice
from voicelab.cli.pipeline import options as opts


def parse(argv: list[str]) -> dict[str, list[str]]:
    """The flags each step would get from ``voicelab-voice NAME SOURCE argv``."""
    options = opts.collect(voice.OWN_FLAGS)
    args = voice.build_parser(options).parse_args(["alice", "rec/", *argv])
    return {step.name: opts.step_argv(step, options, opts.given(args)) for step in opts.STEPS}


def test_every_name_two_steps_use_is_settled_in_one_place():
    assert opts.unsettled_clashes(voice.OWN_FLAGS) == []


def test_each_step_gets_the_flags_it_has_under_its_own_name():
    argv = parse(
        [
            *["--whisper-model", "m.pt", "--device", "cpu", "--lora-rank", "8", "--temperature", "0.7"],
            *["--whisper-temperature", "0.1", "--reference", "a.wav", "b.wav", "--no-quality", "--strict"],
            *["--silence-threshold", "-35", "--base-model", "orpheus/", "--music-bed", "keep"],
            *["--speaker-threshold", "0.8", "--review-speaker-threshold", "0.6"],
        ]
    )
    assert argv["prepare-audio"] == [
        *["--silence-threshold", "-35", "--reference", "a.wav", "b.wav"],
        *["--speaker-threshold", "0.8", "--music-bed", "keep", "--device", "cpu"],
    ]
    assert argv["transcribe"] == [
        *["--reference", "a.wav", "b.wav", "--device", "cpu", "--model", "m.pt", "--temperature", "0.1"],
        *["--speaker-threshold", "0.6", "--no-quality"],
    ]
    assert argv["train-lora"] == ["--device", "cpu", "--base-model", "orpheus/", "--lora-rank", "8"]
    assert argv["evaluate"] == [
        *["--device", "cpu", "--whisper-model", "m.pt", "--base-model", "orpheus/"],
        *["--temperature", "0.7", "--strict"],
    ]


def test_speaker_auto_goes_to_prepare_audio_and_its_choices_are_checked(capsys):
    assert parse(["--speaker", "auto"])["prepare-audio"] == ["--speaker", "auto"]
    with pytest.raises(SystemExit) as exit_info:
        parse(["--speaker", "loudest"])
    assert exit_info.value.code == 2 and "invalid choice: 'loudest'" in capsys.readouterr().err


def test_flags_not_given_are_left_to_each_steps_own_default():
    assert parse([]) == {step.name: [] for step in opts.STEPS}


@pytest.mark.parametrize(
    "flag", ["--overwrite", "--resume", "--output", "--transcript", "--all", "--compare", "--dataset-dir"]
)
def test_flags_the_pipeline_decides_are_not_offered(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        voice.build_parser().parse_args(["alice", "rec/", flag, "x"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_a_value_is_checked_with_the_steps_own_type(capsys):
    with pytest.raises(SystemExit):
        voice.build_parser().parse_args(["alice", "rec/", "--lora-rank", "many"])
    assert "--lora-rank: invalid int value: 'many'" in capsys.readouterr().err


def test_a_flag_added_to_a_step_passes_through_and_a_new_clash_is_named(monkeypatch):
    from voicelab.cli import evaluate_voice

    def with_knob(original):
        def build_parser() -> argparse.ArgumentParser:
            parser = original()
            parser.add_argument("--new-knob", type=int, default=3, help="a flag added later")
            return parser

        return build_parser

    monkeypatch.setattr(train_lora, "build_parser", with_knob(train_lora.build_parser))
    assert parse(["--new-knob", "5"])["train-lora"] == ["--new-knob", "5"]

    monkeypatch.setattr(evaluate_voice, "build_parser", with_knob(evaluate_voice.build_parser))
    assert opts.unsettled_clashes(voice.OWN_FLAGS) == ["--train-lora-new-knob", "--evaluate-new-knob"]
    argv = parse(["--train-lora-new-knob", "5", "--evaluate-new-knob", "6"])
    assert argv["train-lora"] == ["--new-knob", "5"] and argv["evaluate"] == ["--new-knob", "6"]


def test_describe_gives_the_studio_each_flag_with_its_help_and_defaults():
    described = {d["flag"]: d for d in opts.describe(opts.collect(voice.OWN_FLAGS))}
    assert described["--lora-rank"] == {
        "flag": "--lora-rank",
        "steps": ["train-lora"],
        "help": "LoRA rank (serve with --max-lora-rank >= it)",
        "defaults": {"train-lora": 32},
        "kind": "value",
        "choices": None,
        "metavar": "LORA_RANK",
    }
    assert described["--whisper-model"]["steps"] == ["transcribe", "evaluate"]
    assert described["--no-quality"]["kind"] == "switch"
    assert described["--reference"]["kind"] == "values"
    assert "--progress-file" not in described and "--voices-dir" not in described


def test_bad_step_values_are_refused_with_the_steps_own_message():
    with pytest.raises(opts.StepFlagsError, match=r"train-lora: --lora-rank 0: must be between 1 and 512"):
        opts.check_step_argv(opts.TRAIN, ["alice", "prepared/alice", "--lora-rank", "0"])


def test_programs_get_the_options_as_json_and_a_check_of_some_flags(capsys):
    import json

    assert voice.main(["--describe-options"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["steps"] == list(opts.PIPELINE_STEPS)
    assert {"--lora-rank", "--whisper-model", "--sample-rate"} <= {d["flag"] for d in described["options"]}
    assert voice.main(["--check-flags", "--lora-rank", "8", "--device", "cpu"]) == 0
    assert voice.main(["--check-flags", "--lora-rank", "0", "--device", "cpu"]) == 2
    assert "error: train-lora: --lora-rank 0: must be between 1 and 512" in capsys.readouterr().err


def test_settings_become_arguments_by_their_kind():
    described = opts.describe(opts.collect(voice.OWN_FLAGS))
    argv = opts.settings_to_argv(
        {"--no-quality": True, "--strict": False, "--reference": ["a.wav", "b.wav"], "--epochs": 2}, described
    )
    assert argv == ["--no-quality", "--reference", "a.wav", "b.wav", "--epochs", "2"]
    with pytest.raises(opts.StepFlagsError, match="--no-quality: true or false"):
        opts.settings_to_argv({"--no-quality": "yes"}, described)
    with pytest.raises(opts.StepFlagsError, match="--nope: no such setting"):
        opts.settings_to_argv({"--nope": "1"}, described)

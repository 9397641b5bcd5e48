"""train-lora end to end on tiny models: the voice folder, vLLM's rules, cache reuse, resume, bad inputs,
and training/serving agreement token for token."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from voicelab import dataset, models, orpheus, testing
from voicelab.audio import write_wav
from voicelab.cli import train_lora
from voicelab.model_identity import fingerprint_model
from voicelab.training import build, config, snac_codec
from voicelab.training import dataset as ds
from voicelab.voice import (
    ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHTS_FILE,
    LOSS_LOG_FILE,
    LOSS_PLOT_FILE,
    VOICE_FILE,
    VoiceFolder,
    VoiceMetadata,
    adapter_problems,
    checkpoints_dir,
)

SR = orpheus.SAMPLE_RATE


def write_transcript(folder: Path, rows) -> Path:
    path = folder / "transcript.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(dataset.TRANSCRIPT_HEADER)
        writer.writerows(rows)
    return path


def make_dataset(folder: Path) -> Path:
    """3 usable clips (one of them 44.1 kHz stereo), plus a missing WAV, an empty text and a corrupt WAV."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, seconds in enumerate([0.6, 0.9]):
        write_wav(folder / f"clip{i}.wav", testing.speech_like_noise([(seconds, 0.1)], SR, seed=i)[:, 0], SR)
    sf.write(
        folder / "stereo.wav", testing.speech_like_noise([(0.7, 0.1)], 44_100, channels=2, seed=5), 44_100
    )
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    write_transcript(
        folder,
        [
            ("clip0", "Hello there."),
            ("clip1", "How are you today?"),
            ("stereo", "A stereo recording."),
            ("missing", "This file does not exist."),
            ("clip0b", ""),
            ("corrupt", "Broken audio."),
        ],
    )
    return folder


def common_args(
    voices: Path, orpheus_dir: Path, snac_dir: Path, rank: int = 8, device: str = "cpu"
) -> list[str]:
    """Flags for a tiny run; ``device`` (``cpu`` or ``cuda``) is used for training and SNAC alike."""
    return [
        "--voices-dir",
        str(voices),
        "--base-model",
        str(orpheus_dir),
        "--snac-model",
        str(snac_dir),
        "--device",
        device,
        "--snac-device",
        device,
        "--lora-rank",
        str(rank),
        "--lora-alpha",
        str(2 * rank),
        "--no-progress",
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_orpheus_dir, tiny_snac_dir):
    """One voice trained through the script, shared by the tests below."""
    root = tmp_path_factory.mktemp("train")
    data = make_dataset(root / "prepared" / "alice")
    voices = root / "voices"
    args = common_args(voices, tiny_orpheus_dir, tiny_snac_dir)
    rc = train_lora.main(
        ["alice", str(data), *args, "--batch-size", "2", "--max-steps", "3", "--logging-steps", "2"]
    )
    return {"rc": rc, "data": data, "voices": voices, "voice": voices / "alice", "args": args}


def test_voice_folder_has_everything(trained):
    assert trained["rc"] == 0
    voice = trained["voice"]
    for name in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, VOICE_FILE, LOSS_LOG_FILE, LOSS_PLOT_FILE):
        assert (voice / name).is_file(), name
    assert (voice / LOSS_PLOT_FILE).read_bytes().startswith(b"\x89PNG")
    assert not (voice / "README.md").exists(), "no placeholder model card from peft"
    # every --logging-steps, and always the last step (3 is not a multiple of 2)
    assert [p.step for p in VoiceFolder(voice).read_loss_log()] == [2, 3]
    leftovers = [p.name for p in trained["voices"].iterdir() if p.name != "alice"]
    assert leftovers == [], "no staging or checkpoint folder remains after success"


def test_every_file_of_the_voice_has_the_normal_mode(trained):
    """Readable by whoever may read the rest of the folder (e.g. vLLM run as another user): no 0600 files."""
    from voicelab.fileio import current_umask

    expected = 0o666 & ~current_umask()
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in trained["voice"].iterdir() if p.is_file()}
    assert ADAPTER_WEIGHTS_FILE in modes
    assert modes == dict.fromkeys(modes, oct(expected))


def test_voice_json_records_what_serving_needs(trained, tiny_orpheus_dir, tiny_snac_dir):
    meta = VoiceMetadata.read(trained["voice"])
    assert meta.name == "alice" and meta.engine == "orpheus"
    assert meta.prompt_prefix == "alice: "
    assert meta.base_model == str(tiny_orpheus_dir) and meta.snac_model == str(tiny_snac_dir)
    assert meta.sample_rate == SR and meta.drop_duplicate_frames is False
    assert meta.dataset["clips_used"] == 3 and meta.dataset["clips_skipped"] == 3
    assert meta.dataset["rows"] == 6
    assert meta.training["lora_rank"] == 8 and meta.training["steps"] == 3
    assert meta.training["vllm_max_lora_rank"] == 8
    assert np.isfinite(meta.final_loss) and meta.created_at
    # the base model by content, so the voice is served where the same model sits at another path
    assert meta.base_model_fingerprint == fingerprint_model(tiny_orpheus_dir) is not None


def test_adapter_is_one_vllm_loads(trained, tiny_orpheus_dir):
    config = json.loads((trained["voice"] / ADAPTER_CONFIG_FILE).read_text())
    assert adapter_problems(config, base_model=str(tiny_orpheus_dir), max_lora_rank=8) == []
    assert sorted(config["target_modules"]) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    assert config["base_model_name_or_path"] == str(tiny_orpheus_dir)


def test_adapter_weights_changed_and_base_untouched(trained, tiny_orpheus_dir):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    weights = load_file(trained["voice"] / ADAPTER_WEIGHTS_FILE)
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b and all(t.abs().sum() > 0 for t in lora_b), "lora_B starts at zero; training must move it"
    assert not any("embed" in name or "lm_head" in name for name in weights), "vocabulary layers never saved"

    fresh = AutoModelForCausalLM.from_pretrained(tiny_orpheus_dir).state_dict()
    voice = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_orpheus_dir), trained["voice"]
    )
    base = {
        name.replace(".base_layer", ""): tensor
        for name, tensor in voice.get_base_model().state_dict().items()
        if "lora_" not in name
    }
    assert base.keys() == fresh.keys()
    for name, tensor in fresh.items():
        torch.testing.assert_close(base[name], tensor, rtol=0, atol=0)


def test_rerun_takes_codes_from_cache(trained, tiny_orpheus_dir, tiny_snac_dir, monkeypatch, capsys):
    def no_encoding(*args, **kwargs):
        raise AssertionError("the SNAC encoder ran although every clip is cached")

    def no_loading(*args, **kwargs):
        raise AssertionError("SNAC was loaded although every clip is cached")

    monkeypatch.setattr(snac_codec, "encode_batch", no_encoding)
    monkeypatch.setattr(models, "load_snac", no_loading)
    rc = train_lora.main(
        ["alice", str(trained["data"]), *trained["args"], "--max-steps", "1", "--epochs", "3", "--overwrite"]
    )
    assert rc == 0
    assert "0 encoded, 3 from cache" in capsys.readouterr().out
    assert VoiceMetadata.read(trained["voice"]).dataset["snac_from_cache"] == 3


def test_cached_rerun_gives_the_same_examples_without_snac_and_a_changed_checkpoint_misses(
    tmp_path, tiny_tokenizer, tiny_snac_dir, monkeypatch
):
    import shutil

    data = make_dataset(tmp_path / "data")
    snac_copy = tmp_path / "snac"
    shutil.copytree(tiny_snac_dir, snac_copy)
    request = build.TrainRequest(name="fay", dataset_dir=data, snac_model=str(snac_copy))
    first = build.prepare_examples(request, tiny_tokenizer, progress=False)
    assert first.stats["snac_encoded"] == 3 and first.stats["snac_from_cache"] == 0

    real_load = models.load_snac
    monkeypatch.setattr(
        models, "load_snac", lambda *a, **k: pytest.fail("SNAC loaded on a fully cached rerun")
    )
    again = build.prepare_examples(request, tiny_tokenizer, progress=False)
    assert again.stats["snac_from_cache"] == 3 and again.examples == first.examples

    # the same codec's files changed (one weight nudged): every key changes, so every clip is encoded again
    weights = torch.load(snac_copy / models.SNAC_WEIGHTS_FILE)
    name = next(n for n, t in weights.items() if t.is_floating_point())
    weights[name].view(-1)[0] += 1e-3
    torch.save(weights, snac_copy / models.SNAC_WEIGHTS_FILE)
    loads = []
    monkeypatch.setattr(models, "load_snac", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    changed = build.prepare_examples(request, tiny_tokenizer, progress=False)
    assert changed.stats["snac_encoded"] == 3 and changed.stats["snac_from_cache"] == 0
    assert len(loads) == 1


def test_existing_voice_is_refused_without_overwrite(trained, capsys):
    before = (trained["voice"] / ADAPTER_WEIGHTS_FILE).read_bytes()
    rc = train_lora.main(["alice", str(trained["data"]), *trained["args"], "--max-steps", "1"])
    assert rc == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (trained["voice"] / ADAPTER_WEIGHTS_FILE).read_bytes() == before


def test_prepare_skips_too_long_clips_without_truncating(trained, tiny_tokenizer, tiny_snac_dir, caplog):
    req = build.TrainRequest(
        name="alice", dataset_dir=trained["data"], snac_model=str(tiny_snac_dir), max_seq_len=100
    )
    prepared = build.prepare_examples(req, tiny_tokenizer, progress=False)
    assert all(len(e) <= 100 for e in prepared.examples)
    assert all(e.input_ids[-2:] == [orpheus.END_OF_SPEECH, orpheus.END_OF_AI] for e in prepared.examples)
    too_long = [s.key for s in prepared.skipped if "--max-seq-len" in s.reason]
    assert too_long and all(name in caplog.text for name in too_long)
    assert len(prepared.examples) + len(too_long) == 3


def test_drop_duplicate_frames_is_applied_and_prefix_configurable(trained, tiny_tokenizer, tiny_snac_dir):
    base = {"name": "alice", "dataset_dir": trained["data"], "snac_model": str(tiny_snac_dir)}
    keep = build.prepare_examples(build.TrainRequest(**base), tiny_tokenizer, progress=False)
    drop = build.prepare_examples(
        build.TrainRequest(**base, drop_duplicate_frames=True, prompt_prefix="[A] "),
        tiny_tokenizer,
        progress=False,
    )
    assert sum(map(len, drop.examples)) <= sum(map(len, keep.examples))
    text_ids = orpheus.text_prompt_ids(tiny_tokenizer, "Hello there.", "[A] ")
    assert drop.examples[0].input_ids[: len(text_ids)] == text_ids


# --- bad inputs: a clear message, exit 2, nothing in voices/ -------------------------------------------
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("bad-name", "invalid voice name"),
        ("no-dataset", "dataset folder not found"),
        ("no-header", "expected 'filename,text'"),
        ("duplicates", "duplicate filenames"),
        ("nothing-usable", "no usable clip"),
        ("bad-base-model", "--base-model"),
        ("bad-snac-model", "--snac-model"),
    ],
)
def test_bad_input_is_refused(case, message, tmp_path, tiny_orpheus_dir, tiny_snac_dir, capsys):
    data = tmp_path / "data"
    data.mkdir()
    write_wav(data / "a.wav", testing.speech_like_noise([(0.3, 0.05)], SR)[:, 0], SR)
    write_transcript(data, [("a", "Hello.")])
    voices = tmp_path / "voices"
    args = common_args(voices, tiny_orpheus_dir, tiny_snac_dir)
    name = "bob"
    if case == "bad-name":
        name = "bob smith/../x"
    elif case == "no-dataset":
        data = tmp_path / "absent"
    elif case == "no-header":
        (data / "transcript.csv").write_text("a,Hello.\n")
    elif case == "duplicates":
        write_transcript(data, [("a", "Hello."), ("a", "Again.")])
    elif case == "nothing-usable":
        write_transcript(data, [("a", ""), ("zzz", "missing file")])
    elif case == "bad-base-model":
        args[args.index("--base-model") + 1] = str(tmp_path / "no-such-model")
    elif case == "bad-snac-model":
        args[args.index("--snac-model") + 1] = str(tmp_path / "no-such-snac")
    rc = train_lora.main([name, str(data), *args, "--max-steps", "1"])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not voices.exists() or list(voices.iterdir()) == []


@pytest.mark.parametrize(
    "flags",
    [
        ["--lora-rank", "0"],
        ["--lora-rank", "1024"],
        ["--lora-alpha", "0"],
        ["--learning-rate", "0"],
        ["--learning-rate", "1"],
        ["--max-seq-len", "8"],
        ["--snac-batch-size", "0"],
        ["--batch-size", "0"],
        ["--max-steps", "two"],
        ["--epochs", "0"],
        ["--epochs", "nan"],
        ["--epochs", "many"],
        ["--eval-steps", "0"],
        ["--early-stop-patience", "0"],
    ],
)
def test_out_of_range_flags_are_usage_errors(flags, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_lora.main(["bob", str(tmp_path), *flags])
    assert exit_info.value.code == 2
    assert flags[0] in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_suggests_cpu(tmp_path, capsys, monkeypatch):
    (tmp_path / "transcript.csv").write_text("filename,text\na,Hello.\n")
    argv = ["bob", str(tmp_path), "--device", "cuda", "--voices-dir", str(tmp_path / "v")]
    assert train_lora.main(argv) == 2
    err = capsys.readouterr().err
    assert "--device cpu" in err
    if torch.version.cuda is None:
        assert "CPU-only build" in err and "install a CUDA build" in err
    # a CUDA build of torch that sees no GPU: the machine is the problem, not the install
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert train_lora.main(argv) == 2
    err = capsys.readouterr().err
    assert "built for CUDA 12.8 but sees no GPU" in err and "CUDA_VISIBLE_DEVICES is empty" in err
    assert "install a CUDA build" not in err


def test_cuda_message_names_what_is_wrong():
    from voicelab.training.trainer import cuda_unavailable_message

    def message(**kw):
        base = {"torch_version": "2.13.0", "cuda_build": "12.8", "init_error": None, "visible_devices": None}
        return cuda_unavailable_message("--device", "cuda", **{**base, **kw})

    cpu_build = message(torch_version="2.13.0+cpu", cuda_build=None)
    assert "CPU-only build" in cpu_build and "install a CUDA build" in cpu_build
    no_driver = message(init_error="Found no NVIDIA driver on your system.")
    assert "Found no NVIDIA driver" in no_driver and "nvidia-smi" in no_driver
    hidden = message(visible_devices="3")
    assert "CUDA_VISIBLE_DEVICES=3 may name no GPU" in hidden
    for text in (no_driver, hidden, message(visible_devices="")):
        assert "install a CUDA build" not in text and "--device cpu" in text


# --- Ctrl-C and --resume ------------------------------------------------------------------------------
def test_interrupt_saves_checkpoint_and_resume_finishes(tmp_path, tiny_orpheus_dir, tiny_snac_dir, capsys):
    from transformers import TrainerCallback

    data = make_dataset(tmp_path / "data")
    voices = tmp_path / "voices"
    args = common_args(voices, tiny_orpheus_dir, tiny_snac_dir)

    class CtrlCAtStep2(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                os.kill(os.getpid(), signal.SIGINT)  # what the terminal sends on Ctrl-C

    request = build.TrainRequest(
        name="carol",
        dataset_dir=data,
        voices_dir=voices,
        base_model=str(tiny_orpheus_dir),
        snac_model=str(tiny_snac_dir),
        lora=config.LoraSettings(rank=8, alpha=16),
        train=config.TrainSettings(device="cpu", max_steps=5, logging_steps=1, progress=False),
    )
    # the handler the process had (Python's own, or SIG_IGN where a shell started it in the background)
    before = signal.getsignal(signal.SIGINT)
    result = build.train_voice(request, extra_callbacks=[CtrlCAtStep2()])
    assert result.interrupted and result.voice_dir is None
    assert signal.getsignal(signal.SIGINT) is before, "Ctrl-C handler restored"
    checkpoints = sorted(p.name for p in request.checkpoint_dir.iterdir())
    assert checkpoints == [f"checkpoint-{result.global_step}"] and result.global_step in (2, 3)
    assert not (voices / "carol").exists(), "an interrupted run publishes no voice"

    assert train_lora.main(["carol", str(data), *args, "--max-steps", "5"]) == 2
    assert "--resume" in capsys.readouterr().err

    assert (
        train_lora.main(["carol", str(data), *args, "--max-steps", "5", "--logging-steps", "1", "--resume"])
        == 0
    )
    meta = VoiceMetadata.read(voices / "carol")
    assert meta.training["steps"] == 5
    assert meta.training["resumed_from"].endswith(checkpoints[0])
    assert [p.step for p in VoiceFolder(voices / "carol").read_loss_log()] == [1, 2, 3, 4, 5]
    assert not request.checkpoint_dir.exists()


def test_interrupted_retrain_resumes_with_the_printed_command_and_the_voice_stays_live(
    trained, tmp_path, tiny_orpheus_dir, tiny_snac_dir, capsys, caplog, monkeypatch
):
    """--overwrite, Ctrl-C: the live voice is untouched and still served; the printed command (--resume
    added) continues the retrain's checkpoints and replaces the voice only when it ends."""
    import shlex
    import shutil

    from transformers import TrainerCallback

    from voicelab.server.registry import scan_voices

    voices = tmp_path / "voices"
    shutil.copytree(trained["voice"], voices / "alice")  # the live voice, as trained by the fixture
    live = (voices / "alice" / ADAPTER_WEIGHTS_FILE).read_bytes()
    argv = ["alice", str(trained["data"]), *common_args(voices, tiny_orpheus_dir, tiny_snac_dir)]
    argv += ["--max-steps", "3", "--logging-steps", "1", "--overwrite"]

    class CtrlCAtStep2(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 1:
                os.kill(os.getpid(), signal.SIGINT)

    train_voice = build.train_voice
    monkeypatch.setattr(build, "train_voice", lambda req: train_voice(req, extra_callbacks=[CtrlCAtStep2()]))
    assert train_lora.main(argv) == 130
    out = capsys.readouterr().out
    assert "still served" in out
    assert out.count("interrupted at step") == 1, "one 'interrupted' line"
    assert not [
        r for r in caplog.records if "interrupted at step" in r.getMessage() and r.levelno >= logging.INFO
    ]
    assert (voices / "alice" / ADAPTER_WEIGHTS_FILE).read_bytes() == live
    assert "alice" in scan_voices(voices, base_model=str(tiny_orpheus_dir)).voices

    command = out.split("continue with:\n", 1)[1].strip()
    prefix = 'make train-lora ARGS="'
    assert command.startswith(prefix) and command.endswith('"')
    resumed = shlex.split(command[len(prefix) : -1])  # what the recipe's shell makes of $(ARGS)
    assert resumed == [*argv, "--resume"]
    monkeypatch.setattr(build, "train_voice", train_voice)
    assert train_lora.main(resumed) == 0
    assert capsys.readouterr().out.count("written to") == 1, "one 'voice written' line"
    assert not [r for r in caplog.records if "written to" in r.getMessage() and r.levelno >= logging.INFO]
    meta = VoiceMetadata.read(voices / "alice")
    assert meta.training["steps"] == 3 and meta.training["resumed_from"].endswith("checkpoint-2")
    assert (voices / "alice" / ADAPTER_WEIGHTS_FILE).read_bytes() != live
    assert not checkpoints_dir(voices, "alice").exists()


def test_resume_of_an_existing_voice_without_overwrite_says_how(trained, capsys):
    (checkpoints_dir(trained["voices"], "alice") / "checkpoint-1").mkdir(parents=True)
    try:
        assert train_lora.main(["alice", str(trained["data"]), *trained["args"], "--resume"]) == 2
    finally:
        import shutil

        shutil.rmtree(checkpoints_dir(trained["voices"], "alice"))
    assert "--resume --overwrite" in capsys.readouterr().err


def test_excluded_clips_are_counted_once_and_listed_with_verbose(
    tmp_path, tiny_tokenizer, tiny_snac_dir, caplog
):
    data = make_dataset(tmp_path / "data")
    rows = [(f"ex{i}", f"Excluded line {i}.") for i in range(5)]
    for name, _ in rows:
        write_wav(data / f"{name}.wav", testing.speech_like_noise([(0.3, 0.05)], SR)[:, 0], SR)
    transcript = list(dataset.read_transcript(data / "transcript.csv"))
    write_transcript(data, [*transcript, *rows])
    dataset.write_exclusions(data, {name: "another speaker" for name, _ in rows})
    request = build.TrainRequest(name="exa", dataset_dir=data, snac_model=str(tiny_snac_dir))
    with caplog.at_level(logging.INFO, logger="voicelab"):
        prepared = build.prepare_examples(request, tiny_tokenizer, progress=False)
    assert prepared.stats["clips_excluded"] == 5 and len(prepared.examples) == 3
    assert "5 clips excluded in excluded.csv are left out (-v lists them)" in caplog.text
    assert not any("ex0" in r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert "skipped corrupt" in caplog.text, "problems are still warned about one by one"
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="voicelab"):
        build.prepare_examples(request, tiny_tokenizer, progress=False)
    assert all(f"left out ex{i}: excluded" in caplog.text for i in range(5))


def test_resume_without_checkpoint_is_an_error(tmp_path, tiny_orpheus_dir, tiny_snac_dir, capsys):
    data = make_dataset(tmp_path / "data")
    args = common_args(tmp_path / "voices", tiny_orpheus_dir, tiny_snac_dir)
    assert train_lora.main(["dave", str(data), *args, "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


# --- training and serving agree token for token --------------------------------------------------------
MEMORISE_SECONDS = 0.25  # 3 SNAC frames = 21 audio tokens: memorised in a few dozen steps
MEMORISE_STEPS = "40"
MEMORISE_LR = "1e-2"  # far above real fine-tuning rates: the point is to overfit one clip
MEMORISE_TEXT = "Hi."


def train_memoriser(root: Path, orpheus_dir: Path, snac_dir: Path, *, steps: str, device: str = "cpu"):
    """Train voice "erin" on one short clip until it memorises it; returns (exit code, dataset, voices)."""
    data = root / "one"
    data.mkdir()
    write_wav(data / "one.wav", testing.speech_like_noise([(MEMORISE_SECONDS, 0.0)], SR, seed=3)[:, 0], SR)
    write_transcript(data, [("one", MEMORISE_TEXT)])
    voices = root / "voices"
    args = common_args(voices, orpheus_dir, snac_dir, rank=16, device=device)
    schedule = ["--max-steps", steps, "--learning-rate", MEMORISE_LR, "--lr-scheduler", "constant"]
    rc = train_lora.main(["erin", str(data), *args, *schedule, "--logging-steps", "20"])
    return rc, data, voices


def speak_greedily(engine, voices: Path, orpheus_dir: Path, tokenizer, max_tokens: int):
    """Speak MEMORISE_TEXT as the server does: the registry reads the voice folder (prompt prefix from
    voice.json), the contract builds the inference prompt, ``engine`` generates greedily.
    Returns (prompt ids, generated ids, chunks)."""
    import asyncio

    from voicelab.engine import SamplingParams
    from voicelab.server.registry import scan_voices

    scan = scan_voices(voices, base_model=str(orpheus_dir))
    assert scan.skipped == {}
    voice = scan.voices["erin"].voice
    assert voice.prompt_prefix == "erin: "
    prompt = orpheus.inference_prompt_ids(tokenizer, MEMORISE_TEXT, voice.prompt_prefix)
    greedy = SamplingParams(temperature=0.0, repetition_penalty=1.0, max_tokens=max_tokens)

    async def speak():
        await engine.load_voice(voice)
        return [chunk async for chunk in engine.generate(voice, prompt, greedy)]

    chunks = asyncio.run(speak())
    return prompt, [t for chunk in chunks for t in chunk.ids], chunks


def test_greedy_generation_reproduces_the_training_clip(
    tmp_path, tiny_orpheus_dir, tiny_snac_dir, tiny_tokenizer
):
    """Train, then speak through what the server uses (registry, contract, local engine)."""
    from voicelab.engine import LocalEngine

    rc, data, voices = train_memoriser(tmp_path, tiny_orpheus_dir, tiny_snac_dir, steps=MEMORISE_STEPS)
    assert rc == 0

    snac = models.load_snac(str(tiny_snac_dir))
    audio = ds.load_clip_audio(ds.Clip("one", data / "one.wav", MEMORISE_TEXT))
    expected = orpheus.frames_to_tokens(snac_codec.encode_batch(snac, [audio])[0]).tolist()

    engine = LocalEngine(str(tiny_orpheus_dir))
    _, generated, chunks = speak_greedily(engine, voices, tiny_orpheus_dir, tiny_tokenizer, len(expected) + 5)
    assert chunks[-1].finish_reason == "stop", "generation ends on END_OF_SPEECH, as trained"
    assert generated == expected
    # the parser serving uses reads the same frames back
    parser = orpheus.AudioTokenParser()
    frames = parser.feed_ids([*generated, orpheus.END_OF_SPEECH])
    assert parser.ended and np.array_equal(frames, orpheus.tokens_to_frames(expected))


def test_multi_gpu_hint_only_for_one_process_on_several_gpus():
    from voicelab.training.trainer import multi_gpu_hint

    assert multi_gpu_hint("cuda", processes=1, gpus=1) is None
    assert multi_gpu_hint("cuda", processes=4, gpus=4) is None  # torchrun: one process per GPU
    assert multi_gpu_hint("cpu", processes=1, gpus=4) is None
    hint = multi_gpu_hint("cuda", processes=1, gpus=4)
    assert "DataParallel" in hint and "torchrun --nproc_per_node 4" in hint and "CUDA_VISIBLE_DEVICES" in hint


def test_same_seed_same_adapter_whatever_ran_before(tmp_path, tiny_orpheus_dir, tiny_tokenizer):
    """--seed fixes the LoRA initialisation too (it is drawn before the Trainer seeds itself)."""
    from transformers import AutoModelForCausalLM

    from voicelab.training.trainer import LoraSettings, TrainSettings, train_lora

    frames = np.random.default_rng(0).integers(0, orpheus.CODEBOOK_SIZE, (4, orpheus.CODES_PER_FRAME))
    examples = [orpheus.training_example(tiny_tokenizer, "Hi.", orpheus.frames_to_tokens(frames))]
    adapters = []
    for run in range(2):
        torch.manual_seed(100 + run)  # other code used the global RNG differently before each run
        torch.rand(run + 1)
        settings = TrainSettings(max_steps=1, save_steps=1000, device="cpu", progress=False, seed=7)
        outcome = train_lora(
            AutoModelForCausalLM.from_pretrained(tiny_orpheus_dir, dtype=torch.float32),
            examples,
            settings,
            LoraSettings(rank=4, alpha=8),
            base_model=str(tiny_orpheus_dir),
            precision="fp32",
            checkpoint_dir=tmp_path / f"ckpt{run}",
        )
        adapters.append({k: v.clone() for k, v in outcome.model.state_dict().items() if "lora_" in k})
    assert adapters[0].keys() == adapters[1].keys() and adapters[0]
    assert all(torch.equal(adapters[0][k], adapters[1][k]) for k in adapters[0])

"""Bad inputs and unusable outputs are found before any work, and exit 2 naming the fix (not 1 late):
outputs where nothing can be written (a file, /sys), a file for a model folder, a voice to compare that
does not exist, a port out of range; vLLM opened to the network without a key is warned about; a corrupt
clip is left out of an export as train-lora leaves it out, and named."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicelab.cli import evaluate_voice, export_dataset, serve_vllm, train_lora
from voicelab.cli import transcribe as transcribe_cli
from voicelab.testing.datasets import write_reviewed_dataset
from voicelab.testing.voices import write_voice_folder

TEXTS = {"clip_000": "First words here.", "clip_001": "Second words here.", "clip_002": "Third words here."}
UNWRITABLE = Path("/sys")
"""A folder no one can create files in, root included (permission bits do not stop root)."""

needs_unwritable = pytest.mark.skipif(
    not UNWRITABLE.is_dir(), reason="needs Linux /sys: a folder nobody can write to"
)


@pytest.fixture
def prepared(tmp_path):
    return write_reviewed_dataset(tmp_path / "prepared" / "alice", TEXTS, (3.0, 3.5, 4.0))


def never(*args, **kwargs):
    raise AssertionError("work started before the inputs were checked")


def last_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error:")][-1]


# -------------------------------------------------------------------------------------- train-lora


@needs_unwritable
@pytest.mark.parametrize("kind", ["file", "sys"])
def test_train_lora_voices_dir_that_takes_no_files_exits_2_at_once(
    prepared, tmp_path, capsys, monkeypatch, kind
):
    from voicelab.training import build

    monkeypatch.setattr(build, "train_voice", never)
    voices = tmp_path / "a_file" if kind == "file" else UNWRITABLE
    if kind == "file":
        voices.write_text("not a folder")
    assert train_lora.main(["alice", str(prepared), "--voices-dir", str(voices)]) == 2
    assert "--voices-dir" in last_error(capsys)


@pytest.mark.parametrize("flag", ["--snac-model", "--base-model"])
def test_a_file_given_for_a_model_folder_is_refused_without_the_hub(
    prepared, tmp_path, capsys, monkeypatch, flag
):
    from voicelab.training import build

    monkeypatch.setattr(build, "train_voice", never)
    afile = tmp_path / "afile.txt"
    afile.write_text("not a model")
    argv = ["alice", str(prepared), "--voices-dir", str(tmp_path / "voices"), flag, str(afile)]
    assert train_lora.main(argv) == 2
    assert f"{flag} {afile} is a file" in last_error(capsys)


# -------------------------------------------------------------------------------------- transcribe


@needs_unwritable
def test_transcribe_output_where_nothing_can_be_written_exits_2_before_the_model_loads(
    prepared, capsys, monkeypatch
):
    from voicelab import transcribe as tr

    monkeypatch.setattr(tr, "load_transcriber", never)
    argv = [str(prepared), "--model", "tiny", "--output", str(UNWRITABLE / "t.csv"), "--no-quality"]
    assert transcribe_cli.main(argv) == 2
    assert "cannot write there" in last_error(capsys)


# ---------------------------------------------------------------------------------------- evaluate


def test_evaluate_compare_with_a_missing_voice_fails_before_anything_loads(
    prepared, tmp_path, capsys, monkeypatch
):
    from voicelab import evaluate as ev

    monkeypatch.setattr(ev, "open_runtime", never)
    voices = tmp_path / "voices"
    write_voice_folder(voices, "alice", base_model="org/base")
    argv = ["alice", "--compare", "ghost", "--voices-dir", str(voices), "--dataset-dir", str(prepared)]
    assert evaluate_voice.main(argv) == 2
    err = capsys.readouterr().err
    assert "ghost" in err and "nothing evaluated" in err


def test_evaluate_compare_with_a_checkpoint_that_is_gone_names_the_ones_kept(
    prepared, tmp_path, capsys, monkeypatch
):
    from voicelab import evaluate as ev
    from voicelab.voice import checkpoints_dir

    monkeypatch.setattr(ev, "open_runtime", never)
    voices = tmp_path / "voices"
    write_voice_folder(voices, "alice", base_model="org/base")
    gone = checkpoints_dir(voices, "alice") / "checkpoint-1"
    argv = ["alice", "--compare", str(gone), "--voices-dir", str(voices), "--dataset-dir", str(prepared)]
    assert evaluate_voice.main(argv) == 2
    assert f"--compare {gone}: no such checkpoint folder, and not a voice name" in capsys.readouterr().err
    (gone.parent / "checkpoint-2").mkdir(parents=True)
    assert evaluate_voice.main(argv) == 2
    assert "alice's checkpoints: checkpoint-2" in capsys.readouterr().err


def test_evaluate_a_snac_model_file_is_refused(tmp_path, capsys):
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    assert evaluate_voice.main(["alice", "--voices-dir", str(tmp_path), "--snac-model", str(afile)]) == 2
    assert "is a file" in last_error(capsys)


# ----------------------------------------------------------------------------------- export-dataset


@needs_unwritable
def test_export_into_a_folder_that_takes_no_files_exits_2(prepared, capsys):
    assert export_dataset.main([str(prepared), str(UNWRITABLE / "exports" / "alice")]) == 2
    assert "choose a writable place" in last_error(capsys)


def test_export_leaves_out_a_corrupt_clip_names_it_and_exits_1(prepared, tmp_path, capsys):
    (prepared / "clip_001.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    out = tmp_path / "exports" / "alice"
    assert export_dataset.main([str(prepared), str(out)]) == 1
    captured = capsys.readouterr()
    assert "clip_001" in captured.err and "unreadable" in captured.err
    assert "2 clips" in captured.out
    assert sorted(p.name for p in out.glob("*.wav")) == ["clip_000.wav", "clip_002.wav"]
    assert "clip_001" not in (out / "metadata.csv").read_text()


# ----------------------------------------------------------------------------------------- serve-vllm


@pytest.mark.parametrize("port", ["70000", "0", "65536", "-1"])
def test_serve_vllm_refuses_a_port_out_of_range(port, capsys):
    with pytest.raises(SystemExit) as exit_info:
        serve_vllm.main(["--dry-run", "--port", port])
    assert exit_info.value.code == 2 and "--port" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "extra", "warned"),
    [
        ("0.0.0.0", [], True),
        ("192.168.1.5", [], True),
        ("gpu-box.lan", [], True),
        ("0.0.0.0", ["--", "--api-key", "k"], False),
        ("0.0.0.0", ["--", "--api-key=k"], False),
        ("127.0.0.1", [], False),
        ("::1", [], False),
        ("localhost", [], False),
    ],
)
def test_serve_vllm_warns_when_lora_loading_is_open_to_the_network(tmp_path, capsys, host, extra, warned):
    assert serve_vllm.main(["--dry-run", "--voices-dir", str(tmp_path), "--host", host, *extra]) == 0
    err = capsys.readouterr().err
    assert ("runtime LoRA loading switched on and no --api-key" in err) is warned

"""The exit-code contract every command keeps: 0 done, 1 some work failed, 2 bad input (one line, the fix),
130 Ctrl-C (one line saying what was kept), no traceback unless -v; cheap errors before heavy imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO
from voicelab.cli import prepare_audio, train_lora
from voicelab.cli import transcribe as transcribe_cli
from voicelab.testing import speech_like_noise


@pytest.fixture
def raw(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    audio = speech_like_noise([(4.0, 0.8), (4.0, 0.5)], 24000)
    sf.write(folder / "good.wav", audio, 24000, subtype="PCM_16")
    return folder


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, lines
    return lines[0]


def test_prepare_output_that_is_a_file_is_a_usage_error(raw, tmp_path, capsys):
    target = tmp_path / "out.txt"
    target.write_text("not a folder")
    assert prepare_audio.main([str(raw), str(target)]) == 2
    assert "is a file" in one_error_line(capsys.readouterr().err)


def test_prepare_output_under_a_file_is_a_usage_error(raw, tmp_path, capsys):
    (tmp_path / "blocker").write_text("x")
    assert prepare_audio.main([str(raw), str(tmp_path / "blocker" / "clips")]) == 2
    assert "cannot create it" in one_error_line(capsys.readouterr().err)


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs Linux /sys: a folder nobody can write to")
def test_prepare_unwritable_output_is_refused_before_any_work(raw, capsys):
    # Permission bits do not stop root; /sys takes no new file from anyone, so the check must really write.
    assert prepare_audio.main([str(raw), "/sys"]) == 2
    assert "cannot write there" in one_error_line(capsys.readouterr().err)


def test_prepare_missing_input_creates_no_output(tmp_path, capsys):
    assert prepare_audio.main([str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    assert "does not exist" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_ctrl_c_in_prepare_is_one_line_and_130(raw, tmp_path, capsys, monkeypatch):
    from voicelab import prepare

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare, "prepare_source", interrupted)
    assert prepare_audio.main([str(raw), str(tmp_path / "out")]) == 130
    assert "rerun the same command" in one_error_line(capsys.readouterr().err)


def test_prepare_unexpected_failure_is_one_line_exit_1_and_v_shows_the_traceback(
    raw, tmp_path, capsys, monkeypatch
):
    from voicelab import prepare

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(prepare, "prepare_source", broken)
    assert prepare_audio.main([str(raw), str(tmp_path / "out")]) == 1
    assert "ZeroDivisionError: boom" in one_error_line(capsys.readouterr().err)
    assert prepare_audio.main([str(raw), str(tmp_path / "out2"), "-v"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_prepare_last_line_says_what_was_done_and_what_failed(raw, tmp_path, capsys):
    (raw / "broken.wav").write_bytes(b"RIFF....not audio at all")
    assert prepare_audio.main([str(raw), str(tmp_path / "out")]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("finished with errors: 2 clip(s) written; 1 of 2 file(s) failed")


def test_transcribe_output_that_is_a_folder_is_a_usage_error(raw, tmp_path, capsys):
    clips = tmp_path / "clips"
    assert prepare_audio.main([str(raw), str(clips)]) == 0
    capsys.readouterr()
    assert transcribe_cli.main([str(clips), "--output", str(tmp_path), "--model", "tiny"]) == 2
    assert "is a folder" in one_error_line(capsys.readouterr().err)


def test_transcribe_ctrl_c_keeps_rows_and_says_how_to_resume(raw, tmp_path, capsys, monkeypatch):
    from voicelab import transcribe

    clips = tmp_path / "clips"
    assert prepare_audio.main([str(raw), str(clips)]) == 0
    capsys.readouterr()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(transcribe, "load_transcriber", interrupted)
    assert transcribe_cli.main([str(clips), "--model", "tiny", "--device", "cpu"]) == 130
    assert "rerun the same command to resume" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("bad-name", "invalid voice name"),
        ("no-dataset", "dataset folder not found"),
        ("no-transcript", "transcript not found"),
        ("voice-exists", "already exists"),
    ],
)
def test_train_lora_cheap_errors_come_before_torch_is_imported(tmp_path, case, expected):
    data, voices = tmp_path / "data", tmp_path / "voices"
    data.mkdir()
    if case != "no-transcript":
        (data / "transcript.csv").write_text("filename,text\na,Hello.\n")
    (voices / "bob").mkdir(parents=True)
    name = {"bad-name": "bob smith", "voice-exists": "bob"}.get(case, "carol")
    dataset_dir = tmp_path / "nope" if case == "no-dataset" else data
    code = (
        "import sys\n"
        "from voicelab.cli import train_lora\n"
        f"rc = train_lora.main([{name!r}, {str(dataset_dir)!r}, '--voices-dir', {str(voices)!r}])\n"
        "print(rc, 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["2", "False", "False"]
    assert expected in one_error_line(proc.stderr)


def test_console_commands_are_installed():
    bin_dir = Path(sys.executable).parent
    for step in ("prepare-audio", "transcribe", "train-lora", "serve-vllm", "export-dataset", "evaluate"):
        proc = subprocess.run(
            [bin_dir / f"voicelab-{step}", "--help"], capture_output=True, text=True, check=True
        )
        assert proc.stdout.startswith(f"usage: voicelab-{step}")


def test_script_shims_stay_shims():
    for script in (REPO / "scripts").glob("*.py"):
        assert len(script.read_text().splitlines()) < 15, script


def test_train_lora_main_flags_round_trip():
    args = train_lora.build_parser().parse_args(["bob", "data", "--lora-rank", "16", "--lora-alpha", "32"])
    request = train_lora.request_from_args(args)
    assert (request.name, request.lora.rank, request.lora.alpha) == ("bob", 16, 32)
    assert np.isclose(request.train.learning_rate, 5e-5)


def test_a_failed_recording_is_reported_once_then_remembered_until_it_changes(raw, tmp_path, capsys, caplog):
    out = tmp_path / "out"
    (raw / "broken.wav").write_bytes(b"RIFF....not audio at all")
    assert prepare_audio.main([str(raw), str(out)]) == 1
    capsys.readouterr()
    notes = (out / "sources_left_out.csv").read_text()
    assert notes.startswith("source,size,mtime_ns,reason\nbroken.wav,")

    assert prepare_audio.main([str(raw), str(out)]) == 0  # nothing new failed
    report = capsys.readouterr()
    assert "1 file(s) left out by an earlier run and unchanged" in report.out
    assert "--retry-failed" in report.out and "broken.wav" not in report.err

    caplog.clear()
    assert prepare_audio.main([str(raw), str(out), "--retry-failed"]) == 1
    # the failure is logged: on stderr from the command (its handler), into pytest's handler here
    assert "broken.wav" in capsys.readouterr().err + caplog.text

    sf.write(raw / "broken.wav", speech_like_noise([(4.0, 0.5)], 24000), 24000)  # replaced by good audio
    assert prepare_audio.main([str(raw), str(out)]) == 0
    assert not (out / "sources_left_out.csv").exists()
    assert (out / "broken_000.wav").exists()


def test_under_make_the_last_line_still_says_what_happened(raw, tmp_path):
    (raw / "broken.wav").write_bytes(b"RIFF....not audio at all")
    proc = subprocess.run(
        ["make", "--no-print-directory", "prepare-audio", f"ARGS={raw} {tmp_path / 'out'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2  # make turns the step's 1 into its own Error 1 and exits 2 (README)
    assert "Error 1" in proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("finished with errors: 2 clip(s) written; 1 of 2 file(s) failed")

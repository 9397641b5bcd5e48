"""``make voice`` / ``voicelab-voice``: recordings to an evaluated voice in one command, on espeak-ng speech
and tiny random models; a rerun does nothing and says so; bad input stops before anything is written.

The one fast end-to-end path (``make voice ... --no-review``) is in the default run; the review stop and
the interrupted training that resumes to the same adapter are ``slow``.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from voicelab import progress, testing
from voicelab.cli import voice
from voicelab.cli.pipeline import sources
from voicelab.cli.pipeline.state import exclusive
from voicelab.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
NAME = "demo"
TAKES = {
    "take1.wav": [
        "The quick brown fox jumps over the lazy dog near the river bank today.",
        1.0,
        "She sells sea shells by the sea shore every single summer morning.",
    ],
    "take2.wav": [
        "A journey of a thousand miles begins with one small step forward.",
        1.0,
        "Hello there, how are you doing on this fine and sunny afternoon?",
    ],
}
POLL_S = 0.2


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    if not testing.espeak_available():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    folder = tmp_path_factory.mktemp("recordings")
    for name, parts in TAKES.items():
        testing.speak(parts, folder / name)
    return folder


@pytest.fixture
def tiny_flags(tiny_orpheus_dir, tiny_snac_dir, tiny_whisper_path, fast_transcribe_flags):
    """Tiny models, a short training, a small evaluation: seconds per step on a CPU."""
    return [
        *["--base-model", str(tiny_orpheus_dir), "--snac-model", str(tiny_snac_dir)],
        *["--whisper-model", str(tiny_whisper_path), "--device", "cpu", "--no-quality"],
        *[f for f in fast_transcribe_flags if f != "--no-progress"],
        *["--max-steps", "1", "--lora-rank", "8", "--lora-alpha", "16", "--eval-clips", "0"],
        *["--sentences", "1", "--max-heldout", "0", "--max-tokens", "29"],
        *["--tag-sentences", "0"],  # evaluate's tags check is test_tags.py's; here it would be 32 more clips
    ]


def folders(root: Path) -> list[str]:
    return [
        "--raw-dir",
        str(root / "raw"),
        "--prepared-dir",
        str(root / "prepared"),
        "--voices-dir",
        str(root / "voices"),
    ]


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def make_voice(root: Path, recordings: Path, args: list[str]) -> subprocess.CompletedProcess:
    # under `make test` this make is a sub-make: without --no-print-directory it adds "Leaving directory"
    command = ["make", "--no-print-directory", "voice", f"NAME={NAME}", f"SOURCE={recordings}"]
    return subprocess.run(
        [*command, f"ARGS={subprocess.list2cmdline(args)}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


def test_make_voice_builds_an_evaluated_voice_and_a_second_run_does_nothing(tmp_path, recordings, tiny_flags):
    events_path = tmp_path / "events.jsonl"
    args = [
        *folders(tmp_path),
        "--no-review",
        "--no-progress",
        "--progress-file",
        str(events_path),
        *tiny_flags,
    ]
    first = make_voice(tmp_path, recordings, args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    voice_dir = tmp_path / "voices" / NAME
    assert (voice_dir / "adapter_model.safetensors").is_file()
    assert (voice_dir / "eval" / "eval.json").is_file()
    assert sorted(p.name for p in (tmp_path / "raw" / NAME).iterdir()) == sorted(TAKES)
    last = first.stdout.strip().splitlines()[-3:]
    assert last[0] == f"voice '{NAME}' is ready: {voice_dir}", first.stdout[-2000:]
    assert last[1].startswith("evaluation: ") and "checks pass" in last[1]
    assert last[2].startswith("serve it: make serve") and "POST /v1/voices/reload" in last[2]

    seen = events(events_path)
    assert seen[0] == {**seen[0], "event": "plan", "steps": list(voice_steps())}
    finished = [(e["step"], e["status"]) for e in seen if e["event"] == "step" and e["status"] != "started"]
    assert finished == [
        ("fetch", "done"),
        ("prepare-audio", "done"),
        ("transcribe", "done"),
        ("review", "skipped"),
        ("train-lora", "done"),
        ("evaluate", "done"),
        ("reload", "skipped"),
    ]
    training = [e for e in seen if e["event"] == "progress" and e["phase"] == "training"]
    assert training[-1]["done"] == training[-1]["total"] == 1 and training[-1]["unit"] == "step"
    assert {e["step"] for e in seen if e["event"] == "progress"} >= {
        "prepare-audio",
        "transcribe",
        "evaluate",
    }
    assert seen[-1] == {**seen[-1], "event": "end", "status": "done", "exit_code": 0}

    adapter_mtime = (voice_dir / "adapter_model.safetensors").stat().st_mtime_ns
    second = make_voice(tmp_path, recordings, args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "nothing to do: every step was done before" in second.stdout
    assert second.stdout.strip().splitlines()[-3] == f"voice '{NAME}' is ready: {voice_dir}"
    assert (voice_dir / "adapter_model.safetensors").stat().st_mtime_ns == adapter_mtime


def voice_steps():
    from voicelab.cli.pipeline.run import STEP_ORDER

    return STEP_ORDER


# --- bad input: a clear message, exit 2, nothing left behind ---------------------------------------------
def run_cli(tmp_path, argv, capsys) -> tuple[int, str]:
    code = voice.main([*argv, *folders(tmp_path), "--device", "cpu"])
    progress.close()
    return code, capsys.readouterr().err


def left_behind(tmp_path) -> list[str]:
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))


def test_an_unreachable_url_is_named_and_leaves_nothing(tmp_path, capsys):
    code, err = run_cli(tmp_path, [NAME, "http://127.0.0.1:1/talk.wav"], capsys)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: could not download http://127.0.0.1:1/talk.wav: ")
    assert "Connection refused" in err
    assert left_behind(tmp_path) == ["prepared", "raw"]  # the roots, nothing in them


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.txt", "hello", "notes.txt: not an audio file (supported: "),
        ("fake.wav", "<html>not audio</html>", "fake.wav: not a readable audio file"),
    ],
)
def test_a_file_that_is_not_audio_is_refused_before_anything_is_written(
    tmp_path, capsys, name, content, message
):
    bad = tmp_path / "in" / name
    bad.parent.mkdir()
    bad.write_text(content)
    code, err = run_cli(tmp_path, [NAME, str(bad)], capsys)
    assert code == 2 and message in err
    assert left_behind(tmp_path) == ["in", f"in/{name}"]


def test_a_name_that_exists_is_refused(tmp_path, recordings, capsys):
    (tmp_path / "voices" / NAME).mkdir(parents=True)
    (tmp_path / "voices" / NAME / "adapter_config.json").write_text("{}")
    code, err = run_cli(tmp_path, [NAME, str(recordings)], capsys)
    assert code == 2
    assert f"a voice named '{NAME}' already exists" in err and "choose another NAME" in err
    assert left_behind(tmp_path) == ["voices", f"voices/{NAME}", f"voices/{NAME}/adapter_config.json"]


def test_a_voice_this_dataset_made_is_not_a_name_clash(tmp_path, recordings):
    """Published, then stopped before pipeline.json said so: the rerun takes the voice as its own."""
    from voicelab.cli.pipeline import options as opts
    from voicelab.cli.pipeline.run import VoiceRequest, preflight
    from voicelab.cli.pipeline.state import PipelineState
    from voicelab.cli.voice import OWN_FLAGS
    from voicelab.testing.voices import write_voice_folder
    from voicelab.voice import VOICE_FILE

    options = opts.collect(OWN_FLAGS)
    folders_ = (tmp_path / d for d in ("raw", "prepared", "voices"))
    cpu = opts.parse_flags(["--device", "cpu"], options)
    request = VoiceRequest(NAME, [str(recordings)], *folders_, passed=cpu, options=options)
    voice_dir = write_voice_folder(tmp_path / "voices", NAME, base_model="org/base")
    meta = json.loads((voice_dir / VOICE_FILE).read_text())
    (voice_dir / VOICE_FILE).write_text(json.dumps({**meta, "dataset": {"dataset_dir": "/elsewhere"}}))
    with pytest.raises(UsageError, match="already exists"):
        preflight(request, PipelineState.load(request.prepared, NAME))
    meta["dataset"] = {"dataset_dir": str(request.prepared.resolve())}
    (voice_dir / VOICE_FILE).write_text(json.dumps(meta))
    preflight(request, PipelineState.load(request.prepared, NAME))


def test_a_second_run_for_the_same_voice_is_refused_while_one_works(tmp_path, recordings, capsys):
    prepared = tmp_path / "prepared" / NAME
    with exclusive(prepared, NAME):
        code, err = run_cli(tmp_path, [NAME, str(recordings)], capsys)
    assert code == 2
    assert f"voice '{NAME}' is being made by another run (pid {os.getpid()} since " in err
    assert not (tmp_path / "raw").exists(), "the refused run fetched nothing"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ftp://example.com/a.wav"], "ftp://example.com/a.wav: only http:// and https:// addresses"),
        (["missing/"], "missing/: no such file or folder"),
        (["REC", "--lora-rank", "0"], "train-lora: --lora-rank 0: must be between 1 and 512"),
        (
            ["REC", "--whisper-batch-size", "4"],
            "transcribe: --batch-size and --compute-type apply to --backend",
        ),
    ],
)
def test_bad_sources_and_flags_stop_before_any_work(tmp_path, recordings, capsys, argv, message):
    argv = [str(recordings) if a == "REC" else a for a in argv]
    code, err = run_cli(tmp_path, [NAME, *argv], capsys)
    assert code == 2 and message in err, err
    assert not (tmp_path / "raw").exists() and not (tmp_path / "prepared").exists()


def test_training_on_a_gpu_this_machine_lacks_is_refused_at_once(tmp_path, recordings, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: train-lora's default device exists")
    code = voice.main([NAME, str(recordings), *folders(tmp_path)])  # train-lora's default: --device cuda
    progress.close()
    err = capsys.readouterr().err
    assert code == 2 and "error: --device cuda: " in err and "pass --device cpu" in err
    assert not (tmp_path / "raw").exists()


def test_a_bad_name_is_refused(tmp_path, recordings, capsys):
    code, err = run_cli(tmp_path, ["../escape", str(recordings)], capsys)
    assert code == 2 and "invalid voice name '../escape'" in err


# --- URLs ------------------------------------------------------------------------------------------------
@pytest.fixture
def web(tmp_path, recordings):
    """A local web server with a recording and a page that only pretends to be one."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "talk.wav").write_bytes((recordings / "take1.wav").read_bytes())
    (site / "page.wav").write_text("<html>a web page, not audio</html>")
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_a_url_is_fetched_with_yt_dlp_into_the_raw_folder(tmp_path, web):
    raw = tmp_path / "raw" / NAME
    raw.mkdir(parents=True)
    names = sources.fetch_url(f"{web}/talk.wav", raw)
    assert len(names) == 1 and names[0].endswith(".wav")
    assert (raw / names[0]).read_bytes()[:4] == b"RIFF"
    assert sorted(p.name for p in raw.iterdir()) == names, "no hidden download folder is left"


def test_a_url_that_gives_no_audio_leaves_nothing(tmp_path, web):
    raw = tmp_path / "raw" / NAME
    raw.mkdir(parents=True)
    with pytest.raises(sources.SourceError, match=r"page.wav gave .*not audio prepare-audio can read"):
        sources.fetch_url(f"{web}/page.wav", raw)
    assert list(raw.iterdir()) == []


# --- slow: the review stop, and an interrupted training --------------------------------------------------
@pytest.mark.slow
def test_it_stops_once_for_review_and_the_rerun_trains(tmp_path, recordings, tiny_flags):
    args = [*folders(tmp_path), "--no-progress", *tiny_flags]
    paused = subprocess.run(["voicelab-voice", NAME, str(recordings), *args], **_captured())
    assert paused.returncode == 0, paused.stderr[-3000:]
    assert "stopped for review" in paused.stdout and "rerun the same command to train" in paused.stdout
    assert not (tmp_path / "voices" / NAME).exists()
    go_on = subprocess.run(["voicelab-voice", NAME, str(recordings), *args], **_captured())
    assert go_on.returncode == 0, go_on.stderr[-3000:]
    assert "review: done (reviewed: going on to training)" in go_on.stdout
    assert (tmp_path / "voices" / NAME / "adapter_config.json").is_file()


def _captured() -> dict:
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    return {"capture_output": True, "text": True, "check": False, "env": env, "cwd": REPO}


@pytest.mark.slow
def test_training_interrupted_by_ctrl_c_resumes_to_the_same_adapter(tmp_path, recordings, tiny_flags):
    from safetensors.torch import load_file

    def argv(root: Path) -> list[str]:
        flags = [*tiny_flags, "--max-steps", "4", "--logging-steps", "1"]
        return [
            "voicelab-voice",
            NAME,
            str(recordings),
            *folders(root),
            "--no-review",
            "--no-progress",
            *flags,
        ]

    whole = subprocess.run(argv(tmp_path / "whole"), **_captured())
    assert whole.returncode == 0, whole.stderr[-3000:]

    cut = tmp_path / "cut"
    events_path = cut / "events.jsonl"
    running = subprocess.Popen(
        [*argv(cut), "--progress-file", str(events_path)],
        **{k: v for k, v in _captured().items() if k not in ("capture_output", "check")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    while running.poll() is None:
        if events_path.exists() and any(
            e["event"] == "progress" and e["phase"] == "training" and e["done"] >= 2
            for e in events(events_path)
        ):
            running.send_signal(signal.SIGINT)  # what Ctrl-C (or the studio's Cancel) sends
            break
        time.sleep(POLL_S)
    output = running.communicate()[0]
    assert running.returncode == 130, output[-3000:]
    assert "interrupted during train-lora: rerun the same command to resume" in output
    assert events(events_path)[-1] == {**events(events_path)[-1], "event": "end", "status": "interrupted"}

    resumed = subprocess.run(argv(cut), **_captured())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "train-lora: resuming from the last checkpoint" in resumed.stderr
    a = load_file(tmp_path / "whole" / "voices" / NAME / "adapter_model.safetensors")
    b = load_file(cut / "voices" / NAME / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    meta = json.loads((cut / "voices" / NAME / "voice.json").read_text())
    assert meta["training"]["steps"] == 4 and meta["training"]["resumed_from"]

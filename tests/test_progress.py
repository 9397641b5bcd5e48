"""Progress events: one JSON object per line beside tqdm's bar, in the format docs/progress.md describes."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import pytest

from voicelab import progress, testing

FIELDS = {"v", "event", "step", "phase", "done", "total", "unit", "rate", "eta", "message", "time"}


@pytest.fixture
def events_file(tmp_path):
    path = tmp_path / "events.jsonl"
    progress.configure(path, "demo-step")
    yield path
    progress.close()


def read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_bar_writes_its_first_and_last_state_with_every_field(events_file, monkeypatch):
    clock = iter(range(100))
    monkeypatch.setattr(progress.time, "monotonic", lambda: float(next(clock)))
    with progress.progress_bar(total=4, desc="encoding", unit="clip", disable=True) as bar:
        for _ in range(4):
            bar.set_postfix_str("clip_x")
            bar.update(1)
    events = read(events_file)
    assert all(set(e) == FIELDS for e in events)
    first, last = events[0], events[-1]
    assert (first["done"], first["total"], first["rate"], first["eta"]) == (0.0, 4.0, None, None)
    assert last == {
        **last,
        "event": "progress",
        "step": "demo-step",
        "phase": "encoding",
        "done": 4.0,
        "total": 4.0,
        "unit": "clip",
        "eta": 0.0,
        "message": "clip_x",
    }
    assert last["rate"] > 0
    assert [e["done"] for e in events] == sorted(e["done"] for e in events)
    assert sum(e["done"] == 4.0 for e in events) == 1, "closing repeats no event"


def test_events_are_spaced_however_fast_the_loop(events_file):
    for _ in progress.progress_bar(range(10_000), desc="fast", disable=True):
        pass
    events = read(events_file)
    assert len(events) <= 4 and events[-1]["done"] == 10_000  # the first, the last, maybe one between


def test_without_a_destination_a_bar_writes_nothing_and_draws_only_on_request(tmp_path):
    progress.close()
    assert not progress.enabled()
    counted = list(progress.progress_bar(range(3), disable=True))
    assert counted == [0, 1, 2]
    script = "from voicelab import progress; b = progress.progress_bar(total=2, disable=None); b.update(2); b.close();"
    script += "import sys; print('tqdm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", "off a terminal tqdm is not even imported"


def test_step_events_name_their_step(events_file):
    progress.emit(progress.EVENT_STEP, step="train-lora", status="started")
    progress.configure(None, "evaluate")  # a step called without the flag keeps the run's file
    with progress.progress_bar(total=1, disable=True) as bar:
        bar.update()
    events = read(events_file)
    assert events[0]["step"] == "train-lora" and events[0]["status"] == "started"
    assert {e["step"] for e in events[1:]} == {"evaluate"}


def test_a_reader_gets_whole_lines_only(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"event": "step", "n": 1}\nnot json\n{"event": "prog', encoding="utf-8")
    events, offset = progress.read_events(path)
    assert events == [{"event": "step", "n": 1}]
    with path.open("a", encoding="utf-8") as handle:
        handle.write('ress"}\n')
    more, _ = progress.read_events(path, offset)
    assert more == [{"event": "progress"}]


def test_prepare_audio_reports_progress_in_audio_minutes(tmp_path):
    from voicelab.cli import prepare_audio

    if not testing.espeak_available():
        pytest.skip("espeak-ng is not installed")
    testing.speak(
        ["One sentence for the test of progress events.", 1.0, "And a second one."], tmp_path / "r.wav"
    )
    events_path = tmp_path / "ev" / "events.jsonl"  # its folder is made
    try:
        code = prepare_audio.main(
            [str(tmp_path / "r.wav"), str(tmp_path / "out"), "--progress-file", str(events_path)]
        )
    finally:
        progress.close()
    assert code == 0
    events = read(events_path)
    assert {e["step"] for e in events} == {"prepare-audio"} and {e["unit"] for e in events} == {"min"}
    assert events[-1]["done"] == events[-1]["total"] > 0 and events[-1]["message"] == "r.wav"


def test_an_unwritable_progress_file_is_a_usage_error(tmp_path, capsys):
    from voicelab.cli import transcribe

    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        transcribe.main([str(tmp_path), "--progress-file", str(tmp_path / "file" / "events.jsonl")])
    assert exit_info.value.code == 2
    assert "--progress-file: cannot append to" in capsys.readouterr().err


# --- without a terminal: a log line every 5% ---------------------------------------------------------------
def test_without_a_terminal_a_bar_logs_a_line_every_twentieth_of_its_total(caplog, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    with caplog.at_level(logging.INFO, logger="voicelab.progress"):
        bar = progress.progress_bar(total=50.0, desc="transcribing (audio min)", unit="min", disable=None)
        for done in range(1, 101):
            now[0] += 3.0
            bar.set_postfix_str(f"clips {done}/100")
            bar.update(0.5)
        bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == progress.LINES_PER_RUN
    assert (
        lines[0] == "transcribing (audio min): 2.5/50.0 min (5%), clips 5/100, 0:15 elapsed, about 4:45 left"
    )
    assert lines[-1] == "transcribing (audio min): 50.0/50.0 min (100%), clips 100/100, 5:00 elapsed"


def test_the_time_left_leaves_out_a_slow_first_item(caplog, events_file):
    """The first clip also loads the models: the line's time left and the events' eta follow the pace after
    it (a minute for the first, 3 s each after: 95 clips left are 4:45, not 22:48)."""
    now = [0.0]
    with caplog.at_level(logging.INFO, logger="voicelab.progress"):
        bar = progress.progress_bar(total=100, desc="clips", unit="clip", disable=None, clock=lambda: now[0])
        for done in range(1, 6):
            now[0] += 60.0 if done == 1 else 3.0
            bar.update(1)
    assert caplog.records[0].getMessage() == "clips: 5/100 clip (5%), 1:12 elapsed, about 4:45 left"
    last = read(events_file)[-1]
    assert (last["done"], last["eta"], last["rate"]) == (5.0, 285.0, round(1 / 3, 3))


def test_a_batch_that_jumps_past_several_lines_logs_once(caplog):
    logs = caplog.at_level(logging.INFO, logger="voicelab.progress")
    with logs, progress.progress_bar(total=10, desc="clips", unit="clip", disable=None) as bar:
        for batch in (4, 4, 2):
            bar.update(batch)
    assert [r.getMessage().split(",")[0] for r in caplog.records] == [
        "clips: 4/10 clip (40%)",
        "clips: 8/10 clip (80%)",
        "clips: 10/10 clip (100%)",
    ]


@pytest.mark.parametrize("kwargs", [{"disable": True}, {"disable": None, "total": None}, {"total": 0}])
def test_no_lines_when_off_unsized_or_empty(caplog, kwargs):
    logs = caplog.at_level(logging.INFO, logger="voicelab.progress")
    with logs, progress.progress_bar(**{"total": 5, "desc": "x", **kwargs}) as bar:
        bar.update(5)
    assert caplog.records == []


def test_on_a_terminal_tqdm_draws_and_no_line_is_logged(caplog, monkeypatch):
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: True, raising=False)
    logs = caplog.at_level(logging.INFO, logger="voicelab.progress")
    with logs, progress.progress_bar(total=5, desc="x", disable=None, file=io.StringIO()) as bar:
        bar.update(5)
        assert bar._tqdm is not None
    assert caplog.records == []

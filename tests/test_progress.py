"""Progress without a terminal: a log line every few items, with the time left."""

from __future__ import annotations

import logging

from voicelab.progress import LINES_PER_RUN, LineProgress, QuietProgress, bar_or_lines


def test_without_a_terminal_a_line_every_twentieth_of_the_items(caplog):
    now = [0.0]
    bar = LineProgress(100, desc="transcribing clips", amount=(50.0, "min of audio"), clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="voicelab.progress"):
        for done in range(1, 101):
            now[0] += 3.0
            bar.update(0.5)
            bar.set_postfix_str(f"clips {done}/100")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == LINES_PER_RUN
    assert lines[0] == "transcribing clips: 5/100 (5%), 2.5/50.0 min of audio, 0:15 elapsed, about 4:45 left"
    assert lines[-1] == "transcribing clips: 100/100 (100%), 50.0/50.0 min of audio, 5:00 elapsed"


def test_the_time_left_leaves_out_a_slow_first_item(caplog):
    """The first clip also loads the models: the estimate follows the pace after it."""
    now = [0.0]
    bar = LineProgress(100, desc="clips", clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="voicelab.progress"):
        for done in range(1, 6):
            now[0] += 60.0 if done == 1 else 3.0
            bar.set_postfix_str(f"clips {done}/100")
    assert caplog.records[0].getMessage() == "clips: 5/100 (5%), 1:12 elapsed, about 4:45 left"


def test_batches_that_jump_past_a_line_still_log_once_each(caplog):
    bar = LineProgress(10, desc="clips")
    with caplog.at_level(logging.INFO, logger="voicelab.progress"):
        for done in (4, 8, 10):  # batches of 4 against a line every item
            bar.set_postfix_str(f"clips {done}/10")
    assert [r.getMessage().split(",")[0] for r in caplog.records] == [
        "clips: 4/10 (40%)",
        "clips: 8/10 (80%)",
        "clips: 10/10 (100%)",
    ]


def test_off_or_nothing_to_do_is_quiet(capsys):
    assert isinstance(bar_or_lines(0, desc="x"), QuietProgress)
    assert isinstance(bar_or_lines(5, desc="x", enabled=False), QuietProgress)
    assert isinstance(bar_or_lines(5, desc="x"), LineProgress)  # pytest's stderr is not a terminal

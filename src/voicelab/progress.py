"""Machine-readable progress: JSON lines beside tqdm's bar, one format for every step.

A step reports its loops through ``progress_bar(...)`` (tqdm's arguments, tqdm's methods) instead of ``tqdm(...)``:
the bar is drawn as tqdm would draw it, and when the command was given ``--progress-file PATH`` each
update is also written to PATH as one JSON object per line (docs/progress.md describes every field), so
``voicelab-voice`` and the studio's job page show the same progress without parsing terminal output.

    {"event": "progress", "step": "transcribe", "phase": "transcribing (audio min)", "done": 1.5,
     "total": 4.0, "unit": "min", "rate": 0.05, "eta": 50.0, "message": "clips 12/40", "time": ...}

Events are written at most every ``MIN_INTERVAL_S`` per bar, plus the first and the last, so a fast loop
costs nothing. Drawing and events are independent: ``--no-progress`` hides the bar, not the events.

Where tqdm would not draw because stderr is not a terminal (``disable=None``: ``make transcribe > log``,
``| tee``, CI, a studio job's log), the bar logs a line instead every ``1 / LINES_PER_RUN`` of its total
(done, share, the loop's message, elapsed, time left), so a run of hours still says how far it is. A loop
sets its message (``set_postfix_str``) before its ``update``, so the line an update logs says where it is.

The time left (in the line and in the events' ``eta``/``rate``) follows the pace after the first update:
the first item of a run also loads the models, which can take as long as many items after it, so an
estimate that counted it would say far more time is left than is.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Written in every event as ``"v"``; raised only when a field changes meaning."""
MIN_INTERVAL_S = 0.5
"""Fewest seconds between two events of one bar: a page redraws no faster, and the file stays small."""
PROGRESS_FLAG = "--progress-file"
LINES_PER_RUN = 20
"""Without a terminal, at most about this many progress lines per bar (one every 5% of its total)."""

EVENT_PROGRESS = "progress"
EVENT_STEP = "step"
EVENT_PLAN = "plan"
EVENT_END = "end"


class _Sink:
    """The file events are appended to (line-buffered, one ``write`` per event, shared by threads)."""

    def __init__(self, path: Path, step: str) -> None:
        self.path = Path(path)
        self.step = step
        self._lock = threading.Lock()
        self._file: TextIO = self.path.open("a", encoding="utf-8", buffering=1)

    def write(self, event: dict[str, Any]) -> None:
        line = json.dumps({"v": FORMAT_VERSION, **event, "time": round(time.time(), 3)}, ensure_ascii=False)
        with self._lock:
            try:
                self._file.write(line + "\n")
            except (OSError, ValueError) as e:  # a full disk or a closed file must not stop the work
                logger.debug("progress event not written to %s: %s", self.path, e)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()


_sink: _Sink | None = None


def _events_path(text: str) -> Path:
    """argparse ``type=``: a file that can be appended to (its folder is made if missing)."""
    path = Path(text)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot append to {text}: {e.strerror or e}") from None
    return path


def add_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--progress-file`` flag every long step has."""
    parser.add_argument(
        PROGRESS_FLAG,
        type=_events_path,
        metavar="PATH",
        help="also append progress as JSON lines to PATH (a file, or /dev/fd/N; format: docs/progress.md)",
    )


def configure(path: Path | None, step: str) -> None:
    """Send the events of ``step`` to ``path`` (appended); ``None`` leaves the current destination as it is.

    Called by each command's ``main`` with its ``--progress-file``; a step run by ``voicelab-voice`` gets
    the pipeline's file, so one file holds the whole run.
    """
    global _sink
    if path is None:
        if _sink is not None:
            _sink.step = step
        return
    if _sink is not None and _sink.path == Path(path):
        _sink.step = step
        return
    close()
    try:
        _sink = _Sink(path, step)
    except OSError as e:  # checked by the flag's type already; progress is never worth failing the work
        logger.warning("%s %s: cannot open it (%s); no progress events", PROGRESS_FLAG, path, e.strerror or e)


def close() -> None:
    global _sink
    if _sink is not None:
        _sink.close()
        _sink = None


def enabled() -> bool:
    return _sink is not None


def current_step() -> str | None:
    return _sink.step if _sink is not None else None


def emit(event: str, **fields: Any) -> None:
    """Write one event (``step`` defaults to the configured step); nothing happens without a destination."""
    if _sink is None:
        return
    _sink.write({"event": event, "step": fields.pop("step", _sink.step), **fields})


def _finite(value: float | None, digits: int = 3) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


class Bar:
    """A tqdm-compatible progress bar that also emits events (see the module docstring).

    Takes tqdm's arguments; the bar itself is drawn by tqdm only where tqdm would draw it (``disable``:
    ``None`` on a terminal only, ``True`` never, ``False`` always), and tqdm is imported only then.
    """

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: float | None = None,
        desc: str | None = None,
        unit: str = "it",
        initial: float = 0,
        disable: bool | None = False,
        clock: Callable[[], float] | None = None,
        **tqdm_kwargs: Any,
    ) -> None:
        """``clock``: seconds, ``time.monotonic`` by default (tests hand in their own)."""
        if total is None and iterable is not None:
            with contextlib.suppress(TypeError):
                total = len(iterable)  # type: ignore[arg-type]
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n: float = initial
        self._initial = initial  # a resumed loop: the rate counts only what this run did
        self.message = ""
        self._clock = clock or time.monotonic
        self._started = self._clock()
        self._first: tuple[float, float] | None = None  # (time, done) at the first update: the slow one
        self._last_event = -math.inf
        self._last_done: float | None = None
        self._closed = False
        self._tqdm = None
        terminal = sys.stderr.isatty()
        if disable is False or (disable is None and terminal):
            from tqdm import tqdm

            self._tqdm = tqdm(total=total, desc=desc, unit=unit, initial=initial, **tqdm_kwargs)
        self._lines = disable is None and not terminal and bool(total)
        self._line_share = self._share_step()  # the 1/LINES_PER_RUN steps already logged
        self._emit(force=True)

    # -- tqdm's interface ----------------------------------------------------------------------------
    def update(self, n: float = 1) -> None:
        self.n += n
        if self._first is None:
            self._first = (self._clock(), self.n)
        if self._tqdm is not None:
            self._tqdm.update(n)
        self._emit()
        if self._lines and self._share_step() > self._line_share:
            self._log_line()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.message = s
        if self._tqdm is not None:
            self._tqdm.set_postfix_str(s, refresh=refresh)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc
        if self._tqdm is not None:
            self._tqdm.set_description(desc, refresh=refresh)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._tqdm is not None:
            self._tqdm.close()
        self._emit(force=True)

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("this bar wraps no iterable")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- lines without a terminal -----------------------------------------------------------------------
    def _share_step(self) -> int:
        """How many 1/LINES_PER_RUN steps of the total are done (a tiny margin absorbs float sums)."""
        if not self.total:
            return 0
        return math.floor(self.n / self.total * LINES_PER_RUN + 1e-9)

    def _log_line(self) -> None:
        self._line_share = self._share_step()
        logger.info("%s", self.line())

    def line(self) -> str:
        """``desc: done/total unit (share), message, elapsed, about ... left``."""
        total = float(self.total or 0)
        whole = isinstance(self.total, int) and float(self.n).is_integer()  # counted items, not minutes
        amount = f"{self.n:.0f}/{total:.0f}" if whole else f"{self.n:.1f}/{total:.1f}"
        parts = [f"{self.desc or 'progress'}: {amount} {self.unit} ({self.n / total:.0%})"]
        if self.message:
            parts.append(self.message)
        now = self._clock()
        parts.append(f"{_clock(now - self._started)} elapsed")
        pace = self._seconds_per_unit(now)
        if pace is not None and self.n < total:
            parts.append(f"about {_clock(pace * (total - self.n))} left")
        return ", ".join(parts)

    def _seconds_per_unit(self, now: float) -> float | None:
        """The pace since the first update (which also paid for loading the models), or, before a second
        update, the pace so far; ``None`` before anything is done."""
        if self._first is not None and self.n > self._first[1] and now > self._first[0]:
            return (now - self._first[0]) / (self.n - self._first[1])
        done_here = self.n - self._initial
        return (now - self._started) / done_here if done_here > 0 and now > self._started else None

    # -- events ----------------------------------------------------------------------------------------
    def _emit(self, force: bool = False) -> None:
        if _sink is None:
            return
        now = self._clock()
        if not force and now - self._last_event < MIN_INTERVAL_S:
            return
        if self._closed and self._last_done == self.n:
            return  # the last update already said it
        self._last_event, self._last_done = now, self.n
        pace = self._seconds_per_unit(now)
        rate = 1 / pace if pace else None
        eta = pace * (self.total - self.n) if pace is not None and self.total is not None else None
        emit(
            EVENT_PROGRESS,
            phase=self.desc,
            done=_finite(float(self.n)),
            total=_finite(float(self.total)) if self.total is not None else None,
            unit=self.unit,
            rate=_finite(rate),
            eta=_finite(max(eta, 0.0)) if eta is not None else None,
            message=self.message,
        )


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_bar(iterable: Iterable | None = None, **kwargs: Any) -> Bar:
    """``tqdm(...)`` for the steps: same arguments, and progress events when a destination is set."""
    return Bar(iterable, **kwargs)


def trainer_callbacks() -> list:
    """A Hugging Face ``TrainerCallback`` reporting optimizer steps (and the last logged loss) as events;
    empty when no destination is set, so the Trainer's own bar is all there is."""
    if _sink is None:
        return []
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def __init__(self) -> None:
            self.bar: Bar | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            # a resumed run starts where its checkpoint was
            self.bar = Bar(
                total=state.max_steps, desc="training", unit="step", initial=state.global_step, disable=True
            )  # the Trainer draws its own bar

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is not None and logs:
                shown = [
                    f"{k} {logs[k]:.4g}" for k in ("loss", "eval_loss") if isinstance(logs.get(k), float)
                ]
                if shown:
                    self.bar.set_postfix_str(", ".join(shown))

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

    return [ProgressCallback()]


def read_events(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The whole events written to ``path`` from byte ``offset`` on, and the offset after the last one.

    A line still being written (no newline yet) is left for the next call; a line that is not JSON is
    skipped. For readers in other processes (the studio's job page).
    """
    try:
        with Path(path).open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
    return parse_events(data, offset)


def parse_events(data: bytes, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The whole events in ``data`` (read from byte ``offset`` of an events file), and the offset after
    the last one; a caller that opens the file itself (``fileio.open_inside``) hands its bytes here."""
    end = data.rfind(b"\n") + 1
    events = []
    for line in data[:end].splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                events.append(event)
    return events, offset + end


def flush_and_fsync() -> None:
    """Make the events written so far durable (called before a command ends)."""
    if _sink is not None:
        with contextlib.suppress(OSError, ValueError):
            _sink._file.flush()
            os.fsync(_sink._file.fileno())

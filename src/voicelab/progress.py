"""Progress of a long loop, wherever its output goes.

On a terminal: tqdm's bar. Elsewhere (``make transcribe ... > log``, ``| tee``, CI), where a bar would be
either silent or a smear of carriage returns: one log line every few items, so a run of hours still says
how far it is and how long it has left. Both take the same calls (``update``, ``set_postfix_str``,
``close``), so a loop does not care which it got.

Public names (everything else is private):

- ``bar_or_lines(total_items, desc=, enabled=, amount=, **tqdm_kwargs)``: the object a loop reports to.
- ``LineProgress``: the log-line reporter alone (a loop that is never on a terminal, or another reporter
  that wants the same lines when no bar is drawn).
- ``QuietProgress``: the reporter that shows nothing; the three methods above are the whole contract.
- ``LINES_PER_RUN``: how many lines a run without a terminal gets.
"""

from __future__ import annotations

import logging
import math
import sys
import time

__all__ = ["LINES_PER_RUN", "LineProgress", "QuietProgress", "bar_or_lines"]

logger = logging.getLogger(__name__)

LINES_PER_RUN = 20
"""Without a terminal, at most about this many progress lines per run (one every 5%)."""


def bar_or_lines(total_items: int, *, desc: str, enabled: bool = True, amount=None, **tqdm_kwargs):
    """A progress object over ``total_items`` items.

    ``amount``: (total, unit) when the bar measures something else than items (minutes of audio): the
    bar counts it, a log line names both. ``tqdm_kwargs`` go to tqdm on a terminal.
    """
    if not enabled or total_items <= 0:
        return QuietProgress()
    if sys.stderr.isatty():
        from tqdm import tqdm

        total = amount[0] if amount else total_items
        return tqdm(total=total, desc=desc, **tqdm_kwargs)
    return LineProgress(total_items, desc=desc, amount=amount)


class QuietProgress:
    """Shows nothing (``enabled=False``, or nothing to do)."""

    def update(self, step: float = 1) -> None:
        pass

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


class LineProgress(QuietProgress):
    """A log line every ``ceil(total / LINES_PER_RUN)`` items: done, share, amount, elapsed, time left.

    ``update`` takes what the bar counts (items, or ``amount``'s unit); ``set_postfix_str`` is where the
    loop says how many items it has done (``"clips 40/400"``), as it does for tqdm; ``item_done`` counts
    items directly.
    """

    def __init__(self, total_items: int, *, desc: str, amount=None, clock=time.monotonic):
        self.total_items = total_items
        self.desc = desc
        self.amount_total, self.unit = amount if amount else (None, None)
        self.amount = 0.0
        self.items = 0
        self.every = max(1, math.ceil(total_items / LINES_PER_RUN))
        self.next_line = self.every
        self.clock = clock
        self.started = clock()
        self.first: tuple[float, int] | None = None  # (time, items) when the first items were done

    def update(self, step: float = 1) -> None:
        if self.amount_total is None:
            self.item_done(int(step))
        else:
            self.amount += step

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        """Reads ``"<word> N/M"``: the items done so far."""
        done = text.rsplit(" ", 1)[-1].split("/", 1)[0]
        if done.isdigit():
            self.item_done(int(done) - self.items)

    def item_done(self, count: int = 1) -> None:
        self.items += count
        if self.first is None:
            self.first = (self.clock(), self.items)
        if self.items >= self.next_line or self.items == self.total_items:
            self.next_line = (self.items // self.every + 1) * self.every
            logger.info("%s", self.line())

    def line(self) -> str:
        elapsed = self.clock() - self.started
        share = self.items / self.total_items
        parts = [f"{self.desc}: {self.items}/{self.total_items} ({share:.0%})"]
        if self.amount_total:
            parts.append(f"{self.amount:.1f}/{self.amount_total:.1f} {self.unit}")
        parts.append(f"{_clock(elapsed)} elapsed")
        if 0 < share < 1:
            parts.append(f"about {_clock(self._left(elapsed, share))} left")
        return ", ".join(parts)

    def _left(self, elapsed: float, share: float) -> float:
        """The time left at the pace since the first items were done, so a slow start (models loading
        with the first item) does not inflate it; before a second report, the pace so far."""
        at, items = self.first or (self.started, 0)
        if self.items > items:
            return (self.clock() - at) / (self.items - items) * (self.total_items - self.items)
        return elapsed / share - elapsed


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"

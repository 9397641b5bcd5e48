"""The one measurement convention every benchmark in this folder follows.

* A and B (baseline and ours, or old and new) are measured interleaved in one run: round r runs A then B
  when r is even and B then A when it is odd, so a slow spell of a shared machine hits both sides alike.
* At least ``MIN_ROUNDS`` rounds; each result prints its median and its min-max range, and a ratio prints
  the median of the per-round ratios with their range (each round's ratio compares two neighbouring runs).
* The 1-minute load average is printed before and after, so a reader can judge how shared the machine was.
* Where a user runs a whole command, it is timed as a whole process (``run_process``): start-up included.

usage (from a benchmark)::

    from harness import Comparison, load_line

    print(load_line("before"))
    cmp = Comparison("pydub load+split", "voicelab prepare_audio")
    cmp.run(rounds, lambda: run_process(pydub_cmd), lambda: run_process(ours_cmd))
    print(cmp.report("wall s", ratio="a/b"))
    print(load_line("after"))
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

MIN_ROUNDS = 3  # fewer cannot show a median distinct from its extremes


def load_average() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:  # not on every platform
        return (float("nan"),) * 3


def load_line(when: str) -> str:
    one, five, fifteen = load_average()
    return f"load average {when}: {one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min, {os.cpu_count()} CPUs)"


def machine_line() -> str:
    return (
        f"machine: {platform.machine()} {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    )


def median_range(values: Sequence[float], fmt: str = ".3g") -> str:
    """``median (min-max)`` of ``values``."""
    med = statistics.median(values)
    return f"{med:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


@dataclass(frozen=True)
class ProcessRun:
    wall_s: float
    cpu_s: float  # user + system CPU of the child and its children
    stdout: str


def run_process(cmd: Sequence[str], *, env: dict | None = None, check: bool = True) -> ProcessRun:
    """Run ``cmd`` as a separate process (start-up included); wall and CPU seconds of the whole process."""
    before = os.times()
    start = time.perf_counter()
    proc = subprocess.run(list(cmd), capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = os.times()
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{cmd[0]} ... exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return ProcessRun(wall, cpu, proc.stdout)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass
class Comparison:
    """A and B measured interleaved, order flipped every round.

    Each side's callable returns one number (seconds, or any metric) or a dict of named numbers; the first
    key (or the plain number) is the headline metric, the rest are kept and printed too.
    """

    name_a: str
    name_b: str
    a: list[dict[str, float]] = field(default_factory=list)
    b: list[dict[str, float]] = field(default_factory=list)

    def run(
        self,
        rounds: int,
        fn_a: Callable[[], float | dict[str, float]],
        fn_b: Callable[[], float | dict[str, float]],
        *,
        verbose: bool = True,
    ) -> Comparison:
        if rounds < MIN_ROUNDS:
            raise ValueError(f"at least {MIN_ROUNDS} rounds, got {rounds}")
        for r in range(rounds):
            order = ((self.a, fn_a), (self.b, fn_b))
            for results, fn in order if r % 2 == 0 else order[::-1]:
                value = fn()
                results.append(value if isinstance(value, dict) else {"value": float(value)})
            if verbose:
                first = "A,B" if r % 2 == 0 else "B,A"
                print(
                    f"  round {r + 1}/{rounds} ({first}): A {_short(self.a[-1])} | B {_short(self.b[-1])}",
                    flush=True,
                )
        return self

    def values(self, side: str, key: str | None = None) -> list[float]:
        results = self.a if side == "a" else self.b
        key = key or next(iter(results[0]))
        return [r[key] for r in results]

    def ratios(self, key: str | None = None, *, higher_is_better: bool = False) -> list[float]:
        """Per-round gain of B over A: A/B for times (lower is better), B/A for rates."""
        a, b = self.values("a", key), self.values("b", key)
        return [(y / x if higher_is_better else x / y) for x, y in zip(a, b, strict=True)]

    def report(self, unit: str, key: str | None = None, *, higher_is_better: bool = False) -> str:
        a, b = self.values("a", key), self.values("b", key)
        ratios = self.ratios(key, higher_is_better=higher_is_better)
        return "\n".join(
            [
                f"  A {self.name_a}: {median_range(a)} {unit} (median, min-max of {len(a)} rounds)",
                f"  B {self.name_b}: {median_range(b)} {unit}",
                f"  gain B over A: {median_range(ratios, '.2f')}x (median of per-round ratios, min-max)",
            ]
        )


def _short(result: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.3g}" if k != "value" else f"{v:.3g}" for k, v in result.items())

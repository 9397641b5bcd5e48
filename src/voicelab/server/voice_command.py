"""The server's one contact with the pipeline: questions to ``voicelab-voice``, asked in a subprocess.

The New voice page needs the steps' flags (help, defaults, kinds) and their checks. Both come from the
steps' own parsers, which import the transcribe and evaluate code; the server never loads that code, so it
asks ``voicelab-voice --describe-options`` once and ``voicelab-voice --check-flags ...`` for each new set of
flags (a verdict is remembered: the same flags on the same machine get the same answer).
"""

from __future__ import annotations

import json
import subprocess
import threading
from typing import Any

from voicelab.cli.pipeline.options import CHECK_FLAG, DESCRIBE_FLAG
from voicelab.server.jobs import VOICE_COMMAND, JobError

QUESTION_TIMEOUT_S = 120.0
"""Starting Python and importing the steps takes seconds; on a machine busy training, longer."""


class VoiceCommand:
    def __init__(self, timeout_s: float = QUESTION_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._described: dict[str, Any] | None = None
        self._accepted: set[tuple[str, ...]] = set()
        self._lock = threading.Lock()

    def _ask(self, *args: str) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(
                [*VOICE_COMMAND, *args], capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise JobError(f"voicelab-voice did not answer ({e}); try again") from e

    def describe(self) -> dict[str, Any]:
        """``{"options": [...], "steps": [...]}`` (``voicelab.cli.pipeline.options.describe``), asked once."""
        with self._lock:
            if self._described is None:
                answer = self._ask(DESCRIBE_FLAG)
                try:
                    self._described = json.loads(answer.stdout)
                except ValueError as e:
                    raise JobError(f"voicelab-voice {DESCRIBE_FLAG} failed: {_last_line(answer)}") from e
            return self._described

    def check(self, flags: list[str]) -> None:
        """``JobError`` with the step's own message when a step refuses ``flags``."""
        key = tuple(flags)
        if key in self._accepted:
            return
        answer = self._ask(CHECK_FLAG, *flags)
        if answer.returncode != 0:
            raise JobError(_last_line(answer).removeprefix("error: "))
        self._accepted.add(key)


def _last_line(answer: subprocess.CompletedProcess) -> str:
    lines = [line for line in (answer.stderr or answer.stdout).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {answer.returncode}"

"""The outside test plan (docs/reliability.md), run short: benchmarks/outside_run.py against the real server
over HTTP. It must find 0 reads outside voices/ and prepared/, 0 lost edits, 0 answers of 500 or more,
0 answers against the rules and 0 broken CLI contracts, having tried every part."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO

OUTSIDE_RUN = REPO / "benchmarks" / "outside_run.py"


@pytest.mark.slow
def test_the_outside_run_finds_nothing(tmp_path):
    out = tmp_path / "counts.json"
    run = subprocess.run(
        [sys.executable, str(OUTSIDE_RUN), "--quick", "--json", str(out)], capture_output=True, text=True
    )
    counts = json.loads(out.read_text())
    assert set(counts) == {
        "symlinks",
        "auth variants",
        "hostile names",
        "random requests",
        "two reviewers, If-Match",
        "transcribe + studio saves",
        "CLI bad inputs",
    }
    for part, tally in counts.items():
        assert tally["tried"] > 0, part
        assert tally["examples"] == [], (part, tally["examples"])
    assert counts["transcribe + studio saves"]["overlapped"] > 0  # the edits did meet a running transcribe
    assert run.returncode == 0, run.stdout[-2000:]

"""What ``voicelab-voice`` has done for a voice, on disk: ``prepared/NAME/pipeline.json``.

Each step finished is recorded with a signature of its input (the files it read and the flags it was
given); a rerun skips a step whose signature is unchanged and runs it again when its input changed (new
recordings, edited transcripts). The file is replaced atomically after each step, so a crash or Ctrl-C
leaves the record of every step finished before it. ``.pipeline.lock`` beside it is held (``flock``) for
the whole run: a second run for the same voice is refused while the first one works.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from voicelab.dataset import PreparedDataset
from voicelab.errors import UsageError

logger = logging.getLogger(__name__)

STATE_VERSION = 1
HASH_CHUNK_BYTES = 1 << 20


class PipelineBusyError(UsageError):
    """Another run is making this voice now."""


class StateError(UsageError):
    """``pipeline.json`` exists but cannot be read."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def signature(*parts: Any) -> str:
    """A short, stable digest of JSON-able parts (flags, file listings, file digests)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: Path) -> str | None:
    """sha256 of a file's bytes (None when it does not exist)."""
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def listing(files: Iterable[Path], root: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime in ns) of each file: what changes when a recording is added or replaced."""
    rows = []
    for path in files:
        stat = path.stat()
        rows.append((path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime_ns))
    return sorted(rows)


@dataclass
class PipelineState:
    path: Path
    name: str
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    fetched: dict[str, list[str]] = field(default_factory=dict)
    """URL -> the files it gave (names in raw_audio/NAME/)."""

    @classmethod
    def load(cls, folder: Path, name: str) -> PipelineState:
        ds = PreparedDataset(folder)
        path = ds.pipeline_state_path
        text = ds.read_pipeline_state()
        if text is None:
            return cls(path, name)
        try:
            data = json.loads(text)
            return cls(path, name, dict(data.get("steps", {})), dict(data.get("fetched", {})))
        except (ValueError, AttributeError, TypeError) as e:
            raise StateError(
                f"{path}: unreadable ({e}); delete it to let voicelab-voice redo the steps (what they made is "
                "kept and skipped where it can be)"
            ) from e

    @property
    def exists(self) -> bool:
        return self.path.is_file()

    def save(self) -> None:
        body = {"version": STATE_VERSION, "name": self.name, "steps": self.steps, "fetched": self.fetched}
        PreparedDataset(self.path.parent).write_pipeline_state(
            json.dumps(body, indent=2, ensure_ascii=False) + "\n"
        )

    def get(self, step: str) -> dict[str, Any]:
        return self.steps.get(step, {})

    def is_done(self, step: str, sig: str) -> bool:
        record = self.steps.get(step)
        return bool(record) and record.get("signature") == sig and record.get("status") == "done"

    def record(self, step: str, sig: str, status: str = "done", **extra: Any) -> None:
        self.steps[step] = {"status": status, "signature": sig, "at": now(), **extra}
        self.save()

    def forget(self, *steps: str) -> None:
        for step in steps:
            self.steps.pop(step, None)
        self.save()


@contextlib.contextmanager
def exclusive(folder: Path, name: str) -> Iterator[None]:
    """Hold ``folder/.pipeline.lock`` for the ``with`` block; ``PipelineBusyError`` when another run does."""
    folder.mkdir(parents=True, exist_ok=True)
    path = PreparedDataset(folder).pipeline_lock_path
    with path.open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise PipelineBusyError(
                f"voice {name!r} is being made by another run ({holder}): wait for it to finish, or stop it "
                "(Ctrl-C, or Cancel in the studio; rerunning resumes where it stopped)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {now()}")
        handle.flush()
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                handle.truncate(0)

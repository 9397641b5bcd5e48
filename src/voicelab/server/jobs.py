"""Studio jobs: ``voicelab-voice`` runs started from the New voice page, one at a time, state on disk.

Each job is a folder ``jobs/ID/`` (``settings.jobs_dir``):

================  ==================================================================================
``job.json``      name, sources, settings, status, when it started and ended, its process id
``recordings/``   the recordings uploaded for it (one of the job's sources)
``reference/``    an optional clean clip of the character (passed as ``--reference``)
``log.txt``       everything its runs printed (stdout and stderr), appended run after run
``progress.jsonl``  the progress events of its runs (``voicelab.progress``, docs/progress.md)
================  ==================================================================================

A job runs as a subprocess (``python -m voicelab.cli.voice ...``) in its own session, so the API stays
responsive, a server restart does not stop it (the next server finds it by its process id, or marks it
interrupted when it is gone), and Cancel is SIGINT: the step stops as on Ctrl-C and a resume continues
where it stopped. One process of the server runs the queue (it holds ``jobs/.runner.lock``); jobs start
in the order they were queued, one at a time, because each one trains on the whole GPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from voicelab import progress
from voicelab.errors import UsageError
from voicelab.fileio import UnsafePathError, open_inside, resolve_inside, write_text_atomic

logger = logging.getLogger(__name__)

JOB_FILE = "job.json"
LOG_FILE = "log.txt"
EVENTS_FILE = "progress.jsonl"
RECORDINGS_DIR = "recordings"
REFERENCE_DIR = "reference"
UPLOAD_KINDS = (RECORDINGS_DIR, REFERENCE_DIR)
RUNNER_LOCK = ".runner.lock"
STORE_LOCK = ".store.lock"
JOB_ID = re.compile(r"[0-9a-f]{12}")
JOB_ID_BYTES = 6
POLL_S = 1.0
"""How often the runner looks at the queue and at the running job: a second is nothing next to a step."""
LOG_TAIL_BYTES = 16 * 1024
LOG_TAIL_LINES = 80

UPLOADING, QUEUED, RUNNING, CANCELLING = "uploading", "queued", "running", "cancelling"
PAUSED, DONE, CANCELLED, FAILED, INTERRUPTED = "paused", "done", "cancelled", "failed", "interrupted"
ACTIVE = frozenset({QUEUED, RUNNING, CANCELLING})
RESUMABLE = frozenset({PAUSED, CANCELLED, FAILED, INTERRUPTED})
EXIT_INTERRUPTED = 130
VOICE_COMMAND = (sys.executable, "-m", "voicelab.cli.voice")
"""How a job (and every question about the pipeline) runs: ``voicelab-voice`` with this server's Python."""


class JobError(UsageError):
    """A job request that cannot be done as asked (400)."""


class JobNotFoundError(JobError):
    """No job with that id (404)."""


class JobConflictError(JobError):
    """The name is taken, or the job is not in a state that allows this (409)."""


@dataclass
class Job:
    id: str
    name: str
    status: str
    created_at: str
    urls: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    review: bool = True
    queued_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    pid: int | None = None
    exit_code: int | None = None
    message: str = ""
    runs: int = 0
    flags: list[str] = field(default_factory=list)
    """The steps' flags of its runs (its settings and reference clip), fixed and checked at Start."""
    events_offset: int = 0
    """Where the current run's events start in progress.jsonl (earlier runs' come before)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def now() -> str:
    from voicelab.cli.pipeline.state import now as state_now

    return state_now()


class JobStore:
    """The jobs folder: create, read, change and list jobs (changes under one lock, files atomic)."""

    def __init__(self, root: Path, *, raw_dir: Path, prepared_dir: Path, voices_dir: Path) -> None:
        self.root = Path(root)
        self.raw_dir, self.prepared_dir, self.voices_dir = Path(raw_dir), Path(prepared_dir), Path(voices_dir)

    # -- folders ----------------------------------------------------------------------------------------
    def folder(self, job_id: str) -> Path:
        if not JOB_ID.fullmatch(job_id or ""):
            raise JobNotFoundError(f"no job {job_id!r}")
        return resolve_inside(self.root, job_id)

    def open_file(self, job_id: str, name: str):
        """A file of the job's folder opened for reading (binary) through ``fileio.open_inside``: a symlink out
        of the folder, or one swapped in, raises ``UnsafePathError``; no such file ``FileNotFoundError``."""
        return open_inside(self.folder(job_id), name)

    def upload_dir(self, job: Job, kind: str) -> Path:
        if kind not in UPLOAD_KINDS:
            raise JobError(f"uploads are {' or '.join(UPLOAD_KINDS)}, not {kind!r}")
        return resolve_inside(self.folder(job.id), kind)  # a symlink out of the job's folder is refused

    def uploads(self, job: Job, kind: str) -> list[str]:
        try:
            folder = self.upload_dir(job, kind)
        except UnsafePathError as e:
            logger.warning("job %s: %s", job.id, e)
            return []
        if not folder.is_dir():
            return []
        return sorted(
            p.name
            for p in folder.iterdir()
            if not p.is_symlink() and p.is_file() and not p.name.startswith(".")
        )

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One change at a time, across the server's processes (workers share the folder)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / STORE_LOCK).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    # -- reading and writing ----------------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        try:
            with self.open_file(job_id, JOB_FILE) as handle:
                return Job.from_dict(json.loads(handle.read().decode("utf-8")))
        except FileNotFoundError:
            raise JobNotFoundError(f"no job {job_id!r}") from None
        except UnsafePathError as e:
            raise JobError(f"job {job_id}: {JOB_FILE} is not a file of the job's own folder") from e
        except (ValueError, TypeError) as e:
            raise JobError(f"job {job_id}: {JOB_FILE} is unreadable ({e})") from e

    def save(self, job: Job) -> None:
        write_text_atomic(self.folder(job.id) / JOB_FILE, json.dumps(asdict(job), indent=2) + "\n")

    def list(self) -> list[Job]:
        if not self.root.is_dir():
            return []
        jobs = []
        for folder in sorted(self.root.iterdir()):
            if JOB_ID.fullmatch(folder.name) and (folder / JOB_FILE).is_file():
                with contextlib.suppress(JobError):
                    jobs.append(self.get(folder.name))
        return sorted(jobs, key=lambda j: j.created_at)

    def name_taken(self, name: str) -> str | None:
        """Why ``name`` cannot be used for a new voice (None when it can)."""
        for what, root in (
            ("voice", self.voices_dir),
            ("dataset", self.prepared_dir),
            ("recordings", self.raw_dir),
        ):
            if (root / name).exists():
                return f"a {what} named {name!r} exists ({root / name})"
        if any(job.name == name for job in self.list()):
            return f"a job for {name!r} exists (delete it first to start over)"
        return None

    def create(self, name: str, urls: list[str], settings: dict[str, Any], review: bool) -> Job:
        from voicelab.voice import validate_voice_name

        validate_voice_name(name)
        with self.locked():
            if why := self.name_taken(name):
                raise JobConflictError(f"{why}: choose another name")
            job = Job(secrets.token_hex(JOB_ID_BYTES), name, UPLOADING, now(), urls, settings, review)
            self.folder(job.id).mkdir(parents=True)
            self.save(job)
        return job

    def change(self, job_id: str, apply: Callable[[Job], None]) -> Job:
        """Read, change and write a job under the lock; ``apply`` raises to refuse."""
        with self.locked():
            job = self.get(job_id)
            apply(job)
            self.save(job)
        return job

    def delete(self, job_id: str) -> None:
        with self.locked():
            job = self.get(job_id)
            if job.status in ACTIVE:
                raise JobConflictError(f"job {job_id} is {job.status}: cancel it first")
            shutil.rmtree(self.folder(job_id))

    # -- what the page shows ------------------------------------------------------------------------------
    def read_events(self, job_id: str, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """The job's events from byte ``offset`` on, and the offset after them (``progress.parse_events``)."""
        try:
            with self.open_file(job_id, EVENTS_FILE) as handle:
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            return [], offset
        return progress.parse_events(data, offset)

    def events(self, job: Job) -> list[dict[str, Any]]:
        try:
            return self.read_events(job.id)[0]
        except UnsafePathError as e:  # a symlink out of the folder: nothing of it is shown
            logger.warning("job %s: %s", job.id, e)
            return []

    def read_log(self, job_id: str, start: int | None) -> tuple[list[str], int]:
        """The whole lines added to the job's log after byte ``start`` (None: its tail), and the offset after
        them. ``UnsafePathError`` where the log is a symlink out of the folder."""
        try:
            with self.open_file(job_id, LOG_FILE) as handle:
                size = os.fstat(handle.fileno()).st_size
                begin = max(0, size - LOG_TAIL_BYTES) if start is None else min(start, size)
                handle.seek(begin)
                data = handle.read(size - begin)
        except FileNotFoundError:
            return [], 0
        end = data.rfind(b"\n") + 1
        lines = data[:end].decode("utf-8", errors="replace").splitlines()
        return (lines[-LOG_TAIL_LINES:] if start is None else lines), begin + end

    def log_tail(self, job: Job, lines: int = LOG_TAIL_LINES) -> list[str]:
        try:
            with self.open_file(job.id, LOG_FILE) as handle:
                handle.seek(max(0, os.fstat(handle.fileno()).st_size - LOG_TAIL_BYTES))
                text = handle.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return []
        except UnsafePathError as e:
            logger.warning("job %s: %s", job.id, e)
            return []
        return text.splitlines()[-lines:]

    # -- the command --------------------------------------------------------------------------------------
    def command(self, job: Job) -> list[str]:
        """The ``voicelab-voice`` command line of ``job`` (an argument list: no shell ever sees it)."""
        folder = self.folder(job.id)
        sources = [str(folder / RECORDINGS_DIR)] if self.uploads(job, RECORDINGS_DIR) else []
        argv = [*VOICE_COMMAND, job.name, *sources, *job.urls]
        argv += ["--raw-dir", str(self.raw_dir), "--prepared-dir", str(self.prepared_dir)]
        argv += ["--voices-dir", str(self.voices_dir), "--no-progress"]
        argv += [progress.PROGRESS_FLAG, str(folder / EVENTS_FILE)]
        argv += [] if job.review else ["--no-review"]
        return argv + job.flags

    def reference_flags(self, job: Job) -> list[str]:
        """``--reference`` with the job's uploaded reference clip (none uploaded: nothing)."""
        names = self.uploads(job, REFERENCE_DIR)
        return (
            ["--reference", *(str(self.folder(job.id) / REFERENCE_DIR / n) for n in names)] if names else []
        )


# --- the queue ----------------------------------------------------------------------------------------------
def _alive(pid: int | None, job_folder: Path) -> bool:
    """Whether ``pid`` is still the job's process (not a later process that got the same id)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        return str(job_folder) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    return True  # no /proc to ask: trust the id


def _outcome(job: Job, code: int | None, events: list[dict[str, Any]]) -> tuple[str, str, int | None]:
    """The job's status, message and exit status after its process ended (``code``: None when the process
    was not this server's child; its last event then tells)."""
    end = next((e for e in reversed(events) if e.get("event") == progress.EVENT_END), None)
    if code is None and end is not None:
        code = end.get("exit_code")
    status = end.get("status") if end else None
    if code is None:
        return (
            INTERRUPTED,
            "its process ended without a word (server or machine stopped?): Resume continues",
            None,
        )
    if code == EXIT_INTERRUPTED:
        if job.status == CANCELLING:
            return CANCELLED, "cancelled: Resume continues where it stopped", code
        return INTERRUPTED, "interrupted: Resume continues where it stopped", code
    if status == "review":
        return PAUSED, "stopped for review: check the dataset, then Continue", code
    if status == "done" or (status is None and code == 0):
        left_out = " (some recordings or clips could not be used: see the log)" if code else ""
        return DONE, f"the voice is ready{left_out}", code
    return FAILED, "", code


class JobRunner:
    """Starts queued jobs one at a time and watches the running one; ``on_done`` after a voice is made."""

    def __init__(self, store: JobStore, on_done: Callable[[Job], Awaitable[None]] | None = None) -> None:
        self.store = store
        self.on_done = on_done
        self._children: dict[str, subprocess.Popen] = {}
        self._lock_file = None

    def holds_queue(self) -> bool:
        """Take the runner lock if no other server process has it (kept for this process' life)."""
        if self._lock_file is not None:
            return True
        if not self.store.root.is_dir():
            return False  # no job was ever made here: nothing to run (and no folder to create)
        handle = (self.store.root / RUNNER_LOCK).open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._lock_file = handle
        return True

    def release_queue(self) -> None:
        """Let another server process run the queue (this one is stopping)."""
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file releases the flock
            self._lock_file = None

    async def run_forever(self, enabled: Callable[[], bool]) -> None:
        while True:
            try:
                if enabled() and self.holds_queue():
                    await self.tick()
            except Exception:  # one bad job folder must not stop the queue
                logger.exception("job runner")
            await asyncio.sleep(POLL_S)

    async def tick(self) -> None:
        for job in self.store.list():
            if job.status in (RUNNING, CANCELLING):
                await self._watch(job)
        jobs = self.store.list()
        if any(j.status in (RUNNING, CANCELLING) for j in jobs):
            return
        waiting = sorted((j for j in jobs if j.status == QUEUED), key=lambda j: j.queued_at or "")
        if waiting:
            self._start(waiting[0])

    def _start(self, job: Job) -> None:
        folder = self.store.folder(job.id)
        argv = self.store.command(job)
        offset = (folder / EVENTS_FILE).stat().st_size if (folder / EVENTS_FILE).exists() else 0
        with (folder / LOG_FILE).open("ab") as log:
            log.write(f"\n$ voicelab-voice {' '.join(argv[3:])}\n".encode())
            log.flush()
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a server restart or Ctrl-C in its terminal leaves the job running
            )
        self._children[job.id] = child

        def started(j: Job) -> None:
            j.status, j.pid, j.started_at, j.finished_at = RUNNING, child.pid, now(), None
            j.exit_code, j.message, j.runs, j.events_offset = None, "", j.runs + 1, offset

        self.store.change(job.id, started)
        logger.info("job %s (%s): started, pid %d", job.id, job.name, child.pid)

    async def _watch(self, job: Job) -> None:
        child = self._children.get(job.id)
        folder = self.store.folder(job.id)
        if child is not None:
            code = child.poll()
            if code is None:
                return
            del self._children[job.id]
        elif _alive(job.pid, folder):
            return  # started by an earlier server process: still working
        else:
            code = None
        try:
            events = self.store.read_events(job.id, job.events_offset)[0]
        except UnsafePathError as e:
            logger.warning("job %s: %s", job.id, e)
            events = []
        status, message, code = _outcome(job, code, events)
        if status == FAILED:
            message = _last_error(self.store.log_tail(job)) or f"exit status {code}"

        def finished(j: Job) -> None:
            j.status, j.message, j.finished_at, j.pid = status, message, now(), None
            j.exit_code = code if code is not None else j.exit_code

        try:
            if status == DONE and self.on_done is not None:
                await self.on_done(job)  # before the job reads as done: a page following it sees the reload
        except Exception:
            logger.exception("job %s (%s): after the run", job.id, job.name)
        finally:
            job = self.store.change(job.id, finished)
            logger.info("job %s (%s): %s %s", job.id, job.name, status, message)

    # -- what a person asks ---------------------------------------------------------------------------
    def cancel(self, job_id: str) -> Job:
        """Queued: taken off the queue. Running: SIGINT (Ctrl-C), the step stops cleanly. Not started
        yet (uploading): removed."""
        job = self.store.get(job_id)
        if job.status == UPLOADING:
            self.store.delete(job_id)
            job.status = CANCELLED
            return job

        def cancel(j: Job) -> None:
            if j.status == QUEUED:
                j.status, j.message = CANCELLED, "taken off the queue: Resume puts it back"
            elif j.status == RUNNING:
                if j.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(j.pid, signal.SIGINT)
                j.status, j.message = CANCELLING, "stopping cleanly (as on Ctrl-C)"
            elif j.status != CANCELLING:
                raise JobConflictError(f"job {j.id} is {j.status}: nothing to cancel")

        return self.store.change(job_id, cancel)


def queue(store: JobStore, job: Job, flags: list[str] | None = None) -> Job:
    """Start (uploading -> queued, with the steps' ``flags``) or resume (paused, cancelled, failed,
    interrupted -> queued, with the flags it had) a job."""

    def enqueue(j: Job) -> None:
        if j.status == UPLOADING and not (store.uploads(j, RECORDINGS_DIR) or j.urls):
            raise JobError("add recordings (upload files or give URLs) before starting")
        if j.status != UPLOADING and j.status not in RESUMABLE:
            raise JobConflictError(f"job {j.id} is {j.status}: it cannot be started now")
        if j.status == UPLOADING and flags is not None:
            j.flags = list(flags)
        j.status, j.queued_at, j.message = QUEUED, now(), ""

    return store.change(job.id, enqueue)


def append_event(store: JobStore, job: Job, event: str, **fields: Any) -> None:
    """Add an event of the server's own to the job's record (as a run writes them: docs/progress.md)."""
    line = json.dumps({"v": progress.FORMAT_VERSION, "event": event, **fields, "time": round(time.time(), 3)})
    with (store.folder(job.id) / EVENTS_FILE).open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def _last_error(lines: list[str]) -> str:
    """The last ``error: ...`` line a run printed (what run_step prints for every failure)."""
    return next((line.removeprefix("error: ") for line in reversed(lines) if line.startswith("error: ")), "")

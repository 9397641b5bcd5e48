"""The studio's New voice page and its job endpoints (``/studio/api/jobs``, ``/studio/api/uploads``).

A job is a ``voicelab-voice`` run (``server/jobs.py``). The page creates one (name, URLs, settings), uploads
its recordings one file per request (streamed to disk, capped, name-checked, then decoded once to prove it
is audio), starts it, and follows it through server-sent events. Every route sits under ``/studio/api/``,
so ``server/guard.py`` asks for the API key when keys are set; every state-changing route takes a JSON body
or a PUT, which a cross-site page cannot send without the browser's preflight. The feature is off when
``VOICELAB_STUDIO_JOBS=false`` or ``VOICELAB_STUDIO=false``, and, unless ``VOICELAB_STUDIO_JOBS=true``,
while the server listens beyond this machine (``server/exposure.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from voicelab import progress
from voicelab.errors import UsageError
from voicelab.server import exposure, jobs
from voicelab.server.errors import ApiError, without_server_paths
from voicelab.server.guard import too_large_upload
from voicelab.server.studio import STATIC_DIR
from voicelab.server.voice_command import VoiceCommand

logger = logging.getLogger(__name__)

NEW_VOICE_PAGE = "new-voice.html"
MAX_URLS = 50
MAX_NAME_BYTES = 200
"""An uploaded file's name (UTF-8): room under the 255-byte file name limit for the hidden part name."""
FREE_SPACE_MARGIN_BYTES = 1024**3
"""An upload is refused when it would leave less than this free on the jobs' disk (training needs room)."""
UPLOAD_CHUNK_LOG_EVERY = 64 * 1024**2
EVENTS_POLL_S = 0.5
EVENTS_HEARTBEAT_S = 15.0
EVENTS_STREAM_MAX_S = 20.0
"""One stream's life: the page reconnects from its cursor, and a server that stops (uvicorn waits for open
responses) is held up no longer than this."""
COMMON_SETTINGS = ("--device", "--base-model", "--whisper-model", "--language", "--epochs", "--lora-rank")
"""Shown first on the page (the rest under "All settings"); a flag missing from the steps is skipped."""

api = APIRouter(prefix="/studio/api")
pages = APIRouter()


# --- on or off ---------------------------------------------------------------------------------------------
def jobs_enabled(settings, scope: dict | None = None) -> tuple[bool, str]:
    """Whether jobs may run here, and why not."""
    if not settings.studio:
        return False, "the studio's editing endpoints are switched off (VOICELAB_STUDIO=false)"
    if settings.studio_jobs is False:
        return False, "voice jobs are switched off (VOICELAB_STUDIO_JOBS=false)"
    if settings.studio_jobs:
        return True, ""
    listening = exposure.listening_sockets()
    server = (scope or {}).get("server")
    arrived = server[0] if server else None
    if not listening.local_only or (arrived is not None and not exposure.is_loopback(arrived)):
        where = ", ".join(listening.addresses) or str(arrived)
        return False, (
            f"voice jobs are off because this server is reachable beyond this machine ({where}); "
            "set VOICELAB_STUDIO_JOBS=true (with VOICELAB_API_KEYS) to allow them"
        )
    return True, ""


def _store(request: Request) -> jobs.JobStore:
    enabled, reason = jobs_enabled(request.app.state.settings, request.scope)
    if not enabled:
        raise ApiError(403, reason, code="jobs_disabled")
    return request.app.state.jobs


def shown(value: Any, settings) -> Any:
    """``value`` (a text, or the texts in a list or dict) as the page may see it: the data folders by their
    short names (``errors.without_server_paths``), other paths under the project relative to it. A job's
    log, step notes and messages name the folders its run was given, which are the server's paths."""
    if isinstance(value, str):
        text = without_server_paths(value, settings)
        project = Path.cwd()
        return text.replace(f"{project}{os.sep}", "") if len(project.parts) > 1 else text
    if isinstance(value, list):
        return [shown(v, settings) for v in value]
    if isinstance(value, dict):
        return {k: shown(v, settings) for k, v in value.items()}
    return value


def to_api_error(exc: UsageError, request: Request) -> ApiError:
    message = shown(str(exc), request.app.state.settings)
    if isinstance(exc, jobs.JobNotFoundError):
        return ApiError(404, message, code="not_found")
    if isinstance(exc, jobs.JobConflictError):
        return ApiError(409, message, code="conflict")
    return ApiError(400, message, code="invalid_value")


# --- views ---------------------------------------------------------------------------------------------------
def step_summary(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each step of the pipeline with its status, note and latest progress, from the job's events."""
    from voicelab.cli.pipeline.options import PIPELINE_STEPS

    plan = next(
        (e["steps"] for e in reversed(events) if e.get("event") == progress.EVENT_PLAN), PIPELINE_STEPS
    )
    steps = {name: {"step": name, "status": "waiting", "note": "", "progress": None} for name in plan}
    done_before: dict[str, str] = {}  # step -> its note when an earlier run did it: a rerun's "skipped"
    for event in events:
        step = steps.get(event.get("step"))
        kind = event.get("event")
        if kind == progress.EVENT_STEP and step is not None:
            status, note = event.get("status"), event.get("message") or ""
            if status == "started":
                step.update(status="running", progress=None)
            elif status == "skipped" and step["step"] in done_before:
                step.update(status="done", note=done_before[step["step"]])
            else:
                step.update(status=status, note=note)
                if status == "done":
                    done_before[step["step"]] = note
        elif kind == progress.EVENT_PROGRESS and step is not None:
            step["progress"] = {
                k: event.get(k) for k in ("phase", "done", "total", "unit", "rate", "eta", "message")
            }
        elif kind == progress.EVENT_END:
            for other in steps.values():
                if other["status"] == "running":
                    other["status"] = event.get("status") or "stopped"
    return list(steps.values())


def job_view(store: jobs.JobStore, job: jobs.Job, settings, *, detail: bool = True) -> dict[str, Any]:
    """A job as the page shows it: its record, where it stands in the queue, and (detail) steps and log."""
    everyone = store.list()
    running = next((j for j in everyone if j.status in (jobs.RUNNING, jobs.CANCELLING)), None)
    waiting = sorted((j for j in everyone if j.status == jobs.QUEUED), key=lambda j: j.queued_at or "")
    view = {k: v for k, v in asdict(job).items() if k not in ("pid", "events_offset")}
    view["queue_position"] = next((i + 1 for i, j in enumerate(waiting) if j.id == job.id), None)
    view["waits_for"] = running.name if running and job.status == jobs.QUEUED else None
    view["recordings"] = store.uploads(job, jobs.RECORDINGS_DIR)
    view["reference"] = store.uploads(job, jobs.REFERENCE_DIR)
    if detail:
        view["steps"] = step_summary(store.events(job))
        view["log"] = store.log_tail(job)
    return shown(view, settings)


# --- requests ------------------------------------------------------------------------------------------------
class NewJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=64)
    urls: list[str] = Field(default_factory=list, max_length=MAX_URLS)
    settings: dict[str, bool | int | float | str | list[str]] = Field(default_factory=dict)
    review: bool = True


class Action(BaseModel):
    """The (empty) JSON body of start and cancel: a JSON body is what a cross-site form cannot send."""

    model_config = ConfigDict(extra="forbid")


def server_defaults(settings) -> dict[str, Any]:
    """Settings the page starts from where the server knows better than the steps' defaults: the voice is
    trained on the base model this server serves, on this machine's GPU when it has one."""
    import torch

    return {
        "--base-model": settings.base_model,
        "--snac-model": settings.snac_model,
        "--device": "cuda" if torch.cuda.is_available() else "cpu",
    }


def _check_new_job(body: NewJob, request: Request) -> dict[str, Any]:
    from voicelab.cli.pipeline.options import settings_to_argv
    from voicelab.cli.pipeline.sources import check_url

    for url in body.urls:
        check_url(url)
    chosen = {**server_defaults(request.app.state.settings), **body.settings}
    voice_command = request.app.state.voice_command
    voice_command.check(settings_to_argv(chosen, voice_command.describe()["options"]))
    return chosen


@pages.get("/studio/new", include_in_schema=False)
async def new_voice_page() -> FileResponse:
    return FileResponse(STATIC_DIR / NEW_VOICE_PAGE, headers={"Cache-Control": "no-cache"})


@api.get("/jobs")
def list_jobs(request: Request) -> dict:
    enabled, reason = jobs_enabled(request.app.state.settings, request.scope)
    store: jobs.JobStore = request.app.state.jobs
    settings = request.app.state.settings
    listed = [job_view(store, j, settings, detail=False) for j in store.list()] if enabled else []
    return {"enabled": enabled, "reason": reason, "jobs": listed}


@api.get("/jobs/options")
def job_options(request: Request) -> dict:
    """Every setting a job takes (the steps' own flags, help and defaults) and the upload rules."""
    from voicelab.audio import AUDIO_SUFFIXES

    settings = request.app.state.settings
    _store(request)
    try:
        described = request.app.state.voice_command.describe()["options"]
    except UsageError as e:
        raise to_api_error(e, request) from e
    offered = {d["flag"] for d in described}
    return {
        "options": described,
        "server_defaults": server_defaults(settings),
        "common": [flag for flag in COMMON_SETTINGS if flag in offered],
        "max_upload_bytes": settings.max_upload_bytes,
        "audio_suffixes": sorted(AUDIO_SUFFIXES),
    }


@api.post("/jobs", status_code=201)
def create_job(body: NewJob, request: Request) -> dict:
    store = _store(request)
    try:
        chosen = _check_new_job(body, request)
        job = store.create(body.name, body.urls, chosen, body.review)
    except UsageError as e:
        raise to_api_error(e, request) from e
    logger.info("studio: job %s created for voice %s", job.id, job.name)
    return job_view(store, job, request.app.state.settings)


def _job(request: Request, job_id: str) -> tuple[jobs.JobStore, jobs.Job]:
    store = _store(request)
    try:
        return store, store.get(job_id)
    except UsageError as e:
        raise to_api_error(e, request) from e


@api.get("/jobs/{job_id}")
def get_job(job_id: str, request: Request) -> dict:
    store, job = _job(request, job_id)
    return job_view(store, job, request.app.state.settings)


@api.post("/jobs/{job_id}/start")
def start_job(job_id: str, body: Action, request: Request) -> dict:
    """Queue a job: the first start after its uploads, or a resume after a pause, cancel or failure."""
    store, job = _job(request, job_id)
    try:
        flags = _job_flags(request, store, job) if job.status == jobs.UPLOADING else None
        job = jobs.queue(store, job, flags)
    except UsageError as e:
        raise to_api_error(e, request) from e
    return job_view(store, job, request.app.state.settings)


def _job_flags(request: Request, store: jobs.JobStore, job: jobs.Job) -> list[str]:
    """The steps' flags the job's runs get (its settings and reference clip), checked by each step."""
    from voicelab.cli.pipeline.options import settings_to_argv

    voice_command = request.app.state.voice_command
    flags = settings_to_argv(job.settings, voice_command.describe()["options"])
    if "--reference" not in job.settings:
        flags += store.reference_flags(job)
    voice_command.check(flags)
    return flags


@api.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: str, body: Action, request: Request) -> dict:
    store, job = _job(request, job_id)
    try:
        job = request.app.state.job_runner.cancel(job.id)
    except UsageError as e:
        raise to_api_error(e, request) from e
    if job.status == jobs.CANCELLED and not (store.root / job.id).exists():
        return {**asdict(job), "deleted": True}
    return job_view(store, job, request.app.state.settings)


@api.delete("/jobs/{job_id}", status_code=204)
def delete_job(job_id: str, request: Request) -> Response:
    """Remove the job's folder (uploads, log); the voice, dataset and recordings it made stay."""
    store, job = _job(request, job_id)
    try:
        store.delete(job.id)
    except UsageError as e:
        raise to_api_error(e, request) from e
    return Response(status_code=204)


@api.put("/uploads/{job_id}/{kind}/{filename}", status_code=201)
async def upload(job_id: str, kind: str, filename: str, request: Request) -> dict:
    """One recording (or the reference clip) as the raw request body, streamed to disk.

    Refused before anything is written: a job not taking uploads, a name that is not a plain audio file
    name, a declared size over the cap or over the free disk. While streaming: past the cap, the partial
    file is deleted (413). Afterwards, a file that does not decode as audio is deleted (400).
    """
    store, job = _job(request, job_id)
    limit = request.app.state.settings.max_upload_bytes
    try:
        folder = store.upload_dir(job, kind)
        if job.status != jobs.UPLOADING:
            raise jobs.JobConflictError(f"job {job.id} is {job.status}: recordings are added before Start")
        target = folder / check_upload_name(filename)
    except UsageError as e:
        raise to_api_error(e, request) from e
    declared = request.headers.get("content-length", "")
    if declared.isdigit():
        _check_room(int(declared), limit, store.root)
    folder.mkdir(parents=True, exist_ok=True)
    size = await _receive(request, target, limit)
    duration = await asyncio.to_thread(_audio_duration, target)
    if kind == jobs.REFERENCE_DIR:  # one reference clip: the newest replaces the others
        for other in folder.iterdir():
            if other != target:
                other.unlink(missing_ok=True)
    logger.info("studio: job %s: %s/%s uploaded (%d bytes)", job.id, kind, target.name, size)
    return {"name": target.name, "kind": kind, "bytes": size, "duration_s": duration}


def check_upload_name(filename: str) -> str:
    """A plain file name with an audio suffix (no folders, no hidden names, no control characters)."""
    from voicelab.audio import AUDIO_SUFFIXES

    suffixes = " ".join(sorted(AUDIO_SUFFIXES))
    bad = (
        Path(filename).name != filename
        or filename.startswith(".")
        or any(ord(ch) < 0x20 or ch in "\\/\x7f" for ch in filename)
        or len(filename.encode("utf-8", errors="surrogatepass")) > MAX_NAME_BYTES
    )
    if bad:
        raise jobs.JobError(
            f"{filename[:80]!r}: not a plain file name (at most {MAX_NAME_BYTES} bytes, no folders)"
        )
    if Path(filename).suffix.lower() not in AUDIO_SUFFIXES:
        raise jobs.JobError(f"{filename}: not an audio file name (accepted: {suffixes})")
    return filename


def _check_room(size: int, limit: int, root: Path) -> None:
    if size > limit:
        raise too_large_upload(limit, size)
    free = shutil.disk_usage(root).free
    if free - size < FREE_SPACE_MARGIN_BYTES:
        raise ApiError(507, f"not enough disk space for {size} bytes ({free} free)", code="disk_full")


async def _receive(request: Request, target: Path, limit: int) -> int:
    """Stream the body into a hidden part file, renamed to ``target`` when complete; nothing left otherwise."""
    part = target.with_name(f".{target.name}.part")
    size = 0
    try:
        with part.open("wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large_upload(limit)
                await asyncio.to_thread(handle.write, chunk)
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return size


def _audio_duration(path: Path) -> float | None:
    from voicelab.audio import AudioError, open_audio

    try:
        return open_audio(path).duration_s
    except AudioError as e:
        path.unlink(missing_ok=True)
        raise ApiError(
            400,
            f"{path.name} is not audio this server can read: {str(e).split(': ', 1)[-1]}",
            code="not_audio",
        ) from e


# --- live progress -----------------------------------------------------------------------------------------
@api.get("/jobs/{job_id}/events")
async def job_events(
    job_id: str, request: Request, events_from: int = Query(0, ge=0), log_from: int | None = Query(None, ge=0)
) -> StreamingResponse:
    """Server-sent events: ``job`` (the record, on every change), ``progress``/``step``/``plan``/``end`` (as
    the run writes them, from byte ``events_from`` of its record), ``log`` (lines from byte ``log_from``;
    without it, the tail), and ``cursor`` (both offsets, to continue from after a reconnect).

    A stream ends once the job has stopped and everything is sent, and after ``EVENTS_STREAM_MAX_S`` in any
    case (the page connects again from its cursor): a server that stops waits for open streams to end.
    """
    store, job = _job(request, job_id)
    return StreamingResponse(
        _event_stream(store, job.id, request, events_from, log_from),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sse(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _event_stream(
    store: jobs.JobStore, job_id: str, request: Request, offset: int, log_size: int | None
):
    settings = request.app.state.settings
    seen_job, quiet, deadline = None, 0.0, time.monotonic() + EVENTS_STREAM_MAX_S
    while not await request.is_disconnected() and time.monotonic() < deadline:
        try:
            job = store.get(job_id)
            events, offset = store.read_events(job_id, offset)
            lines, log_size = store.read_log(job_id, log_size)
        except UsageError:  # deleted, or its files are not the job's own any more
            yield _sse("gone", {"id": job_id})
            return
        record = job_view(store, job, settings, detail=False)
        if record != seen_job:
            seen_job = record
            yield _sse("job", record)
        for event in events:
            yield _sse(event.get("event", "progress"), shown(event, settings))
        if lines:
            yield _sse("log", {"lines": shown(lines, settings)})
        if events or lines:
            yield _sse("cursor", {"events_from": offset, "log_from": log_size})
        if job.status not in jobs.ACTIVE:
            return  # stopped, and everything it wrote is sent
        quiet = 0.0 if (events or lines) else quiet + EVENTS_POLL_S
        if quiet >= EVENTS_HEARTBEAT_S:  # a comment keeps proxies from closing an idle stream
            quiet = 0.0
            yield ": still here\n\n"
        await asyncio.sleep(EVENTS_POLL_S)


# --- wiring ----------------------------------------------------------------------------------------------
def install_jobs(app: FastAPI) -> None:
    """The page, the endpoints, and the store and runner (started by ``running_jobs`` in the lifespan)."""
    settings = app.state.settings
    app.state.jobs = jobs.JobStore(
        settings.jobs_dir,
        raw_dir=settings.raw_dir,
        prepared_dir=settings.prepared_dir,
        voices_dir=settings.voices_dir,
    )

    async def reload_voices(job: jobs.Job) -> None:
        """The voice a job made is served at once (the run itself was given no --server to call)."""
        report = await app.state.registry.reload(app.state.backend.engine)
        app.state.metrics.voices.set(len(app.state.registry.voices))
        served = job.name in app.state.registry.voices
        note = f"served here now (voices reloaded; added: {', '.join(report.added) or 'none'})"
        if not served:
            note = f"not served: {report.skipped.get(job.name, 'see the server log')}"
        status = "done" if served else "failed"
        jobs.append_event(
            app.state.jobs, job, progress.EVENT_STEP, step="reload", status=status, message=note
        )
        logger.info("studio: job %s made voice %s; %s", job.id, job.name, note)

    app.state.job_runner = jobs.JobRunner(app.state.jobs, reload_voices)
    app.state.voice_command = VoiceCommand()
    app.include_router(api)
    app.include_router(pages)


@contextlib.asynccontextmanager
async def running_jobs(app: FastAPI):
    """The queue runs while the app does (when jobs are enabled here); started jobs outlive it."""
    settings = app.state.settings
    task = asyncio.create_task(app.state.job_runner.run_forever(lambda: jobs_enabled(settings)[0]))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        app.state.job_runner.release_queue()

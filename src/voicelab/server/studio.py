"""The studio: one web page (``GET /``) to try the voices and to review a prepared dataset.

The page is plain HTML/CSS/JS shipped in the package (``static/studio/``), nothing loaded from elsewhere.
It talks to the public API (``/v1/...``) and to the JSON endpoints here (``/studio/api/...``), which are
guarded by the same API keys. The dataset endpoints read and write only inside ``settings.prepared_dir``
and answer 403 when ``VOICELAB_STUDIO=false``; the voice endpoints only read ``voices/NAME/`` (voice.json,
the loss curve, ``eval/eval.json``), and show no path of the server.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from voicelab import dataset_review
from voicelab.dataset import DatasetError
from voicelab.errors import UsageError
from voicelab.evaluate import EVAL_DIR, EVAL_FILE
from voicelab.fileio import UnsafePathError, resolve_inside
from voicelab.models import looks_like_local_path
from voicelab.server.errors import ApiError
from voicelab.training.report import LOSS_PLOT_FILE
from voicelab.voice import VOICE_FILE

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static" / "studio"
STATIC_URL = "/studio/static"
MAX_TEXT_CHARS = 4096  # one clip is at most 13 s of speech; this is far beyond any real transcript

api = APIRouter(prefix="/studio/api")  # the API keys are checked by server.guard, before any body is read
pages = APIRouter()


def to_studio_error(exc: UsageError) -> ApiError:
    """A refused name or edit as an OpenAI-shaped error: 400 unsafe name or bad edit, 404 unknown name,
    409 a dataset file that must be fixed by hand first."""
    if isinstance(exc, dataset_review.DatasetNotFoundError):
        return ApiError(404, str(exc), code="not_found")
    if isinstance(exc, UnsafePathError):
        return ApiError(400, str(exc), code="unsafe_path")
    if isinstance(exc, DatasetError):
        return ApiError(409, str(exc), code="dataset_file_unreadable")
    return ApiError(400, str(exc), code="invalid_value")


def _prepared_dir(request: Request) -> Path:
    settings = request.app.state.settings
    if not settings.studio:
        raise ApiError(
            403,
            "the studio's dataset endpoints are switched off (VOICELAB_STUDIO=false)",
            code="studio_disabled",
        )
    return Path(settings.prepared_dir)


class ClipEdit(BaseModel):
    """A person's change to one clip; a field left out stays as it is."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    excluded: bool | None = None
    reason: str | None = Field(None, max_length=MAX_TEXT_CHARS)


@pages.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@pages.get("/studio", include_in_schema=False)
async def studio_redirect() -> RedirectResponse:
    return RedirectResponse("/")


@pages.get("/studio/info")
async def info(request: Request) -> dict:
    """What the page needs before it can ask anything: whether a key is needed, whether datasets are on."""
    settings = request.app.state.settings
    return {
        "auth_required": bool(settings.api_keys),
        "datasets_enabled": settings.studio,
        "sampling": {
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "repetition_penalty": settings.repetition_penalty,
        },
    }


@api.get("/datasets")
def list_datasets(request: Request) -> dict:
    prepared = _prepared_dir(request)
    return {"prepared_dir": str(prepared), "datasets": dataset_review.list_datasets(prepared)}


@api.get("/datasets/{name}")
def get_dataset(name: str, request: Request) -> dict:
    try:
        return dataset_review.describe_dataset(_prepared_dir(request), name)
    except UsageError as e:
        raise to_studio_error(e) from e


@api.get("/datasets/{name}/clips/{clip}")
def get_clip_audio(name: str, clip: str, request: Request) -> FileResponse:
    try:
        path = dataset_review.clip_path(_prepared_dir(request), name, clip)
    except UsageError as e:
        raise to_studio_error(e) from e
    return FileResponse(path, media_type="audio/wav")


@api.put("/datasets/{name}/clips/{clip}")
def save_clip(name: str, clip: str, edit: ClipEdit, request: Request) -> dict:
    try:
        view = dataset_review.save_clip(
            _prepared_dir(request), name, clip, text=edit.text, excluded=edit.excluded, reason=edit.reason
        )
    except UsageError as e:
        raise to_studio_error(e) from e
    logger.info("studio: saved clip %s of dataset %s", view.filename, name)
    return asdict(view)


@api.get("/datasets/{name}/report")
def get_report(name: str, request: Request, layout: Literal["wide", "narrow"] = "wide") -> Response:
    """The dataset report, redrawn when the exclusions changed since; ``narrow``: one column, for a phone."""
    try:
        picture = dataset_review.report_picture(_prepared_dir(request), name, layout)
    except UsageError as e:
        raise to_studio_error(e) from e
    if isinstance(picture, bytes):
        return Response(picture, media_type="image/png", headers={"Cache-Control": "no-store"})
    return FileResponse(picture, media_type="image/png", headers={"Cache-Control": "no-store"})


def _voice_dir(request: Request, voice: str) -> Path:
    voices_dir = Path(request.app.state.settings.voices_dir)
    folder = resolve_inside(voices_dir, voice)
    if Path(voice).name != voice or not folder.is_dir():
        raise dataset_review.DatasetNotFoundError(f"no voice folder {voice!r} in {voices_dir}")
    return folder


def _read_json(folder: Path, relative: str):
    """A JSON file of the voice folder (through ``resolve_inside``), or None when absent or unreadable."""
    try:
        return json.loads(resolve_inside(folder, relative).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (UnsafePathError, OSError, ValueError) as e:
        logger.warning("%s/%s: unreadable (%s); not shown", folder, relative, e)
        return None


def base_model_label(metadata: dict) -> str | None:
    """The base model as the page shows it: its hub id, or a folder's name (never a path on the server)."""
    hub_id = metadata.get("base_model_hub_id")
    base = metadata.get("base_model")
    if hub_id:
        return str(hub_id)
    if not base:
        return None
    return f"{Path(str(base)).name} (a folder)" if looks_like_local_path(base) else str(base)


def evaluation_checks(report) -> dict | None:
    """The last evaluation's verdicts, one row per check, as the card's table shows them."""
    if not isinstance(report, dict) or not isinstance(report.get("checks"), list):
        return None
    fields = ("check", "value", "threshold", "verdict", "advice")
    checks = [{k: c.get(k) for k in fields} for c in report["checks"] if isinstance(c, dict)]
    return {"created_at": report.get("created_at"), "checks": checks}


@api.get("/voices/{voice}")
def get_voice_details(voice: str, request: Request) -> dict:
    """What a voice card shows beside ``GET /v1/audio/voices``: the prompt prefix serving uses, the base
    model (path-free), whether a training loss curve exists, and the last evaluation's checks."""
    try:
        folder = _voice_dir(request, voice)
        curve = resolve_inside(folder, LOSS_PLOT_FILE)
    except UsageError as e:
        raise to_studio_error(e) from e
    metadata = _read_json(folder, VOICE_FILE)
    metadata = metadata if isinstance(metadata, dict) else {}
    return {
        "voice": voice,
        "prompt_prefix": metadata.get("prompt_prefix"),
        "base_model": base_model_label(metadata),
        "loss_curve": curve.is_file(),
        "evaluation": evaluation_checks(_read_json(folder, f"{EVAL_DIR}/{EVAL_FILE}")),
    }


@api.get("/voices/{voice}/loss-curve")
def get_loss_curve(voice: str, request: Request) -> FileResponse:
    """``loss_curve.png`` of a voice (training and held-out loss per step)."""
    try:
        path = resolve_inside(_voice_dir(request, voice), LOSS_PLOT_FILE)
        if not path.is_file():
            raise dataset_review.DatasetNotFoundError(f"voice {voice!r} has no {LOSS_PLOT_FILE}")
    except UsageError as e:
        raise to_studio_error(e) from e
    return FileResponse(path, media_type="image/png")


def install_studio(app: FastAPI) -> None:
    """Add the page, its static files and its endpoints to ``app``."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="studio-static")
    app.include_router(api)
    app.include_router(pages)

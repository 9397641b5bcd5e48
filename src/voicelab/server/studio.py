"""The studio: one web page (``GET /``) to try the voices and to review a prepared dataset.

The page is plain HTML/CSS/JS shipped in the package (``static/studio/``), nothing loaded from elsewhere.
It talks to the public API (``/v1/...``) and to the JSON endpoints here (``/studio/api/...``), which are
guarded by the same API keys. The dataset endpoints read and write only inside ``settings.prepared_dir``
and answer 403 when ``VOICELAB_STUDIO=false``; the voice endpoints only read a voice folder (through
``VoiceFolder``: its metadata, loss curve and evaluation), and show no path of the server.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from voicelab import dataset_review
from voicelab.dataset import DatasetError
from voicelab.errors import UsageError
from voicelab.fileio import UnsafePathError, resolve_inside
from voicelab.server.errors import ApiError
from voicelab.voice import VoiceFolder

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
    logger.info("studio: saved clip %s of dataset %s", view.key, name)
    return view.as_json()


@api.get("/datasets/{name}/tags")
def get_dataset_tags(name: str, request: Request) -> dict:
    """Clips and occurrences per expressive tag in what training would use, and the unknown annotations."""
    try:
        return dataset_review.dataset_tags(_prepared_dir(request), name)
    except UsageError as e:
        raise to_studio_error(e) from e


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


def _voice_folder(request: Request, voice: str) -> VoiceFolder:
    voices_dir = Path(request.app.state.settings.voices_dir)
    folder = resolve_inside(voices_dir, voice)
    if Path(voice).name != voice or not folder.is_dir():
        raise dataset_review.DatasetNotFoundError(f"no voice folder {voice!r} in {voices_dir}")
    return VoiceFolder(folder)


@api.get("/voices/{voice}")
def get_voice_details(voice: str, request: Request) -> dict:
    """What a voice card shows beside ``GET /v1/audio/voices``: the prompt prefix serving uses, the base
    model (path-free), whether a training loss curve exists, and the last evaluation's checks."""
    try:
        card = _voice_folder(request, voice).read_card()
    except UsageError as e:
        raise to_studio_error(e) from e
    return {"voice": voice, **card}


@api.get("/voices/{voice}/loss-curve")
def get_loss_curve(voice: str, request: Request) -> FileResponse:
    """The voice's training loss curve (training and held-out loss per step)."""
    try:
        path = _voice_folder(request, voice).safe_loss_curve()
        if path is None:
            raise dataset_review.DatasetNotFoundError(f"voice {voice!r} has no loss curve")
    except UsageError as e:
        raise to_studio_error(e) from e
    return FileResponse(path, media_type="image/png")


def install_studio(app: FastAPI) -> None:
    """Add the page, its static files and its endpoints to ``app``."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="studio-static")
    app.include_router(api)
    app.include_router(pages)

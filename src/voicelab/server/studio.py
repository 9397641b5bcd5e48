"""The studio: one web page (``GET /``) to try the voices and to review a prepared dataset.

The page is plain HTML/CSS/JS shipped in the package (``static/studio/``), nothing loaded from elsewhere.
It talks to the public API (``/v1/...``) and to the JSON endpoints here (``/studio/api/...``), which are
guarded by the same API keys (and, like every route, by ``server.guard``: Host, same-site writes). The
dataset endpoints read and write only inside ``settings.prepared_dir`` and answer 403 when
``VOICELAB_STUDIO=false``; the voice endpoints only read a voice folder (through ``VoiceFolder``: its
metadata, loss curve and evaluation). Every file is opened through ``fileio.open_inside`` and sent from
that open handle, and answers never show the server's paths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from voicelab import dataset_review
from voicelab.dataset import DatasetError
from voicelab.errors import UsageError
from voicelab.fileio import UnsafePathError, open_inside, printable_name, resolve_inside
from voicelab.server.errors import ApiError, without_server_paths
from voicelab.server.openapi import ErrorBody
from voicelab.voice import VoiceFolder

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static" / "studio"
STATIC_URL = "/studio/static"
PICTURE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
WAV_MEDIA_TYPE = "audio/wav"
PNG_MEDIA_TYPE = "image/png"
ACTIVE_PICTURE_TYPES = {".svg"}
"""Pictures that can hold script (SVG): sent as a download with a policy that runs nothing, never shown
inline at their own address. The studio page shows them through <img>, where no script runs."""
MAX_TEXT_CHARS = 4096  # one clip is at most 13 s of speech; this is far beyond any real transcript
FILE_CHUNK_BYTES = 64 * 1024
PREPARED_NAME = "prepared"

api = APIRouter(prefix="/studio/api")  # the API keys are checked by server.guard, before any body is read
pages = APIRouter()


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


_BINARY = {"schema": {"type": "string", "format": "binary"}}
NAME_ERRORS = {
    400: _error("An unusable name: outside its folder (.., a symlink pointing out), NUL, over 255 bytes"),
    404: _error("No such dataset, clip, voice or file"),
}
SWITCHED_OFF = {403: _error("The dataset endpoints are switched off (VOICELAB_STUDIO=false)")}
DATASET_NAME_ERRORS = {**NAME_ERRORS, **SWITCHED_OFF}
DATASET_ERRORS = {
    **DATASET_NAME_ERRORS,
    409: _error(
        "A dataset file that must be fixed by hand first, or (on a save) a clip changed since it was read"
    ),
}


def to_studio_error(exc: Exception, request: Request) -> ApiError:
    """A refused name or edit as an OpenAI-shaped error: 400 unsafe name or bad edit, 404 unknown name or a
    file gone, 409 a dataset file that must be fixed by hand first or an edit conflict."""
    message = without_server_paths(str(exc), request.app.state.settings)
    if isinstance(exc, dataset_review.EditConflict):
        return ApiError(
            409,
            message,
            code="edit_conflict",
            headers={"ETag": exc.current.etag},
            extra={"current": exc.current.as_json()},
        )
    if isinstance(exc, dataset_review.DatasetNotFoundError | FileNotFoundError):
        return ApiError(404, message, code="not_found")
    if isinstance(exc, UnsafePathError):
        return ApiError(400, message, code="unsafe_path")
    if isinstance(exc, dataset_review.DuplicateRowsError):
        return ApiError(409, message, code="duplicate_rows")
    if isinstance(exc, DatasetError):
        return ApiError(409, message, code="dataset_file_unreadable")
    return ApiError(400, message, code="invalid_value")


@contextmanager
def studio_errors(request: Request) -> Iterator[None]:
    """Core refusals (and a file that vanished) become the studio's HTTP errors."""
    try:
        yield
    except (UsageError, FileNotFoundError) as e:
        raise to_studio_error(e, request) from e


def _prepared_dir(request: Request) -> Path:
    settings = request.app.state.settings
    if not settings.studio:
        raise ApiError(
            403,
            "the studio's dataset endpoints are switched off (VOICELAB_STUDIO=false)",
            code="studio_disabled",
        )
    return Path(settings.prepared_dir)


def file_response(handle, media_type: str, headers: dict[str, str] | None = None) -> Response:
    """The bytes of an open file (``fileio.open_inside``): what was checked is what is sent, even if the
    name is removed or replaced meanwhile."""
    size = os.fstat(handle.fileno()).st_size

    def chunks() -> Iterator[bytes]:
        with handle:
            while block := handle.read(FILE_CHUNK_BYTES):
                yield block

    return StreamingResponse(
        chunks(), media_type=media_type, headers={"Content-Length": str(size), **(headers or {})}
    )


class ClipEdit(BaseModel):
    """A person's change to one clip; a field left out stays as it is. Types are strict (``"excluded":
    "on"`` is refused, not taken for true)."""

    model_config = ConfigDict(extra="forbid", strict=True)

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
    from voicelab.server.studio_jobs import jobs_enabled

    settings = request.app.state.settings
    jobs_on, jobs_reason = jobs_enabled(settings, request.scope)
    return {
        "auth_required": bool(settings.api_keys),
        "datasets_enabled": settings.studio,
        "jobs_enabled": jobs_on,
        "jobs_reason": jobs_reason,
        "sampling": {
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "repetition_penalty": settings.repetition_penalty,
        },
    }


@api.get("/datasets", responses=SWITCHED_OFF)
def list_datasets(request: Request) -> dict:
    """The prepared datasets (folders holding clips); ``prepared_dir`` is the folder's name, not its path."""
    prepared = _prepared_dir(request)
    return {
        "prepared_dir": prepared.name or PREPARED_NAME,
        "datasets": dataset_review.list_datasets(prepared),
    }


@api.get("/datasets/{name}", responses=DATASET_ERRORS)
def get_dataset(name: str, request: Request) -> JSONResponse:
    """The review: clips riskiest first, each with its ``etag`` (send it back as ``If-Match`` when saving)."""
    with studio_errors(request):
        body = dataset_review.describe_dataset(_prepared_dir(request), name)
    return JSONResponse(body, headers={"ETag": body["etag"]})


@api.get(
    "/datasets/{name}/clips/{clip}",
    response_model=None,
    responses={200: {"description": "The clip", "content": {WAV_MEDIA_TYPE: _BINARY}}, **DATASET_NAME_ERRORS},
)
def get_clip_audio(name: str, clip: str, request: Request) -> Response:
    with studio_errors(request):
        path = dataset_review.clip_path(_prepared_dir(request), name, clip)
        handle = open_inside(path.parent, path.name)
    return file_response(handle, WAV_MEDIA_TYPE)


@api.put("/datasets/{name}/clips/{clip}", responses=DATASET_ERRORS)
def save_clip(
    name: str,
    clip: str,
    edit: ClipEdit,
    request: Request,
    if_match: str | None = Header(
        None, description="The clip's etag when the edit began: 409 with the clip as it is now if it changed"
    ),
) -> JSONResponse:
    """Change a clip's text or exclusion. All or nothing; with ``If-Match``, refused (409) when someone
    else changed the clip since."""
    with studio_errors(request):
        view = dataset_review.save_clip(
            _prepared_dir(request),
            name,
            clip,
            text=edit.text,
            excluded=edit.excluded,
            reason=edit.reason,
            if_match=if_match,
        )
    logger.info("studio: saved clip %s of dataset %s", view.key, name)
    return JSONResponse(view.as_json(), headers={"ETag": view.etag})


@api.get("/datasets/{name}/tags", responses=DATASET_ERRORS)
def get_dataset_tags(name: str, request: Request) -> dict:
    """Clips and occurrences per expressive tag in what training would use, and the unknown annotations."""
    with studio_errors(request):
        return dataset_review.dataset_tags(_prepared_dir(request), name)


@api.get(
    "/datasets/{name}/report",
    response_model=None,
    responses={
        200: {"description": "The dataset report", "content": {PNG_MEDIA_TYPE: _BINARY}},
        **DATASET_NAME_ERRORS,
    },
)
def get_report(name: str, request: Request, layout: Literal["wide", "narrow"] = "wide") -> Response:
    """The dataset report, redrawn when the exclusions changed since; ``narrow``: one column, for a phone."""
    headers = {"Cache-Control": "no-store"}
    with studio_errors(request):
        picture = dataset_review.report_picture(_prepared_dir(request), name, layout)
        if isinstance(picture, bytes):
            return Response(picture, media_type=PNG_MEDIA_TYPE, headers=headers)
        handle = open_inside(picture.parent, picture.name)
    return file_response(handle, PNG_MEDIA_TYPE, headers)


def _voice_folder(request: Request, voice: str) -> VoiceFolder:
    voices_dir = Path(request.app.state.settings.voices_dir)
    folder = resolve_inside(voices_dir, voice)
    if Path(voice).name != voice or not folder.is_dir():
        raise dataset_review.DatasetNotFoundError(f"no voice folder {voice!r} in {voices_dir}")
    return VoiceFolder(folder)


@api.get("/voices/{voice}", responses=NAME_ERRORS)
def get_voice_details(voice: str, request: Request) -> dict:
    """What a voice card shows beside ``GET /v1/audio/voices``: the prompt prefix serving uses, the base
    model (path-free), whether a training loss curve exists, and the last evaluation's checks."""
    with studio_errors(request):
        card = _voice_folder(request, voice).read_card()
    return {"voice": voice, **card}


@api.get(
    "/voices/{voice}/loss-curve",
    response_model=None,
    responses={
        200: {"description": "The training loss curve", "content": {PNG_MEDIA_TYPE: _BINARY}},
        **NAME_ERRORS,
    },
)
def get_loss_curve(voice: str, request: Request) -> Response:
    """The voice's training loss curve (training and held-out loss per step)."""
    with studio_errors(request):
        folder = _voice_folder(request, voice)
        try:
            handle = folder.open_loss_curve()
        except FileNotFoundError as e:
            raise dataset_review.DatasetNotFoundError(f"voice {voice!r} has no loss curve") from e
    return file_response(handle, PNG_MEDIA_TYPE)


@api.get("/voices/{voice}/eval", responses=NAME_ERRORS)
def get_voice_eval(voice: str, request: Request) -> dict:
    """The evaluation of a voice where one exists: summary text, numbers, and the pictures' names.

    Every file is read through ``fileio.open_inside``: a symlink out of ``voices/`` is refused (400)."""
    with studio_errors(request):
        view = _voice_folder(request, voice).read_eval_view(tuple(PICTURE_TYPES))
    if view is None:
        return {"voice": voice, "summary": None, "numbers": None, "pictures": []}
    return {"voice": voice, "summary": view.summary, "numbers": view.numbers, "pictures": view.pictures}


PICTURE_RESPONSES = {
    200: {
        "description": "The picture; an SVG comes as a download (Content-Disposition: attachment)",
        "content": {media: _BINARY for media in sorted(set(PICTURE_TYPES.values()))},
    },
    **NAME_ERRORS,
}


@api.get("/voices/{voice}/eval/{picture}", response_model=None, responses=PICTURE_RESPONSES)
def get_voice_picture(voice: str, picture: str, request: Request) -> Response:
    with studio_errors(request):
        folder = _voice_folder(request, voice).safe_eval_dir()
        suffix = Path(picture).suffix.lower()
        if Path(picture).name != picture or suffix not in PICTURE_TYPES:
            raise dataset_review.DatasetNotFoundError(
                f"voice {voice!r} has no evaluation picture {printable_name(picture)!r}"
            )
        handle = open_inside(folder, picture)
    headers = {"Content-Disposition": "attachment"} if suffix in ACTIVE_PICTURE_TYPES else None
    return file_response(handle, PICTURE_TYPES[suffix], headers)


def install_studio(app: FastAPI) -> None:
    """Add the page, its static files and its endpoints to ``app``."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="studio-static")
    app.include_router(api)
    app.include_router(pages)

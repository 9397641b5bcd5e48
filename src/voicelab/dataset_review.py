"""A person's review of a prepared dataset: its clips riskiest first, text edits and exclusions.

The studio page (``voicelab.server.studio``) is a thin shell over these functions. Every name a client
sends (dataset, clip) goes through ``resolve_inside``, so nothing outside the prepared folder is read or
written. Edits go through the transcript writer the transcribe step uses (atomic, UTF-8, CSV quoting);
a later transcribe run keeps existing rows, so an edited row is never overwritten. A clip left out by a
person is listed in ``excluded.csv`` (``filename,reason``) and keeps its row in ``transcript.csv``, so it
can be restored.

A save changes only its own row: the file keeps its order and any duplicate rows (which are reported, not
merged). It applies entirely or not at all: every file is read and every value checked before the first
write. Each clip has a version (``etag``, from its text and exclusion); a save that names the version it
started from (``if_match``) is refused with ``EditConflict`` when someone changed the clip since.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path

from voicelab.dataset import (
    CLIP_SUFFIX,
    REVIEW_FILE,
    SIGNALS_FILE,
    TRANSCRIPT_FILE,
    DatasetError,
    clip_key,
    duplicate_keys,
    find_clips,
    normalize_text,
    read_exclusions,
    read_transcript,
    write_exclusions,
    write_transcript_rows,
    writing,
)
from voicelab.errors import UsageError
from voicelab.fileio import name_problem, printable_name, read_text_inside, resolve_inside

logger = logging.getLogger(__name__)

REPORT_FILE = "dataset_report.png"
DEFAULT_EXCLUDE_REASON = "excluded in the studio"


class DatasetNotFoundError(UsageError):
    """A dataset or clip name that does not exist under the prepared folder."""


class EditError(UsageError):
    """An edit that cannot be saved as asked (an empty text, control characters); the message says why."""


class DuplicateRowsError(DatasetError):
    """The clip being edited has several rows in ``transcript.csv``: which one to change is for a person."""


class EditConflict(UsageError):
    """The clip changed since the version the edit started from; ``current`` is how it is now."""

    def __init__(self, message: str, current: ClipView):
        super().__init__(message)
        self.current = current


ALLOWED_CONTROLS = frozenset("\t\n\r")
"""Control characters an edit may hold: whitespace, collapsed to one space like every whitespace run."""
CONTROL_CATEGORY = "Cc"


def read_transcript_rows(folder: Path) -> list[tuple[str, str]]:
    """``transcript.csv``'s rows in file order, duplicates included (empty when it does not exist yet)."""
    path = folder / TRANSCRIPT_FILE
    return read_transcript(path) if os.path.lexists(path) else []


def read_rows(folder: Path) -> dict[str, str]:
    """``transcript.csv`` as clip key -> text (empty when the file does not exist yet; a duplicated key
    shows its last row, and ``duplicate_keys`` names it)."""
    return dict(read_transcript_rows(folder))


@dataclass
class ClipView:
    """One clip as the review page shows it."""

    filename: str  # the clip key: the WAV's stem
    text: str | None  # transcript.csv's text; None when the clip has no row
    risk: float | None = None  # from transcript_review.csv; None when not flagged
    reasons: str = ""
    duration_s: float | None = None
    edited: bool = False  # the text differs from Whisper's
    excluded: bool = False
    exclude_reason: str = ""
    etag: str = ""  # the version of what a person can change (text, exclusion): ``clip_version``


ETAG_HEX_CHARS = 16
"""64 bits of SHA-256: two versions of one clip colliding by chance is out of reach."""


def clip_version(key: str, text: str | None, excluded: bool, reason: str) -> str:
    """The clip's version: changes whenever its text or its exclusion does (an HTTP entity tag, quoted)."""
    state = json.dumps([key, text, excluded, reason if excluded else ""], ensure_ascii=False)
    return '"' + hashlib.sha256(state.encode("utf-8")).hexdigest()[:ETAG_HEX_CHARS] + '"'


def version_matches(if_match: str, etag: str) -> bool:
    """``If-Match`` semantics: ``*`` or a listed tag equal to ``etag`` (weak tags never match)."""
    tags = [tag.strip() for tag in if_match.split(",")]
    return "*" in tags or etag in tags


def dataset_dir(prepared_dir: Path, name: str) -> Path:
    """The folder of dataset ``name`` inside ``prepared_dir``; refuses traversal and unknown names."""
    path = resolve_inside(prepared_dir, name)
    if Path(name).name != name or not path.is_dir():
        raise DatasetNotFoundError(f"no prepared dataset {name!r} in {prepared_dir}")
    return path


def clip_path(prepared_dir: Path, name: str, clip: str) -> Path:
    """The WAV of ``clip`` (key or file name) in dataset ``name``; refuses anything outside the dataset."""
    folder = dataset_dir(prepared_dir, name)
    key = clip_key(clip)
    path = resolve_inside(folder, key + CLIP_SUFFIX)
    if Path(key).name != key or not path.is_file():
        raise DatasetNotFoundError(f"dataset {name!r} has no clip {clip!r}")
    return path


def usable_name(name: str, where: Path | str) -> bool:
    """False (with a warning naming it) for a file name no answer can carry (not UTF-8, too long)."""
    problem = name_problem(name)
    if problem is not None:
        logger.warning("%s/%s: not shown in the studio: %s", where, printable_name(name), problem)
    return problem is None


def clip_keys(folder: Path) -> list[str]:
    """Keys of the clips in ``folder`` (``dataset.find_clips``), empty when it has none; clips whose name
    cannot be shown (``usable_name``) are left out."""
    try:
        return [clip_key(p) for p in find_clips(folder) if usable_name(p.name, folder.name)]
    except DatasetError:
        return []


def list_datasets(prepared_dir: Path) -> list[dict]:
    """Every folder in ``prepared_dir`` holding clips, with what review material it has."""
    if not prepared_dir.is_dir():
        return []
    found = []
    folders = (p for p in prepared_dir.iterdir() if not p.name.startswith(".") and usable_name(p.name, "."))
    for folder in sorted(p for p in folders if p.is_dir()):
        keys = clip_keys(folder)
        if not keys:
            continue
        found.append(
            {
                "name": folder.name,
                "clips": len(keys),
                "transcript": (folder / TRANSCRIPT_FILE).is_file(),
                "review": (folder / REVIEW_FILE).is_file(),
                "report": (folder / REPORT_FILE).is_file(),
            }
        )
    return found


# --------------------------------------------------------------------------------------------- review


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def read_review(folder: Path) -> list[dict[str, str]]:
    """Rows of ``transcript_review.csv`` in file order (riskiest first); empty when it does not exist."""
    path = folder / REVIEW_FILE
    if not os.path.lexists(path):
        return []
    try:
        with io.StringIO(read_text_inside(folder, REVIEW_FILE), newline="") as f:
            return [row for row in csv.DictReader(f) if row.get("filename")]
    except (UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{path}: unreadable ({e}); run make transcribe again to rewrite it") from e


def whisper_texts(folder: Path) -> dict[str, str]:
    """What Whisper wrote for each clip (``transcript_signals.jsonl``), to tell edited rows apart."""
    from voicelab.transcribe import read_signals  # transcribe's heavy imports happen inside its functions

    return {key: rec.text for key, rec in read_signals(folder / SIGNALS_FILE).items()}


def review_clips(folder: Path) -> list[ClipView]:
    """Every clip of the dataset: those of the review first, riskiest first, then the rest by name."""
    transcript = read_rows(folder)
    exclusions = read_exclusions(folder)
    whisper = whisper_texts(folder)
    present = clip_keys(folder)
    views = []
    for row in read_review(folder):
        key = clip_key(row["filename"])
        if key in present:
            views.append(
                ClipView(
                    key,
                    transcript.get(key),
                    risk=_float(row.get("risk")),
                    reasons=row.get("reasons", ""),
                    duration_s=_float(row.get("duration_s")),
                )
            )
    seen = {v.filename for v in views}
    views += [ClipView(key, transcript.get(key)) for key in present if key not in seen]
    for view in views:
        heard = whisper.get(view.filename)
        view.edited = view.text is not None and heard is not None and view.text != heard
        if view.filename in exclusions:
            view.excluded, view.exclude_reason = True, exclusions[view.filename]
        view.etag = clip_version(view.filename, view.text, view.excluded, view.exclude_reason)
    return views


def dataset_version(clips: list[ClipView]) -> str:
    """The version of the whole review: changes when any clip's does."""
    joined = ",".join(f"{c.filename}={c.etag}" for c in clips)
    return '"' + hashlib.sha256(joined.encode("utf-8")).hexdigest()[:ETAG_HEX_CHARS] + '"'


def describe_dataset(prepared_dir: Path, name: str) -> dict:
    """The review of dataset ``name``: its clips riskiest first, each with its version, the version of the
    whole (``etag``), and the keys ``transcript.csv`` holds more than once (``duplicates``)."""
    folder = dataset_dir(prepared_dir, name)
    clips = review_clips(folder)
    return {
        "name": folder.name,
        "report": (folder / REPORT_FILE).is_file(),
        "duplicates": duplicate_keys(read_transcript_rows(folder)),
        "etag": dataset_version(clips),
        "clips": [asdict(v) for v in clips],
    }


def clean_edit_text(value: str, what: str) -> str:
    """``value`` trimmed with its whitespace runs collapsed; ``EditError`` for control characters (NUL,
    ESC, ...), which no transcript should hold."""
    bad = sorted({c for c in value if unicodedata.category(c) == CONTROL_CATEGORY} - ALLOWED_CONTROLS)
    if bad:
        shown = ", ".join(f"U+{ord(c):04X}" for c in bad)
        raise EditError(f"{what} holds control characters ({shown}); send plain text")
    return normalize_text(value)


def save_clip(
    prepared_dir: Path,
    name: str,
    clip: str,
    *,
    text: str | None = None,
    excluded: bool | None = None,
    reason: str | None = None,
    if_match: str | None = None,
) -> ClipView:
    """Apply a person's edit to one clip: new text (transcript.csv), excluded or restored (excluded.csv).

    ``None`` leaves that part as it is. The text is trimmed and its whitespace runs collapsed, as the
    transcribe step writes it; an empty text or control characters are refused (``EditError``). With
    ``if_match`` (the ``etag`` the edit started from, as HTTP's ``If-Match``), a clip changed since raises
    ``EditConflict``. Nothing is written unless the whole edit can be: both files are read and checked
    first, and the transcript is put back if excluded.csv cannot be written.
    """
    folder = clip_path(prepared_dir, name, clip).parent
    key = clip_key(clip)
    clean = None if text is None else clean_edit_text(text, f"clip {key}: the text")
    if clean == "":
        raise EditError(f"clip {key}: the text is empty; exclude the clip instead of blanking it")
    clean_reason = None if reason is None else clean_edit_text(reason, f"clip {key}: the reason")
    with writing(folder):  # the dataset's one writer lock: transcribe and prepare-audio take it too
        rows = read_transcript_rows(folder)
        exclusions = read_exclusions(folder)
        _check_version(folder, key, if_match)
        new_rows = rows if clean is None else _with_text(rows, key, clean, folder)
        new_exclusions = (
            exclusions if excluded is None else _with_exclusion(exclusions, key, excluded, clean_reason)
        )
        _write_edit(folder, rows, new_rows, exclusions, new_exclusions)
    return next(v for v in review_clips(folder) if v.filename == key)


def _check_version(folder: Path, key: str, if_match: str | None) -> None:
    if if_match is None:
        return
    current = next(v for v in review_clips(folder) if v.filename == key)
    if not version_matches(if_match, current.etag):
        raise EditConflict(
            f"clip {key} was changed by someone else since you loaded it (now: {current.text!r}"
            f"{', excluded' if current.excluded else ''}); to save over it, send its current etag as If-Match",
            current,
        )


def _with_text(rows: list[tuple[str, str]], key: str, text: str, folder: Path) -> list[tuple[str, str]]:
    """``rows`` with ``key``'s text replaced in place (appended when it has no row); order kept."""
    count = sum(k == key for k, _ in rows)
    if count > 1:
        raise DuplicateRowsError(
            f"{folder / TRANSCRIPT_FILE}: clip {key} has {count} rows; keep one by hand, then edit it here"
        )
    if count == 0:
        return [*rows, (key, text)]
    return [(k, text if k == key else t) for k, t in rows]


def _with_exclusion(
    exclusions: dict[str, str], key: str, excluded: bool, reason: str | None
) -> dict[str, str]:
    changed = dict(exclusions)
    if excluded:
        changed[key] = reason or exclusions.get(key) or DEFAULT_EXCLUDE_REASON
    else:
        changed.pop(key, None)
    return changed


def _write_edit(folder: Path, rows, new_rows, exclusions, new_exclusions) -> None:
    """Write what changed: the transcript first, put back if excluded.csv then fails."""
    transcript = folder / TRANSCRIPT_FILE
    existed = transcript.is_file()
    if new_rows != rows:
        write_transcript_rows(transcript, new_rows)
    if new_exclusions == exclusions:
        return
    try:
        write_exclusions(folder, new_exclusions)
    except BaseException:
        if new_rows != rows:
            write_transcript_rows(transcript, rows) if existed else transcript.unlink(missing_ok=True)
        raise


def report_path(prepared_dir: Path, name: str) -> Path:
    """``dataset_report.png`` of dataset ``name`` (must exist)."""
    path = resolve_inside(dataset_dir(prepared_dir, name), REPORT_FILE)
    if not path.is_file():
        raise DatasetNotFoundError(f"dataset {name!r} has no {REPORT_FILE}; the quality step writes it")
    return path

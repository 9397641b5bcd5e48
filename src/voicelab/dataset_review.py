"""A person's review of a prepared dataset: its clips riskiest first, text edits and exclusions.

The studio page (``voicelab.server.studio``) is a thin shell over these functions. Every name a client
sends (dataset, clip) goes through ``resolve_inside``, so nothing outside the prepared folder is read or
written. Edits go through the transcript writer the transcribe step uses (atomic, UTF-8, CSV quoting);
a later transcribe run keeps existing rows, so an edited row is never overwritten. A clip left out by a
person is listed in ``excluded.csv`` (``filename,reason``) and keeps its row in ``transcript.csv``, so it
can be restored.

A save changes only its own row: the file keeps its order and any duplicate rows (which are reported, not
merged). It applies entirely or not at all: under the dataset's writer lock (``PreparedDataset.writing``,
which transcribe takes too) every file is read and every value checked before the first write. Each clip
has a version (``etag``, from its text and exclusion); a save that names the version it started from
(``if_match``) is refused with ``EditConflict`` when someone changed the clip since.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

from voicelab.dataset import (
    ORPHEUS_TAGS,
    TAG_EXAMPLES_NEEDED,
    DatasetError,
    PreparedDataset,
    clip_filename,
    clip_key,
    count_tags,
    duplicate_keys,
    normalize_tags,
    normalize_text,
)
from voicelab.errors import UsageError
from voicelab.fileio import name_problem, printable_name, resolve_inside

logger = logging.getLogger(__name__)

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
ETAG_HEX_CHARS = 16
"""64 bits of SHA-256: two versions of one clip colliding by chance is out of reach."""


@dataclass
class ClipView:
    """One clip as the review page shows it."""

    key: str  # the clip key: the WAV's stem
    text: str | None  # transcript.csv's text; None when the clip has no row
    risk: float | None = None  # from transcript_review.csv; None when not flagged
    reasons: str = ""
    duration_s: float | None = None
    edited: bool = False  # the text differs from Whisper's
    excluded: bool = False
    exclude_reason: str = ""
    etag: str = ""  # the version of what a person can change (text, exclusion): ``clip_version``
    removed_tags: list[str] = field(default_factory=list)
    """Annotations the last save took out of the text: no Orpheus tag means them (``<giggle>``)."""

    def as_json(self) -> dict:
        """What the studio API sends: the key under ``filename``, as the page has always read it."""
        fields = asdict(self)
        return {"filename": fields.pop("key"), **fields}


def _tag(state: str) -> str:
    return '"' + hashlib.sha256(state.encode("utf-8")).hexdigest()[:ETAG_HEX_CHARS] + '"'


def clip_version(key: str, text: str | None, excluded: bool, reason: str) -> str:
    """The clip's version: changes whenever its text or its exclusion does (an HTTP entity tag, quoted)."""
    return _tag(json.dumps([key, text, excluded, reason if excluded else ""], ensure_ascii=False))


def dataset_version(clips: list[ClipView]) -> str:
    """The version of the whole review: changes when any clip's does."""
    return _tag(",".join(f"{c.key}={c.etag}" for c in clips))


def version_matches(if_match: str, etag: str) -> bool:
    """``If-Match`` semantics: ``*`` or a listed tag equal to ``etag`` (weak tags never match)."""
    tags = [tag.strip() for tag in if_match.split(",")]
    return "*" in tags or etag in tags


def usable_name(name: str, where: Path | str) -> bool:
    """False (with a warning naming it) for a file name no answer can carry (not UTF-8, too long)."""
    problem = name_problem(name)
    if problem is not None:
        logger.warning("%s/%s: not shown in the studio: %s", where, printable_name(name), problem)
    return problem is None


def clip_keys(ds: PreparedDataset) -> list[str]:
    """Keys of the dataset's clips that an answer can carry (``usable_name``)."""
    keys = ds.keys()
    return [key for key in keys if usable_name(clip_filename(key), ds.name)]


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
    path = resolve_inside(folder, clip_filename(key))
    # a key must name its own file: "clip_000.wav.wav" or "clip_000 " are no other spelling of clip_000
    if Path(key).name != key or clip_key(path.name) != key or not path.is_file():
        raise DatasetNotFoundError(f"dataset {name!r} has no clip {printable_name(clip)!r}")
    return path


def list_datasets(prepared_dir: Path) -> list[dict]:
    """Every folder in ``prepared_dir`` holding clips, with what review material it has."""
    if not prepared_dir.is_dir():
        return []
    found = []
    folders = (p for p in prepared_dir.iterdir() if not p.name.startswith(".") and usable_name(p.name, "."))
    for folder in sorted(p for p in folders if p.is_dir()):
        ds = PreparedDataset(folder)
        keys = clip_keys(ds)
        if not keys:
            continue
        found.append(
            {
                "name": folder.name,
                "clips": len(keys),
                "transcript": ds.has_transcript(),
                "review": ds.has_review(),
                "report": ds.has_report(),
            }
        )
    return found


# --------------------------------------------------------------------------------------------- review


def whisper_texts(ds: PreparedDataset) -> dict[str, str]:
    """What Whisper wrote for each clip (the signals file), to tell edited rows apart."""
    return {key: rec.text for key, rec in ds.read_signals().items()}


def review_clips(ds: PreparedDataset) -> list[ClipView]:
    """Every clip of the dataset: those of the review first, riskiest first, then the rest by key."""
    transcript = ds.read_rows()
    exclusions = ds.read_exclusions()
    whisper = whisper_texts(ds)
    present = clip_keys(ds)
    views = [
        ClipView(
            row.key, transcript.get(row.key), risk=row.risk, reasons=row.reasons, duration_s=row.duration_s
        )
        for row in ds.read_review()
        if row.key in present
    ]
    seen = {v.key for v in views}
    views += [ClipView(key, transcript.get(key)) for key in present if key not in seen]
    for view in views:
        heard = whisper.get(view.key)
        view.edited = view.text is not None and heard is not None and view.text != heard
        if view.key in exclusions:
            view.excluded, view.exclude_reason = True, exclusions[view.key]
        view.etag = clip_version(view.key, view.text, view.excluded, view.exclude_reason)
    return views


def describe_dataset(prepared_dir: Path, name: str) -> dict:
    """The review of dataset ``name``: its clips riskiest first, each with its version, the version of the
    whole (``etag``), and the keys ``transcript.csv`` holds more than once (``duplicates``)."""
    ds = PreparedDataset(dataset_dir(prepared_dir, name))
    clips = review_clips(ds)
    return {
        "name": ds.name,
        "report": ds.has_report(),
        "duplicates": duplicate_keys(ds.read_transcript_rows()),
        "etag": dataset_version(clips),
        "clips": [v.as_json() for v in clips],
        "tags": describe_tags(clips),
    }


def dataset_tags(prepared_dir: Path, name: str) -> dict:
    """``describe_tags`` of dataset ``name``."""
    return describe_tags(review_clips(PreparedDataset(dataset_dir(prepared_dir, name))))


def describe_tags(clips: list[ClipView]) -> dict:
    """The expressive tags of the clips training would use (a text, not excluded): per tag, clips and
    occurrences; the annotations training would remove; how many examples a tag needs."""
    census = count_tags(v.text for v in clips if v.text and not v.excluded)
    return {
        "orpheus_tags": list(ORPHEUS_TAGS),
        "examples_needed": TAG_EXAMPLES_NEEDED,
        "counts": census.as_dict(),
        "unknown": {spelled: count.clips for spelled, count in census.unknown.items()},
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

    ``None`` leaves that part as it is. The text goes through the tag normaliser (``(laughs)`` becomes
    ``<laugh>``, an unknown annotation is removed and listed in ``removed_tags``), is trimmed and its
    whitespace runs collapsed, as the transcribe step writes it; an empty text or control characters are
    refused (``EditError``). With
    ``if_match`` (the ``etag`` the edit started from, as HTTP's ``If-Match``), a clip changed since raises
    ``EditConflict``. Nothing is written unless the whole edit can be: both files are read and checked
    first (under the dataset's writer lock), and the transcript is put back if excluded.csv cannot be
    written.
    """
    ds = PreparedDataset(clip_path(prepared_dir, name, clip).parent)
    key = clip_key(clip)
    removed: list[str] = []
    clean = None
    if text is not None:
        tagged = normalize_tags(clean_edit_text(text, f"clip {key}: the text"))
        clean, removed = normalize_text(tagged.text), list(tagged.unknown)
    if clean == "":
        raise EditError(f"clip {key}: the text is empty; exclude the clip instead of blanking it")
    clean_reason = None if reason is None else clean_edit_text(reason, f"clip {key}: the reason")
    with ds.writing():
        rows = ds.read_transcript_rows()
        exclusions = ds.read_exclusions()
        _check_version(ds, key, if_match)
        new_rows = rows if clean is None else _with_text(ds, rows, key, clean)
        new_exclusions = (
            exclusions if excluded is None else _with_exclusion(exclusions, key, excluded, clean_reason)
        )
        _write_edit(ds, rows, new_rows, exclusions, new_exclusions)
    view = next(v for v in review_clips(ds) if v.key == key)
    view.removed_tags = removed
    return view


def _check_version(ds: PreparedDataset, key: str, if_match: str | None) -> None:
    if if_match is None:
        return
    current = next(v for v in review_clips(ds) if v.key == key)
    if not version_matches(if_match, current.etag):
        raise EditConflict(
            f"clip {key} was changed by someone else since you loaded it (now: {current.text!r}"
            f"{', excluded' if current.excluded else ''}); to save over it, send its current etag as If-Match",
            current,
        )


def _with_text(
    ds: PreparedDataset, rows: list[tuple[str, str]], key: str, text: str
) -> list[tuple[str, str]]:
    """``rows`` with ``key``'s text replaced in place (appended when it has no row); order kept."""
    count = sum(k == key for k, _ in rows)
    if count > 1:
        raise DuplicateRowsError(
            f"{ds.transcript_path}: clip {key} has {count} rows; keep one by hand, then edit it here"
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


def _write_edit(ds: PreparedDataset, rows, new_rows, exclusions, new_exclusions) -> None:
    """Write what changed: the transcript first, put back if excluded.csv then fails."""
    existed = ds.transcript_path.is_file()
    if new_rows != rows:
        ds.write_transcript_rows(new_rows)
    if new_exclusions == exclusions:
        return
    try:
        ds.write_exclusions(new_exclusions)
    except BaseException:
        if new_rows != rows:
            ds.write_transcript_rows(rows) if existed else ds.transcript_path.unlink(missing_ok=True)
        raise


def report_picture(prepared_dir: Path, name: str, layout: str = "wide") -> Path | bytes:
    """The dataset report picture of dataset ``name`` (must exist), redrawn first when the exclusions or
    the transcript changed since it was drawn; ``layout="narrow"``: drawn in one column for a phone
    (bytes). Without the speaker comparison transcribe keeps for a redraw, the picture as it is."""
    from voicelab.dataset_report import redraw_report

    ds = PreparedDataset(dataset_dir(prepared_dir, name))
    path = resolve_inside(ds.dir, ds.report_path.name)
    if not path.is_file():
        raise DatasetNotFoundError(
            f"dataset {name!r} has no {ds.report_path.name}; the quality step writes it"
        )
    if ds.report_is_stale():
        with ds.writing():  # a writer of the folder: under its lock, and only once
            if ds.report_is_stale():
                redraw_report(ds)
    if layout == "narrow":
        picture = io.BytesIO()
        if redraw_report(ds, layout=layout, out=picture):
            return picture.getvalue()
    return path

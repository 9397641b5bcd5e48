"""A person's review of a prepared dataset: its clips riskiest first, text edits and exclusions.

The studio page (``voicelab.server.studio``) is a thin shell over these functions. Every name a client
sends (dataset, clip) goes through ``resolve_inside``, so nothing outside the prepared folder is read or
written. Edits go through the transcript writer the transcribe step uses (atomic, UTF-8, CSV quoting);
a later transcribe run keeps existing rows, so an edited row is never overwritten. A clip left out by a
person is listed in ``excluded.csv`` (``filename,reason``) and keeps its row in ``transcript.csv``, so it
can be restored.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from voicelab.dataset import (
    CLIP_SUFFIX,
    DECISIONS_FILE,
    EXCLUDED_FILE,
    REPORT_FILE,
    REVIEW_FILE,
    SIGNALS_FILE,
    TRANSCRIPT_FILE,
    DatasetError,
    clip_key,
    find_clips,
    normalize_text,
    read_exclusions,
    read_transcript,
    write_exclusions,
    write_transcript,
)
from voicelab.errors import UsageError
from voicelab.fileio import resolve_inside

DEFAULT_EXCLUDE_REASON = "excluded in the studio"

LOCK_FILE = ".studio.lock"
"""Hidden file in the dataset folder that server processes lock while they save (``make serve`` workers)."""

_write_lock = threading.Lock()


@contextlib.contextmanager
def saving(folder: Path) -> Iterator[None]:
    """Saves read, change and rewrite whole files: one at a time (threads and worker processes alike),
    so two quick saves never lose one."""
    with _write_lock, (folder / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


class DatasetNotFoundError(UsageError):
    """A dataset or clip name that does not exist under the prepared folder."""


class EditError(UsageError):
    """An edit that cannot be saved as asked (an empty text); the message says why."""


def read_rows(folder: Path) -> dict[str, str]:
    """``transcript.csv`` as clip key -> text (empty when the file does not exist yet)."""
    path = folder / TRANSCRIPT_FILE
    return dict(read_transcript(path)) if path.is_file() else {}


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


def clip_keys(folder: Path) -> list[str]:
    """Keys of the clips in ``folder`` (``dataset.find_clips``), empty when it has none."""
    try:
        return [clip_key(p) for p in find_clips(folder)]
    except DatasetError:
        return []


def list_datasets(prepared_dir: Path) -> list[dict]:
    """Every folder in ``prepared_dir`` holding clips, with what review material it has."""
    if not prepared_dir.is_dir():
        return []
    found = []
    for folder in sorted(p for p in prepared_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
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
    if not path.is_file():
        return []
    try:
        with path.open(encoding="utf-8", newline="") as f:
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
    return views


def describe_dataset(prepared_dir: Path, name: str) -> dict:
    folder = dataset_dir(prepared_dir, name)
    return {
        "name": folder.name,
        "report": (folder / REPORT_FILE).is_file(),
        "clips": [asdict(v) for v in review_clips(folder)],
    }


def save_clip(
    prepared_dir: Path,
    name: str,
    clip: str,
    *,
    text: str | None = None,
    excluded: bool | None = None,
    reason: str | None = None,
) -> ClipView:
    """Apply a person's edit to one clip: new text (transcript.csv), excluded or restored (excluded.csv).

    ``None`` leaves that part as it is. The text is trimmed and its whitespace runs collapsed, as the
    transcribe step writes it; an empty text is refused (exclude the clip instead).
    """
    folder = clip_path(prepared_dir, name, clip).parent
    key = clip_key(clip)
    with saving(folder):
        if text is not None:
            clean = normalize_text(text)
            if not clean:
                raise EditError(f"clip {key}: the text is empty; exclude the clip instead of blanking it")
            rows = read_rows(folder)
            if rows.get(key) != clean:
                rows[key] = clean
                write_transcript(folder / TRANSCRIPT_FILE, rows.items())
        if excluded is not None:
            exclusions = read_exclusions(folder)
            before = dict(exclusions)
            if excluded:
                exclusions[key] = (
                    normalize_text(reason or "") or exclusions.get(key) or DEFAULT_EXCLUDE_REASON
                )
            else:
                exclusions.pop(key, None)
            if exclusions != before:
                write_exclusions(folder, exclusions)
    return next(v for v in review_clips(folder) if v.filename == key)


def report_picture(prepared_dir: Path, name: str, layout: str = "wide") -> Path | bytes:
    """``dataset_report.png`` of dataset ``name`` (must exist), redrawn first when the exclusions or the
    transcript changed since it was drawn; ``layout="narrow"``: drawn in one column for a phone (bytes).
    Without the speaker comparison transcribe keeps for a redraw, the picture as it is."""
    from voicelab.dataset_report import redraw_report

    folder = dataset_dir(prepared_dir, name)
    path = resolve_inside(folder, REPORT_FILE)
    if not path.is_file():
        raise DatasetNotFoundError(f"dataset {name!r} has no {REPORT_FILE}; the quality step writes it")
    with saving(folder):  # one drawing at a time: matplotlib's pyplot is not thread-safe
        if _report_is_stale(folder, path):
            redraw_report(folder)
        if layout == "narrow":
            picture = io.BytesIO()
            if redraw_report(folder, layout=layout, out=picture):
                return picture.getvalue()
    return path


def _report_is_stale(folder: Path, report: Path) -> bool:
    drawn = report.stat().st_mtime_ns
    inputs = (folder / name for name in (EXCLUDED_FILE, DECISIONS_FILE, TRANSCRIPT_FILE))
    return any(p.is_file() and p.stat().st_mtime_ns > drawn for p in inputs)

"""A person's review of a prepared dataset: its clips riskiest first, text edits and exclusions.

The studio page (``voicelab.server.studio``) is a thin shell over these functions. Every name a client
sends (dataset, clip) goes through ``resolve_inside``, so nothing outside the prepared folder is read or
written. Edits go through the transcript writer the transcribe step uses (atomic, UTF-8, CSV quoting);
a later transcribe run keeps existing rows, so an edited row is never overwritten. A clip left out by a
person is listed in ``excluded.csv`` (``filename,reason``) and keeps its row in ``transcript.csv``, so it
can be restored.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

from voicelab.dataset import (
    ORPHEUS_TAGS,
    TAG_EXAMPLES_NEEDED,
    PreparedDataset,
    clip_filename,
    clip_key,
    count_tags,
    normalize_tags,
    normalize_text,
)
from voicelab.errors import UsageError
from voicelab.fileio import resolve_inside

DEFAULT_EXCLUDE_REASON = "excluded in the studio"


class DatasetNotFoundError(UsageError):
    """A dataset or clip name that does not exist under the prepared folder."""


class EditError(UsageError):
    """An edit that cannot be saved as asked (an empty text); the message says why."""


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
    removed_tags: list[str] = field(default_factory=list)
    """Annotations the last save took out of the text: no Orpheus tag means them (``<giggle>``)."""

    def as_json(self) -> dict:
        """What the studio API sends: the key under ``filename``, as the page has always read it."""
        fields = asdict(self)
        return {"filename": fields.pop("key"), **fields}


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
    if Path(key).name != key or not path.is_file():
        raise DatasetNotFoundError(f"dataset {name!r} has no clip {clip!r}")
    return path


def list_datasets(prepared_dir: Path) -> list[dict]:
    """Every folder in ``prepared_dir`` holding clips, with what review material it has."""
    if not prepared_dir.is_dir():
        return []
    found = []
    for folder in sorted(p for p in prepared_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        ds = PreparedDataset(folder)
        keys = ds.keys()
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
    present = ds.keys()
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
    return views


def describe_dataset(prepared_dir: Path, name: str) -> dict:
    ds = PreparedDataset(dataset_dir(prepared_dir, name))
    clips = review_clips(ds)
    return {
        "name": ds.name,
        "report": ds.has_report(),
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

    ``None`` leaves that part as it is. The text goes through the tag normaliser (``(laughs)`` becomes
    ``<laugh>``, an unknown annotation is removed and listed in ``removed_tags``), is trimmed and its
    whitespace runs collapsed, as the transcribe step writes it; an empty text is refused (exclude the
    clip instead).
    """
    ds = PreparedDataset(clip_path(prepared_dir, name, clip).parent)
    key = clip_key(clip)
    removed: list[str] = []
    with ds.saving():
        if text is not None:
            removed = _save_text(ds, key, text)
        if excluded is not None:
            _save_exclusion(ds, key, excluded, reason)
    view = next(v for v in review_clips(ds) if v.key == key)
    view.removed_tags = removed
    return view


def _save_text(ds: PreparedDataset, key: str, text: str) -> list[str]:
    """Write the clip's text through the tag normaliser; returns the unknown annotations it removed."""
    tagged = normalize_tags(text)
    clean = normalize_text(tagged.text)
    if not clean:
        raise EditError(f"clip {key}: the text is empty; exclude the clip instead of blanking it")
    rows = ds.read_rows()
    if rows.get(key) != clean:
        rows[key] = clean
        ds.write_transcript(rows.items())
    return list(tagged.unknown)


def _save_exclusion(ds: PreparedDataset, key: str, excluded: bool, reason: str | None) -> None:
    exclusions = ds.read_exclusions()
    before = dict(exclusions)
    if excluded:
        exclusions[key] = normalize_text(reason or "") or exclusions.get(key) or DEFAULT_EXCLUDE_REASON
    else:
        exclusions.pop(key, None)
    if exclusions != before:
        ds.write_exclusions(exclusions)


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
    with ds.saving():  # one drawing at a time: matplotlib's pyplot is not thread-safe
        if ds.report_is_stale():
            redraw_report(ds)
        if layout == "narrow":
            picture = io.BytesIO()
            if redraw_report(ds, layout=layout, out=picture):
                return picture.getvalue()
    return path

"""The prepared dataset folder ``prepared/NAME/``: every file in it, how clips are named, and the formats.

One folder per character, written by the data steps and read by training and the studio:

=========================  ================  =========================================================
file                       written by        what
=========================  ================  =========================================================
``{key}.wav``              prepare-audio     the clips: 16-bit mono WAV at 24 kHz, 3-13 s
``manifest.csv``           prepare-audio     one row per clip: source span, levels, how each edge was cut
``transcript.csv``         transcribe        ``filename,text``: the text of every clip (the guide's format)
``transcript_signals.jsonl``  transcribe     Whisper's numbers and audio measures per clip seen
``transcript_review.csv``  transcribe        the clips worth a listen, riskiest first, with reasons
``dataset_report.png``     transcribe        clip lengths, speaker similarity, DNSMOS, minutes per source
``excluded.csv``           a person/studio   ``filename,reason``: clips left out of training (text kept)
``sources_left_out.csv``   prepare-audio     recordings that failed or gave no clip, remembered until changed
``.snac_cache/``           train-lora        SNAC codes per clip, keyed by content
``.dataset.lock``          every writer      the folder's writer lock (``writing``); empty
=========================  ================  =========================================================

A clip is named everywhere by its **key**, the file stem without ``.wav`` (``talk_003``): in
``transcript.csv``, ``manifest.csv``, ``excluded.csv`` and the review. Readers also accept ``talk_003.wav``.

One writer discipline for every file of the folder: a writer holds the folder's lock (``writing``, the
hidden ``.dataset.lock``; threads and processes alike) while it reads, changes and writes, and it merges
rather than overwriting from memory: it reads the file as it is now, applies its own rows and writes the
whole atomically (``update_transcript``, ``update_exclusions``, ``update_manifest``,
``update_sources_left_out``), or appends one record to the current file (``TranscriptWriter``). So
transcribe, prepare-audio and a person saving in the studio at the same moment lose nothing: transcribe
adds a clip's row only while no one else wrote one, and never rewrites the file from the rows it held.

Every file is read through ``fileio.open_inside``: a symlink that leads out of the folder is refused, not
read, and nothing is ever written through a symlink (atomic writes replace the name; appends and the lock
refuse a symlink).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from voicelab.errors import UsageError
from voicelab.fileio import append_durably, atomic_output, open_inside, write_text_atomic

logger = logging.getLogger(__name__)

CLIP_SUFFIX = ".wav"
TRANSCRIPT_FILE = "transcript.csv"
MANIFEST_FILE = "manifest.csv"
SIGNALS_FILE = "transcript_signals.jsonl"
REVIEW_FILE = "transcript_review.csv"
EXCLUDED_FILE = "excluded.csv"
SOURCES_LEFT_OUT_FILE = "sources_left_out.csv"
CACHE_DIR = ".snac_cache"
LOCK_FILE = ".dataset.lock"
"""Held by every writer of the folder (``writing``)."""
LOCK_FILE_MODE = 0o644
ENCODING = "utf-8"
INDEX_DIGITS = 3
"""Clip keys are ``{stem}_{index:03d}`` (the guide's naming); indexes past 999 just grow wider."""

TRANSCRIPT_HEADER = ("filename", "text")
EXCLUDED_HEADER = ("filename", "reason")
_WHITESPACE_RUN = re.compile(r"\s+")


class DatasetError(UsageError):
    """A dataset folder or file that cannot be used; the message names it and what to do."""


class TranscriptFormatError(DatasetError):
    """A transcript file that is not a ``filename,text`` CSV; the message names the file and the fix."""


class ManifestError(DatasetError):
    """``manifest.csv`` exists but cannot be read as one prepare-audio wrote."""


# ---------------------------------------------------------------------------------- writer discipline

_held = threading.local()


@contextlib.contextmanager
def writing(folder: Path | str) -> Iterator[None]:
    """Hold ``folder``'s writer lock: one writer at a time, across threads and processes (``flock``).

    Re-entrant within a thread, so a merge (``update_*``) can run inside a larger change that holds it.
    The lock file is created if missing and never followed through a symlink.
    """
    key = os.path.realpath(folder)
    held: set[str] = _held.__dict__.setdefault("folders", set())
    if key in held:
        yield
        return
    lock = Path(folder) / LOCK_FILE
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, LOCK_FILE_MODE)
    except OSError as e:
        if e.errno == errno.ELOOP:  # a symlink in its place
            raise DatasetError(f"{lock}: a symlink, not the folder's lock; delete it") from e
        raise DatasetError(
            f"{lock}: cannot take the folder's lock ({e.strerror}); it must be writable"
        ) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the file closes
        held.add(key)
        yield
    finally:
        held.discard(key)
        os.close(fd)


def _read_text(path: Path) -> str:
    """The file's text, opened through ``fileio.open_inside`` its own folder (a symlink leading out is
    refused); ``FileNotFoundError`` when absent."""
    with open_inside(path.parent, path.name) as handle:
        data = handle.read()
    try:
        return data.decode(ENCODING)
    except UnicodeDecodeError as e:
        raise TranscriptFormatError(f"{path}: not UTF-8 text ({e}); save it as UTF-8") from e


# ----------------------------------------------------------------------------------------- the folder


def require_dataset_dir(path: Path | str) -> Path:
    """``path`` when it is a folder; else ``DatasetError`` saying how a dataset folder is made."""
    path = Path(path)
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "not found"
        raise DatasetError(
            f"{path}: dataset folder {what}; make one with "
            f'`make prepare-audio ARGS="raw_audio/NAME/ prepared/NAME/"`'
        )
    return path


def clip_key(name: str | Path) -> str:
    """The key of a clip from its key, file name or path: ``talk_003``, ``talk_003.wav`` -> ``talk_003``."""
    name = Path(name).name if isinstance(name, Path) else name.strip()
    return name[: -len(CLIP_SUFFIX)] if name.lower().endswith(CLIP_SUFFIX) else name


def clip_filename(key: str) -> str:
    return f"{clip_key(key)}{CLIP_SUFFIX}"


def indexed_key(stem: str, index: int) -> str:
    """The key of a source's ``index``-th clip: ``{stem}_{index:03d}``."""
    return f"{stem}_{index:0{INDEX_DIGITS}d}"


def clip_path(dataset_dir: Path, name: str) -> Path | None:
    """The WAV a key names inside ``dataset_dir``, or None when the name is empty or would leave the folder."""
    key = clip_key(name)
    filename = f"{key}{CLIP_SUFFIX}"
    if not key or Path(filename).name != filename or filename.startswith("."):
        return None
    return Path(dataset_dir) / filename


def find_clips(dataset_dir: Path) -> list[Path]:
    """The WAV clips directly inside ``dataset_dir`` (hidden and temporary files excluded), sorted by name.

    Raises ``DatasetError`` naming the folder when it is missing or holds no clip.
    """
    dataset_dir = require_dataset_dir(dataset_dir)
    clips = sorted(
        p
        for p in dataset_dir.iterdir()
        if p.is_file() and p.suffix.lower() == CLIP_SUFFIX and not p.name.startswith(".")
    )
    if not clips:
        raise DatasetError(
            f"{dataset_dir}: no {CLIP_SUFFIX} clips found; run prepare-audio first "
            f'(make prepare-audio ARGS="raw_audio/NAME/ {dataset_dir}/")'
        )
    return clips


def signals_path_for(transcript: Path) -> Path:
    """``transcript_signals.jsonl`` beside ``transcript.csv`` (``{stem}_signals.jsonl`` for another name)."""
    return transcript.with_name(f"{transcript.stem}_signals.jsonl")


def review_path_for(transcript: Path) -> Path:
    """``transcript_review.csv`` beside ``transcript.csv`` (``{stem}_review.csv`` for another name)."""
    return transcript.with_name(f"{transcript.stem}_review.csv")


# ------------------------------------------------------------------------------------ transcript.csv


def normalize_text(text: str) -> str:
    """Trim and collapse every whitespace run (newlines and tabs included) to one space."""
    return _WHITESPACE_RUN.sub(" ", text).strip()


def format_row(*values: str) -> str:
    """One CSV record, newline-terminated, quoted where needed (commas, quotes, newlines)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def _parse(path: Path, content: str, header: tuple[str, ...]) -> list[tuple[str, str]]:
    # strict: an unterminated quote (a row cut short) is an error, not a silently shortened text.
    reader = csv.reader(io.StringIO(content, newline=""), strict=True)
    try:
        return _parse_records(path, reader, header)
    except csv.Error as e:
        raise TranscriptFormatError(
            f"{path}: line {reader.line_num}: malformed CSV ({e}); check the quotes on that row"
        ) from e


def _parse_records(path: Path, reader, header: tuple[str, ...]) -> list[tuple[str, str]]:
    spelled = ",".join(header)
    first = next(reader, None)
    if first is None:
        raise TranscriptFormatError(f"{path}: file is empty; expected a CSV with header '{spelled}'")
    if tuple(h.strip().lstrip("\ufeff") for h in first) != header:
        raise TranscriptFormatError(
            f"{path}: header is {','.join(first)!r}, expected '{spelled}' "
            "(fix the first line, or point at the right file)"
        )
    rows = []
    for record in reader:
        if not record:
            continue  # blank line
        if len(record) != len(header):
            raise TranscriptFormatError(
                f"{path}: line {reader.line_num} has {len(record)} fields, expected {len(header)} "
                f"({spelled}); quote a text that contains commas"
            )
        rows.append((clip_key(record[0]), record[1]))
    return rows


def read_transcript(path: Path | str) -> list[tuple[str, str]]:
    """Rows ``(key, text)`` of a transcript CSV, in file order (a ``.wav`` on a filename is dropped).

    Raises ``FileNotFoundError`` if absent and ``TranscriptFormatError`` (naming the file) for a wrong
    header, a row without exactly two fields, or bytes that are not UTF-8.
    """
    path = Path(path)
    return _parse(path, _read_text(path), TRANSCRIPT_HEADER)


def read_transcript_for_resume(path: Path | str) -> list[tuple[str, str]]:
    """Like ``read_transcript``, but a last record cut short by a crash (no final newline) is dropped.

    Rows are appended one whole record per write, so only the record in flight can be incomplete; its
    clip is then simply transcribed again.
    """
    path = Path(path)
    content = _read_text(path)
    if content and not content.endswith("\n"):
        cut = content.rfind("\n")
        if cut < 0:
            raise TranscriptFormatError(f"{path}: has no complete header line 'filename,text'")
        logger.warning("%s: last row was cut short (a crash mid-write?); it will be transcribed again", path)
        content = content[: cut + 1]
    return _parse(path, content, TRANSCRIPT_HEADER)


def _write_pairs(path: Path, header: tuple[str, str], rows: Iterable[tuple[str, str]]) -> Path:
    """``header`` then ``rows`` in the order given, atomically, under the folder's lock."""
    with writing(path.parent), atomic_output(path) as tmp, tmp.open("w", encoding=ENCODING, newline="") as f:
        f.write(format_row(*header))
        for key, value in rows:
            f.write(format_row(clip_key(key), value))
    return path


def write_transcript(path: Path | str, rows: Iterable[tuple[str, str]]) -> Path:
    """Write the whole transcript atomically, rows sorted by key (last one wins on duplicates): for a new
    file. A file others may be writing is changed with ``update_transcript``."""
    by_key = {clip_key(k): t for k, t in rows}
    return _write_pairs(Path(path), TRANSCRIPT_HEADER, sorted(by_key.items()))


def write_transcript_rows(path: Path | str, rows: Iterable[tuple[str, str]]) -> Path:
    """Write the whole transcript atomically with ``rows`` exactly in the order given, duplicates kept."""
    return _write_pairs(Path(path), TRANSCRIPT_HEADER, rows)


TranscriptChange = Callable[[list[tuple[str, str]]], list[tuple[str, str]]]


def update_transcript(path: Path | str, change: TranscriptChange) -> list[tuple[str, str]]:
    """The one way to change a transcript others may be writing: under the folder's lock, read it as it
    is now (file order, duplicates kept; a last row cut short by a crash dropped), apply ``change`` and
    write the result atomically. Returns the rows now in the file. ``change`` may raise to
    write nothing."""
    path = Path(path)
    with writing(path.parent):
        rows = read_transcript_for_resume(path) if path.exists() else []
        changed = change(list(rows))
        write_transcript_rows(path, changed)  # also when equal: a last row cut short is gone from the file
        return changed


def sort_transcript(path: Path | str) -> list[tuple[str, str]]:
    """Rows sorted by key in place (stable: duplicates kept in their order, and named in a warning)."""
    rows = update_transcript(path, lambda rows: sorted(rows, key=lambda row: row[0]))
    if duplicates := duplicate_keys(rows):
        logger.warning(
            "%s: clips with several rows (kept; keep one by hand): %s", path, ", ".join(duplicates)
        )
    return rows


def duplicate_keys(rows: Iterable[tuple[str, str]]) -> list[str]:
    """Keys with more than one row, sorted."""
    return sorted(key for key, n in Counter(key for key, _ in rows).items() if n > 1)


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class TranscriptWriter:
    """Adds rows to a transcript one at a time, each durable (fsync) and under the folder's lock, and never
    a row for a clip that has one: someone (a person in the studio) wrote it meanwhile, and theirs stays.

    Each row is appended to the file as it is now (opened afresh: a studio save that replaced the file
    is not written over). The file is re-read only when someone else changed it since this writer's last
    row. One write per record: a crash leaves at most the last record cut short
    (``read_transcript_for_resume`` drops it).
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._keys: set[str] = set()
        self._seen: tuple[int, int, int] | None = None

    def add(self, key: str, text: str) -> bool:
        """Append the row unless the clip has one now; True when appended."""
        key = clip_key(key)
        with writing(self.path.parent):
            if _signature(self.path) != self._seen or self._seen is None:
                self._keys = (
                    {k for k, _ in read_transcript_for_resume(self.path)} if self.path.exists() else set()
                )
            if key in self._keys:
                return False
            append_durably(self.path, format_row(key, text), ENCODING)
            self._keys.add(key)
            self._seen = _signature(self.path)
        return True


# -------------------------------------------------------------------------------------- excluded.csv


def read_exclusions(dataset_dir: Path | str) -> dict[str, str]:
    """Clips a person left out of training: key -> reason (``{}`` when there is no ``excluded.csv``)."""
    path = Path(dataset_dir) / EXCLUDED_FILE
    if not os.path.lexists(path):
        return {}
    return dict(_parse(path, _read_text(path), EXCLUDED_HEADER))


def write_exclusions(dataset_dir: Path | str, exclusions: Mapping[str, str]) -> Path:
    """Replace ``excluded.csv`` atomically, sorted by key (removed when nothing is excluded)."""
    path = Path(dataset_dir) / EXCLUDED_FILE
    with writing(path.parent):
        if not exclusions:
            path.unlink(missing_ok=True)
            return path
        return _write_pairs(path, EXCLUDED_HEADER, sorted((clip_key(k), r) for k, r in exclusions.items()))


def update_exclusions(
    dataset_dir: Path | str, change: Callable[[dict[str, str]], dict[str, str]]
) -> dict[str, str]:
    """Change ``excluded.csv`` as it is now, under the folder's lock (see ``update_transcript``)."""
    with writing(dataset_dir):
        exclusions = read_exclusions(dataset_dir)
        changed = change(dict(exclusions))
        if changed != exclusions:
            write_exclusions(dataset_dir, changed)
        return changed


# -------------------------------------------------------------------------------------- manifest.csv


@dataclass(frozen=True)
class ClipRecord:
    """One manifest row. Times are seconds in the source; levels are dBFS of the written clip."""

    clip: str
    """The clip's key (``talk_003``)."""
    source: str
    start_s: float
    end_s: float
    duration_s: float
    rms_dbfs: float
    peak_dbfs: float
    gain_db: float
    peak_limited: bool
    """True when the gain was lowered so that no sample clips (the clip is quieter than the target)."""
    start_cut: str
    end_cut: str
    """How each edge was cut: ``pause``, ``short-pause``, ``forced`` (inside speech) or ``file-edge``."""
    cut_method: str = "fixed"
    """What set the source's silence threshold: ``fixed`` (--silence-threshold) or ``adaptive`` (a quiet
    recording, cut under its own speech level; see ``segment.choose_threshold``)."""
    threshold_dbfs: float | None = None
    """The silence threshold the source was cut at (empty in manifests written before it was recorded)."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def older_field_names(cls) -> list[str]:
        """Columns of manifests written before ``cut_method`` and ``threshold_dbfs``: still read."""
        return cls.field_names()[:-2]

    def to_row(self) -> dict[str, str]:
        row = {k: str(v) for k, v in asdict(self).items()}
        row["peak_limited"] = "yes" if self.peak_limited else "no"
        row["threshold_dbfs"] = "" if self.threshold_dbfs is None else str(self.threshold_dbfs)
        return row

    @classmethod
    def from_row(cls, row: dict[str, str]) -> ClipRecord:
        floats = ("start_s", "end_s", "duration_s", "rms_dbfs", "peak_dbfs", "gain_db")
        return cls(
            clip=clip_key(row["clip"]),  # manifests written before keys dropped ".wav"
            source=row["source"],
            **{name: float(row[name]) for name in floats},
            peak_limited=row["peak_limited"] == "yes",
            start_cut=row["start_cut"],
            end_cut=row["end_cut"],
            cut_method=row.get("cut_method") or "fixed",
            threshold_dbfs=float(row["threshold_dbfs"]) if row.get("threshold_dbfs") else None,
        )


def read_manifest(path: Path) -> list[ClipRecord]:
    """Rows of an existing manifest (``[]`` when there is none)."""
    if not os.path.lexists(path):
        return []
    expected = ClipRecord.field_names()
    with io.StringIO(_read_text(path), newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames not in (expected, ClipRecord.older_field_names()):
            raise ManifestError(
                f"{path} has columns {reader.fieldnames}, not {expected}: it was not written by this tool "
                "(or by another version); move it away or rerun with --overwrite"
            )
        try:
            return [ClipRecord.from_row(row) for row in reader]
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(
                f"{path} line {reader.line_num}: unreadable row ({e}); use --overwrite"
            ) from e


def write_manifest(path: Path, records: Iterable[ClipRecord]) -> None:
    """Write all rows atomically (the old manifest stays intact until the new one is complete)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ClipRecord.field_names(), lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(record.to_row())
    with writing(path.parent):
        write_text_atomic(path, buffer.getvalue())


def update_manifest(path: Path, source: str, records: Iterable[ClipRecord]) -> list[ClipRecord]:
    """The manifest as it is now with ``source``'s rows replaced by ``records``, under the folder's lock;
    returns every row now in it."""
    with writing(path.parent):
        rows = [r for r in read_manifest(path) if r.source != source] + list(records)
        write_manifest(path, rows)
        return rows


# ------------------------------------------------------------------------------ sources_left_out.csv


@dataclass(frozen=True)
class SourceLeftOut:
    """A recording prepare-audio could not use, remembered so a rerun neither retries nor re-reports it
    while the file is unchanged (same size and modification time)."""

    source: str
    size: int
    mtime_ns: int
    reason: str

    def matches(self, path: Path) -> bool:
        try:
            stat = path.stat()
        except OSError:
            return False
        return (stat.st_size, stat.st_mtime_ns) == (self.size, self.mtime_ns)

    @classmethod
    def of(cls, path: Path, source: str, reason: str) -> SourceLeftOut:
        try:
            stat = path.stat()
        except OSError:
            return cls(source, -1, -1, reason)
        return cls(source, stat.st_size, stat.st_mtime_ns, reason)


def read_sources_left_out(dataset_dir: Path | str) -> dict[str, SourceLeftOut]:
    """Recordings left out by earlier runs, by source key (``{}`` when none; an unreadable file is ignored)."""
    path = Path(dataset_dir) / SOURCES_LEFT_OUT_FILE
    if not os.path.lexists(path):
        return {}
    try:
        with io.StringIO(_read_text(path), newline="") as f:
            return {
                row["source"]: SourceLeftOut(
                    row["source"], int(row["size"]), int(row["mtime_ns"]), row["reason"]
                )
                for row in csv.DictReader(f)
            }
    except (OSError, KeyError, TypeError, ValueError, csv.Error, UsageError) as e:
        logger.warning("%s unreadable (%s): every recording not in the manifest is tried again", path, e)
        return {}


def write_sources_left_out(dataset_dir: Path | str, notes: Mapping[str, SourceLeftOut]) -> None:
    """Replace ``sources_left_out.csv`` atomically (removed when nothing is left out)."""
    path = Path(dataset_dir) / SOURCES_LEFT_OUT_FILE
    with writing(path.parent):
        if not notes:
            path.unlink(missing_ok=True)
            return
        names = [f.name for f in fields(SourceLeftOut)]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        for key in sorted(notes):
            writer.writerow(asdict(notes[key]))
        write_text_atomic(path, buffer.getvalue())


def update_sources_left_out(dataset_dir: Path | str, source: str, note: SourceLeftOut | None) -> None:
    """``sources_left_out.csv`` as it is now with ``source``'s note set (or removed with None), under the
    folder's lock."""
    with writing(dataset_dir):
        notes = read_sources_left_out(dataset_dir)
        if note is None:
            if notes.pop(source, None) is None:
                return
        else:
            notes[source] = note
        write_sources_left_out(dataset_dir, notes)

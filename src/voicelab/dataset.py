"""The prepared dataset folder ``prepared/NAME/``: every file in it, how clips are named, and the formats.

One folder per character, written by the data steps and read by training and the studio. This module is
the folder's only owner: ``PreparedDataset(dir)`` knows every path below and reads and writes every file;
other modules ask it (``ds.transcript_path``, ``ds.read_transcript()``, ``ds.write_exclusions(...)``) and
never spell a file name (``tests/test_architecture.py`` checks it). Every write to the folder goes through
a ``PreparedDataset`` method.

==============================  ================  =====================================================
file                            written by        what
==============================  ================  =====================================================
``{key}.wav``                   prepare-audio     the clips: 16-bit mono WAV at 24 kHz, 3-13 s
``manifest.csv``                prepare-audio     one row per clip: source span, levels, how each edge was cut
``transcript.csv``              transcribe        ``filename,text``: the text of every clip (the guide's format)
``transcript_signals.jsonl``    transcribe        Whisper's numbers and audio measures per clip seen
``transcript_review.csv``       transcribe        the clips worth a listen, riskiest first, with reasons
``dataset_report.png``          transcribe        clip lengths, speaker similarity, DNSMOS, minutes per source
``dataset_report.json``         transcribe        the speaker comparison the report shows, to redraw it later
``excluded.csv``                a person/studio   ``filename,reason``: clips left out of training (text kept)
``exclusion_decisions.csv``     transcribe/studio ``filename,decision``: clips excluded, and those a person
                                                  restored (``--exclude-flagged`` never undoes a restore)
``sources_left_out.csv``        prepare-audio     recordings that failed or gave no clip, remembered until changed
``source_voices.csv``           prepare-audio     per recording: minutes kept, of other voices, of music dropped
                                                  (written with --reference or --speaker auto)
``voice_print.json``            prepare-audio     the voice kept (--reference or --speaker auto): reruns with
                                                  --speaker auto keep it, transcribe's review measures to it
``.dataset.lock``               every writer      the folder's writer lock (``PreparedDataset.writing``); empty
``.snac_cache/``                train-lora        SNAC codes per clip, keyed by content
``pipeline.json``               voicelab-voice    which of its steps are done, for what input (resume, skip)
``.pipeline.lock``              voicelab-voice    held while a run makes this voice (one run at a time)
==============================  ================  =====================================================

A clip is named everywhere by its **key**, the file stem without ``.wav`` (``talk_003``), and code calls
it ``key``. The files keep their historical column names for it: the ``filename`` column of
``transcript.csv``, ``excluded.csv`` and ``transcript_review.csv``, the ``clip`` column of
``manifest.csv`` and the ``filename`` field of ``transcript_signals.jsonl`` all hold keys. Readers also
accept ``talk_003.wav``.

A transcript may live under another name (``transcribe --output``, ``train-lora --transcript``); its
signals and review files follow it: ``{stem}_signals.jsonl`` and ``{stem}_review.csv`` beside it.

One writer discipline for every file of the folder, kept by the ``PreparedDataset`` write methods so every
writer gets it: a writer holds the folder's lock (``writing``: ``.dataset.lock``, threads and processes
alike) while it reads, changes and writes, and it merges rather than overwriting from memory. It reads
the file as it is now, applies its own rows and writes the whole atomically (``update_transcript``,
``update_exclusions``, ``update_manifest``, ``update_sources_left_out``, ``merge_signals``), or appends
one record to the current file (``transcript_writer``, ``signals_appender``). So transcribe,
prepare-audio and a person saving in the studio at the same moment lose nothing: transcribe adds a clip's
row only while no one else wrote one, and never rewrites the file from the rows it held.

Every file is read through ``fileio.open_inside`` its folder: a symlink that leads out is refused, not
read; nothing is written through a symlink (atomic writes replace the name; appends and the lock refuse
a symlink).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import logging
import os
import re
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from voicelab.errors import UsageError
from voicelab.fileio import append_durably, atomic_output, open_inside, write_text_atomic

logger = logging.getLogger(__name__)

CLIP_SUFFIX = ".wav"
TRANSCRIPT_FILE = "transcript.csv"
MANIFEST_FILE = "manifest.csv"
SIGNALS_FILE = "transcript_signals.jsonl"
REVIEW_FILE = "transcript_review.csv"
REPORT_FILE = "dataset_report.png"
EXCLUDED_FILE = "excluded.csv"
DECISIONS_FILE = "exclusion_decisions.csv"
REPORT_INPUTS_FILE = "dataset_report.json"
SOURCES_LEFT_OUT_FILE = "sources_left_out.csv"
SOURCE_VOICES_FILE = "source_voices.csv"
VOICE_PRINT_FILE = "voice_print.json"
LOCK_FILE = ".dataset.lock"
"""Held by every writer of the folder (``writing``)."""
LOCK_FILE_MODE = 0o644
CACHE_DIR = ".snac_cache"
PIPELINE_STATE_FILE = "pipeline.json"
PIPELINE_LOCK_FILE = ".pipeline.lock"
SCRATCH_PREFIX = ".prepare-scratch-"
"""prepare-audio's unlinked scratch file of decoded samples (gone when the run ends, even on a crash)."""
SIGNALS_SUFFIX = "_signals.jsonl"
REVIEW_SUFFIX = "_review.csv"
"""The signals and review files are named after their transcript: ``{stem}_signals.jsonl``."""
FILE_NAMES = (
    TRANSCRIPT_FILE,
    MANIFEST_FILE,
    SIGNALS_FILE,
    REVIEW_FILE,
    REPORT_FILE,
    REPORT_INPUTS_FILE,
    EXCLUDED_FILE,
    DECISIONS_FILE,
    SOURCES_LEFT_OUT_FILE,
    SOURCE_VOICES_FILE,
    VOICE_PRINT_FILE,
    LOCK_FILE,
    CACHE_DIR,
    PIPELINE_STATE_FILE,
    PIPELINE_LOCK_FILE,
    SCRATCH_PREFIX,
    SIGNALS_SUFFIX,
    REVIEW_SUFFIX,
)
"""Every name this module gives a file of the folder: no other module may spell one."""
ENCODING = "utf-8"
INDEX_DIGITS = 3
"""Clip keys are ``{stem}_{index:03d}`` (the guide's naming); indexes past 999 just grow wider."""

KEY_COLUMN = "filename"
"""The column (and signals field) that holds the clip key in transcript, excluded, review and signals."""
MANIFEST_KEY_COLUMN = "clip"
"""The manifest's column for the clip key."""
TRANSCRIPT_HEADER = (KEY_COLUMN, "text")
EXCLUDED_HEADER = (KEY_COLUMN, "reason")
DECISIONS_HEADER = (KEY_COLUMN, "decision")
EXCLUDED = "excluded"
RESTORED = "restored"
"""A clip's decision: it was in excluded.csv when voicelab last wrote or read it, or a person took it out."""
_WHITESPACE_RUN = re.compile(r"\s+")


class DatasetError(UsageError):
    """A dataset folder or file that cannot be used; the message names it and what to do."""


class TranscriptFormatError(DatasetError):
    """A transcript file that is not a ``filename,text`` CSV; the message names the file and the fix."""


class ManifestError(DatasetError):
    """``manifest.csv`` exists but cannot be read as one prepare-audio wrote."""


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


def clip_path(dataset_dir: Path, key: str) -> Path | None:
    """The WAV a key names inside ``dataset_dir``, or None when the key is empty or would leave the folder."""
    key = clip_key(key)
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


# ------------------------------------------------------------------------------------ transcript.csv


def normalize_text(text: str) -> str:
    """Trim and collapse every whitespace run (newlines and tabs included) to one space."""
    return _WHITESPACE_RUN.sub(" ", text).strip()


def format_row(*values: str) -> str:
    """One CSV record, newline-terminated, quoted where needed (commas, quotes, newlines)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def _read_text(path: Path) -> str:
    """The file's text, opened through ``fileio.open_inside`` its own folder (a symlink leading out is
    refused: ``UnsafePathError``); ``FileNotFoundError`` when absent."""
    with open_inside(path.parent, path.name) as handle:
        data = handle.read()
    try:
        return data.decode(ENCODING)
    except UnicodeDecodeError as e:
        raise TranscriptFormatError(f"{path}: not UTF-8 text ({e}); save it as UTF-8") from e


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
    write the result atomically. Returns the rows now in the file. ``change`` may raise to write nothing."""
    path = Path(path)
    with writing(path.parent):
        rows = read_transcript_for_resume(path) if os.path.lexists(path) else []
        changed = change(list(rows))
        write_transcript_rows(path, changed)  # also when equal: a last row cut short is gone from the file
        return changed


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
            if self._seen is None or _signature(self.path) != self._seen:
                present = os.path.lexists(self.path)
                self._keys = {k for k, _ in read_transcript_for_resume(self.path)} if present else set()
            if key in self._keys:
                return False
            append_durably(self.path, format_row(key, text), ENCODING)
            self._keys.add(key)
            self._seen = _signature(self.path)
        return True


# -------------------------------------------------------------------------------------- excluded.csv


def read_exclusions(dataset_dir: Path | str) -> dict[str, str]:
    """``PreparedDataset(dataset_dir).read_exclusions()``."""
    return PreparedDataset(dataset_dir).read_exclusions()


def write_exclusions(dataset_dir: Path | str, exclusions: Mapping[str, str]) -> Path:
    """``PreparedDataset(dataset_dir).write_exclusions(exclusions)``."""
    return PreparedDataset(dataset_dir).write_exclusions(exclusions)


# -------------------------------------------------------------------------------------- manifest.csv


@dataclass(frozen=True)
class ClipRecord:
    """One manifest row. Times are seconds in the source; levels are dBFS of the written clip."""

    key: str
    """The clip's key (``talk_003``), in the manifest's ``clip`` column."""
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
    speaker_similarity: float | None = None
    """Cosine similarity of the clip's voice to the character (--reference or --speaker auto; else empty)."""
    music: str = ""
    """``bed``: the character over a music bed (kept with --music-bed keep); ``no``: none found; empty: not
    looked for (prepare-audio without --reference or --speaker auto only drops music alone)."""

    @classmethod
    def field_names(cls) -> list[str]:
        """The manifest's columns, in order (the key's column is ``MANIFEST_KEY_COLUMN``)."""
        return [MANIFEST_KEY_COLUMN if f.name == "key" else f.name for f in fields(cls)]

    @classmethod
    def older_field_names(cls) -> list[str]:
        """Columns of manifests written before ``cut_method`` and ``threshold_dbfs``: still read."""
        return cls.field_names()[:-4]

    @classmethod
    def readable_field_names(cls) -> list[list[str]]:
        """Every column set a manifest of this tool has had: older ones read with the new fields empty."""
        return [cls.field_names(), cls.field_names()[:-2], cls.older_field_names()]

    def to_row(self) -> dict[str, str]:
        row = {(MANIFEST_KEY_COLUMN if k == "key" else k): str(v) for k, v in asdict(self).items()}
        row["peak_limited"] = "yes" if self.peak_limited else "no"
        row["threshold_dbfs"] = "" if self.threshold_dbfs is None else str(self.threshold_dbfs)
        row["speaker_similarity"] = "" if self.speaker_similarity is None else str(self.speaker_similarity)
        return row

    @classmethod
    def from_row(cls, row: dict[str, str]) -> ClipRecord:
        floats = ("start_s", "end_s", "duration_s", "rms_dbfs", "peak_dbfs", "gain_db")
        return cls(
            key=clip_key(row[MANIFEST_KEY_COLUMN]),  # manifests written before keys dropped ".wav"
            source=row["source"],
            **{name: float(row[name]) for name in floats},
            peak_limited=row["peak_limited"] == "yes",
            start_cut=row["start_cut"],
            end_cut=row["end_cut"],
            cut_method=row.get("cut_method") or "fixed",
            threshold_dbfs=float(row["threshold_dbfs"]) if row.get("threshold_dbfs") else None,
            speaker_similarity=float(row["speaker_similarity"]) if row.get("speaker_similarity") else None,
            music=row.get("music") or "",
        )


def read_manifest(path: Path) -> list[ClipRecord]:
    """Rows of an existing manifest (``[]`` when there is none)."""
    if not os.path.lexists(path):
        return []
    expected = ClipRecord.field_names()
    with io.StringIO(_read_text(path), newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames not in ClipRecord.readable_field_names():
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
    """``PreparedDataset(dataset_dir).read_sources_left_out()``."""
    return PreparedDataset(dataset_dir).read_sources_left_out()


def write_sources_left_out(dataset_dir: Path | str, notes: Mapping[str, SourceLeftOut]) -> None:
    """``PreparedDataset(dataset_dir).write_sources_left_out(notes)``."""
    PreparedDataset(dataset_dir).write_sources_left_out(notes)


def _read_sources_left_out(path: Path) -> dict[str, SourceLeftOut]:
    """Recordings left out by earlier runs, by source key (``{}`` when none; an unreadable file is ignored)."""
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


def _write_sources_left_out(path: Path, notes: Mapping[str, SourceLeftOut]) -> None:
    """Replace ``sources_left_out.csv`` atomically (removed when nothing is left out)."""
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


# ------------------------------------------------------------------ source_voices.csv, voice_print.json


@dataclass(frozen=True)
class SourceMinutes:
    """Where one recording's minutes went when prepare-audio kept one voice (a row of
    ``source_voices.csv``)."""

    source: str
    minutes: float
    kept_min: float
    other_voices_min: float
    music_min: float
    unjudged_min: float
    """Sound too short (or too near a change of voice) to tell whose it is."""


def _read_source_voices(path: Path) -> dict[str, SourceMinutes]:
    if not os.path.lexists(path):
        return {}
    try:
        with io.StringIO(_read_text(path), newline="") as f:
            return {
                row["source"]: SourceMinutes(
                    row["source"], *(float(row[n.name]) for n in fields(SourceMinutes)[1:])
                )
                for row in csv.DictReader(f)
            }
    except (OSError, KeyError, TypeError, ValueError, csv.Error, UsageError) as e:
        logger.warning("%s unreadable (%s): minutes per voice left out of the report", path, e)
        return {}


def _write_source_voices(path: Path, rows: Mapping[str, SourceMinutes]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in fields(SourceMinutes)], lineterminator="\n")
    writer.writeheader()
    for key in sorted(rows):
        writer.writerow(
            {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(rows[key]).items()}
        )
    with writing(path.parent):
        if not rows:
            path.unlink(missing_ok=True)
            return
        write_text_atomic(path, buffer.getvalue())


VOICE_PRINT_DECIMALS = 6
"""A voice print's numbers are unit-vector components: 6 decimals keep cosines to about 1e-6."""


def _read_voice_print(path: Path) -> tuple[list[float], float] | None:
    if not os.path.lexists(path):
        return None
    try:
        data = json.loads(_read_text(path))
        return [float(x) for x in data["embedding"]], float(data["minutes"])
    except (OSError, KeyError, TypeError, ValueError, UsageError) as e:
        logger.warning("%s unreadable (%s): the voice is picked again", path, e)
        return None


# ------------------------------------------------------------------------------------ expressive tags

ORPHEUS_TAGS = ("laugh", "chuckle", "sigh", "cough", "sniffle", "groan", "yawn", "gasp")
"""The expressive tags of Orpheus (its README, for the fine-tuned model), written ``<laugh>`` in a text.
They are plain text to the model, not special tokens: a voice renders a tag only if its training texts
held it (else the model may read "laugh" aloud), so training texts carry exactly these spellings."""
TAG_EXAMPLES_NEEDED = 100
"""Examples of a tag for the model to learn it: the Orpheus maintainers' advice for fine-tuning."""
MAX_TAG_SPAN_CHARS = 40
"""A bracketed span longer than this is left alone: annotations are a few words ("(laughs nervously)",
"[BACKGROUND MUSIC]"); a longer one is more likely a real parenthesis of the speaker's."""

_TAG_WORDS = {
    word: tag
    for tag, words in {
        "laugh": ("laugh", "laughs", "laughing", "laughed", "laughter"),
        "chuckle": ("chuckle", "chuckles", "chuckling", "chuckled"),
        "sigh": ("sigh", "sighs", "sighing", "sighed"),
        "cough": ("cough", "coughs", "coughing", "coughed"),
        "sniffle": ("sniffle", "sniffles", "sniffling", "sniffled", "sniff", "sniffs", "sniffing"),
        "groan": ("groan", "groans", "groaning", "groaned"),
        "yawn": ("yawn", "yawns", "yawning", "yawned"),
        "gasp": ("gasp", "gasps", "gasping", "gasped"),
    }.items()
    for word in words
}
"""Words of an annotation -> the tag: Whisper writes "(laughs)", "[LAUGHTER]", "(laughing)", "*sighs*"."""

_SPAN = MAX_TAG_SPAN_CHARS
_TAG_SPAN = re.compile(
    rf"\((?P<round>[^()\n]{{1,{_SPAN}}})\)"
    rf"|\[(?P<square>[^\[\]\n]{{1,{_SPAN}}})\]"
    rf"|<(?P<angle>[^<>\n]{{1,{_SPAN}}})>"
    rf"|\*(?P<star>[^\W\d_][^*\n]{{0,{_SPAN - 2}}}[^\W\d_]|[^\W\d_])\*"
)
"""An annotation: a short span in round, square or angle brackets, or between asterisks (``*sighs*``;
an asterisk span starts and ends with a letter, so ``2 * 3 * 4`` is arithmetic, not a span)."""
_SPAN_WORD = re.compile(r"[^\W\d_]+")
_HORIZONTAL_SPACE = " \t"
_ATTACHING_PUNCTUATION = ".,!?;:…"
"""Punctuation that stays attached to what precedes it: ``funny (laughs).`` -> ``funny <laugh>.``."""


@dataclass(frozen=True)
class TaggedText:
    """A text with its annotations normalised: Orpheus tags in their one spelling, the others removed."""

    text: str
    tags: tuple[str, ...] = ()
    """The tags it holds (``"laugh"``), in order."""
    unknown: tuple[str, ...] = ()
    """The annotations removed from it, as they were written (``"<giggle>"``, ``"[MUSIC]"``)."""


def tag_spelling(tag: str) -> str:
    """How a text carries ``tag``: ``<laugh>``, exactly as the serving prompt will."""
    return f"<{tag}>"


def unknown_tag_message(spelled: str) -> str:
    return (
        f"unknown tag {spelled}: the base model would read it aloud; map it or remove it "
        f"(the tags Orpheus knows: {' '.join(tag_spelling(t) for t in ORPHEUS_TAGS)})"
    )


def _span_tag(match: re.Match) -> str | None:
    """The tag an annotation means (its first tag word), ``None`` for an unknown one."""
    content = next(g for g in match.groups() if g is not None)
    return next((_TAG_WORDS[w] for w in _SPAN_WORD.findall(content.lower()) if w in _TAG_WORDS), None)


def normalize_tags(text: str) -> TaggedText:
    """The one tag normaliser of every writer of training text (transcribe, the studio, train-lora).

    Each annotation (``(laughs)``, ``[LAUGHTER]``, ``*sighs*``, ``<Laugh>``, ``(chuckling)``) becomes its
    Orpheus tag (``<laugh>``), set off by single spaces (punctuation right after it stays attached); an
    annotation that names no Orpheus tag (``<giggle>``, ``[MUSIC]``) is removed and listed in ``unknown``.
    Words the speaker says ("he laughed") are untouched, and so is a text without annotations, character
    for character. A span without a letter (``[?]``) or longer than ``MAX_TAG_SPAN_CHARS`` is not an
    annotation. Idempotent.
    """
    out, tags, unknown, pos = "", [], [], 0
    for match in _TAG_SPAN.finditer(text):
        if not _SPAN_WORD.search(match.group(0)):
            continue
        out += text[pos : match.start()]
        pos = match.end()
        while pos < len(text) and text[pos] in _HORIZONTAL_SPACE:
            pos += 1
        out = out.rstrip(_HORIZONTAL_SPACE)
        tag = _span_tag(match)
        if tag is not None:
            tags.append(tag)
            out += (" " if out and not out[-1].isspace() else "") + tag_spelling(tag)
        else:
            unknown.append(match.group(0))
        following = text[pos : pos + 1]
        if out and following and not following.isspace() and following not in _ATTACHING_PUNCTUATION:
            out += "" if out[-1].isspace() else " "
    return TaggedText(out + text[pos:], tuple(tags), tuple(unknown))


def spoken_tags(text: str) -> tuple[str, ...]:
    """The tags whose word ``text`` says as a word ("he laughed" -> ``laugh``), in order of first mention;
    annotations and tags are not words said."""
    words = _SPAN_WORD.findall(_TAG_SPAN.sub(" ", text).lower())
    return tuple(dict.fromkeys(_TAG_WORDS[w] for w in words if w in _TAG_WORDS))


@dataclass(frozen=True)
class TagCount:
    clips: int = 0
    """Texts (clips) holding the tag at least once."""
    occurrences: int = 0


@dataclass(frozen=True)
class TagCensus:
    """The tags of a set of texts: known tags by name, unknown annotations by their spelling."""

    tags: dict[str, TagCount] = field(default_factory=dict)
    unknown: dict[str, TagCount] = field(default_factory=dict)

    def ordered(self) -> list[tuple[str, TagCount]]:
        """The known tags found, in ``ORPHEUS_TAGS`` order."""
        return [(tag, self.tags[tag]) for tag in ORPHEUS_TAGS if tag in self.tags]

    def as_dict(self) -> dict[str, dict[str, int]]:
        """``{tag: {"clips": n, "occurrences": m}}`` in ``ORPHEUS_TAGS`` order (what voice.json records)."""
        return {tag: asdict(count) for tag, count in self.ordered()}


def count_tags(texts: Iterable[str]) -> TagCensus:
    """How many clips hold each tag, and how often (texts go through ``normalize_tags`` first)."""
    known: dict[str, list[int]] = {}
    unknown: dict[str, list[int]] = {}
    for text in texts:
        tagged = normalize_tags(text)
        for counts, found in ((known, tagged.tags), (unknown, tagged.unknown)):
            for name in set(found):
                entry = counts.setdefault(name, [0, 0])
                entry[0] += 1
                entry[1] += found.count(name)

    def frozen(counts: dict[str, list[int]]) -> dict[str, TagCount]:
        return {name: TagCount(*counts[name]) for name in sorted(counts)}

    return TagCensus(frozen(known), frozen(unknown))


def describe_tags(census: TagCensus) -> list[str]:
    """Lines for a step's summary: each tag's clips and occurrences, the guidance, the unknown ones."""
    if not census.tags and not census.unknown:
        return [
            "expressive tags: none in the texts (a voice trained on these texts will not render <laugh> and "
            "the like: see the guide's section on expressive tags)"
        ]
    lines = []
    if census.tags:
        counts = ", ".join(
            f"{tag_spelling(t)} {c.clips} clips ({c.occurrences}x)" for t, c in census.ordered()
        )
        lines.append(f"expressive tags: {counts}")
        few = [tag_spelling(t) for t, c in census.ordered() if c.clips < TAG_EXAMPLES_NEEDED]
        if few:
            lines.append(
                f"  a tag the model must learn needs about {TAG_EXAMPLES_NEEDED} examples; fewer for "
                f"{', '.join(few)}"
            )
    lines += [f"  {unknown_tag_message(spelled)} ({c.clips} clips)" for spelled, c in census.unknown.items()]
    return lines


# ------------------------------------------------------------------------- transcript_signals.jsonl


@dataclass(frozen=True)
class ClipSignals:
    """What is known about one clip: its text, audio length and Whisper's numbers (``None`` = unknown).

    One record of ``transcript_signals.jsonl`` (one JSON object a line; the key in its ``filename``
    field). Written by transcribe, read by the review, the studio and a resumed transcribe.
    """

    key: str
    text: str
    duration_s: float | None
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    compression_ratio: float | None = None
    # audio measures (voicelab.quality), stored so a rerun need not compute them again
    speech_s: float | None = None
    dnsmos_sig: float | None = None
    dnsmos_bak: float | None = None
    dnsmos_ovrl: float | None = None
    embedding: list[float] | None = None
    nonspeech_s: float | None = None
    """Sounding seconds of the clip's longest non-speech sound (``voicelab.vocal_events``; 0: none)."""
    nonspeech_at_s: float | None = None
    """Where that sound starts, seconds into the clip."""

    @property
    def has_quality(self) -> bool:
        """Every audio measure is stored (records from older runs lack the newer ones: measured again)."""
        return self.embedding is not None and self.nonspeech_s is not None

    def to_json(self) -> str:
        """One line of the signals file (without the newline); the key first, as ``filename``."""
        record = asdict(self)
        return json.dumps({KEY_COLUMN: record.pop("key"), **record}, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> ClipSignals:
        """Raises ``ValueError``, ``TypeError``, ``KeyError`` or ``AttributeError`` for a line that is not
        a record."""
        record = json.loads(line)
        key = record.pop(KEY_COLUMN)
        return cls(key, **record)


def read_signals(path: Path) -> dict[str, ClipSignals]:
    """Records of a signals file by key (last wins); a line cut short by a crash is skipped."""
    found: dict[str, ClipSignals] = {}
    if not os.path.lexists(path):
        return found
    with io.StringIO(_read_text(path)) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = ClipSignals.from_json(line)
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                logger.warning("%s: line %d unreadable (%s); ignored", path, line_no, e)
                continue
            found[rec.key] = rec
    return found


def _write_signals(path: Path, signals: Mapping[str, ClipSignals]) -> None:
    with writing(path.parent), atomic_output(path) as tmp, tmp.open("w", encoding=ENCODING) as f:
        for key in sorted(signals):
            f.write(signals[key].to_json() + "\n")


class SignalsAppender:
    """Appends records to a signals file, each durable before the next (a crash loses at most one), to the
    file as it is now, under the folder's lock."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def append(self, rec: ClipSignals) -> None:
        with writing(self.path.parent):
            append_durably(self.path, rec.to_json() + "\n", ENCODING)

    def close(self) -> None:
        """Nothing is held open between records."""


# ---------------------------------------------------------------------------- transcript_review.csv

REVIEW_COLUMNS = (
    (KEY_COLUMN, None),
    ("risk", 2),
    ("reasons", None),
    ("text", None),
    ("duration_s", 2),
    ("chars_per_s", 1),
    ("avg_logprob", 3),
    ("no_speech_prob", 3),
    ("compression_ratio", 2),
    ("speaker_similarity", 3),
    ("dnsmos_sig", 2),
    ("dnsmos_bak", 2),
    ("dnsmos_ovrl", 2),
    ("words_per_s", 2),
    ("nonspeech_s", 2),
)
"""The review's columns, in order, with the decimals each number is written with (None: text)."""
REVIEW_HEADER = tuple(name for name, _ in REVIEW_COLUMNS)


@dataclass(frozen=True)
class ReviewRow:
    """One row of ``transcript_review.csv``: a clip worth a listen, and the numbers behind its reasons."""

    key: str
    risk: float | None
    reasons: str
    text: str
    duration_s: float | None = None
    chars_per_s: float | None = None
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    compression_ratio: float | None = None
    speaker_similarity: float | None = None
    dnsmos_sig: float | None = None
    dnsmos_bak: float | None = None
    dnsmos_ovrl: float | None = None
    words_per_s: float | None = None
    nonspeech_s: float | None = None

    def to_record(self) -> tuple[str, ...]:
        values = (getattr(self, f.name) for f in fields(self))
        return tuple(
            value if digits is None else _number(value, digits)
            for (_, digits), value in zip(REVIEW_COLUMNS, values, strict=True)
        )

    @classmethod
    def from_row(cls, row: Mapping[str, str | None]) -> ReviewRow:
        """A row read back; numbers that do not parse read as ``None``."""
        numbers = {name: _float(row.get(name)) for name, digits in REVIEW_COLUMNS[1:] if digits is not None}
        return cls(
            key=clip_key(row[KEY_COLUMN] or ""),
            reasons=row.get("reasons", ""),  # type: ignore[arg-type]
            text=row.get("text", ""),  # type: ignore[arg-type]
            **numbers,
        )


def _number(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


# --------------------------------------------------------------------------------- the folder object


def _decided(decisions: Mapping[str, str], exclusions: Mapping[str, str]) -> dict[str, str]:
    """``decisions`` after ``exclusions``: a clip recorded as excluded and no longer listed is restored;
    every listed clip is excluded."""
    updated = {k: (RESTORED if d == EXCLUDED and k not in exclusions else d) for k, d in decisions.items()}
    updated.update(dict.fromkeys(exclusions, EXCLUDED))
    return updated


class PreparedDataset:
    """The folder ``prepared/NAME/`` (see the module docstring): its paths, and every read and write.

    ``transcript``: a transcript under another name or folder (``--output``, ``--transcript``); its
    signals and review files sit beside it. The other files are in ``folder``.
    """

    def __init__(self, folder: Path | str, transcript: Path | str | None = None):
        self.dir = Path(folder)
        self.transcript_path = Path(transcript) if transcript is not None else self.dir / TRANSCRIPT_FILE

    @classmethod
    def of_transcript(cls, transcript: PreparedDataset | Path | str) -> PreparedDataset:
        """The dataset a transcript file belongs to (its folder); a ``PreparedDataset`` as it is."""
        if isinstance(transcript, PreparedDataset):
            return transcript
        return cls(Path(transcript).parent, transcript)

    def __repr__(self) -> str:
        return f"PreparedDataset({str(self.dir)!r})"

    # --- paths -----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def manifest_path(self) -> Path:
        return self.dir / MANIFEST_FILE

    @property
    def signals_path(self) -> Path:
        """``transcript_signals.jsonl`` beside the transcript (``{stem}_signals.jsonl`` for another name)."""
        return self.transcript_path.with_name(f"{self.transcript_path.stem}{SIGNALS_SUFFIX}")

    @property
    def review_path(self) -> Path:
        """``transcript_review.csv`` beside the transcript (``{stem}_review.csv`` for another name)."""
        return self.transcript_path.with_name(f"{self.transcript_path.stem}{REVIEW_SUFFIX}")

    @property
    def report_path(self) -> Path:
        return self.dir / REPORT_FILE

    @property
    def excluded_path(self) -> Path:
        return self.dir / EXCLUDED_FILE

    @property
    def sources_left_out_path(self) -> Path:
        return self.dir / SOURCES_LEFT_OUT_FILE

    @property
    def snac_cache_dir(self) -> Path:
        return self.dir / CACHE_DIR

    @property
    def pipeline_state_path(self) -> Path:
        """``pipeline.json``: voicelab-voice's record of its steps (``voicelab.cli.pipeline.state``)."""
        return self.dir / PIPELINE_STATE_FILE

    @property
    def pipeline_lock_path(self) -> Path:
        return self.dir / PIPELINE_LOCK_FILE

    def read_pipeline_state(self) -> str | None:
        """``pipeline.json``'s text (read inside the folder: a symlink out is refused), or ``None``."""
        if not os.path.lexists(self.pipeline_state_path):
            return None
        return _read_text(self.pipeline_state_path)

    def write_pipeline_state(self, text: str) -> None:
        """Replace ``pipeline.json`` atomically, under the folder's writer lock (the folder is made first:
        voicelab-voice records a download before prepare-audio has made it)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with writing(self.dir):
            write_text_atomic(self.pipeline_state_path, text)

    def require(self) -> PreparedDataset:
        """This dataset when its folder exists; else ``DatasetError`` saying how a dataset folder is made."""
        require_dataset_dir(self.dir)
        return self

    def has_transcript(self) -> bool:
        return self.transcript_path.is_file()

    def writing(self) -> contextlib.AbstractContextManager[None]:
        """The folder's writer lock (module docstring): every write method below takes it."""
        return writing(self.dir)

    def has_review(self) -> bool:
        return self.review_path.is_file()

    def has_report(self) -> bool:
        return self.report_path.is_file()

    # --- clips -----------------------------------------------------------------------------------
    def clip_path(self, key: str) -> Path | None:
        """The WAV of ``key``, or None when the key is empty or would leave the folder."""
        return clip_path(self.dir, key)

    def find_clips(self) -> list[Path]:
        """The WAV clips, sorted; ``DatasetError`` when the folder is missing or holds none."""
        return find_clips(self.dir)

    def keys(self) -> list[str]:
        """Keys of the clips in the folder, sorted (empty when there is none, or no folder)."""
        try:
            return [clip_key(p) for p in self.find_clips()]
        except DatasetError:
            return []

    def write_clip(self, key: str, audio, sample_rate: int) -> Path:
        """Write clip ``key`` (float32 ``(T,)``; 16-bit WAV, atomically)."""
        from voicelab.audio import write_wav

        path = self.dir / clip_filename(key)
        write_wav(path, audio, sample_rate)
        return path

    def remove_clip(self, key: str) -> None:
        (self.dir / clip_filename(key)).unlink(missing_ok=True)

    def indexed_keys(self, stem: str) -> list[str]:
        """Keys of the clips named ``{stem}_NNN`` in the folder (``indexed_key``), in directory order."""
        pattern = re.compile(re.escape(stem) + rf"_\d{{{INDEX_DIGITS},}}")
        return [
            clip_key(p)
            for p in self.dir.iterdir()
            if p.name.endswith(CLIP_SUFFIX) and pattern.fullmatch(clip_key(p))
        ]

    def scratch_file(self):
        """An unlinked temporary file in the folder (same disk as the clips), gone when closed."""
        return tempfile.TemporaryFile(dir=self.dir, prefix=SCRATCH_PREFIX)

    # --- transcript.csv --------------------------------------------------------------------------
    def read_transcript(self) -> list[tuple[str, str]]:
        """Rows ``(key, text)`` in file order; see ``read_transcript``."""
        return read_transcript(self.transcript_path)

    def read_transcript_rows(self) -> list[tuple[str, str]]:
        """The transcript's rows in file order, duplicates included (empty when it does not exist yet)."""
        return self.read_transcript() if os.path.lexists(self.transcript_path) else []

    def read_rows(self) -> dict[str, str]:
        """The transcript as key -> text (empty when the file does not exist yet; a duplicated key shows
        its last row, and ``duplicate_keys`` names it)."""
        return dict(self.read_transcript_rows())

    def read_transcript_for_resume(self) -> list[tuple[str, str]]:
        """Rows of the transcript an interrupted run left (``[]`` when there is none)."""
        if not os.path.lexists(self.transcript_path):
            return []
        return read_transcript_for_resume(self.transcript_path)

    def write_transcript(self, rows: Iterable[tuple[str, str]]) -> Path:
        """Replace the transcript atomically, rows sorted by key: for a new file (a fixture, a first run).
        A transcript others may be writing is changed with ``update_transcript``."""
        return write_transcript(self.transcript_path, rows)

    def write_transcript_rows(self, rows: Iterable[tuple[str, str]]) -> Path:
        """Replace the transcript atomically, rows in the order given (duplicates kept)."""
        return write_transcript_rows(self.transcript_path, rows)

    def update_transcript(self, change: TranscriptChange) -> list[tuple[str, str]]:
        """Merge into the transcript as it is now, under the lock (``update_transcript``)."""
        return update_transcript(self.transcript_path, change)

    def sort_transcript(self) -> list[tuple[str, str]]:
        """The transcript sorted by key in place, as it is now (stable: duplicates kept, and named)."""
        rows = self.update_transcript(lambda rows: sorted(rows, key=lambda row: row[0]))
        if duplicates := duplicate_keys(rows):
            logger.warning(
                "%s: clips with several rows (kept; keep one by hand): %s",
                self.transcript_path,
                ", ".join(duplicates),
            )
        return rows

    def transcript_writer(self) -> TranscriptWriter:
        """Rows added one durable record at a time, never over a row someone wrote meanwhile."""
        return TranscriptWriter(self.transcript_path)

    # --- transcript_signals.jsonl ----------------------------------------------------------------
    def read_signals(self) -> dict[str, ClipSignals]:
        return read_signals(self.signals_path)

    def write_signals(self, signals: Mapping[str, ClipSignals]) -> None:
        """Replace the signals file atomically, records sorted by key."""
        _write_signals(self.signals_path, signals)

    def merge_signals(self, signals: Mapping[str, ClipSignals]) -> dict[str, ClipSignals]:
        """The signals file as it is now with ``signals`` applied over it, under the lock; returns the whole."""
        with writing(self.signals_path.parent):
            merged = {**self.read_signals(), **signals}
            _write_signals(self.signals_path, merged)
            return merged

    def signals_appender(self) -> SignalsAppender:
        return SignalsAppender(self.signals_path)

    # --- transcript_review.csv -------------------------------------------------------------------
    def write_review(self, rows: Sequence[ReviewRow]) -> Path:
        """Write the review atomically (header only when nothing was flagged, so stale lists never linger)."""
        with (
            writing(self.review_path.parent),
            atomic_output(self.review_path) as tmp,
            tmp.open("w", encoding=ENCODING, newline="") as f,
        ):
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(REVIEW_HEADER)
            writer.writerows(row.to_record() for row in rows)
        return self.review_path

    def read_review(self) -> list[ReviewRow]:
        """The review's rows in file order (riskiest first); empty when it does not exist."""
        path = self.review_path
        if not os.path.lexists(path):
            return []
        try:
            with io.StringIO(_read_text(path), newline="") as f:
                return [ReviewRow.from_row(row) for row in csv.DictReader(f) if row.get(KEY_COLUMN)]
        except (UnicodeDecodeError, csv.Error) as e:
            raise DatasetError(f"{path}: unreadable ({e}); run make transcribe again to rewrite it") from e

    # --- dataset_report.png, dataset_report.json -------------------------------------------------
    def write_report(self, draw: Callable[[Path], None]) -> Path:
        """``draw(tmp)`` writes the picture to a temporary path, which then replaces the report atomically."""
        with writing(self.dir), atomic_output(self.report_path) as tmp:
            draw(tmp)
        return self.report_path

    def write_report_inputs(self, inputs: Mapping) -> Path:
        """``dataset_report.json``: what the report shows that the folder's other files cannot give again
        (the speaker comparison transcribe made), so the report can be redrawn when exclusions change."""
        path = self.dir / REPORT_INPUTS_FILE
        with writing(self.dir):
            write_text_atomic(path, json.dumps(dict(inputs), allow_nan=False) + "\n")
        return path

    def read_report_inputs(self) -> dict | None:
        """``dataset_report.json`` (None when absent or unreadable: the report cannot be redrawn)."""
        path = self.dir / REPORT_INPUTS_FILE
        try:
            data = json.loads(_read_text(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, UsageError) as e:  # UsageError: a symlink out, not UTF-8
            logger.warning("%s unreadable (%s): the dataset report is not redrawn", path, e)
            return None
        return data if isinstance(data, dict) else None

    def report_is_stale(self) -> bool:
        """True when the exclusions, their decisions or the transcript changed after the report was drawn."""
        drawn = self.report_path.stat().st_mtime_ns
        inputs = (self.excluded_path, self.decisions_path, self.transcript_path)
        return any(p.is_file() and p.stat().st_mtime_ns > drawn for p in inputs)

    # --- excluded.csv ----------------------------------------------------------------------------
    def read_exclusions(self) -> dict[str, str]:
        """Clips a person left out of training: key -> reason (``{}`` when there is no ``excluded.csv``)."""
        path = self.excluded_path
        if not os.path.lexists(path):
            return {}
        return dict(_parse(path, _read_text(path), EXCLUDED_HEADER))

    def write_exclusions(self, exclusions: Mapping[str, str]) -> Path:
        """Replace ``excluded.csv`` atomically, sorted by key (removed when nothing is excluded), and record
        the decisions: a clip taken out of it is restored (``--exclude-flagged`` will not exclude it again).
        A file others may be changing is changed with ``update_exclusions``."""
        path = self.excluded_path
        with writing(self.dir):
            self._sync_decisions()  # first, what a person changed by hand since voicelab last looked
            if not exclusions:
                path.unlink(missing_ok=True)
            else:
                _write_pairs(path, EXCLUDED_HEADER, sorted((clip_key(k), r) for k, r in exclusions.items()))
            self._sync_decisions()
        return path

    def update_exclusions(self, change: Callable[[dict[str, str]], dict[str, str]]) -> dict[str, str]:
        """Change ``excluded.csv`` as it is now, under the lock (see ``update_transcript``); the decisions
        follow (``restored_clips``), so ``change`` may ask which clips a person restored."""
        with writing(self.dir):
            exclusions = self.read_exclusions()
            changed = change(dict(exclusions))
            if changed != exclusions:
                self.write_exclusions(changed)
            return changed

    # --- exclusion_decisions.csv -----------------------------------------------------------------
    @property
    def decisions_path(self) -> Path:
        return self.dir / DECISIONS_FILE

    def read_decisions(self) -> dict[str, str]:
        """key -> ``EXCLUDED`` or ``RESTORED`` (``{}`` without the file); see ``restored_clips``."""
        path = self.decisions_path
        if not os.path.lexists(path):
            return {}
        return dict(_parse(path, _read_text(path), DECISIONS_HEADER))

    def restored_clips(self) -> set[str]:
        """Clips a person put back after they had been excluded: a line deleted from ``excluded.csv`` (by
        hand, or Restore in the studio). An automatic flag must not exclude them again.

        Brings ``exclusion_decisions.csv`` up to date with ``excluded.csv`` as it is now (under the
        folder's lock, and only when it changes): a clip recorded as excluded that is no longer listed
        becomes restored; every listed clip is recorded as excluded (so a line added by hand and deleted
        later counts as a restore too).
        """
        decisions = self.read_decisions()
        if _decided(decisions, self.read_exclusions()) != decisions:
            decisions = self._sync_decisions()
        return {key for key, decision in decisions.items() if decision == RESTORED}

    def _sync_decisions(self) -> dict[str, str]:
        """The decisions brought up to date with ``excluded.csv`` as it is now, under the lock."""
        with writing(self.dir):
            decisions = self.read_decisions()
            updated = _decided(decisions, self.read_exclusions())
            if updated != decisions:
                _write_pairs(self.decisions_path, DECISIONS_HEADER, sorted(updated.items()))
            return updated

    # --- manifest.csv ----------------------------------------------------------------------------
    def read_manifest(self) -> list[ClipRecord]:
        return read_manifest(self.manifest_path)

    def write_manifest(self, records: Iterable[ClipRecord]) -> None:
        write_manifest(self.manifest_path, records)

    def update_manifest(self, source: str, records: Iterable[ClipRecord]) -> list[ClipRecord]:
        """The manifest as it is now with ``source``'s rows replaced by ``records``, under the lock;
        returns every row now in it."""
        with writing(self.dir):
            rows = [r for r in self.read_manifest() if r.source != source] + list(records)
            self.write_manifest(rows)
            return rows

    def remove_manifest(self) -> None:
        with writing(self.dir):
            self.manifest_path.unlink(missing_ok=True)

    def clip_sources(self) -> dict[str, str]:
        """Clip key -> source recording, from the manifest (``{}`` without one; ``ManifestError`` when
        it cannot be read)."""
        return {r.key: r.source for r in self.read_manifest()}

    # --- sources_left_out.csv --------------------------------------------------------------------
    def read_sources_left_out(self) -> dict[str, SourceLeftOut]:
        return _read_sources_left_out(self.sources_left_out_path)

    def write_sources_left_out(self, notes: Mapping[str, SourceLeftOut]) -> None:
        _write_sources_left_out(self.sources_left_out_path, notes)

    def update_sources_left_out(self, source: str, note: SourceLeftOut | None) -> None:
        """``sources_left_out.csv`` as it is now with ``source``'s note set (None: removed), under the lock."""
        with writing(self.dir):
            notes = self.read_sources_left_out()
            if note is None:
                if notes.pop(source, None) is None:
                    return
            else:
                notes[source] = note
            self.write_sources_left_out(notes)

    # --- source_voices.csv -----------------------------------------------------------------------
    @property
    def source_voices_path(self) -> Path:
        return self.dir / SOURCE_VOICES_FILE

    def read_source_voices(self) -> dict[str, SourceMinutes]:
        """Per-recording minutes by source (``{}`` when the file is absent or unreadable)."""
        return _read_source_voices(self.source_voices_path)

    def write_source_voices(self, rows: Mapping[str, SourceMinutes]) -> None:
        """Replace ``source_voices.csv`` atomically (removed when empty), under the lock."""
        _write_source_voices(self.source_voices_path, rows)

    def update_source_voices(self, row: SourceMinutes) -> None:
        """``source_voices.csv`` as it is now with ``row``'s recording set, under the lock."""
        with writing(self.dir):
            rows = self.read_source_voices()
            rows[row.source] = row
            self.write_source_voices(rows)

    # --- voice_print.json ------------------------------------------------------------------------
    @property
    def voice_print_path(self) -> Path:
        return self.dir / VOICE_PRINT_FILE

    def read_voice_print(self) -> tuple[list[float], float] | None:
        """The voice prepare-audio kept in an earlier run (``--reference`` or ``--speaker auto``) and its
        minutes then, or ``None``."""
        return _read_voice_print(self.voice_print_path)

    def write_voice_print(self, embedding: Iterable[float], minutes: float) -> None:
        """Save the kept voice print atomically (``{"embedding": [...256 floats], "minutes": m}``)."""
        body = {
            "embedding": [round(float(x), VOICE_PRINT_DECIMALS) for x in embedding],
            "minutes": round(minutes, 3),
        }
        with writing(self.dir):
            write_text_atomic(self.voice_print_path, json.dumps(body) + "\n")

    def remove_voice_print(self) -> None:
        with writing(self.dir):
            self.voice_print_path.unlink(missing_ok=True)

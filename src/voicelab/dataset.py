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
``dataset_report.json``    transcribe        the speaker comparison the report shows, to redraw it later
``excluded.csv``           a person/studio   ``filename,reason``: clips left out of training (text kept)
``exclusion_decisions.csv``  transcribe/studio  ``filename,decision``: which clips were excluded and which a
                                             person restored, so ``--exclude-flagged`` never undoes a restore
``sources_left_out.csv``   prepare-audio     recordings that failed or gave no clip, remembered until changed
``.snac_cache/``           train-lora        SNAC codes per clip, keyed by content
=========================  ================  =========================================================

A clip is named everywhere by its **key**, the file stem without ``.wav`` (``talk_003``): in
``transcript.csv``, ``manifest.csv``, ``excluded.csv`` and the review. Readers also accept ``talk_003.wav``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from voicelab.errors import UsageError
from voicelab.fileio import DurableAppender, atomic_output, write_text_atomic

logger = logging.getLogger(__name__)

CLIP_SUFFIX = ".wav"
TRANSCRIPT_FILE = "transcript.csv"
MANIFEST_FILE = "manifest.csv"
SIGNALS_FILE = "transcript_signals.jsonl"
REVIEW_FILE = "transcript_review.csv"
EXCLUDED_FILE = "excluded.csv"
DECISIONS_FILE = "exclusion_decisions.csv"
REPORT_FILE = "dataset_report.png"
REPORT_INPUTS_FILE = "dataset_report.json"
SOURCES_LEFT_OUT_FILE = "sources_left_out.csv"
CACHE_DIR = ".snac_cache"
ENCODING = "utf-8"
INDEX_DIGITS = 3
"""Clip keys are ``{stem}_{index:03d}`` (the guide's naming); indexes past 999 just grow wider."""

TRANSCRIPT_HEADER = ("filename", "text")
EXCLUDED_HEADER = ("filename", "reason")
DECISIONS_HEADER = ("filename", "decision")
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


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding=ENCODING)
    except UnicodeDecodeError as e:
        raise TranscriptFormatError(f"{path}: not UTF-8 text ({e}); save it as UTF-8") from e


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


def _write_pairs(path: Path, header: tuple[str, str], rows: Mapping[str, str]) -> Path:
    with atomic_output(path) as tmp, tmp.open("w", encoding=ENCODING, newline="") as f:
        f.write(format_row(*header))
        for key in sorted(rows):
            f.write(format_row(key, rows[key]))
    return path


def write_transcript(path: Path | str, rows: Iterable[tuple[str, str]]) -> Path:
    """Write the whole transcript atomically, rows sorted by key (last one wins on duplicates)."""
    return _write_pairs(Path(path), TRANSCRIPT_HEADER, {clip_key(k): t for k, t in rows})


class TranscriptAppender(DurableAppender):
    """Appends rows to an existing transcript, each one durable (flush + fsync) before the next.

    The file is a valid CSV after every row, so a crash loses at most the row being written.
    """

    def __init__(self, path: Path | str):
        super().__init__(path, encoding=ENCODING)

    def append(self, filename: str, text: str) -> None:
        # One write per record: a partial record can only be the last one (see read_transcript_for_resume).
        self.write(format_row(clip_key(filename), text))


# -------------------------------------------------------------------------------------- excluded.csv


def read_exclusions(dataset_dir: Path | str) -> dict[str, str]:
    """Clips a person left out of training: key -> reason (``{}`` when there is no ``excluded.csv``)."""
    path = Path(dataset_dir) / EXCLUDED_FILE
    if not path.exists():
        return {}
    return dict(_parse(path, _read_text(path), EXCLUDED_HEADER))


def write_exclusions(dataset_dir: Path | str, exclusions: Mapping[str, str]) -> Path:
    """Replace ``excluded.csv`` atomically (removed when nothing is excluded), and record the decisions:
    a clip taken out of it is restored (``--exclude-flagged`` will not exclude it again)."""
    restored_clips(dataset_dir)  # first, what a person changed by hand since voicelab last looked
    path = Path(dataset_dir) / EXCLUDED_FILE
    if not exclusions:
        path.unlink(missing_ok=True)
    else:
        _write_pairs(path, EXCLUDED_HEADER, {clip_key(k): r for k, r in exclusions.items()})
    _sync_decisions(dataset_dir, {clip_key(k) for k in exclusions})
    return path


# ---------------------------------------------------------------------------- exclusion_decisions.csv


def read_decisions(dataset_dir: Path | str) -> dict[str, str]:
    """key -> ``EXCLUDED`` or ``RESTORED`` (``{}`` without the file); see ``restored_clips``."""
    path = Path(dataset_dir) / DECISIONS_FILE
    if not path.exists():
        return {}
    return dict(_parse(path, _read_text(path), DECISIONS_HEADER))


def restored_clips(dataset_dir: Path | str) -> set[str]:
    """Clips a person put back after they had been excluded: a line deleted from ``excluded.csv`` (by
    hand, or Restore in the studio). An automatic flag must not exclude them again.

    Brings ``exclusion_decisions.csv`` up to date with ``excluded.csv`` as it is now: a clip recorded as
    excluded that is no longer listed becomes restored; every listed clip is recorded as excluded (so a
    line added by hand and deleted later counts as a restore too).
    """
    return {
        k for k, d in _sync_decisions(dataset_dir, set(read_exclusions(dataset_dir))).items() if d == RESTORED
    }


def _sync_decisions(dataset_dir: Path | str, excluded: set[str]) -> dict[str, str]:
    decisions = read_decisions(dataset_dir)
    updated = {k: (RESTORED if d == EXCLUDED and k not in excluded else d) for k, d in decisions.items()}
    updated.update(dict.fromkeys(excluded, EXCLUDED))
    if updated != decisions:
        _write_pairs(Path(dataset_dir) / DECISIONS_FILE, DECISIONS_HEADER, updated)
    return updated


# ------------------------------------------------------------------------------- dataset_report.json


def write_report_inputs(dataset_dir: Path | str, inputs: Mapping) -> Path:
    """``dataset_report.json``: what the report shows that the folder's other files cannot give again."""
    path = Path(dataset_dir) / REPORT_INPUTS_FILE
    write_text_atomic(path, json.dumps(dict(inputs), allow_nan=False) + "\n")
    return path


def read_report_inputs(dataset_dir: Path | str) -> dict | None:
    """``dataset_report.json`` (None when absent or unreadable: the report cannot be redrawn)."""
    path = Path(dataset_dir) / REPORT_INPUTS_FILE
    try:
        data = json.loads(path.read_text(encoding=ENCODING))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        logger.warning("%s unreadable (%s): the dataset report is not redrawn", path, e)
        return None
    return data if isinstance(data, dict) else None


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
    if not path.exists():
        return []
    expected = ClipRecord.field_names()
    with path.open(newline="", encoding=ENCODING) as f:
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
    """Recordings left out by earlier runs, by source key (``{}`` when none; an unreadable file is ignored)."""
    path = Path(dataset_dir) / SOURCES_LEFT_OUT_FILE
    if not path.exists():
        return {}
    try:
        with path.open(newline="", encoding=ENCODING) as f:
            return {
                row["source"]: SourceLeftOut(
                    row["source"], int(row["size"]), int(row["mtime_ns"]), row["reason"]
                )
                for row in csv.DictReader(f)
            }
    except (OSError, KeyError, TypeError, ValueError, csv.Error) as e:
        logger.warning("%s unreadable (%s): every recording not in the manifest is tried again", path, e)
        return {}


def write_sources_left_out(dataset_dir: Path | str, notes: Mapping[str, SourceLeftOut]) -> None:
    """Replace ``sources_left_out.csv`` atomically (removed when nothing is left out)."""
    path = Path(dataset_dir) / SOURCES_LEFT_OUT_FILE
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

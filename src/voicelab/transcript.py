"""transcript.csv: the dataset's text, one row per clip, read by training and written by transcription.

Format (the user's guide, "Transcribe Clips"): UTF-8 CSV, header ``filename,text``, ``filename`` is the
clip's stem (``clip_000`` for ``clip_000.wav``), standard CSV quoting for commas, quotes and newlines.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterable
from pathlib import Path

from voicelab.fileio import DurableAppender, atomic_output

logger = logging.getLogger(__name__)

HEADER = ("filename", "text")
ENCODING = "utf-8"
_WHITESPACE_RUN = re.compile(r"\s+")


class TranscriptFormatError(ValueError):
    """A transcript file that is not a ``filename,text`` CSV; the message names the file and the fix."""


def normalize_text(text: str) -> str:
    """Trim and collapse every whitespace run (newlines and tabs included) to one space."""
    return _WHITESPACE_RUN.sub(" ", text).strip()


def format_row(filename: str, text: str) -> str:
    """One CSV record, newline-terminated, quoted where needed (commas, quotes, newlines)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow((filename, text))
    return buf.getvalue()


def _parse(path: Path, content: str) -> list[tuple[str, str]]:
    # strict: an unterminated quote (a row cut short) is an error, not a silently shortened text.
    reader = csv.reader(io.StringIO(content, newline=""), strict=True)
    try:
        return _parse_records(path, reader)
    except csv.Error as e:
        raise TranscriptFormatError(
            f"{path}: line {reader.line_num}: malformed CSV ({e}); check the quotes on that row"
        ) from e


def _parse_records(path: Path, reader) -> list[tuple[str, str]]:
    header = next(reader, None)
    if header is None:
        raise TranscriptFormatError(f"{path}: file is empty; expected a CSV with header 'filename,text'")
    if tuple(h.strip().lstrip("\ufeff") for h in header) != HEADER:
        raise TranscriptFormatError(
            f"{path}: header is {','.join(header)!r}, expected 'filename,text' "
            "(fix the first line, or point at the right file)"
        )
    rows = []
    for record in reader:
        if not record:
            continue  # blank line
        if len(record) != len(HEADER):
            raise TranscriptFormatError(
                f"{path}: line {reader.line_num} has {len(record)} fields, expected 2 (filename,text); "
                "quote a text that contains commas"
            )
        rows.append((record[0].strip(), record[1]))
    return rows


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding=ENCODING)
    except UnicodeDecodeError as e:
        raise TranscriptFormatError(f"{path}: not UTF-8 text ({e}); save it as UTF-8") from e


def read_transcript(path: Path | str) -> list[tuple[str, str]]:
    """Rows ``(filename, text)`` of a transcript CSV, in file order.

    Raises ``FileNotFoundError`` if absent and ``TranscriptFormatError`` (naming the file) for a wrong
    header, a row without exactly two fields, or bytes that are not UTF-8.
    """
    path = Path(path)
    return _parse(path, _read_text(path))


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
    return _parse(path, content)


def write_transcript(path: Path | str, rows: Iterable[tuple[str, str]]) -> Path:
    """Write the whole transcript atomically, rows sorted by filename (last one wins on duplicates)."""
    path = Path(path)
    by_name = dict(rows)
    with atomic_output(path) as tmp, tmp.open("w", encoding=ENCODING, newline="") as f:
        f.write(format_row(*HEADER))
        for name in sorted(by_name):
            f.write(format_row(name, by_name[name]))
    return path


class TranscriptAppender(DurableAppender):
    """Appends rows to an existing transcript, each one durable (flush + fsync) before the next.

    The file is a valid CSV after every row, so a crash loses at most the row being written.
    """

    def __init__(self, path: Path | str):
        super().__init__(path, encoding=ENCODING)

    def append(self, filename: str, text: str) -> None:
        # One write per record: a partial record can only be the last one (see read_transcript_for_resume).
        self.write(format_row(filename, text))

"""transcript.csv format: what training reads and what transcription writes."""

from __future__ import annotations

import csv

import pytest

from voicelab.dataset import (
    LOCK_FILE,
    TranscriptFormatError,
    TranscriptWriter,
    format_row,
    normalize_text,
    read_transcript,
    read_transcript_for_resume,
    write_transcript,
)

TRICKY = [
    ("clip_000", "this is what was spoken in the first clip"),
    ("clip_001", 'she said "no, never" then left'),
    ("clip_002", "commas, more commas, and an apostrophe's end"),
    ("clip_003", "a line\nbreak inside"),
    ("clip_004", "ünïcödé — “curly” quotes 日本語"),
]


def test_guide_example_is_written_byte_for_byte(tmp_path):
    path = write_transcript(
        tmp_path / "transcript.csv",
        [("clip_001", "another sentence from the second clip"), ("clip_000", TRICKY[0][1])],
    )
    assert path.read_bytes() == (
        b"filename,text\n"
        b"clip_000,this is what was spoken in the first clip\n"
        b"clip_001,another sentence from the second clip\n"
    )


def test_tricky_text_round_trips_through_writer_and_standard_csv_reader(tmp_path):
    path = write_transcript(tmp_path / "t.csv", reversed(TRICKY))
    assert read_transcript(path) == TRICKY  # sorted by filename, text unchanged
    with path.open(encoding="utf-8", newline="") as f:
        assert [tuple(r) for r in csv.reader(f)][1:] == TRICKY  # any CSV reader agrees
    assert '"she said ""no, never"" then left"' in path.read_text(encoding="utf-8")


def test_format_row_quotes_only_when_needed():
    assert format_row("a", "plain words") == "a,plain words\n"
    assert format_row("a", "x, y") == 'a,"x, y"\n'


def test_normalize_text_trims_and_collapses_whitespace():
    assert normalize_text("  Hello\tthere,\n\n  how   are you?  ") == "Hello there, how are you?"
    assert normalize_text(" \n\t ") == ""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("file,transcription\nclip_000,hi\n", "header"),
        ("", "empty"),
        ("filename,text\nclip_000,hi,there\n", "line 2"),
        ('filename,text\nclip_000,"unterminated\n', "quotes"),
    ],
)
def test_bad_files_are_refused_with_the_file_named(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TranscriptFormatError) as err:
        read_transcript(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_non_utf8_file_is_refused(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("filename,text\nclip_000,caf\xe9\n".encode("latin-1"))
    with pytest.raises(TranscriptFormatError, match="UTF-8"):
        read_transcript(path)


def test_excel_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text("\ufefffilename,text\nclip_000,hi\n", encoding="utf-8")
    assert read_transcript(path) == [("clip_000", "hi")]


def test_appender_leaves_a_valid_csv_after_every_row(tmp_path):
    path = write_transcript(tmp_path / "t.csv", [])
    out = TranscriptWriter(path)
    for i, (name, text) in enumerate(TRICKY, 1):
        assert out.add(name, text)
        assert read_transcript(path) == TRICKY[:i]


def test_resume_reader_drops_only_a_record_cut_short(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('filename,text\nclip_000,whole row\nclip_001,"cut sho', encoding="utf-8")
    assert read_transcript_for_resume(path) == [("clip_000", "whole row")]
    with pytest.raises(TranscriptFormatError, match="line 3"):
        read_transcript(path)  # the strict reader (training) does not guess


def test_write_is_atomic_on_failure(tmp_path):
    path = write_transcript(tmp_path / "t.csv", [("clip_000", "kept")])

    def rows():
        yield ("clip_001", "new")
        raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        write_transcript(path, rows())
    assert read_transcript(path) == [("clip_000", "kept")]
    assert [p.name for p in tmp_path.iterdir() if p.name != LOCK_FILE] == ["t.csv"]  # no temporary left

"""export-dataset: a prepared dataset as a Hugging Face audiofolder that `datasets` loads offline."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO
from voicelab import dataset, orpheus
from voicelab.audio import write_wav
from voicelab.cli import export_dataset
from voicelab.hf_export import METADATA_FILE

SR = orpheus.SAMPLE_RATE
TEXTS = {
    "talk_000": 'She said "Stop!", and ran.',
    "talk_001": "Hello there, how are you?",
    "talk_002": "",  # no speech found: training skips it, so does the export
    "talk_003": "Left out by a person.",
    "talk_004": "A row whose clip was deleted.",
}


@pytest.fixture
def prepared(tmp_path):
    folder = tmp_path / "prepared" / "alice"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, key in enumerate(TEXTS):
        if key != "talk_004":
            write_wav(folder / f"{key}.wav", rng.uniform(-0.5, 0.5, SR * (i + 1)).astype(np.float32), SR)
    dataset.write_transcript(folder / dataset.TRANSCRIPT_FILE, TEXTS.items())
    dataset.write_exclusions(folder, {"talk_003": "mumbled"})
    return folder


def test_export_loads_with_datasets_offline_and_decodes_every_clip(prepared, tmp_path, monkeypatch, capsys):
    """The README's claim as a user meets it: ``load_dataset("audiofolder")`` with the packages
    ``make install`` installs (datasets and the torchcodec it decodes audio with), no network."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import
    out = tmp_path / "exports" / "alice"
    assert export_dataset.main([str(prepared), str(out)]) == 0
    printed = capsys.readouterr()
    assert "2 clips and metadata.csv exported; 3 transcript rows left out" in printed.out
    assert "not exported" not in printed.err  # the rows left out are counted, not listed (-v lists them)
    loaded = datasets.load_dataset(
        "audiofolder", data_dir=str(out), cache_dir=str(tmp_path / "cache"), split="train"
    )
    assert loaded.column_names == ["audio", "text"]
    rows = {Path(row["audio"].metadata.path).name: row for row in loaded}
    assert sorted(rows) == ["talk_000.wav", "talk_001.wav"]
    for name, row in rows.items():
        assert row["text"] == TEXTS[name.removesuffix(".wav")]  # quotes and commas intact
        decoded = row["audio"].get_all_samples()
        expected, _ = sf.read(prepared / name, dtype="float32")
        assert decoded.sample_rate == SR
        np.testing.assert_allclose(decoded.data.numpy()[0], expected, atol=1 / 32768)
    assert not list(out.parent.glob(".export-*")), "no staging folder left behind"


def test_verbose_lists_each_row_left_out_and_why(prepared, tmp_path, caplog):
    assert export_dataset.main([str(prepared), str(tmp_path / "out"), "-v"]) == 0
    listed = caplog.text
    assert "talk_003 (excluded" in listed and "talk_002 (empty text)" in listed and "talk_004" in listed


def test_excluded_clips_come_back_on_request_and_the_column_can_be_renamed(prepared, tmp_path):
    out = tmp_path / "out"
    argv = [str(prepared), str(out), "--include-excluded", "--text-column", "transcription"]
    assert export_dataset.main(argv) == 0
    with (out / METADATA_FILE).open(newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [r["file_name"] for r in table] == ["talk_000.wav", "talk_001.wav", "talk_003.wav"]
    assert table[2]["transcription"] == TEXTS["talk_003"]


def test_existing_export_is_replaced_only_with_overwrite(prepared, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert export_dataset.main([str(prepared), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "keep.txt").exists()
    assert export_dataset.main([str(prepared), str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["metadata.csv", "talk_000.wav", "talk_001.wav"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no_transcript", "make transcribe"),
        ("into_dataset", "replace the dataset itself"),
        ("missing_dir", "dataset folder not found"),
        ("nothing_usable", "no clip to export"),
    ],
)
def test_bad_inputs_exit_2_naming_the_fix(prepared, tmp_path, capsys, case, message):
    source, out = prepared, tmp_path / "out"
    if case == "no_transcript":
        (prepared / dataset.TRANSCRIPT_FILE).unlink()
    elif case == "into_dataset":
        out = prepared
    elif case == "missing_dir":
        source = tmp_path / "nope"
    else:
        dataset.write_transcript(prepared / dataset.TRANSCRIPT_FILE, [("talk_002", "")])
    assert export_dataset.main([str(source), str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or out == prepared


def test_ctrl_c_leaves_no_partial_export(prepared, tmp_path, capsys, monkeypatch):
    import shutil

    copied = []

    def copy_then_interrupt(src, dst):
        if copied:
            raise KeyboardInterrupt
        copied.append(shutil.copyfile(src, dst))

    monkeypatch.setattr(shutil, "copy2", copy_then_interrupt)
    out = tmp_path / "exports" / "alice"
    assert export_dataset.main([str(prepared), str(out)]) == 130
    assert "nothing exported" in capsys.readouterr().err
    assert copied and list((tmp_path / "exports").iterdir()) == []


def test_console_command_is_declared():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["voicelab-export-dataset"] == "voicelab.cli.export_dataset:main"

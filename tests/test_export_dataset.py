"""export-dataset: a prepared dataset as a Hugging Face audiofolder that `datasets` loads offline."""

from __future__ import annotations

import csv

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


@pytest.fixture
def audio_feature_without_torchcodec(monkeypatch):
    """datasets >= 4 imports torchcodec's encoder even to store a file's path (it encodes only arrays).

    torchcodec's PyPI wheel is a CUDA build that does not load on this CPU machine, so when it is missing
    a module whose encoder refuses to run stands in for that import; the rows are read undecoded and the
    audio checked with soundfile. Users who want decoded arrays install torchcodec (and FFmpeg).
    """
    import importlib.util
    import sys
    import types

    import datasets  # noqa: F401  (first: it notes at import that torchcodec is unavailable, so never decodes)

    if importlib.util.find_spec("torchcodec") is None:

        class AudioEncoder:
            def __init__(self, *args, **kwargs):
                raise AssertionError("the export is files on disk: nothing should be encoded")

        encoders = types.ModuleType("torchcodec.encoders")
        encoders.AudioEncoder = AudioEncoder
        monkeypatch.setitem(sys.modules, "torchcodec", types.ModuleType("torchcodec"))
        monkeypatch.setitem(sys.modules, "torchcodec.encoders", encoders)


def _load(out_dir, cache_dir):
    import datasets

    loaded = datasets.load_dataset(
        "audiofolder", data_dir=str(out_dir), cache_dir=str(cache_dir), split="train"
    )
    return loaded.cast_column("audio", datasets.Audio(decode=False))


def test_export_loads_with_datasets_offline(
    prepared, tmp_path, monkeypatch, capsys, audio_feature_without_torchcodec
):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import
    out = tmp_path / "exports" / "alice"
    assert export_dataset.main([str(prepared), str(out)]) == 0
    assert "2 clips and metadata.csv exported; 3 transcript rows left out" in capsys.readouterr().out
    loaded = _load(out, tmp_path / "cache")
    assert loaded.column_names == ["audio", "text"]
    rows = {row["audio"]["path"].rsplit("/", 1)[-1]: row for row in loaded}
    assert sorted(rows) == ["talk_000.wav", "talk_001.wav"]
    for name, row in rows.items():
        assert row["text"] == TEXTS[name.removesuffix(".wav")]  # quotes and commas intact
        audio, rate = sf.read(out / name, dtype="float32")
        expected, _ = sf.read(prepared / name, dtype="float32")
        assert rate == SR and np.array_equal(audio, expected)
    assert not list(out.parent.glob(".export-*")), "no staging folder left behind"


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

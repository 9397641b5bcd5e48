"""train-lora data side: transcript reader, clip checks, batched SNAC encoding and its cache."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from voicelab import models, orpheus, testing
from voicelab.dataset import DatasetError
from voicelab.training import dataset as ds
from voicelab.training import snac_codec


def write_csv(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


# --- transcript ---------------------------------------------------------------------------------------
def test_transcript_rows_and_skips(tmp_path):
    path = write_csv(
        tmp_path / "t.csv",
        'filename,text\nclip1,Hello there.\nclip2,"Commas, quoted, are fine."\n'
        "clip3,   \n\nclip5.wav,With suffix.\n",
    )
    rows, skipped = ds.read_training_rows(path)
    assert [(r.key, r.text) for r in rows] == [
        ("clip1", "Hello there."),
        ("clip2", "Commas, quoted, are fine."),
        ("clip5", "With suffix."),
    ]
    assert {s.key: s.reason for s in skipped} == {"clip3": "empty text"}


def test_transcript_reads_what_transcribe_writes(tmp_path):
    """One CSV format for both steps: quotes, commas and newlines written by transcribe come back intact."""
    from voicelab.dataset import write_transcript

    path = write_transcript(tmp_path / "t.csv", [("b", 'Say "hi", then\nstop.'), ("a", "Plain.")])
    rows, skipped = ds.read_training_rows(path)
    assert [(r.key, r.text) for r in rows] == [("a", "Plain."), ("b", 'Say "hi", then\nstop.')]
    assert skipped == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name,transcript\nclip1,Hi\n", "expected 'filename,text'"),
        ("clip1,Hi\n", "expected 'filename,text'"),
        ("", "empty"),
        ("filename,text\nclip1,too,many\n", "line 2 has 3 fields, expected 2"),
        ("filename,text\na,One\nb,Two\na,Again\nb.wav,Also b\n", "duplicate filenames ['a', 'b']"),
    ],
)
def test_transcript_bad_files_raise(tmp_path, content, message):
    with pytest.raises(DatasetError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ds.read_training_rows(write_csv(tmp_path / "t.csv", content))


def test_transcript_missing_file_says_what_to_run(tmp_path):
    with pytest.raises(DatasetError, match="make transcribe"):
        ds.read_training_rows(tmp_path / "nope.csv")


def test_resolve_clips_skips_missing_and_escaping_names(tmp_path):
    (tmp_path / "here.wav").write_bytes(b"x")
    rows = [ds.TranscriptRow(n, "text") for n in ["here", "gone", "../here", ".hidden"]]
    clips, skipped = ds.resolve_clips(tmp_path, rows)
    assert [c.path for c in clips] == [tmp_path / "here.wav"]
    assert [s.key for s in skipped] == ["gone", "../here", ".hidden"]
    assert "gone.wav not found" in skipped[0].reason


def test_clip_audio_is_converted_to_24k_mono(tmp_path):
    stereo = testing.speech_like_noise([(0.5, 0.1)], 44_100, channels=2)
    sf.write(tmp_path / "s.wav", stereo, 44_100)
    audio = ds.load_clip_audio(ds.Clip("s", tmp_path / "s.wav", "t"))
    assert audio.ndim == 1 and audio.dtype == np.float32
    assert len(audio) == pytest.approx(0.6 * orpheus.SAMPLE_RATE, abs=2)


# --- SNAC encoding ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def snac(tiny_snac_dir):
    return models.load_snac(str(tiny_snac_dir))


def clips_of(seconds):
    return [
        testing.speech_like_noise([(s, 0.05)], orpheus.SAMPLE_RATE, seed=i)[:, 0]
        for i, s in enumerate(seconds)
    ]


def test_batched_codes_equal_one_at_a_time(snac):
    clips = clips_of([0.3, 0.9, 0.5, 1.4])
    batched = snac_codec.encode_batch(snac, clips)
    for clip, frames in zip(clips, batched, strict=True):
        assert frames.shape == (snac_codec.frames_for(len(clip)), orpheus.CODES_PER_FRAME)
        np.testing.assert_array_equal(frames, snac_codec.encode_batch(snac, [clip])[0])


def test_load_snac_offline_error_names_the_flag(tmp_path):
    with pytest.raises(models.ModelLoadError, match="--snac-model"):
        models.load_snac(str(tmp_path / "no-such-snac"))


def test_load_snac_refuses_a_codec_at_another_sample_rate(tmp_path):
    folder = testing.build_tiny_snac(tmp_path / "snac32k")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "sampling_rate": 32_000}))
    with pytest.raises(models.ModelLoadError, match=r"32000 Hz.*24000 Hz"):
        models.load_snac(str(folder))


def _copy_snac(source, target):
    target.mkdir(parents=True)
    for name in models.SNAC_CHECKPOINT_FILES:
        shutil.copyfile(source / name, target / name)
    return target


def test_fingerprint_is_the_checkpoint_files(tiny_snac_dir, tmp_path):
    """Same bytes anywhere: same key; any file changed, or another checkpoint: another key."""
    import torch

    key = snac_codec.checkpoint_fingerprint(str(tiny_snac_dir))
    assert key == snac_codec.checkpoint_fingerprint(str(_copy_snac(tiny_snac_dir, tmp_path / "copy")))
    other = testing.build_tiny_snac(tmp_path / "other", seed=1)
    assert snac_codec.checkpoint_fingerprint(str(other)) != key
    edited = _copy_snac(tiny_snac_dir, tmp_path / "edited")
    weights = torch.load(edited / models.SNAC_WEIGHTS_FILE)
    first = next(name for name, tensor in weights.items() if tensor.is_floating_point())
    weights[first].view(-1)[0] += 1e-3
    torch.save(weights, edited / models.SNAC_WEIGHTS_FILE)
    assert snac_codec.checkpoint_fingerprint(str(edited)) != key
    (edited / models.SNAC_CONFIG_FILE).unlink()
    assert snac_codec.checkpoint_fingerprint(str(edited)) is None, "an incomplete folder has no key"


def test_fingerprint_of_a_hub_id_reads_the_hub_cache_offline(tiny_snac_dir, tmp_path, monkeypatch):
    """A hub id's files are found in the local hub cache (the layout `hf download` leaves), no network."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "models--someone--snac_24khz"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    _copy_snac(tiny_snac_dir, repo / "snapshots" / "0123abcd")
    local = snac_codec.checkpoint_fingerprint(str(tiny_snac_dir))
    assert snac_codec.checkpoint_fingerprint("someone/snac_24khz") == local
    assert snac_codec.checkpoint_fingerprint("someone/not_downloaded") is None


def test_weights_fingerprint_depends_on_the_weights(snac, tmp_path):
    other = models.load_snac(str(testing.build_tiny_snac(tmp_path / "other", seed=1)))
    assert snac_codec.weights_fingerprint(snac) == snac_codec.weights_fingerprint(snac)
    assert snac_codec.weights_fingerprint(snac) != snac_codec.weights_fingerprint(other)


def test_cache_round_trip_and_damaged_entries(tmp_path):
    cache = snac_codec.CodeCache(tmp_path / "cache")
    frames = np.arange(3 * 7).reshape(3, 7) * 190 % orpheus.CODEBOOK_SIZE
    cache.put("ab" * 32, frames)
    np.testing.assert_array_equal(cache.get("ab" * 32, 3), frames)
    assert cache.get("cd" * 32, 3) is None
    assert cache.get("ab" * 32, 4) is None, "an entry of the wrong length is not trusted"
    assert not cache.path("ab" * 32).exists(), "...and is deleted so it gets recomputed"
    cache.put("ef" * 32, frames)
    cache.path("ef" * 32).write_bytes(b"not an npz")
    assert cache.get("ef" * 32, 3) is None
    assert not cache.path("ef" * 32).exists()
    assert not list((tmp_path / "cache").rglob(".*tmp*")), "no temporary files left behind"


def test_encode_clips_uses_cache_and_reports_unreadable(snac, tmp_path):
    from voicelab.audio import AudioDecodeError

    clips = clips_of([0.4, 0.7])
    cache = snac_codec.CodeCache(tmp_path)
    fp = snac_codec.weights_fingerprint(snac)
    errors = []

    def bad():
        raise AudioDecodeError("x.wav: cannot decode audio")

    items = [("a", lambda: clips[0]), ("bad", bad), ("b", lambda: clips[1])]
    first, stats = snac_codec.encode_clips(
        items, snac, fp, cache=cache, on_error=lambda n, e: errors.append(n), progress=False
    )
    assert (stats.encoded, stats.from_cache, stats.failed) == (2, 0, 1)
    assert errors == ["bad"] and set(first) == {"a", "b"}
    loads = []

    def load_model():
        loads.append(1)
        return snac

    # all cached: the codec is never loaded
    second, stats = snac_codec.encode_clips(
        items, None, fp, cache=cache, load_model=load_model, progress=False
    )
    assert (stats.encoded, stats.from_cache) == (0, 2) and loads == []
    # one miss: loaded once, for that clip only
    more = [*items, ("c", lambda: clips_of([0.5])[0])]
    _, stats = snac_codec.encode_clips(more, None, fp, cache=cache, load_model=load_model, progress=False)
    assert (stats.encoded, stats.from_cache) == (1, 2) and loads == [1]
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    _, stats = snac_codec.encode_clips(items[:1], snac, fp, cache=None, progress=False)
    assert stats.encoded == 1


def test_give_default_modes_follows_the_umask(tmp_path):
    """Files a writer made owner-only get what a plain open() would give under the current umask."""
    import os

    from voicelab.fileio import current_umask, give_default_modes

    (tmp_path / "sub").mkdir()
    for path in (tmp_path / "a.safetensors", tmp_path / "sub" / "b.json"):
        path.write_bytes(b"x")
        path.chmod(0o600)
    previous = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        give_default_modes(tmp_path)
    finally:
        os.umask(previous)
    assert {oct(p.stat().st_mode & 0o777) for p in tmp_path.rglob("*") if p.is_file()} == {oct(0o640)}

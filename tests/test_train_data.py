"""train-lora data side: transcript reader, clip checks, batched SNAC encoding and its cache."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from voicelab import orpheus, testing
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
    assert [(r.filename, r.text) for r in rows] == [
        ("clip1", "Hello there."),
        ("clip2", "Commas, quoted, are fine."),
        ("clip5", "With suffix."),
    ]
    assert {s.filename: s.reason for s in skipped} == {"clip3": "empty text"}


def test_transcript_reads_what_transcribe_writes(tmp_path):
    """One CSV format for both steps: quotes, commas and newlines written by transcribe come back intact."""
    from voicelab.dataset import write_transcript

    path = write_transcript(tmp_path / "t.csv", [("b", 'Say "hi", then\nstop.'), ("a", "Plain.")])
    rows, skipped = ds.read_training_rows(path)
    assert [(r.filename, r.text) for r in rows] == [("a", "Plain."), ("b", 'Say "hi", then\nstop.')]
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
    assert [s.filename for s in skipped] == ["gone", "../here", ".hidden"]
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
    return snac_codec.load_snac(str(tiny_snac_dir))


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
    with pytest.raises(snac_codec.SnacLoadError, match="--snac-model"):
        snac_codec.load_snac(str(tmp_path / "no-such-snac"))


def test_fingerprint_depends_on_model_and_weights(snac, tiny_snac_dir, tmp_path):
    other = snac_codec.load_snac(str(testing.build_tiny_snac(tmp_path / "other", seed=1)))
    a = snac_codec.model_fingerprint("m", snac)
    assert a == snac_codec.model_fingerprint("m", snac)
    assert a != snac_codec.model_fingerprint("other-id", snac)
    assert a != snac_codec.model_fingerprint("m", other)


def test_fingerprint_is_of_the_checkpoint_not_the_device_weights(snac, tiny_snac_dir):
    """Baking weight norm on another device may change last bits: the cache key must not follow them."""
    import torch
    from snac import SNAC

    as_stored = snac_codec.weights_digest(SNAC.from_pretrained(str(tiny_snac_dir)))
    assert getattr(snac, snac_codec.CHECKPOINT_DIGEST_ATTR) == as_stored
    before = snac_codec.model_fingerprint("m", snac)
    with torch.no_grad():  # what a GPU's baking could do: one weight a last bit off
        weight = next(p for p in snac.parameters() if p.dim() == 3)
        weight.view(-1)[0] = torch.nextafter(weight.view(-1)[0], torch.tensor(1.0))
    try:
        assert snac_codec.model_fingerprint("m", snac) == before
        assert snac_codec.weights_digest(snac) != as_stored
    finally:
        with torch.no_grad():
            weight.view(-1)[0] = torch.nextafter(weight.view(-1)[0], torch.tensor(-1.0))


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
    fp = snac_codec.model_fingerprint("m", snac)
    errors = []

    def bad():
        raise AudioDecodeError("x.wav: cannot decode audio")

    items = [("a", lambda: clips[0]), ("bad", bad), ("b", lambda: clips[1])]
    first, stats = snac_codec.encode_clips(
        items, snac, fp, cache=cache, on_error=lambda n, e: errors.append(n), progress=False
    )
    assert (stats.encoded, stats.from_cache, stats.failed) == (2, 0, 1)
    assert errors == ["bad"] and set(first) == {"a", "b"}
    second, stats = snac_codec.encode_clips(items, snac, fp, cache=cache, progress=False)
    assert (stats.encoded, stats.from_cache) == (0, 2)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    _, stats = snac_codec.encode_clips(items[:1], snac, fp, cache=None, progress=False)
    assert stats.encoded == 1

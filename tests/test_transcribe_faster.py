"""--backend faster-whisper on a tiny random CTranslate2 Whisper (skipped without the optional extra)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("faster_whisper")

from voicelab import testing
from voicelab import transcribe as tr
from voicelab.audio import read_audio
from voicelab.cli import transcribe as transcribe_cli
from voicelab.dataset import PreparedDataset, read_transcript
from voicelab.models.whisper import WhisperModelError
from voicelab.testing.whisper_ct2 import build_tiny_faster_whisper
from voicelab.transcribe import backends

pytestmark = pytest.mark.usefixtures("restore_torch_threads")


@pytest.fixture(scope="module")
def tiny_ct2_dir(tmp_path_factory):
    return build_tiny_faster_whisper(tmp_path_factory.mktemp("tiny_ct2") / "model")


@pytest.fixture(scope="module")
def fw_clips(speech_dir):
    folder = speech_dir / "fw_clips"
    for i, sentence in enumerate(["Good morning to you.", "Where is the station?", "It rained all night."]):
        testing.speak([sentence, 0.3 + 0.7 * i], folder / f"clip_{i:03d}.wav")  # distinct lengths
    return folder


@pytest.fixture(scope="module")
def transcriber(tiny_ct2_dir):
    options = tr.DecodeOptions(language="en", beam_size=1, temperatures=(0.0,))
    return tr.load_transcriber(
        "faster-whisper", str(tiny_ct2_dir), device="cpu", options=options, batch_size=3, threads=1
    )


def test_a_batch_gives_each_clip_its_own_transcript(fw_clips, transcriber, monkeypatch):
    audios = [read_audio(p, tr.WHISPER_SAMPLE_RATE)[0] for p in sorted(fw_clips.glob("*.wav"))]
    audios.append(np.zeros(tr.WHISPER_SAMPLE_RATE // 2, np.float32))  # a fourth, shorter one: two batches
    routed = []
    real = tr.summarize_segments

    def recording(segments):
        routed.append(list(segments))
        return real(segments)

    monkeypatch.setattr(backends, "summarize_segments", recording)
    batched = transcriber.transcribe_batch(audios)
    assert len(batched) == len(audios) and len(routed) == len(audios)
    lengths = sorted(len(a) / tr.WHISPER_SAMPLE_RATE for a in audios)
    assert min(np.diff(lengths)) > 0.1  # spans tell the clips apart
    # The random model says the same words for every clip, so check the routing on faster-whisper's own
    # timing: the segments handed to clip i span exactly clip i's audio.
    for audio, segments in zip(audios, routed, strict=True):
        assert segments, "the tiny model always emits text"
        span = segments[-1].end - segments[0].start
        assert span == pytest.approx(len(audio) / tr.WHISPER_SAMPLE_RATE, abs=0.02)
    assert all(r.text and r.avg_logprob is not None for r in batched)


def test_clip_longer_than_a_whisper_window_is_not_cut(transcriber, monkeypatch):
    long_clip = np.zeros(int((tr.WHISPER_WINDOW_S + 2) * tr.WHISPER_SAMPLE_RATE), np.float32)
    short_clip = np.zeros(tr.WHISPER_SAMPLE_RATE, np.float32)
    long_form, batched = [], []
    real_long_form, real_batched = transcriber.model.transcribe, transcriber.pipeline.transcribe

    def long_form_spy(audio, **kwargs):
        long_form.append(len(audio))
        return real_long_form(audio, **kwargs)

    def batched_spy(audio, **kwargs):
        batched.append((len(audio), kwargs["clip_timestamps"]))
        return real_batched(audio, **kwargs)

    monkeypatch.setattr(transcriber.model, "transcribe", long_form_spy)
    monkeypatch.setattr(transcriber.pipeline, "transcribe", batched_spy)
    results = transcriber.transcribe_batch([short_clip, long_clip])
    # The long clip went whole to the long-form decoder; the batch (cut at 30 s per chunk) got only the
    # short one, and each clip still has its own result, in order.
    assert long_form == [len(long_clip)]
    assert batched == [(len(short_clip), [{"start": 0.0, "end": 1.0}])]
    assert len(results) == 2 and all(r.text for r in results)


def test_same_files_as_the_default_backend(tmp_path, fw_clips, tiny_ct2_dir, capsys, fast_transcribe_flags):
    folder = tmp_path / "prepared"
    shutil.copytree(fw_clips, folder)
    args = [str(folder), "--backend", "faster-whisper", "--model", str(tiny_ct2_dir), "--batch-size", "2"]
    assert transcribe_cli.main([*args, "--device", "cpu", *fast_transcribe_flags]) == 0
    rows = read_transcript(folder / "transcript.csv")
    signals = PreparedDataset(folder).read_signals()
    assert set(signals) == {"clip_000", "clip_001", "clip_002"}
    assert [n for n, _ in rows] == sorted(n for n, s in signals.items() if s.text)
    for name, rec in signals.items():
        assert rec.duration_s == pytest.approx(sf.info(folder / f"{name}.wav").duration, abs=0.01)
    assert (folder / "transcript_review.csv").exists()
    assert "of 3 clips" in capsys.readouterr().out


def test_cuda_fallback_and_unknown_model(monkeypatch, tiny_ct2_dir, caplog, tmp_path):
    import ctranslate2

    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 0)
    options = tr.DecodeOptions()
    t = tr.load_transcriber("faster-whisper", str(tiny_ct2_dir), device="cuda", options=options, threads=1)
    assert t.model.model.device == "cpu"
    assert "CUDA is not available" in caplog.text
    with pytest.raises(WhisperModelError, match=r"distil-large-v3.*CTranslate2 model folder"):
        tr.load_transcriber("faster-whisper", "enormous", device="cpu", options=options)
    checkpoint_file = tmp_path / "model.pt"
    checkpoint_file.write_bytes(b"")
    with pytest.raises(WhisperModelError):
        tr.load_transcriber("faster-whisper", str(checkpoint_file), device="cpu", options=options)


def test_offline_download_failure_is_explained(monkeypatch, tmp_path, capsys, fw_clips):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("cannot reach the Hub and the files are not in the cache")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    folder = tmp_path / "prepared"
    shutil.copytree(fw_clips, folder)
    assert (
        transcribe_cli.main(
            [str(folder), "--backend", "faster-whisper", "--model", "small", "--device", "cpu"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "cannot be downloaded" in err and "--model /path/to/ctranslate2-model-folder" in err

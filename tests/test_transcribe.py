"""transcribe: the command end to end on a tiny random Whisper, plus resume and crash safety with a fake."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO
from voicelab import dataset, testing
from voicelab import transcribe as tr
from voicelab.cli import transcribe as transcribe_cli
from voicelab.dataset import read_transcript, write_transcript
from voicelab.testing import texts

SCRIPT = REPO / "scripts" / "transcribe.py"
pytestmark = pytest.mark.usefixtures("restore_torch_threads")


@pytest.fixture(scope="module")
def spoken_clips(speech_dir):
    """Two espeak-ng clips (22.05 kHz WAV, like real input at a rate Whisper must resample)."""
    folder = speech_dir / "transcribe_clips"
    for i, sentence in enumerate(texts.SENTENCES[:2]):
        testing.speak([sentence, 0.3], folder / f"clip_{i:03d}.wav")
    return folder


@pytest.fixture
def clips(tmp_path, spoken_clips):
    folder = tmp_path / "prepared"
    shutil.copytree(spoken_clips, folder)
    return folder


@pytest.fixture
def load_model_calls(monkeypatch):
    """Spy on the real whisper.load_model: records its arguments and still loads the model."""
    import whisper

    calls = []
    real = whisper.load_model

    def spy(name, *args, **kwargs):
        calls.append((name, kwargs.get("device")))
        return real(name, *args, **kwargs)

    monkeypatch.setattr(whisper, "load_model", spy)
    return calls


# --------------------------------------------------------------------------------- the real thing


def test_end_to_end_on_tiny_whisper(
    clips, tiny_whisper_path, load_model_calls, capsys, monkeypatch, fast_transcribe_flags
):
    import torch

    (clips / "broken.wav").write_bytes(b"RIFF not really a wav")
    (clips / "notes.txt").write_text("not audio")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    rc = transcribe_cli.main(
        [str(clips), "--model", str(tiny_whisper_path), "--device", "cuda", *fast_transcribe_flags]
    )

    assert rc == 1  # one unreadable clip: named, skipped, non-zero at the end
    out, err = capsys.readouterr()
    assert "broken.wav" in err
    # The real loader got the checkpoint path, once, on the CPU the fallback chose.
    assert load_model_calls == [(str(tiny_whisper_path), "cpu")]
    rows = read_transcript(clips / "transcript.csv")
    names = [name for name, _ in rows]
    assert names == sorted(names)
    assert set(names) <= {"clip_000", "clip_001"}  # stems, no extension
    assert all(text and text == " ".join(text.split()) for _, text in rows)  # trimmed, collapsed
    signals = dataset.PreparedDataset(clips).read_signals()
    assert set(signals) == {"clip_000", "clip_001"}  # every readable clip seen once
    assert len(rows) + sum(1 for s in signals.values() if not s.text) == 2  # rows + empties = clips
    for name, rec in signals.items():
        assert rec.duration_s == pytest.approx(sf.info(clips / f"{name}.wav").duration, abs=0.01)
        if rec.text:
            assert rec.avg_logprob is not None and 0.0 <= rec.no_speech_prob <= 1.0
    assert (clips / "transcript_review.csv").exists()
    assert (
        f"{len(rows)} rows; {len(rows)} new" in out
        and "1 unreadable" in out
        and "transcript_review.csv" in out
    )


def test_resume_transcribes_only_new_clips_with_the_real_model(
    clips, tiny_whisper_path, monkeypatch, fast_transcribe_flags
):
    import whisper

    out = clips / "transcript.csv"
    earlier = [("clip_000", 'Hello there, a "quoted", hand-fixed row')]
    write_transcript(out, earlier)
    seen = []
    real = whisper.transcribe

    def counting(model, audio, **kwargs):
        seen.append(audio.shape)
        assert audio.dtype == np.float32 and audio.ndim == 1  # an array in, no ffmpeg subprocess
        return real(model, audio, **kwargs)

    monkeypatch.setattr(whisper, "transcribe", counting)
    assert (
        transcribe_cli.main(
            [str(clips), "--model", str(tiny_whisper_path), "--device", "cpu", *fast_transcribe_flags]
        )
        == 0
    )
    new_clip_samples = round(sf.info(clips / "clip_001.wav").duration * tr.WHISPER_SAMPLE_RATE)
    assert seen == [(new_clip_samples,)]  # only the clip without a row
    rows = read_transcript(out)
    assert rows[:1] == earlier  # kept exactly as they were


def test_device_fallback_warns_once_and_runs_fp32(tiny_whisper_path, monkeypatch, caplog):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        transcriber = tr.load_transcriber(
            "openai-whisper", str(tiny_whisper_path), device="cuda", options=tr.DecodeOptions(), threads=1
        )
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "CUDA is not available" in warnings[0].getMessage()
    assert transcriber.fp16 is False
    assert next(transcriber.model.parameters()).device.type == "cpu"
    assert next(transcriber.model.parameters()).dtype == torch.float32


# ------------------------------------------------------------------------------------ bad input


def test_no_wav_files_exits_2(tmp_path, capsys):
    (tmp_path / "song.mp3").write_bytes(b"")
    assert transcribe_cli.main([str(tmp_path), "--model", "tiny"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "no .wav clips" in err and "prepare-audio" in err


def test_missing_folder_exits_2(tmp_path, capsys):
    assert transcribe_cli.main([str(tmp_path / "nope")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err


def test_unknown_model_lists_names_and_local_paths(clips, capsys):
    assert transcribe_cli.main([str(clips), "--model", "enormous", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "'enormous'" in err and "tiny" in err and "large-v3" in err and "turbo" in err
    assert "path to a local checkpoint file" in err
    assert not (clips / "transcript.csv").exists() or read_transcript(clips / "transcript.csv") == []


def test_offline_download_failure_explains_local_file(clips, tmp_path, monkeypatch, capsys):
    import urllib.error
    import urllib.request

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))  # nothing cached

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert transcribe_cli.main([str(clips), "--model", "base", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "cannot be downloaded" in err and "--model /path/to/base.pt" in err
    assert str(tmp_path / "empty-cache" / "whisper") in err
    assert "import whisper; whisper.load_model('base')" in err  # the command that caches it
    assert "Traceback" not in err


def test_model_typo_is_caught_even_when_nothing_is_left_to_do(clips, capsys):
    write_transcript(clips / "transcript.csv", [("clip_000", "a"), ("clip_001", "b")])
    assert transcribe_cli.main([str(clips), "--model", "medum"]) == 2
    assert "unknown Whisper model 'medum'" in capsys.readouterr().err


def test_folder_given_to_openai_whisper_points_at_the_other_backend(clips, tmp_path, capsys):
    assert transcribe_cli.main([str(clips), "--model", str(tmp_path)]) == 2
    assert "--backend faster-whisper" in capsys.readouterr().err


def test_corrupt_checkpoint_file_is_named(clips, tmp_path, capsys):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    assert transcribe_cli.main([str(clips), "--model", str(bad), "--device", "cpu"]) == 2
    assert f"{bad}: not a loadable Whisper checkpoint" in capsys.readouterr().err


def test_existing_output_with_wrong_header_is_not_overwritten(clips, capsys):
    out = clips / "transcript.csv"
    out.write_text("file,words\nclip_000,hello\n", encoding="utf-8")
    assert transcribe_cli.main([str(clips), "--model", "tiny"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "header" in err and "refusing to overwrite" in err
    assert out.read_text(encoding="utf-8") == "file,words\nclip_000,hello\n"


def test_unknown_language_exits_2(clips, capsys):
    assert transcribe_cli.main([str(clips), "--language", "klingon"]) == 2
    assert "unknown language 'klingon'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra",
    [
        ["--batch-size", "4"],
        ["--compute-type", "int8"],
        ["--beam-size", "0"],
        ["--temperature", "2"],
        ["--threads", "-1"],
    ],
)
def test_bad_flag_combinations_are_usage_errors(clips, extra):
    with pytest.raises(SystemExit) as exit_info:
        transcribe_cli.main([str(clips), *extra])
    assert exit_info.value.code == 2


def test_help_shows_flags_and_defaults():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], cwd=REPO, capture_output=True, text=True, check=True
    )
    for text in ("--output", "--model", "(default: medium)", "--language", "(default: en)", "--device"):
        assert text in proc.stdout
    assert (
        "(default: cuda)" in proc.stdout and "--overwrite" in proc.stdout and "faster-whisper" in proc.stdout
    )


def test_language_names_and_codes():
    assert tr.normalize_language("EN") == "en"
    assert tr.normalize_language("German") == "de"


def test_temperature_schedule_matches_whisper_cli():
    assert tr.temperature_schedule(0.0, 0.2) == pytest.approx((0.0, 0.2, 0.4, 0.6, 0.8, 1.0))
    assert tr.temperature_schedule(0.0, 0.0) == (0.0,)


# --------------------------------------------------------------------- resume and crash (fake model)


class FakeTranscriber:
    """Returns a fixed text per clip, recognised by its length in samples; can crash on demand."""

    batch_size = 1

    def __init__(self, texts_by_samples: dict[int, str], crash_at: int | None = None, output=None):
        self.texts = texts_by_samples
        self.crash_at = crash_at
        self.output = output
        self.calls = 0
        self.rows_seen = []

    def transcribe_batch(self, audios):
        results = []
        for audio in audios:
            self.calls += 1
            if self.output is not None:  # what a reader sees mid-run: always a valid CSV
                self.rows_seen.append(len(read_transcript(self.output)))
            if self.calls == self.crash_at:
                raise KeyboardInterrupt
            results.append(tr.ClipResult(self.texts[len(audio)], -0.2, 0.01, 1.2))
        return results


@pytest.fixture
def synthetic_clips(tmp_path):
    """Five clips of distinct lengths (1.0 s, 1.5 s, ... at 16 kHz) so the fake can tell them apart."""
    folder = tmp_path / "clips"
    folder.mkdir()
    texts = {}
    for i in range(5):
        n = tr.WHISPER_SAMPLE_RATE * (2 + i) // 2
        sf.write(folder / f"clip_{i:03d}.wav", np.zeros(n, np.float32), tr.WHISPER_SAMPLE_RATE)
        texts[n] = f"words of clip {i}, spoken" if i != 2 else ""  # clip 2: Whisper hears nothing
    return folder, texts


def run(folder, fake, overwrite=False):
    clips = dataset.find_clips(folder)
    out = folder / "transcript.csv"
    plan = tr.plan_resume(clips, out, overwrite=overwrite)
    return tr.transcribe_clips(clips, out, fake, plan, progress=False)


def test_empty_text_is_skipped_counted_and_not_retried(synthetic_clips):
    folder, texts = synthetic_clips
    summary = run(folder, FakeTranscriber(texts))
    assert (summary.transcribed, summary.empty, summary.kept) == (4, 1, 0)
    assert [n for n, _ in read_transcript(folder / "transcript.csv")] == [
        "clip_000",
        "clip_001",
        "clip_003",
        "clip_004",
    ]
    again = FakeTranscriber(texts)
    summary = run(folder, again)
    assert again.calls == 0 and summary.kept == 5
    review = (folder / "transcript_review.csv").read_text(encoding="utf-8")
    assert "clip_002" in review and "empty transcript" in review


def test_crash_keeps_every_finished_row_and_resume_does_the_rest(synthetic_clips):
    folder, texts = synthetic_clips
    out = folder / "transcript.csv"
    crashing = FakeTranscriber(texts, crash_at=4, output=out)
    with pytest.raises(KeyboardInterrupt):
        run(folder, crashing)
    assert crashing.rows_seen == [0, 1, 2, 2]  # valid after every row; clip 2 was empty
    assert [n for n, _ in read_transcript(out)] == ["clip_000", "clip_001"]

    resumed = FakeTranscriber(texts)
    summary = run(folder, resumed)
    assert resumed.calls == 2  # clips 3 and 4 only
    assert summary.kept == 3
    assert len(read_transcript(out)) == 4


def test_row_cut_short_by_power_loss_is_redone(synthetic_clips):
    folder, texts = synthetic_clips
    run(folder, FakeTranscriber(texts))
    out = folder / "transcript.csv"
    dataset.PreparedDataset.of_transcript(out).write_signals({})  # as if the signals never made it to disk
    content = out.read_text(encoding="utf-8")
    out.write_text(content[: content.rindex("spoken")], encoding="utf-8")  # last record half-written
    again = FakeTranscriber(texts)
    run(folder, again)
    assert again.calls == 2  # the cut clip_004, and the empty clip_002 (no record of it survived)
    assert dict(read_transcript(out))["clip_004"] == "words of clip 4, spoken"


def test_rows_are_kept_and_user_edits_survive_a_resume(synthetic_clips):
    folder, texts = synthetic_clips
    run(folder, FakeTranscriber(texts))
    out = folder / "transcript.csv"
    rows = dict(read_transcript(out))
    rows["clip_000"] = "Corrected by hand, thanks for watching"
    del rows["clip_001"]  # the user dropped a bad clip
    write_transcript(out, rows.items())
    again = FakeTranscriber(texts)
    run(folder, again)
    assert again.calls == 0
    assert dict(read_transcript(out)) == rows  # not silently altered by the review either
    review = (folder / "transcript_review.csv").read_text(encoding="utf-8")
    assert "clip_000" in review and "hallucination phrase" in review  # judged on the edited text
    assert "clip_001" not in review


def test_a_clip_replaced_under_its_old_name_is_transcribed_again(synthetic_clips, caplog):
    # prepare-audio --overwrite with other settings reuses names (talk_000.wav...) for new audio: the old
    # text must not be kept for it, or training learns the wrong words for that clip.
    folder, texts = synthetic_clips
    run(folder, FakeTranscriber(texts))
    n = tr.WHISPER_SAMPLE_RATE * 7 // 2  # 3.5 s: a length no other clip has
    sf.write(folder / "clip_001.wav", np.zeros(n, np.float32), tr.WHISPER_SAMPLE_RATE)
    again = FakeTranscriber({**texts, n: "the new words"})
    with caplog.at_level(logging.WARNING):
        summary = run(folder, again)
    assert again.calls == 1 and summary.changed == ["clip_001"] and summary.kept == 4
    assert dict(read_transcript(folder / "transcript.csv"))["clip_001"] == "the new words"
    assert "clip_001" in caplog.text and "changed" in caplog.text


def test_rows_of_clips_no_longer_there_are_kept_and_reported(synthetic_clips, capsys, caplog):
    folder, texts = synthetic_clips
    run(folder, FakeTranscriber(texts))
    (folder / "clip_003.wav").unlink()  # the user deleted a bad clip, or re-prepared with fewer clips
    # Nothing left to transcribe: no model is loaded, the name is only checked.
    with caplog.at_level(logging.WARNING):
        assert transcribe_cli.main([str(folder), "--model", "tiny", "--no-progress"]) == 0
    assert "clip_003" in dict(read_transcript(folder / "transcript.csv"))  # a hand-fixed row is not lost
    out = capsys.readouterr().out
    assert f"1 rows name clips not in {folder}" in out and "clip_003" in out
    assert "1 row(s) name clips that are not in" in caplog.text


def test_overwrite_transcribes_everything_again(synthetic_clips):
    folder, texts = synthetic_clips
    run(folder, FakeTranscriber(texts))
    again = FakeTranscriber(texts)
    summary = run(folder, again, overwrite=True)
    assert again.calls == 5 and summary.kept == 0 and summary.transcribed == 4


def test_summarize_segments_weights_by_tokens_and_keeps_the_worst():
    segments = [
        {
            "text": " Hello",
            "tokens": [1, 2, 3],
            "avg_logprob": -0.2,
            "no_speech_prob": 0.1,
            "compression_ratio": 1.0,
        },
        {
            "text": " there. ",
            "tokens": [4],
            "avg_logprob": -1.0,
            "no_speech_prob": 0.4,
            "compression_ratio": 2.0,
        },
    ]
    result = tr.summarize_segments(segments)
    assert result.text == "Hello there."
    assert result.avg_logprob == pytest.approx((3 * -0.2 + 1 * -1.0) / 4)
    assert (result.no_speech_prob, result.compression_ratio) == (0.4, 2.0)
    assert tr.summarize_segments([]) == tr.ClipResult("")

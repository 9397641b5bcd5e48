"""The work one clip can cost Whisper is capped: a model that loops (the tiny random one never stops on
its own) decodes at most 1 + --max-fallbacks times per window, each at most the tokens its audio can hold."""

from __future__ import annotations

import numpy as np
import pytest

from voicelab import transcribe as tr

pytestmark = pytest.mark.usefixtures("restore_torch_threads")
CLIP_S = 1.0


def test_a_looping_whisper_stops_after_the_capped_fallbacks_and_tokens(tiny_whisper_path):
    import torch
    import whisper

    torch.set_num_threads(1)
    model = whisper.load_model(str(tiny_whisper_path), device="cpu")
    decoded = []
    real_decode = model.decode

    def counting_decode(mel, options):
        result = real_decode(mel, options)
        decoded.append((options.temperature, options.sample_len, len(result.tokens)))
        return result

    model.decode = counting_decode
    options = tr.DecodeOptions(beam_size=1, temperatures=tr.temperature_schedule(0.0, 0.2, max_fallbacks=2))
    transcriber = tr.OpenAIWhisperTranscriber(model, "cpu", options)
    noise = np.random.default_rng(0).normal(0, 0.1, int(CLIP_S * tr.WHISPER_SAMPLE_RATE)).astype(np.float32)
    transcriber.transcribe_batch([noise])
    cap = tr.sample_len_for(CLIP_S)
    assert cap == tr.MIN_SAMPLE_LEN + CLIP_S * tr.MAX_TEXT_TOKENS_PER_SECOND < tr.WHISPER_SAMPLE_LEN
    assert [t for t, _, _ in decoded] == pytest.approx([0.0, 0.2, 0.4])  # 3 decodes, not Whisper's 6
    assert all(limit == cap and tokens <= cap for _, limit, tokens in decoded)
    assert max(tokens for _, _, tokens in decoded) == cap  # it did loop: the cap is what stopped it


def test_sample_len_grows_with_the_audio_up_to_whisper_s_limit():
    assert tr.sample_len_for(0.5) == tr.MIN_SAMPLE_LEN + 5
    assert tr.sample_len_for(13.0) == tr.MIN_SAMPLE_LEN + 130
    assert tr.sample_len_for(120.0) == tr.WHISPER_SAMPLE_LEN
    assert tr.temperature_schedule(0.0, 0.2, max_fallbacks=0) == (0.0,)


def test_without_a_terminal_transcribe_logs_a_progress_line_per_few_clips(tmp_path, caplog):
    """``make transcribe ... > log``: no bar to redraw, but a line every 5% of the clips."""
    import logging

    import soundfile as sf

    class Echo:
        batch_size = 1

        def transcribe_batch(self, audios):
            return [tr.ClipResult("words", -0.2, 0.01, 1.2) for _ in audios]

    for i in range(40):
        sf.write(tmp_path / f"clip_{i:03d}.wav", np.zeros(8000, dtype=np.float32), 16000)
    clips = sorted(tmp_path.glob("*.wav"))
    plan = tr.plan_resume(clips, tmp_path / "transcript.csv", overwrite=False)
    with caplog.at_level(logging.INFO, logger="voicelab.progress"):
        tr.transcribe_clips(clips, tmp_path / "transcript.csv", Echo(), plan, progress=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "voicelab.progress"]
    assert len(lines) == 20 and lines[0].startswith(
        "transcribing (audio min): 0.0/0.3 min (5%), clips 2/40, "
    )
    assert lines[-1].startswith("transcribing (audio min): 0.3/0.3 min (100%), clips 40/40, ")

"""Quality measures on real (espeak-ng) speech: speaker similarity, DNSMOS, speech rate; offline, CPU."""

from __future__ import annotations

import numpy as np
import pytest

from voicelab import quality
from voicelab.audio import read_audio
from voicelab.models import quality as quality_models
from voicelab.testing import speak

SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "She sells sea shells by the sea shore every summer morning.",
    "I would like a cup of coffee and a slice of cake, please.",
    "Tomorrow we travel north to see the mountains covered in snow.",
    "Please remember to lock the door when you leave the house.",
)
MAIN_VOICE = "en-us"
OTHER_VOICE = "en-us+f3"  # espeak-ng's female variant of the same language: a different speaker


def _clips(speech_dir, voice: str, sentences=SENTENCES) -> list[np.ndarray]:
    out = []
    for i, text in enumerate(sentences):
        path = speech_dir / f"quality_{voice.replace('+', '_')}_{i}.wav"
        if not path.exists():
            speak([text], path, voice=voice)
        out.append(read_audio(path, quality.SAMPLE_RATE)[0])
    return out


@pytest.fixture(scope="module")
def voices(speech_dir):
    return _clips(speech_dir, MAIN_VOICE), _clips(speech_dir, OTHER_VOICE, SENTENCES[:2])


def test_embeddings_are_unit_rows_and_rate_independent(voices):
    main, _ = voices
    emb = quality.speaker_embeddings(main, quality.SAMPLE_RATE)
    assert emb.shape == (len(main), quality.EMBEDDING_DIM) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # the same clip at 22.05 kHz gives (almost) the same voice print: resampling happens inside
    from voicelab.audio import resample

    again = quality.speaker_embeddings([resample(main[0], quality.SAMPLE_RATE, 22050)], 22050)
    assert float(again[0] @ emb[0]) > 0.98


def test_other_speaker_is_less_similar_to_the_dominant_voice(voices):
    main, other = voices
    emb = quality.speaker_embeddings([*main, *other], quality.SAMPLE_RATE)
    centroid = quality.dominant_speaker(emb)
    sims = quality.cosine_similarity(emb, centroid)
    assert sims[: len(main)].min() > sims[len(main) :].max() + 0.1
    # the centroid follows the majority: it is closer to the main voice's mean than the plain mean is
    plain = emb.mean(axis=0) / np.linalg.norm(emb.mean(axis=0))
    main_mean = emb[: len(main)].mean(axis=0)
    assert centroid @ main_mean > plain @ main_mean
    # reference clips instead of the centroid: the other voice is then the similar one
    by_ref = quality.cosine_similarity(emb, emb[len(main) :])
    assert by_ref[len(main) :].min() > by_ref[: len(main)].max()


def test_silent_clip_gives_a_zero_embedding_not_nan():
    emb = quality.speaker_embeddings([np.zeros(quality.SAMPLE_RATE, np.float32)], quality.SAMPLE_RATE)
    assert not np.isnan(emb).any()
    assert quality.cosine_similarity(emb, np.ones(quality.EMBEDDING_DIM))[0] == 0.0


def test_dominant_speaker_rejects_empty_input():
    with pytest.raises(ValueError, match="non-empty"):
        quality.dominant_speaker(np.zeros((0, quality.EMBEDDING_DIM)))


def test_dnsmos_drops_for_noise_and_for_a_tone_bed(voices):
    clean = voices[0][0]
    rng = np.random.default_rng(0)
    noisy = clean + 0.1 * rng.standard_normal(len(clean)).astype(np.float32)
    t = np.arange(len(clean)) / quality.SAMPLE_RATE
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3  # an A major chord
    bed = clean + (0.3 * chord).astype(np.float32)
    s_clean, s_noisy, s_bed = (quality.dnsmos(a, quality.SAMPLE_RATE) for a in (clean, noisy, bed))
    for score in (s_clean, s_noisy, s_bed):
        assert all(1.0 <= v <= 5.0 for v in (score.sig, score.bak, score.ovrl))
    assert s_noisy.bak < s_clean.bak - 1.0 and s_noisy.ovrl < s_clean.ovrl
    assert s_bed.ovrl < s_clean.ovrl


def test_dnsmos_refuses_silence():
    with pytest.raises(ValueError, match="silence"):
        quality.dnsmos(np.zeros(quality.SAMPLE_RATE, np.float32), quality.SAMPLE_RATE)


def test_models_are_loaded_once(voices, monkeypatch):
    quality.speaker_embeddings(voices[0][:1], quality.SAMPLE_RATE)
    built = []
    monkeypatch.setattr(quality_models, "_build_encoder", lambda device: built.append(device))
    quality.speaker_embeddings(voices[0][:1], quality.SAMPLE_RATE)
    assert built == []


def test_speech_rate_counts_words_over_speech_not_pauses(speech_dir):
    path = speech_dir / "quality_rate.wav"
    speak(["One two three four five six.", 2.0, "Seven eight nine ten."], path)
    audio = read_audio(path, quality.SAMPLE_RATE)[0]
    total = len(audio) / quality.SAMPLE_RATE
    spoken = quality.speech_seconds(audio, quality.SAMPLE_RATE)
    assert 1.0 < spoken < total - 1.5  # the 2 s pause is not speech
    rate = quality.speech_rate("One two three four five six. Seven eight nine ten.", spoken)
    assert rate == pytest.approx(10 / spoken)
    assert np.isnan(quality.speech_rate("words", 0.0))

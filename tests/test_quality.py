"""Quality measures on real (espeak-ng) speech: speaker similarity, DNSMOS, speech rate; offline, CPU."""

from __future__ import annotations

import numpy as np
import pytest

from voicelab import quality
from voicelab.audio import read_audio
from voicelab.models import quality as quality_models
from voicelab.testing import speak, texts

SENTENCES = texts.SENTENCES[:5]
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
    monkeypatch.setattr(quality_models, "resemblyzer_weights", lambda: built.append("weights"))
    quality.speaker_embeddings(voices[0][:1], quality.SAMPLE_RATE)
    assert built == []


def test_resemblyzers_weights_read_without_torch_are_torch_loads():
    """The legacy torch file is read with a restricted unpickler (no torch import): the same tensors."""
    torch = pytest.importorskip("torch")
    ours = quality_models.resemblyzer_weights()
    path = quality_models._package_file("resemblyzer", quality_models.RESEMBLYZER_WEIGHTS)
    theirs = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
    assert sorted(ours) == sorted(k for k in theirs if k.startswith(("lstm.", "linear.")))
    for name, value in ours.items():
        np.testing.assert_array_equal(value, theirs[name].numpy())


def test_a_file_that_is_not_a_float_tensor_file_is_refused(tmp_path):
    import pickle

    path = tmp_path / "evil.pt"
    with path.open("wb") as f:
        for header in (1, 1001, {}):
            pickle.dump(header, f)
        pickle.dump(print, f)  # a callable the reader must never resolve
    with pytest.raises(pickle.UnpicklingError, match=r"builtins\.print"):
        quality_models._read_legacy_torch_file(path)


def test_the_numpy_encoder_gives_the_torch_modules_prints(voices):
    """On the CPU the encoder runs in numpy (no torch import); on a GPU the torch module: same prints."""
    pytest.importorskip("torch")
    main, other = voices
    mels = [
        quality.voice_mels(a[: quality.SAMPLE_RATE * k])
        for a, k in zip([*main, *other], (1, 2, 3, 2, 1, 3, 2), strict=True)
    ]
    lengths = np.array([len(m) for m in mels])
    batch = np.zeros((len(mels), lengths.max(), quality_models.MEL_CHANNELS), np.float32)
    for row, m in enumerate(mels):
        batch[row, : len(m)] = m
    numpy_prints = quality_models.speaker_encoder("cpu")(batch, lengths)
    torch_prints = quality_models._build_torch_encoder("cpu")(batch, lengths)
    np.testing.assert_allclose(numpy_prints, torch_prints, atol=2e-6)


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


def test_dnsmos_in_our_session_gives_speechmos_sessions_scores(voices):
    """One ONNX thread, no P.808 model: the numbers of speechmos' own session (its default options) on
    the same 9 s windows, calibrated by speechmos."""
    from speechmos.dnsmos import DNSMOS

    clip = np.concatenate([voices[0][0], voices[0][1], voices[0][2]])  # over 9 s: several windows
    theirs = DNSMOS(
        str(quality_models._package_file("speechmos", *quality_models.DNSMOS_MODEL)),
        str(quality_models._package_file("speechmos", "dnsmos_models", "model_v8.onnx")),
    )
    window, hop = int(quality.DNSMOS_WINDOW_S * quality.SAMPLE_RATE), quality.SAMPLE_RATE
    raw = [
        theirs.onnx_sess.run(None, {"input_1": clip[None, s : s + window]})[0][0]
        for s in range(0, len(clip) - window + 1, hop)
    ]
    expected = np.mean([theirs.get_polyfit_val(*r, False) for r in raw], axis=0)
    ours = quality.dnsmos(clip, quality.SAMPLE_RATE)
    assert len(raw) > 1
    assert (ours.sig, ours.bak, ours.ovrl) == pytest.approx(tuple(expected), abs=1e-6)


def test_batched_dnsmos_gives_the_per_clip_scores(voices):
    """dnsmos_many scores every clip's windows in shared runs: the same numbers as one clip at a time."""
    main, _other = voices
    long_clip = np.concatenate([main[0], main[1], main[0]])  # over 9 s: several windows
    clips = [main[0], long_clip]
    batched = quality.dnsmos_many(clips, quality.SAMPLE_RATE)
    for clip, score in zip(clips, batched, strict=True):
        alone = quality.dnsmos(clip, quality.SAMPLE_RATE)
        assert score.sig == pytest.approx(alone.sig, abs=1e-4)
        assert score.bak == pytest.approx(alone.bak, abs=1e-4)
        assert score.ovrl == pytest.approx(alone.ovrl, abs=1e-4)
    with pytest.raises(ValueError, match="clip 1 is silence"):
        quality.dnsmos_many([main[0], np.zeros(quality.SAMPLE_RATE, np.float32)], quality.SAMPLE_RATE)


def test_window_embeddings_of_a_whole_clip_match_the_encoder_on_its_mel(voices):
    """prepare-audio's window prints and transcribe's clip prints come from one encoder: a window over a
    whole 1.6 s partial gives that partial's print."""
    main, _other = voices
    clip = main[0][: quality.SAMPLE_RATE * 2]
    partials = quality._partial_mels(clip)
    window = quality.embed_mel_windows([partials[0]])[0]
    direct = quality_models.speaker_encoder("cpu")(partials[:1])[0]
    np.testing.assert_allclose(window, direct, atol=1e-5)


def test_the_numpy_mel_is_librosas(voices):
    """quality.mel_frames replaces librosa's melspectrogram (its import costs seconds): same numbers."""
    librosa = pytest.importorskip("librosa")
    clip = voices[0][0]
    ours = quality.mel_frames(clip)
    theirs = librosa.feature.melspectrogram(
        y=clip, sr=quality.SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=quality.MEL_CHANNELS
    ).T
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6 * float(theirs.max()))

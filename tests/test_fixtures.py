"""The offline fixtures load through the same public calls users make with real weights."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from voicelab import orpheus, testing


def test_tiny_orpheus_loads_like_the_real_checkpoint(tiny_orpheus_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_orpheus_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_orpheus_dir)
    assert model.config.vocab_size == orpheus.VOCAB_SIZE
    assert model.config.tie_word_embeddings
    assert tokenizer.convert_tokens_to_ids("<|begin_of_text|>") == orpheus.BEGIN_OF_TEXT
    assert tokenizer.convert_tokens_to_ids("<|eot_id|>") == orpheus.END_OF_TEXT
    for n, expected in (
        (1, orpheus.START_OF_SPEECH),
        (2, orpheus.END_OF_SPEECH),
        (7, orpheus.PAD),
        (10, orpheus.AUDIO_TOKEN_BASE),
    ):
        assert tokenizer.convert_tokens_to_ids(f"<custom_token_{n}>") == expected
    ids = tokenizer("hello")["input_ids"]
    assert ids[0] == orpheus.BEGIN_OF_TEXT  # BOS prepended, as the Llama-3 tokenizer does
    assert tokenizer.decode(ids, skip_special_tokens=True) == "hello"
    assert tokenizer.decode([orpheus.AUDIO_TOKEN_BASE]) == "<custom_token_10>"


def test_tiny_snac_loads_and_has_the_24khz_strides(tiny_snac_dir):
    import torch
    from snac import SNAC

    model = SNAC.from_pretrained(str(tiny_snac_dir)).eval()
    audio = torch.zeros(1, 1, orpheus.SAMPLES_PER_FRAME * 5)
    with torch.inference_mode():
        codes = model.encode(audio)
        decoded = model.decode(codes)
    assert [c.shape[-1] for c in codes] == [5, 10, 20]
    assert decoded.shape[-1] == orpheus.frames_to_samples(5)


def test_real_size_snac_config_loads(real_size_snac_dir):
    from snac import SNAC

    model = SNAC.from_pretrained(str(real_size_snac_dir))
    n_params = sum(p.numel() for p in model.parameters())
    assert 19e6 < n_params < 21e6  # snac_24khz has 19.8 M parameters


def test_tiny_whisper_loads_through_load_model(tiny_whisper_path):
    import torch
    import whisper

    model = whisper.load_model(str(tiny_whisper_path), device="cpu")
    saved = torch.load(tiny_whisper_path, map_location="cpu")["model_state_dict"]
    assert (model.dims.n_audio_layer, model.dims.n_text_layer) == (2, 2)
    assert model.is_multilingual  # language="en" is accepted, as with the real multilingual checkpoints
    assert all(torch.equal(value, saved[name]) for name, value in model.state_dict().items())
    result = model.transcribe(
        np.zeros(16000, dtype=np.float32),
        language="en",
        temperature=0.0,
        fp16=False,
        condition_on_previous_text=False,
    )
    assert result["language"] == "en" and result["segments"]
    # The decoder's positional embedding is initialised (torch.empty would give NaN logits).
    assert all(np.isfinite(s["avg_logprob"]) for s in result["segments"])


def test_espeak_speech_has_the_pauses_asked_for(speech_dir):
    path = testing.speak(["Hello there.", 1.0, "How are you today?"], speech_dir / "pause.wav")
    audio, rate = sf.read(path)
    frame = rate // 100  # 10 ms
    rms = np.sqrt(np.mean(audio[: len(audio) // frame * frame].reshape(-1, frame) ** 2, axis=1))
    silent = rms < 10 ** (-50 / 20)
    longest, run = 0, 0
    for s in silent:
        run = run + 1 if s else 0
        longest = max(longest, run)
    assert 0.9 <= longest / 100 <= 1.1


def test_speech_like_noise_is_deterministic():
    a = testing.speech_like_noise([(1.0, 0.5)], 16000, channels=2)
    b = testing.speech_like_noise([(1.0, 0.5)], 16000, channels=2)
    assert a.shape == (24000, 2)
    np.testing.assert_array_equal(a, b)

"""A tiny random Whisper in CTranslate2 format, for faster-whisper, built offline.

``faster_whisper.WhisperModel(folder)`` loads it exactly as it loads a downloaded model folder
(``model.bin``, ``config.json``, ``tokenizer.json``, ``preprocessor_config.json``). Its transcripts are
garbage: assert on structure, never on words. Needs ``ctranslate2`` (the faster-whisper extra).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

# The multilingual openai-whisper layout (same token ids as every real multilingual model).
N_MELS = 80
N_VOCAB = 51_865  # 50,257 byte-level BPE tokens + 1,608 specials (languages, tasks, 1,501 timestamps)
N_AUDIO_CTX = 1_500  # 30 s of 10 ms frames, halved by the encoder's stride-2 convolution
N_TEXT_CTX = 448
WIDTH = 64
LAYERS = 2
HEADS = 2


def _whisper_tokenizer_json(out_file: Path) -> None:
    """tokenizer.json with openai-whisper's bundled multilingual BPE and its special tokens at their real ids."""
    import whisper.tokenizer as wt
    from tokenizers import AddedToken
    from transformers.convert_slow_tokenizer import TikTokenConverter

    encoding = wt.get_encoding("multilingual")
    vocab_file = Path(wt.__file__).parent / "assets" / "multilingual.tiktoken"
    tok = TikTokenConverter(vocab_file=str(vocab_file)).converted()
    specials = sorted(encoding._special_tokens.items(), key=lambda kv: kv[1])
    # Added in id order, each lands on the next free id: the same ids the model was trained with.
    tok.add_special_tokens([AddedToken(name, special=True, normalized=False) for name, _ in specials])
    for name, expected in specials:
        got = tok.token_to_id(name)
        if got != expected:  # pragma: no cover - guards the recipe itself
            raise RuntimeError(f"tiny Whisper tokenizer put {name} at {got}, expected {expected}")
    tok.save(str(out_file))


def build_tiny_faster_whisper(
    out_dir: Path | str, *, seed: int = 0, favoured_tokens: Sequence[int] = ()
) -> Path:
    """A 2-layer random Whisper converted to CTranslate2 in ``out_dir`` (float32, ~15 MB).

    ``favoured_tokens``: the model says the first of them that decoding does not suppress, at every step.
    """
    import ctranslate2
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    config = WhisperConfig(
        vocab_size=N_VOCAB,
        num_mel_bins=N_MELS,
        d_model=WIDTH,
        encoder_layers=LAYERS,
        decoder_layers=LAYERS,
        encoder_attention_heads=HEADS,
        decoder_attention_heads=HEADS,
        encoder_ffn_dim=4 * WIDTH,
        decoder_ffn_dim=4 * WIDTH,
        max_source_positions=N_AUDIO_CTX,
        max_target_positions=N_TEXT_CTX,
        decoder_start_token_id=50_258,  # <|startoftranscript|>
        eos_token_id=50_257,  # <|endoftext|>
        pad_token_id=50_257,
        bos_token_id=50_257,
    )
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = Path(tmp)
        model = WhisperForConditionalGeneration(config)
        if favoured_tokens:
            from voicelab.testing.models import favour_tokens

            decoder = model.model.decoder
            favour_tokens(decoder.embed_tokens, decoder.layer_norm, favoured_tokens)
        model.save_pretrained(hf_dir)
        _whisper_tokenizer_json(hf_dir / "tokenizer.json")
        WhisperFeatureExtractor(feature_size=N_MELS).save_pretrained(hf_dir)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        converter = ctranslate2.converters.TransformersConverter(
            str(hf_dir), copy_files=["tokenizer.json", "preprocessor_config.json"]
        )
        converter.convert(str(out_dir), quantization="float32")
    return out_dir

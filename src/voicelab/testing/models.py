"""Builders for tiny random models with the real layouts (the same files and shapes, random weights)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from voicelab import orpheus

logger = logging.getLogger(__name__)

SHARP_OUTPUT_SCALE = 16.0
"""``build_tiny_orpheus(output_scale=...)`` for a model that can overfit: logits spanning ~20 nats, as a
real checkpoint's do (the random model's span ~1.3: 8 = sqrt(hidden 64) x embedding norm ~0.16)."""

_TRAINING_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello there, how are you doing today?",
    "A voice is made of many small sounds put together.",
    "alice: bob: carol: narrator: test voice speaks clearly.",
    'Numbers like 1, 2, 3 and punctuation! Questions? Quotes "like this".',
]

# Llama-3 special tokens the contract relies on, at their real ids.
_LLAMA3_SPECIALS = {
    "<|begin_of_text|>": orpheus.BEGIN_OF_TEXT,
    "<|end_of_text|>": 128_001,
    "<|start_header_id|>": 128_006,
    "<|end_header_id|>": 128_007,
    "<|eot_id|>": orpheus.END_OF_TEXT,
}

TINY_SNAC_CONFIG = {
    "sampling_rate": orpheus.SAMPLE_RATE,
    "encoder_dim": 8,
    "encoder_rates": [2, 4, 8, 8],
    "decoder_dim": 16,
    "decoder_rates": [8, 8, 4, 2],
    "attn_window_size": None,
    "codebook_size": orpheus.CODEBOOK_SIZE,
    "codebook_dim": 8,
    "vq_strides": list(orpheus.LEVEL_STRIDES),
    "noise": True,
    "depthwise": True,
}
"""Same strides and codebooks as snac_24khz, ~10x less compute: for unit tests."""

REAL_SNAC_CONFIG = {**TINY_SNAC_CONFIG, "encoder_dim": 48, "decoder_dim": 1024}
"""The snac_24khz configuration (19.8 M params, same compute as the real model): for benchmarks."""


def build_tiny_tokenizer(out_dir: Path | str, *, id_shift: int = 0):
    """A byte-level BPE tokenizer with the Orpheus special tokens at their real ids.

    Returns the ``PreTrainedTokenizerFast``; the folder loads with ``AutoTokenizer.from_pretrained``.
    ``id_shift`` > 0 puts every ``<custom_token_N>`` that many ids later (the vocabulary keeps its size):
    a tokenizer that breaks the Orpheus contract, which every loader must refuse.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    trainer_tok.train_from_iterator(_TRAINING_SENTENCES, trainer=trainer)
    state = json.loads(trainer_tok.to_str())
    vocab: dict[str, int] = state["model"]["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["model"]["merges"]]

    specials = dict(_LLAMA3_SPECIALS)
    n_custom = orpheus.VOCAB_SIZE - orpheus.TEXT_VOCAB_SIZE
    for n in range(n_custom - id_shift):
        specials[orpheus.token_spelling(orpheus.custom_token_id(n))] = orpheus.custom_token_id(n) + id_shift
    vocab.update(specials)

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(specials))
    bos = "<|begin_of_text|>"
    tok.post_processor = processors.TemplateProcessing(
        single=[bos, "$A"],
        pair=[bos, "$A", bos, "$B"],
        special_tokens=[(bos, orpheus.BEGIN_OF_TEXT)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token="<|eot_id|>",
        pad_token=orpheus.token_spelling(orpheus.PAD),
    )
    for name, expected in (("<|begin_of_text|>", orpheus.BEGIN_OF_TEXT), ("<|eot_id|>", orpheus.END_OF_TEXT)):
        got = fast.convert_tokens_to_ids(name)
        if got != expected:  # pragma: no cover - guards the recipe itself
            raise RuntimeError(f"tiny tokenizer put {name} at {got}, expected {expected}")
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_orpheus(
    out_dir: Path | str, *, seed: int = 0, id_shift: int = 0, output_scale: float = 1.0
) -> Path:
    """A 2-layer Llama with the Orpheus vocabulary and token ids, plus its tokenizer, in ``out_dir``.

    Loads with ``AutoModelForCausalLM.from_pretrained(out_dir)`` like the real checkpoint. ``id_shift``
    > 0 gives it a tokenizer whose special-token ids are shifted (see ``build_tiny_tokenizer``): the model's
    vocabulary is still Orpheus' size, so only the tokenizer check can tell it is not Orpheus.

    ``output_scale`` multiplies the final norm's weight. At 1 the random model's logits span about one nat
    (small tied embeddings behind an RMS norm), so no training can make it confident and it never overfits
    within a test's few steps; SHARP_OUTPUT_SCALE gives it a real language model's logit range, so a few
    steps memorise a clip (tests of overfitting and early stopping).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=orpheus.VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=orpheus.BEGIN_OF_TEXT,
        eos_token_id=orpheus.END_OF_SPEECH,
        pad_token_id=orpheus.PAD,
    )
    model = LlamaForCausalLM(config)
    if output_scale != 1.0:
        with torch.no_grad():
            model.model.norm.weight.mul_(output_scale)
    model.save_pretrained(out_dir)
    build_tiny_tokenizer(out_dir, id_shift=id_shift)
    logger.info("tiny Orpheus-layout Llama written to %s", out_dir)
    return out_dir


def _write_snac(out_dir: Path, config: dict, seed: int) -> Path:
    import torch
    from snac import SNAC

    torch.manual_seed(seed)
    model = SNAC(**config)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    torch.save(model.state_dict(), out_dir / "pytorch_model.bin")
    return out_dir


def build_tiny_snac(out_dir: Path | str, *, real_size: bool = False, seed: int = 0) -> Path:
    """A random-weight SNAC folder that ``SNAC.from_pretrained(out_dir)`` loads.

    ``real_size=True`` uses the snac_24khz dimensions (same compute as the real model).
    """
    return _write_snac(Path(out_dir), REAL_SNAC_CONFIG if real_size else TINY_SNAC_CONFIG, seed)


FAVOURED_LOGIT_SCALE = 3.0
"""The first favoured token's embedding is this many times the decoder's constant output: its logit
(3 x 25) dwarfs every random one (N(0, 25) over 51,865 tokens peaks near 5 x 4.5)."""
FAVOURED_SCALE_STEP = 0.5
"""Each next favoured token scores this much lower (2.5 x 25, ...): still far above the random ones."""
FIXED_OUTPUT_NORM = 5.0


def favour_tokens(embedding, final_norm, token_ids: Sequence[int]) -> None:
    """Make a decoder whose output layer is tied to ``embedding`` emit the first of ``token_ids`` that
    decoding does not suppress, at every step: the final layer norm outputs one fixed vector, and the
    tokens' embeddings point along it, the first the furthest. What decoding lets through shows in the text."""
    import torch

    with torch.no_grad():
        direction = torch.randn(final_norm.bias.shape[0])
        fixed = FIXED_OUTPUT_NORM * direction / direction.norm()
        final_norm.weight.zero_()
        final_norm.bias.copy_(fixed)
        for rank, token_id in enumerate(token_ids):
            embedding.weight[token_id] = (FAVOURED_LOGIT_SCALE - FAVOURED_SCALE_STEP * rank) * fixed


def build_tiny_whisper(out_path: Path | str, *, seed: int = 0, favoured_tokens: Sequence[int] = ()) -> Path:
    """A random 2-layer Whisper checkpoint file that ``whisper.load_model(out_path)`` loads.

    Its transcripts are garbage of varying length: assert on structure, never on words.
    ``favoured_tokens``: the model says the first of them that decoding does not suppress, at every step.
    """
    import torch
    from whisper.model import ModelDimensions, Whisper

    out_path = Path(out_path)
    torch.manual_seed(seed)
    dims = ModelDimensions(
        n_mels=80,
        n_audio_ctx=1500,
        n_audio_state=64,
        n_audio_head=2,
        n_audio_layer=2,
        n_vocab=51865,
        n_text_ctx=448,
        n_text_state=64,
        n_text_head=2,
        n_text_layer=2,
    )
    model = Whisper(dims)
    # torch.empty in Whisper's TextDecoder: uninitialised memory would give NaN logits.
    with torch.no_grad():
        model.decoder.positional_embedding.normal_(0.0, 0.02)
    if favoured_tokens:
        favour_tokens(model.decoder.token_embedding, model.decoder.ln, favoured_tokens)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": asdict(dims), "model_state_dict": model.state_dict()}, out_path)
    return out_path


TINY_DEMUCS_NAME = "tiny_htdemucs"


def build_tiny_demucs(out_dir: Path | str, *, name: str = TINY_DEMUCS_NAME, seed: int = 0) -> Path:
    """A small random Hybrid Transformer Demucs in a folder laid out as demucs' ``--repo`` expects
    (``NAME.th``): ``demucs.pretrained.get_model(NAME, repo=out_dir)`` loads it as it loads a downloaded
    ``htdemucs``. The same architecture and stems (drums, bass, other, vocals; 44.1 kHz stereo; depth 4,
    so the transformer sees a short sequence) with 8 channels and one transformer layer instead of 48 and
    5: ~0.4 s of CPU for 3 s of audio. Its stems are noise: assert on structure, never on separation.
    Needs the ``separation`` extra (demucs)."""
    import torch
    from demucs.htdemucs import HTDemucs

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = HTDemucs(["drums", "bass", "other", "vocals"], channels=8, depth=4, t_layers=1, segment=4)
    args, kwargs = model._init_args_kwargs
    package = {"klass": HTDemucs, "args": args, "kwargs": kwargs, "state": model.state_dict()}
    path = out_dir / f"{name}.th"
    torch.save(package, path)
    return path

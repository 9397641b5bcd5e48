"""LocalEngine end to end on the tiny Orpheus-layout Llama with tiny LoRA adapters (transformers + peft)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from voicelab import orpheus
from voicelab.engine import (
    EngineRequestError,
    IncompleteGenerationError,
    LocalEngine,
    SamplingParams,
    StreamingSnacDecoder,
    Synthesizer,
    UnknownVoiceError,
    Usage,
    Voice,
)
from voicelab.models import load_tokenizer
from voicelab.voice import LORA_TARGET_MODULES

pytestmark = pytest.mark.anyio
GREEDY = SamplingParams(temperature=0.0, max_tokens=21)


def _build_adapter(base_dir, out_dir, seed):
    """A random (non-identity) rank-4 LoRA on the seven projections, saved the way training saves one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(r=4, lora_alpha=64, target_modules=list(LORA_TARGET_MODULES), init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():  # make the adapter's effect large enough to change sampled tokens
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.mul_(20.0)
    peft_model.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def adapters(tiny_orpheus_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {
        name: _build_adapter(tiny_orpheus_dir, root / name, seed)
        for seed, name in enumerate(("alice", "bob"))
    }


@pytest.fixture(scope="module")
def engine(tiny_orpheus_dir):
    return LocalEngine(tiny_orpheus_dir)


async def _ids(engine, voice, prompt, params):
    ids, finish = [], None
    async for chunk in engine.generate(voice, prompt, params):
        ids += chunk.ids
        finish = chunk.finish_reason or finish
    return ids, finish


@pytest.fixture(scope="module")
def prompt(tiny_tokenizer):
    return orpheus.inference_prompt_ids(tiny_tokenizer, "Hello there.", "alice: ")


async def test_base_model_streams_valid_audio_tokens_until_max_tokens(engine, prompt):
    ids, finish = await _ids(engine, Voice("base"), prompt, SamplingParams(max_tokens=28, seed=1))
    assert len(ids) == 28 and finish == "length"
    assert orpheus.tokens_to_frames(ids).shape == (4, 7)  # constrained to the audio token of each position


async def test_seeded_sampling_is_reproducible_and_adapters_change_the_voice(engine, prompt, adapters):
    params = SamplingParams(max_tokens=21, seed=3)
    base1, _ = await _ids(engine, Voice("base"), prompt, params)
    base2, _ = await _ids(engine, Voice("base"), prompt, params)
    alice = Voice("alice", adapter_path=adapters["alice"])
    bob = Voice("bob", adapter_path=adapters["bob"])
    alice_ids, _ = await _ids(engine, alice, prompt, GREEDY)  # loads the adapter on first use
    bob_ids, _ = await _ids(engine, bob, prompt, GREEDY)  # a second adapter on the same base
    alice_again, _ = await _ids(engine, alice, prompt, GREEDY)
    base_after, _ = await _ids(engine, Voice("base"), prompt, params)
    assert base1 == base2 == base_after  # the base voice is untouched by loaded adapters
    assert alice_ids == alice_again and alice_ids != bob_ids
    assert set(engine.loaded_voices) == {"alice", "bob"}


async def test_stop_token_ends_generation_and_is_not_returned(tiny_orpheus_dir, prompt):
    engine = LocalEngine(tiny_orpheus_dir)
    ids, _ = await _ids(engine, Voice("base"), prompt, SamplingParams(temperature=0.0, max_tokens=22))
    # Greedy decoding is deterministic: make the token it picks to start frame 3 the stop token.
    stop_at = 2 * orpheus.CODES_PER_FRAME
    assert ids[stop_at] not in ids[:stop_at]
    params = SamplingParams(temperature=0.0, max_tokens=100, stop_token_ids=(ids[stop_at],))
    stopped, finish = await _ids(engine, Voice("base"), prompt, params)
    assert stopped == ids[:stop_at] and finish == "stop"


async def test_closing_the_consumer_stops_the_worker(engine, prompt):
    tokens = engine.generate(Voice("base"), prompt, SamplingParams(max_tokens=100_000))
    async for _chunk in tokens:
        break
    await tokens.aclose()
    for thread in threading.enumerate():
        if thread.name.startswith("local-gen-"):
            thread.join()  # returns only because the sampling loop saw the cancel flag
    ids, _ = await _ids(engine, Voice("base"), prompt, SamplingParams(max_tokens=7))
    assert len(ids) == 7  # the lock was released


async def test_missing_adapter_and_unload(tiny_orpheus_dir, adapters, tmp_path, prompt):
    engine = LocalEngine(tiny_orpheus_dir)
    with pytest.raises(EngineRequestError, match=r"adapter_config\.json"):
        await _ids(engine, Voice("ghost", adapter_path=tmp_path), prompt, GREEDY)
    with pytest.raises(UnknownVoiceError):
        await engine.unload_voice("ghost")
    alice = Voice("alice", adapter_path=adapters["alice"])
    base_ids, _ = await _ids(engine, Voice("base"), prompt, GREEDY)
    await engine.load_voice(alice)
    await engine.unload_voice("alice")
    assert engine.loaded_voices == []
    assert (await _ids(engine, Voice("base"), prompt, GREEDY))[0] == base_ids  # LoRA fully removed


async def test_bad_base_model_path_names_the_fix(tmp_path):
    with pytest.raises(Exception, match="cannot load the base model"):
        LocalEngine(tmp_path / "nothing")


async def test_text_to_audio_end_to_end(tiny_orpheus_dir, tiny_snac_dir, adapters):
    tokenizer = load_tokenizer(tiny_orpheus_dir)
    engine = LocalEngine(tiny_orpheus_dir)
    synth = Synthesizer(engine, tokenizer, StreamingSnacDecoder(tiny_snac_dir))
    alice = Voice("alice", adapter_path=adapters["alice"], prompt_prefix="alice: ")
    text = "Hello there."
    prompt = orpheus.inference_prompt_ids(tokenizer, text, alice.prompt_prefix)
    ids, _ = await _ids(engine, alice, prompt, SamplingParams(temperature=0.0, max_tokens=29))
    stop = ids[3 * orpheus.CODES_PER_FRAME]  # greedy: this id would start frame 4; make it the stop id
    params = SamplingParams(temperature=0.0, stop_token_ids=(stop,))
    usage = Usage()
    chunks = [c async for c in synth.stream(alice, text, params, usage=usage)]
    audio = np.concatenate(chunks)
    assert audio.dtype == np.float32 and len(audio) == 3 * orpheus.SAMPLES_PER_FRAME
    assert usage.generated_tokens == 3 * orpheus.CODES_PER_FRAME
    with pytest.raises(IncompleteGenerationError, match="max_tokens"):
        async for _chunk in synth.stream(alice, text, SamplingParams(max_tokens=30, seed=0)):
            pass

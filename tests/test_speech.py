"""Synthesizer: text -> prompt -> tokens (through a real HTTP vLLM fake) -> streamed 24 kHz audio."""

from __future__ import annotations

import re

import anyio
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicelab import orpheus
from voicelab.engine import (
    IncompleteGenerationError,
    SamplingParams,
    StreamingSnacDecoder,
    Synthesizer,
    TokenChunk,
    UnknownVoiceError,
    Usage,
    VLLMEngine,
    Voice,
    split_text,
)
from voicelab.engine.synthesizer import CROSSFADE_SAMPLES, CrossfadeJoiner
from voicelab.testing.fake_vllm import FakeVLLMServer, Fault, audio_tokens_for_prompt

pytestmark = pytest.mark.anyio
SPF = orpheus.SAMPLES_PER_FRAME


@pytest.fixture(scope="module")
def decoder(tiny_snac_dir):
    import torch
    from snac.layers import NoiseBlock

    dec = StreamingSnacDecoder(tiny_snac_dir)
    with torch.no_grad():  # SNAC adds fresh noise per decode; silence it to compare decodes exactly
        for module in dec.model.modules():
            if isinstance(module, NoiseBlock):
                module.linear.weight.zero_()
    return dec


@pytest.fixture
def voice(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    return Voice("alice", adapter_path=tmp_path, prompt_prefix="alice: ")


def _server(voice, **kw) -> FakeVLLMServer:
    return FakeVLLMServer(adapters={voice.name: str(voice.adapter_path)}, **kw)


async def _speak(synth, voice, text, params=None, usage=None):
    chunks = []
    async for chunk in synth.stream(voice, text, params, usage=usage):
        assert chunk.dtype == np.float32 and chunk.ndim == 1
        chunks.append(chunk)
    return chunks


def _expected_frames(tokenizer, voice, piece, server):
    prompt = orpheus.inference_prompt_ids(tokenizer, piece, voice.prompt_prefix)
    return orpheus.tokens_to_frames(audio_tokens_for_prompt(prompt, server.n_frames_for(prompt)))


@pytest.mark.parametrize("token_ids", [True, False])
async def test_text_to_audio_through_vllm(decoder, tiny_tokenizer, voice, token_ids):
    text = "Hello there, how are you doing today?"
    with _server(voice, supports_token_ids=token_ids, tokens_per_chunk=1 if token_ids else 6) as server:
        synth = Synthesizer(VLLMEngine(server.url), tiny_tokenizer, decoder)
        usage = Usage()
        chunks = await _speak(synth, voice, text, usage=usage)
        record = server.completions[0]
        assert await anyio.to_thread.run_sync(record.done.wait, 5)
        body = record.body
    # the stream was read to [DONE], so the pooled connection stays reusable
    assert record.finished and not record.disconnected
    frames = _expected_frames(tiny_tokenizer, voice, text, server)
    audio = np.concatenate(chunks)
    assert len(audio) == len(frames) * SPF  # every frame, first and last included
    assert np.abs(audio - decoder.decode_frames(frames)).max() < 2e-3
    assert body["prompt"] == orpheus.inference_prompt_ids(tiny_tokenizer, text, "alice: ")
    assert body["max_tokens"] == orpheus.max_new_tokens_for_text(text)
    assert usage.prompt_tokens == len(body["prompt"])
    assert usage.generated_tokens == frames.size
    assert usage.audio_samples == len(audio)


class _ScriptedEngine:
    """In-process TokenEngine that yields given ids one per chunk and notes how many it produced."""

    def __init__(self, ids):
        self.ids = ids
        self.produced = 0

    async def generate(self, voice, prompt_ids, params):
        for token in self.ids:
            self.produced += 1
            yield TokenChunk(ids=(token,))
        yield TokenChunk(ids=(), finish_reason="stop")


async def test_first_audio_after_28_tokens(decoder, tiny_tokenizer, voice):
    ids = orpheus.frames_to_tokens(np.random.default_rng(1).integers(0, 4096, (40, 7))).tolist()
    engine = _ScriptedEngine(ids)
    synth = Synthesizer(engine, tiny_tokenizer, decoder)
    produced_at_first_audio = None
    async for _chunk in synth.stream(voice, "Hi."):
        if produced_at_first_audio is None:
            produced_at_first_audio = engine.produced
    assert produced_at_first_audio == 4 * orpheus.CODES_PER_FRAME


async def test_long_text_is_split_generated_in_order_and_crossfaded(decoder, tiny_tokenizer, voice):
    sentences = [
        "The quick brown fox jumps over the lazy dog.",
        "A voice is made of many small sounds put together.",
        "Hello there, how are you doing today?",
    ]
    text = " ".join(sentences * 2)
    with _server(voice) as server:
        synth = Synthesizer(VLLMEngine(server.url), tiny_tokenizer, decoder, max_piece_tokens=30)
        pieces = synth.pieces(text)
        chunks = await _speak(synth, voice, text)
        prompts = [c.body["prompt"] for c in server.completions]
    assert len(pieces) > 1
    assert prompts == [orpheus.inference_prompt_ids(tiny_tokenizer, p, "alice: ") for p in pieces]
    frames = [_expected_frames(tiny_tokenizer, voice, p, server) for p in pieces]
    audio = np.concatenate(chunks)
    assert len(audio) == sum(len(f) for f in frames) * SPF - (len(pieces) - 1) * CROSSFADE_SAMPLES
    first = decoder.decode_frames(frames[0])
    np.testing.assert_allclose(audio[: len(first) - CROSSFADE_SAMPLES], first[:-CROSSFADE_SAMPLES], atol=2e-3)


async def test_cut_stream_yields_audio_then_incomplete_error(decoder, tiny_tokenizer, voice):
    with _server(voice) as server:
        server.faults.append(Fault(cut_after=5 * orpheus.CODES_PER_FRAME + 3))
        synth = Synthesizer(VLLMEngine(server.url), tiny_tokenizer, decoder)
        chunks = []
        with pytest.raises(IncompleteGenerationError, match="without end of speech") as error:
            async for chunk in synth.stream(voice, "Hello there."):
                chunks.append(chunk)
    assert sum(len(c) for c in chunks) == 5 * SPF  # the partial 6th frame is dropped
    assert error.value.reason == IncompleteGenerationError.CUT  # not a budget the client chose


async def test_max_tokens_hit_is_incomplete(decoder, tiny_tokenizer, voice):
    with _server(voice) as server:
        synth = Synthesizer(VLLMEngine(server.url), tiny_tokenizer, decoder)
        with pytest.raises(IncompleteGenerationError, match="max_tokens=21") as error:
            await _speak(synth, voice, "Hello there.", SamplingParams(max_tokens=21))
    assert error.value.reason == IncompleteGenerationError.LENGTH


@pytest.mark.parametrize("max_tokens", [None, 2000])
async def test_a_piece_that_runs_out_of_budget_ends_on_a_whole_frame(
    decoder, tiny_tokenizer, voice, caplog, max_tokens
):
    """Derived or asked for, the budget is whole frames: a runaway piece uses all of it and leaves no
    partial trailing frame to drop (and log) behind."""
    with _server(voice, frames_per_prompt=400) as server:
        synth = Synthesizer(VLLMEngine(server.url), tiny_tokenizer, decoder)
        with pytest.raises(IncompleteGenerationError) as error:
            await _speak(synth, voice, "Hi.", SamplingParams(max_tokens=max_tokens))
        sent = server.completions[-1].body["max_tokens"]
    assert error.value.reason == IncompleteGenerationError.LENGTH
    assert sent % orpheus.CODES_PER_FRAME == 0
    assert sent == (orpheus.max_new_tokens_for_text("Hi.") if max_tokens is None else 1995)
    assert "partial trailing frame" not in caplog.text


async def test_malformed_ids_raise_contract_error(decoder, tiny_tokenizer, voice):
    for token_ids in (True, False):
        with _server(voice, supports_token_ids=token_ids) as server:
            server.faults.append(Fault(malformed_after=14))
            synth = Synthesizer(VLLMEngine(server.url), tiny_tokenizer, decoder)
            with pytest.raises(orpheus.ContractError):
                await _speak(synth, voice, "Hello there.")


async def test_a_bad_window_fails_only_its_own_stream(decoder):
    good, bad = decoder.open_stream(), decoder.open_stream()
    frames = np.random.default_rng(5).integers(0, 4096, (6, 7))
    broken = frames.copy()
    broken[4, 3] = orpheus.CODEBOOK_SIZE

    async def push_bad():
        with pytest.raises(orpheus.ContractError):
            await bad.push(broken)

    async with anyio.create_task_group() as tg:
        tg.start_soon(push_bad)
        chunks = await good.push(frames)
    assert sum(len(c) for c in chunks) == 4 * SPF


async def test_unknown_voice(decoder, tiny_tokenizer, voice):
    with _server(voice) as server:
        synth = Synthesizer(VLLMEngine(server.url), tiny_tokenizer, decoder)
        with pytest.raises(UnknownVoiceError):
            await _speak(synth, Voice("nobody", adapter_path=voice.adapter_path), "Hello.")


async def test_closing_the_audio_stream_cancels_upstream_generation(decoder, tiny_tokenizer, voice):
    with _server(voice, token_delay=0.005, frames_per_prompt=400) as server:
        synth = Synthesizer(VLLMEngine(server.url), tiny_tokenizer, decoder)
        audio = synth.stream(voice, "Hello there.", SamplingParams(max_tokens=4000))
        async for _chunk in audio:
            break  # the client hangs up after the first chunk
        await audio.aclose()
        record = server.completions[-1]
        assert await anyio.to_thread.run_sync(
            record.done.wait, 5
        )  # waiting for the server to notice, not a test time limit
    assert record.disconnected and record.tokens_sent < 400 * orpheus.CODES_PER_FRAME


# --- pure helpers -----------------------------------------------------------------------------------------
def _words(text: str) -> int:
    return len(text.split())


def test_split_text_keeps_order_and_budget():
    text = "One two three. Four five six seven! Eight, nine, ten eleven twelve thirteen fourteen. Fifteen?"
    pieces = split_text(text, _words, max_tokens=5)
    assert " ".join(pieces) == text
    assert all(_words(p) <= 5 for p in pieces)
    assert pieces[0] == "One two three."  # packing stops at the budget, at a sentence end
    assert split_text("   ", _words) == []
    assert split_text("Short one. Short two.", _words, max_tokens=10) == ["Short one. Short two."]
    assert split_text("averyveryverylongword", lambda s: len(s), max_tokens=3) == ["averyveryverylongword"]


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ('She said "Stop!" and ran. Then she hid.', ['She said "Stop!" and ran.', "Then she hid."]),
        ("He left (quickly.) Then went.", ["He left (quickly.)", "Then went."]),
        ("It's 'done.' Really? [Yes!] Fine.", ["It's 'done.'", "Really? [Yes!]", "Fine."]),
        ("Oh <laugh> that is good. <sigh> Fine then.", ["Oh <laugh> that is good.", "<sigh> Fine then."]),
    ],
)
def test_split_text_keeps_closing_quotes_brackets_and_tags_with_their_sentence(text, pieces):
    budget = max(_words(piece) for piece in pieces)  # each sentence fits, no two neighbours do
    assert split_text(text, _words, max_tokens=budget) == pieces
    assert " ".join(split_text(text, _words, max_tokens=1)) == text  # cut between words: nothing lost


def test_split_text_never_cuts_inside_a_tag():
    text = "word <long pause here> word, <laugh> and <a tag with spaces> end."
    for budget in range(1, 12):
        pieces = split_text(text, _words, max_tokens=budget)
        assert " ".join(pieces) == text
        for tag in ("<long pause here>", "<laugh>", "<a tag with spaces>"):
            assert any(tag in piece for piece in pieces), (budget, pieces)


_SPLIT_ALPHABET = st.sampled_from([*"ab Z.!?…;:,—-\"')]}»”’(<>\n\t", "<laugh>", "<sigh>", " <x y> "])


@settings(max_examples=300, deadline=None)
@given(st.lists(_SPLIT_ALPHABET, max_size=60).map("".join), st.integers(1, 8), st.booleans())
def test_split_text_only_touches_whitespace(text, budget, by_chars):
    count = len if by_chars else _words
    pieces = split_text(text, count, max_tokens=budget)
    assert " ".join(pieces) == " ".join(text.split())
    assert all(piece and piece == piece.strip() for piece in pieces)
    for tag in re.findall(r"<[^<>]*>", " ".join(text.split())):
        assert any(tag in piece for piece in pieces)


def test_crossfade_joiner_is_continuous_and_has_the_expected_length():
    n = 100
    joiner = CrossfadeJoiner(n)
    a, b = np.ones(1000, np.float32), -np.ones(700, np.float32)
    out = [joiner.push(a[:300]), joiner.push(a[300:]), joiner.next_piece(), joiner.push(b[:50])]
    out += [joiner.push(b[50:]), joiner.finish()]
    joined = np.concatenate(out)
    assert len(joined) == 1000 + 700 - n
    fade = joined[1000 - n : 1000]
    assert np.all(np.diff(fade) <= 0) and fade[0] == pytest.approx(1.0) and fade[-1] > -1.0
    assert np.all(joined[:900] == 1.0) and np.all(joined[1000:] == -1.0)

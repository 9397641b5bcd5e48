"""Streaming SNAC decoder: frames in -> samples out, every frame once, seamless vs a whole decode."""

from __future__ import annotations

import logging

import anyio
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicelab import orpheus
from voicelab.engine.decoder import ChunkPlanner, StreamingSnacDecoder
from voicelab.models import ModelLoadError

SPF = orpheus.SAMPLES_PER_FRAME
# Max abs difference between streamed chunks and one whole-sequence decode, with the default 2 frames of
# context on each side (SNAC output is in [-1, 1]); measured ~1e-4 on the 24 kHz layout.
STREAM_TOLERANCE = 2e-3


def _silence_noise(decoder: StreamingSnacDecoder) -> StreamingSnacDecoder:
    """SNAC's NoiseBlocks add fresh random noise on every decode; zero their gain so that two decodes of
    the same codes can be compared sample by sample (the real model keeps them)."""
    import torch
    from snac.layers import NoiseBlock

    with torch.no_grad():
        for module in decoder.model.modules():
            if isinstance(module, NoiseBlock):
                module.linear.weight.zero_()
    return decoder


@pytest.fixture(scope="module")
def decoder(tiny_snac_dir):
    return _silence_noise(StreamingSnacDecoder(tiny_snac_dir))


def _random_frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, orpheus.CODEBOOK_SIZE, (n, orpheus.CODES_PER_FRAME))


# --- planner (pure) ---------------------------------------------------------------------------------------
def _plan(sizes: list[int], **kw) -> tuple[list, ChunkPlanner]:
    planner = ChunkPlanner(**kw)
    windows = []
    start = 0
    for size in sizes:
        windows.append(planner.add(np.arange(start, start + size)[:, None].repeat(7, 1) % 4096))
        start += size
    windows.append(planner.finish())
    return windows, planner


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), max_size=12),
    context=st.integers(0, 3),
    max_chunk=st.integers(1, 40),
)
def test_planner_emits_every_frame_once_in_order(sizes, context, max_chunk):
    per_update, _ = _plan(
        sizes, context_frames=context, first_chunk_frames=context + 2, max_chunk_frames=max_chunk
    )
    kept = [w.frames[w.keep_start : w.keep_stop, 0] for update in per_update for w in update]
    kept = np.concatenate(kept) if kept else np.zeros(0)
    assert kept.tolist() == [i % 4096 for i in range(sum(sizes))]
    emitted = 0
    for i, update in enumerate(per_update):
        for w in update:  # full left context (unless at the start); full right context until the flush
            assert w.keep_start == min(context, emitted)
            if i < len(per_update) - 1:
                assert len(w.frames) - w.keep_stop == context
            assert 1 <= w.n_keep <= max_chunk
            emitted += w.n_keep


def test_first_audio_after_four_frames_then_chunks_grow():
    planner = ChunkPlanner()  # defaults: context 2, first chunk at 4 frames
    assert planner.add(_random_frames(3)) == []
    first = planner.add(_random_frames(1))
    assert [w.n_keep for w in first] == [2]
    spans = []
    for _ in range(100):
        spans += [w.n_keep for w in planner.add(_random_frames(1))]
    assert spans[:4] == [2, 4, 8, 16]  # each chunk as long as the audio already out
    assert max(spans) == 32


# --- decoding ---------------------------------------------------------------------------------------------
def test_whole_decode_length_and_range(decoder):
    frames = _random_frames(5)
    frames[0, :] = 0
    frames[1, :] = orpheus.CODEBOOK_SIZE - 1  # 0 and 4095 are valid codes
    audio = decoder.decode_frames(frames)
    assert audio.dtype == np.float32
    assert audio.shape == (5 * SPF,)
    assert np.all(np.isfinite(audio)) and np.abs(audio).max() <= 1.0


@pytest.mark.parametrize("update_size", [1, 3, 7, 50])
def test_stream_matches_whole_decode(decoder, update_size):
    frames = _random_frames(45, seed=update_size)
    whole = decoder.decode_frames(frames)

    async def run():
        stream = decoder.open_stream()
        chunks = []
        for i in range(0, len(frames), update_size):
            chunks += await stream.push(frames[i : i + update_size])
        chunks += await stream.finish()
        return chunks

    chunks = anyio.run(run)
    streamed = np.concatenate(chunks)
    assert streamed.shape == whole.shape == (45 * SPF,)  # first frame and last two included
    assert np.abs(streamed - whole).max() < STREAM_TOLERANCE
    assert all(len(c) % SPF == 0 for c in chunks)


def test_first_chunk_ready_after_28_tokens(decoder):
    async def run():
        stream = decoder.open_stream()
        parser = orpheus.AudioTokenParser()
        tokens = orpheus.frames_to_tokens(_random_frames(4)).tolist()
        for i, token in enumerate(tokens, start=1):
            chunks = await stream.push(parser.feed_ids([token]))
            if chunks:
                return i, chunks
        return None, []

    n_tokens, chunks = anyio.run(run)
    assert n_tokens == 4 * orpheus.CODES_PER_FRAME
    assert sum(len(c) for c in chunks) == 2 * SPF


def test_text_updates_with_several_tokens_and_partial_frame(decoder, caplog):
    frames = _random_frames(9, seed=3)
    text = "".join(f"<custom_token_{t - orpheus.TEXT_VOCAB_SIZE}>" for t in orpheus.frames_to_tokens(frames))
    text += "<custom_token_10><custom_token_4200>"  # 2 tokens of a 10th frame that never completes

    async def run():
        stream = decoder.open_stream()
        parser = orpheus.AudioTokenParser()
        chunks = []
        for i in range(0, len(text), 61):  # updates cut tokens in the middle and carry several each
            chunks += await stream.push(parser.feed_text(text[i : i + 61]))
        with caplog.at_level(logging.WARNING, logger="voicelab.orpheus"):
            assert parser.finish() == 2
        chunks += await stream.finish()
        return chunks

    streamed = np.concatenate(anyio.run(run))
    assert len(streamed) == 9 * SPF
    assert "partial trailing frame" in caplog.text
    assert np.abs(streamed - decoder.decode_frames(frames)).max() < STREAM_TOLERANCE


def test_concurrent_streams_are_batched_and_each_gets_its_own_audio(decoder):
    n_streams = 6
    all_frames = [_random_frames(20, seed=100 + i) for i in range(n_streams)]
    results: dict[int, np.ndarray] = {}
    batches_before, windows_before = decoder.batches_run, decoder.windows_decoded

    async def one(i):
        stream = decoder.open_stream()
        chunks = []
        for k in range(0, 20, 2):
            chunks += await stream.push(all_frames[i][k : k + 2])
        chunks += await stream.finish()
        results[i] = np.concatenate(chunks)

    async def run():
        async with anyio.create_task_group() as tg:
            for i in range(n_streams):
                tg.start_soon(one, i)

    anyio.run(run)
    batches = decoder.batches_run - batches_before
    windows = decoder.windows_decoded - windows_before
    assert batches < windows  # windows waiting together were decoded in one pass
    for i in range(n_streams):
        whole = decoder.decode_frames(all_frames[i])
        assert np.abs(results[i] - whole).max() < STREAM_TOLERANCE


def test_invalid_code_raises_contract_error(decoder):
    frames = _random_frames(3)
    frames[1, 2] = orpheus.CODEBOOK_SIZE
    with pytest.raises(orpheus.ContractError):
        decoder.decode_frames(frames)


def test_bad_model_path_names_the_fix(tmp_path):
    with pytest.raises(ModelLoadError, match=r"config\.json"):
        StreamingSnacDecoder(tmp_path / "missing")

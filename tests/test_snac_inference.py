"""prepare_for_inference: same codes (bit-identical) and same samples (float32 rounding) as stock SNAC."""

from __future__ import annotations

import numpy as np
import pytest

from voicelab import orpheus, testing
from voicelab.snac_inference import (
    inplace_snake,
    prepare_for_inference,
    use_fast_decoder_convs,
)

# The fast decoder convolutions sum in another order than PyTorch's: max abs difference allowed, relative to
# the signal's scale (max(1, max |stock output|)). Measured ~1e-7 relative on these layers.
FAST_CONV_RTOL = 1e-5


def _assert_close(fast, stock):
    scale = max(1.0, stock.abs().max().item())
    assert fast.shape == stock.shape
    assert (fast - stock).abs().max().item() <= FAST_CONV_RTOL * scale


def _load(path):
    from snac import SNAC

    return SNAC.from_pretrained(str(path)).eval()


@pytest.mark.parametrize("shape", [(1, 8, 300), (3, 16, 2048)])
def test_inplace_snake_is_bit_identical(shape):
    import torch
    from snac.layers import snake

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen) * 3
    alpha = torch.rand((1, shape[1], 1), generator=gen) + 0.1
    with torch.inference_mode():
        assert torch.equal(inplace_snake(x, alpha), snake(x, alpha))


def test_inplace_snake_keeps_autograd():
    import torch
    from snac.layers import snake

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 32, generator=gen, requires_grad=True)
    alpha = (torch.rand(1, 4, 1, generator=gen) + 0.1).requires_grad_()
    inplace_snake(x, alpha).sum().backward()
    grads = x.grad.clone(), alpha.grad.clone()
    x.grad = alpha.grad = None
    snake(x, alpha).sum().backward()
    assert torch.allclose(grads[0], x.grad) and torch.allclose(grads[1], alpha.grad)
    assert grads[0].abs().sum() > 0 and grads[1].abs().sum() > 0


def test_prepared_model_encodes_and_decodes_identically(tiny_snac_dir):
    import torch

    stock, fast = _load(tiny_snac_dir), prepare_for_inference(_load(tiny_snac_dir))
    audio = testing.speech_like_noise([(1.0, 0.0)], orpheus.SAMPLE_RATE, seed=3)[:, 0]
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None, None]
    with torch.inference_mode():
        codes_stock, codes_fast = stock.encode(x), fast.encode(x)
        assert all(torch.equal(a, b) for a, b in zip(codes_stock, codes_fast, strict=True))
        torch.manual_seed(1)  # the NoiseBlocks draw fresh noise per decode
        audio_stock = stock.decode(codes_stock)
        torch.manual_seed(1)
        audio_fast = fast.decode(codes_fast)
    # Baking weight norm recomputes the weights once in a different order: last-bit differences at most.
    assert torch.allclose(audio_stock, audio_fast, atol=1e-5)


def test_plan_passes_caps_batch_size_and_samples():
    from voicelab.training.snac_codec import encoded_width, plan_passes

    spf = orpheus.SAMPLES_PER_FRAME
    lengths = [spf, spf, spf, 2 * spf, 40 * spf]
    # No cap: batch size alone.
    assert plan_passes(lengths, 2, None) == [[0, 1], [2, 3], [4]]
    # Cap of three short clips' width: the 2-frame clip widens the pass past it, the long one goes alone.
    cap = 3 * encoded_width(spf)
    assert plan_passes(lengths, 8, cap) == [[0, 1, 2], [3], [4]]
    assert plan_passes([], 8, cap) == []


# --- decoder convolutions in fast form (not bit-identical: float32 rounding) ---------------------------
def _swapped(module):
    import copy

    fast = copy.deepcopy(module)
    assert use_fast_decoder_convs(fast) == 1
    assert type(fast) is not type(module)
    assert fast.state_dict().keys() == module.state_dict().keys()  # derived weights are not saved
    return fast


@pytest.mark.parametrize("stride", [2, 3, 4, 5, 7, 8])
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("length", [1, 2, 5, 33])
def test_polyphase_conv_transpose_matches_stock(stride, batch, length):
    import math

    import torch

    torch.manual_seed(stride * 100 + length)
    # SNAC's DecoderBlock upsampler: kernel 2 x stride, padding ceil(stride / 2), output stride x input.
    stock = torch.nn.ConvTranspose1d(
        24, 16, 2 * stride, stride, padding=math.ceil(stride / 2), output_padding=stride % 2
    ).eval()
    fast = _swapped(stock)
    x = torch.randn(batch, 24, length) * 3
    with torch.inference_mode():
        _assert_close(fast(x), stock(x))
        assert fast(x).shape[-1] == stride * length


@pytest.mark.parametrize("dilation", [3, 9])
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("length", [1, 2, 5, 19, 300])
def test_shift_add_depthwise_conv_matches_stock(dilation, batch, length):
    import torch

    torch.manual_seed(dilation * 1000 + length)
    stock = torch.nn.Conv1d(32, 32, 7, dilation=dilation, padding=3 * dilation, groups=32).eval()
    fast = _swapped(stock)
    x = torch.randn(batch, 32, length) * 3
    with torch.inference_mode():
        _assert_close(fast(x), stock(x))


def test_fast_convs_fall_back_to_stock_under_autograd():
    import torch

    stock = torch.nn.ConvTranspose1d(8, 4, 8, 4, padding=2).train()
    fast = _swapped(stock)
    x = torch.randn(2, 8, 5, requires_grad=True)
    fast(x).sum().backward()
    assert x.grad is not None
    assert torch.equal(fast(x), stock(x))  # the stock forward, same bits


def test_only_the_decoder_is_swapped(tiny_snac_dir):
    from torch import nn

    fast = prepare_for_inference(_load(tiny_snac_dir))
    encoder_types = {type(m) for m in fast.encoder.modules()}
    assert nn.Conv1d in encoder_types and not any(t.__name__.startswith("ShiftAdd") for t in encoder_types)
    decoder_types = {type(m).__name__ for m in fast.decoder.modules()}
    assert {"PolyphaseConvTranspose1d", "ShiftAddDepthwiseConv1d"} <= decoder_types
    assert "ConvTranspose1d" not in decoder_types


@pytest.fixture(scope="module")
def real_snac_dir(tmp_path_factory):
    return testing.build_tiny_snac(tmp_path_factory.mktemp("real_snac"), real_size=True)


def test_real_size_decode_matches_stock(real_snac_dir):
    """Whole decode and a streamed decode with the fast decoder vs the stock (weight-norm, stock Snake)
    model, on the real snac_24khz layout."""
    import anyio
    import torch

    from voicelab.engine.decoder import StreamingSnacDecoder

    stock = _load(real_snac_dir)
    decoder = StreamingSnacDecoder(real_snac_dir)
    assert any(type(m).__name__ == "PolyphaseConvTranspose1d" for m in decoder.model.modules())
    frames = np.random.default_rng(5).integers(0, orpheus.CODEBOOK_SIZE, (14, orpheus.CODES_PER_FRAME))
    levels = orpheus.frames_to_codes(frames)
    codes = [torch.from_numpy(np.asarray(level))[None] for level in levels]
    with torch.inference_mode():
        torch.manual_seed(2)  # the NoiseBlocks draw fresh noise per decode: same draws for both
        whole_stock = stock.decode(codes)
        torch.manual_seed(2)
        whole_fast = decoder.model.decode(codes)
    _assert_close(whole_fast, whole_stock)

    # Streamed: silence the noise in both (each window draws its own), then compare with the stock decode.
    from snac.layers import NoiseBlock

    with torch.no_grad():
        for model in (stock, decoder.model):
            for module in model.modules():
                if isinstance(module, NoiseBlock):
                    linear = module.linear  # the stock model computes its weight from weight norm's g and v
                    wn = getattr(linear, "parametrizations", None)
                    (wn.weight.original0 if wn is not None else linear.weight).zero_()
        whole_stock = stock.decode(codes)[0, 0].numpy()

    async def stream():
        s = decoder.open_stream()
        chunks = []
        for i in range(len(frames)):
            chunks += await s.push(frames[i : i + 1])
        return chunks + await s.finish()

    streamed = np.concatenate(anyio.run(stream))
    assert streamed.shape == whole_stock.shape
    # Context windows, not the fast convolutions, set this bound (tests/test_decoder.py STREAM_TOLERANCE).
    assert np.abs(streamed - whole_stock).max() < 2e-3

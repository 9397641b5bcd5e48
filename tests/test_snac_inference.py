"""prepare_for_inference is exact: same codes and same samples as the stock SNAC model."""

from __future__ import annotations

import numpy as np
import pytest

from voicelab import orpheus, testing
from voicelab.snac_inference import inplace_snake, prepare_for_inference


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

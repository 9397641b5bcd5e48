"""Make a loaded SNAC model cheaper to run for inference.

Shared by the training encoder (``voicelab.training.snac_codec``) and the streaming decoder
(``voicelab.engine.decoder``). Changes to the whole model, both exact (bit-identical encoder codes and
decoder samples):

* weight norm baked into plain weights: left in place it recomputes every conv weight on every forward
  pass (~10% of a decode on CPU, and a fixed cost that dominates small streaming windows);
* the Snake activation ``x + sin(alpha * x)**2 / (alpha + 1e-9)`` computed with one allocation and
  in-place passes instead of four temporaries. Snake runs on every (channels x time) activation and is
  memory-bound, a large share of SNAC's time on CPU; in place it runs several times faster, more so on
  big tensors, whose fresh temporaries of several MB each miss the cache (docs/benchmarks.md). The products
  and the sum are the same IEEE operations in commuted order, so the result is bit-identical (the tests
  check codes and samples against the stock implementation).

Changes to the decoder only (``use_fast_decoder_convs``), equal within float32 rounding but not
bit-identical (sums run in another order); the encoder is untouched, so codes stay bit-identical:

* each ``ConvTranspose1d`` (kernel 2 x stride) runs in polyphase form: output phase ``r`` of every stride
  block is a 2-tap product of the input, so the layer is two plain GEMMs per group of phases (weights
  rearranged once, here) and one interleaving copy. On CPU PyTorch's transposed convolution re-lays its
  weights out on every call, which for the first upsampler (1024 -> 512 channels, 32 MiB of weights) costs
  several times the GEMM it amounts to on a streaming window;
* each dilated depthwise ``Conv1d`` (the residual units' dilation 3 and 9) runs as 7 shifted
  multiply-adds over the whole tensor, faster on CPU than oneDNN's dilated depthwise kernel
  (docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import logging

logger = logging.getLogger(__name__)

SNAKE_EPS = 1e-9
"""The constant SNAC adds to alpha before taking its reciprocal (``snac.layers.snake``)."""


def prepare_for_inference(model, *, fast_decoder: bool = True):
    """Bake weight norm and install the in-place Snake on ``model`` (a ``snac.SNAC``); returns it.

    ``fast_decoder``: also swap the decoder's transposed and dilated depthwise convolutions for faster
    forms (:func:`use_fast_decoder_convs`; decoder output equal within float32 rounding, encoder untouched).
    """
    baked = bake_weight_norm(model)
    snakes = use_inplace_snake(model)
    swapped = use_fast_decoder_convs(model) if fast_decoder else 0
    logger.debug(
        "SNAC prepared for inference: %d weight norms baked, %d Snake layers in place, "
        "%d decoder convolutions swapped",
        baked,
        snakes,
        swapped,
    )
    return model


def bake_weight_norm(model) -> int:
    """Replace weight-norm parametrizations by the weights they compute; returns how many."""
    from torch.nn.utils import parametrize

    baked = 0
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            baked += 1
    return baked


def inplace_snake(x, alpha):
    """``snac.layers.snake`` for ``(B, C, T)`` tensors without gradients: same bits, one allocation."""
    import torch
    from snac.layers import snake

    if (torch.is_grad_enabled() and (x.requires_grad or alpha.requires_grad)) or x.dim() != 3:
        return snake(x, alpha)  # autograd needs the intermediates the in-place passes overwrite
    y = torch.mul(x, alpha)
    y.sin_()
    y.square_()
    y.mul_((alpha + SNAKE_EPS).reciprocal())
    y.add_(x)
    return y


def use_inplace_snake(model) -> int:
    """Route every ``snac.layers.Snake1d`` of ``model`` through :func:`inplace_snake`; returns how many."""
    from snac.layers import Snake1d

    inplace_class = _inplace_snake_class()
    count = 0
    for module in model.modules():
        if type(module) is Snake1d:
            module.__class__ = inplace_class
            count += 1
    return count


@functools.cache
def _inplace_snake_class():
    from snac.layers import Snake1d

    class InplaceSnake1d(Snake1d):
        """``Snake1d`` whose forward is :func:`inplace_snake` (same parameters, same state dict)."""

        def forward(self, x):
            return inplace_snake(x, self.alpha)

    return InplaceSnake1d


def use_fast_decoder_convs(model) -> int:
    """Swap ``model.decoder``'s transposed and dilated depthwise convolutions for faster equivalents.

    Output equal to the stock modules within float32 rounding (the tests pin it). Each swapped module keeps
    its parameters and state dict (the rearranged weights are non-persistent buffers, which follow
    ``.to(device)``; call again after changing the weights) and runs the stock forward whenever autograd
    needs it. ``model`` may also be a decoder itself. Returns how many modules were swapped.
    """
    from torch import nn

    decoder = getattr(model, "decoder", model)
    count = 0
    for module in decoder.modules():
        if isinstance(module, nn.ConvTranspose1d) and _polyphase_supported(module):
            if type(module) is nn.ConvTranspose1d:
                module.__class__ = _polyphase_class()
            module.build_phases()
            count += 1
        elif type(module) is nn.Conv1d and _shift_add_supported(module):
            module.__class__ = _shift_add_class()
            count += 1
    return count


def _needs_autograd(x, module) -> bool:
    import torch

    return torch.is_grad_enabled() and (x.requires_grad or module.weight.requires_grad)


def _polyphase_supported(conv) -> bool:
    """Kernel 2 x stride, plain (no groups or dilation), output exactly ``stride`` x the input length."""
    (s,), (k,), (p,), (op,) = conv.stride, conv.kernel_size, conv.padding, conv.output_padding
    return (
        conv.groups == 1
        and conv.dilation == (1,)
        and conv.padding_mode == "zeros"
        and k == 2 * s
        and 0 <= p < s
        and op == 2 * p - s
    )


def polyphase_conv_transpose1d(x, phases, stride: int, out_channels: int):
    """``ConvTranspose1d`` in polyphase form; ``phases`` from ``PolyphaseConvTranspose1d.build_phases``.

    With output length ``T * s``: output sample ``n = q * s + r'`` is, for ``m = (r' + p) // s`` and
    ``r = (r' + p) % s``, ``W[r]^T x[q + m] + W[s + r]^T x[q + m - 1] + b`` (``W[k]``: the ``(C_in, C_out)``
    weight slice of kernel tap ``k``; ``x`` is zero outside its range). Phases sharing ``m`` form one group:
    two GEMMs (one per tap) against the input shifted by ``m``, then one strided copy into the output.
    """
    import torch
    import torch.nn.functional as F

    batch, _, length = x.shape
    padded = F.pad(x, (1, 1))  # padded[..., i] = x[..., i - 1]
    y = x.new_empty(batch, out_channels, length, stride)
    for shift, first, stop, w_now, w_prev, bias in phases:
        z = torch.baddbmm(bias, w_now.expand(batch, -1, -1), padded[..., shift + 1 : shift + 1 + length])
        z.baddbmm_(w_prev.expand(batch, -1, -1), padded[..., shift : shift + length])
        y[..., first:stop] = z.view(batch, stop - first, out_channels, length).permute(0, 2, 3, 1)
    return y.view(batch, out_channels, length * stride)


@functools.cache
def _polyphase_class():
    import torch
    from torch import nn

    class PolyphaseConvTranspose1d(nn.ConvTranspose1d):
        """``ConvTranspose1d`` run by :func:`polyphase_conv_transpose1d` when no gradient is needed."""

        def build_phases(self) -> None:
            """Rearrange the weights into per-phase GEMM operands (non-persistent buffers)."""
            (s,), (p,) = self.stride, self.padding
            w = self.weight.detach()
            bias = self.bias.detach() if self.bias is not None else w.new_zeros(self.out_channels)
            self._phase_groups = []
            for shift in (0, 1):
                phases = [r for r in range(s) if (r + p) // s == shift]
                if not phases:
                    continue
                taps = [(r + p) % s for r in phases]
                tensors = {
                    "now": torch.cat([w[:, :, k].t() for k in taps]),
                    "prev": torch.cat([w[:, :, s + k].t() for k in taps]),
                    "bias": bias.repeat(len(phases))[:, None],
                }
                for name, tensor in tensors.items():
                    self.register_buffer(f"_phase{shift}_{name}", tensor.contiguous(), persistent=False)
                self._phase_groups.append((shift, phases[0], phases[-1] + 1))

        def forward(self, x, output_size=None):
            if output_size is not None or x.dim() != 3 or _needs_autograd(x, self):
                return super().forward(x, output_size)
            phases = [
                (
                    shift,
                    first,
                    stop,
                    getattr(self, f"_phase{shift}_now"),
                    getattr(self, f"_phase{shift}_prev"),
                    getattr(self, f"_phase{shift}_bias"),
                )
                for shift, first, stop in self._phase_groups
            ]
            return polyphase_conv_transpose1d(x, phases, self.stride[0], self.out_channels)

    return PolyphaseConvTranspose1d


def _shift_add_supported(conv) -> bool:
    """Depthwise, dilated, odd kernel, 'same' zero padding, stride 1."""
    (k,), (d,), (s,) = conv.kernel_size, conv.dilation, conv.stride
    return (
        conv.groups == conv.in_channels == conv.out_channels
        and d > 1
        and s == 1
        and k % 2 == 1
        and conv.padding == ((k - 1) * d // 2,)
        and conv.padding_mode == "zeros"
    )


def shift_add_depthwise_conv1d(x, weight, bias, dilation: int):
    """Depthwise 'same' ``conv1d`` as one multiply-add per kernel tap over shifted views of ``x``."""
    import torch

    length, taps = x.shape[-1], weight.shape[-1]
    centre = taps // 2
    w = weight[:, 0, :, None]  # (C, K, 1)
    if bias is None:
        bias = weight.new_zeros(weight.shape[0])
    out = torch.addcmul(bias[:, None], x, w[:, centre])
    for k in range(taps):
        offset = (k - centre) * dilation
        if k == centre or abs(offset) >= length:
            continue
        if offset > 0:
            out[..., : length - offset].addcmul_(x[..., offset:], w[:, k])
        else:
            out[..., -offset:].addcmul_(x[..., : length + offset], w[:, k])
    return out


@functools.cache
def _shift_add_class():
    from torch import nn

    class ShiftAddDepthwiseConv1d(nn.Conv1d):
        """Dilated depthwise ``Conv1d`` run by :func:`shift_add_depthwise_conv1d` without gradients."""

        def forward(self, x):
            if x.dim() != 3 or _needs_autograd(x, self):
                return super().forward(x)
            return shift_add_depthwise_conv1d(x, self.weight, self.bias, self.dilation[0])

    return ShiftAddDepthwiseConv1d

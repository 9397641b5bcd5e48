"""Make a loaded SNAC model cheaper to run for inference, with bit-identical outputs.

Shared by the training encoder (``voicelab.training.snac_codec``) and the streaming decoder
(``voicelab.engine.decoder``). Two changes, both exact:

* weight norm baked into plain weights: left in place it recomputes every conv weight on every forward
  pass (~10% of a decode on CPU, and a fixed cost that dominates small streaming windows);
* the Snake activation ``x + sin(alpha * x)**2 / (alpha + 1e-9)`` computed with one allocation and
  in-place passes instead of four temporaries. Snake runs on every (channels x time) activation and is
  memory-bound: profiled on CPU it was ~45-50% of SNAC encode and decode time; in place it ran 1.4-5x faster
  (the gain grows with the tensor, as fresh temporaries of several MB each miss the cache). The products
  and the sum are the same IEEE operations in commuted order, so the result is bit-identical (the tests
  check codes and samples against the stock implementation).
"""

from __future__ import annotations

import functools
import logging

logger = logging.getLogger(__name__)

SNAKE_EPS = 1e-9
"""The constant SNAC adds to alpha before taking its reciprocal (``snac.layers.snake``)."""


def prepare_for_inference(model):
    """Bake weight norm and install the in-place Snake on ``model`` (a ``snac.SNAC``); returns it."""
    baked = bake_weight_norm(model)
    snakes = use_inplace_snake(model)
    logger.debug(
        "SNAC prepared for inference: %d weight norms baked, %d Snake layers in place", baked, snakes
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

"""Dropout (Srivastava et al., 2014) in its inverted form, and dropout2d (whole channels).

In training each element (or, for dropout2d, each whole channel plane) is kept with
probability 1 - p and scaled by 1 / (1 - p), so the expected activation is unchanged
and evaluation needs no rescaling: outside training both are the identity. The mask
is drawn from ``generator`` (an ``ember.Generator``; the default one otherwise) on the
input's device, and backward multiplies by the same scaled mask.
"""
from __future__ import annotations

from ember.autograd import Function
from ember.backend import xp_of
from ember.errors import ShapeError
from ember.random import rng_for
from ember.tensor import Tensor

__all__ = ["dropout", "dropout1d", "dropout2d"]


class Dropout(Function):
    """y = x * mask, where mask (broadcastable to x) holds 0 or 1 / (1 - p)."""

    def forward(self, x, mask):
        self.mask = mask
        return x * mask

    def backward(self, gy):
        return gy * self.mask


def _mask(x, shape: tuple, p: float, generator):
    if p == 1.0:  # everything dropped; avoid 0 * (1 / 0)
        return xp_of(x).zeros(shape, dtype=x.dtype)
    rng = rng_for(generator, x)
    keep = rng.random(shape, dtype=x.dtype) >= x.dtype.type(p)
    return keep * x.dtype.type(1.0 / (1.0 - p))


def _check(op: str, x: Tensor, p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p!r}")
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating point input, got {x.dtype}")
    return float(p)


def _apply(op: str, x: Tensor, p: float, training: bool, mask_shape: tuple, generator) -> Tensor:
    if not training or p == 0.0 or x.numel() == 0:
        return x
    return Dropout.apply(x, mask=_mask(x.data, mask_shape, p, generator))


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
            generator=None) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (training only).

    ``inplace`` is accepted for PyTorch compatibility; ember always returns a new tensor.
    """
    p = _check("dropout", input, p)
    return _apply("dropout", input, p, training, input.shape, generator)


def _channel_dropout(op: str, input: Tensor, p, training: bool, spatial: int, generator) -> Tensor:
    p = _check(op, input, p)
    if input.ndim not in (spatial + 1, spatial + 2):
        raise ShapeError(f"{op}: expected a {spatial + 1}-d (C, *S) or {spatial + 2}-d (N, C, *S) input, "
                         f"got shape {input.shape}")
    lead = input.ndim - spatial  # the (N, C) or (C,) axes get their own draw
    return _apply(op, input, p, training, input.shape[:lead] + (1,) * spatial, generator)


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
              generator=None) -> Tensor:
    """Zero whole channels of (N, C, H, W) or (C, H, W) with probability ``p`` (Tompson et al., 2015).

    Neighbouring pixels of a feature map are strongly correlated, so dropping single
    pixels barely regularizes a conv net; dropping a channel's whole map does.
    """
    return _channel_dropout("dropout2d", input, p, training, 2, generator)


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
              generator=None) -> Tensor:
    """Zero whole channels of (N, C, L) or (C, L) with probability ``p``."""
    return _channel_dropout("dropout1d", input, p, training, 1, generator)

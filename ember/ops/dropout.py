"""Dropout (Srivastava et al., 2014) in its inverted form, dropout1d/2d (whole channels), and the
alpha dropouts of self-normalizing networks (Klambauer et al., 2017).

In training each element (or, for dropout2d, each whole channel plane) is kept with
probability 1 - p and scaled by 1 / (1 - p), so the expected activation is unchanged
and evaluation needs no rescaling: outside training both are the identity. The mask
is drawn from ``generator`` (an ``ember.Generator``; the default one otherwise) on the
input's device, and backward multiplies by the same scaled mask.

Alpha dropout keeps a SELU network's activations at mean 0 and variance 1 instead: a
dropped unit is set to SELU's negative saturation value alpha' = -lambda * alpha (not 0),
and then the affine map a * x + b, with a = ((1 - p)(1 + p alpha'^2))^(-1/2) and
b = -a p alpha', restores mean 0 and variance 1 for inputs of mean 0 and variance 1.
"""
from __future__ import annotations

import math

from ember.autograd import Function
from ember.backend import xp_of
from ember.errors import ShapeError
from ember.random import rng_for
from ember.tensor import Tensor

__all__ = ["dropout", "dropout1d", "dropout2d", "alpha_dropout", "feature_alpha_dropout"]


class Dropout(Function):
    """y = x * mask, where mask (broadcastable to x) holds 0 or 1 / (1 - p)."""

    def forward(self, x, mask):
        self.mask = mask
        return x * mask

    def backward(self, gy):
        return gy * self.mask


def _mask(x, shape: tuple, p: float, generator, scale: float | None = None):
    """Keep (probability 1 - p) times ``scale`` (default 1 / (1 - p)), else 0, drawn in ``shape``."""
    if p == 1.0:  # everything dropped; avoid 0 * (1 / 0)
        return xp_of(x).zeros(shape, dtype=x.dtype)
    rng = rng_for(generator, x)
    keep = rng.random(shape, dtype=x.dtype) >= x.dtype.type(p)
    return keep * x.dtype.type(1.0 / (1.0 - p) if scale is None else scale)


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


# ---- alpha dropout ---------------------------------------------------------------------------
LAMBDA_ALPHA = 1.7580993408473766  # SELU's lambda * alpha: a dropped unit becomes alpha' = -LAMBDA_ALPHA


class AlphaDropout(Function):
    """y = a * (x if kept else alpha') + b with b = -a p alpha'. Written with mask = a * keep (0
    where dropped) this is y = (x - alpha') * mask + a alpha' (1 - p): one multiply-add, and
    backward multiplies by the mask."""

    def forward(self, x, mask, shift):
        self.mask = mask
        return (x + x.dtype.type(LAMBDA_ALPHA)) * mask - x.dtype.type(shift)

    def backward(self, gy):
        return gy * self.mask


def _alpha_apply(op: str, x: Tensor, p, training: bool, feature: bool, generator) -> Tensor:
    p = _check(op, x, p)
    if not training or p == 0.0 or x.numel() == 0:
        return x
    if feature and x.ndim < 2:
        raise ShapeError(f"{op}: feature dropout needs an input of at least 2 dims (N, C, *), got shape {x.shape}")
    shape = x.shape[:2] + (1,) * (x.ndim - 2) if feature else x.shape
    if p == 1.0:  # as PyTorch: all zeros (a would be infinite)
        return Dropout.apply(x, mask=_mask(x.data, shape, p, generator))
    a = 1.0 / math.sqrt((1.0 - p) * (1.0 + p * LAMBDA_ALPHA ** 2))
    mask = _mask(x.data, shape, p, generator, scale=a)
    return AlphaDropout.apply(x, mask=mask, shift=LAMBDA_ALPHA * a * (1.0 - p))


def alpha_dropout(input: Tensor, p: float = 0.5, training: bool = False, inplace: bool = False, *,
                  generator=None) -> Tensor:
    """Alpha dropout (Klambauer et al., 2017, "Self-Normalizing Neural Networks") for SELU networks:
    each element is set with probability ``p`` to SELU's saturation value -1.7581, and the result
    is scaled and shifted so that an input of mean 0 and variance 1 keeps them. Identity outside
    training (note PyTorch's default ``training=False`` here). Any shape.
    """
    return _alpha_apply("alpha_dropout", input, p, training, False, generator)


def feature_alpha_dropout(input: Tensor, p: float = 0.5, training: bool = False, inplace: bool = False, *,
                          generator=None) -> Tensor:
    """Alpha dropout of whole channels: one draw per (N, C) entry of an (N, C, *) input, shared by
    all its positions (as PyTorch, the first two dims are always N and C)."""
    return _alpha_apply("feature_alpha_dropout", input, p, training, True, generator)

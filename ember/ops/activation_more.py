"""More activations: threshold, hardshrink, softshrink, tanhshrink, rrelu, glu and softmin.

The piecewise ones (threshold, the two shrinks, rrelu) are one Function each with the
backward right below: their gradient is the upstream gradient times a mask or a slope
kept from forward. The others are compositions of existing ops (tanhshrink = x - tanh x,
glu = a * sigmoid(b), softmin = softmax(-x)) whose gradients come from those ops.
Comparisons are written so that NaN passes through, as in PyTorch.
"""
from __future__ import annotations

import numpy as np

from ember.autograd import Function
from ember.backend import xp_of
from ember.errors import ShapeError
from ember.ops.activation import _check_float, leaky_relu, sigmoid, tanh
from ember.ops.convert import astype
from ember.ops.reduce import softmax
from ember.ops.shape import _dim, getitem
from ember.random import rng_for
from ember.tensor import Tensor

__all__ = ["threshold", "hardshrink", "softshrink", "tanhshrink", "rrelu", "glu", "softmin"]


class Threshold(Function):
    """y = value where x <= threshold, else x; the gradient flows only where x > threshold."""

    def forward(self, x, threshold, value):
        xp = xp_of(x)
        self.below = x <= threshold  # NaN is not below: it passes through, as in PyTorch
        return xp.where(self.below, xp.asarray(value, dtype=x.dtype), x)

    def backward(self, gy):
        return xp_of(gy).where(self.below, gy.dtype.type(0), gy)


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    """``x if x > threshold else value``, elementwise; any shape, any real dtype (value is cast to it).

    ``inplace`` is accepted for PyTorch compatibility; ember returns a new tensor.
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"threshold: input must be an ember Tensor, got {type(input).__name__}")
    return Threshold.apply(input, threshold=threshold, value=value)


class Shrink(Function):
    """Zero on [-lambd, lambd]; outside it x itself (hard) or x moved towards 0 by lambd (soft).
    Both have slope 1 outside the dead zone, so backward is the same mask."""

    def forward(self, x, lambd, soft):
        xp = xp_of(x)
        self.dead = (x >= -lambd) & (x <= lambd)
        zero = x.dtype.type(0)
        if soft:
            return xp.where(self.dead, zero, x - xp.sign(x) * x.dtype.type(lambd))
        return xp.where(self.dead, zero, x)

    def backward(self, gy):
        return xp_of(gy).where(self.dead, gy.dtype.type(0), gy)


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """``x if |x| > lambd else 0`` (a negative lambd leaves x unchanged, as in PyTorch)."""
    _check_float("hardshrink", input)
    return Shrink.apply(input, lambd=float(lambd), soft=False)


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """``x - lambd`` if x > lambd, ``x + lambd`` if x < -lambd, else 0: the proximal map of lambd * |x|."""
    _check_float("softshrink", input)
    if not lambd >= 0:
        raise ValueError(f"softshrink: lambd must be non-negative, got {lambd}")
    return Shrink.apply(input, lambd=float(lambd), soft=True)


def tanhshrink(input: Tensor) -> Tensor:
    """``x - tanh(x)``."""
    _check_float("tanhshrink", input)
    return input - tanh(input)


class RRelu(Function):
    """y = x * slope with a fixed per-element ``slope`` (1 where x > 0); backward uses the same slopes."""

    def forward(self, x, slope):
        self.slope = slope
        return x * slope

    def backward(self, gy):
        return gy * self.slope


def rrelu(input: Tensor, lower: float = 1.0 / 8, upper: float = 1.0 / 3, training: bool = False,
          inplace: bool = False, *, generator=None) -> Tensor:
    """Randomized leaky ReLU (Xu et al., 2015, "Empirical Evaluation of Rectified Activations").

    In training each element with x <= 0 gets its own slope drawn from U(lower, upper)
    (from ``generator``, an ``ember.Generator``, or the default one) and the gradient uses
    that slope; x > 0 passes unchanged. Otherwise it is leaky_relu with the mean slope
    (lower + upper) / 2. Note PyTorch's default ``training=False`` for the function (the
    layer nn.RReLU passes its own mode). Any shape.
    """
    _check_float("rrelu", input)
    if not lower <= upper:
        raise ValueError(f"rrelu: lower bound ({lower}) must be less than or equal to the upper bound ({upper})")
    if not training:
        return leaky_relu(input, (lower + upper) / 2)
    x = input.data
    xp = xp_of(x)
    # NumPy and CuPy draw float32 or float64; other float dtypes draw float64 and convert
    draw = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
    u = rng_for(generator, x).random(x.shape, dtype=draw)
    slope = (u * (upper - lower) + lower).astype(x.dtype, copy=False)
    slope = xp.where(x > 0, x.dtype.type(1), slope)
    return RRelu.apply(input, slope=slope)


def glu(input: Tensor, dim: int = -1) -> Tensor:
    """Gated linear unit (Dauphin et al., 2017): split ``dim`` into halves a, b and return a * sigmoid(b).

    Shapes: (*, 2M, *) -> (*, M, *) along ``dim``.
    """
    _check_float("glu", input)
    if input.ndim == 0:
        raise ShapeError("glu: a 0-d input cannot be halved (glu needs a dim of even size)")
    d = _dim("glu", dim, input.ndim)
    n = input.shape[d]
    if n % 2:
        raise ShapeError(f"glu: dim {dim} must have an even size to be halved, got size {n} (input {input.shape})")
    lead = (slice(None),) * d
    a, b = getitem(input, lead + (slice(0, n // 2),)), getitem(input, lead + (slice(n // 2, n),))
    return a * sigmoid(b)


def _legacy_dim(ndim: int) -> int:
    # PyTorch's rule when dim is not given: 0 for 0-, 1- and 3-d inputs, else 1.
    return 0 if ndim in (0, 1, 3) else 1


def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """``softmax(-x)`` along ``dim``: weights that favour the smallest entries.

    ``dtype`` converts the input first (a NumPy dtype or its name). ``dim=None`` takes
    PyTorch's legacy choice (0 for 0-, 1- and 3-d inputs, else 1).
    """
    _check_float("softmin", input)
    if dtype is not None:
        input = astype(input, np.dtype(dtype))
    return softmax(-input, _legacy_dim(input.ndim) if dim is None else dim)

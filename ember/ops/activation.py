"""Activation functions: relu, sigmoid, tanh and the leaky, smooth and hard variants.

Each is one Function with its backward written out, so a network's activations cost
one node each and stay finite for any input: exponentials only ever see
non-positive arguments.
"""
from __future__ import annotations

import math

import numpy as np

from ember.autograd import Function
from ember.backend import check_same_device, empty_as, memory_order, xp_of
from ember.errors import DTypeError, ShapeError
from ember.ops import cuda_kernels
from ember.parallel import for_slices
from ember.tensor import Tensor

__all__ = [
    "relu", "sigmoid", "tanh", "leaky_relu", "prelu", "elu", "selu", "celu", "gelu", "silu", "softplus", "hardtanh",
    "relu6", "mish", "logsigmoid", "hardsigmoid", "hardswish", "softsign",
]


class Tanh(Function):
    def forward(self, x):
        self.y = xp_of(x).tanh(x)
        return self.y

    def backward(self, gy):
        return gy * (1 - self.y * self.y)


def tanh(x: Tensor) -> Tensor:
    return Tanh.apply(x)


class Sigmoid(Function):
    """1 / (1 + exp(-x)), computed without overflow: exp only ever sees -|x|."""

    def forward(self, x):
        xp = xp_of(x)
        e = xp.exp(-xp.abs(x))  # in (0, 1]: never overflows
        self.y = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
        return self.y

    def backward(self, gy):
        return gy * self.y * (1 - self.y)


def sigmoid(x: Tensor) -> Tensor:
    return Sigmoid.apply(x)


def _flat(a):
    """a's elements as a 1-D view in memory order, when a is contiguous in some axis order
    (channels-last included); else None."""
    flat = a.ravel(order="K")
    return flat if flat.base is not None and np.may_share_memory(flat, a) else None


# Long runs of zeros by dtype (``_relu_rows``), allocated on first use.
_ZERO_ROWS: dict = {}
_ZERO_ROW = 4096


def _relu_rows(x, out) -> bool:
    """out = max(x, 0) on the CPU, against a row of zeros rather than the scalar 0: NumPy's
    maximum runs its SIMD loop only when both operands advance (contiguous against a scalar it
    is ~3x slower: 0.63 vs 0.18 ms on 2M floats, one core, where the pass becomes
    memory-bound). Returns False when x or out are not dense in the same memory order (or
    shorter than the row): then the caller takes np.maximum against 0."""
    xf, of = _flat(x), _flat(out)
    if xf is None or of is None or out.strides != x.strides or x.size < _ZERO_ROW:
        return False
    zeros = _ZERO_ROWS.get(x.dtype)
    if zeros is None:
        zeros = _ZERO_ROWS[x.dtype] = np.zeros(_ZERO_ROW, dtype=x.dtype)
    q = x.size - x.size % _ZERO_ROW
    np.maximum(xf[:q].reshape(-1, _ZERO_ROW), zeros, out=of[:q].reshape(-1, _ZERO_ROW))
    np.maximum(xf[q:], 0, out=of[q:])
    return True


class Relu(Function):
    def forward(self, x):
        if cuda_kernels.fits(x):  # GPU: one launch; backward reads the output (y > 0 where x > 0)
            self.y = cuda_kernels.relu_forward(x)
            self.mask = None
            return self.y
        xp = xp_of(x)
        if x.ndim == 0:
            self.mask = x > 0
            return xp.maximum(x, 0)
        y, self.mask = xp.empty_like(x), xp.empty_like(x, dtype=bool)  # in x's memory order

        def part(n):  # runs of images, several threads next to shared convolutions (ember.parallel)
            xp.greater(x[n], 0, out=self.mask[n])
            if xp is not np or not _relu_rows(x[n], y[n]):
                xp.maximum(x[n], 0, out=y[n])  # not x * mask: -inf * 0 would give nan

        for_slices(part, len(x), x.size)
        return y

    def backward(self, gy):
        # The gradient takes x's memory order (the mask's), so a channels-last network's
        # gradients stay channels-last even where an NCHW gradient arrives (from pooling).
        xp = xp_of(gy)
        if self.mask is None:  # GPU: one launch
            if cuda_kernels.fits(gy):
                return cuda_kernels.relu_backward(gy, self.y)
            self.mask = self.y > 0  # (a scalar gradient) then as below
        gx = empty_as(self.mask, gy.dtype)
        if gy.ndim == 0:
            return xp.multiply(gy, self.mask, out=gx)
        if xp is not np:  # GPU: one flat kernel when gy lies in the mask's memory order
            o, g, m = memory_order(gx, gy, self.mask)
            xp.multiply(g, m, out=o)
            return gx
        for_slices(lambda n: xp.multiply(gy[n], self.mask[n], out=gx[n]), len(gy), gy.size)
        return gx


def relu(x: Tensor) -> Tensor:
    return Relu.apply(x)


def _sigmoid(x):
    """Overflow-free logistic function on a raw array (the same formula as ember.sigmoid)."""
    return Sigmoid().forward(x)


def _softplus0(x):
    """log(1 + exp(x)) on a raw array without overflow: max(x, 0) + log1p(exp(-|x|))."""
    xp = xp_of(x)
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-abs(x)))


def _check_float(op: str, x) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: input must be an ember Tensor, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise DTypeError(f"{op}: input must be floating point, got {x.dtype}")


class LeakyRelu(Function):
    def forward(self, x, slope):
        self.pos, self.slope = x > 0, slope
        return xp_of(x).where(self.pos, x, x * slope)

    def backward(self, gy):
        return xp_of(gy).where(self.pos, gy, gy * self.slope)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x if x > 0 else negative_slope * x. ``inplace`` is accepted for PyTorch compatibility (ignored)."""
    _check_float("leaky_relu", input)
    return LeakyRelu.apply(input, slope=float(negative_slope))


class PRelu(Function):
    """Leaky ReLU with a learned slope ``w`` shared by all channels (1 value) or one per channel (dim 1)."""

    def forward(self, x, w):
        self.x, self.pos = x, x > 0
        # (C,) -> (1, C, 1, ...) so it broadcasts along dim 1; one value broadcasts as is.
        self.wb = w.reshape((1, -1) + (1,) * (x.ndim - 2)) if w.size > 1 else w.reshape(())
        return xp_of(x).where(self.pos, x, x * self.wb)

    def backward(self, gy):
        xp = xp_of(gy)
        gx = xp.where(self.pos, gy, gy * self.wb) if self.needs_input_grad[0] else None
        gw = None
        if self.needs_input_grad[1]:
            g = xp.where(self.pos, 0, gy * self.x)
            if self.wb.ndim:
                gw = g.sum(axis=tuple(i for i in range(g.ndim) if i != 1))
            else:
                gw = g.sum().reshape(1)
            gw = gw.astype(gy.dtype, copy=False)
        return gx, gw


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """x if x > 0 else weight * x; ``weight`` has 1 element or one per channel of dim 1.

    Shapes: input (N, C, *) or any shape when weight has one element; weight (1,) or (C,).
    """
    _check_float("prelu", input)
    if weight.ndim != 1:
        raise ShapeError(f"prelu: weight must be 1-D, got shape {weight.shape}")
    if weight.shape[0] != 1 and (input.ndim < 2 or input.shape[1] != weight.shape[0]):
        raise ShapeError(
            f"prelu: weight has {weight.shape[0]} parameters but input {input.shape} has "
            f"{input.shape[1] if input.ndim >= 2 else 'no'} channels in dim 1"
        )
    check_same_device("prelu", input.data, weight.data)
    if weight.dtype != input.dtype:
        raise DTypeError(f"prelu: weight dtype {weight.dtype} does not match input dtype {input.dtype}")
    return PRelu.apply(input, weight)


class Elu(Function):
    """scale * (x if x > 0 else alpha * (exp(x / c) - 1)); covers ELU, SELU and CELU."""

    def forward(self, x, alpha, scale, c):
        xp = xp_of(x)
        self.pos, self.alpha, self.scale, self.c = x > 0, alpha, scale, c
        # expm1 sees only min(x, 0): no overflow in the branch that where() discards.
        self.neg = alpha * xp.expm1(xp.minimum(x, 0) / c)
        return scale * xp.where(self.pos, x, self.neg)

    def backward(self, gy):
        xp = xp_of(gy)
        return gy * (self.scale * xp.where(self.pos, 1, (self.neg + self.alpha) / self.c)).astype(gy.dtype)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """Exponential linear unit (Clevert et al., 2015): x if x > 0 else alpha * (exp(x) - 1)."""
    _check_float("elu", input)
    return Elu.apply(input, alpha=float(alpha), scale=1.0, c=1.0)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """Scaled ELU (Klambauer et al., 2017) with the self-normalizing constants."""
    _check_float("selu", input)
    return Elu.apply(input, alpha=_SELU_ALPHA, scale=_SELU_SCALE, c=1.0)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x if x > 0 else alpha * (exp(x / alpha) - 1) (Barron, 2017)."""
    _check_float("celu", input)
    if alpha == 0:
        raise ValueError("celu: alpha must be non-zero")
    return Elu.apply(input, alpha=float(alpha), scale=1.0, c=float(alpha))


def _half_erfc(z):
    """0.5 * erfc(z) for z >= 0, relative error < 1.2e-7 everywhere.

    NumPy has no erf; this is the Chebyshev-fitted form of erfc from Press et al.,
    Numerical Recipes (2nd ed., sec. 6.2), written with xp ops so it also runs on CuPy.
    """
    xp = xp_of(z)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    return 0.5 * t * xp.exp(-z * z + poly)


def _normal_cdf(x):
    """Phi(x) = P(N(0, 1) <= x), computed from the tail on each side (no cancellation)."""
    xp = xp_of(x)
    tail = _half_erfc(abs(x) * (1 / math.sqrt(2)))
    return xp.where(x >= 0, 1 - tail, tail)


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


class Gelu(Function):
    """x * Phi(x) (Hendrycks & Gimpel, 2016), exact (erf) or with the tanh approximation."""

    def forward(self, x, approximate):
        xp = xp_of(x)
        self.x, self.approximate = x, approximate
        if approximate == "tanh":
            self.t = xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))
            return (0.5 * x * (1 + self.t)).astype(x.dtype, copy=False)
        self.cdf = _normal_cdf(x).astype(x.dtype, copy=False)
        return x * self.cdf

    def backward(self, gy):
        xp = xp_of(gy)
        x = self.x
        if self.approximate == "tanh":
            dinner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
            d = 0.5 * (1 + self.t) + 0.5 * x * (1 - self.t * self.t) * dinner
        else:
            d = self.cdf + x * xp.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
        return gy * d.astype(gy.dtype, copy=False)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit x * Phi(x); ``approximate="tanh"`` uses the tanh formula."""
    _check_float("gelu", input)
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return Gelu.apply(input, approximate=approximate)


class Silu(Function):
    def forward(self, x):
        self.x, self.s = x, _sigmoid(x)
        return x * self.s

    def backward(self, gy):
        s = self.s
        return gy * (s * (1 + self.x * (1 - s)))


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """x * sigmoid(x) (a.k.a. swish; Elfwing et al., 2017)."""
    _check_float("silu", input)
    return Silu.apply(input)


class Softplus(Function):
    def forward(self, x, beta, threshold):
        xp = xp_of(x)
        bx = x * beta
        self.bx, self.linear = bx, bx > threshold
        return xp.where(self.linear, x, _softplus0(bx) / beta).astype(x.dtype, copy=False)

    def backward(self, gy):
        xp = xp_of(gy)
        return gy * xp.where(self.linear, 1, _sigmoid(self.bx)).astype(gy.dtype, copy=False)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta * x)) / beta, and x itself where beta * x > threshold (as in PyTorch)."""
    _check_float("softplus", input)
    if beta == 0:
        raise ValueError("softplus: beta must be non-zero")
    return Softplus.apply(input, beta=float(beta), threshold=float(threshold))


class Hardtanh(Function):
    def forward(self, x, lo, hi):
        # the gradient passes strictly inside (lo, hi), as in PyTorch
        self.inside = (x > lo) & (x < hi)
        return xp_of(x).clip(x, lo, hi)

    def backward(self, gy):
        return gy * self.inside


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    """Clip to [min_val, max_val]."""
    _check_float("hardtanh", input)
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val ({min_val}) is greater than max_val ({max_val})")
    return Hardtanh.apply(input, lo=min_val, hi=max_val)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """min(max(x, 0), 6)."""
    return hardtanh(input, 0.0, 6.0)


class Mish(Function):
    def forward(self, x):
        self.x = x
        self.t = xp_of(x).tanh(_softplus0(x))
        return x * self.t

    def backward(self, gy):
        t = self.t
        return gy * (t + self.x * (1 - t * t) * _sigmoid(self.x))


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * tanh(softplus(x)) (Misra, 2019)."""
    _check_float("mish", input)
    return Mish.apply(input)


class LogSigmoid(Function):
    def forward(self, x):
        self.x = x
        return -_softplus0(-x)

    def backward(self, gy):
        return gy * _sigmoid(-self.x)


def logsigmoid(input: Tensor) -> Tensor:
    """log(sigmoid(x)) = -softplus(-x), finite for any x."""
    _check_float("logsigmoid", input)
    return LogSigmoid.apply(input)


class HardSigmoid(Function):
    def forward(self, x):
        self.inside = (x > -3) & (x < 3)
        return xp_of(x).clip(x / 6 + 0.5, 0, 1).astype(x.dtype, copy=False)

    def backward(self, gy):
        return gy * self.inside / 6


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """relu6(x + 3) / 6."""
    _check_float("hardsigmoid", input)
    return HardSigmoid.apply(input)


class HardSwish(Function):
    def forward(self, x):
        self.x = x
        return x * xp_of(x).clip(x + 3, 0, 6) / 6

    def backward(self, gy):
        xp = xp_of(gy)
        x = self.x
        d = xp.where(x < -3, 0, xp.where(x > 3, 1, x / 3 + 0.5))
        return gy * d.astype(gy.dtype, copy=False)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * relu6(x + 3) / 6 (Howard et al., 2019)."""
    _check_float("hardswish", input)
    return HardSwish.apply(input)


class Softsign(Function):
    def forward(self, x):
        self.d = 1 + abs(x)
        return x / self.d

    def backward(self, gy):
        return gy / (self.d * self.d)


def softsign(input: Tensor) -> Tensor:
    """x / (1 + |x|)."""
    _check_float("softsign", input)
    return Softsign.apply(input)

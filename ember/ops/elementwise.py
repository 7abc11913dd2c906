"""Elementwise ops with gradients: arithmetic, unary math, clamp, where (activations: ember/ops/activation.py).

(Comparisons and rounding, which have no gradients, are in ember.ops.compare.)
Binary ops first bring both operands to one dtype and one shape through recorded
``astype`` (ember.ops.convert) and ``broadcast_to`` (ember.ops.shape) ops, whose backwards cast back and
``sum_to`` the broadcast axes. So every backward below sees same-shaped arrays.
"""
from __future__ import annotations

import numbers

import numpy as np

from ember.autograd import Function
from ember.backend import add_keep_channels_last, check_same_device, xp_of
from ember.backend import to_device as _to_device
from ember.errors import ShapeError
from ember.ops.convert import astype, clone, to_device  # noqa: F401  (re-exported: part of this family's API)
from ember.tensor import Tensor

__all__ = [
    "add", "sub", "mul", "div", "pow", "neg", "abs", "exp", "log", "log1p", "sqrt", "rsqrt", "square", "sin",
    "cos", "clamp", "clip", "maximum", "minimum", "where", "sign", "astype",
    "clone", "to_device", "as_tensor_like",
]


def as_tensor_like(value, like: Tensor) -> Tensor:
    """Wrap a Python number or array as a constant Tensor on ``like``'s device.

    Python floats take ``like``'s dtype (as in PyTorch: ``float32_tensor * 0.5`` stays
    float32); arrays keep their own dtype.
    """
    if isinstance(value, Tensor):
        return value
    xp = xp_of(like.data)
    if isinstance(value, numbers.Number):
        kind = like.data.dtype.kind
        if isinstance(value, bool) or (isinstance(value, numbers.Integral) and kind in "iufcb"):
            dtype = like.data.dtype if kind != "b" or isinstance(value, bool) else np.int64
        elif kind in "fc":
            dtype = like.data.dtype
        else:
            dtype = np.float32
        return Tensor(xp.asarray(value, dtype=dtype))
    return Tensor(_to_device(value, like.device) if xp is not np else np.asarray(value))


def _binary(cls, name: str, a, b):
    """Apply a binary Function after promoting dtypes and broadcasting shapes."""
    from ember.ops.shape import broadcast_to

    if not isinstance(a, Tensor):
        a = as_tensor_like(a, b)
    elif not isinstance(b, Tensor):
        b = as_tensor_like(b, a)
    check_same_device(name, a.data, b.data)
    if a.data.dtype != b.data.dtype:
        dtype = np.result_type(a.data.dtype, b.data.dtype)
        a, b = astype(a, dtype), astype(b, dtype)
    sa, sb = a.data.shape, b.data.shape
    if sa != sb:
        try:
            shape = np.broadcast_shapes(sa, sb)
        except ValueError:
            raise ShapeError(f"{name}: shapes {tuple(sa)} and {tuple(sb)} cannot be broadcast together") from None
        if sa != shape:
            a = broadcast_to(a, shape)
        if sb != shape:
            b = broadcast_to(b, shape)
    return cls.apply(a, b)


# ---- arithmetic ----------------------------------------------------------------------------------
class Add(Function):
    saved_inputs = ()  # backward needs only gy

    def forward(self, a, b):
        return add_keep_channels_last(a, b)  # a residual sum stays channels-last (see backend)

    def backward(self, gy):
        return gy, gy


def add(a, b, alpha=1) -> Tensor:
    """a + alpha * b with broadcasting."""
    return _binary(Add, "add", a, b if alpha == 1 else mul(b, alpha))


class Sub(Function):
    saved_inputs = ()  # backward needs only gy

    def forward(self, a, b):
        return a - b

    def backward(self, gy):
        return gy, (-gy if self.needs_input_grad[1] else None)


def sub(a, b, alpha=1) -> Tensor:
    """a - alpha * b with broadcasting."""
    return _binary(Sub, "sub", a, b if alpha == 1 else mul(b, alpha))


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        ga = gy * self.b if self.needs_input_grad[0] else None
        gb = gy * self.a if self.needs_input_grad[1] else None
        return ga, gb


def mul(a, b) -> Tensor:
    """a * b with broadcasting."""
    return _binary(Mul, "mul", a, b)


class Div(Function):
    def forward(self, a, b):
        self.b = b
        self.y = a / b
        return self.y

    def backward(self, gy):
        ga = gy / self.b
        gb = -ga * self.y if self.needs_input_grad[1] else None
        return (ga if self.needs_input_grad[0] else None), gb


def div(a, b) -> Tensor:
    """a / b with broadcasting (true division)."""
    return _binary(Div, "div", a, b)


class Pow(Function):
    """a ** b for two tensors; d/db = a**b * log(a) (defined for a > 0)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        self.y = a**b
        return self.y

    def backward(self, gy):
        xp = xp_of(gy)
        ga = gy * self.b * self.a ** (self.b - 1) if self.needs_input_grad[0] else None
        gb = None
        if self.needs_input_grad[1]:
            # log(0) would give 0 * -inf = nan where a == 0; PyTorch defines that term as 0.
            safe = xp.where(self.a > 0, self.a, 1)
            gb = gy * self.y * xp.log(safe)
        return ga, gb


class PowScalar(Function):
    """x ** p for a Python number p."""

    def forward(self, x, p):
        self.x, self.p = x, p
        return x**p

    def backward(self, gy):
        p = self.p
        if p == 0:  # d/dx x**0 is 0 everywhere, also at x = 0 (where p * x**-1 gives nan)
            return xp_of(gy).zeros_like(gy)
        if p == 2:
            return gy * (2 * self.x)
        return gy * (p * self.x ** (p - 1))


def pow(a, b) -> Tensor:
    """a ** b; b may be a Python number (fast path) or a tensor."""
    if isinstance(b, numbers.Number) and isinstance(a, Tensor):
        return PowScalar.apply(a, p=b)
    return _binary(Pow, "pow", a, b)


class Neg(Function):
    saved_inputs = ()  # backward needs only gy

    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


def neg(x: Tensor) -> Tensor:
    return Neg.apply(x)


# ---- unary math ----------------------------------------------------------------------------------
class Abs(Function):
    def forward(self, x):
        self.x = x
        return xp_of(x).abs(x)  # not the builtin name: this module's abs() is the Tensor op

    def backward(self, gy):
        return gy * xp_of(gy).sign(self.x)


def abs(x: Tensor) -> Tensor:  # noqa: A001 - mirrors torch.abs
    return Abs.apply(x)


class Sign(Function):
    def forward(self, x):
        return xp_of(x).sign(x)

    def backward(self, gy):
        return xp_of(gy).zeros_like(gy)


def sign(x: Tensor) -> Tensor:
    return Sign.apply(x)


class Exp(Function):
    def forward(self, x):
        self.y = xp_of(x).exp(x)
        return self.y

    def backward(self, gy):
        return gy * self.y


def exp(x: Tensor) -> Tensor:
    return Exp.apply(x)


class Log(Function):
    def forward(self, x):
        self.x = x
        return xp_of(x).log(x)

    def backward(self, gy):
        return gy / self.x


def log(x: Tensor) -> Tensor:
    return Log.apply(x)


class Log1p(Function):
    def forward(self, x):
        self.x = x
        return xp_of(x).log1p(x)

    def backward(self, gy):
        return gy / (1 + self.x)


def log1p(x: Tensor) -> Tensor:
    return Log1p.apply(x)


class Sqrt(Function):
    def forward(self, x):
        self.y = xp_of(x).sqrt(x)
        return self.y

    def backward(self, gy):
        return gy / (2 * self.y)


def sqrt(x: Tensor) -> Tensor:
    return Sqrt.apply(x)


def rsqrt(x: Tensor) -> Tensor:
    return PowScalar.apply(x, p=-0.5)


def square(x: Tensor) -> Tensor:
    return PowScalar.apply(x, p=2)


class Sin(Function):
    def forward(self, x):
        self.x = x
        return xp_of(x).sin(x)

    def backward(self, gy):
        return gy * xp_of(gy).cos(self.x)


def sin(x: Tensor) -> Tensor:
    return Sin.apply(x)


class Cos(Function):
    def forward(self, x):
        self.x = x
        return xp_of(x).cos(x)

    def backward(self, gy):
        return -gy * xp_of(gy).sin(self.x)


def cos(x: Tensor) -> Tensor:
    return Cos.apply(x)


class Clamp(Function):
    """Clip to [lo, hi]; the gradient passes where the input was inside the range."""

    def forward(self, x, lo, hi):
        xp = xp_of(x)
        self.mask = xp.ones(x.shape, dtype=bool)
        if lo is not None:
            self.mask &= x >= lo
        if hi is not None:
            self.mask &= x <= hi
        return xp.clip(x, lo, hi)

    def backward(self, gy):
        return gy * self.mask


def clamp(x: Tensor, min=None, max=None) -> Tensor:  # noqa: A002 - PyTorch's names
    """Limit values to [min, max] (either may be None)."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    if min is not None and max is not None and min > max:
        raise ValueError(f"clamp: min ({min}) is greater than max ({max})")
    return Clamp.apply(x, lo=min, hi=max)


clip = clamp


class Maximum(Function):
    """Elementwise max; on ties the gradient is split evenly, as in PyTorch."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return xp_of(a).maximum(a, b)

    def backward(self, gy):
        w = (self.a > self.b) + 0.5 * (self.a == self.b)
        w = w.astype(gy.dtype)
        ga = gy * w if self.needs_input_grad[0] else None
        gb = gy * (1 - w) if self.needs_input_grad[1] else None
        return ga, gb


def maximum(a, b) -> Tensor:
    return _binary(Maximum, "maximum", a, b)


def minimum(a, b) -> Tensor:
    return neg(maximum(neg(a) if isinstance(a, Tensor) else -a, neg(b) if isinstance(b, Tensor) else -b))


class Where(Function):
    """cond ? a : b, with cond a boolean array passed as an attribute."""

    def forward(self, a, b, cond):
        self.cond = cond
        return xp_of(a).where(cond, a, b)

    def backward(self, gy):
        zero = xp_of(gy).zeros((), dtype=gy.dtype)
        ga = xp_of(gy).where(self.cond, gy, zero) if self.needs_input_grad[0] else None
        gb = xp_of(gy).where(self.cond, zero, gy) if self.needs_input_grad[1] else None
        return ga, gb


def where(condition, a, b) -> Tensor:
    """Pick from ``a`` where ``condition`` holds, else from ``b`` (all broadcast)."""
    from ember.ops.shape import broadcast_to

    like = a if isinstance(a, Tensor) else b
    if not isinstance(like, Tensor):
        raise TypeError("where: at least one of a and b must be a Tensor")
    a, b = as_tensor_like(a, like), as_tensor_like(b, like)
    cond = condition.data if isinstance(condition, Tensor) else xp_of(like.data).asarray(condition)
    if cond.dtype != np.bool_:
        cond = cond.astype(bool)
    try:
        shape = np.broadcast_shapes(cond.shape, a.data.shape, b.data.shape)
    except ValueError:
        raise ShapeError(
            f"where: condition {tuple(cond.shape)}, a {a.shape} and b {b.shape} cannot be broadcast together"
        ) from None
    if a.data.dtype != b.data.dtype:
        dtype = np.result_type(a.data.dtype, b.data.dtype)
        a, b = astype(a, dtype), astype(b, dtype)
    if a.shape != shape:
        a = broadcast_to(a, shape)
    if b.shape != shape:
        b = broadcast_to(b, shape)
    return Where.apply(a, b, cond=xp_of(cond).broadcast_to(cond, shape))

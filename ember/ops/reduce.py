"""Reductions: sum, mean, var/std, max/min, logsumexp, softmax, log_softmax, argmax.

``dim`` may be None (all dims), an int or a tuple; ``keepdim`` keeps reduced dims
as size 1. Backwards re-expand the gradient with ``_expand_back``.
"""
from __future__ import annotations

import builtins
from collections import namedtuple

import numpy as np

from ember.autograd import Function
from ember.backend import xp_of
from ember.errors import DTypeError
from ember.tensor import Tensor

__all__ = [
    "sum", "mean", "var", "std", "max", "min", "amax", "amin", "logsumexp", "softmax", "log_softmax",
    "argmax", "argmin", "prod", "norm", "all", "any", "count_nonzero",
]

ValuesIndices = namedtuple("ValuesIndices", "values indices")
ValuesIndices.__doc__ = "(values, indices), as max(x, dim), sort and topk return them (``.values``, ``.indices``)."


def _axes(op: str, dim, ndim: int):
    """Normalize ``dim`` to a sorted tuple of non-negative axes (None -> all)."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    for d in dims:
        if not -builtins.max(ndim, 1) <= d < builtins.max(ndim, 1):
            raise IndexError(f"{op}: dim {d} is out of range for a tensor with {ndim} dimensions")
        out.append(d % builtins.max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: dim {dim} repeats an axis")
    return tuple(sorted(out)) if ndim else ()


def _expand_back(g, shape, axes, keepdim):
    """Reshape a reduced gradient so it broadcasts against the input shape."""
    if not keepdim:
        g = g.reshape([1 if i in axes else n for i, n in enumerate(shape)])
    return g


class Sum(Function):
    def forward(self, x, axes, keepdim):
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        return x.sum(axis=axes, keepdims=keepdim)

    def backward(self, gy):
        g = _expand_back(gy, self.shape, self.axes, self.keepdim)
        return xp_of(g).broadcast_to(g, self.shape)  # a read-only view; no copy


def sum(x: Tensor, dim=None, keepdim: bool = False, dtype=None) -> Tensor:  # noqa: A001
    """Sum over ``dim`` (all dims by default)."""
    if dtype is not None:
        from ember.ops.elementwise import astype

        x = astype(x, dtype)
    elif x.dtype == np.bool_:
        from ember.ops.elementwise import astype

        x = astype(x, np.int64)
    return Sum.apply(x, axes=_axes("sum", dim, x.ndim), keepdim=keepdim)


def mean(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Mean over ``dim`` (all dims by default)."""
    if x.dtype.kind not in "fc":
        raise DTypeError(f"mean: expected a floating point tensor, got {x.dtype}; convert with .float()")
    axes = _axes("mean", dim, x.ndim)
    n = int(np.prod([x.shape[a] for a in axes])) if axes else 1
    return sum(x, axes, keepdim) * (1.0 / n if n else float("nan"))


class Var(Function):
    """Variance with Bessel-style ``correction`` (1 = unbiased, 0 = biased)."""

    def forward(self, x, axes, correction, keepdim):
        xp = xp_of(x)
        n = int(np.prod([x.shape[a] for a in axes])) if axes else 1
        self.mu = x.mean(axis=axes, keepdims=True)
        self.xc = x - self.mu
        self.div = builtins.max(n - correction, 0)
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        with np.errstate(divide="ignore", invalid="ignore"):
            v = (self.xc * self.xc).sum(axis=axes, keepdims=keepdim) / x.dtype.type(self.div)
        return v.astype(x.dtype) if self.div else xp.full(v.shape, np.nan, dtype=x.dtype)

    def backward(self, gy):
        g = _expand_back(gy, self.shape, self.axes, self.keepdim)
        return (g * (2.0 / self.div if self.div else np.nan)) * self.xc



def var(x: Tensor, dim=None, *, correction: int = 1, keepdim: bool = False, unbiased: bool | None = None) -> Tensor:
    """Variance over ``dim``; ``correction=1`` (default) divides by N - 1."""
    if unbiased is not None:
        correction = 1 if unbiased else 0
    return Var.apply(x, axes=_axes("var", dim, x.ndim), correction=correction, keepdim=keepdim)


def std(x: Tensor, dim=None, *, correction: int = 1, keepdim: bool = False, unbiased: bool | None = None) -> Tensor:
    """Standard deviation: sqrt(var)."""
    return var(x, dim, correction=correction, keepdim=keepdim, unbiased=unbiased) ** 0.5


class Amax(Function):
    """Max over axes; ties share the gradient evenly (PyTorch's amax rule)."""

    def forward(self, x, axes, keepdim):
        y = x.max(axis=axes, keepdims=True)
        self.x, self.y, self.axes, self.keepdim = x, y, axes, keepdim
        return y if keepdim else y.reshape([n for i, n in enumerate(x.shape) if i not in axes])

    def backward(self, gy):
        g = _expand_back(gy, self.x.shape, self.axes, self.keepdim)
        mask = self.x == self.y
        count = mask.sum(axis=self.axes, keepdims=True)
        return (g * mask / count).astype(gy.dtype)


def _check_nonempty(op, x, axes):
    if builtins.any(x.shape[a] == 0 for a in axes) or (not axes and x.numel() == 0):
        raise ValueError(f"{op}: cannot reduce an empty dimension (shape {x.shape})")


def amax(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    axes = _axes("amax", dim, x.ndim)
    _check_nonempty("amax", x, axes)
    return Amax.apply(x, axes=axes, keepdim=keepdim)


def amin(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    return -amax(-x, dim, keepdim)


def max(x: Tensor, dim=None, keepdim: bool = False):  # noqa: A001
    """``max(x)`` -> the largest value; ``max(x, dim)`` -> (values, indices) like PyTorch."""
    if dim is None:
        return amax(x)
    if not isinstance(dim, int):
        raise TypeError("max: dim must be an int (use amax for several dims)")
    return ValuesIndices(amax(x, dim, keepdim), argmax(x, dim, keepdim))


def min(x: Tensor, dim=None, keepdim: bool = False):  # noqa: A001
    if dim is None:
        return amin(x)
    if not isinstance(dim, int):
        raise TypeError("min: dim must be an int (use amin for several dims)")
    return ValuesIndices(amin(x, dim, keepdim), argmin(x, dim, keepdim))


def argmax(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Index of the first maximum (no gradient)."""
    if dim is None:
        return Tensor(xp_of(x.data).asarray(x.data.argmax(), dtype=np.int64))
    d = _axes("argmax", dim, x.ndim)[0]
    return Tensor(x.data.argmax(axis=d, keepdims=keepdim).astype(np.int64))


def argmin(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    if dim is None:
        return Tensor(xp_of(x.data).asarray(x.data.argmin(), dtype=np.int64))
    d = _axes("argmin", dim, x.ndim)[0]
    return Tensor(x.data.argmin(axis=d, keepdims=keepdim).astype(np.int64))


class LogSumExp(Function):
    def forward(self, x, axes, keepdim):
        xp = xp_of(x)
        m = x.max(axis=axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)  # all -inf rows: avoid inf - inf
        s = xp.log(xp.exp(x - m).sum(axis=axes, keepdims=True)) + m
        self.x, self.s, self.axes, self.keepdim = x, s, axes, keepdim
        return s if keepdim else s.reshape([n for i, n in enumerate(x.shape) if i not in axes])

    def backward(self, gy):
        g = _expand_back(gy, self.x.shape, self.axes, self.keepdim)
        return g * xp_of(g).exp(self.x - self.s)


def logsumexp(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """log(sum(exp(x))) computed stably (the max is subtracted first)."""
    return LogSumExp.apply(x, axes=_axes("logsumexp", dim, x.ndim), keepdim=keepdim)


class Softmax(Function):
    def forward(self, x, axis):
        xp = xp_of(x)
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        self.y = e / e.sum(axis=axis, keepdims=True)
        self.axis = axis
        return self.y

    def backward(self, gy):
        y = self.y
        return y * (gy - (gy * y).sum(axis=self.axis, keepdims=True))


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim``, stable for large inputs."""
    return Softmax.apply(x, axis=_axes("softmax", dim, x.ndim)[0] if x.ndim else None)


class LogSoftmax(Function):
    def forward(self, x, axis):
        xp = xp_of(x)
        z = x - x.max(axis=axis, keepdims=True)
        y = z - xp.log(xp.exp(z).sum(axis=axis, keepdims=True))
        self.y, self.axis = y, axis
        return y

    def backward(self, gy):
        xp = xp_of(gy)
        return gy - xp.exp(self.y) * gy.sum(axis=self.axis, keepdims=True)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """x - logsumexp(x) along ``dim``; finite even for logits like 1e8."""
    return LogSoftmax.apply(x, axis=_axes("log_softmax", dim, x.ndim)[0] if x.ndim else None)


def prod(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Product as exp(sum(log|x|)) with signs is unstable; use a direct op."""
    return Prod.apply(x, axes=_axes("prod", dim, x.ndim), keepdim=keepdim)


class Prod(Function):
    def forward(self, x, axes, keepdim):
        self.x, self.axes, self.keepdim = x, axes, keepdim
        self.y = x.prod(axis=axes, keepdims=True)
        return self.y if keepdim else self.y.reshape([n for i, n in enumerate(x.shape) if i not in axes])

    def backward(self, gy):
        xp = xp_of(gy)
        g = _expand_back(gy, self.x.shape, self.axes, self.keepdim)
        # product of the others; exact also when x has zeros (no division)
        moved = xp.moveaxis(self.x, self.axes, range(-len(self.axes), 0))
        flat = moved.reshape(moved.shape[: moved.ndim - len(self.axes)] + (-1,))
        ones = xp.ones(flat.shape[:-1] + (1,), dtype=flat.dtype)
        left = xp.concatenate([ones, xp.cumprod(flat, axis=-1)[..., :-1]], axis=-1)
        right = xp.flip(xp.concatenate([ones, xp.cumprod(xp.flip(flat, -1), axis=-1)[..., :-1]], axis=-1), -1)
        others = (left * right).reshape(moved.shape)
        others = xp.moveaxis(others, range(-len(self.axes), 0), self.axes)
        return (g * others).astype(gy.dtype)


def norm(x: Tensor, p=2, dim=None, keepdim: bool = False) -> Tensor:
    """Vector p-norm over ``dim`` (all dims when None), as ``torch.norm``/``torch.linalg.vector_norm``.

    ``p``: any real, ``inf``/``-inf``, 0 (the count of non-zeros) or "fro" (= 2). The gradient is
    PyTorch's subgradient: 0 where the norm is 0 (ember/ops/distance.py's VectorNorm).
    """
    from ember.ops.distance import _check_p, _float, _vector_norm

    _float("norm", "input", x)
    if p == "fro":
        p = 2
    if isinstance(p, str) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise ValueError(f"norm: p must be a number, inf or 'fro', got {p!r}")
    axes = _axes("norm", dim, x.ndim)
    _check_p("norm", float(p), x, axes)
    return _vector_norm(x, float(p), axes, keepdim)


def all(x: Tensor, dim=None) -> Tensor:  # noqa: A001
    return Tensor(x.data.all(axis=dim))


def any(x: Tensor, dim=None) -> Tensor:  # noqa: A001
    return Tensor(x.data.any(axis=dim))


def count_nonzero(x: Tensor, dim=None) -> Tensor:
    return Tensor(xp_of(x.data).asarray(xp_of(x.data).count_nonzero(x.data, axis=dim), dtype=np.int64))

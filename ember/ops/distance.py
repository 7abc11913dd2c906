"""Vector norms and the distance functions (normalize, cosine_similarity, pairwise_distance, pdist).

``VectorNorm`` is a primitive for PyTorch's exact subgradients: 0 where the norm is 0 (where
sqrt's chain rule would give inf * 0 = nan) and at zero entries. ``ClampMinDetached`` is a clamp
the gradient passes through unchanged (PyTorch clamps the norms in cosine_similarity, and the
variance in gaussian_nll_loss, in place under no_grad). ember.ops.reduce.norm and the margin
losses (ember/ops/margin.py) use both.
"""
from __future__ import annotations

import math

import numpy as np

from ember.autograd import Function
from ember.backend import check_same_device, xp_of
from ember.errors import DTypeError, ShapeError
from ember.ops.elementwise import clamp
from ember.ops.reduce import _axes
from ember.ops.reduce import sum as _sum
from ember.ops.shape import broadcast_to, getitem
from ember.tensor import Tensor

__all__ = ["normalize", "cosine_similarity", "pairwise_distance", "pdist"]


# ---- checks (shared with ember/ops/margin.py) ------------------------------------------------------------
def _tensor(op: str, name: str, x) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: {name} must be an ember Tensor, got {type(x).__name__}")


def _float(op: str, name: str, x) -> None:
    _tensor(op, name, x)
    if x.dtype.kind != "f":
        raise DTypeError(f"{op}: {name} must be floating point, got {x.dtype}")


def _floats(op: str, **named) -> None:
    """Float tensors on one device."""
    for name, x in named.items():
        _float(op, name, x)
    check_same_device(op, *(x.data for x in named.values()))


def _broadcast(op: str, **named) -> tuple:
    """The common shape of the named tensors, or a ShapeError listing all of them."""
    try:
        return np.broadcast_shapes(*(t.shape for t in named.values()))
    except ValueError:
        shapes = ", ".join(f"{k} {t.shape}" for k, t in named.items())
        raise ShapeError(f"{op}: shapes do not broadcast together ({shapes})") from None


# ---- primitives ---------------------------------------------------------------------------------------
class VectorNorm(Function):
    """||x + shift||_p over ``axes`` (kept as size-1 dims if ``keepdim``), with PyTorch's subgradients.

    d||x||/dx = sign(x) (|x| / ||x||)^(p-1): x / ||x|| for p = 2, sign(x) for p = 1, 0 for p = 0;
    for p = +-inf sign(x) on the entries that attain the norm, shared evenly among ties
    (``split_ties=False`` gives each tie the full sign, as torch.pdist does). It is 0 where the
    norm is 0 and at zero entries (no inf * 0 = nan there). ``shift`` is a number added to every
    entry first (pairwise_distance's eps): inside the op it saves recording an add of a constant.
    """

    def forward(self, x, p, axes, split_ties, keepdim=True, shift=0.0):
        xp = xp_of(x)
        if shift:
            x = x + x.dtype.type(shift)
        a = None if p == 2 else xp.abs(x)  # p = 2 needs no |x|, in forward or backward
        if p == 2:
            n = xp.sqrt((x * x).sum(axis=axes, keepdims=True))
        elif p == 1:
            n = a.sum(axis=axes, keepdims=True)
        elif p == 0:
            n = (x != 0).sum(axis=axes, keepdims=True)
        elif math.isinf(p):
            n = a.max(axis=axes, keepdims=True) if p > 0 else a.min(axis=axes, keepdims=True)
        else:
            with np.errstate(divide="ignore"):  # 0 ** (p < 0) = inf: the norm is then 0, as in PyTorch
                n = (a ** p).sum(axis=axes, keepdims=True) ** (1.0 / p)
        self.x, self.a, self.n, self.p, self.axes, self.split = x, a, n, p, axes, split_ties
        n = n.astype(x.dtype, copy=False)
        return n if keepdim else n.reshape(tuple(s for i, s in enumerate(x.shape) if i not in axes))

    def backward(self, gy):
        xp = xp_of(gy)
        x, a, n, p = self.x, self.a, self.n, self.p
        gy = gy.reshape(n.shape)  # keepdim's size-1 dims back, so that gy broadcasts against x
        if p == 0:
            return xp.zeros(x.shape, dtype=gy.dtype)
        if p == 1:
            return (gy * xp.sign(x)).astype(gy.dtype, copy=False)
        if math.isinf(p):
            hit = (a == n).astype(gy.dtype)
            if self.split:
                hit /= hit.sum(axis=self.axes, keepdims=True)
            return gy * xp.sign(x) * hit
        nz = n > 0
        safe = xp.where(nz, n, 1)
        if p == 2:  # x * (gy / ||x||): the division on the small reduced array, one pass over x
            return (x * xp.where(nz, gy / safe, 0)).astype(gy.dtype, copy=False)
        g = xp.sign(x) * xp.where(a > 0, a / safe, 1) ** (p - 1)
        return (gy * xp.where(nz, g, 0)).astype(gy.dtype, copy=False)


def _vector_norm(x: Tensor, p: float, axes: tuple, keepdim: bool, split_ties: bool = True,
                 shift: float = 0.0) -> Tensor:
    return VectorNorm.apply(x, p=float(p), axes=axes, split_ties=split_ties, keepdim=keepdim, shift=shift)


class ClampMinDetached(Function):
    """max(x, lo) in value, identity in gradient: PyTorch's in-place clamp under no_grad."""

    def forward(self, x, lo):
        return xp_of(x).maximum(x, lo).astype(x.dtype, copy=False)

    def backward(self, gy):
        return gy


def _check_p(op: str, p: float, x: Tensor, axes: tuple) -> None:
    if math.isinf(p) and any(x.shape[a] == 0 for a in axes):
        raise ValueError(f"{op}: the p={p} norm of an empty vector is undefined (input {x.shape}, dims {axes})")


# ---- distances --------------------------------------------------------------------------------------
def normalize(input: Tensor, p: float = 2.0, dim=1, eps: float = 1e-12) -> Tensor:
    """input / max(||input||_p, eps) along ``dim`` (an int or a tuple); output has input's shape."""
    _float("normalize", "input", input)
    axes = _axes("normalize", dim, input.ndim)
    _check_p("normalize", p, input, axes)
    return input / clamp(_vector_norm(input, p, axes, keepdim=True), min=eps)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """sum(x1 / max(||x1||, eps) * x2 / max(||x2||, eps)) along ``dim`` after broadcasting x1 and x2.

    Shapes: x1 (*, D, *) and x2 broadcastable to it -> the broadcast shape without ``dim``. As in
    PyTorch the clamp does not mask the gradient (it is applied to the norms under no_grad).
    """
    op = "cosine_similarity"
    _floats(op, x1=x1, x2=x2)
    shape = _broadcast(op, x1=x1, x2=x2)
    x1, x2 = (x if x.shape == shape else broadcast_to(x, shape) for x in (x1, x2))
    axes = _axes(op, dim, len(shape))
    n1, n2 = (ClampMinDetached.apply(_vector_norm(x, 2, axes, keepdim=True), lo=eps) for x in (x1, x2))
    return _sum((x1 / n1) * (x2 / n2), axes)


def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> Tensor:
    """||x1 - x2 + eps||_p over the last dim of the broadcast shape (eps added to the difference, as in
    PyTorch, so the distance of equal vectors has a gradient). Shapes: (N, D) and (N, D) or (D,) -> (N,)."""
    op = "pairwise_distance"
    _floats(op, x1=x1, x2=x2)
    _broadcast(op, x1=x1, x2=x2)
    d = x1 - x2
    axes = (d.ndim - 1,) if d.ndim else ()
    _check_p(op, p, d, axes)
    return _vector_norm(d, p, axes, keepdim, shift=eps)  # the norm of d + eps


def pdist(input: Tensor, p: float = 2.0) -> Tensor:
    """The p-norm distance between every pair of rows: (N, M) -> (N (N - 1) / 2,), the pairs i < j in
    row-major order (the condensed upper triangle of the distance matrix)."""
    _float("pdist", "input", input)
    if input.ndim != 2:
        raise ShapeError(f"pdist: input must be 2-D (N, M), got shape {input.shape}")
    if p < 0:
        raise ValueError(f"pdist: p must be non-negative, got {p}")
    xp = xp_of(input.data)
    i, j = xp.triu_indices(input.shape[0], 1)
    d = getitem(input, i) - getitem(input, j)  # (K, M): memory O(N^2 M), fine for the sizes pdist suits
    return _vector_norm(d, p if input.shape[1] else 2.0, (1,), keepdim=False, split_ties=False)

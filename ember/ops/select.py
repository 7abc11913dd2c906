"""Picking and ordering along one dimension: gather, masked_fill, sort/argsort/topk, cumsum, roll,
narrow, t and one_hot, with PyTorch's signatures.

Only two of them are primitives with a backward of their own: ``Gather`` (its gradient adds each
picked element's gradient back where it came from) and ``CumSum`` (a reversed cumulative sum).
Sorted values and top-k values are gathers of the input by the sorting indices, so their
gradients flow through ``Gather``; ``roll`` is a permutation whose backward rolls back.
Indices are checked on the host before use: CuPy would wrap an out-of-range index silently.
"""
from __future__ import annotations

import numpy as np

from ember.autograd import Function
from ember.backend import check_same_device, scatter_add, xp_of
from ember.errors import DTypeError, ShapeError
from ember.ops.elementwise import as_tensor_like, where
from ember.ops.reduce import ValuesIndices
from ember.ops.shape import _dim, getitem, transpose
from ember.tensor import Tensor

__all__ = ["gather", "masked_fill", "sort", "argsort", "topk", "cumsum", "roll", "narrow", "t", "one_hot"]


def _index_array(op: str, index):
    """The integer array behind ``index`` (a Tensor, array or list); floats are refused."""
    a = index.data if isinstance(index, Tensor) else np.asarray(index)
    if a.dtype.kind not in "iu":
        raise DTypeError(f"{op}: index must be an integer tensor, got dtype {a.dtype}")
    return a


def _check_range(op: str, what: str, a, lo: int, hi: int, dim: int | None = None) -> None:
    """Raise unless every entry of integer array ``a`` lies in [lo, hi) (one read-back on a GPU)."""
    if a.size == 0:
        return
    small, big = xp_of(a).stack([a.min(), a.max()]).tolist()  # one read-back, not two
    if small < lo or big >= hi:
        where_ = f" for dim {dim}" if dim is not None else ""
        raise IndexError(f"{op}: {what} {small if small < lo else big} is out of range [{lo}, {hi}){where_}")


def _along(index, dim: int) -> tuple:
    """The fancy index that picks ``x[i0, .., index[i0, .., ik], .., ik]`` for every position of
    ``index``: ``index`` itself on axis ``dim``, on every other axis d an arange over
    ``index.shape[d]`` shaped to broadcast against it."""
    xp = xp_of(index)
    out = []
    for d, n in enumerate(index.shape):
        if d == dim:
            out.append(index)
        else:
            shape = [1] * index.ndim
            shape[d] = n
            out.append(xp.arange(n).reshape(shape))
    return tuple(out)


class Gather(Function):
    """y[..., i, ...] = x[..., index[..., i, ...], ...] along ``dim``; index (same rank as x)."""

    def forward(self, x, index, dim):
        self.shape, self.dtype, self.at = x.shape, x.dtype, _along(index, dim)
        return x[self.at]

    def backward(self, gy):
        gx = xp_of(gy).zeros(self.shape, dtype=self.dtype)
        scatter_add(gx, self.at, gy)  # an element picked twice gets both gradients
        return gx


def gather(x: Tensor, dim: int, index) -> Tensor:
    """Values of ``x`` along ``dim`` at ``index`` (torch.gather): ``y[i][j] = x[i][index[i][j]]`` for
    dim=1. ``index`` has x's number of dims and, on every other dim, at most x's size there; y has
    index's shape. The classic use: the log-probability of each sample's label,
    ``logp.gather(1, labels[:, None])``."""
    d = _dim("gather", dim, x.ndim)
    idx = _index_array("gather", index)
    if idx.ndim != x.ndim:
        raise ShapeError(f"gather: index has {idx.ndim} dims but input has {x.ndim} (index {idx.shape}, "
                         f"input {x.shape})")
    for k, (n, m) in enumerate(zip(idx.shape, x.shape)):
        if k != d and n > m:
            raise ShapeError(f"gather: index size {n} exceeds input size {m} at dim {k} "
                             f"(index {idx.shape}, input {x.shape})")
    if idx.size and x.shape[d] == 0:
        raise IndexError(f"gather: input has size 0 at dim {d}, nothing to pick")
    _check_range("gather", "index", idx, 0, x.shape[d], d)
    check_same_device("gather", x.data, idx)
    return Gather.apply(x, index=idx.astype(np.int64, copy=False), dim=d)


def masked_fill(x: Tensor, mask, value) -> Tensor:
    """x with ``value`` where the boolean ``mask`` (broadcast to x's shape) is True. The gradient
    reaches x where the mask is False (and a tensor ``value`` where it is True)."""
    m = mask.data if isinstance(mask, Tensor) else xp_of(x.data).asarray(mask)
    check_same_device("masked_fill", x.data, m)
    if m.dtype != np.bool_:
        raise DTypeError(f"masked_fill: mask must be a bool tensor, got dtype {m.dtype}")
    try:
        ok = np.broadcast_shapes(tuple(m.shape), x.shape) == x.shape
    except ValueError:
        ok = False
    if not ok:
        raise ShapeError(f"masked_fill: mask of shape {tuple(m.shape)} does not broadcast to the input's {x.shape}")
    if isinstance(value, Tensor) and value.ndim != 0:
        raise ShapeError(f"masked_fill: value must be a number or a 0-d tensor, got shape {value.shape}")
    return where(Tensor(m), as_tensor_like(value, x).astype(x.dtype), x)


def _stable_argsort(a, axis: int):
    # CuPy's argsort is always stable (and older CuPy refuses a ``kind``); NumPy's default is not
    xp = xp_of(a)
    return np.argsort(a, axis=axis, kind="stable") if xp is np else xp.argsort(a, axis=axis)


def argsort(x: Tensor, dim: int = -1, descending: bool = False, stable: bool = True) -> Tensor:
    """Indices (int64) that sort ``x`` along ``dim``; equal values keep their order (stable) either
    way; NaN counts as the largest value, as in PyTorch. No gradient."""
    d = _dim("argsort", dim, x.ndim) if x.ndim else 0
    xp, a = xp_of(x.data), x.data
    if a.ndim == 0:
        return Tensor(xp.zeros((), dtype=np.int64))
    if not descending:
        return Tensor(_stable_argsort(a, d).astype(np.int64, copy=False))
    # descending and stable: sort the reversed array ascending, map back, reverse the order
    n = a.shape[d]
    up = _stable_argsort(xp.flip(a, d), d)
    return Tensor((n - 1 - xp.flip(up, d)).astype(np.int64, copy=False))


def sort(x: Tensor, dim: int = -1, descending: bool = False, stable: bool = True) -> ValuesIndices:
    """(values, indices) of ``x`` sorted along ``dim``; the values carry the gradient back to
    where each came from."""
    idx = argsort(x, dim, descending)
    if x.ndim == 0:
        return ValuesIndices(x * 1, idx)
    return ValuesIndices(Gather.apply(x, index=idx.data, dim=_dim("sort", dim, x.ndim)), idx)


def topk(x: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> ValuesIndices:  # noqa: A002
    """The ``k`` largest (or smallest) values along ``dim`` and their indices, largest first (or
    smallest first); e.g. top-5 accuracy: ``(out.topk(5).indices == y[:, None]).any(1)``."""
    d = _dim("topk", dim, x.ndim) if x.ndim else 0
    n = x.shape[d] if x.ndim else 1
    if not isinstance(k, (int, np.integer)) or not 0 <= k <= n:
        raise ValueError(f"topk: k must be an int in [0, {n}] (the size of dim {d}), got {k!r}")
    order = argsort(x, d, descending=largest)
    if x.ndim == 0:
        return ValuesIndices(x * 1, order)
    idx = order.data[(slice(None),) * d + (slice(0, int(k)),)]
    return ValuesIndices(Gather.apply(x, index=idx, dim=d), Tensor(idx))


class CumSum(Function):
    def forward(self, x, dim):
        self.dim = dim
        return xp_of(x).cumsum(x, axis=dim, dtype=x.dtype)

    def backward(self, gy):
        # y_j = sum_{i <= j} x_i, so dL/dx_i = sum_{j >= i} gy_j: a cumulative sum from the end
        xp, d = xp_of(gy), self.dim
        return xp.flip(xp.cumsum(xp.flip(gy, d), axis=d, dtype=gy.dtype), d)


def cumsum(x: Tensor, dim: int) -> Tensor:
    """Cumulative sum along ``dim`` (torch.cumsum); integer and bool inputs sum as int64."""
    d = _dim("cumsum", dim, x.ndim) if x.ndim else 0
    if x.dtype.kind in "biu":
        return Tensor(xp_of(x.data).cumsum(x.data.reshape(x.shape or (1,)), axis=d, dtype=np.int64).reshape(x.shape))
    if x.ndim == 0:
        return x * 1
    return CumSum.apply(x, dim=d)


class Roll(Function):
    def forward(self, x, shifts, dims):
        self.shifts, self.dims = shifts, dims
        return xp_of(x).roll(x, shifts, axis=dims)

    def backward(self, gy):
        back = tuple(-s for s in self.shifts) if isinstance(self.shifts, tuple) else -self.shifts
        return xp_of(gy).roll(gy, back, axis=self.dims)


def roll(x: Tensor, shifts, dims=None) -> Tensor:
    """Shift elements along ``dims`` cyclically (torch.roll); without dims, over the flattened tensor."""
    if dims is None:
        if not isinstance(shifts, (int, np.integer)):
            raise ValueError(f"roll: without dims, shifts must be one int, got {shifts!r}")
        return Roll.apply(x, shifts=int(shifts), dims=None)
    shifts = (shifts,) if isinstance(shifts, (int, np.integer)) else tuple(shifts)
    dims = (dims,) if isinstance(dims, (int, np.integer)) else tuple(dims)
    if len(shifts) != len(dims):
        raise ValueError(f"roll: {len(shifts)} shifts for {len(dims)} dims (shifts {shifts}, dims {dims})")
    dims = tuple(_dim("roll", d, x.ndim) for d in dims)
    return Roll.apply(x, shifts=tuple(int(s) for s in shifts), dims=dims)


def narrow(x: Tensor, dim: int, start: int, length: int) -> Tensor:
    """``length`` entries of ``x`` along ``dim`` from ``start`` (a view's values, like slicing)."""
    d = _dim("narrow", dim, x.ndim)
    n = x.shape[d]
    s = start + n if start < 0 else start
    if not 0 <= s <= n or length < 0 or s + length > n:
        raise IndexError(f"narrow: start {start} and length {length} do not fit dim {d} of size {n}")
    return getitem(x, (slice(None),) * d + (slice(s, s + length),))


def t(x: Tensor) -> Tensor:
    """The transpose of a matrix (a 0-d or 1-d tensor as it is), as ``torch.t``."""
    if x.ndim > 2:
        raise ShapeError(f"t: expects a tensor with at most 2 dims, got shape {x.shape} (use transpose or mT)")
    return transpose(x, 0, 1) if x.ndim == 2 else x


def one_hot(labels: Tensor, num_classes: int = -1) -> Tensor:
    """int64 tensor of shape (*labels.shape, num_classes) with a 1 at each label (F.one_hot);
    ``num_classes=-1`` takes the largest label + 1. Labels outside [0, num_classes) raise."""
    a = _index_array("one_hot", labels)
    xp = xp_of(a)
    if num_classes == -1:
        if a.size == 0:
            raise ValueError("one_hot: cannot infer num_classes from an empty tensor; pass num_classes")
        _check_range("one_hot", "label", a, 0, 2 ** 62)
        num_classes = int(a.max()) + 1
    elif not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"one_hot: num_classes must be a positive int or -1, got {num_classes!r}")
    else:
        _check_range("one_hot", "label", a, 0, int(num_classes))
    return Tensor((a[..., None] == xp.arange(num_classes)).astype(np.int64))

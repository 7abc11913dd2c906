"""Embedding lookup: row ``input[...]`` of a (num_embeddings, embedding_dim) table, as ``F.embedding``.

The forward is one ``take`` of whole rows. The gradient of the table is zero except in
the rows that were looked up, where it is the sum of the output gradients of every
position that picked that row (a row picked twice gets both). ``padding_idx`` marks a
row whose gradient is always zero (a "no token" entry that training never moves),
``scale_grad_by_freq`` divides each row's gradient by how often the batch picked it,
and ``max_norm`` rescales the rows about to be looked up, in place, so that their
``norm_type``-norm is at most ``max_norm`` (PyTorch's renormalization, done before the
lookup). Indices are checked on the host first: CuPy would wrap an out-of-range one.
"""
from __future__ import annotations

import math

import numpy as np

from ember.autograd import Function, no_grad
from ember.backend import check_same_device, scatter_add, xp_of
from ember.errors import DTypeError, GraphError, ShapeError
from ember.ops.select import _check_range
from ember.tensor import Tensor

__all__ = ["embedding"]


def _sum_rows(idx, g, n_rows: int, scale_by_freq: bool):
    """(n_rows, D) array whose row r is the sum of the rows g[k] with idx[k] == r (divided by the
    number of such k when ``scale_by_freq``); idx (K,) integers, g (K, D)."""
    xp, d = xp_of(g), g.shape[1]
    gw = xp.zeros((n_rows, d), dtype=g.dtype)
    if xp is np:
        add_idx, add_g = idx, g
        if 2 * idx.size <= n_rows:
            # Few rows can be picked twice: sort the picks, write each picked row's first gradient
            # (a plain row copy) and leave only the repeats to add (1.5x faster for 1e3 lookups
            # into 1e4-5e4 rows; with many repeats the sort costs more than it saves).
            order = np.argsort(idx, kind="stable")
            rows = idx[order]
            first = np.ones(rows.shape, dtype=bool)
            first[1:] = rows[1:] != rows[:-1]
            gw[rows[first]] = g[order[first]]
            add_idx, add_g = rows[~first], g[order[~first]]
        # One index per element into the flattened table: NumPy's add.at has a fast path for 1-D
        # operands, 3-6x faster than adding whole rows (np.add.at(gw, idx, g)) and 1.1-3.4x faster
        # than sort + reduceat (NumPy 2.4; vocabularies 1e2-5e4, dims 16-300, 1e3-1e5 lookups).
        flat = (add_idx.astype(np.int64)[:, None] * d + np.arange(d)).reshape(-1)
        np.add.at(gw.reshape(-1), flat, add_g.reshape(-1))
    else:  # CuPy: atomic adds of whole rows (no K*D index array in GPU memory)
        scatter_add(gw, idx, g)
    if scale_by_freq:
        counts = xp.bincount(idx, minlength=n_rows)
        gw /= xp.maximum(counts, 1).astype(g.dtype)[:, None]
    return gw


class Embedding(Function):
    """y = w[idx] for integer idx (*): (*, D); backward sums gy's rows into each picked row of w."""

    saved_inputs = (1,)  # backward reads the indices, not the table (max_norm may rescale it later)

    def forward(self, w, idx, padding_idx, scale_grad_by_freq):
        self.idx, self.w_shape = idx, w.shape
        self.padding_idx, self.scale = padding_idx, scale_grad_by_freq
        return xp_of(w).take(w, idx, axis=0)

    def backward(self, gy):
        n, d = self.w_shape
        gw = _sum_rows(self.idx.reshape(-1), gy.reshape(-1, d), n, self.scale)
        if self.padding_idx is not None:
            gw[self.padding_idx] = 0
        return gw


def _row_norms(rows, norm_type: float):
    """The ``norm_type``-norm of each row of (K, D) ``rows`` (inf: largest |entry|, 0: nonzero count)."""
    xp, a = xp_of(rows), abs(rows)
    if norm_type == math.inf:
        return a.max(axis=1)
    if norm_type == -math.inf:
        return a.min(axis=1)
    if norm_type == 0:
        return (a != 0).sum(axis=1).astype(rows.dtype)
    if norm_type == 2:
        return xp.sqrt((a * a).sum(axis=1))
    return (a ** norm_type).sum(axis=1) ** (1.0 / norm_type)


def _renorm_(weight: Tensor, idx, max_norm: float, norm_type: float) -> None:
    """Scale the rows of ``weight`` that ``idx`` picks, in place and outside the graph, so each has
    norm at most ``max_norm``: a row with norm n > max_norm is multiplied by max_norm / (n + 1e-7),
    PyTorch's formula. Rows already within the bound are not written (the version stays)."""
    if weight.requires_grad and weight.grad_fn is not None:
        raise GraphError("embedding: max_norm rescales the weight in place, which a weight computed by other "
                         "ops (requires_grad, not a leaf) does not allow; pass a leaf tensor")
    xp = xp_of(weight.data)
    rows = xp.unique(idx.reshape(-1))  # each picked row once
    if rows.size == 0 or weight.shape[1] == 0:
        return
    w = weight.data[rows]
    norms = _row_norms(w, norm_type)
    over = norms > max_norm
    if not bool(over.any()):  # (one read-back on a GPU)
        return
    scale = max_norm / (norms[over].astype(np.float64) + 1e-7)
    with no_grad():
        weight[rows[over]] = w[over] * scale.astype(w.dtype)[:, None]


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None, max_norm: float | None = None,  # noqa: A002
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Rows of ``weight`` (num_embeddings, embedding_dim) at the integer ``input`` (*): (*, embedding_dim).

    ``padding_idx`` (negative counts from the end): that row gets no gradient. ``max_norm``: first
    rescale the picked rows of ``weight`` in place to ``norm_type``-norm at most ``max_norm``.
    ``scale_grad_by_freq``: divide each row's gradient by its count in ``input``. ``sparse`` gradients
    are not supported. ``input`` is an int64 or int32 tensor with values in [0, num_embeddings).
    """
    if sparse:
        raise NotImplementedError("embedding: sparse=True (sparse gradients) is not supported by ember; "
                                  "use sparse=False, the gradient is then a dense (num_embeddings, dim) array")
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        shape = weight.shape if isinstance(weight, Tensor) else type(weight).__name__
        raise ShapeError(f"embedding: weight must be a 2-D (num_embeddings, embedding_dim) tensor, got {shape}")
    idx = input.data if isinstance(input, Tensor) else xp_of(weight.data).asarray(input)
    if idx.dtype not in (np.int64, np.int32):
        raise DTypeError(f"embedding: input (the indices) must be an int64 or int32 tensor, got dtype {idx.dtype}")
    check_same_device("embedding", weight.data, idx)
    n = weight.shape[0]
    try:
        _check_range("embedding", "index", idx, 0, n)
    except IndexError as e:
        raise IndexError(f"{e} (weight {weight.shape} has num_embeddings={n} rows)") from None
    if padding_idx is not None:
        if not -n <= int(padding_idx) < n:
            raise ValueError(f"embedding: padding_idx {padding_idx} must be within num_embeddings {n} "
                             f"(in [{-n}, {n}))")
        padding_idx = int(padding_idx) % n
    if max_norm is not None:
        _renorm_(weight, idx, float(max_norm), float(norm_type))
    return Embedding.apply(weight, idx=idx, padding_idx=padding_idx, scale_grad_by_freq=bool(scale_grad_by_freq))

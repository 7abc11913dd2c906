"""More pooling: adaptive average/max, max-unpooling, Lp pooling, pooling across channels.

* Adaptive pooling picks, for output cell i of an axis of input size n and output size
  m, the bin ``[floor(i*n/m), ceil((i+1)*n/m))`` (PyTorch's rule; bins may overlap).
  When m divides n the bins are plain tiles and the ordinary pools run. Otherwise
  average pooling is the separable linear map ``Ah @ x @ Aw.T`` with averaging
  matrices (shared with interpolate), and max pooling gathers one offset of every bin
  at a time (a loop over the largest bin's offsets, not over pixels) and sends the
  gradient back with a scatter-add over flat positions. Fractional max pooling
  (ember/ops/pool_fractional.py) reuses that gather-and-scatter machinery.
* The 1-D pools (adaptive, Lp, unpooling) run their 2-D versions on a (N, C, 1, L) view.
* ``maxout`` (Goodfellow et al., 2013) and ``channel_pool`` pool along the channel axis
  by viewing (N, C, *S) as a one-channel (N, 1, C, prod(S)) image and running the
  spatial pool with a (k, 1) kernel, so they share its fast paths and its tie rule.
"""
from __future__ import annotations

import numpy as np

from ember.autograd import Function
from ember.backend import scatter_add, xp_of
from ember.errors import ShapeError
from ember.ops import elementwise as E
from ember.ops.activation import relu
from ember.ops.pool import _as_2d, _batched, _pair, _unbatch, avg_pool2d, max_pool1d, max_pool2d
from ember.ops.shape import reshape
from ember.ops.upsample import Resample2d
from ember.tensor import Tensor

__all__ = ["adaptive_avg_pool2d", "adaptive_max_pool2d", "max_unpool2d", "lp_pool2d", "maxout", "channel_pool",
           "adaptive_avg_pool1d", "adaptive_max_pool1d", "max_unpool1d", "lp_pool1d", "max_pool1d_with_indices",
           "max_pool2d_with_indices", "adaptive_max_pool1d_with_indices", "adaptive_max_pool2d_with_indices"]


def _adaptive_size(op: str, output_size, spatial: tuple) -> tuple:
    """Normalize output_size (int, or tuple whose None entries keep the input size)."""
    if isinstance(output_size, (int, np.integer)) or output_size is None:
        output_size = (output_size, output_size)
    if not isinstance(output_size, (tuple, list)) or len(output_size) != 2:
        raise TypeError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    out = tuple(n if o is None else int(o) for o, n in zip(output_size, spatial))
    if min(out) <= 0:
        raise ValueError(f"{op}: output_size must be positive, got {output_size}")
    return out


def _bins(n: int, m: int):
    i = np.arange(m)
    return (i * n) // m, -((-(i + 1) * n) // m)  # floor(i n / m), ceil((i + 1) n / m)


def _average_matrix(n: int, m: int, dtype) -> np.ndarray:
    start, end = _bins(n, m)
    cols = np.arange(n)
    inside = (cols >= start[:, None]) & (cols < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """Average over adaptive bins. (N, C, H, W) or (C, H, W) -> (N, C, OH, OW)."""
    x, unb = _batched("adaptive_avg_pool2d", input, 2)
    (h, w), (oh, ow) = x.shape[2:], _adaptive_size("adaptive_avg_pool2d", output_size, x.shape[2:])
    if h % oh == 0 and w % ow == 0:
        y = avg_pool2d(x, (h // oh, w // ow))
    else:
        y = Resample2d.apply(x, ah=_average_matrix(h, oh, x.dtype), aw=_average_matrix(w, ow, x.dtype))
    return _unbatch(y, unb)


def _running_argmax(candidates, has_nan: bool):
    """(max, index of the winning candidate) over ``candidates``: arrays (N, C, ...) holding one
    element of every window each, in row-major window order. Ties keep the first maximum
    (strict '>'); a NaN replaces the running maximum, so a window with NaNs reports its LAST
    NaN, as PyTorch's adaptive and fractional max-pool kernels do.

    The update is branch-free: ``win = maximum(win, take * j)`` on small ints sets ``win`` to
    ``j`` exactly where ``take`` (candidates come in order, so ``j`` exceeds every index stored
    so far); with the random masks of real data, ``where`` runs ~30x slower on NumPy.
    """
    y = win = None
    for j, v in enumerate(candidates):
        xp = xp_of(v)
        if y is None:
            y, win = v, xp.zeros(v.shape, dtype=np.uint8)
            continue
        take = v > y
        if has_nan:
            take |= xp.isnan(v)
        if j == 256:  # more candidates than uint8 counts
            win = win.astype(np.int32)
        xp.maximum(win, take * win.dtype.type(j), out=win)
        y = xp.maximum(y, v)  # equals where(take, v, y): maximum propagates NaN either way
    return y, win


class AdaptiveMaxPool2d(Function):
    """Max over gathered windows; the backward is shared by every pool that saves flat argmax positions."""

    def forward(self, x, out: tuple, sink: dict | None = None):
        xp = xp_of(x)
        n, c, h, w = x.shape
        (r0, r1), (c0, c1) = _bins(h, out[0]), _bins(w, out[1])
        # element (a, b) of every bin, as a flat position within a plane: (KH * KW, OH, OW) for the
        # largest bin's KH x KW offsets; short bins repeat their last row / column (harmless for a max)
        rows = np.minimum(r0 + np.arange(int((r1 - r0).max()))[:, None], r1 - 1)  # (KH, OH)
        cols = np.minimum(c0 + np.arange(int((c1 - c0).max()))[:, None], c1 - 1)  # (KW, OW)
        flats = xp.asarray((rows[:, None, :, None] * w + cols[None, :, None, :]).reshape(-1, out[0], out[1]))
        # x as (H * W, N * C): each pixel's values over all planes form one contiguous row, so the
        # candidates at one offset are a gather of whole rows (OH, OW, N * C), 2x faster than a
        # gather of single values from (N * C, H * W) even with this transposed copy
        rows_x = xp.ascontiguousarray(x.reshape(n * c, h * w).T)

        def candidates():
            return (rows_x.take(f, axis=0) for f in flats)

        y, win = _running_argmax(candidates(), has_nan=False)
        if bool(xp.isnan(y).any()):  # a NaN input shows in y: run again with PyTorch's NaN rule
            y, win = _running_argmax(candidates(), has_nan=True)  # (checking y, not all of x, saves a pass)
        pos = flats[win, xp.arange(out[0])[:, None, None], xp.arange(out[1])[:, None]]  # (OH, OW, N * C)

        def planes_first(a):  # (OH, OW, N * C) -> (N, C, OH, OW)
            return xp.ascontiguousarray(a.transpose(2, 0, 1)).reshape(n, c, out[0], out[1])

        planes = _plane_starts(xp, x.shape)
        return self.save(x.shape, planes_first(pos) + planes, planes, sink, planes_first(y))

    def save(self, shape: tuple, pos, planes, sink: dict | None, y):
        """Keep the argmax positions (N, C, OH, OW) in the flattened input for backward; put the
        positions within each plane (``pos - planes``, PyTorch's indices) in ``sink``; return y."""
        self.pos, self.shape = pos, shape
        if sink is not None:
            sink["indices"] = pos - planes
        return y

    def backward(self, gy):
        xp = xp_of(gy)
        # Overlapping bins can pick the same element, so positions may repeat: add.at sums them
        # (3x faster than bincount, which counts in float64 over every input element).
        gx = xp.zeros(int(np.prod(self.shape)), dtype=gy.dtype)
        scatter_add(gx, self.pos.reshape(-1), gy.reshape(-1))
        return gx.reshape(self.shape)


def _plane_starts(xp, shape: tuple):
    """(N, C, 1, 1) int64: where each (H, W) plane starts in the flattened (N, C, H, W) input."""
    n, c, h, w = shape
    return xp.arange(n * c, dtype=np.int64).reshape(n, c, 1, 1) * (h * w)


def adaptive_max_pool2d(input: Tensor, output_size, return_indices: bool = False):
    """Max over adaptive bins. (N, C, H, W) or (C, H, W) -> (N, C, OH, OW) [, flat indices h*W+w]."""
    x, unb = _batched("adaptive_max_pool2d", input, 2)
    (h, w), (oh, ow) = x.shape[2:], _adaptive_size("adaptive_max_pool2d", output_size, x.shape[2:])
    if x.dtype.kind != "f":
        raise TypeError(f"adaptive_max_pool2d: expected a floating point input, got {x.dtype}")
    if h % oh == 0 and w % ow == 0:
        out = max_pool2d(x, (h // oh, w // ow), return_indices=return_indices)
        return tuple(_unbatch(t, unb) for t in out) if return_indices else _unbatch(out, unb)
    sink: dict | None = {} if return_indices else None
    y = _unbatch(AdaptiveMaxPool2d.apply(x, out=(oh, ow), sink=sink), unb)
    return (y, _unbatch(Tensor(sink["indices"]), unb)) if return_indices else y


class MaxUnpool2d(Function):
    def forward(self, x, idx, out_hw: tuple):
        xp = xp_of(x)
        n, c = x.shape[:2]
        self.rows = xp.arange(n * c).reshape(-1, 1)
        self.idx, self.shape = idx.reshape(n * c, -1), x.shape
        y = xp.zeros((n * c, out_hw[0] * out_hw[1]), dtype=x.dtype)
        y[self.rows, self.idx] = x.reshape(n * c, -1)  # repeated indices: one of the values wins, as in PyTorch
        return y.reshape((n, c) + out_hw)

    def backward(self, gy):
        n, c = self.shape[:2]
        return gy.reshape(n * c, -1)[self.rows, self.idx].reshape(self.shape)


def _unpool_size(op: str, size: tuple, k: tuple, s: tuple, p: tuple, output_size) -> tuple:
    """Unpooled spatial size: ``(n - 1) * stride - 2 * padding + kernel`` per axis, or ``output_size``
    (its last len(k) entries when it also names N and C), which PyTorch allows only strictly
    within one stride of that default."""
    default = tuple((n - 1) * si - 2 * pi + ki for n, si, pi, ki in zip(size, s, p, k))
    if output_size is None:
        return default
    want = (int(output_size),) if isinstance(output_size, (int, np.integer)) else tuple(int(v) for v in output_size)
    if len(want) == len(k) + 2:
        want = want[2:]
    if len(want) != len(k):
        raise ValueError(f"{op}: output_size should have {len(k)} or {len(k) + 2} entries, got {output_size!r}")
    for d, (o, n, si) in enumerate(zip(want, default, s)):
        if not n - si < o < n + si:
            raise ValueError(f"{op}: invalid output_size {output_size!r} (dim {d} must be between "
                             f"{n - si} and {n + si} exclusive for input size {tuple(size)})")
    return want


def max_unpool2d(input: Tensor, indices: Tensor, kernel_size, stride=None, padding=0, output_size=None) -> Tensor:
    """Inverse of max_pool2d: put each value at its flat index, zeros elsewhere.

    (N, C, H, W) values and int indices (from ``max_pool2d(..., return_indices=True)``) ->
    (N, C, OH, OW) with ``OH = (H - 1) * stride - 2 * padding + kernel`` unless ``output_size``.
    """
    k = _pair("max_unpool2d", "kernel_size", kernel_size)
    s = k if stride is None else _pair("max_unpool2d", "stride", stride)
    return _unpool2d("max_unpool2d", input, indices, k, s, _pair("max_unpool2d", "padding", padding), output_size)


def _unpool2d(op: str, input: Tensor, indices: Tensor, k: tuple, s: tuple, p: tuple, output_size) -> Tensor:
    x, unb = _batched(op, input, 2)
    idx = indices.data.reshape(x.shape) if unb and indices.ndim == 3 else indices.data
    if tuple(idx.shape) != x.shape:
        raise ShapeError(f"{op}: indices shape {tuple(idx.shape)} does not match input shape {input.shape}")
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must be integers, got {idx.dtype}")
    out = _unpool_size(op, x.shape[2:], k, s, p, output_size)
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= out[0] * out[1]):
        size = out[1] if op.endswith("1d") else out
        raise IndexError(f"{op}: index {int(idx.max()) if int(idx.min()) >= 0 else int(idx.min())} "
                         f"is out of range for output size {size}")
    return _unbatch(MaxUnpool2d.apply(x, idx=idx, out_hw=out), unb)


def lp_pool2d(input: Tensor, norm_type: float, kernel_size, stride=None, ceil_mode: bool = False) -> Tensor:
    """Power-average pooling: ``(sum over the window of x**p) ** (1/p)``, PyTorch's formula.

    p = 1 is sum pooling; p = inf is max pooling of ``|x|`` (and -inf minus that of
    ``-|x|``), as in PyTorch. Composite (gradient by autograd); like PyTorch's, its
    gradient is infinite where a window sums to zero.
    """
    kh, kw = _pair("lp_pool2d", "kernel_size", kernel_size)
    if norm_type == float("inf"):
        return max_pool2d(E.abs(input), (kh, kw), stride, 0, 1, ceil_mode)
    if norm_type == -float("inf"):
        return -max_pool2d(-E.abs(input), (kh, kw), stride, 0, 1, ceil_mode)
    out = avg_pool2d(input ** float(norm_type), (kh, kw), stride, 0, ceil_mode)
    return (E.sign(out) * relu(E.abs(out)) * float(kh * kw)) ** (1.0 / float(norm_type))


def channel_pool(input: Tensor, kernel_size: int, stride: int | None = None, mode: str = "max") -> Tensor:
    """Pool along the channel axis: (N, C, *S) -> (N, OC, *S), windows of ``kernel_size`` channels.

    ``stride`` defaults to ``kernel_size`` (disjoint groups). ``mode`` is "max" (ties: the
    first channel of the window gets the gradient) or "mean".
    """
    if mode not in ("max", "mean"):
        raise ValueError(f"channel_pool: mode must be 'max' or 'mean', got {mode!r}")
    if input.ndim < 2:
        raise ShapeError(f"channel_pool: expected an input of shape (N, C, ...), got {input.shape}")
    n, c, rest = input.shape[0], input.shape[1], input.shape[2:]
    k = int(kernel_size)
    s = k if stride is None else int(stride)
    if k < 1 or s < 1 or k > c:
        raise ValueError(f"channel_pool: need 1 <= kernel_size <= channels and stride >= 1, "
                         f"got kernel_size {k}, stride {s}, channels {c}")
    x = reshape(input, (n, 1, c, int(np.prod(rest))))
    y = max_pool2d(x, (k, 1), (s, 1)) if mode == "max" else avg_pool2d(x, (k, 1), (s, 1))
    return reshape(y, (n, y.shape[2]) + tuple(rest))


def maxout(input: Tensor, pieces: int) -> Tensor:
    """Maxout: the max over each group of ``pieces`` consecutive channels. (N, C, *S) -> (N, C/pieces, *S)."""
    if input.ndim < 2 or input.shape[1] % int(pieces):
        raise ShapeError(f"maxout: channels must be divisible by pieces={pieces}, got input shape {input.shape}")
    return channel_pool(input, int(pieces), mode="max")


# ---- 1-D versions: the 2-D pools on a (N, C, 1, L) view ---------------------------------------------
def _one_size(op: str, output_size) -> int:
    if isinstance(output_size, (tuple, list)) and len(output_size) == 1:
        output_size = output_size[0]
    if not isinstance(output_size, (int, np.integer)) or isinstance(output_size, bool):
        raise TypeError(f"{op}: output_size must be an int or a 1-tuple, got {output_size!r}")
    return int(output_size)


def _squeeze_h(t: Tensor) -> Tensor:
    return reshape(t, t.shape[:-2] + (t.shape[-1],))


def adaptive_avg_pool1d(input: Tensor, output_size) -> Tensor:
    """Average over adaptive bins along L. (N, C, L) or (C, L) -> (N, C, OL)."""
    size = _one_size("adaptive_avg_pool1d", output_size)
    return _squeeze_h(adaptive_avg_pool2d(_as_2d("adaptive_avg_pool1d", input), (1, size)))


def adaptive_max_pool1d(input: Tensor, output_size, return_indices: bool = False):
    """Max over adaptive bins along L. (N, C, L) or (C, L) -> (N, C, OL) [, int64 positions along L]."""
    size = _one_size("adaptive_max_pool1d", output_size)
    out = adaptive_max_pool2d(_as_2d("adaptive_max_pool1d", input), (1, size), return_indices)
    return tuple(_squeeze_h(t) for t in out) if return_indices else _squeeze_h(out)


def lp_pool1d(input: Tensor, norm_type: float, kernel_size: int, stride=None, ceil_mode: bool = False) -> Tensor:
    """Power-average pooling along L (see ``lp_pool2d``). (N, C, L) or (C, L) -> (N, C, OL)."""
    k = _pair("lp_pool1d", "kernel_size", kernel_size, 1)[0]
    s = k if stride is None else _pair("lp_pool1d", "stride", stride, 1)[0]
    return _squeeze_h(lp_pool2d(_as_2d("lp_pool1d", input), norm_type, (1, k), (1, s), ceil_mode))


def max_unpool1d(input: Tensor, indices: Tensor, kernel_size, stride=None, padding=0, output_size=None) -> Tensor:
    """Inverse of max_pool1d: (N, C, L) values and positions -> (N, C, OL), zeros elsewhere,
    ``OL = (L - 1) * stride - 2 * padding + kernel`` unless ``output_size``."""
    k = _pair("max_unpool1d", "kernel_size", kernel_size, 1)
    s = k if stride is None else _pair("max_unpool1d", "stride", stride, 1)
    p = _pair("max_unpool1d", "padding", padding, 1)
    if indices.shape != input.shape:
        raise ShapeError(f"max_unpool1d: indices shape {indices.shape} does not match input shape {input.shape}")
    (ol,) = _unpool_size("max_unpool1d", input.shape[-1:], k, s, p, output_size)
    x = _as_2d("max_unpool1d", input)
    i = Tensor(indices.data.reshape(x.shape))
    return _squeeze_h(_unpool2d("max_unpool1d", x, i, (1,) + k, (1,) + s, (0,) + p, (1, ol)))


# PyTorch's F also has these names; they always return (output, indices).
def max_pool1d_with_indices(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
                            return_indices: bool = False) -> tuple:
    """``max_pool1d(..., return_indices=True)``."""
    return max_pool1d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def max_pool2d_with_indices(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
                            return_indices: bool = False) -> tuple:
    """``max_pool2d(..., return_indices=True)``."""
    return max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def adaptive_max_pool1d_with_indices(input: Tensor, output_size, return_indices: bool = False) -> tuple:
    """``adaptive_max_pool1d(..., return_indices=True)``."""
    return adaptive_max_pool1d(input, output_size, True)


def adaptive_max_pool2d_with_indices(input: Tensor, output_size, return_indices: bool = False) -> tuple:
    """``adaptive_max_pool2d(..., return_indices=True)``."""
    return adaptive_max_pool2d(input, output_size, True)

"""Spatial pooling: max_pool2d, avg_pool2d and their 1-D versions.

Every window of a pooling layer is read through strided views: for kernel offset
(i, j) the slice ``x[:, :, i*dh :: sh, j*dw :: sw]`` (cut to OH x OW) holds that
offset's element of every window at once, so forward is a loop over the KH*KW
offsets of elementwise max/add on whole arrays, and backward scatters the
gradient back by the same slices (no ``np.add.at``, no loops over pixels). When the
kernel equals the stride and tiles the input exactly, forward is a pure reshape
followed by a max/sum over the two window axes.

Max-pool ties: the gradient of a window goes to exactly one element, the FIRST
maximum in row-major window order (what ``argmax`` returns, and what PyTorch's CPU
kernel picks), so per window it sums to the upstream gradient.

Output size (PyTorch's rule): ``OH = floor((H + 2p - d(k-1) - 1) / s) + 1`` (ceil with
``ceil_mode``), and in ceil mode a last window that would start in the right padding
is dropped.

The adaptive, unpooling, Lp and channel pools live in ember/ops/pool_extra.py and are
re-exported here so ``F.<name>`` finds them all.
"""
from __future__ import annotations

import numpy as np

from ember.autograd import Function
from ember.backend import empty_in_layout, is_channels_last, xp_of
from ember.errors import ShapeError
from ember.ops import cuda_kernels
from ember.ops.shape import reshape
from ember.tensor import Tensor

__all__ = ["max_pool2d", "avg_pool2d", "max_pool1d", "avg_pool1d"]


# ---- geometry -------------------------------------------------------------------------------------
def _pair(op: str, name: str, v, n: int = 2) -> tuple:
    """Normalize an int or sequence argument to an n-tuple of ints."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return (int(v),) * n
    if isinstance(v, (tuple, list)) and len(v) == 1:
        return (int(v[0]),) * n
    if isinstance(v, (tuple, list)) and len(v) == n and all(isinstance(a, (int, np.integer)) for a in v):
        return tuple(int(a) for a in v)
    raise TypeError(f"{op}: {name} must be an int or a tuple of {n} ints, got {v!r}")


def _out_size(op: str, size: int, k: int, s: int, p: int, d: int, ceil: bool) -> tuple[int, int]:
    """(output length, extra right padding the windows need) along one axis."""
    span = d * (k - 1) + 1
    top = size + 2 * p - span + ((s - 1) if ceil else 0)
    if top < 0:
        raise ShapeError(f"{op}: input size {size} with padding {p} is smaller than the kernel extent {span}")
    out = top // s + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    right = max((out - 1) * s + span - size - p, 0)
    return out, right


def _check_geometry(op, x, k, s, p, d):
    """Validate sizes; padding may be at most half the (dilated) kernel extent, as in PyTorch."""
    if x.ndim != 4:
        raise ShapeError(f"{op}: expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got shape {x.shape}")
    for name, v, lo in (("kernel_size", k, 1), ("stride", s, 1), ("dilation", d, 1), ("padding", p, 0)):
        if min(v) < lo:
            raise ValueError(f"{op}: {name} must be >= {lo}, got {v}")
    if any(pi > (di * (ki - 1) + 1) // 2 for pi, ki, di in zip(p, k, d)):
        raise ValueError(f"{op}: padding {p} should be at most half of kernel_size {k}")


class _Windows:
    """Where the windows of one pooling call lie; produces the offset slices."""

    def __init__(self, op, shape, k, s, p, d, ceil):
        self.N, self.C, self.H, self.W = shape
        self.k, self.s, self.p, self.d = k, s, p, d
        self.OH, rh = _out_size(op, self.H, k[0], s[0], p[0], d[0], ceil)
        self.OW, rw = _out_size(op, self.W, k[1], s[1], p[1], d[1], ceil)
        self.padded = (self.H + p[0] + rh, self.W + p[1] + rw)
        self.needs_pad = p != (0, 0) or rh or rw
        # Kernel == stride tiling the input: windows are a reshape of x.
        self.tiles = (k == s and d == (1, 1) and not self.needs_pad
                      and self.H == self.OH * k[0] and self.W == self.OW * k[1])
        # Windows that never overlap let backward assign instead of accumulate.
        self.disjoint = s[0] >= d[0] * (k[0] - 1) + 1 and s[1] >= d[1] * (k[1] - 1) + 1

    def pad(self, x, fill):
        if not self.needs_pad:
            return x
        out = empty_in_layout(xp_of(x), (self.N, self.C) + self.padded, x.dtype, is_channels_last(x))
        out[...] = fill
        out[:, :, self.p[0]:self.p[0] + self.H, self.p[1]:self.p[1] + self.W] = x
        return out

    def crop(self, g):
        """The unpadded region of g, a copy in g's memory order (channels-last stays channels-last)."""
        if not self.needs_pad:
            return g
        return g[:, :, self.p[0]:self.p[0] + self.H, self.p[1]:self.p[1] + self.W].copy(order="K")

    def offsets(self):
        """(flat offset, row slice, col slice) for every kernel offset, in row-major order."""
        (kh, kw), (sh, sw), (dh, dw) = self.k, self.s, self.d
        for i in range(kh):
            rows = slice(i * dh, i * dh + sh * (self.OH - 1) + 1, sh)
            for j in range(kw):
                yield i * kw + j, rows, slice(j * dw, j * dw + sw * (self.OW - 1) + 1, sw)

    def tiled(self, x):
        """x viewed as (N, C, OH, KH, OW, KW) (only when ``self.tiles``)."""
        return x.reshape(self.N, self.C, self.OH, self.k[0], self.OW, self.k[1])


# ---- max pooling ----------------------------------------------------------------------------------
def _first_max_hits(values, y, win: _Windows) -> list:
    """(offset, row slice, col slice, hit) for every kernel offset in row-major order, where ``hit``
    marks the windows whose first maximum sits at that offset: exactly one hit per window.
    ``values[o]`` holds offset o's element of every window, (N, C, OH, OW).

    Walking the offsets in order with a mask of windows still unclaimed costs a comparison and
    two boolean passes per offset (5x faster than masked copies of offsets into an index array).
    A window holding a NaN has a NaN maximum, which equals nothing: its *last* NaN is the hit,
    as in PyTorch's CPU kernel (which takes every NaN it meets), found by a walk in reverse order.
    """
    xp = xp_of(y)
    nan = xp.isnan(y)
    has_nan = bool(nan.any())
    nan_hits = {}
    if has_nan:  # rare: the NaN windows' last NaN, walking the offsets backwards
        open_nan = nan.copy()
        for o, _, _ in reversed(list(win.offsets())):
            hit = xp.isnan(values[o]) & open_nan
            open_nan ^= hit
            nan_hits[o] = hit
    open_ = ~nan if has_nan else xp.ones(y.shape, dtype=bool)  # windows whose maximum is not yet found
    hits = []
    for o, rows, cols in win.offsets():
        hit = xp.equal(values[o], y)
        hit &= open_
        open_ ^= hit  # hit lies inside open_, so this clears exactly the hits
        if has_nan:
            hit |= nan_hits[o]
        hits.append((o, rows, cols, hit))
    return hits


def _first_argmax(values, y, win: _Windows):
    """Flat kernel offset of the first maximum of every window (row-major order)."""
    xp = xp_of(y)
    idx = xp.zeros(y.shape, dtype=np.uint8 if win.k[0] * win.k[1] <= 255 else np.int32)
    for o, _, _, hit in _first_max_hits(values, y, win):
        if o:
            idx += hit.astype(idx.dtype) * idx.dtype.type(o)
    return idx


class MaxPool2d(Function):
    def forward(self, x, win: _Windows, sink: dict | None = None):
        xp = xp_of(x)
        self.win, self.arg = win, None
        if xp is not np and cuda_kernels.fits(x):  # GPU: one launch gives y and the argmax
            y, self.arg = cuda_kernels.maxpool2d_forward(x, win.k, win.s, win.p, win.d, win.OH, win.OW)
            if sink is not None:
                sink["indices"] = self.arg.astype(np.int64)
            return y
        small_tiles = win.tiles and win.k[0] * win.k[1] <= 16
        self.nhwc = is_channels_last(x)  # a channels-last x keeps its layout in y, the planes and gx
        if small_tiles:
            # Kernel == stride (2x2 pooling): copy each offset's elements into a contiguous plane
            # once; forward and backward then compare and combine contiguous arrays instead of
            # reading strided slices of x five times ((128, 6, 28, 28) fwd+bwd 0.78 -> 0.60 ms).
            values = empty_in_layout(xp, (win.k[0] * win.k[1], win.N, win.C, win.OH, win.OW), x.dtype, self.nhwc)
            for o, rows, cols in win.offsets():
                values[o] = x[:, :, rows, cols]
        else:
            xpad = win.pad(x, -np.inf)
            values = [xpad[:, :, rows, cols] for _, rows, cols in win.offsets()]  # strided views
        if win.tiles and not small_tiles:  # large tiles (global pooling): one reduction
            y = win.tiled(x).max(axis=(3, 5))
        else:
            y = values[0].copy(order="K")
            for v in values[1:]:
                xp.maximum(y, v, out=y)
        self.values, self.y, self.idx = values, y, None
        if sink is None:
            return y
        self.idx = _first_argmax(values, y, win)
        kh, kw = win.k
        # Flat (h * W + w) positions in the unpadded input, as PyTorch returns them.
        oh = xp.arange(win.OH).reshape(-1, 1) * win.s[0] - win.p[0]
        ow = xp.arange(win.OW).reshape(1, -1) * win.s[1] - win.p[1]
        h = oh + (self.idx // kw).astype(np.int64) * win.d[0]
        w = ow + (self.idx % kw).astype(np.int64) * win.d[1]
        sink["indices"] = h * win.W + w  # a second, non-differentiable output
        return y

    def backward(self, gy):
        xp = xp_of(gy)
        win = self.win
        if self.arg is not None:  # GPU: scatter to the saved argmax in one launch
            return cuda_kernels.maxpool2d_backward(gy, self.arg, (win.N, win.C, win.H, win.W))
        if self.idx is not None:  # the indices were returned: reuse them
            hits = [(o, rows, cols, self.idx == o) for o, rows, cols in win.offsets()]
        else:
            hits = _first_max_hits(self.values, self.y, win)
        shape = (win.N, win.C) + win.padded
        if self.nhwc and not is_channels_last(gy):  # one small copy: every product below then reads one layout
            gy_nhwc = empty_in_layout(xp, gy.shape, gy.dtype, True)
            gy_nhwc[...] = gy
            gy = gy_nhwc
        # Tiles cover every element exactly once, so each one is written below; else start from 0.
        gx = empty_in_layout(xp, shape, gy.dtype, self.nhwc)
        if not win.tiles:
            gx[...] = 0
        for _, rows, cols, hit in hits:
            if win.disjoint:
                xp.multiply(gy, hit, out=gx[:, :, rows, cols])
            else:
                gx[:, :, rows, cols] += gy * hit
        return win.crop(gx)


def _batched(op: str, x: Tensor, dims: int):
    """Add a batch axis to an unbatched input; returns (x, unbatched?)."""
    if x.ndim == dims + 1:
        return reshape(x, (1,) + x.shape), True
    if x.ndim != dims + 2:
        raise ShapeError(f"{op}: expected a {dims + 1}-d or {dims + 2}-d input, got shape {x.shape}")
    return x, False


def _unbatch(y: Tensor, unbatched: bool) -> Tensor:
    return reshape(y, y.shape[1:]) if unbatched else y


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """2-D max pooling. (N, C, H, W) or (C, H, W) -> (N, C, OH, OW).

    With ``return_indices=True`` also returns the int64 flat index ``h * W + w`` of each
    window's maximum in its input plane (the format ``max_unpool2d`` takes). Ties go to
    the first maximum in row-major window order.
    """
    x, unb = _batched("max_pool2d", input, 2)
    k = _pair("max_pool2d", "kernel_size", kernel_size)
    s = k if stride is None or stride == () or stride == [] else _pair("max_pool2d", "stride", stride)
    p, d = _pair("max_pool2d", "padding", padding), _pair("max_pool2d", "dilation", dilation)
    _check_geometry("max_pool2d", x, k, s, p, d)
    if x.dtype.kind != "f":
        raise TypeError(f"max_pool2d: expected a floating point input, got {x.dtype}")
    win = _Windows("max_pool2d", x.shape, k, s, p, d, bool(ceil_mode))
    if not return_indices:
        return _unbatch(MaxPool2d.apply(x, win=win), unb)
    sink: dict = {}
    y = MaxPool2d.apply(x, win=win, sink=sink)
    return _unbatch(y, unb), _unbatch(Tensor(sink["indices"]), unb)


# ---- average pooling ------------------------------------------------------------------------------
def _avg_divisor(win: _Windows, count_include_pad: bool, divisor_override, xp, dtype):
    """Per-window divisor, separable as (OH, 1) * (1, OW) (PyTorch's CPU-kernel rule)."""
    if divisor_override is not None:
        return dtype.type(divisor_override)
    counts = []
    for n, out, k, s, p in ((win.H, win.OH, win.k[0], win.s[0], win.p[0]),
                            (win.W, win.OW, win.k[1], win.s[1], win.p[1])):
        start = np.arange(out) * s - p
        end = np.minimum(start + k, n + p)  # ceil-mode windows are cut at the padded edge
        if count_include_pad:
            counts.append(end - start)
        else:
            counts.append(np.minimum(end, n) - np.maximum(start, 0))
    div = counts[0].reshape(-1, 1) * counts[1].reshape(1, -1)
    if (div == div.flat[0]).all():
        return dtype.type(div.flat[0])
    return xp.asarray(div, dtype=dtype)


class AvgPool2d(Function):
    def forward(self, x, win: _Windows, count_include_pad: bool, divisor_override):
        xp = xp_of(x)
        self.win, self.shape = win, x.shape
        self.div = _avg_divisor(win, count_include_pad, divisor_override, xp, x.dtype)
        if win.tiles and win.k[0] * win.k[1] > 4:
            y = win.tiled(x).sum(axis=(3, 5))
        else:
            xpad = win.pad(x, 0)
            y = None
            for _, rows, cols in win.offsets():
                v = xpad[:, :, rows, cols]
                y = v.copy() if y is None else xp.add(y, v, out=y)
        y /= self.div
        return y

    def backward(self, gy):
        xp = xp_of(gy)
        win = self.win
        g = (gy / self.div).astype(gy.dtype, copy=False)
        if win.tiles:  # every input element is in exactly one window
            full = xp.broadcast_to(g[:, :, :, None, :, None], (win.N, win.C, win.OH, win.k[0], win.OW, win.k[1]))
            return xp.ascontiguousarray(full).reshape(self.shape)
        gx = xp.zeros((win.N, win.C) + win.padded, dtype=gy.dtype)
        for _, rows, cols in win.offsets():
            if win.disjoint:
                gx[:, :, rows, cols] = g
            else:
                gx[:, :, rows, cols] += g
        return win.crop(gx)


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """2-D average pooling. (N, C, H, W) or (C, H, W) -> (N, C, OH, OW).

    ``count_include_pad`` counts zero padding in the divisor; ``divisor_override``
    replaces the divisor of every window.
    """
    x, unb = _batched("avg_pool2d", input, 2)
    k = _pair("avg_pool2d", "kernel_size", kernel_size)
    s = k if stride is None or stride == () or stride == [] else _pair("avg_pool2d", "stride", stride)
    p = _pair("avg_pool2d", "padding", padding)
    _check_geometry("avg_pool2d", x, k, s, p, (1, 1))
    if x.dtype.kind != "f":
        raise TypeError(f"avg_pool2d: expected a floating point input, got {x.dtype}")
    if divisor_override is not None and (not isinstance(divisor_override, int) or divisor_override <= 0):
        raise ValueError(f"avg_pool2d: divisor_override must be a positive int, got {divisor_override!r}")
    win = _Windows("avg_pool2d", x.shape, k, s, p, (1, 1), bool(ceil_mode))
    y = AvgPool2d.apply(x, win=win, count_include_pad=bool(count_include_pad), divisor_override=divisor_override)
    return _unbatch(y, unb)


# ---- 1-D versions: a 2-D pool over a height-1 image -------------------------------------------------
def _as_2d(op: str, x: Tensor):
    if x.ndim not in (2, 3):
        raise ShapeError(f"{op}: expected a 2-d (C, L) or 3-d (N, C, L) input, got shape {x.shape}")
    return reshape(x, x.shape[:-1] + (1, x.shape[-1]))


def _one(op: str, name: str, v) -> int:
    return _pair(op, name, v, 1)[0]


def max_pool1d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """1-D max pooling. (N, C, L) or (C, L) -> (N, C, OL); indices are positions along L."""
    k = _one("max_pool1d", "kernel_size", kernel_size)
    s = k if stride is None or stride == () or stride == [] else _one("max_pool1d", "stride", stride)
    out = max_pool2d(_as_2d("max_pool1d", input), (1, k), (1, s), (0, _one("max_pool1d", "padding", padding)),
                     (1, _one("max_pool1d", "dilation", dilation)), ceil_mode, return_indices)
    if return_indices:
        y, i = out
        return reshape(y, y.shape[:-2] + (y.shape[-1],)), reshape(i, i.shape[:-2] + (i.shape[-1],))
    return reshape(out, out.shape[:-2] + (out.shape[-1],))


def avg_pool1d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    """1-D average pooling. (N, C, L) or (C, L) -> (N, C, OL)."""
    k = _one("avg_pool1d", "kernel_size", kernel_size)
    s = k if stride is None or stride == () or stride == [] else _one("avg_pool1d", "stride", stride)
    y = avg_pool2d(_as_2d("avg_pool1d", input), (1, k), (1, s), (0, _one("avg_pool1d", "padding", padding)),
                   ceil_mode, count_include_pad)
    return reshape(y, y.shape[:-2] + (y.shape[-1],))


from ember.ops.pool_extra import *  # noqa: E402,F401,F403
from ember.ops.pool_extra import __all__ as _extra  # noqa: E402

__all__ += _extra

"""im2row / row2im: the channels-last twins of im2col / col2im (ember/ops/im2col.py).

A convolution of channels-last input first copies it, zero-padded, to (nb, Hp, Wp, C), a chunk
of images at a time (``pad_nhwc_into``; ``to_nhwc`` does a whole batch, and ``channels_last``
transposes an NCHW array once); ``im2row`` then lowers that to rows (N*OH*OW, G, KH*KW*C/G), one row per
output pixel, in (kh, kw, c) order. Each kernel row of a window is KW*C/G contiguous floats,
so the copy moves long runs even when the image is small, and the GEMM that follows,
(pixels, K) @ (K, OC/G), writes its result channels-last too (ember.ops.conv_lowering says
which lowering runs when). ``row2im`` is the adjoint, one slice-add per kernel offset; ``offsets2im``
the same adjoint from one contiguous block per kernel offset (the CPU's data gradient).

Channels-last arrays keep their (N, C, H, W) shape: they are transposed views of (N, H, W, C)
memory (``channels_last``, ``ember.backend.is_channels_last``), PyTorch's channels_last format.
"""
from __future__ import annotations

import numpy as np

from ember.backend import is_channels_last, xp_of
from ember.ops import cuda_kernels
from ember.ops.im2col import Geometry
from ember.parallel import run_parts, threads_for


def to_nhwc(x, pads: tuple = (0, 0, 0, 0)):
    """x (N, C, H, W) -> a zero-padded channels-last copy (N, H+t+b, W+l+r, C); pads = (t, b, l, r).

    Transposing and padding happen in one copy; only the border is zeroed. When x is
    already channels-last in memory the copy moves contiguous runs and is ~10x cheaper.
    """
    xp = xp_of(x)
    N, C, H, W = x.shape
    t, b, l, r = pads
    out = xp.empty((N, H + t + b, W + l + r, C), dtype=x.dtype)
    # Transposing NCHW reads each pixel's channels H*W floats apart: 4 KiB at 32x32, so the
    # cache lines of 64 or more channels fall in one L1 set and evict each other (64x64x32x32:
    # 6.4 ms). Two steps avoid it: (N, C, H, W) -> (N, H, C, W) moves whole rows, then each
    # image row's small (C, W) block is transposed in cache (4.5 ms; 16x256x32x32: 8.8 -> 4.0).
    # Fewer channels or smaller planes copy faster in one step.
    two_steps = xp is np and C >= 64 and H * W * x.itemsize >= 4096 and not is_channels_last(x)

    def copy(images):  # a run of images; large copies are shared among threads (ember.parallel)
        n0, n1 = images[0], images[-1] + 1
        pad_nhwc_into(x[n0:n1], pads, out[n0:n1], two_steps)

    if N:
        run_parts(copy, list(range(N)), threads_for(x.size) if xp is np else 1)
    return out


def pad_nhwc_into(x, pads: tuple, out, two_steps: bool = False):
    """Write x (n, C, H, W), zero-padded by pads = (t, b, l, r), into channels-last ``out``
    (n, H+t+b, W+l+r, C): the border is zeroed, the interior copied (in two steps when
    ``two_steps``: see ``to_nhwc``). Returns out."""
    n, C, H, W = x.shape
    t, b, l, r = pads
    out[:, :t] = 0
    out[:, t + H:] = 0
    out[:, t:t + H, :l] = 0
    out[:, t:t + H, l + W:] = 0
    src = x.transpose(0, 2, 3, 1)
    if two_steps:
        rows = np.empty((n, H, C, W), dtype=x.dtype)
        rows[...] = x.transpose(0, 2, 1, 3)
        src = rows.transpose(0, 1, 3, 2)
    out[:, t:t + H, l:l + W] = src
    return out


def channels_last(x):
    """x (N, C, H, W) with channels-last memory: x itself when it already is, else a copy."""
    return x if is_channels_last(x) else to_nhwc(x).transpose(0, 3, 1, 2)


def from_nhwc(xpad, pads: tuple = (0, 0, 0, 0)):
    """Inverse of ``to_nhwc``: the unpadded region of (N, Hp, Wp, C) as (N, C, H, W) in channels-last memory."""
    xp = xp_of(xpad)
    t, b, l, r = pads
    Hp, Wp = xpad.shape[1:3]
    inner = xp.ascontiguousarray(xpad[:, t:Hp - b, l:Wp - r]) if any(pads) else xpad
    return inner.transpose(0, 3, 1, 2)


def _strided(a, shape: tuple, strides: tuple):
    """A read-only view of a with the given shape and byte strides (windows that may overlap)."""
    if xp_of(a) is np:
        return np.lib.stride_tricks.as_strided(a, shape=shape, strides=strides, writeable=False)
    return xp_of(a).lib.stride_tricks.as_strided(a, shape=shape, strides=strides)


def windows_nhwc(xpad, g: Geometry, groups: int = 1):
    """All sliding windows of channels-last xpad (N, Hp, Wp, C) as a view (N, OH, OW, G, KH, KW, C/G)."""
    N, C = xpad.shape[0], xpad.shape[3]
    s0, s1, s2, s3 = xpad.strides
    Cg = C // groups
    return _strided(xpad, (N, g.OH, g.OW, groups, g.KH, g.KW, Cg),
                    (s0, g.sh * s1, g.sw * s2, Cg * s3, g.dh * s1, g.dw * s2, s3))


def im2row(xpad, g: Geometry, groups: int = 1, out=None):
    """Copy the windows of channels-last xpad (N, Hp, Wp, C) into rows (N*OH*OW, G, KH*KW*C/G).

    Row n*OH*OW + oh*OW + ow holds, per group, the window at output pixel (oh, ow) in
    (kh, kw, c) order. With one group and dilation 1, each (kh) row of a window is one
    contiguous run of KW*C floats in xpad, so the copy moves long runs even when OW is
    small. ``out``, when given, is a contiguous buffer of at least that many elements.
    """
    xp = xp_of(xpad)
    N, C = xpad.shape[0], xpad.shape[3]
    shape7 = (N, g.OH, g.OW, groups, g.KH, g.KW, C // groups)
    size = N * g.OH * g.OW * g.KH * g.KW * C
    out = xp.empty(shape7, dtype=xpad.dtype) if out is None else out.reshape(-1)[:size].reshape(shape7)
    out[...] = windows_nhwc(xpad, g, groups)
    return out.reshape(N * g.OH * g.OW, groups, -1)


def offsets2im(parts, g: Geometry, out):
    """Add the data-gradient pieces of each kernel offset back into channels-last ``out`` (n, Hp, Wp, C).

    ``parts`` (G, KH*KW, n*OH*OW, C/G) holds, per group and kernel offset (kh, kw), one contiguous
    block: the gradient reaching the padded pixels (oh*sh + kh*dh, ow*sw + kw*dw). Laid out this
    way (one GEMM per offset) rather than as rows (``row2im``: KW*C/G-float pieces of each row),
    every add reads contiguous memory. With stride 1 offset (kh, kw) adds into a shifted box of
    out, runs of OW*C floats. With a stride, the box's pixels are sh*sw pixels apart; they all lie
    in one phase of out (the pixels whose padded row and column leave the same remainders mod
    (sh, sw)), so the adds go into one contiguous plane per phase, each then copied into its
    phase of out at once. A stride-2 3x3 layer's data gradient at (128, 16, 32, 32): 10.6 ms of
    strided adds by ``row2im`` against 2.9 ms for the adds and the copies here (one core).
    """
    xp = xp_of(out)
    n, Hp, Wp, C = out.shape
    G = parts.shape[0]
    planes = {}  # (row phase, column phase) -> contiguous (n, rows, cols, C) plane, made on first use
    for kh in range(g.KH):
        a, i0 = (kh * g.dh) % g.sh, (kh * g.dh) // g.sh
        for kw in range(g.KW):
            b, j0 = (kw * g.dw) % g.sw, (kw * g.dw) // g.sw
            if g.sh == g.sw == 1:
                plane = out
            elif (a, b) not in planes:
                plane = planes[a, b] = xp.zeros((n, len(range(a, Hp, g.sh)), len(range(b, Wp, g.sw)), C), out.dtype)
            else:
                plane = planes[a, b]
            src = parts[:, kh * g.KW + kw].reshape(G, n, g.OH, g.OW, C // G).transpose(1, 2, 3, 0, 4)
            box = plane[:, i0:i0 + g.OH, j0:j0 + g.OW]
            box += src.reshape(box.shape)  # a view for one group; with several, a copy of the source
    for (a, b), plane in planes.items():
        out[:, a::g.sh, b::g.sw] = plane
    return out


class WidthRows:
    """``im2row`` along the width only (one group) of x zero-padded by pads = (t, b, l, r), copied
    straight from unpadded channels-last x (N, H, W, C), without a padded copy of it.

    ``g`` is the lowering's geometry along the width (OW, KW, sw, dw; KH and the height's stride
    are 1: every padded row is lowered). Calling ``lower(n0, n1, out)`` fills rows
    (n1-n0, Hp*OW, KW*C) for images n0:n1: row h*OW + ow of image n holds the KW-window of padded
    row h at output column ow, in (kw, c) order. The output columns whose windows lie inside x
    (all but a column or two at each side) are one strided copy of x, KW*C contiguous floats per
    window; the few border columns take their in-bounds kernel columns from x and zeros for the
    rest; padding rows are zeros. The views of x are made once, so a chunk costs a few slicing
    copies. ``fits`` is False when padding wider than the kernel leaves more than KW border
    columns (then pad and use ``im2row``).
    """

    def __init__(self, x, pads: tuple, g: Geometry):
        self.xp = xp_of(x)
        N, H, W, C = x.shape
        t, b, l, r = pads
        self.t, self.H, self.Hp, self.OW, self.KW, self.C, self.dtype = t, H, H + t + b, g.OW, g.KW, C, x.dtype
        first = min(g.OW, -(-l // g.sw))  # output columns [first, last): every kernel column inside x
        last = max(first, min(g.OW, (W - 1 - (g.KW - 1) * g.dw + l) // g.sw + 1))
        border = [*range(first), *range(last, g.OW)]
        self.fits = len(border) <= g.KW
        s0, s1, s2, s3 = x.strides
        self.pieces = []  # (output columns, kernel columns, source view (N, H, ...) or None for zeros)
        if last > first:
            src = _strided(x[:, :, first * g.sw - l:], (N, H, last - first, g.KW, C),
                           (s0, s1, g.sw * s2, g.dw * s2, s3))
            self.pieces.append((slice(first, last), slice(None), src))
        for ow in border:
            inside = [kw for kw in range(g.KW) if 0 <= ow * g.sw - l + kw * g.dw < W]
            k0, k1 = (inside[0], inside[-1] + 1) if inside else (0, 0)
            for zeros in (slice(0, k0), slice(k1, g.KW)):
                if zeros.stop > zeros.start:
                    self.pieces.append((ow, zeros, None))
            if inside:
                c0 = ow * g.sw - l + k0 * g.dw
                src = _strided(x[:, :, c0:], (N, H, k1 - k0, C), (s0, s1, g.dw * s2, s3))
                self.pieces.append((ow, slice(k0, k1), src))

    def lower(self, n0: int, n1: int, out=None):
        """Rows (n1-n0, Hp*OW, KW*C) of images n0:n1, written into the flat buffer ``out`` when given."""
        nb = n1 - n0
        size = nb * self.Hp * self.OW * self.KW * self.C
        o = self.xp.empty(size, dtype=self.dtype) if out is None else out.reshape(-1)[:size]
        o = o.reshape(nb, self.Hp, self.OW, self.KW, self.C)
        self.lower_into(n0, n1, o)
        return o.reshape(nb, self.Hp * self.OW, self.KW * self.C)

    def lower_into(self, n0: int, n1: int, o) -> None:
        """The rows of images n0:n1 written into ``o`` (n1-n0, Hp, OW, KW, C), which may be a view."""
        t, H = self.t, self.H
        o[:, :t] = 0
        o[:, t + H:] = 0
        inner = o[:, t:t + H]
        for cols, kws, src in self.pieces:
            inner[:, :, cols, kws] = 0 if src is None else src[n0:n1]


def row2im(rows, g: Geometry, out):
    """Add rows (N*OH*OW, G, KH*KW*C/G) back into channels-last ``out`` (N, Hp, Wp, C): im2row's adjoint.

    Loops over kernel offsets only: offset (kh, kw) adds to the strided pixel slice
    ``out[:, kh*dh + oh*sh, kw*dw + ow*sw, :]``, so overlapping windows accumulate.
    """
    if cuda_kernels.fits(rows, out):  # GPU: one gather launch instead of KH*KW slice-adds
        return cuda_kernels.row2im(rows, g, out)
    N, C = out.shape[0], out.shape[3]
    G = rows.shape[1]
    rows7 = rows.reshape(N, g.OH, g.OW, G, g.KH, g.KW, C // G)
    hspan, wspan = g.sh * (g.OH - 1) + 1, g.sw * (g.OW - 1) + 1
    for kh in range(g.KH):
        h0 = kh * g.dh
        for kw in range(g.KW):
            w0 = kw * g.dw
            # Splitting the channel axis of the slice into (G, C/G) is still a view.
            target = out[:, h0:h0 + hspan:g.sh, w0:w0 + wspan:g.sw].reshape(N, g.OH, g.OW, G, C // G)
            target += rows7[:, :, :, :, kh, kw]
    return out

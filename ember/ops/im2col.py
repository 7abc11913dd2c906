"""im2col / col2im: the sliding-window lowering that turns convolution into GEMMs.

A 2-D convolution of a padded input ``xpad`` (N, C, Hp, Wp) with a KH x KW kernel
reads, for every output pixel (oh, ow), the window

    xpad[n, c, oh*sh + kh*dh, ow*sw + kw*dw]   for kh < KH, kw < KW

``windows`` exposes all of them at once as a strided *view* of shape
(N, C, KH, KW, OH, OW) (no copy); ``im2col`` copies that view into a contiguous
"column" array (N, C*KH*KW, OH*OW), so the convolution of image n is the single
matrix product ``w.reshape(OC, C*KH*KW) @ col[n]`` (Chellapilla et al., "High
Performance Convolutional Neural Networks for Document Processing", 2006).

``col2im`` is the adjoint: it adds every column entry back to the input pixel it
was read from. It loops over the KH*KW kernel offsets only; each offset is one
strided slice-add over the whole batch, so overlapping windows accumulate without
``np.add.at``.

F.unfold/F.fold (PyTorch's names for im2col/col2im) use these helpers. The convolutions
(ember.ops.conv_lowering) also lower channels-last inputs to rows: ember/ops/im2row.py.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ember.autograd import Function
from ember.backend import xp_of
from ember.errors import ShapeError
from ember.ops import cuda_kernels
from ember.tensor import Tensor

__all__ = ["unfold", "fold"]


class Geometry(NamedTuple):
    """Everything about a 2-D sliding window except the data.

    Padding is (top, bottom, left, right) so asymmetric "same" padding fits.
    """

    KH: int
    KW: int
    sh: int
    sw: int
    dh: int
    dw: int
    pt: int
    pb: int
    pl: int
    pr: int
    OH: int
    OW: int

    @property
    def padded(self) -> bool:
        return bool(self.pt or self.pb or self.pl or self.pr)


def out_size(size: int, k: int, stride: int, pad_total: int, dilation: int) -> int:
    """Output length of a sliding window: floor((size + pad - dilation*(k-1) - 1) / stride) + 1."""
    return (size + pad_total - dilation * (k - 1) - 1) // stride + 1


def make_geometry(H: int, W: int, kernel, stride, dilation, padding) -> Geometry:
    """Geometry for an H x W input; ``padding`` is (top, bottom, left, right)."""
    (KH, KW), (sh, sw), (dh, dw) = kernel, stride, dilation
    pt, pb, pl, pr = padding
    OH = out_size(H, KH, sh, pt + pb, dh)
    OW = out_size(W, KW, sw, pl + pr, dw)
    return Geometry(KH, KW, sh, sw, dh, dw, pt, pb, pl, pr, OH, OW)


def pad_input(x, g: Geometry):
    """Zero-pad the last two dims of x by the geometry's padding (no copy when there is none)."""
    return zero_pad(x, (g.pt, g.pb, g.pl, g.pr))


def zero_pad(x, pads: tuple, out=None):
    """x (..., H, W) zero-padded on its last two axes by pads = (top, bottom, left, right).

    One copy, and only the border is zeroed: ``np.pad`` does the same work with ~25 us of
    Python around it, which LeNet-5's first convolution pays twice a step. x itself is
    returned when there is no padding and no ``out`` (an array of the padded shape) is given.
    """
    t, b, l, r = pads
    if not any(pads) and out is None:
        return x
    *lead, H, W = x.shape
    if out is None:
        out = xp_of(x).empty((*lead, H + t + b, W + l + r), dtype=x.dtype)
    out[..., :t, :] = 0
    out[..., t + H:, :] = 0
    out[..., t:t + H, :l] = 0
    out[..., t:t + H, l + W:] = 0
    out[..., t:t + H, l:l + W] = x
    return out


def crop_padding(xpad, g: Geometry):
    """Inverse of ``pad_input`` for gradients: the unpadded region as a contiguous array."""
    if not g.padded:
        return xpad
    xp = xp_of(xpad)
    H, W = xpad.shape[-2] - g.pt - g.pb, xpad.shape[-1] - g.pl - g.pr
    return xp.ascontiguousarray(xpad[..., g.pt:g.pt + H, g.pl:g.pl + W])


def windows(xpad, g: Geometry):
    """All sliding windows of xpad (N, C, Hp, Wp) as a strided view (N, C, KH, KW, OH, OW)."""
    xp = xp_of(xpad)
    N, C = xpad.shape[:2]
    s0, s1, s2, s3 = xpad.strides
    shape = (N, C, g.KH, g.KW, g.OH, g.OW)
    strides = (s0, s1, g.dh * s2, g.dw * s3, g.sh * s2, g.sw * s3)
    if xp is np:  # read-only, since overlapping windows alias the same pixels
        return np.lib.stride_tricks.as_strided(xpad, shape=shape, strides=strides, writeable=False)
    return xp.lib.stride_tricks.as_strided(xpad, shape=shape, strides=strides)  # CuPy has no writeable flag


def im2col(xpad, g: Geometry, out=None):
    """Copy the windows of xpad (N, C, Hp, Wp) into columns (N, C*KH*KW, OH*OW).

    ``out``, when given, is a contiguous buffer of at least that many elements that is
    reused (the caller's chunk loop passes the same buffer every time).
    """
    xp = xp_of(xpad)
    N, C = xpad.shape[:2]
    shape6 = (N, C, g.KH, g.KW, g.OH, g.OW)
    if out is None:
        out = xp.empty(shape6, dtype=xpad.dtype)
    else:
        out = out.reshape(-1)[: N * C * g.KH * g.KW * g.OH * g.OW].reshape(shape6)
    if xp is np and _width_first_pays(g):
        out[...] = _kernel_rows(_width_windows(xpad, g), g)
    else:
        out[...] = windows(xpad, g)  # one strided copy; the innermost axis (OW) is read with stride sw
    return out.reshape(N, C * g.KH * g.KW, g.OH * g.OW)


def _width_first_pays(g: Geometry) -> bool:
    """Whether ``im2col`` should lower in two steps, along the width first (``_width_windows``).

    The one-step copy moves runs only OW floats long, KH*KW*OH of them per plane. With stride 1
    down the columns, the width-only lowering copies KH times fewer such runs, and the second
    step copies whole OH*OW blocks. Measured (NumPy, one copy each): 5x5 on 28x28 (LeNet-5's
    first convolution, batch 128) 0.42 -> 0.25 ms; 3x3 on 32x32 0.53 -> 0.45; 7x7 on 112x112
    1.25 -> 0.56; 3x3 on 64x64 even; 3x3 on 224x224 10% slower.
    """
    return g.sh == 1 and g.KH > 1 and (g.OW <= 64 or g.KH >= 5)


def _width_windows(xpad, g: Geometry):
    """Copy of the 1 x KW windows of xpad (N, C, Hp, Wp) at every input row: (N, C, KW, Hu, OW),
    Hu = the OH + dh*(KH-1) rows that stride-1 windows reach."""
    N, C = xpad.shape[:2]
    Hu = g.OH + g.dh * (g.KH - 1)
    s0, s1, s2, s3 = xpad.strides
    shape, strides = (N, C, g.KW, Hu, g.OW), (s0, s1, g.dw * s3, s2, g.sw * s3)
    rows = np.empty(shape, dtype=xpad.dtype)
    rows[...] = np.lib.stride_tricks.as_strided(xpad, shape=shape, strides=strides, writeable=False)
    return rows


def _kernel_rows(rows, g: Geometry):
    """The windows (N, C, KH, KW, OH, OW) as a view of ``_width_windows``' copy: kernel row kh
    is the contiguous block of OH rows starting at row kh*dh (stride 1)."""
    N, C = rows.shape[:2]
    r0, r1, r2, r3, r4 = rows.strides
    shape, strides = (N, C, g.KH, g.KW, g.OH, g.OW), (r0, r1, g.dh * r3, r2, r3, r4)
    return np.lib.stride_tricks.as_strided(rows, shape=shape, strides=strides, writeable=False)


def col2im(col, g: Geometry, out):
    """Add columns (N, C*KH*KW, OH*OW) back into ``out`` (N, C, Hp, Wp), which must start zeroed.

    The loop runs over kernel offsets only: offset (kh, kw) touches the output pixels
    ``out[:, :, kh*dh + oh*sh, kw*dw + ow*sw]``, one strided slice per offset. Windows that
    overlap (stride < extent) accumulate because the slices are added one after another.
    """
    if cuda_kernels.fits(col, out):  # GPU: one gather launch instead of KH*KW slice-adds
        return cuda_kernels.col2im(col, g, out)
    N, C = out.shape[:2]
    col6 = col.reshape(N, C, g.KH, g.KW, g.OH, g.OW)
    hspan, wspan = g.sh * (g.OH - 1) + 1, g.sw * (g.OW - 1) + 1
    for kh in range(g.KH):
        h0 = kh * g.dh
        for kw in range(g.KW):
            w0 = kw * g.dw
            out[:, :, h0:h0 + hspan:g.sh, w0:w0 + wspan:g.sw] += col6[:, :, kh, kw]
    return out


# ---- stride-1 columns on the "wide" grid ------------------------------------------------------------
def wide_length(g: Geometry, Wp: int) -> int:
    """Columns of the wide grid: output (oh, ow) is column oh*Wp + ow; the ow >= OW ones are unused."""
    return (g.OH - 1) * Wp + g.OW


def im2col_wide(xpad, g: Geometry, out=None):
    """Stride-1 columns that read each plane of xpad (N, C, Hp, Wp) flat: (C*KH*KW, N*Lw), K-major.

    With stride 1, the window element (kh, kw) of output (oh, ow) sits at flat position
    q + kh*dh*Wp + kw*dw of the padded plane, q = oh*Wp + ow. Indexing the columns by q
    instead of oh*OW + ow makes every kernel offset's slice one contiguous run of the plane,
    Lw = ``wide_length`` floats long, where im2col copies runs only OW long (10 for LeNet-5's
    second convolution). The price: Wp/OW times more columns, whose extra ones (ow >= OW,
    reading across a row's end) are computed and ignored. Reads stay inside the plane:
    the last one is (OH-1+(KH-1)*dh)*Wp + OW-1 + (KW-1)*dw = Hp*Wp - 1.

    The columns of all N images sit side by side (K-major), so one GEMM per group covers
    the whole chunk instead of one small GEMM per image. NumPy only (conv_lowering._wide).
    """
    N, C, Hp, Wp = xpad.shape
    Lw = wide_length(g, Wp)
    s0, s1, _, s3 = xpad.strides
    shape, strides = (C, g.KH, g.KW, N, Lw), (s1, g.dh * Wp * s3, g.dw * s3, s0, s3)
    view = np.lib.stride_tricks.as_strided(xpad, shape=shape, strides=strides, writeable=False)
    size = N * C * g.KH * g.KW * Lw
    out = np.empty(shape, dtype=xpad.dtype) if out is None else out.reshape(-1)[:size].reshape(shape)
    out[...] = view
    return out.reshape(C * g.KH * g.KW, N * Lw)


def col2im_planes(col, g: Geometry, Wp: int, out):
    """col2im for stride-1 columns laid out on whole padded planes, K-major: add col (C*KH*KW,
    nb*Hp*Wp), whose column n*Hp*Wp + oh*Wp + ow belongs to output (oh, ow) of image n, into
    ``out`` (C, nb*Hp*Wp), the zeroed padded planes of nb images stored channel-major.
    Columns that hold no output (ow >= OW or oh >= OH) must hold zeros.

    As in ``im2col_wide``, kernel offset (kh, kw) of column q lands at q + off, off = kh*dh*Wp +
    kw*dw; with whole planes side by side, one slice-add per offset covers every channel and
    image (runs nb*Hp*Wp long, where per-plane adds would run only ~OH*Wp). A target beyond a
    plane's end (into the next image, or past the last) comes only from an unused column, since
    every real output reads inside its plane; the zeros it adds there change nothing.
    Measured on LeNet-5's second convolution (batch 128): 0.8 -> 0.4 ms, though the GEMM
    before it grows by Hp*Wp / ((OH-1)*Wp + OW) = 1.44x; the data-gradient pass gained ~0.3 ms.
    """
    C, L = out.shape
    col4 = col.reshape(C, g.KH, g.KW, L)
    for kh in range(g.KH):
        for kw in range(g.KW):
            off = kh * g.dh * Wp + kw * g.dw
            out[:, off:] += col4[:, kh, kw, :L - off]
    return out


def wide_view(a, g: Geometry, Wp: int):
    """The (..., OH, OW) entries of wide-grid columns a (..., Lw) as a strided view (writeable
    when a is): entry (oh, ow) is column oh*Wp + ow. NumPy only."""
    *lead, Lw = a.shape
    shape, strides = (*lead, g.OH, g.OW), (*a.strides[:-1], Wp * a.strides[-1], a.strides[-1])
    return np.lib.stride_tricks.as_strided(a, shape=shape, strides=strides, writeable=a.flags.writeable)


def unused_wide_view(a, g: Geometry, Wp: int):
    """The columns of a (..., Lw) that hold no output (ow >= OW in every row but the last)."""
    *lead, Lw = a.shape
    shape = (*lead, g.OH - 1, Wp - g.OW)
    strides = (*a.strides[:-1], Wp * a.strides[-1], a.strides[-1])
    return np.lib.stride_tricks.as_strided(a[..., g.OW:], shape=shape, strides=strides)


def batch_chunk(N: int, per_image_elems: int, budget: int = 5 << 18) -> int:
    """How many images to lower at once so one column chunk stays near ``budget`` elements.

    Lowering a few images at a time keeps the buffer in cache between the copy that fills
    it and the GEMM that reads it, and uses far less memory than lowering the whole batch.
    The default, 1.25M floats (5 MiB), was measured with 2 BLAS threads by alternating
    budgets inside one process (bench/bench_cnn.py's workloads): the ResNet-20 step ran
    4-5% faster than with 2M floats (257-276 vs 270-310 ms) and as fast as with 1M, a
    64->64-channel 3x3 convolution on 64x32x32 (W4) 1.5% slower, LeNet-5 within noise.
    GEMMs also slow down when their operand outgrows the cache: (M, 288) @ (288, 32) runs
    at ~375 GFLOP/s up to M = 4096 rows and ~250 at M = 16384.
    """
    return max(1, min(N, budget // max(per_image_elems, 1)))


# ---- F.unfold / F.fold -----------------------------------------------------------------------------
def pair(op: str, name: str, v, minimum: int = 1) -> tuple:
    """Normalize an int-or-pair argument, raising a clear error naming op and argument."""
    t = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(t) != 2 or not all(isinstance(i, (int, np.integer)) for i in t):
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")
    if any(i < minimum for i in t):
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {v!r}")
    return tuple(int(i) for i in t)


class Unfold(Function):
    """im2col as an op: (N, C, H, W) -> (N, C*KH*KW, OH*OW); backward is col2im."""

    def forward(self, x, *, g: Geometry):
        self.g, self.shape = g, x.shape
        return im2col(pad_input(x, g), g)

    def backward(self, gy):
        xp, g = xp_of(gy), self.g
        N, C, H, W = self.shape
        gxpad = xp.zeros((N, C, H + g.pt + g.pb, W + g.pl + g.pr), dtype=gy.dtype)
        return crop_padding(col2im(gy, g, gxpad), g)


class Fold(Function):
    """col2im as an op: (N, C*KH*KW, L) -> (N, C, H, W), summing overlaps; backward is im2col."""

    def forward(self, col, *, g: Geometry, size: tuple):
        xp = xp_of(col)
        self.g = g
        N, CK = col.shape[:2]
        C, (H, W) = CK // (g.KH * g.KW), size
        out = xp.zeros((N, C, H + g.pt + g.pb, W + g.pl + g.pr), dtype=col.dtype)
        return crop_padding(col2im(col, g, out), g)

    def backward(self, gy):
        return im2col(pad_input(gy, self.g), self.g)


def _window_args(op, kernel_size, dilation, padding, stride):
    k = pair(op, "kernel_size", kernel_size)
    d = pair(op, "dilation", dilation)
    p = pair(op, "padding", padding, minimum=0)
    s = pair(op, "stride", stride)
    return k, d, (p[0], p[0], p[1], p[1]), s


def unfold(input: Tensor, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """Extract sliding blocks (im2col): (N, C, H, W) -> (N, C*KH*KW, L), PyTorch's F.unfold.

    Column index c*KH*KW + kh*KW + kw holds channel c at kernel offset (kh, kw); L = OH*OW
    counts window positions in row-major order. An unbatched (C, H, W) input gives (C*KH*KW, L).
    """
    if input.ndim == 3:
        return unfold(input.unsqueeze(0), kernel_size, dilation, padding, stride).squeeze(0)
    if input.ndim != 4:
        raise ShapeError(f"unfold: expected a 3-D or 4-D input (N, C, H, W), got shape {input.shape}")
    k, d, p, s = _window_args("unfold", kernel_size, dilation, padding, stride)
    g = make_geometry(input.shape[2], input.shape[3], k, s, d, p)
    if g.OH < 1 or g.OW < 1:
        raise ShapeError(
            f"unfold: input spatial size {input.shape[2:]} (padding {padding}) is smaller than the "
            f"kernel's extent {(d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)}"
        )
    return Unfold.apply(input, g=g)


def fold(input: Tensor, output_size, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """Sum sliding blocks back into an image (col2im): (N, C*KH*KW, L) -> (N, C, H, W), PyTorch's F.fold.

    ``fold(unfold(x))`` multiplies each pixel by the number of windows that cover it.
    """
    if input.ndim == 2:
        return fold(input.unsqueeze(0), output_size, kernel_size, dilation, padding, stride).squeeze(0)
    if input.ndim != 3:
        raise ShapeError(f"fold: expected a 2-D or 3-D input (N, C*KH*KW, L), got shape {input.shape}")
    size = pair("fold", "output_size", output_size)
    k, d, p, s = _window_args("fold", kernel_size, dilation, padding, stride)
    g = make_geometry(size[0], size[1], k, s, d, p)
    if input.shape[1] % (k[0] * k[1]):
        raise ShapeError(
            f"fold: input dim 1 ({input.shape[1]}) must be divisible by the kernel size {k[0]}*{k[1]}"
        )
    if g.OH < 1 or g.OW < 1 or g.OH * g.OW != input.shape[2]:
        raise ShapeError(
            f"fold: input has {input.shape[2]} blocks but output_size {size} with kernel {k}, stride {s}, "
            f"padding {padding}, dilation {d} gives {max(g.OH, 0)}*{max(g.OW, 0)} blocks"
        )
    return Fold.apply(input, g=g, size=size)

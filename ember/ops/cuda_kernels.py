"""CuPy kernels for the places where the NumPy idiom is slow, or takes many launches, on a GPU.

Every op in ember is written once on ``xp`` arrays and runs on CuPy unchanged. A
few of them have a second, GPU-only route through this file, chosen in exactly one
place beside the op (``if xp is not np and cuda_kernels.fits(...)``):

=========================  ======================================  ===========================
kernel                     replaces (NumPy code beside the op)     why
=========================  ======================================  ===========================
maxpool2d_forward          KH*KW ``maximum`` + ``copyto`` passes    one launch, argmax for free
maxpool2d_backward         KH*KW masked slice-writes               one atomic scatter launch
col2im / row2im            KH*KW strided slice-adds                one gather launch, no atomics
batch-norm pieces          einsum sums + 4-6 elementwise passes    2 reductions + 1 tail each way
relu_forward               ``x > 0`` and ``maximum``               one launch, both outputs
sgd / adam / rmsprop step  4-10 elementwise passes per parameter   one launch per parameter
=========================  ======================================  ===========================

A small CuPy kernel launch costs ~10 us of host time, and a ResNet-20 training step
makes hundreds of them, so fewer launches is most of the GPU speed.

Every kernel is compiled lazily on first use (``functools.cache``), so importing ember
never needs CuPy. Each wrapper's docstring gives the plain NumPy it computes;
tests/test_gpu.py checks every wrapper against exactly that NumPy code. The kernels
handle float32 and float64 (``fits``); other dtypes stay on the generic path.
"""
from __future__ import annotations

import functools

import numpy as np

from ember import backend

_FLOAT = (np.dtype(np.float32), np.dtype(np.float64))


def fits(*arrays) -> bool:
    """True when all arrays are CuPy arrays of one dtype, float32 or float64 (what these kernels handle)."""
    cp = backend._cupy
    if cp is None or not all(isinstance(a, cp.ndarray) for a in arrays):
        return False
    return arrays[0].dtype in _FLOAT and all(a.dtype == arrays[0].dtype for a in arrays)


def _cp():
    return backend._cupy


# ---- max pooling -----------------------------------------------------------------------------------
@functools.cache
def _maxpool_fwd():
    return _cp().ElementwiseKernel(
        "raw T x, int32 H, int32 W, int32 OH, int32 OW, int32 KH, int32 KW, int32 SH, int32 SW, "
        "int32 PH, int32 PW, int32 DH, int32 DW",
        "T y, int32 arg",
        """
        const int ow = i % OW;
        const int oh = (i / OW) % OH;
        const ptrdiff_t base = (i / ((ptrdiff_t)OW * OH)) * H * W;  // start of this (n, c) plane
        T best = 0;
        int where = -1;
        for (int kh = 0; kh < KH; ++kh) {
            const int h = oh * SH - PH + kh * DH;
            if (h < 0 || h >= H) continue;  // padding never wins (it is -inf)
            for (int kw = 0; kw < KW; ++kw) {
                const int w = ow * SW - PW + kw * DW;
                if (w < 0 || w >= W) continue;
                const T v = x[base + h * W + w];
                // strict '>' keeps the FIRST maximum in row-major order; NaN wins, as in maximum()
                if (where < 0 || v > best || (v != v && best == best)) {
                    best = v;
                    where = h * W + w;
                }
            }
        }
        y = best;
        arg = where;
        """,
        "ember_maxpool2d_fwd",
    )


def maxpool2d_forward(x, k, s, p, d, OH: int, OW: int):
    """Max pooling of contiguous x (N, C, H, W) and the flat position of each window's first maximum.

    NumPy equivalent (``-inf`` padding, windows in row-major order)::

        xpad = pad(x, -inf);  win = windows(xpad)          # (N, C, OH, OW, KH*KW)
        y = win.max(-1);  o = win.argmax(-1)                # first maximum
        arg = (oh*sh - ph + (o // KW)*dh) * W + (ow*sw - pw + (o % KW)*dw)

    Returns (y (N, C, OH, OW) in x's dtype, arg (N, C, OH, OW) int32 with ``h * W + w``).
    """
    cp = _cp()
    x = cp.ascontiguousarray(x)
    N, C, H, W = x.shape
    y = cp.empty((N, C, OH, OW), dtype=x.dtype)
    arg = cp.empty((N, C, OH, OW), dtype=np.int32)
    _maxpool_fwd()(x, H, W, OH, OW, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1], y, arg)
    return y, arg


@functools.cache
def _maxpool_bwd():
    return _cp().ElementwiseKernel(
        "T gy, int32 arg, int32 HW, int32 OHW",
        "raw T gx",
        # several windows may pick the same pixel (overlapping windows): accumulate atomically
        "atomicAdd(&gx[(i / OHW) * (ptrdiff_t)HW + arg], gy);",
        "ember_maxpool2d_bwd",
    )


def maxpool2d_backward(gy, arg, in_shape):
    """Send each window's gradient to its maximum.

    NumPy equivalent::

        gx = zeros(in_shape).reshape(N*C, H*W)
        np.add.at(gx, (arange(N*C)[:, None], arg.reshape(N*C, -1)), gy.reshape(N*C, -1))
    """
    cp = _cp()
    N, C, H, W = in_shape
    gx = cp.zeros(in_shape, dtype=gy.dtype)
    _maxpool_bwd()(gy, arg, H * W, arg.shape[2] * arg.shape[3], gx)
    return gx


# ---- col2im ---------------------------------------------------------------------------------------
@functools.cache
def _col2im():
    return _cp().ElementwiseKernel(
        "raw T col, int32 Hp, int32 Wp, int32 KH, int32 KW, int32 SH, int32 SW, int32 DH, int32 DW, "
        "int32 OH, int32 OW",
        "T out",
        """
        // one thread per output pixel (n, c, h, w): gather every column entry read from it
        const int w = i % Wp;
        const int h = (i / Wp) % Hp;
        const ptrdiff_t nc = i / ((ptrdiff_t)Wp * Hp);
        T s = 0;
        for (int kh = 0; kh < KH; ++kh) {
            const int hh = h - kh * DH;
            if (hh < 0 || hh % SH != 0 || hh / SH >= OH) continue;
            for (int kw = 0; kw < KW; ++kw) {
                const int ww = w - kw * DW;
                if (ww < 0 || ww % SW != 0 || ww / SW >= OW) continue;
                s += col[((nc * KH + kh) * KW + kw) * OH * OW + (hh / SH) * OW + ww / SW];
            }
        }
        out += s;
        """,
        "ember_col2im",
    )


def col2im(col, g, out):
    """Add columns col (N, C*KH*KW, OH*OW) into ``out`` (N, C, Hp, Wp) in place, as im2col.col2im does.

    NumPy equivalent::

        col6 = col.reshape(N, C, KH, KW, OH, OW)
        for kh, kw in kernel offsets:
            out[:, :, kh*dh : kh*dh + sh*(OH-1) + 1 : sh, kw*dw : kw*dw + sw*(OW-1) + 1 : sw] += col6[:, :, kh, kw]

    Each output pixel sums its own entries (a gather), so no atomics are needed.
    """
    cp = _cp()
    col = cp.ascontiguousarray(col)
    target = out if out.flags.c_contiguous else cp.ascontiguousarray(out)
    Hp, Wp = out.shape[2:]
    _col2im()(col, Hp, Wp, g.KH, g.KW, g.sh, g.sw, g.dh, g.dw, g.OH, g.OW, target)
    if target is not out:
        out[...] = target
    return out


@functools.cache
def _row2im():
    return _cp().ElementwiseKernel(
        "raw T rows, int32 Hp, int32 Wp, int32 C, int32 G, int32 KH, int32 KW, int32 SH, int32 SW, "
        "int32 DH, int32 DW, int32 OH, int32 OW",
        "T out",
        """
        // one thread per channels-last output element (n, h, w, c): gather its row entries
        const int c = i % C;
        const int w = (i / C) % Wp;
        const int h = (i / ((ptrdiff_t)C * Wp)) % Hp;
        const ptrdiff_t n = i / ((ptrdiff_t)C * Wp * Hp);
        const int Cg = C / G, gi = c / Cg, cg = c % Cg;
        T s = 0;
        for (int kh = 0; kh < KH; ++kh) {
            const int hh = h - kh * DH;
            if (hh < 0 || hh % SH != 0 || hh / SH >= OH) continue;
            for (int kw = 0; kw < KW; ++kw) {
                const int ww = w - kw * DW;
                if (ww < 0 || ww % SW != 0 || ww / SW >= OW) continue;
                const ptrdiff_t pix = (n * OH + hh / SH) * OW + ww / SW;
                s += rows[(((pix * G + gi) * KH + kh) * KW + kw) * Cg + cg];
            }
        }
        out += s;
        """,
        "ember_row2im",
    )


def row2im(rows, g, out):
    """Add rows (N*OH*OW, G, KH*KW*C/G) into channels-last ``out`` (N, Hp, Wp, C) in place.

    NumPy equivalent (the adjoint of copying windows into rows)::

        rows7 = rows.reshape(N, OH, OW, G, KH, KW, C // G)
        for kh, kw in kernel offsets:
            out[:, kh*dh : kh*dh + sh*(OH-1) + 1 : sh, kw*dw : kw*dw + sw*(OW-1) + 1 : sw]
                .reshape(N, OH, OW, G, C // G) += rows7[:, :, :, :, kh, kw]
    """
    cp = _cp()
    rows = cp.ascontiguousarray(rows)
    target = out if out.flags.c_contiguous else cp.ascontiguousarray(out)
    Hp, Wp, C = out.shape[1:]
    _row2im()(rows, Hp, Wp, C, rows.shape[1], g.KH, g.KW, g.sh, g.sw, g.dh, g.dw, g.OH, g.OW, target)
    if target is not out:
        out[...] = target
    return out


# ---- im2row: the rows of a convolution straight from its unpadded input ----------------------------
_GEOMETRY = ("Cg", "G", "KH", "KW", "SH", "SW", "DH", "DW", "PT", "PL", "H", "W", "OH", "OW")


@functools.cache
def _im2row(geometry: tuple, index: str):
    # Compiled once per layer geometry: with the sizes as constants, the six divisions that
    # split i compile to multiplications (a version taking them as arguments ran ~110 us per
    # ResNet-20 lowering on an H200, most of it in 64-bit divisions).
    sizes = " ".join(f"const int {name} = {v};" for name, v in zip(_GEOMETRY, geometry))
    return _cp().ElementwiseKernel(
        "raw T x, int32 sN, int32 sC, int32 sH, int32 sW", "T row",
        sizes + f"""
        // one thread per entry of rows (n, oh, ow, group, kh, kw, c): the input pixel it reads, or 0
        // where the window reaches into the padding
        {index} r = i;
        const int c = r % Cg; r /= Cg;
        const int kw = r % KW; r /= KW;
        const int kh = r % KH; r /= KH;
        const int grp = r % G; r /= G;
        const int ow = r % OW; r /= OW;
        const int oh = r % OH;
        const {index} n = r / OH;
        const int h = oh * SH - PT + kh * DH;
        const int w = ow * SW - PL + kw * DW;
        row = (h < 0 || h >= H || w < 0 || w >= W) ? T(0)
            : x[(ptrdiff_t)n * sN + (ptrdiff_t)(grp * Cg + c) * sC + (ptrdiff_t)h * sH + (ptrdiff_t)w * sW];
        """,
        "ember_im2row",
    )


def im2row(x, g, groups: int, pads: tuple, out=None):
    """Rows (N*OH*OW, G, KH*KW*C/G) of x (N, C, H, W) zero-padded by pads = (t, b, l, r), in one
    launch: ember.ops.im2row.im2row of the padded input, without making the padded copy. x may
    lie channels-first or channels-last in memory; ``out``, when given, is a contiguous buffer of
    at least that many elements.

    NumPy equivalent: ``im2row.im2row(pad_nhwc_into(x, pads, empty (N, Hp, Wp, C)), g, groups)``.
    """
    cp = _cp()
    if not (x.flags.c_contiguous or x.transpose(0, 2, 3, 1).flags.c_contiguous):
        x = cp.ascontiguousarray(x)
    base = x if x.flags.c_contiguous else x.transpose(0, 2, 3, 1)  # the memory, in its own order
    N, C, H, W = x.shape
    size = N * g.OH * g.OW * g.KH * g.KW * C
    out = cp.empty(size, dtype=x.dtype) if out is None else out.reshape(-1)[:size]
    sN, sC, sH, sW = (s // x.itemsize for s in x.strides)
    geometry = (C // groups, groups, g.KH, g.KW, g.sh, g.sw, g.dh, g.dw, pads[0], pads[2], H, W, g.OH, g.OW)
    kernel = _im2row(geometry, "int" if size < 2 ** 31 else "long long")
    kernel(base.reshape(-1), sN, sC, sH, sW, out)
    return out.reshape(N * g.OH * g.OW, groups, -1)


# ---- batch / instance / group norm pieces ----------------------------------------------------------
# CuPy reduces ``x.sum(axis=(0, 2, 3))`` with about one thread block per output, so a batch
# norm's 16 to 64 channel sums over a (128, C, 32, 32) batch kept 16-64 of the GPU's 132
# multiprocessors busy and took ~0.45 ms each (ResNet-20's step spent 17 of its 28 GPU ms
# there, measured on an H200). The kernel below splits every channel's elements among S
# threads, so that tens of thousands of threads read memory side by side; a second, small
# reduction adds the S partial sums of each channel. Both orders of a batch are read in place.
_CHANNEL_SUMS = """
    // thread i adds up part s of channel c's n elements: those with index j = s, s + S, ...
    // (j counts the elements of a channel in row-major order of the other axes). Neighbouring
    // threads take neighbouring addresses of a: neighbouring channels when a is channels-last
    // (inner 1), neighbouring parts of one channel otherwise.
    const int c = ia == 1 ? i % C : i / S;
    const long long s = ia == 1 ? i / C : i % S;
    T acc = 0, acc2 = 0;
    for (long long j = s; j < n; j += S) {
        const T v = a[(j / ia) * C * ia + c * (long long)ia + j % ia];
        BODY
    }
"""


@functools.cache
def _channel_kernel(kind: str):
    body = {"sum": "acc += v;",
            "sqdiff": "const T d = v - m[c]; acc += d * d;",
            "sum_product": "acc += v; acc2 += v * b[(j / ib) * C * ib + c * (long long)ib + j % ib];"}[kind]
    return _cp().ElementwiseKernel(
        "raw T a, raw T b, raw T m, int32 n, int32 C, int32 ia, int32 ib, int32 S, T scale", "T p, T p2",
        _CHANNEL_SUMS.replace("BODY", body) + "p = acc * scale; p2 = acc2 * scale;",
        f"ember_channel_{kind}",
    )


def _channel_layout(x, axes: tuple):
    """(flat memory, channel axis, elements per channel, inner) when ``axes`` are all axes of x but
    one (the channel axis k) and x lies in memory C-contiguously (inner: the product of the axes
    after k) or with k last (inner 1, channels-last); None otherwise."""
    kept = [k for k in range(x.ndim) if k not in axes]
    if len(kept) != 1 or x.size == 0 or x.size >= 2 ** 31:
        return None
    k = kept[0]
    C = x.shape[k]
    if x.flags.c_contiguous:
        return x.ravel(), k, x.size // C, int(np.prod(x.shape[k + 1:]))
    last = _cp().moveaxis(x, k, -1)
    if last.flags.c_contiguous:
        return last.ravel(), k, x.size // C, 1
    return None


@functools.cache
def _sum_kernel():
    return _cp().ReductionKernel("T x", "T y", "x", "a + b", "y = a", "0", "ember_sum")


def _channel_sums(kind: str, lay, b=None, m=None, scale: float = 1.0):
    """Per-channel sums of ``kind`` over x's layout ``lay`` (``_channel_layout``), times ``scale``:
    two (C,) arrays, the second the sum of x * b for "sum_product" (else zeros). Two launches:
    the partial sums, then one reduction of both sets of partials (CuPy's own ``sum`` there cost
    ~35 us of host time per call, in CUB's set-up)."""
    cp = _cp()
    flat, k, n, ia = lay
    C = flat.size // n
    S = max(1, min(n, 32768 // C))  # ~32k threads, each adding n / S elements
    t = flat.dtype.type
    parts = cp.empty((2, S, C) if ia == 1 else (2, C, S), dtype=flat.dtype)
    bflat, ib = (flat, ia) if b is None else b
    _channel_kernel(kind)(flat, bflat, flat if m is None else m, n, C, ia, ib, S, t(scale), parts[0], parts[1])
    totals = _sum_kernel()(parts, axis=1 if ia == 1 else 2)  # (2, C)
    return totals[0], totals[1]


def _kept(x, k: int):
    """The shape of a statistic over all axes but k, reduced dims kept as size 1."""
    return tuple(n if i == k else 1 for i, n in enumerate(x.shape))


@functools.cache
def _prod_sum():
    # Reduction variables are named a and b by CuPy, so the inputs are p and q.
    return _cp().ReductionKernel("T p, T q", "T y", "p * q", "a + b", "y = a", "0", "ember_prod_sum")


def sum_product(axes: tuple, x, other=None):
    """``(x * other).sum(axis=axes, keepdims=True)`` (just ``x.sum(...)`` without ``other``) in one reduction."""
    lay = _channel_layout(x, axes)
    if lay is not None:
        if other is None:
            return _channel_sums("sum", lay)[0].reshape(_kept(x, lay[1]))
        olay = _channel_layout(other, axes) if other.shape == x.shape else None
        if olay is not None:
            _, s2 = _channel_sums("sum_product", lay, b=(olay[0], olay[3]))
            return s2.reshape(_kept(x, lay[1]))
    if other is None:
        return x.sum(axis=axes, keepdims=True)
    return _prod_sum()(x, other, axis=axes, keepdims=True)


def sums_for_backward(axes: tuple, g, xhat):
    """``(g.sum(axes, keepdims=True), (g * xhat).sum(axes, keepdims=True))``, in one pass over g
    and xhat where they allow (``_channel_layout``)."""
    lay = _channel_layout(g, axes)
    olay = _channel_layout(xhat, axes) if lay is not None and xhat.shape == g.shape else None
    if olay is None:
        return sum_product(axes, g), sum_product(axes, g, xhat)
    s1, s2 = _channel_sums("sum_product", lay, b=(olay[0], olay[3]))
    return s1.reshape(_kept(g, lay[1])), s2.reshape(_kept(g, lay[1]))


@functools.cache
def _sqdiff_sum():
    return _cp().ReductionKernel("T x, T m", "T y", "(x - m) * (x - m)", "a + b", "y = a", "0", "ember_sqdiff_sum")


def mean_var(x, axes: tuple, count: int):
    """Mean and biased variance over ``axes`` (kept as size-1 dims), two reductions.

    NumPy equivalent: ``m = x.mean(axes, keepdims=True); v = ((x - m)**2).sum(axes, keepdims=True) / count``.
    """
    lay = _channel_layout(x, axes)
    if lay is not None:  # per-channel statistics (batch norm): split among many threads
        mean = _channel_sums("sum", lay, scale=1.0 / count)[0]
        var = _channel_sums("sqdiff", lay, m=mean, scale=1.0 / count)[0]
        shape = _kept(x, lay[1])
        return mean.reshape(shape), var.reshape(shape)
    mean = x.mean(axis=axes, keepdims=True)
    var = _sqdiff_sum()(x, mean, axis=axes, keepdims=True)
    var /= x.dtype.type(count)
    return mean, var


@functools.cache
def _invstd():
    return _cp().ElementwiseKernel("T var, T eps", "T inv", "inv = T(1) / sqrt(var + eps);", "ember_invstd")


@functools.cache
def _norm_fwd():
    return _cp().ElementwiseKernel(
        "T x, T mean, T invstd, T w, T b", "T xhat, T y",
        "xhat = (x - mean) * invstd; y = xhat * w + b;",
        "ember_norm_fwd",
    )


def normalize_forward(x, mean, var, eps: float, w=None, b=None):
    """invstd (statistics' shape), xhat and y (x's shape) of a normalization in two launches.

    NumPy equivalent (statistics broadcast against x; w = 1 and b = 0 when absent)::

        invstd = 1 / sqrt(var + eps);  xhat = (x - mean) * invstd;  y = xhat * w + b
    """
    cp = _cp()
    t = x.dtype.type
    invstd = _invstd()(var, t(eps))
    xhat = cp.empty_like(x)  # in x's memory order: a channels-last network stays channels-last
    y = cp.empty_like(x)
    _norm_fwd()(*backend.memory_order(x, mean, invstd, t(1) if w is None else w, t(0) if b is None else b, xhat, y))
    return invstd, xhat, y


@functools.cache
def _norm_bwd():
    return _cp().ElementwiseKernel(
        "T g, T xhat, T s1, T s2, T scale, T inv_m",
        "T gx",
        "gx = (g - (s1 + xhat * s2) * inv_m) * scale;",
        "ember_norm_bwd",
    )


def normalize_backward(g, xhat, s1, s2, scale, m: int, out):
    """Input gradient of a normalization with batch statistics, written into ``out``.

    NumPy equivalent: ``out[...] = (g - s1 / m - xhat * s2 / m) * scale`` where s1 = sum(g),
    s2 = sum(g * xhat) over the statistic's axes and scale = invstd (* w).
    """
    o, g, xhat, s1, s2, scale = backend.memory_order(out, g, xhat, s1, s2, scale)
    _norm_bwd()(g, xhat, s1, s2, scale, g.dtype.type(1.0 / m), o)
    return out


@functools.cache
def _running_update():
    return _cp().ElementwiseKernel(
        "T value, T keep, T gain", "T buf", "buf = keep * buf + gain * value;", "ember_running_update")


def running_update(buf, value, momentum: float) -> None:
    """Move a running statistic towards ``value`` in place, in one launch.

    NumPy equivalent: ``buf[...] = (1 - momentum) * buf + momentum * value.reshape(buf.shape)``.
    """
    t = buf.dtype.type
    _running_update()(value.reshape(buf.shape), t(1 - momentum), t(momentum), buf)


# ---- ReLU -----------------------------------------------------------------------------------------
@functools.cache
def _relu_fwd():
    return _cp().ElementwiseKernel(
        "T x", "T y, bool mask",
        "mask = x > 0; y = (mask || x != x) ? x : T(0);",  # NaN passes through, as maximum(x, 0)
        "ember_relu_fwd",
    )


def relu_forward(x):
    """``(maximum(x, 0), x > 0)`` in one launch."""
    cp = _cp()
    y = cp.empty_like(x)  # in x's memory order
    mask = cp.empty_like(x, dtype=np.bool_)
    _relu_fwd()(*backend.memory_order(x, y, mask))
    return y, mask


# ---- optimizer updates (in place on the parameter and its state) -----------------------------------
@functools.cache
def _sgd():
    return _cp().ElementwiseKernel(
        "T g, T lr, T wd, T sgn", "T p",
        "T d = sgn * g; if (wd != T(0)) d += wd * p; p -= lr * d;",
        "ember_sgd",
    )


@functools.cache
def _sgd_momentum():
    return _cp().ElementwiseKernel(
        "T g, T lr, T wd, T sgn, T momentum, T keep, int32 nesterov, int32 first", "T p, T buf",
        """
        T d = sgn * g;
        if (wd != T(0)) d += wd * p;
        buf = first ? d : momentum * buf + keep * d;
        d = nesterov ? d + momentum * buf : buf;
        p -= lr * d;
        """,
        "ember_sgd_momentum",
    )


def sgd_step(p, g, lr, wd, maximize, momentum=0.0, dampening=0.0, nesterov=False, buf=None, first=False):
    """One SGD update in place (ember.optim.SGD's rule).

    NumPy equivalent::

        d = -g if maximize else g;  d = d + wd * p                 (if wd)
        buf = d if first else momentum * buf + (1 - dampening) * d   (if momentum)
        d = d + momentum * buf if nesterov else buf                   (if momentum)
        p -= lr * d
    """
    t = p.dtype.type
    sign = t(-1 if maximize else 1)
    if buf is None:
        _sgd()(g, t(lr), t(wd), sign, p)
    else:
        _sgd_momentum()(g, t(lr), t(wd), sign, t(momentum), t(1 - dampening), int(nesterov), int(first), p, buf)


@functools.cache
def _adam():
    return _cp().ElementwiseKernel(
        "T g, T sgn, T decay, T l2, T c1, T beta2, T c2, T step_size, T sqrt_bc2, T eps", "T p, T m, T v",
        """
        T d = sgn * g;
        if (l2 != T(0)) d += l2 * p;
        p *= decay;
        m += c1 * (d - m);
        v = beta2 * v + c2 * (d * d);
        p -= m / (sqrt(v) / sqrt_bc2 + eps) * step_size;
        """,
        "ember_adam",
    )


def adam_step(p, g, m, v, lr, beta1, beta2, eps, wd, decoupled, maximize, step_size, sqrt_bc2):
    """One Adam/AdamW update in place (ember.optim.Adam's rule, without amsgrad).

    NumPy equivalent::

        d = -g if maximize else g
        p *= 1 - lr * wd  (AdamW)        or   d = d + wd * p  (Adam)
        m += (1 - beta1) * (d - m);  v = beta2 * v + (1 - beta2) * d * d
        p -= m / (sqrt(v) / sqrt_bc2 + eps) * step_size
    """
    t = p.dtype.type
    decay, l2 = (t(1 - lr * wd), t(0)) if decoupled else (t(1), t(wd))
    # 1 - beta is rounded once from double, as the NumPy path does (float32(1) - float32(0.999)
    # differs from float32(0.001) by 1e-5 relative, which shows after a few steps)
    _adam()(g, t(-1 if maximize else 1), decay, l2, t(1 - beta1), t(beta2), t(1 - beta2), t(step_size),
            t(sqrt_bc2), t(eps), p, m, v)


@functools.cache
def _rmsprop():
    return _cp().ElementwiseKernel(
        "T g, T sgn, T lr, T wd, T alpha, T c, T eps", "T p, T s",
        """
        T d = sgn * g;
        if (wd != T(0)) d += wd * p;
        s = alpha * s + c * (d * d);
        p -= lr * (d / (sqrt(s) + eps));
        """,
        "ember_rmsprop",
    )


def rmsprop_step(p, g, s, lr, alpha, eps, wd, maximize):
    """One plain RMSprop update in place (no momentum, not centered).

    NumPy equivalent: ``d = ±g + wd * p;  s = alpha * s + (1 - alpha) * d * d;  p -= lr * d / (sqrt(s) + eps)``.
    """
    t = p.dtype.type
    _rmsprop()(g, t(-1 if maximize else 1), t(lr), t(wd), t(alpha), t(1 - alpha), t(eps), p, s)

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
im2row                     padded copy + windows' copy             one gather launch, no padding
relu_forward               ``maximum(x, 0)``                       one launch, no mask kept
relu_backward              ``gy * mask``                           one launch, mask read off y
add_same_order             ``a + b`` (residual sums)               one launch, no type resolution
=========================  ======================================  ===========================

Batch, instance and group norm have theirs in ember/ops/cuda_norm.py, conv2d its GEMM route in
ember/ops/cuda_conv.py, the optimizers their multi-tensor updates in ember/optim/cuda_step.py. A small CuPy kernel
launch costs ~10 us of host time, and a ResNet-20 training step makes hundreds of them, so
fewer launches is most of the GPU speed.

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
    if cp is None or not isinstance(arrays[0], cp.ndarray):
        return False
    dtype = arrays[0].dtype
    for a in arrays:  # (a plain loop: this runs before most GPU ops, and generators cost the host more)
        if not isinstance(a, cp.ndarray) or a.dtype != dtype:
            return False
    return dtype in _FLOAT


def _cp():
    return backend._cupy


class Loop:
    """A CUDA kernel that runs ``body`` once for every i in [0, n): a ``cupy.RawKernel`` whose
    threads step through i in a grid-stride loop. ``params`` are C declarations, with T for the
    floating type the kernel is compiled for (``Loop(...)(n, *args, dtype=...)``), e.g.
    ``"const T* x, T* y, int C, double eps"``; pointers take contiguous CuPy arrays, values
    are converted to their declared C type.

    Why not ``cupy.ElementwiseKernel``: its call resolves types, shapes and broadcasting for
    every argument, ~7 us of host time for three arguments and ~3x that for the ~18 of batch
    norm's kernels, where a raw launch costs ~5 us (bench/gpu_overhead.py, on an H200 host).
    The body indexes memory itself, so the kernels that use this class say exactly which
    element each thread reads and writes.
    """

    _VALUES = {"int": np.int32, "long long": np.int64, "float": np.float32, "double": np.float64}
    _CTYPE = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

    def __init__(self, name: str, params: str, body: str):
        self.name, self.params, self.body = name, params, body
        # per parameter: None for a pointer, else its value type (T: the dtype's, at call time)
        self.kinds = []
        for p in params.split(","):
            decl = p.strip().rsplit(" ", 1)[0].replace("const ", "").strip()
            self.kinds.append(None if "*" in decl else ("T" if decl == "T" else self._VALUES[decl]))
        self.scalars = any(k is not None for k in self.kinds)  # else the arguments pass as they are
        self.kernels: dict = {}

    def _compile(self, dtype):
        ctype = self._CTYPE[np.dtype(dtype)]
        name = f"{self.name}_{ctype}"
        src = (f"typedef {ctype} T;\n"
               f'extern "C" __global__ void {name}(const long long loop_size, {self.params}) {{\n'
               f"  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < loop_size;\n"
               f"       i += (long long)blockDim.x * gridDim.x) {{\n{self.body}\n  }}\n}}\n")
        # the kernel, and per parameter the conversion of its value (None: a pointer, passed as is)
        entry = self.kernels[np.dtype(dtype)] = (
            _cp().RawKernel(src, name), [np.dtype(dtype).type if k == "T" else k for k in self.kinds])
        return entry

    def __call__(self, n: int, *args, dtype) -> None:
        kernel, kinds = self.kernels.get(dtype) or self._compile(dtype)
        if self.scalars:
            args = [a if k is None else k(a) for k, a in zip(kinds, args)]
        if n > 0:
            kernel((min((n + 255) // 256, 1 << 20),), (256,), (np.int64(n), *args))


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
                // strict '>' keeps the FIRST maximum in row-major order; every NaN wins, so a
                // window's LAST NaN is reported (PyTorch's CPU rule, and the CPU path's)
                if (where < 0 || v > best || v != v) {
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


def _sizes(geometry: tuple) -> str:
    """C declarations of a layer geometry's sizes (``_GEOMETRY``), compiled into its kernels."""
    return " ".join(f"const int {name} = {v};" for name, v in zip(_GEOMETRY, geometry))


@functools.cache
def rows_kernel(geometry: tuple, strides: tuple, index: str, window: str):
    """The gather that lowers x (N, C, H, W; read through its element strides sN, sC, sH, sW) to
    rows (N*OH*OW, G, C/G*KH*KW) for ``geometry`` (``_GEOMETRY``'s sizes): each row holds one
    output pixel's window of one group, in ``window`` order, "kh kw c" (channels-last runs) or
    "c kh kw" (the weight's own order). Compiled once per layer geometry and memory layout: with
    the sizes as constants, the divisions that split i compile to multiplications (a version
    taking them as arguments ran ~110 us per ResNet-20 lowering on an H200, most of it in 64-bit
    divisions), and the launch converts no scalars on the host."""
    split = {"kh kw c": "const int c = r % Cg; r /= Cg; const int kw = r % KW; r /= KW; const int kh = r % KH;",
             "c kh kw": "const int kw = r % KW; r /= KW; const int kh = r % KH; r /= KH; const int c = r % Cg;"}[window]
    sN, sC, sH, sW = strides
    return Loop(f"ember_rows_{window.replace(' ', '')}", "const T* x, T* row",
                _sizes(geometry) + f"const long long sN = {sN}, sC = {sC}, sH = {sH}, sW = {sW};" + f"""
        // one thread per entry of rows (n, oh, ow, group, then the window's axes): the input
        // element it reads, or 0 where the window reaches into the padding
        {index} r = i;
        {split}
        r /= {'KH' if window == 'kh kw c' else 'Cg'};
        const int grp = r % G; r /= G;
        const int ow = r % OW; r /= OW;
        const int oh = r % OH;
        const {index} n = r / OH;
        const int h = oh * SH - PT + kh * DH;
        const int w = ow * SW - PL + kw * DW;
        row[i] = (h < 0 || h >= H || w < 0 || w >= W) ? T(0)
            : x[n * sN + (grp * Cg + c) * sC + h * sH + w * sW];
        """)


def geometry_of(xshape: tuple, g, groups: int, pads: tuple) -> tuple:
    """The sizes (``_GEOMETRY``) a lowering kernel is compiled for."""
    N, C, H, W = xshape
    return (C // groups, groups, g.KH, g.KW, g.sh, g.sw, g.dh, g.dw, pads[0], pads[2], H, W, g.OH, g.OW)


def index_type(size: int) -> str:
    """The C integer type that indexes ``size`` elements."""
    return "int" if size < 2 ** 31 else "long long"


def lower_rows(x, g, groups: int, pads: tuple, window: str, out=None):
    """Rows (N*OH*OW, G, C/G*KH*KW) of x (N, C, H, W; any strides) zero-padded by pads = (t, b, l, r),
    each window in ``window`` order (``rows_kernel``), in one launch, returned flat (a view costs
    the host time on a GPU: callers reshape when they need to); into ``out``, a flat buffer of at
    least that many elements, when given (entries past the rows are left as they are)."""
    cp = _cp()
    if not backend.is_dense(x):  # the kernel reads x through its strides from its first element
        x = cp.ascontiguousarray(x)
    N, C, H, W = x.shape
    size = N * g.OH * g.OW * C * g.KH * g.KW
    if out is None:
        out = cp.empty(size, dtype=x.dtype)
    elif out.ndim != 1 or out.size < size or out.dtype != x.dtype or not out.flags.c_contiguous:
        raise ValueError(f"im2row: out must be a contiguous flat {x.dtype} buffer of at least {size} elements, "
                         f"got shape {out.shape}, dtype {out.dtype}")
    strides = tuple([s // x.itemsize for s in x.strides])
    kernel = rows_kernel(geometry_of(x.shape, g, groups, pads), strides, index_type(size), window)
    kernel(size, x, out, dtype=x.dtype)
    return out


def im2row(x, g, groups: int, pads: tuple, out=None):
    """Rows (N*OH*OW, G, KH*KW*C/G) of x (N, C, H, W) zero-padded by pads = (t, b, l, r), in one
    launch: ember.ops.im2row.im2row of the padded input, without making the padded copy. x may
    lie in any memory order; ``out``, when given, is a contiguous buffer of at least that many elements.

    NumPy equivalent: ``im2row.im2row(pad_nhwc_into(x, pads, empty (N, Hp, Wp, C)), g, groups)``.
    """
    P = x.shape[0] * g.OH * g.OW
    if out is not None and not out.flags.c_contiguous:  # (its reshape would be a copy, written in vain)
        raise ValueError(f"im2row: out must be contiguous, got strides {out.strides}")
    rows = lower_rows(x, g, groups, pads, "kh kw c", None if out is None else out.reshape(-1))
    size = P * x.shape[1] * g.KH * g.KW
    return (rows if rows.size == size else rows[:size]).reshape(P, groups, -1)


# ---- ReLU and the residual sum ---------------------------------------------------------------------
@functools.cache
def _relu_fwd():
    return Loop("ember_relu_fwd", "const T* x, T* y", """
        const T v = x[i];
        y[i] = (v > T(0) || v != v) ? v : T(0);  // NaN passes through, as maximum(x, 0)
        """)


def relu_forward(x):
    """``maximum(x, 0)`` in one launch, in x's memory order."""
    if not backend.is_dense(x):
        x = _cp().ascontiguousarray(x)
    y = backend.empty_as(x)  # element i is the same in both memories
    _relu_fwd()(x.size, x, y, dtype=x.dtype)
    return y


@functools.cache
def _relu_bwd():
    return Loop("ember_relu_bwd", "const T* g, const T* y, T* gx", "gx[i] = y[i] > T(0) ? g[i] : T(0);")


def relu_backward(gy, y):
    """``gy * (y > 0)`` from ReLU's output y (positive exactly where its input was), in y's memory
    order, one launch; no mask is kept between the passes."""
    gx = backend.empty_as(y, gy.dtype)
    if gy.strides != gx.strides:  # gy lies in another order than y: copied into its order
        gy = backend.copy_as(gy, gx)
    _relu_bwd()(gx.size, gy, y, gx, dtype=gy.dtype)
    return gx


@functools.cache
def _add():
    return Loop("ember_add", "const T* a, const T* b, T* y", "y[i] = a[i] + b[i];")


def add_same_order(a, b):
    """``a + b`` in one launch for same-shaped arrays lying densely in the same memory order (a
    residual sum, or two gradients of one activation); None for anything else. CuPy's ``add``
    resolves types and strides on the host first.
    """
    if a.shape != b.shape or a.strides != b.strides or not fits(a, b) or not backend.is_dense(a):
        return None
    y = backend.empty_as(a)
    _add()(a.size, a, b, y, dtype=a.dtype)
    return y

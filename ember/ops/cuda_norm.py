"""CuPy kernels for batch, instance and group norm (see ember/ops/cuda_kernels.py for the scheme).

=========================  ======================================  ===========================
kernel                     replaces (NumPy code beside the op)     why
=========================  ======================================  ===========================
mean_var, sum_product,     einsum / ``sum`` over all axes but the  tens of thousands of threads
sums_for_backward          channel's                               per sum, both sums in one pass
normalize_forward          4-6 elementwise passes                  invstd, xhat and y: 2 launches
normalize_backward         4 elementwise passes                    one launch
running_update             4 elementwise passes                    one launch
=========================  ======================================  ===========================

As in cuda_kernels.py, kernels compile on first use, each wrapper's docstring gives its NumPy
equivalent, and tests/test_gpu.py checks each against it.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ember import backend
from ember.ops.cuda_kernels import Loop, _cp

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
    return Loop(f"ember_channel_{kind}",
                "const T* a, const T* b, const T* m, int n, int C, int ia, int ib, int S, T scale, T* p, T* p2",
                _CHANNEL_SUMS.replace("BODY", body) + "p[i] = acc * scale; p2[i] = acc2 * scale;")


def _channel_layout(x, axes: tuple):
    """(x, channel axis, elements per channel, inner) when ``axes`` are all axes of x but one (the
    channel axis k) and x lies densely in memory, C-contiguously (inner: the product of the axes
    after k) or with k last (inner 1, channels-last); None otherwise. Worked out from the strides
    alone: the kernels read x through its address."""
    kept = [k for k in range(x.ndim) if k not in axes]
    if len(kept) != 1 or x.size == 0 or x.size >= 2 ** 31:
        return None
    k = kept[0]
    C = x.shape[k]
    if x.flags.c_contiguous:
        return x, k, x.size // C, math.prod(x.shape[k + 1:])
    expect = x.itemsize  # channels-last: k's stride one element, the other axes C-contiguous around it
    for i in [k] + [i for i in reversed(range(x.ndim)) if i != k]:
        if x.shape[i] != 1 and x.strides[i] != expect:
            return None
        expect *= x.shape[i]
    return x, k, x.size // C, 1


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
    parts = cp.empty((2, S, C) if ia == 1 else (2, C, S), dtype=flat.dtype)
    bflat, ib = (flat, ia) if b is None else b
    _channel_kernel(kind)(C * S, flat, bflat, flat if m is None else m, n, C, ia, ib, S, scale, parts[0], parts[1],
                          dtype=flat.dtype)
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
    t = x.dtype.type
    invstd = _invstd()(var, t(eps))
    xhat = backend.empty_as(x)  # in x's memory order: a channels-last network stays channels-last
    y = backend.empty_as(x)
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


# ---- batch norm in training: two kernels each way, and one memset --------------------------------
# The statistics of a batch norm need a pass over the whole batch before any output can be
# written, so a training step's batch norm takes at least two passes each way. Here: the
# per-channel sums (each of ~32k threads adds its share, in double, then adds that to the
# channel's two totals atomically), then one elementwise pass that finishes the statistics
# per thread and writes the output; its first C threads also save each channel's mean and
# invstd for backward and move the running statistics. Sums of squares in double keep
# var = E[x^2] - mean^2 exact to float32 precision unless |mean| / std > ~1e4.
#
# A layer's sizes, memory layout, eps and options are compiled into its kernels as constants
# (``_constants``; the kernels are cached per layer shape, not per batch size): CuPy turns each
# scalar argument of a launch into a C value on the host, which cost batch norm's launches,
# with up to 20 arguments, more host time than the launch itself (bench/gpu_host.py counts them).
_STAT_SUMS = """
    const int c = ia == 1 ? i % C : i / S;
    const long long s = ia == 1 ? i / C : i % S;
    double acc = 0, acc2 = 0;
    for (long long j = s; j < n; j += S) {
        const long long at = (j / ia) * C * ia + c * (long long)ia + j % ia;
        const double v = a[at];
        BODY
    }
    atomicAdd(&sums[O + c], acc);
    atomicAdd(&sums[O + C + c], acc2);
"""


def _constants(**values) -> str:
    """C declarations of a kernel's compile-time constants: ints (bools as 0 or 1), and floats
    as doubles written exactly (Python's repr of a float reads back as the same double)."""
    decls = []
    for name, v in values.items():
        if isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError(f"batch_norm: {name} must be finite, got {v}")
            decls.append(f"const double {name} = {v!r};")
        else:
            decls.append(f"const int {name} = {int(v)};")
    return " ".join(decls)


@functools.cache
def _stat_sums(kind: str, C: int, ia: int, ib: int, O: int):
    g = ("const long long bt = (j / ib) * C * ib + c * (long long)ib + j % ib;"  # x's element (b, inner ib)
         "acc += v; acc2 += v * ((double)b[bt] - sums[4 * C + c]) * sums[5 * C + c];")
    body = {"x": "acc += v; acc2 += v * v;",  # sum(x), sum(x^2)
            # sum(g), sum(g * xhat), xhat recomputed from x (b, laid out with inner size ib) and
            # forward's statistics (sums[4C + c]: the mean, sums[5C + c]: the invstd)
            "g": g,
            # the same for g * (y > 0): the gradient through the ReLU that batch_norm applied (y:
            # its output, laid out like x), counted where y > 0 only
            "g_relu": g.replace("acc += v;", "if (!(r[bt] > T(0))) continue; acc += v;"),
            }[kind]
    params = "const T* a, const T* b, long long n, int S, double* sums"
    return Loop(f"ember_bn_sums_{kind}", params + (", const T* r" if kind == "g_relu" else ""),
                _constants(C=C, ia=ia, ib=ib, O=O) + _STAT_SUMS.replace("BODY", body))


def _sums(kind: str, lay, sums, at: int, other=None, y=None):
    """Per-channel float64 totals over a (``_channel_layout``), added into sums[at:at + C] and
    sums[at + C:at + 2 * C] (zeros): sum(a) and sum(a^2) for kind "x"; sum(a) and sum(a * xhat),
    xhat = (other - mean) * invstd, for kind "g", mean and invstd read from sums[4C:6C]; for
    kind "g_relu", the same over the elements where ``y`` (laid out like other) is positive."""
    flat, k, n, ia = lay
    C = flat.size // n
    S = max(1, min(n, 32768 // C))
    b, ib = (flat, ia) if other is None else other
    kernel = _stat_sums(kind, C, ia, ib, at)
    if y is None:
        kernel(C * S, flat, b, n, S, sums, dtype=flat.dtype)
    else:
        kernel(C * S, flat, b, n, S, sums, y, dtype=flat.dtype)


@functools.cache
def _bn_forward(C: int, inner: int, eps: float, has_w: bool, has_b: bool, track: bool, has_count: bool,
                has_add: bool = False, relu: bool = False):
    return Loop(
        "ember_bn_forward",
        "const T* x, double* sums, const T* w, const T* b, double inv_n, double momentum, double unbias, "
        "T* y, T* run_mean, T* run_var, long long* count, const T* r",
        _constants(C=C, inner=inner, eps=eps, has_w=has_w, has_b=has_b, track=track, has_count=has_count,
                   has_add=has_add, relu=relu) + """
        // element i of x, y and r in their (shared) memory order; its channel c
        if (i == 0 && has_count) count[0] += 1;  // the layer's num_batches_tracked
        const int c = (i / inner) % C;
        const double mean = sums[c] * inv_n;
        const double invstd = rsqrt(fmax(sums[C + c] * inv_n - mean * mean, 0.0) + eps);
        T v = T(((double)x[i] - mean) * invstd) * (has_w ? w[c] : T(1)) + (has_b ? b[c] : T(0));
        if (has_add) v += r[i];  // then relu(v), NaN passing through as in maximum(v, 0)
        y[i] = (!relu || v > T(0) || v != v) ? v : T(0);
        if (i < C) {  // channel i's statistics, saved for backward (sums[4C:6C]) and tracked once
            const double m = sums[i] * inv_n;
            const double var = fmax(sums[C + i] * inv_n - m * m, 0.0);
            sums[4 * C + i] = m;
            sums[5 * C + i] = rsqrt(var + eps);
            if (track) {
                run_mean[i] = T((1 - momentum) * run_mean[i] + momentum * m);
                run_var[i] = T((1 - momentum) * run_var[i] + momentum * var * unbias);
            }
        }
        """,
    )


def batch_norm_forward(x, lay, w, b, eps: float, running=None, count=None, add=None, relu: bool = False):
    """Batch norm in training of x, laid out per channel as ``lay`` (``_channel_layout``), in two
    launches: (y in x's memory order, sums: (6 * C,) float64 holding forward's per-channel sums of
    x and x^2, then zeros for backward's sums (allocated and zeroed with forward's), then the means
    and invstds, saved for backward). ``running`` = (running_mean,
    running_var, momentum, unbias) moves the running statistics in place (the variance's unbiased);
    ``count``, an int64 array of one element, is advanced by one. ``add`` (x's shape) is added to
    the output and ``relu`` applied to it in the same pass.

    NumPy equivalent (statistics over all axes but the channel's)::

        mean = x.mean(axes);  var = x.var(axes);  invstd = 1 / sqrt(var + eps)
        y = (x - mean) * invstd * w + b  [+ add];  [y = maximum(y, 0)]
        running_mean = (1 - momentum) * running_mean + momentum * mean   (and var * unbias likewise)
    """
    flat, k, n, ia = lay
    C = flat.size // n
    sums = _cp().zeros(6 * C, dtype=np.float64)  # forward's totals, backward's, the statistics
    _sums("x", lay, sums, 0)
    y = backend.empty_as(x)
    if add is not None and add.strides != x.strides:  # add lies in another order than x: copied into x's
        add = backend.copy_as(add, x)
    rm, rv, momentum, unbias = running if running is not None else (y, y, 0.0, 1.0)
    kernel = _bn_forward(C, ia, float(eps), w is not None, b is not None, running is not None, count is not None,
                         add is not None, bool(relu))
    # x lies densely (lay) and y (and add) in the same order: element i is the same in each memory
    # (absent arrays are compiled out of the kernel: any address stands in for them)
    kernel(x.size, x, sums, y if w is None else w, y if b is None else b, 1.0 / n, momentum, unbias,
           y, rm, rv, y if count is None else count, y if add is None else add, dtype=x.dtype)
    return y, sums


@functools.cache
def _bn_backward(C: int, inner: int, has_w: bool, relu: bool = False, write_g: bool = False):
    return Loop(
        "ember_bn_backward",
        "const T* g, const T* x, const double* sums, const T* w, double inv_m, T* gx, T* gw, T* gb, "
        "const T* y, T* gr",
        _constants(C=C, inner=inner, has_w=has_w, relu=relu, write_g=write_g) + """
        // element i of g, x, y, gx and gr in x's memory order; its channel c. sums (from 2C on):
        // sum(g) and sum(g * xhat) per channel, then forward's means and invstds
        const double* s = sums + 2 * C;
        const int c = (i / inner) % C;
        const double invstd = s[3 * C + c];
        const T xhat = T(((double)x[i] - s[2 * C + c]) * invstd);
        const T scale = T(invstd) * (has_w ? w[c] : T(1));
        const T gi = (!relu || y[i] > T(0)) ? g[i] : T(0);  // through the ReLU forward applied
        gx[i] = (gi - T((s[c] + (double)xhat * s[C + c]) * inv_m)) * scale;
        if (write_g) gr[i] = gi;  // the gradient of the residual added before the ReLU
        if (i < C) {
            gw[i] = T(s[C + i]);
            gb[i] = T(s[i]);
        }
        """,
    )


def batch_norm_backward(g, x, lay, glay, sums, w, again: bool = False, y=None, want_add: bool = False):
    """Gradients (gx in x's memory order, gw (C,), gb (C,), g_add) of ``batch_norm_forward``'s y,
    from its ``sums`` (whose zeros backward's sums go into: zeroed ``again`` for a second backward
    through the same forward), in two launches; x and g laid out per channel as lay and glay. With
    ``y`` (forward's output, when it applied a ReLU) g passes through the ReLU first; g_add, the
    gradient of forward's ``add`` (``want_add``), is that gradient (None when not wanted).

    NumPy equivalent: ``g = g * (y > 0)`` (with y);  ``xhat = (x - mean) * invstd;  gb = g.sum(axes);
    gw = (g * xhat).sum(axes);  gx = (g - (gb + xhat * gw) / m) * invstd * w``, with m elements per
    channel; ``g_add = g``.
    """
    cp = _cp()
    C, n = sums.size // 6, lay[2]
    if again:
        sums[2 * C:4 * C] = 0
    relu = y is not None
    _sums("g_relu" if relu else "g", glay, sums, 2 * C, other=(lay[0], lay[3]), y=y)
    gx = backend.empty_as(x)
    gw, gb = cp.empty(C, dtype=g.dtype), cp.empty(C, dtype=g.dtype)  # two arrays: each becomes a .grad as is
    if g.strides != x.strides:  # g lies in another order than x: copied into x's
        g = backend.copy_as(g, x)
    if want_add and not relu:  # the residual's gradient is g itself
        g_add, write_g = g, False
    else:
        g_add, write_g = (backend.empty_as(x), True) if want_add else (None, False)
    _bn_backward(C, lay[3], w is not None, relu, write_g)(x.size, g, x, sums, gx if w is None else w, 1.0 / n,
                                                          gx, gw, gb, gx if y is None else y,
                                                          gx if g_add is None else g_add, dtype=x.dtype)
    return gx, gw, gb, g_add

"""Cross entropy's GPU route for (N, C) logits and int64 class labels: two launches forward, one back.

The NumPy code of ember.ops.loss.CrossEntropy takes ~25 CuPy launches a training step (the
row maximum, exp, sums, log, the label check, the picked entries, the mean ...), ~0.7 ms of
host time on an H200 host (bench/gpu_overhead.py). Here one thread per row does the row's
whole softmax and loss, checks its label and adds its loss and weight to running totals; a
one-thread launch turns the totals into the reduced loss; backward is one launch. The label
check still costs one small read back to the host (a bad label must raise, as on the CPU).

Same formulas as CrossEntropy (label smoothing eps, class weights w, ignore_index)::

    p = softmax(x);  l_n = -(1 - eps) * w[y_n] * log p[n, y_n] - (eps / C) * sum_c w_c log p[n, c]
    mean: sum(l) / sum(w[y_n] over non-ignored n);  gx = (p * a_n - hot_n * onehot - (eps/C) * w * s_n)
"""
from __future__ import annotations

import functools

import numpy as np

from ember.ops.cuda_kernels import _cp, fits

REDUCTIONS = {"none": 0, "sum": 1, "mean": 2}


def applies(x, target, weight) -> bool:
    """Whether cross entropy of x with labels ``target`` takes this route."""
    return (x.ndim == 2 and fits(x, *((weight,) if weight is not None else ())) and x.flags.c_contiguous
            and target.dtype == np.int64 and target.flags.c_contiguous and 0 < x.shape[1] < 2 ** 20
            and x.size < 2 ** 31)


@functools.cache
def _forward():
    return _cp().ElementwiseKernel(
        "raw T x, raw int64 target, raw T w, int32 C, int32 has_w, int64 ignore, T eps",
        "T loss, T wt, raw T p, raw float64 acc",
        """
        // one thread per row n = i: softmax, loss and label check; acc = (sum of losses, sum of
        // the weights of counted labels, bad labels, sum of the class weights)
        const long long y = target[i];
        const bool valid = y != ignore;
        const bool bad = valid && (y < 0 || y >= C);
        const bool use = valid && !bad;
        const ptrdiff_t row = (ptrdiff_t)i * C;
        T m = x[row];
        for (int c = 1; c < C; ++c) { const T v = x[row + c]; if (v > m || v != v) m = v; }
        double s = 0, W = 0, ws = 0;
        for (int c = 0; c < C; ++c) {
            const double wc = has_w ? (double)w[c] : 1.0;
            s += exp((double)(x[row + c] - m));
            W += wc;
            ws += wc * (double)(x[row + c] - m);
        }
        const double lse = log(s);
        for (int c = 0; c < C; ++c) p[row + c] = T(exp((double)(x[row + c] - m)) / s);
        const double wy = use ? (has_w ? (double)w[y] : 1.0) : 0.0;
        double l = use ? -(1.0 - (double)eps) * wy * ((double)(x[row + y] - m) - lse) : 0.0;
        if (eps != T(0) && use) l -= (double)eps / C * (ws - W * lse);
        loss = T(l);
        wt = T(wy);
        atomicAdd(&acc[0], l);
        atomicAdd(&acc[1], wy);
        if (bad) atomicAdd(&acc[2], 1.0);
        if (i == 0) acc[3] = W;
        """,
        "ember_cross_entropy_fwd",
    )


@functools.cache
def _reduce():
    return _cp().ElementwiseKernel("raw float64 acc, int32 mean", "T out", "out = T(mean ? acc[0] / acc[1] : acc[0]);",
                                   "ember_cross_entropy_reduce")


def forward(x, target, w, ignore_index: int, eps: float, reduction: str):
    """(loss: (N,) for "none", else 0-d; softmax p (N, C); per-row weights wt (N,); totals acc (4,)).
    Returns None when a label is out of range (the caller raises, naming it)."""
    cp = _cp()
    N, C = x.shape
    t = x.dtype.type
    loss, wt = cp.empty(N, dtype=x.dtype), cp.empty(N, dtype=x.dtype)
    p = cp.empty((N, C), dtype=x.dtype)
    acc = cp.zeros(4, dtype=np.float64)
    _forward()(x, target, x if w is None else w, C, int(w is not None), int(ignore_index), t(eps), loss, wt, p, acc)
    if float(acc[2]) > 0:  # one read back: the labels must be checked before anything goes on
        return None
    if reduction != "none":
        out = cp.empty((), dtype=x.dtype)
        _reduce()(acc, int(reduction == "mean"), out)
        loss = out
    return loss, p, wt, acc


@functools.cache
def _backward():
    return _cp().ElementwiseKernel(
        "raw T p, raw int64 target, raw T wt, raw T w, raw T gy, raw float64 acc, int32 C, int32 has_w, "
        "int64 ignore, T eps, int32 reduction",
        "T gx",
        """
        const ptrdiff_t n = i / C;
        const int c = i % C;
        const T scale = reduction == 0 ? gy[n] : reduction == 1 ? gy[0] : T(gy[0] / acc[1]);
        const T valid = target[n] != ignore ? T(1) : T(0);
        const T hot = (T(1) - eps) * wt[n] * scale;  // the one-hot term's weight
        const T smooth = eps / T(C) * valid * scale;  // the uniform term's, per unit class weight
        gx = p[i] * (hot + smooth * T(acc[3])) - (c == target[n] ? hot : T(0)) - smooth * (has_w ? w[c] : T(1));
        """,
        "ember_cross_entropy_bwd",
    )


def backward(gy, p, target, wt, w, acc, ignore_index: int, eps: float, reduction: str):
    """gx (N, C) of ``forward``'s loss for the upstream gradient gy ((N,) for "none", else 0-d)."""
    N, C = p.shape
    gx = _cp().empty_like(p)
    gy = _cp().ascontiguousarray(gy, dtype=p.dtype)
    _backward()(p, target, wt, p if w is None else w, gy.reshape(-1), acc, C, int(w is not None), int(ignore_index),
                p.dtype.type(eps), REDUCTIONS[reduction], gx)
    return gx

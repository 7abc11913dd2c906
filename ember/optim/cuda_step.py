"""The GPU optimizer updates: every parameter of a group in one launch ("multi-tensor").

A ResNet-20 has 65 parameter tensors; one fused launch each cost ~15 us of host time apiece
(~1 ms a step, measured on an H200). Here one launch updates them all: a small table on the
GPU holds where each tensor starts in a virtual concatenation of all of them and the addresses
of its parameter, gradient and state arrays, and each thread finds its tensor by a binary
search of the starts, then applies the same update rule as the NumPy code in sgd.py,
adam.py and rmsprop.py (tests/test_gpu.py checks the two against each other).

Used by the optimizers for CuPy float32/float64 parameters (``cuda_kernels.fits``); the table
is copied to the GPU with each step, since gradients are new arrays every step.
"""
from __future__ import annotations

import functools

import numpy as np

from ember import backend
from ember.ops.cuda_gemm import _ptr

# thread i of E (the total elements) -> tensor t (offsets[t] <= i < offsets[t + 1]) and element j
# of it. tab holds offsets (n + 1 of them), then one address per tensor for each array list.
_FIND = """
    int lo = 0, hi = n;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (tab[mid] <= i) lo = mid; else hi = mid;
    }
    const long long j = i - tab[lo];
    #define ARRAY(k) (((T*)tab[n + 1 + (k) * n + lo])[j])
"""


@functools.cache
def _kernel(name: str, params: str, body: str, dtype: np.dtype):
    # No argument is an array of the parameters' dtype, so CuPy cannot infer the type T from the
    # call: the kernel is compiled per dtype, with T spelled out.
    ctype = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}[dtype]
    params = ", ".join(f"{dtype.name} {p.split()[1]}" if p.split()[0] == "T" else p for p in params.split(", "))
    return backend._cupy.ElementwiseKernel("int32 n, " + params, "raw int64 tab",
                                           f"typedef {ctype} T;\n" + _FIND + body + "\n#undef ARRAY\n",
                                           f"ember_{name}_many")


def _run(name: str, params: str, body: str, arrays: list, extra: list, *scalars) -> None:
    """Launch rule ``body`` over the tensors of ``arrays`` (lists of same-shaped arrays: params,
    grads, states...), ``extra``: one more int64 per tensor (a flag or a step count)."""
    cp = backend._cupy
    first = arrays[0]
    n = len(first)
    sizes = np.array([a.size for a in first], dtype=np.int64)
    table = [np.concatenate(([0], np.cumsum(sizes)))]
    table += [np.array([_ptr(a) for a in arrays_k], dtype=np.int64) for arrays_k in arrays]
    table.append(np.asarray(extra, dtype=np.int64))
    tab = cp.asarray(np.concatenate(table))
    _kernel(name, params, body, first[0].dtype)(n, *scalars, tab, size=int(table[0][-1]))


def _contiguous(arrays: list) -> list:
    cp = backend._cupy
    return [a if a.flags.c_contiguous else cp.ascontiguousarray(a) for a in arrays]


_SGD = """
    T& p = ARRAY(0);
    T& buf = ARRAY(2);
    T d = sgn * ARRAY(1);
    if (wd != T(0)) d += wd * p;
    if (momentum != T(0)) {
        buf = tab[n + 1 + 3 * n + lo] ? d : momentum * buf + keep * d;  // the flag: a first step
        d = nesterov ? d + momentum * buf : buf;
    }
    p -= lr * d;
"""


def sgd_step(params: list, grads: list, bufs: list | None, first: list, lr, wd, maximize, momentum=0.0,
             dampening=0.0, nesterov=False) -> None:
    """One SGD update of every parameter in place, one launch (ember.optim.SGD's rule).

    NumPy equivalent, for each parameter p with gradient g (and momentum buffer buf)::

        d = -g if maximize else g;  d = d + wd * p                          (if wd)
        buf = d if first else momentum * buf + (1 - dampening) * d          (if momentum)
        d = d + momentum * buf if nesterov else buf                          (if momentum)
        p -= lr * d
    """
    t = params[0].dtype.type
    arrays = [params, _contiguous(grads), bufs if bufs is not None else params]
    _run("sgd", "T lr, T wd, T sgn, T momentum, T keep, int32 nesterov", _SGD, arrays, [int(f) for f in first],
         t(lr), t(wd), t(-1 if maximize else 1), t(momentum), t(1 - dampening), int(nesterov))


_ADAM = """
    T& p = ARRAY(0);
    T& m = ARRAY(2);
    T& v = ARRAY(3);
    const double step = (double)tab[n + 1 + 4 * n + lo];  // this parameter's step count
    const T step_size = T(lr / (1 - pow(beta1, step)));
    const T sqrt_bc2 = T(sqrt(1 - pow(beta2d, step)));
    T d = sgn * ARRAY(1);
    if (l2 != T(0)) d += l2 * p;
    p *= decay;
    m += c1 * (d - m);
    v = beta2 * v + c2 * (d * d);
    p -= m / (sqrt(v) / sqrt_bc2 + eps) * step_size;
"""


def adam_step(params: list, grads: list, ms: list, vs: list, steps: list, lr, beta1, beta2, eps, wd, decoupled,
              maximize) -> None:
    """One Adam/AdamW update of every parameter in place, one launch (ember.optim.Adam's rule,
    without amsgrad); ``steps`` holds each parameter's step count t (already advanced).

    NumPy equivalent, for each parameter p with gradient g and moments m, v::

        d = -g if maximize else g
        p *= 1 - lr * wd  (AdamW)        or   d = d + wd * p  (Adam)
        m += (1 - beta1) * (d - m);  v = beta2 * v + (1 - beta2) * d * d
        p -= m / (sqrt(v) / sqrt(1 - beta2**t) + eps) * lr / (1 - beta1**t)
    """
    t = params[0].dtype.type
    decay, l2 = (t(1 - lr * wd), t(0)) if decoupled else (t(1), t(wd))
    # 1 - beta is rounded once from double, as the NumPy path does (float32(1) - float32(0.999)
    # differs from float32(0.001) by 1e-5 relative, which shows after a few steps)
    _run("adam", "T sgn, T decay, T l2, T c1, T beta2, T c2, T eps, float64 lr, float64 beta1, float64 beta2d",
         _ADAM, [params, _contiguous(grads), ms, vs], steps,
         t(-1 if maximize else 1), decay, l2, t(1 - beta1), t(beta2), t(1 - beta2), t(eps), float(lr), float(beta1),
         float(beta2))


_RMSPROP = """
    T& p = ARRAY(0);
    T& s = ARRAY(2);
    T d = sgn * ARRAY(1);
    if (wd != T(0)) d += wd * p;
    s = alpha * s + c * (d * d);
    p -= lr * (d / (sqrt(s) + eps));
"""


def rmsprop_step(params: list, grads: list, squares: list, lr, alpha, eps, wd, maximize) -> None:
    """One plain RMSprop update (no momentum, not centered) of every parameter in place, one launch.

    NumPy equivalent: ``d = ±g + wd * p;  s = alpha * s + (1 - alpha) * d * d;  p -= lr * d / (sqrt(s) + eps)``.
    """
    t = params[0].dtype.type
    _run("rmsprop", "T sgn, T lr, T wd, T alpha, T c, T eps", _RMSPROP, [params, _contiguous(grads), squares],
         [0] * len(params), t(-1 if maximize else 1), t(lr), t(wd), t(alpha), t(1 - alpha), t(eps))

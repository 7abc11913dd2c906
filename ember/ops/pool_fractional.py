"""Fractional max pooling (Graham, 2014, "Fractional Max-Pooling", arXiv:1412.6071).

Ordinary 2x2 pooling halves an image; fractional pooling shrinks it by any factor
between 1 and 2 per layer by letting the windows step pseudo-randomly by 1 or 2
(more exactly, by ``floor`` or ``ceil`` of ``alpha = (n - k) / (m - 1)``). For an axis of
input size n, output size m and kernel k, one number u in [0, 1) per (sample, channel)
fixes where the m windows start (PyTorch's sequence, which Graham's paper calls
"pseudorandom overlapping")::

    start[i]     = int((i + u) * alpha) - int(u * alpha)      for i < m - 1
    start[m - 1] = n - k

computed in the input's dtype (so float32 inputs reproduce PyTorch's float32 windows
exactly). ``_random_samples`` has shape (N, C, 2): entry 0 places the columns, entry 1
the rows, as in PyTorch. Without it the samples are drawn from ``generator`` (an
``ember.Generator``; the default one otherwise).

Windows differ per plane, so forward gathers the windows' elements with index arrays,
one kernel offset at a time (a loop over KH*KW, never over pixels, planes or samples),
keeping a running maximum; backward sends each output's gradient to its argmax with
one scatter-add (the backward of AdaptiveMaxPool2d, which this Function extends).
Ties go to the first maximum in row-major window order; a window holding NaNs reports
its last NaN (both what PyTorch's CPU kernel does).
"""
from __future__ import annotations

import numpy as np

from ember.backend import check_same_device, xp_of
from ember.errors import DTypeError, ShapeError
from ember.ops.pool import _batched, _pair, _unbatch
from ember.ops.pool_extra import AdaptiveMaxPool2d, _plane_starts, _running_argmax
from ember.random import rng_for
from ember.tensor import Tensor

__all__ = ["fractional_max_pool2d", "fractional_max_pool2d_with_indices"]

_OP = "fractional_max_pool2d"


def _starts(u, n: int, m: int, k: int):
    """Window starts (N, C, m), int64, along an axis of size n for samples u (N, C)."""
    xp = xp_of(u)
    last = xp.full(u.shape + (min(m, 1),), n - k, dtype=np.int64)
    if m <= 1:
        return last
    dt = u.dtype.type
    alpha = dt(n - k) / dt(m - 1)  # in the input dtype, as PyTorch computes it
    i = xp.arange(m - 1, dtype=u.dtype)
    seq = ((i + u[..., None]) * alpha).astype(np.int64) - (u * alpha).astype(np.int64)[..., None]
    return xp.concatenate([seq, last], axis=-1)


class FractionalMaxPool2d(AdaptiveMaxPool2d):
    def forward(self, x, rows, cols, k: tuple, sink: dict | None = None):
        """x (N, C, H, W); rows (N, C, OH) and cols (N, C, OW) are the window starts."""
        xp = xp_of(x)
        n, c, h, w = x.shape
        planes = _plane_starts(xp, x.shape)
        # top-left corner of every window in the flattened input, (N, C, OH, OW)
        first = ((rows * w)[..., :, None] + planes) + cols[..., None, :]
        flat_x = x.reshape(-1)
        deltas = [a * w + b for a in range(k[0]) for b in range(k[1])]  # row-major kernel offsets
        # offset d of every window is x.flat[first + d], i.e. x.flat[d:][first]: a view, no index arithmetic
        y, win = _running_argmax((xp.take(flat_x[d:], first) for d in deltas), bool(xp.isnan(x).any()))
        pos = first + xp.asarray(np.array(deltas, dtype=np.int64))[win]
        return self.save(x.shape, pos, planes, sink, y)


def _output_size(x_shape: tuple, output_size, output_ratio) -> tuple:
    if output_size is None and output_ratio is None:
        raise ValueError(f"{_OP} requires specifying either an output_size or an output_ratio")
    if output_size is not None:
        out = _pair(_OP, "output_size", output_size)
    else:
        r = (output_ratio,) * 2 if isinstance(output_ratio, (int, float)) else tuple(output_ratio)
        if len(r) != 2:
            raise ValueError(f"{_OP}: output_ratio must be a number or a pair, got {output_ratio!r}")
        out = (int(x_shape[-2] * float(r[0])), int(x_shape[-1] * float(r[1])))
    if min(out) < 0:
        raise ValueError(f"{_OP}: output size must be >= 0, got {out}")
    return out


def _samples(x, samples, generator):
    """The (N, C, 2) samples as an array on x's device in x's dtype, checked or drawn."""
    n, c = x.shape[:2]
    if samples is None:
        xp = xp_of(x)
        draw_dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float32
        u = rng_for(generator, x).random((n, c, 2), dtype=draw_dtype).astype(x.dtype, copy=False)
        # (a value that rounds up to 1 in a narrower dtype is moved back below 1)
        return xp.minimum(u, np.nextafter(x.dtype.type(1), x.dtype.type(0)))
    if not isinstance(samples, Tensor):
        raise TypeError(f"{_OP}: _random_samples must be an ember.Tensor, got {type(samples).__name__}")
    u = samples.data
    check_same_device(_OP, x, u)
    if u.ndim != 3 or u.shape[0] < n or u.shape[1] != c or u.shape[2] != 2:
        raise ShapeError(f"{_OP}: _random_samples must have shape (N >= {n}, {c}, 2) for input of shape "
                         f"{tuple(x.shape)}, got {tuple(u.shape)}")
    if u.dtype != x.dtype:
        raise DTypeError(f"{_OP}: _random_samples has dtype {u.dtype} but input has dtype {x.dtype}")
    u = u[:n]
    if u.size and not (float(u.min()) >= 0 and float(u.max()) < 1):
        raise ValueError(f"{_OP}: _random_samples must lie in [0, 1), got values in "
                         f"[{float(u.min())}, {float(u.max())}]")
    return u


def _pool(input: Tensor, kernel_size, output_size, output_ratio, samples, generator, with_indices: bool):
    x, unb = _batched(_OP, input, 2)
    if x.dtype.kind != "f":
        raise TypeError(f"{_OP}: expected a floating point input, got {x.dtype}")
    k = _pair(_OP, "kernel_size", kernel_size)
    if min(k) < 1:
        raise ValueError(f"{_OP}: kernel_size must be >= 1, got {k}")
    oh, ow = _output_size(x.shape, output_size, output_ratio)
    h, w = x.shape[2:]
    for name, o, kk, size in (("height", oh, k[0], h), ("width", ow, k[1], w)):
        if o + kk - 1 > size:
            raise ShapeError(f"{_OP}: pool {name} {kk} too large relative to input {name} {size}: output {name} {o} "
                             f"needs an input {name} of at least output + kernel - 1 = {o + kk - 1} "
                             f"(input shape {input.shape})")
    u = _samples(x.data, samples, generator)
    rows, cols = _starts(u[..., 1], h, oh, k[0]), _starts(u[..., 0], w, ow, k[1])
    sink: dict | None = {} if with_indices else None
    y = _unbatch(FractionalMaxPool2d.apply(x, rows=rows, cols=cols, k=k, sink=sink), unb)
    return (y, _unbatch(Tensor(sink["indices"]), unb)) if with_indices else y


def fractional_max_pool2d(input: Tensor, kernel_size, output_size=None, output_ratio=None,
                          return_indices: bool = False, _random_samples: Tensor | None = None, *, generator=None):
    """Fractional max pooling (Graham, 2014): (N, C, H, W) or (C, H, W) -> (N, C, OH, OW).

    ``output_size`` (int or (OH, OW)) or ``output_ratio`` (float or pair in (0, 1); then
    ``OH = int(H * ratio)``) sets the output; each window is ``kernel_size`` and the windows
    start pseudo-randomly, from ``_random_samples`` (N, C, 2) in [0, 1) when given (the same
    samples give PyTorch's output and indices), else from draws of ``generator``. With
    ``return_indices=True`` also returns the int64 flat index ``h * W + w`` of each maximum.
    """
    return _pool(input, kernel_size, output_size, output_ratio, _random_samples, generator, bool(return_indices))


def fractional_max_pool2d_with_indices(input: Tensor, kernel_size, output_size=None, output_ratio=None,
                                       return_indices: bool = False, _random_samples: Tensor | None = None,
                                       *, generator=None) -> tuple:
    """``fractional_max_pool2d`` that always returns (output, indices), as PyTorch's function of this name."""
    return _pool(input, kernel_size, output_size, output_ratio, _random_samples, generator, True)

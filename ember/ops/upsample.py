"""Resizing: interpolate (nearest, linear, bilinear), pixel_shuffle and pixel_unshuffle; and
channel_shuffle, a rearrangement of channels like pixel_shuffle's of pixels.

Nearest and (bi)linear resizing are separable: along each axis every output pixel is a
fixed weighted sum of at most two input pixels, i.e. a small matrix ``A`` (out x in).
For an image plane ``y = Ah @ x @ Aw.T``, so forward is two matrix products done by
BLAS over the whole batch, and backward is the transpose, ``gx = Ah.T @ gy @ Aw``:
no per-pixel loops and no scatter. Adaptive average pooling uses the same op with
averaging matrices (ember/ops/pool_extra.py).

Coordinates follow PyTorch exactly (``scale = in/out``, or ``1/scale_factor`` when a
scale factor is given and not recomputed):

* nearest: ``src = min(floor(dst * scale), in - 1)``;
* bilinear, ``align_corners=False``: ``src = max((dst + 0.5) * scale - 0.5, 0)``;
* bilinear, ``align_corners=True``: ``src = dst * (in - 1) / (out - 1)``;

then ``i0 = floor(src)``, ``i1 = min(i0 + 1, in - 1)`` with weights ``1 - f`` and
``f = src - i0``. Coordinates are computed in the input's precision, as PyTorch does.
"""
from __future__ import annotations

import math

import numpy as np

from ember.autograd import Function
from ember.backend import xp_of
from ember.errors import ShapeError
from ember.ops.shape import permute, reshape
from ember.tensor import Tensor

__all__ = ["interpolate", "upsample", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle"]


def _apply_separable(x, ah, aw):
    """``ah @ x[n, c] @ aw.T`` for every plane of x (N, C, H, W) -> (N, C, OH, OW)."""
    xp = xp_of(x)
    n, c, h, w = x.shape
    t = x.reshape(n * c * h, w) @ aw.T  # one GEMM along W for the whole batch
    t = t.reshape(n * c, h, -1)
    y = xp.tensordot(ah, t, axes=(1, 1))  # (OH, N*C, OW): one GEMM along H
    return xp.ascontiguousarray(y.transpose(1, 0, 2)).reshape(n, c, ah.shape[0], aw.shape[0])


class Resample2d(Function):
    """y = Ah @ x @ Aw.T per plane; ``rows``/``cols`` give a gather forward when A is one-hot."""

    def forward(self, x, ah, aw, rows=None, cols=None):
        xp = xp_of(x)
        self.ah, self.aw = xp.asarray(ah, dtype=x.dtype), xp.asarray(aw, dtype=x.dtype)
        if rows is not None:  # nearest: a gather is cheaper than multiplying by a 0/1 matrix
            return xp.ascontiguousarray(x[:, :, xp.asarray(rows)][:, :, :, xp.asarray(cols)])
        return _apply_separable(x, self.ah, self.aw)

    def backward(self, gy):
        return _apply_separable(gy, self.ah.T, self.aw.T)


def _nearest_matrix(n_in: int, n_out: int, scale: float, dtype):
    # PyTorch computes nearest source indices in float32 whatever the input dtype.
    src = np.floor(np.arange(n_out, dtype=np.float32) * np.float32(scale)).astype(np.int64)
    src = np.minimum(src, n_in - 1)
    a = np.zeros((n_out, n_in), dtype=dtype)
    a[np.arange(n_out), src] = 1
    return a, src


def _linear_matrix(n_in: int, n_out: int, scale: float, align_corners: bool, dtype):
    dst = np.arange(n_out, dtype=dtype)
    if align_corners:
        src = dst * dtype.type((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        src = np.maximum((dst + dtype.type(0.5)) * dtype.type(scale) - dtype.type(0.5), 0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    f = (src - i0).astype(dtype)
    a = np.zeros((n_out, n_in), dtype=dtype)
    rows = np.arange(n_out)
    a[rows, i0] = 1 - f
    a[rows, i1] += f  # one entry per row in each assignment, so no repeated-index issue
    return a


def _sizes(op: str, spatial: tuple, size, scale_factor, recompute: bool):
    """(output sizes, scales used for coordinates) per spatial axis."""
    k = len(spatial)
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{op}: give exactly one of size and scale_factor")
    if size is not None:
        out = (int(size),) * k if isinstance(size, (int, np.integer)) else tuple(int(v) for v in size)
        if len(out) != k:
            raise ShapeError(f"{op}: size {size} has {len(out)} entries for {k} spatial dims (input {spatial})")
        if min(out) <= 0:
            raise ValueError(f"{op}: size must be positive, got {size}")
        return out, tuple(i / o for i, o in zip(spatial, out))
    sf = (float(scale_factor),) * k if isinstance(scale_factor, (int, float)) else tuple(map(float, scale_factor))
    if len(sf) != k:
        raise ShapeError(f"{op}: scale_factor {scale_factor} has {len(sf)} entries for {k} spatial dims")
    if min(sf) <= 0:
        raise ValueError(f"{op}: scale_factor must be positive, got {scale_factor}")
    out = tuple(int(math.floor(i * s)) for i, s in zip(spatial, sf))
    if min(out) <= 0:
        raise ValueError(f"{op}: scale_factor {scale_factor} gives an empty output for input size {spatial}")
    scales = tuple(i / o for i, o in zip(spatial, out)) if recompute else tuple(1.0 / s for s in sf)
    return out, scales


def interpolate(input: Tensor, size=None, scale_factor=None, mode: str = "nearest", align_corners=None,
                recompute_scale_factor=None) -> Tensor:
    """Resize (N, C, H, W) [modes 'nearest', 'bilinear'] or (N, C, L) ['nearest', 'linear'].

    Give exactly one of ``size`` (output size) and ``scale_factor`` (output = floor(in * s)).
    ``align_corners`` (linear modes only, default False) maps corner pixel centers onto each
    other. Backward is the transposed resize.
    """
    x = input
    modes = {3: ("nearest", "linear"), 4: ("nearest", "bilinear")}
    if x.ndim not in modes:
        raise ShapeError(f"interpolate: expected a 3-d (N, C, L) or 4-d (N, C, H, W) input, got shape {x.shape}")
    if mode not in modes[x.ndim]:
        raise ValueError(f"interpolate: mode {mode!r} is not supported for {x.ndim}-d input "
                         f"(supported: {', '.join(modes[x.ndim])})")
    if mode == "nearest" and align_corners is not None:
        raise ValueError("interpolate: align_corners can only be set with the linear modes ('linear', 'bilinear')")
    if x.dtype.kind != "f":
        raise TypeError(f"interpolate: expected a floating point input, got {x.dtype}")
    flat = x.ndim == 3
    if flat:
        x = reshape(x, x.shape[:2] + (1, x.shape[2]))
    out, scales = _sizes("interpolate", x.shape[2:] if not flat else x.shape[3:], size, scale_factor,
                         bool(recompute_scale_factor))
    if flat:
        out, scales = (1,) + out, (1.0,) + scales
    dtype = np.dtype(x.dtype)
    if mode == "nearest":
        (ah, rows), (aw, cols) = (_nearest_matrix(n, o, s, dtype) for n, o, s in zip(x.shape[2:], out, scales))
        y = Resample2d.apply(x, ah=ah, aw=aw, rows=rows, cols=cols)
    else:
        ac = bool(align_corners)
        ah, aw = (_linear_matrix(n, o, s, ac, dtype) for n, o, s in zip(x.shape[2:], out, scales))
        y = Resample2d.apply(x, ah=ah, aw=aw)
    return reshape(y, y.shape[:2] + (y.shape[3],)) if flat else y


def upsample(input: Tensor, size=None, scale_factor=None, mode: str = "nearest", align_corners=None) -> Tensor:
    """Deprecated-in-PyTorch alias of :func:`interpolate`."""
    return interpolate(input, size, scale_factor, mode, align_corners)


def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:
    """(N, C*r*r, H, W) -> (N, C, H*r, W*r): sub-pixel convolution's rearrangement (Shi et al., 2016)."""
    r = int(upscale_factor)
    if input.ndim < 3:
        raise ShapeError(f"pixel_shuffle: expected at least 3 dims (C, H, W), got shape {input.shape}")
    *lead, c, h, w = input.shape
    if r <= 0 or c % (r * r):
        raise ShapeError(f"pixel_shuffle: channels {c} must be divisible by upscale_factor**2 = {r * r}")
    nl = len(lead)
    x = reshape(input, tuple(lead) + (c // (r * r), r, r, h, w))
    x = permute(x, tuple(range(nl + 1)) + (nl + 3, nl + 1, nl + 4, nl + 2))
    return reshape(x, tuple(lead) + (c // (r * r), h * r, w * r))


def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:
    """(N, C, H*r, W*r) -> (N, C*r*r, H, W), the inverse of :func:`pixel_shuffle`."""
    r = int(downscale_factor)
    if input.ndim < 3:
        raise ShapeError(f"pixel_unshuffle: expected at least 3 dims (C, H, W), got shape {input.shape}")
    *lead, c, h, w = input.shape
    if r <= 0 or h % r or w % r:
        raise ShapeError(f"pixel_unshuffle: height {h} and width {w} must be divisible by downscale_factor {r}")
    nl = len(lead)
    x = reshape(input, tuple(lead) + (c, h // r, r, w // r, r))
    x = permute(x, tuple(range(nl + 1)) + (nl + 2, nl + 4, nl + 1, nl + 3))
    return reshape(x, tuple(lead) + (c * r * r, h // r, w // r))


def channel_shuffle(input: Tensor, groups: int) -> Tensor:
    """Interleave the channels of ``groups`` groups (Zhang et al., 2018, ShuffleNet).

    Channel ``g * (C // groups) + k`` moves to ``k * groups + g``, so a grouped convolution
    that follows sees channels from every group of the one before. Shapes: (N, C, *S) ->
    the same, C divisible by ``groups``. A reshape, a transpose and a reshape (gradient
    by autograd: the inverse permutation).
    """
    g = int(groups)
    if g <= 0:
        raise ValueError(f"channel_shuffle: groups must be positive, got {groups}")
    if input.ndim < 3:
        raise ShapeError(f"channel_shuffle: expected an input with more than 2 dims (N, C, *S), got shape "
                         f"{input.shape}")
    n, c, *spatial = input.shape
    if c % g:
        raise ShapeError(f"channel_shuffle: channels {c} must be divisible by groups {g} (input {input.shape})")
    x = reshape(input, (n, g, c // g, *spatial))
    x = permute(x, (0, 2, 1) + tuple(range(3, x.ndim)))
    return reshape(x, input.shape)

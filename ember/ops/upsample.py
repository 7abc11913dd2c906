"""Resizing: interpolate (nearest, nearest-exact, linear, bilinear, bicubic, area), pixel_shuffle and
pixel_unshuffle; and channel_shuffle, a rearrangement of channels like pixel_shuffle's of pixels.

Nearest, (bi)linear and bicubic resizing are separable: along each axis every output pixel
is a fixed weighted sum of at most four input pixels, i.e. a small matrix ``A`` (out x in).
For an image plane ``y = Ah @ x @ Aw.T``, so forward is two matrix products done by
BLAS over the whole batch, and backward is the transpose, ``gx = Ah.T @ gy @ Aw``:
no per-pixel loops and no scatter. Adaptive average pooling uses the same op with
averaging matrices (ember/ops/pool_extra.py), and 'area' resizing is adaptive average pooling.

Coordinates follow PyTorch exactly (``scale = in/out``, or ``1/scale_factor`` when a
scale factor is given and not recomputed):

* nearest: ``src = min(floor(dst * scale), in - 1)`` (in float32; 2-D inputs copy when
  ``out == in`` and take ``dst // 2`` when ``out == 2 * in``, as PyTorch's 2-D kernel does);
* nearest-exact: ``src = min(floor((dst + 0.5) * scale), in - 1)`` (pixel centers, no shift);
* bilinear, ``align_corners=False``: ``src = max((dst + 0.5) * scale - 0.5, 0)``;
* bilinear, ``align_corners=True``: ``src = dst * (in - 1) / (out - 1)``;
* (bi)linear: an axis whose size stays is copied (PyTorch's kernel does so even when a scale
  factor says otherwise);

then ``i0 = floor(src)``, ``i1 = min(i0 + 1, in - 1)`` with weights ``1 - f`` and
``f = src - i0``. Bicubic uses the same ``src`` without the clamp at 0 and the four taps
``i0 - 1 .. i0 + 2`` (indices clamped into the image, so border taps add up) with Keys'
cubic convolution weights, ``A = -0.75`` (Keys, 1981, "Cubic convolution interpolation for
digital image processing"). Coordinates are computed in the input's precision, as PyTorch does.
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
    t = t.reshape(n * c, h, aw.shape[0])
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


def _nearest_matrix(n_in: int, n_out: int, scale: float, dtype, exact: bool = False, shortcuts: bool = False):
    """One-hot (out, in) matrix and source indices of nearest (or, ``exact``, nearest-exact) resizing.
    ``shortcuts``: PyTorch's 2-D nearest kernel copies when out == in and halves when out == 2 * in,
    whatever the scale factor says."""
    dst = np.arange(n_out)
    if shortcuts and n_out == n_in:
        src = dst
    elif shortcuts and n_out == 2 * n_in:
        src = dst // 2
    elif exact:  # PyTorch: floorf((dst + 0.5) * scale), the product in double, floored in float32
        src = np.floor(((dst + 0.5) * np.float64(np.float32(scale))).astype(np.float32)).astype(np.int64)
    else:  # PyTorch computes nearest source indices in float32 whatever the input dtype.
        src = np.floor(dst.astype(np.float32) * np.float32(scale)).astype(np.int64)
    src = np.minimum(src, n_in - 1)
    a = np.zeros((n_out, n_in), dtype=dtype)
    a[np.arange(n_out), src] = 1
    return a, src


def _linear_matrix(n_in: int, n_out: int, scale: float, align_corners: bool, dtype):
    if n_out == n_in:  # PyTorch copies an axis whose size stays, whatever scale_factor says
        return np.eye(n_in, dtype=dtype)
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


def _cubic_matrix(n_in: int, n_out: int, scale: float, align_corners: bool, dtype):
    """(out, in) matrix of bicubic resizing (Keys' kernel, A = -0.75; taps clamped into [0, in - 1])."""
    a_ = dtype.type(-0.75)
    dst = np.arange(n_out, dtype=dtype)
    if align_corners:
        src = dst * dtype.type((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        src = (dst + dtype.type(0.5)) * dtype.type(scale) - dtype.type(0.5)  # no clamp at 0, unlike linear
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    t = np.clip(src - i0, 0, 1).astype(dtype)
    one = dtype.type(1)

    def near(d):  # |d| <= 1
        return ((a_ + 2) * d - (a_ + 3)) * d * d + one

    def far(d):  # 1 < |d| < 2
        return ((a_ * d - 5 * a_) * d + 8 * a_) * d - 4 * a_

    weights = (far(t + one), near(t), near(one - t), far((one - t) + one))
    a = np.zeros((n_out, n_in), dtype=dtype)
    rows = np.arange(n_out)
    for k, wk in enumerate(weights):  # clamped taps repeat at the border: add.at sums them
        np.add.at(a, (rows, np.clip(i0 - 1 + k, 0, n_in - 1)), wk)
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


_MODES = {3: ("nearest", "linear", "area", "nearest-exact"),
          4: ("nearest", "bilinear", "bicubic", "area", "nearest-exact")}
_INTERPOLATING = ("linear", "bilinear", "bicubic")


def interpolate(input: Tensor, size=None, scale_factor=None, mode: str = "nearest", align_corners=None,
                recompute_scale_factor=None, antialias: bool = False) -> Tensor:
    """Resize (N, C, H, W) [modes 'nearest', 'nearest-exact', 'bilinear', 'bicubic', 'area'] or
    (N, C, L) ['nearest', 'nearest-exact', 'linear', 'area'] to (N, C, OH, OW) or (N, C, OL).

    Give exactly one of ``size`` (output size) and ``scale_factor`` (output = floor(in * s)).
    ``align_corners`` (interpolating modes only, default False) maps corner pixel centers onto
    each other. A given ``scale_factor`` also sets the coordinate scale (``1 / s``) unless
    ``recompute_scale_factor=True``, which uses ``in / out`` instead, as if ``size`` had been
    given ('area' always does). 'area' is adaptive average pooling. ``antialias=True`` is not
    supported. Backward is the transposed resize.
    """
    x = input
    if x.ndim not in _MODES:
        raise ShapeError(f"interpolate: expected a 3-d (N, C, L) or 4-d (N, C, H, W) input, got shape {x.shape}")
    if mode not in _MODES[x.ndim]:
        raise ValueError(f"interpolate: mode {mode!r} is not supported for {x.ndim}-d input "
                         f"(supported: {', '.join(_MODES[x.ndim])})")
    if mode not in _INTERPOLATING and align_corners is not None:
        raise ValueError(f"interpolate: align_corners can only be set with the interpolating modes "
                         f"({', '.join(_INTERPOLATING)}), got mode {mode!r}")
    if antialias:
        raise ValueError(f"interpolate: antialias=True is not supported by ember (mode {mode!r}); "
                         "only antialias=False is implemented")
    if recompute_scale_factor and size is not None:
        raise ValueError("interpolate: recompute_scale_factor is not meaningful with an explicit size")
    if x.dtype.kind != "f":
        raise TypeError(f"interpolate: expected a floating point input, got {x.dtype}")
    if 0 in x.shape[2:]:
        raise ShapeError(f"interpolate: input must have non-empty spatial dimensions, got shape {x.shape}")
    out, scales = _sizes("interpolate", x.shape[2:], size, scale_factor,
                         bool(recompute_scale_factor) or mode == "area")
    if mode == "area":
        from ember.ops.pool_extra import adaptive_avg_pool1d, adaptive_avg_pool2d  # (pool_extra imports this)

        return adaptive_avg_pool1d(x, out) if x.ndim == 3 else adaptive_avg_pool2d(x, out)
    flat = x.ndim == 3
    if flat:  # (N, C, L) runs as (N, C, 1, L)
        x = reshape(x, x.shape[:2] + (1, x.shape[2]))
        out, scales = (1,) + out, (1.0,) + scales
    dtype = np.dtype(x.dtype)
    if mode in ("nearest", "nearest-exact"):
        (ah, rows), (aw, cols) = (_nearest_matrix(n, o, s, dtype, exact=mode == "nearest-exact",
                                                  shortcuts=mode == "nearest" and not flat)
                                  for n, o, s in zip(x.shape[2:], out, scales))
        y = Resample2d.apply(x, ah=ah, aw=aw, rows=rows, cols=cols)
    else:
        matrix = _cubic_matrix if mode == "bicubic" else _linear_matrix
        ah, aw = (matrix(n, o, s, bool(align_corners), dtype) for n, o, s in zip(x.shape[2:], out, scales))
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

"""Data augmentation for image batches, with torchvision.transforms' names and semantics.

Every transform here takes (C, H, W) or (N, C, H, W) arrays of uint8 or floating point (floats
are expected in [0, 1] where values are clamped, as in torchvision), keeps the dtype, and for a
batch draws one independent choice per sample in one vectorized call. uint8 results of
interpolation and blurring are rounded, as torchvision rounds them.

Here: ``RandomVerticalFlip``, ``Pad``, ``RandomApply``, ``RandomChoice``, ``GaussianBlur``, and
the helpers the other augmentation files share. Random rectangles (``RandomResizedCrop``,
``RandomErasing``) live in ember/data/regions.py, colour transforms in ember/data/color.py,
rotations and affine maps in ember/data/affine.py, MixUp/CutMix in ember/data/mixing.py.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, Sequence

import numpy as np

from ember.backend import xp_of
from ember.errors import DTypeError, ShapeError
from ember.random import Generator, rng_for
from ember.data.transforms import _batched, _check_chw, _pair

__all__ = ["RandomVerticalFlip", "Pad", "RandomApply", "RandomChoice", "GaussianBlur"]


# ---- helpers shared by the augmentation files -------------------------------------------------
def _image(name: str, x) -> tuple:
    """Check a uint8/float image or batch; return it as a batch (N, C, H, W) and the undo function."""
    _check_chw(name, x)
    if x.dtype != np.uint8 and x.dtype.kind != "f":
        raise DTypeError(f"{name}: expected uint8 or floating point images, got {x.dtype}")
    return _batched(x)


def _work_dtype(x) -> np.dtype:
    """The float dtype arithmetic on ``x`` runs in: its own, or float32 for uint8 (as torchvision)."""
    return x.dtype if x.dtype.kind == "f" else np.dtype(np.float32)


def _restore(y, dtype, rounding: bool = True):
    """A float result back to the input dtype: uint8 is rounded (interpolation, blur) or truncated
    (colour blends), then clipped to [0, 255], as torchvision does."""
    if np.dtype(dtype).kind == "f":
        return y.astype(dtype, copy=False)
    xp = xp_of(y)
    return xp.clip(xp.rint(y) if rounding else y, 0, 255).astype(dtype)


def _uniform(rng, low, high, shape):
    """Uniform draws in [low, high) from ``rng.random`` (the one call NumPy and CuPy share)."""
    return low + (high - low) * rng.random(shape)


def _below(rng, high):
    """One uniform integer in [0, high[i]) per entry of the integer array ``high`` (all >= 1)."""
    xp = xp_of(high)
    return xp.minimum((rng.random(high.shape) * high).astype(np.int64), high - 1)


def _check_p(name: str, p: float) -> float:
    if not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: p must be a probability in [0, 1], got {p!r}")
    return float(p)


def _min_max(name: str, arg: str, value, low: float = -math.inf) -> tuple:
    """A (min, max) pair with low <= min <= max."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name}: {arg} must be a (min, max) pair, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if not low <= lo <= hi:
        raise ValueError(f"{name}: {arg} must be of the form (min, max) with {low} <= min <= max, got {value!r}")
    return lo, hi


def _fill_values(name: str, fill, c: int, xp, dtype):
    """``fill`` (a number, or one value per channel) as a (C, 1, 1) array, or None."""
    if fill is None:
        return None
    f = np.asarray(fill, dtype=np.float64).reshape(-1)
    if f.size not in (1, c):
        raise ShapeError(f"{name}: fill has {f.size} values but the input has {c} channels")
    return xp.asarray(f, dtype=dtype)[:, None, None]


def _gather_from(xb) -> Callable:
    """A gather over the batch xb (N, C, H, W): ``g(rows, cols)[c, n, i, j] = xb[n, c, rows[n, i, j], cols[n, i, j]]``
    with rows, cols broadcasting to (N, OH, OW); results are channel-major (C, N, OH, OW), so per-pixel
    weights (N, OH, OW) broadcast against them. The batch is laid out channel-major once; each gather
    is then one ``take`` along a flat axis (4x faster in NumPy than four-array fancy indexing)."""
    xp = xp_of(xb)
    n, c, H, W = xb.shape
    flat = xp.ascontiguousarray(xb.transpose(1, 0, 2, 3)).reshape(c, n * H * W)
    base = (xp.arange(n) * (H * W))[:, None, None]
    return lambda rows, cols: xp.take(flat, base + rows * W + cols, axis=1)


def _batch_major(y):
    """(C, N, H, W) -> C-contiguous (N, C, H, W)."""
    return xp_of(y).ascontiguousarray(y.transpose(1, 0, 2, 3))


# ---- flips and padding ---------------------------------------------------------------------------
class RandomVerticalFlip:
    """Mirror top-bottom with probability ``p``, independently per sample of a batch."""

    def __init__(self, p: float = 0.5, generator: Generator | None = None):
        self.p = _check_p("RandomVerticalFlip", p)
        self.generator = generator

    def __call__(self, x):
        _check_chw("RandomVerticalFlip", x)
        xp = xp_of(x)
        xb, undo = _batched(x)
        flip = rng_for(self.generator, xb).random(xb.shape[0]) < self.p
        return undo(xp.where(xp.asarray(flip)[:, None, None, None], xb[..., ::-1, :], xb))

    def __repr__(self) -> str:
        return f"RandomVerticalFlip(p={self.p})"


def _padding4(name: str, padding) -> tuple:
    """torchvision's padding forms -> (left, top, right, bottom)."""
    if isinstance(padding, numbers.Integral):
        return (int(padding),) * 4
    if isinstance(padding, (tuple, list)) and all(isinstance(p, numbers.Integral) for p in padding):
        if len(padding) == 1:
            return (int(padding[0]),) * 4
        if len(padding) == 2:
            return int(padding[0]), int(padding[1]), int(padding[0]), int(padding[1])
        if len(padding) == 4:
            return tuple(int(p) for p in padding)
    raise ValueError(f"{name}: padding must be an int or a sequence of 1, 2 or 4 ints, got {padding!r}")


class Pad:
    """Pad the spatial borders: ``Pad(padding, fill=0, padding_mode="constant")`` as torchvision.

    Args:
        padding: int (all borders), (left/right, top/bottom) or (left, top, right, bottom);
            negative values crop, as torchvision does for tensors.
        fill: the constant for ``"constant"``: a number or one value per channel.
        padding_mode: ``"constant"``, ``"edge"`` (repeat the border pixel), ``"reflect"``
            ([1, 2, 3] padded by 2 -> [3, 2, 1, 2, 3, 2, 1]) or ``"symmetric"`` (-> [2, 1, 1, 2, 3, 3, 2]).
    Shapes: (..., C, H, W) -> (..., C, H + top + bottom, W + left + right).
    """

    def __init__(self, padding, fill: float | Sequence[float] = 0, padding_mode: str = "constant"):
        if padding_mode not in ("constant", "edge", "reflect", "symmetric"):
            raise ValueError(f"Pad: padding_mode must be 'constant', 'edge', 'reflect' or 'symmetric', "
                             f"got {padding_mode!r}")
        if not isinstance(fill, (numbers.Real, tuple, list)):
            raise TypeError(f"Pad: fill must be a number or a sequence of numbers, got {fill!r}")
        self.padding = _padding4("Pad", padding)
        self.fill = fill
        self.padding_mode = padding_mode

    def __call__(self, x):
        _check_chw("Pad", x)
        xp = xp_of(x)
        left, top, right, bottom = self.padding
        H, W = x.shape[-2:]
        x = x[..., max(-top, 0):H - max(-bottom, 0), max(-left, 0):W - max(-right, 0)]  # negative pads crop
        left, top, right, bottom = (max(p, 0) for p in self.padding)
        H, W = x.shape[-2:]
        if self.padding_mode == "constant":
            fill = _fill_values("Pad", self.fill, x.shape[-3], xp, x.dtype)
            out = xp.empty(x.shape[:-2] + (H + top + bottom, W + left + right), dtype=x.dtype)
            out[...] = fill
            out[..., top:top + H, left:left + W] = x
            return out
        # torch pads up to size - 1 by reflection and up to size by symmetry; NumPy would go further
        limit_h, limit_w = (H - 1, W - 1) if self.padding_mode == "reflect" else (H, W)
        if max(top, bottom) > limit_h or max(left, right) > limit_w or H == 0 or W == 0:
            raise ShapeError(f"Pad: {self.padding_mode} padding {self.padding} is too large for an input of "
                             f"size {(H, W)} (at most {(limit_w, limit_h)} per side as (w, h))")
        width = ((0, 0),) * (x.ndim - 2) + ((top, bottom), (left, right))
        return xp.pad(x, width, mode=self.padding_mode)

    def __repr__(self) -> str:
        return f"Pad(padding={self.padding}, fill={self.fill}, padding_mode={self.padding_mode!r})"


# ---- containers ----------------------------------------------------------------------------------
def _merge(name: str, out, idx, y):
    """Write a subset's result ``y`` into ``out`` at batch rows ``idx``, checking it kept its layout."""
    if y.shape[1:] != out.shape[1:] or y.dtype != out.dtype:
        raise ShapeError(f"{name}: on a batch the transforms must keep each sample's shape and dtype, got "
                         f"{tuple(y.shape[1:])} {y.dtype} for input samples {tuple(out.shape[1:])} {out.dtype}")
    out[idx] = y


class RandomApply:
    """Apply ``transforms`` (in order) with probability ``p``; on a batch, to a random subset.

    Each sample of a batch gets its own coin; the chosen samples go through the transforms as
    one sub-batch, so the transforms must keep the sample shape and dtype.
    """

    def __init__(self, transforms: Sequence[Callable], p: float = 0.5, generator: Generator | None = None):
        if not isinstance(transforms, Sequence) or not all(callable(t) for t in transforms):
            raise TypeError(f"RandomApply: transforms must be a sequence of callables, got {transforms!r}")
        self.transforms = list(transforms)
        self.p = _check_p("RandomApply", p)
        self.generator = generator

    def _apply(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __call__(self, x):
        _check_chw("RandomApply", x)
        xp = xp_of(x)
        xb, undo = _batched(x)
        chosen = xp.nonzero(xp.asarray(rng_for(self.generator, xb).random(xb.shape[0]) < self.p))[0]
        if x.ndim == 3:
            return self._apply(x) if chosen.size else x
        out = xb.copy()
        if chosen.size:
            _merge("RandomApply", out, chosen, self._apply(xb[chosen]))
        return out

    def __repr__(self) -> str:
        return f"RandomApply(p={self.p}, transforms={self.transforms!r})"


class RandomChoice:
    """Apply one of ``transforms``, picked with probabilities ``p`` (uniform when None), per sample.

    A batch is split by the choice; each transform runs once on its sub-batch, so all of them
    must give samples of one shape and dtype.
    """

    def __init__(self, transforms: Sequence[Callable], p: Sequence[float] | None = None,
                 generator: Generator | None = None):
        if not isinstance(transforms, Sequence) or not transforms or not all(callable(t) for t in transforms):
            raise TypeError(f"RandomChoice: transforms must be a non-empty sequence of callables, got {transforms!r}")
        if p is None:
            p = [1.0] * len(transforms)
        if len(p) != len(transforms):
            raise ValueError(f"RandomChoice: p has {len(p)} values but there are {len(transforms)} transforms")
        if any(v < 0 for v in p) or sum(p) <= 0:
            raise ValueError(f"RandomChoice: p must be non-negative weights with a positive sum, got {p!r}")
        self.transforms = list(transforms)
        self.p = [float(v) / float(sum(p)) for v in p]
        self.generator = generator

    def __call__(self, x):
        _check_chw("RandomChoice", x)
        xp = xp_of(x)
        xb, undo = _batched(x)
        edges = xp.asarray(np.cumsum(self.p)[:-1])
        pick = xp.searchsorted(edges, xp.asarray(rng_for(self.generator, xb).random(xb.shape[0])), side="right")
        if x.ndim == 3:
            return self.transforms[int(pick[0])](x)
        out = None
        for k, t in enumerate(self.transforms):  # a loop over the transforms, not the samples
            idx = xp.nonzero(pick == k)[0]
            if idx.size == 0:
                continue
            y = t(xb[idx])
            if out is None:
                out = xp.empty((xb.shape[0],) + y.shape[1:], dtype=y.dtype)
            _merge("RandomChoice", out, idx, y)
        return out if out is not None else xb

    def __repr__(self) -> str:
        return f"RandomChoice(transforms={self.transforms!r}, p={self.p})"


# ---- blur ----------------------------------------------------------------------------
def _blur_axis(y, sigma, k: int, axis: int):
    """Per-sample 1-D Gaussian along ``axis`` (2 rows, 3 columns), reflect-padded: a loop over the k taps."""
    xp = xp_of(y)
    t = xp.arange(k, dtype=np.float64) - (k - 1) / 2.0
    w = xp.exp(-0.5 * (t[None, :] / sigma[:, None]) ** 2)
    w = (w / w.sum(axis=1, keepdims=True)).astype(y.dtype)  # (N, k)
    r, n = k // 2, y.shape[axis]
    pad = [(0, 0)] * 4
    pad[axis] = (r, r)
    yp = xp.pad(y, pad, mode="reflect")
    out = xp.zeros_like(y)
    for j in range(k):
        sl = [slice(None)] * 4
        sl[axis] = slice(j, j + n)
        out += w[:, j, None, None, None] * yp[tuple(sl)]
    return out


class GaussianBlur:
    """Blur with a Gaussian of a random ``sigma ~ uniform(*sigma)``, one sigma per sample.

    Args:
        kernel_size: odd int, or (kx, ky) odd ints (width direction first, as torchvision).
        sigma: a fixed positive float, or a (min, max) range to draw from.
    The kernel is torchvision's (weights ``exp(-t^2 / (2 sigma^2))`` at ``t = -(k-1)/2 ... (k-1)/2``,
    normalized), applied separably with reflect padding (k // 2 per side, which must be smaller than
    the image). Shapes are kept.
    """

    def __init__(self, kernel_size, sigma=(0.1, 2.0), generator: Generator | None = None):
        kx, ky = _pair(kernel_size, "GaussianBlur")
        if kx <= 0 or ky <= 0 or kx % 2 == 0 or ky % 2 == 0:
            raise ValueError(f"GaussianBlur: kernel_size values must be odd and positive, got {kernel_size!r}")
        if isinstance(sigma, numbers.Real):
            if sigma <= 0:
                raise ValueError(f"GaussianBlur: sigma must be positive, got {sigma!r}")
            sigma = (float(sigma), float(sigma))
        self.sigma = _min_max("GaussianBlur", "sigma", sigma, 0.0)
        if self.sigma[0] <= 0:
            raise ValueError(f"GaussianBlur: sigma values must be positive, got {sigma!r}")
        self.kernel_size = (kx, ky)
        self.generator = generator

    def get_params(self, x):
        """The per-sample sigma (N,) drawn for the batch (or the sample) ``x``."""
        xb, _ = _image("GaussianBlur", x)
        return _uniform(rng_for(self.generator, xb), self.sigma[0], self.sigma[1], xb.shape[0])

    def __call__(self, x):
        xb, undo = _image("GaussianBlur", x)
        kx, ky = self.kernel_size
        H, W = xb.shape[-2:]
        if ky // 2 >= H or kx // 2 >= W:
            raise ShapeError(f"GaussianBlur: kernel_size {self.kernel_size} (kx, ky) needs an input larger than "
                             f"{(ky // 2, kx // 2)} for reflect padding, got {(H, W)}")
        sigma = self.get_params(xb)
        y = _blur_axis(xb.astype(_work_dtype(xb)), sigma, ky, 2)
        return undo(_restore(_blur_axis(y, sigma, kx, 3), xb.dtype))

    def __repr__(self) -> str:
        return f"GaussianBlur(kernel_size={self.kernel_size}, sigma={self.sigma})"

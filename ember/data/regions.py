"""Random rectangles: ``RandomResizedCrop`` and ``RandomErasing``, as torchvision.

Both draw a rectangle the same way: up to 10 tries of an area ``uniform(*scale) * H * W`` and an
aspect ratio ``exp(uniform(log ratio[0], log ratio[1]))``, keeping the first try that fits. For
a batch, all 10 tries of every sample are drawn at once and each sample keeps its first valid
one (``argmax`` of the validity mask), so there is no loop over samples.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np

from ember.backend import xp_of
from ember.errors import DTypeError
from ember.random import Generator, rng_for
from ember.data.augment import (_batch_major, _below, _check_p, _fill_values, _gather_from, _image, _min_max,
                                _restore, _uniform, _work_dtype)
from ember.data.transforms import _pair

__all__ = ["RandomResizedCrop", "RandomErasing"]


def _ten_tries(rng, xp, n: int, H: int, W: int, scale: tuple, ratio: tuple) -> tuple:
    """Sides of 10 candidate rectangles per sample: round(sqrt(area * r)), round(sqrt(area / r)), each (N, 10)."""
    area = H * W * _uniform(rng, scale[0], scale[1], (n, 10))
    aspect = xp.exp(_uniform(rng, math.log(ratio[0]), math.log(ratio[1]), (n, 10)))
    return xp.rint(xp.sqrt(area * aspect)).astype(np.int64), xp.rint(xp.sqrt(area / aspect)).astype(np.int64)


def _first_valid(ok, *sides) -> tuple:
    """Whether each sample has a valid try, and each of ``sides`` at its first valid try."""
    xp = xp_of(ok)
    first, rows = xp.argmax(ok, axis=1), xp.arange(ok.shape[0])  # argmax of booleans: the first True
    return (ok.any(axis=1),) + tuple(s[rows, first] for s in sides)


def _resample_crops(xb, top, left, h, w, size, interpolation):
    """Resize each sample's crop (top, left, h, w: (N,) ints) to ``size``, without antialiasing
    (like F.interpolate(mode, align_corners=False) on the crop): one gather per bilinear corner."""
    xp = xp_of(xb)
    oh, ow = size
    if interpolation == "nearest":  # PyTorch's rule: floor(i * in / out), with a float32 scale
        def near(o, n):
            scale = (n.astype(np.float32) / np.float32(o))[:, None]
            return xp.minimum(xp.floor(xp.arange(o, dtype=np.float32) * scale).astype(np.int64), n[:, None] - 1)
        rows, cols = (top[:, None] + near(oh, h))[:, :, None], (left[:, None] + near(ow, w))[:, None, :]
        return _batch_major(_gather_from(xb)(rows, cols))
    dt = _work_dtype(xb)

    def src(o, n, start):  # half-pixel centres, clamped into the crop
        pos = (xp.arange(o, dtype=np.float64) + 0.5) * (n[:, None] / o) - 0.5
        pos = xp.clip(pos, 0, n[:, None] - 1)
        lo = xp.floor(pos).astype(np.int64)
        return start[:, None] + lo, start[:, None] + xp.minimum(lo + 1, n[:, None] - 1), (pos - lo).astype(dt)

    r0, r1, fy = src(oh, h, top)
    c0, c1, fx = src(ow, w, left)
    r0, r1, fy = r0[:, :, None], r1[:, :, None], fy[:, :, None]  # (N, OH, 1)
    c0, c1, fx = c0[:, None, :], c1[:, None, :], fx[:, None, :]  # (N, 1, OW)
    g = _gather_from(xb.astype(dt, copy=False))
    out = (1 - fy) * ((1 - fx) * g(r0, c0) + fx * g(r0, c1)) + fy * ((1 - fx) * g(r1, c0) + fx * g(r1, c1))
    return _batch_major(_restore(out, xb.dtype))


class RandomResizedCrop:
    """Crop a random area and aspect ratio, then resize it to ``size`` (the Inception / ImageNet crop).

    Sampling follows torchvision: the first of 10 tries (module docstring; the ratio is w / h)
    with ``0 < w <= W`` and ``0 < h <= H``, at a uniform random position; if none fits, the
    central crop clipped to ``ratio``.

    Args:
        size: output (h, w), or an int for a square.
        scale: range of the crop's area as a fraction of the input's.
        ratio: range of the crop's aspect ratio w / h.
        interpolation: ``"bilinear"`` or ``"nearest"``.
    Deliberate difference: no antialiasing (torchvision's ``antialias=True`` default low-pass
    filters when shrinking); the resize equals F.interpolate(crop, size, mode, align_corners=False).
    Shapes: (C, H, W) -> (C, h, w); (N, C, H, W) -> (N, C, h, w).
    """

    def __init__(self, size, scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
                 interpolation: str = "bilinear", generator: Generator | None = None):
        name = "RandomResizedCrop"
        self.size = _pair(size[0] if isinstance(size, (tuple, list)) and len(size) == 1 else size, name)
        self.scale = _min_max(name, "scale", scale, 0.0)
        self.ratio = _min_max(name, "ratio", ratio, 0.0)
        if self.ratio[0] == 0.0 or min(self.size) <= 0:
            raise ValueError(f"{name}: ratio and size must be positive, got ratio={ratio!r}, size={size!r}")
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"{name}: interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
        self.interpolation = interpolation
        self.generator = generator

    def get_params(self, x) -> tuple:
        """Per-sample crop boxes (top, left, height, width), each an int64 array (N,)."""
        xb, _ = _image("RandomResizedCrop", x)
        xp = xp_of(xb)
        n, H, W = xb.shape[0], xb.shape[-2], xb.shape[-1]
        rng = rng_for(self.generator, xb)
        w, h = _ten_tries(rng, xp, n, H, W, self.scale, self.ratio)
        found, h, w = _first_valid((w > 0) & (w <= W) & (h > 0) & (h <= H), h, w)
        if W / H < self.ratio[0]:  # torchvision's central fallback
            fw, fh = W, int(round(W / self.ratio[0]))
        elif W / H > self.ratio[1]:
            fw, fh = int(round(H * self.ratio[1])), H
        else:
            fw, fh = W, H
        h, w = xp.where(found, h, fh), xp.where(found, w, fw)
        top = xp.where(found, _below(rng, H - h + 1), (H - fh) // 2)
        left = xp.where(found, _below(rng, W - w + 1), (W - fw) // 2)
        return top, left, h, w

    def __call__(self, x):
        xb, undo = _image("RandomResizedCrop", x)
        top, left, h, w = self.get_params(xb)
        return undo(_resample_crops(xb, top, left, h, w, self.size, self.interpolation))

    def __repr__(self) -> str:
        return (f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio}, "
                f"interpolation={self.interpolation!r})")


class RandomErasing:
    """Erase a random rectangle with probability ``p`` (Zhong et al. 2020, "Random Erasing Data
    Augmentation"), with torchvision's sampling: the first of 10 tries (module docstring; here the
    ratio is h / w) with h < H and w < W, at a uniform random position; a sample whose tries all
    fail is left as it is. "Cutout" (DeVries & Taylor 2017, "Improved Regularization of
    Convolutional Neural Networks with Cutout") is the square case
    ``RandomErasing(p=1, scale=(s, s), ratio=(1, 1))``, with the square kept inside the image.

    Args:
        p: probability that a sample is erased.
        scale: range of the erased area as a fraction of the image; ratio: its h / w range.
        value: the erasing value: a number, one per channel, or ``"random"`` (standard normal
            noise per pixel; float images only).
        inplace: write into the input array instead of a copy.
    Deliberate difference: reversed (max, min) ranges raise instead of warning. Shapes are kept.
    """

    def __init__(self, p: float = 0.5, scale: Sequence[float] = (0.02, 0.33), ratio: Sequence[float] = (0.3, 3.3),
                 value=0.0, inplace: bool = False, generator: Generator | None = None):
        name = "RandomErasing"
        self.p = _check_p(name, p)
        self.scale = _min_max(name, "scale", scale, 0.0)
        if self.scale[1] > 1:
            raise ValueError(f"{name}: scale must lie in [0, 1], got {scale!r}")
        self.ratio = _min_max(name, "ratio", ratio, 0.0)
        if self.ratio[0] == 0:
            raise ValueError(f"{name}: ratio must be positive, got {ratio!r}")
        if isinstance(value, str) and value != "random":
            raise ValueError(f"{name}: a string value must be 'random', got {value!r}")
        if not isinstance(value, (numbers.Real, str, tuple, list)):
            raise TypeError(f"{name}: value must be a number, a sequence of numbers or 'random', got {value!r}")
        self.value = value
        self.inplace = inplace
        self.generator = generator

    def get_params(self, x) -> tuple:
        """Per-sample boxes (top, left, height, width), int64 (N,); height 0 where nothing is erased."""
        xb, _ = _image("RandomErasing", x)
        xp = xp_of(xb)
        n, H, W = xb.shape[0], xb.shape[-2], xb.shape[-1]
        rng = rng_for(self.generator, xb)
        apply = rng.random(n) < self.p
        h, w = _ten_tries(rng, xp, n, H, W, self.scale, self.ratio)
        found, h, w = _first_valid((h < H) & (w < W), h, w)
        h = xp.where(found & apply, h, 0)
        w = xp.where(found, w, 0)
        return _below(rng, H - h + 1), _below(rng, W - w + 1), h, w

    def __call__(self, x):
        name = "RandomErasing"
        xb, undo = _image(name, x)
        xp = xp_of(xb)
        n, c, H, W = xb.shape
        if self.value == "random" and xb.dtype.kind != "f":
            raise DTypeError(f"{name}: value='random' needs floating point images, got {xb.dtype}")
        top, left, h, w = self.get_params(xb)
        r = xp.arange(H)[None, :, None] - top[:, None, None]
        q = xp.arange(W)[None, None, :] - left[:, None, None]
        mask = ((r >= 0) & (r < h[:, None, None]) & (q >= 0) & (q < w[:, None, None]))[:, None]  # (N, 1, H, W)
        if self.value == "random":
            v = rng_for(self.generator, xb).standard_normal((n, c, H, W)).astype(xb.dtype)
        else:
            v = _fill_values(name, self.value, c, xp, np.float64).astype(xb.dtype)
        if self.inplace:
            xp.copyto(xb, xp.broadcast_to(v, xb.shape), where=xp.broadcast_to(mask, xb.shape))
            return x
        return undo(xp.where(mask, v, xb))

    def __repr__(self) -> str:
        return f"RandomErasing(p={self.p}, scale={self.scale}, ratio={self.ratio}, value={self.value!r})"

"""Transforms: array callables that work on one sample or on a whole batch at once.

Layout conventions (ndim decides, so nothing is guessed):
- ``ToTensor`` takes uint8 images as PIL/NumPy store them: HW or HWC for one sample,
  NHWC for a batch, and returns float32 CHW / NCHW in [0, 1].
- Every other transform takes channels-first float arrays: (C, H, W) for one sample or
  (N, C, H, W) for a batch, and touches only the last two (spatial) axes.

Random transforms draw from ``generator`` (an ember.Generator; the default generator when
None) and, for a batch, draw one independent choice per sample in a single vectorized
call: no Python loop over samples. They run on NumPy or CuPy arrays alike.

The augmentations of a CNN course are re-exported here from their own files, with
torchvision's names and semantics; they take uint8 or float (C, H, W) / (N, C, H, W):
ember/data/augment.py (RandomVerticalFlip, Pad, RandomApply, RandomChoice, GaussianBlur),
ember/data/regions.py (RandomResizedCrop, RandomErasing), ember/data/color.py (Grayscale, RandomGrayscale, ColorJitter),
ember/data/affine.py (RandomRotation, RandomAffine) and ember/data/mixing.py (MixUp, CutMix,
applied to a whole batch and its labels in the training loop).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ember.backend import xp_of
from ember.errors import DTypeError, ShapeError
from ember.random import Generator, rng_for

__all__ = ["Compose", "ToTensor", "ConvertImageDtype", "Normalize", "RandomCrop", "RandomHorizontalFlip",
           "CenterCrop", "Resize", "Lambda",
           # re-exported from augment.py, regions.py, color.py, affine.py, mixing.py (bottom of this file)
           "RandomVerticalFlip", "Pad", "RandomResizedCrop", "RandomApply", "RandomChoice", "GaussianBlur",
           "RandomErasing", "Grayscale", "RandomGrayscale", "ColorJitter", "RandomRotation", "RandomAffine",
           "MixUp", "CutMix"]


def _pair(size, name: str) -> tuple:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return int(size[0]), int(size[1])
    raise ValueError(f"{name}: size must be an int or (h, w), got {size!r}")


def _check_chw(name: str, x) -> None:
    if x.ndim not in (3, 4):
        raise ShapeError(f"{name}: expected (C, H, W) or (N, C, H, W), got shape {tuple(x.shape)}")


class Compose:
    """Apply transforms in order: ``Compose([ToTensor(), Normalize(m, s)])``."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


class Lambda:
    """Wrap any function as a transform."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, x):
        return self.fn(x)


class ToTensor:
    """uint8 HW / HWC / NHWC -> float32 CHW / NCHW scaled to [0, 1] (floats: layout change only)."""

    def __call__(self, x):
        xp = xp_of(x)
        x = xp.asarray(x)
        if x.ndim == 2:
            x = x[None]
        elif x.ndim == 3:
            x = x.transpose(2, 0, 1)
        elif x.ndim == 4:
            x = x.transpose(0, 3, 1, 2)
        else:
            raise ShapeError(f"ToTensor: expected HW, HWC or NHWC, got shape {tuple(x.shape)}")
        return _to_float(x, "ToTensor")

    def __repr__(self) -> str:
        return "ToTensor()"


def _to_float(x, name: str):
    xp = xp_of(x)
    if x.dtype == np.uint8:
        x = xp.ascontiguousarray(x)  # lay out the small uint8 array, so the float result is C-contiguous
        # multiply by the float32 reciprocal: one pass, result already float32
        return xp.multiply(x, np.float32(1.0 / 255.0), dtype=np.float32)
    if x.dtype.kind == "f":
        return xp.ascontiguousarray(x, dtype=np.float32 if x.dtype != np.float64 else x.dtype)
    raise DTypeError(f"{name}: expected uint8 or floating point images, got {x.dtype}")


class ConvertImageDtype:
    """uint8 (any layout) -> float32 in [0, 1]; floats pass through."""

    def __call__(self, x):
        return _to_float(xp_of(x).asarray(x), "ConvertImageDtype")


class Normalize:
    """``(x - mean[c]) / std[c]`` per channel, on (C, H, W) or (N, C, H, W)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1)
        if len(self.mean) != len(self.std):
            raise ShapeError(f"Normalize: mean has {len(self.mean)} values but std has {len(self.std)}")
        if np.any(self.std == 0):
            raise ValueError(f"Normalize: std must be non-zero, got {self.std.tolist()}")

    def __call__(self, x):
        _check_chw("Normalize", x)
        c = x.shape[-3]
        if len(self.mean) not in (1, c):
            raise ShapeError(f"Normalize: input has {c} channels but mean/std have {len(self.mean)} "
                             f"(input {tuple(x.shape)})")
        xp = xp_of(x)
        mean = xp.asarray(self.mean, dtype=x.dtype)[:, None, None]
        inv = xp.asarray(1.0 / self.std, dtype=x.dtype)[:, None, None]
        return (x - mean) * inv

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


def _batched(x):
    """View a sample (C, H, W) as a batch of one; returns the batch and an undo function."""
    return (x[None], lambda y: y[0]) if x.ndim == 3 else (x, lambda y: y)


class RandomCrop:
    """Crop a random ``size`` window, after zero-padding each border by ``padding``.

    Args:
        size: output (h, w) or an int for a square.
        padding: int, or (left/right, top/bottom), added before cropping (the CIFAR recipe: 32, padding=4).
        fill: the constant used for padding.
        generator: ember.Generator for the offsets.
    For a batch every sample gets its own offset; the crop is one gather with per-sample
    row/column index arrays, so there is no loop over samples.
    """

    def __init__(self, size, padding: int | Sequence[int] = 0, fill: float = 0.0,
                 generator: Generator | None = None):
        self.size = _pair(size, "RandomCrop")
        self.padding = _pair(padding, "RandomCrop") if not isinstance(padding, (int, np.integer)) else (padding,) * 2
        self.fill = fill
        self.generator = generator

    def __call__(self, x):
        _check_chw("RandomCrop", x)
        xp = xp_of(x)
        xb, undo = _batched(x)
        pw, ph = self.padding
        if ph or pw:
            xb = xp.pad(xb, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=self.fill)
        n, c, hp, wp = xb.shape
        h, w = self.size
        if h > hp or w > wp:
            raise ShapeError(f"RandomCrop: crop size {(h, w)} is larger than the padded input {(hp, wp)} "
                             f"(input {tuple(x.shape)}, padding {self.padding})")
        rng = rng_for(self.generator, xb)
        oy = rng.integers(0, hp - h + 1, size=n)
        ox = rng.integers(0, wp - w + 1, size=n)
        rows = xp.asarray(oy)[:, None] + xp.arange(h)  # (N, h)
        cols = xp.asarray(ox)[:, None] + xp.arange(w)  # (N, w)
        out = xb[xp.arange(n)[:, None, None, None], xp.arange(c)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
        return undo(out)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``, independently per sample of a batch."""

    def __init__(self, p: float = 0.5, generator: Generator | None = None):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p = p
        self.generator = generator

    def __call__(self, x):
        _check_chw("RandomHorizontalFlip", x)
        xp = xp_of(x)
        xb, undo = _batched(x)
        flip = rng_for(self.generator, xb).random(xb.shape[0]) < self.p
        return undo(xp.where(xp.asarray(flip)[:, None, None, None], xb[..., ::-1], xb))

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class CenterCrop:
    """Crop the central ``size`` window (offsets rounded as PyTorch does)."""

    def __init__(self, size):
        self.size = _pair(size, "CenterCrop")

    def __call__(self, x):
        _check_chw("CenterCrop", x)
        h, w = self.size
        H, W = x.shape[-2:]
        if h > H or w > W:
            raise ShapeError(f"CenterCrop: crop size {(h, w)} is larger than the input {(H, W)}")
        top, left = int(round((H - h) / 2.0)), int(round((W - w) / 2.0))
        return x[..., top:top + h, left:left + w]


def _source_coords(out_len: int, in_len: int, xp):
    """Bilinear source positions for output pixels (half-pixel centres, align_corners=False)."""
    pos = (xp.arange(out_len, dtype=np.float64) + 0.5) * (in_len / out_len) - 0.5
    pos = xp.clip(pos, 0, in_len - 1)
    lo = xp.floor(pos).astype(np.int64)
    hi = xp.minimum(lo + 1, in_len - 1)
    return lo, hi, (pos - lo).astype(np.float32)


class Resize:
    """Resize the spatial axes of (C, H, W) / (N, C, H, W).

    Args:
        size: (h, w), or an int: the shorter side becomes ``size`` and the aspect ratio is kept.
        interpolation: "bilinear" (half-pixel centres, like F.interpolate(align_corners=False)
            without antialiasing) or "nearest".
    """

    def __init__(self, size, interpolation: str = "bilinear"):
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"Resize: interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
        self.size = size if isinstance(size, (int, np.integer)) else _pair(size, "Resize")
        self.interpolation = interpolation

    def _out_size(self, H: int, W: int) -> tuple:
        if isinstance(self.size, tuple):
            return self.size
        s = int(self.size)
        return (s, max(1, int(s * W / H))) if H <= W else (max(1, int(s * H / W)), s)

    def __call__(self, x):
        _check_chw("Resize", x)
        xp = xp_of(x)
        H, W = x.shape[-2:]
        h, w = self._out_size(H, W)
        if (h, w) == (H, W):
            return x
        if self.interpolation == "nearest":
            # PyTorch's 'nearest': source index floor(i * in / out)
            rows = xp.minimum((xp.arange(h) * (H / h)).astype(np.int64), H - 1)
            cols = xp.minimum((xp.arange(w) * (W / w)).astype(np.int64), W - 1)
            return x[..., rows[:, None], cols[None, :]]
        x = _to_float(x, "Resize")
        r0, r1, fy = _source_coords(h, H, xp)
        c0, c1, fx = _source_coords(w, W, xp)
        fy = fy.astype(x.dtype)[:, None]
        fx = fx.astype(x.dtype)
        top = x[..., r0, :] * (1 - fy) + x[..., r1, :] * fy  # rows first: (..., h, W)
        return top[..., c0] * (1 - fx) + top[..., c1] * fx

    def __repr__(self) -> str:
        return f"Resize(size={self.size}, interpolation={self.interpolation!r})"


# The augmentation modules import the helpers above, so they are imported last.
from ember.data.augment import GaussianBlur, Pad, RandomApply, RandomChoice, RandomVerticalFlip  # noqa: E402
from ember.data.regions import RandomErasing, RandomResizedCrop  # noqa: E402
from ember.data.color import ColorJitter, Grayscale, RandomGrayscale  # noqa: E402
from ember.data.affine import RandomAffine, RandomRotation  # noqa: E402
from ember.data.mixing import CutMix, MixUp  # noqa: E402

"""Colour augmentation: ``Grayscale``, ``RandomGrayscale`` and ``ColorJitter``, as torchvision.

Images are (C, H, W) or (N, C, H, W) with 1 or 3 (RGB) channels, uint8 or float in [0, 1].
The formulas are torchvision's: grey is the ITU-R 601-2 luma ``0.2989 R + 0.587 G + 0.114 B``;
brightness scales the image, contrast blends it with the mean of its grey image, saturation
with its grey image, hue rotates the H channel of HSV. Blends are clamped to [0, 1] (floats)
or [0, 255] and truncated (uint8), as torchvision does.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np

from ember.backend import xp_of
from ember.errors import ShapeError
from ember.random import Generator, rng_for
from ember.data.augment import _check_p, _image, _restore, _uniform, _work_dtype

__all__ = ["Grayscale", "RandomGrayscale", "ColorJitter"]


def _rgb_channels(name: str, xb) -> int:
    c = xb.shape[1]
    if c not in (1, 3):
        raise ShapeError(f"{name}: expected 1 or 3 (RGB) channels, got {c} (input {tuple(xb.shape)})")
    return c


def _luma(xb):
    """Grey level (N, 1, H, W) of RGB (N, 3, H, W), in the working float dtype (not rounded)."""
    dt = _work_dtype(xb)
    r, g, b = (xb[:, k:k + 1].astype(dt) for k in range(3))
    return r * dt.type(0.2989) + g * dt.type(0.587) + b * dt.type(0.114)


def _blend(x, other, ratio):
    """``ratio * x + (1 - ratio) * other`` clamped to the image range, back in x's dtype (per-sample ratio (N,))."""
    xp = xp_of(x)
    dt = _work_dtype(x)
    r = ratio.astype(dt)[:, None, None, None]
    out = x.astype(dt) * r + other * (1 - ratio).astype(dt)[:, None, None, None]
    return _restore(xp.clip(out, 0, 1 if x.dtype.kind == "f" else 255), x.dtype, rounding=False)


def _brightness(x, f):
    return _blend(x, xp_of(x).zeros((), dtype=_work_dtype(x)), f)


def _grey_for_blend(x):
    """The grey image torchvision blends with: float, floored for uint8 images."""
    g = _luma(x)
    return g if x.dtype.kind == "f" else xp_of(x).floor(g)


def _contrast(x, f):
    g = _grey_for_blend(x) if x.shape[1] == 3 else x.astype(_work_dtype(x))
    return _blend(x, g.mean(axis=(1, 2, 3), keepdims=True), f)


def _saturation(x, f):
    return x if x.shape[1] == 1 else _blend(x, _grey_for_blend(x), f)


def _rgb_to_hsv(x):
    """RGB (N, 3, H, W) floats -> h, s, v each (N, H, W), h in [0, 1) (grey pixels: h = s = 0)."""
    xp = xp_of(x)
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    v = x.max(axis=1)
    delta = v - x.min(axis=1)
    grey = delta == 0
    s = delta / xp.where(grey, 1, v)
    d = xp.where(grey, 1, delta)
    h = xp.where(v == r, (g - b) / d, xp.where(v == g, 2 + (b - r) / d, 4 + (r - g) / d))
    return xp.where(grey, 0, h / 6) % 1.0, s, v


# rows r, g, b; column i = floor(6 h): which of (v, p, q, t) each channel takes in that sextant
_HSV_SECTOR = np.array([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]])


def _hsv_to_rgb(h, s, v):
    xp = xp_of(h)
    h6 = h * 6
    i = xp.floor(h6)
    f = h6 - i
    p = xp.clip(v * (1 - s), 0, 1)
    q = xp.clip(v * (1 - s * f), 0, 1)
    t = xp.clip(v * (1 - s * (1 - f)), 0, 1)
    vpqt = xp.stack([v, p, q, t], axis=1)  # (N, 4, H, W)
    pick = xp.asarray(_HSV_SECTOR)[:, i.astype(np.int64) % 6]  # (3, N, H, W)
    return xp.take_along_axis(vpqt, xp.moveaxis(pick, 0, 1), axis=1)


def _hue(x, f):
    if x.shape[1] == 1:
        return x
    y = x if x.dtype.kind == "f" else x.astype(np.float32) * np.float32(1.0 / 255.0)
    h, s, v = _rgb_to_hsv(y)
    rgb = _hsv_to_rgb((h + f.astype(y.dtype)[:, None, None]) % 1.0, s, v)
    if x.dtype.kind == "f":
        return rgb.astype(x.dtype, copy=False)
    return (rgb * np.float32(255 + 1 - 1e-3)).astype(x.dtype)  # torchvision's float -> uint8 rule


class Grayscale:
    """RGB -> grey (ITU-R 601-2 luma ``0.2989 R + 0.587 G + 0.114 B``), with 1 or 3 equal output channels.

    One-channel inputs pass through (or are repeated to 3). uint8 grey is truncated, as torchvision.
    Shapes: (..., 3, H, W) -> (..., num_output_channels, H, W).
    """

    def __init__(self, num_output_channels: int = 1):
        if num_output_channels not in (1, 3):
            raise ValueError(f"Grayscale: num_output_channels must be 1 or 3, got {num_output_channels!r}")
        self.num_output_channels = num_output_channels

    def __call__(self, x):
        xb, undo = _image("Grayscale", x)
        g = xb if _rgb_channels("Grayscale", xb) == 1 else _restore(_luma(xb), xb.dtype, rounding=False)
        return undo(xp_of(xb).repeat(g, self.num_output_channels, axis=1))

    def __repr__(self) -> str:
        return f"Grayscale(num_output_channels={self.num_output_channels})"


class RandomGrayscale:
    """Turn each sample grey with probability ``p`` (keeping its number of channels)."""

    def __init__(self, p: float = 0.1, generator: Generator | None = None):
        self.p = _check_p("RandomGrayscale", p)
        self.generator = generator

    def __call__(self, x):
        xb, undo = _image("RandomGrayscale", x)
        xp = xp_of(xb)
        c = _rgb_channels("RandomGrayscale", xb)
        chosen = xp.asarray(rng_for(self.generator, xb).random(xb.shape[0]) < self.p)[:, None, None, None]
        if c == 1:
            return x
        return undo(xp.where(chosen, _restore(_luma(xb), xb.dtype, rounding=False), xb))

    def __repr__(self) -> str:
        return f"RandomGrayscale(p={self.p})"


def _jitter_range(name: str, arg: str, value, center: float, bound: tuple, clip_first: bool):
    """torchvision's argument rule: a number v -> [center - v, center + v], a pair as given; None when it is a no-op."""
    if isinstance(value, numbers.Real):
        if value < 0:
            raise ValueError(f"{name}: {arg} as a single number must be non-negative, got {value!r}")
        value = [center - float(value), center + float(value)]
        if clip_first:
            value[0] = max(value[0], 0.0)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        value = [float(value[0]), float(value[1])]
    else:
        raise TypeError(f"{name}: {arg} must be a number or a (min, max) pair, got {value!r}")
    if not bound[0] <= value[0] <= value[1] <= bound[1]:
        raise ValueError(f"{name}: {arg} must be (min, max) within {bound}, got {value}")
    return None if value[0] == value[1] == center else tuple(value)


class ColorJitter:
    """Randomly change brightness, contrast, saturation and hue, with per-sample factors.

    Args:
        brightness, contrast, saturation: a number v (factor drawn from [max(0, 1 - v), 1 + v])
            or a (min, max) range of non-negative factors; factor 1 is the identity.
        hue: a number v in [0, 0.5] (shift drawn from [-v, v]) or a (min, max) range within
            [-0.5, 0.5]; the shift is a fraction of a full turn of the hue circle.
    As torchvision, the four adjustments are applied in a random order: here each sample of a
    batch draws its own order and factors (torchvision shares one draw across a batch tensor).
    Saturation and hue leave one-channel images unchanged. The batch is regrouped by which
    adjustment comes k-th, so there is no loop over samples. Shapes and dtype are kept.
    """

    def __init__(self, brightness: float | Sequence[float] = 0, contrast: float | Sequence[float] = 0,
                 saturation: float | Sequence[float] = 0, hue: float | Sequence[float] = 0,
                 generator: Generator | None = None):
        inf = float("inf")
        self.brightness = _jitter_range("ColorJitter", "brightness", brightness, 1.0, (0, inf), True)
        self.contrast = _jitter_range("ColorJitter", "contrast", contrast, 1.0, (0, inf), True)
        self.saturation = _jitter_range("ColorJitter", "saturation", saturation, 1.0, (0, inf), True)
        self.hue = _jitter_range("ColorJitter", "hue", hue, 0.0, (-0.5, 0.5), False)
        self.generator = generator

    def get_params(self, x) -> tuple:
        """(order (N, 4) ints: the k-th adjustment of each sample, 0 brightness ... 3 hue;
        factors: four (N,) arrays, None for an adjustment that is off)."""
        xb, _ = _image("ColorJitter", x)
        rng = rng_for(self.generator, xb)
        n = xb.shape[0]
        order = xp_of(xb).argsort(rng.random((n, 4)), axis=1)  # a uniform random permutation per sample
        factors = tuple(None if r is None else _uniform(rng, r[0], r[1], n)
                        for r in (self.brightness, self.contrast, self.saturation, self.hue))
        return order, factors

    def __call__(self, x):
        xb, undo = _image("ColorJitter", x)
        xp = xp_of(xb)
        _rgb_channels("ColorJitter", xb)
        order, factors = self.get_params(xb)
        out = xb.copy()
        ops = (_brightness, _contrast, _saturation, _hue)
        for k in range(4):  # the k-th adjustment of every sample, grouped by which one it is
            for j, (op, f) in enumerate(zip(ops, factors)):
                if f is None:
                    continue
                idx = xp.nonzero(order[:, k] == j)[0]
                if idx.size:
                    out[idx] = op(out[idx], f[idx])
        return undo(out)

    def __repr__(self) -> str:
        return (f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, "
                f"saturation={self.saturation}, hue={self.hue})")

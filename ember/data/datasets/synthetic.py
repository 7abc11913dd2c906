"""Small seeded datasets made of arrays, for tests and offline demos (no files, no network).

All are array-backed (``ArrayDataset``), so the DataLoader batches them without a
per-sample loop. The same ``seed`` always gives the same data.
"""
from __future__ import annotations

import numpy as np

from ember.data.dataset import ArrayDataset

__all__ = ["Blobs", "Spirals", "XOR", "Shapes"]


def _rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


class Blobs(ArrayDataset):
    """Gaussian clusters: ``n`` points (n, dim) float32 around ``centers`` random centres, labels 0..centers-1.

    Args:
        n: number of points; centers: number of classes; dim: feature size;
        std: cluster spread; box: centres are uniform in [-box, box]^dim; seed: data seed.
    """

    def __init__(self, n: int = 300, centers: int = 3, dim: int = 2, std: float = 0.5, box: float = 4.0,
                 seed: int = 0, transform=None):
        rng = _rng(seed)
        means = rng.uniform(-box, box, size=(centers, dim))
        y = rng.integers(0, centers, size=n)
        x = means[y] + std * rng.standard_normal((n, dim))
        self.centers = means.astype(np.float32)
        super().__init__(x.astype(np.float32), y, transform=transform)


class Spirals(ArrayDataset):
    """``classes`` interleaved 2-d spirals (n points in all), a classic non-linearly separable set."""

    def __init__(self, n: int = 300, classes: int = 2, noise: float = 0.1, turns: float = 1.5,
                 seed: int = 0, transform=None):
        rng = _rng(seed)
        y = np.arange(n) % classes
        t = rng.uniform(0.05, 1.0, size=n)  # radius along the arm
        angle = 2 * np.pi * (turns * t + y / classes)
        x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1) + noise * rng.standard_normal((n, 2)) * t[:, None]
        super().__init__(x.astype(np.float32), y, transform=transform)


class XOR(ArrayDataset):
    """Points uniform in [-1, 1]^2 labelled 1 where x0 * x1 < 0 (the XOR of the signs)."""

    def __init__(self, n: int = 200, noise: float = 0.0, seed: int = 0, transform=None):
        rng = _rng(seed)
        x = rng.uniform(-1.0, 1.0, size=(n, 2))
        y = (x[:, 0] * x[:, 1] < 0).astype(np.int64)
        x = x + noise * rng.standard_normal((n, 2))
        super().__init__(x.astype(np.float32), y, transform=transform)


class Shapes(ArrayDataset):
    """Small grayscale images of a circle (0), a square (1) or a triangle (2), for CNN demos.

    Each image (1, size, size) float32 in [0, 1] has one filled shape at a random position and
    scale, plus optional Gaussian pixel noise. Drawn for all images at once by broadcasting
    per-image centres and radii against one pixel grid.
    """

    classes = ["circle", "square", "triangle"]

    def __init__(self, n: int = 512, size: int = 16, noise: float = 0.05, seed: int = 0, transform=None):
        if size < 8:
            raise ValueError(f"Shapes: size must be at least 8 pixels, got {size}")
        rng = _rng(seed)
        y = rng.integers(0, 3, size=n)
        r = rng.uniform(0.18, 0.32, size=n)[:, None, None] * size  # half-width / radius in pixels
        cy = rng.uniform(0, 1, size=n)[:, None, None] * (size - 2 * r) + r
        cx = rng.uniform(0, 1, size=n)[:, None, None] * (size - 2 * r) + r
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
        dy, dx = yy - cy, xx - cx  # (n, size, size)
        circle = dy ** 2 + dx ** 2 <= r ** 2
        square = (np.abs(dy) <= 0.8 * r) & (np.abs(dx) <= 0.8 * r)
        # apex at the top, base at the bottom: half-width grows linearly from 0 to r
        triangle = (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
        kind = y[:, None, None]
        img = np.where(kind == 0, circle, np.where(kind == 1, square, triangle)).astype(np.float32)
        if noise:
            img = np.clip(img + noise * rng.standard_normal(img.shape).astype(np.float32), 0.0, 1.0)
        super().__init__(img[:, None], y, transform=transform)

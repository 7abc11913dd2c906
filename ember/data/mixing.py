"""Batch-level label mixing for training loops: ``MixUp`` and ``CutMix``, as torchvision.transforms.v2.

    mix = T.MixUp(alpha=0.2, num_classes=10)
    for x, y in loader:
        x, y_soft = mix(x, y)                  # y_soft: (N, num_classes) class probabilities
        loss = F.cross_entropy(model(x), y_soft)

One lambda ~ Beta(alpha, alpha) per batch; every sample is paired with its neighbour in the
batch rolled by one (sample i with sample i - 1), so no second batch is needed. Inputs may be
ember Tensors (what a DataLoader yields) or NumPy/CuPy arrays; outputs are of the same kind.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ember.backend import xp_of
from ember.errors import DTypeError, ShapeError
from ember.random import Generator, get_generator
from ember.tensor import Tensor

__all__ = ["MixUp", "CutMix"]


class _Mixer:
    """Shared argument checks and label mixing of MixUp and CutMix."""

    def __init__(self, *, alpha: float = 1.0, num_classes: int | None = None, generator: Generator | None = None):
        name = type(self).__name__
        if not isinstance(alpha, numbers.Real) or not alpha > 0:
            raise ValueError(f"{name}: alpha must be positive (Beta(alpha, alpha)), got {alpha!r}")
        if num_classes is not None and (not isinstance(num_classes, numbers.Integral) or num_classes < 1):
            raise ValueError(f"{name}: num_classes must be a positive int or None, got {num_classes!r}")
        self.alpha = float(alpha)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.generator = generator

    def _lam(self) -> float:
        # one scalar per batch: drawn on the host from the generator's NumPy stream, for any device
        return float(get_generator(self.generator).np.beta(self.alpha, self.alpha))

    def _unpack(self, x, y) -> tuple:
        """Arrays of the batch (N, C, H, W) and its labels as probabilities (N, K) in x's float dtype."""
        name = type(self).__name__
        x = x.data if isinstance(x, Tensor) else x
        y = y.data if isinstance(y, Tensor) else y
        xp = xp_of(x, y)
        if x.ndim != 4:
            raise ShapeError(f"{name}: expected a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
        if y.ndim not in (1, 2) or y.shape[0] != x.shape[0]:
            raise ShapeError(f"{name}: labels must be (N,) class indices or (N, K) probabilities for a batch of "
                             f"{x.shape[0]}, got shape {tuple(y.shape)} (images {tuple(x.shape)})")
        dt = x.dtype if x.dtype.kind == "f" else np.dtype(np.float32)
        if y.ndim == 2:
            if y.dtype.kind != "f":
                raise DTypeError(f"{name}: (N, K) labels must be floating point probabilities, got {y.dtype}")
            if self.num_classes is not None and y.shape[1] != self.num_classes:
                raise ShapeError(f"{name}: labels have {y.shape[1]} classes but num_classes={self.num_classes}")
            return x, y.astype(dt)
        if y.dtype.kind not in "iu":
            raise DTypeError(f"{name}: (N,) labels must be integer class indices, got {y.dtype}")
        if self.num_classes is None:
            raise ValueError(f"{name}: num_classes is needed to one-hot encode (N,) integer labels")
        if y.size and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):  # CuPy would not complain
            raise ValueError(f"{name}: labels must be in [0, {self.num_classes}), got values in "
                             f"[{int(y.min())}, {int(y.max())}]")
        return x, (y[:, None] == xp.arange(self.num_classes)).astype(dt)

    @staticmethod
    def _mix_labels(p, lam: float):
        xp = xp_of(p)
        return p * p.dtype.type(lam) + xp.roll(p, 1, axis=0) * p.dtype.type(1.0 - lam)

    @staticmethod
    def _wrap(like, a):
        return Tensor(a) if isinstance(like, Tensor) else a


class MixUp(_Mixer):
    """MixUp (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization").

    ``x' = lam x + (1 - lam) roll(x, 1)`` and ``y' = lam onehot(y) + (1 - lam) onehot(roll(y, 1))``
    with one ``lam ~ Beta(alpha, alpha)`` for the batch, as torchvision.transforms.v2.MixUp.

    Args (keyword-only, as torchvision):
        alpha: the Beta parameter (> 0); small alpha keeps lam near 0 or 1.
        num_classes: K, to one-hot encode (N,) integer labels; None if labels are already (N, K).
    Call: ``x, y_soft = mix(x, y)``: x (N, C, H, W) floating point, y (N,) ints or (N, K) floats;
    returns the mixed batch and (N, K) probabilities in x's dtype.
    """

    def __call__(self, x, y) -> tuple:
        xa, p = self._unpack(x, y)
        if xa.dtype.kind != "f":
            raise DTypeError(f"MixUp: images must be floating point to be blended, got {xa.dtype} "
                             f"(convert with T.ConvertImageDtype first)")
        lam = self._lam()
        xp = xp_of(xa)
        mixed = xa * xa.dtype.type(lam) + xp.roll(xa, 1, axis=0) * xa.dtype.type(1.0 - lam)
        return self._wrap(x, mixed), self._wrap(y, self._mix_labels(p, lam))

    def __repr__(self) -> str:
        return f"MixUp(alpha={self.alpha}, num_classes={self.num_classes})"


class CutMix(_Mixer):
    """CutMix (Yun et al. 2019, "CutMix: Regularization Strategy to Train Strong Classifiers with
    Localizable Features").

    With one ``lam ~ Beta(alpha, alpha)`` per batch, a box of half-size ``0.5 sqrt(1 - lam) (W, H)``
    (truncated to whole pixels) centred on a uniform random pixel and clipped to the image is pasted
    from the batch rolled by one into every sample. The labels mix with lam corrected to the pasted
    box's clipped area: ``lam' = 1 - box area / (H W)``, as torchvision.transforms.v2.CutMix.

    Args (keyword-only): alpha, num_classes as MixUp. Images may be of any dtype (pixels are copied).
    Call: ``x, y_soft = cut(x, y)``; returns the batch and (N, K) probabilities.
    """

    def get_params(self, height: int, width: int) -> tuple:
        """(box (x1, y1, x2, y2), lam') for an image of ``height`` x ``width``."""
        lam = self._lam()
        rng = get_generator(self.generator).np
        rx, ry = int(rng.integers(width)), int(rng.integers(height))
        r = 0.5 * math.sqrt(1.0 - lam)
        rw, rh = int(r * width), int(r * height)
        x1, y1 = max(rx - rw, 0), max(ry - rh, 0)
        x2, y2 = min(rx + rw, width), min(ry + rh, height)
        return (x1, y1, x2, y2), 1.0 - (x2 - x1) * (y2 - y1) / (width * height)

    def __call__(self, x, y) -> tuple:
        xa, p = self._unpack(x, y)
        xp = xp_of(xa)
        (x1, y1, x2, y2), lam = self.get_params(*xa.shape[-2:])
        out = xa.copy()
        out[..., y1:y2, x1:x2] = xp.roll(xa[..., y1:y2, x1:x2], 1, axis=0)
        return self._wrap(x, out), self._wrap(y, self._mix_labels(p, lam))

    def __repr__(self) -> str:
        return f"CutMix(alpha={self.alpha}, num_classes={self.num_classes})"

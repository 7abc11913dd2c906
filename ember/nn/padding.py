"""Padding layers: Zero, Constant, Reflection, Replication and Circular padding of 1, 2 or 3 trailing dims.

Each is a thin Module over ``F.pad`` (ember.ops.shape.pad, ember.ops.padding). ``padding``
is an int (the same width on every side) or a tuple of 2 * d ints in F.pad's order:
(left, right) for the last dim, then (top, bottom), then (front, back). Negative widths
crop, as in PyTorch: reflect and replicate pad from the whole input and then crop,
circular crops first and wraps the cropped input.

The non-constant modes take (C, *S) or (N, C, *S) inputs with d spatial dims S; the
constant ones pad the last d dims of any input with at least d dims.
"""
from __future__ import annotations

import numpy as np

from ember.errors import ShapeError
from ember.nn.module import Module
from ember.ops.shape import pad
from ember.tensor import Tensor

__all__ = [
    "ZeroPad1d", "ZeroPad2d", "ZeroPad3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d",
    "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d", "ReplicationPad2d",
    "ReplicationPad3d", "CircularPad1d", "CircularPad2d", "CircularPad3d",
]


def _widths(layer: str, padding, d: int) -> tuple:
    """``padding`` as a tuple of 2 * d ints."""
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
        return (int(padding),) * (2 * d)
    if not isinstance(padding, (tuple, list)) or not all(
            isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in padding):
        raise TypeError(f"{layer}: padding must be an int or a tuple of {2 * d} ints, got {padding!r}")
    if len(padding) != 2 * d:
        raise ValueError(f"{layer}: padding must have {2 * d} entries (before and after for each of the last {d} "
                         f"dims), got {len(padding)}: {tuple(padding)}")
    return tuple(int(p) for p in padding)


class _PadNd(Module):
    """Shared by all padding layers; subclasses set the padded dims ``_d`` and ``mode``."""

    _d: int = 1
    mode: str = "constant"
    value: float = 0.0  # the constant modes' fill

    def __init__(self, padding):
        super().__init__()
        self.padding = _widths(type(self).__name__, padding, self._d)

    def forward(self, x: Tensor) -> Tensor:
        d = self._d
        if self.mode == "constant":
            if x.ndim < d:
                raise ShapeError(f"{type(self).__name__}: expected an input with at least {d} dims, got shape "
                                 f"{x.shape}")
            return pad(x, self.padding, "constant", self.value)
        if x.ndim not in (d + 1, d + 2):
            raise ShapeError(f"{type(self).__name__}: expected a {d + 1}-d (C, *S) or {d + 2}-d (N, C, *S) input "
                             f"with {d} padded dims S, got shape {x.shape}")
        grow = tuple(max(p, 0) for p in self.padding)
        crop = tuple(min(p, 0) for p in self.padding)
        if self.mode == "circular":
            return pad(pad(x, crop), grow, "circular")
        return pad(pad(x, grow, self.mode), crop)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class _ConstantPadNd(_PadNd):
    def __init__(self, padding, value: float):
        super().__init__(padding)
        self.value = value

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class ConstantPad1d(_ConstantPadNd):
    """Pad the last dim with ``value``: (*, W) -> (*, W + left + right)."""

    _d = 1


class ConstantPad2d(_ConstantPadNd):
    """Pad the last 2 dims with ``value``: (*, H, W) -> (*, H + top + bottom, W + left + right)."""

    _d = 2


class ConstantPad3d(_ConstantPadNd):
    """Pad the last 3 dims with ``value``: (*, D, H, W) -> (*, D + front + back, H + ..., W + ...)."""

    _d = 3


class ZeroPad1d(_PadNd):
    """Pad the last dim with zeros: (*, W) -> (*, W + left + right)."""

    _d = 1


class ZeroPad2d(_PadNd):
    """Pad the last 2 dims with zeros: (*, H, W) -> (*, H + top + bottom, W + left + right)."""

    _d = 2


class ZeroPad3d(_PadNd):
    """Pad the last 3 dims with zeros: (*, D, H, W) -> (*, D + front + back, H + ..., W + ...)."""

    _d = 3


class ReflectionPad1d(_PadNd):
    """Mirror at the edges without repeating them: (N, C, W) or (C, W); each width < W."""

    _d, mode = 1, "reflect"


class ReflectionPad2d(_PadNd):
    """Mirror at the edges without repeating them: (N, C, H, W) or (C, H, W); widths < H, W."""

    _d, mode = 2, "reflect"


class ReflectionPad3d(_PadNd):
    """Mirror at the edges without repeating them: (N, C, D, H, W) or (C, D, H, W)."""

    _d, mode = 3, "reflect"


class ReplicationPad1d(_PadNd):
    """Repeat the edge values: (N, C, W) or (C, W)."""

    _d, mode = 1, "replicate"


class ReplicationPad2d(_PadNd):
    """Repeat the edge values: (N, C, H, W) or (C, H, W)."""

    _d, mode = 2, "replicate"


class ReplicationPad3d(_PadNd):
    """Repeat the edge values: (N, C, D, H, W) or (C, D, H, W)."""

    _d, mode = 3, "replicate"


class CircularPad1d(_PadNd):
    """Wrap around (periodic boundary): (N, C, W) or (C, W); each width <= W."""

    _d, mode = 1, "circular"


class CircularPad2d(_PadNd):
    """Wrap around (periodic boundary): (N, C, H, W) or (C, H, W); widths <= H, W."""

    _d, mode = 2, "circular"


class CircularPad3d(_PadNd):
    """Wrap around (periodic boundary): (N, C, D, H, W) or (C, D, H, W)."""

    _d, mode = 3, "circular"

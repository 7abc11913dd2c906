"""Pooling layers with PyTorch's names, signatures and reprs; the math is in ember.ops.pool.

Max pooling sends each window's gradient to its first maximum (row-major order).
``MaxOut`` and ``ChannelPool`` pool across channels instead of space.
"""
from __future__ import annotations

from ember.nn.module import Module
from ember.ops import pool as P
from ember.tensor import Tensor

__all__ = [
    "MaxPool2d", "AvgPool2d", "MaxPool1d", "AvgPool1d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d",
    "MaxUnpool2d", "LPPool2d", "MaxOut", "ChannelPool",
]


def _single(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class _MaxPoolNd(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool2d(_MaxPoolNd):
    """Max over KH x KW windows: (N, C, H, W) -> (N, C, OH, OW); stride defaults to kernel_size."""

    def forward(self, x: Tensor):
        return P.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                            self.return_indices)


class MaxPool1d(_MaxPoolNd):
    """Max over windows along L: (N, C, L) -> (N, C, OL)."""

    def forward(self, x: Tensor):
        return P.max_pool1d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                            self.return_indices)


class AvgPool2d(Module):
    """Mean over KH x KW windows: (N, C, H, W) -> (N, C, OH, OW)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: int | None = None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, x: Tensor) -> Tensor:
        return P.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                            self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool1d(Module):
    """Mean over windows along L: (N, C, L) -> (N, C, OL)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True):
        super().__init__()
        self.kernel_size = _single(kernel_size)
        self.stride = _single(stride if stride is not None else kernel_size)
        self.padding = _single(padding)
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, x: Tensor) -> Tensor:
        return P.avg_pool1d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Mean over adaptive bins to a fixed output size; ``AdaptiveAvgPool2d(1)`` is global average pooling."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return P.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveMaxPool2d(Module):
    """Max over adaptive bins to a fixed output size."""

    def __init__(self, output_size, return_indices: bool = False):
        super().__init__()
        self.output_size, self.return_indices = output_size, return_indices

    def forward(self, x: Tensor):
        return P.adaptive_max_pool2d(x, self.output_size, self.return_indices)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class MaxUnpool2d(Module):
    """Inverse of MaxPool2d(return_indices=True): ``unpool(x, indices, output_size=None)``."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride if stride is not None else kernel_size)
        self.padding = _pair(padding)

    def forward(self, x: Tensor, indices: Tensor, output_size=None) -> Tensor:
        return P.max_unpool2d(x, indices, self.kernel_size, self.stride, self.padding, output_size)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class LPPool2d(Module):
    """Power-average pooling ``(sum x**p) ** (1/p)`` over windows."""

    def __init__(self, norm_type: float, kernel_size, stride=None, ceil_mode: bool = False):
        super().__init__()
        self.norm_type, self.kernel_size, self.stride, self.ceil_mode = norm_type, kernel_size, stride, ceil_mode

    def forward(self, x: Tensor) -> Tensor:
        return P.lp_pool2d(x, self.norm_type, self.kernel_size, self.stride, self.ceil_mode)

    def extra_repr(self) -> str:
        return (f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"ceil_mode={self.ceil_mode}")


class MaxOut(Module):
    """Maxout units (Goodfellow et al., 2013): max over groups of ``pieces`` consecutive channels.

    (N, C, *S) -> (N, C / pieces, *S); put it after a Linear or Conv2d with pieces times the units.
    """

    def __init__(self, pieces: int):
        super().__init__()
        if int(pieces) < 1:
            raise ValueError(f"MaxOut: pieces must be >= 1, got {pieces}")
        self.pieces = int(pieces)

    def forward(self, x: Tensor) -> Tensor:
        return P.maxout(x, self.pieces)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


class ChannelPool(Module):
    """Max or mean over windows of ``kernel_size`` channels: (N, C, *S) -> (N, OC, *S)."""

    def __init__(self, kernel_size: int, stride: int | None = None, mode: str = "max"):
        super().__init__()
        if mode not in ("max", "mean"):
            raise ValueError(f"ChannelPool: mode must be 'max' or 'mean', got {mode!r}")
        self.kernel_size, self.stride, self.mode = int(kernel_size), stride, mode

    def forward(self, x: Tensor) -> Tensor:
        return P.channel_pool(x, self.kernel_size, self.stride, self.mode)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, mode={self.mode!r}"

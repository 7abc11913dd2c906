"""Pooling layers with PyTorch's names, signatures and reprs; the math is in ember.ops.pool
(and ember.ops.pool_fractional for ``FractionalMaxPool2d``).

Max pooling sends each window's gradient to its first maximum (row-major order).
``MaxOut`` and ``ChannelPool`` pool across channels instead of space.
"""
from __future__ import annotations

from ember.nn.module import Module
from ember.ops import pool as P
from ember.ops.pool_fractional import fractional_max_pool2d
from ember.tensor import Tensor

__all__ = [
    "MaxPool2d", "AvgPool2d", "MaxPool1d", "AvgPool1d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d",
    "MaxUnpool2d", "LPPool2d", "MaxOut", "ChannelPool", "AdaptiveAvgPool1d", "AdaptiveMaxPool1d", "MaxUnpool1d",
    "LPPool1d", "FractionalMaxPool2d",
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


class _AdaptivePool(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(_AdaptivePool):
    """Mean over adaptive bins to a fixed output size; ``AdaptiveAvgPool2d(1)`` is global average pooling."""

    def forward(self, x: Tensor) -> Tensor:
        return P.adaptive_avg_pool2d(x, self.output_size)


class AdaptiveAvgPool1d(_AdaptivePool):
    """Mean over adaptive bins along L: (N, C, L) -> (N, C, output_size)."""

    def forward(self, x: Tensor) -> Tensor:
        return P.adaptive_avg_pool1d(x, self.output_size)


class _AdaptiveMaxPool(_AdaptivePool):
    def __init__(self, output_size, return_indices: bool = False):
        super().__init__(output_size)
        self.return_indices = return_indices


class AdaptiveMaxPool2d(_AdaptiveMaxPool):
    """Max over adaptive bins to a fixed output size."""

    def forward(self, x: Tensor):
        return P.adaptive_max_pool2d(x, self.output_size, self.return_indices)


class AdaptiveMaxPool1d(_AdaptiveMaxPool):
    """Max over adaptive bins along L: (N, C, L) -> (N, C, output_size) [, positions along L]."""

    def forward(self, x: Tensor):
        return P.adaptive_max_pool1d(x, self.output_size, self.return_indices)


class _MaxUnpool(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        tup = _pair if self._dims == 2 else _single
        self.kernel_size = tup(kernel_size)
        self.stride = tup(stride if stride is not None else kernel_size)
        self.padding = tup(padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxUnpool2d(_MaxUnpool):
    """Inverse of MaxPool2d(return_indices=True): ``unpool(x, indices, output_size=None)``."""

    _dims = 2

    def forward(self, x: Tensor, indices: Tensor, output_size=None) -> Tensor:
        return P.max_unpool2d(x, indices, self.kernel_size, self.stride, self.padding, output_size)


class MaxUnpool1d(_MaxUnpool):
    """Inverse of MaxPool1d(return_indices=True): (N, C, L) values and positions -> (N, C, OL)."""

    _dims = 1

    def forward(self, x: Tensor, indices: Tensor, output_size=None) -> Tensor:
        return P.max_unpool1d(x, indices, self.kernel_size, self.stride, self.padding, output_size)


class _LPPool(Module):
    def __init__(self, norm_type: float, kernel_size, stride=None, ceil_mode: bool = False):
        super().__init__()
        self.norm_type, self.kernel_size, self.stride, self.ceil_mode = norm_type, kernel_size, stride, ceil_mode

    def extra_repr(self) -> str:
        return (f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"ceil_mode={self.ceil_mode}")


class LPPool2d(_LPPool):
    """Power-average pooling ``(sum x**p) ** (1/p)`` over windows."""

    def forward(self, x: Tensor) -> Tensor:
        return P.lp_pool2d(x, self.norm_type, self.kernel_size, self.stride, self.ceil_mode)


class LPPool1d(_LPPool):
    """Power-average pooling ``(sum x**p) ** (1/p)`` over windows along L: (N, C, L) -> (N, C, OL)."""

    def forward(self, x: Tensor) -> Tensor:
        return P.lp_pool1d(x, self.norm_type, self.kernel_size, self.stride, self.ceil_mode)


class FractionalMaxPool2d(Module):
    """Fractional max pooling (Graham, 2014): windows of ``kernel_size`` at pseudo-random steps.

    (N, C, H, W) -> (N, C, OH, OW) with ``output_size``, or ``OH = int(H * ratio)`` with
    ``output_ratio`` in (0, 1). Each call draws new window positions from ``generator``
    (an ember.Generator; the default one otherwise) unless the ``_random_samples`` buffer,
    (N, C, 2) in [0, 1), fixes them.
    """

    def __init__(self, kernel_size, output_size=None, output_ratio=None, return_indices: bool = False,
                 _random_samples=None, *, generator=None):
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.return_indices = return_indices
        self.register_buffer("_random_samples", _random_samples)
        self.output_size = _pair(output_size) if output_size is not None else None
        self.output_ratio = _pair(output_ratio) if output_ratio is not None else None
        self.generator = generator
        if output_size is None and output_ratio is None:
            raise ValueError("FractionalMaxPool2d requires specifying either an output_size or an output_ratio")
        if output_size is not None and output_ratio is not None:
            raise ValueError(f"FractionalMaxPool2d: only one of output_size ({output_size}) and output_ratio "
                             f"({output_ratio}) may be specified")
        if self.output_ratio is not None and not all(0 < r < 1 for r in self.output_ratio):
            raise ValueError(f"FractionalMaxPool2d: output_ratio must be between 0 and 1 (got {output_ratio})")

    def forward(self, x: Tensor):
        return fractional_max_pool2d(x, self.kernel_size, self.output_size, self.output_ratio, self.return_indices,
                                     _random_samples=self._random_samples, generator=self.generator)


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

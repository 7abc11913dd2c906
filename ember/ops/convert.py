"""Conversions with gradients: dtype casts, device moves and copies.

Binary ops (ember.ops.elementwise) cast mixed dtypes through ``astype``; ``Tensor.to``,
``.cuda()``, ``.cpu()`` and ``.clone()`` land here. Each backward undoes its move on the
gradient: cast back, copy back to the source device, pass through.
"""
from __future__ import annotations

import numpy as np

from ember.autograd import Function
from ember.backend import device_of
from ember.backend import to_device as _to_device
from ember.tensor import Tensor

__all__ = ["astype", "to_device", "clone"]


class AsType(Function):
    def forward(self, x, dtype):
        self.dtype = x.dtype
        return x.astype(dtype)

    def backward(self, gy):
        return gy.astype(self.dtype)


def astype(x: Tensor, dtype) -> Tensor:
    """Convert to ``dtype``; the gradient is converted back."""
    if np.dtype(dtype) == x.data.dtype:
        return x
    return AsType.apply(x, dtype=np.dtype(dtype))


class ToDevice(Function):
    def forward(self, x, device):
        self.src_device = device_of(x)
        return _to_device(x, device)

    def backward(self, gy):
        return _to_device(gy, self.src_device)


def to_device(x: Tensor, device) -> Tensor:
    """Copy to another device; the gradient is copied back."""
    return ToDevice.apply(x, device=device)


class Clone(Function):
    def forward(self, x):
        return x.copy()

    def backward(self, gy):
        return gy


def clone(x: Tensor) -> Tensor:
    return Clone.apply(x)

"""Linear and Bilinear (fully connected) layers and the shape-only layers Identity, Flatten and Unflatten."""
from __future__ import annotations

import math

import numpy as np

from ember.nn import init
from ember.nn.module import Module, Parameter
from ember.ops.linalg import bilinear, linear
from ember.ops.shape import flatten, unflatten
from ember.tensor import Tensor

__all__ = ["Linear", "Bilinear", "Identity", "Flatten", "Unflatten"]


class Linear(Module):
    """y = x @ weight.T + bias over the last dim: (..., in_features) -> (..., out_features).

    ``weight`` is (out_features, in_features) and ``bias`` (out_features,), both drawn
    from U(-1/sqrt(in_features), 1/sqrt(in_features)) like PyTorch's default, so a
    torch ``nn.Linear`` state dict loads unchanged.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None,
                 generator=None):
        super().__init__()
        if in_features < 0 or out_features < 0:
            raise ValueError(f"Linear: features must be non-negative, got in={in_features}, out={out_features}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        dtype = np.dtype(dtype or np.float32)
        self.weight = Parameter(np.empty((out_features, in_features), dtype=dtype))
        if bias:
            self.bias = Parameter(np.empty((out_features,), dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters(generator=generator)
        if device is not None:
            self.to(device)

    def reset_parameters(self, generator=None) -> None:
        init.default_init_(self.weight, self.bias, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Bilinear(Module):
    """y = x1^T weight[o] x2 + bias[o]: (*, in1_features), (*, in2_features) -> (*, out_features).

    ``weight`` is (out_features, in1_features, in2_features) and ``bias`` (out_features,), both
    drawn from U(-1/sqrt(in1_features), 1/sqrt(in1_features)) as in PyTorch, whose state dict
    keys (weight, bias) this layer shares.
    """

    def __init__(self, in1_features: int, in2_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None, generator=None):
        super().__init__()
        if in1_features <= 0:
            raise ValueError(f"Bilinear: in1_features must be > 0, but got (in1_features={in1_features})")
        if in2_features < 0 or out_features < 0:
            raise ValueError(f"Bilinear: features must be non-negative, got in2={in2_features}, out={out_features}")
        self.in1_features, self.in2_features = int(in1_features), int(in2_features)
        self.out_features = int(out_features)
        dtype = np.dtype(dtype or np.float32)
        self.weight = Parameter(np.empty((out_features, in1_features, in2_features), dtype=dtype))
        if bias:
            self.bias = Parameter(np.empty((out_features,), dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters(generator=generator)
        if device is not None:
            self.to(device)

    def reset_parameters(self, generator=None) -> None:
        bound = 1 / math.sqrt(self.in1_features)
        init.uniform_(self.weight, -bound, bound, generator=generator)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound, generator=generator)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return bilinear(x1, x2, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")


class Identity(Module):
    """Returns its input unchanged (accepts and ignores any constructor arguments)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return x


class Flatten(Module):
    """Merge dims start_dim..end_dim: (N, C, H, W) -> (N, C*H*W) with the defaults."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        return flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split dim ``dim`` into ``unflattened_size``: Unflatten(1, (C, H, W))."""

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, x: Tensor) -> Tensor:
        return unflatten(x, self.dim, self.unflattened_size)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"

"""Normalization layers with PyTorch's names, signatures, reprs and state_dict keys.

BatchNorm keeps ``running_mean``, ``running_var`` and ``num_batches_tracked`` buffers
(PyTorch's names, so state dicts move between the two). Training normalizes with the
batch's biased variance and moves the running variance towards the unbiased one;
``momentum=None`` makes the running statistics a cumulative average. Eval mode
normalizes with the running statistics. The math is in ember.ops.norm and ember.ops.normalize.
"""
from __future__ import annotations

import numpy as np

from ember.errors import ShapeError
from ember.nn.module import Module, Parameter
from ember.ops import norm as N
from ember.ops.shape import reshape
from ember.tensor import Tensor

__all__ = [
    "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d",
    "LocalResponseNorm", "RMSNorm",
]


def _affine_params(m: Module, weight: bool, bias: bool, shape: tuple, dtype) -> None:
    """Register ``weight`` (ones) and ``bias`` (zeros), or None placeholders so state dicts match."""
    dtype = np.dtype(dtype or np.float32)
    m.register_parameter("weight", Parameter(np.ones(shape, dtype=dtype)) if weight else None)
    m.register_parameter("bias", Parameter(np.zeros(shape, dtype=dtype)) if bias else None)


class _NormBase(Module):
    """Affine parameters and running-statistics buffers shared by BatchNorm and InstanceNorm."""

    def __init__(self, num_features: int, eps: float, momentum: float | None, affine: bool,
                 track_running_stats: bool, device=None, dtype=None, bias: bool = True):
        super().__init__()
        if int(num_features) <= 0:
            raise ValueError(f"{type(self).__name__}: num_features must be positive, got {num_features}")
        dtype = np.dtype(dtype or np.float32)  # running statistics in the parameters' dtype, as PyTorch
        self.num_features, self.eps, self.momentum = int(num_features), eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.use_bias = bool(affine and bias)
        _affine_params(self, affine, self.use_bias, (self.num_features,), dtype)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, dtype=dtype)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, dtype=dtype)))
            self.register_buffer("num_batches_tracked", Tensor(np.zeros((), dtype=np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        if device is not None:
            self.to(device)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0
            for t in (self.running_mean, self.running_var, self.num_batches_tracked):
                t._vc[0] += 1

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            self.weight.data[...] = 1
            if self.bias is not None:
                self.bias.data[...] = 0

    def _momentum(self) -> float:
        """This step's averaging factor; counts the batch when running stats are tracked."""
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            self.num_batches_tracked._vc[0] += 1
            if self.momentum is None:  # cumulative moving average
                return 1.0 / float(self.num_batches_tracked.data)
        return 0.0 if self.momentum is None else float(self.momentum)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.use_bias}, track_running_stats={self.track_running_stats}")


class _BatchNorm(_NormBase):
    _dims: tuple = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None, *, bias: bool = True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias)

    def forward(self, x: Tensor, *, add: Tensor | None = None, relu: bool = False) -> Tensor:
        """``bn(x)``; ``bn(x, add=r, relu=True)`` is ``relu(bn(x) + r)`` as one op (ember's own
        keywords: see ``F.batch_norm``; ResNet's blocks use them)."""
        if x.ndim not in self._dims:
            want = " or ".join(f"{d}D" for d in self._dims)
            raise ShapeError(f"{type(self).__name__}: expected {want} input (got {x.ndim}D input of shape {x.shape})")
        use_batch = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        counter = None
        if self.training and self.track_running_stats and self.momentum is not None:
            # batch_norm counts the batch itself (on a GPU inside its kernel: one launch fewer)
            counter, momentum = self.num_batches_tracked, float(self.momentum)
        else:
            momentum = self._momentum()
        return N.batch_norm(x, self.running_mean if track else None, self.running_var if track else None,
                            self.weight, self.bias, use_batch, momentum, self.eps, num_batches_tracked=counter,
                            add=add, relu=relu)


class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, C) or (N, C, L) per channel C (Ioffe & Szegedy, 2015)."""

    _dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization of (N, C, H, W) per channel C (Ioffe & Szegedy, 2015)."""

    _dims = (4,)


class _InstanceNorm(_NormBase):
    _spatial = 0

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = False,
                 track_running_stats: bool = False, device=None, dtype=None, *, bias: bool = True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias)

    def forward(self, x: Tensor) -> Tensor:
        d = self._spatial
        if x.ndim not in (d + 1, d + 2):
            raise ShapeError(f"{type(self).__name__}: expected {d + 1}D or {d + 2}D input (got {x.ndim}D input)")
        unbatched = x.ndim == d + 1
        if unbatched:
            x = reshape(x, (1,) + x.shape)
        if x.shape[1] != self.num_features:
            raise ShapeError(f"{type(self).__name__}: input has {x.shape[1]} channels, expected {self.num_features}")
        momentum = self._momentum()
        y = N.instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training or not self.track_running_stats, momentum, self.eps)
        return reshape(y, y.shape[1:]) if unbatched else y


class InstanceNorm1d(_InstanceNorm):
    """Normalize each channel of each sample of (N, C, L) over L (Ulyanov et al., 2016)."""

    _spatial = 1


class InstanceNorm2d(_InstanceNorm):
    """Normalize each channel of each sample of (N, C, H, W) over H, W (Ulyanov et al., 2016)."""

    _spatial = 2


class LayerNorm(Module):
    """Normalize over the trailing ``normalized_shape`` dims (Ba et al., 2016); weight ones, bias zeros."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(int(n) for n in normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        self.use_bias = bool(elementwise_affine and bias)
        _affine_params(self, elementwise_affine, self.use_bias, self.normalized_shape, dtype)
        if device is not None:
            self.to(device)

    def forward(self, x: Tensor) -> Tensor:
        return N.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.use_bias}")


class GroupNorm(Module):
    """Normalize groups of channels per sample (Wu & He, 2018); independent of the batch size."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, device=None,
                 dtype=None, *, bias: bool = True):
        super().__init__()
        if num_groups <= 0 or num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels {num_channels} must be divisible by num_groups {num_groups}")
        self.num_groups, self.num_channels, self.eps, self.affine = int(num_groups), int(num_channels), eps, affine
        self.use_bias = bool(affine and bias)
        _affine_params(self, affine, self.use_bias, (self.num_channels,), dtype)
        if device is not None:
            self.to(device)

    def forward(self, x: Tensor) -> Tensor:
        return N.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, bias={self.use_bias}"


class LocalResponseNorm(Module):
    """Divide by a power of the local energy across ``size`` neighbouring channels (AlexNet)."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: Tensor) -> Tensor:
        return N.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class RMSNorm(Module):
    """Root-mean-square normalization over the trailing ``normalized_shape`` dims (Zhang & Sennrich, 2019).

    ``y = x / sqrt(mean(x**2) + eps) * weight``; weight starts at ones (no bias). ``eps=None``
    uses the machine epsilon of the input's dtype at each call, as PyTorch does.
    Shapes: (*, *normalized_shape) -> same.
    """

    def __init__(self, normalized_shape, eps: float | None = None, elementwise_affine: bool = True, device=None,
                 dtype=None):
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(int(n) for n in normalized_shape)
        if any(n < 0 for n in self.normalized_shape):
            raise ValueError(f"RMSNorm: normalized_shape must not be negative, got {self.normalized_shape}")
        self.eps, self.elementwise_affine = eps, elementwise_affine
        w = Parameter(np.ones(self.normalized_shape, dtype=np.dtype(dtype or np.float32)))
        self.register_parameter("weight", w if elementwise_affine else None)
        if device is not None:
            self.to(device)

    def reset_parameters(self) -> None:
        if self.weight is not None:
            from ember.nn.init import ones_

            ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return N.rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"

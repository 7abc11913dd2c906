"""Normalization: batch_norm, layer_norm, group_norm, instance_norm, local_response_norm, rms_norm.

The first four check their arguments, choose a view of the input and the axes its statistics
are taken over, and run one op, ember.ops.normalize.Normalize (its docstring has the math and
the closed-form backward). local_response_norm is a composite of pooling and elementwise ops.
rms_norm has no mean to subtract and is its own small fused op, RmsNorm, below.
"""
from __future__ import annotations

import math

import numpy as np

from ember.autograd import Function
from ember.backend import check_same_device, xp_of
from ember.errors import DTypeError, ShapeError
from ember.ops.normalize import Normalize, _update
from ember.ops.pool import avg_pool2d
from ember.ops.shape import pad, reshape
from ember.tensor import Tensor

__all__ = ["batch_norm", "layer_norm", "group_norm", "instance_norm", "local_response_norm", "rms_norm"]


def _normalize(x: Tensor, view: tuple, weight, bias, pshape: tuple, axes: tuple, eps: float, stats=None,
               sink=None, running=None, add: Tensor | None = None, relu: bool = False) -> Tensor:
    """Normalize ``x`` seen as ``view``, weight and bias seen as ``pshape``; the result has x's shape.
    Batch statistics go into ``sink`` (a dict), and move ``running`` = (running_mean, running_var,
    momentum, unbias) when given: the mean, and the variance times ``unbias``. With ``add`` (x's
    shape) and ``relu`` the result is ``relu(y + add)``, in the same pass."""
    params = [p for p in (weight, bias, add) if p is not None]
    return Normalize.apply(x, *params, view=view, axes=axes, eps=float(eps), has_w=weight is not None,
                           has_b=bias is not None, pshape=pshape, stats=stats, sink=sink, running=running,
                           has_add=add is not None, relu=relu)


def _check_param(op: str, name: str, p, n: int) -> None:
    if p is not None and p.numel() != n:
        raise ShapeError(f"{op}: {name} has {p.numel()} elements (shape {p.shape}) but the input has {n} channels")


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None, weight: Tensor | None = None,
               bias: Tensor | None = None, training: bool = False, momentum: float = 0.1,
               eps: float = 1e-5, *, num_batches_tracked: Tensor | None = None, add: Tensor | None = None,
               relu: bool = False) -> Tensor:
    """Batch normalization over (N, C) / (N, C, L) / (N, C, H, W), per channel C.

    In training the batch statistics (biased variance) normalize, and running buffers,
    when given, move towards the batch mean and unbiased variance by ``momentum`` (in
    place). Otherwise the running statistics normalize.

    ember's own keyword arguments: ``num_batches_tracked`` (the BatchNorm layers pass their
    counter) is advanced by one in training. ``add`` (a tensor of the input's shape) and
    ``relu`` make the result ``relu(batch_norm(input) + add)`` (either part alone too), the
    same numbers as the three ops one after the other, in one op: the sum and the ReLU happen in
    the pass that writes the output, and backward passes the gradient through the ReLU inside
    its own kernels. ResNet's blocks end this way (He et al., 2016); on a GPU it saves two or
    three kernel launches and allocations per layer each way (docs/gpu.md).
    """
    op = "batch_norm"
    if input.ndim < 2:
        raise ShapeError(f"{op}: expected an input of shape (N, C, ...), got {input.shape}")
    n, c = input.shape[:2]
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        _check_param(op, name, t, c)
    if add is not None:
        if not isinstance(add, Tensor):
            raise TypeError(f"{op}: add must be a Tensor, got {type(add).__name__}")
        if add.shape != input.shape:
            raise ShapeError(f"{op}: add has shape {add.shape} but the input has shape {input.shape} (they must match)")
        if add.dtype != input.dtype:
            raise DTypeError(f"{op}: add has dtype {add.dtype} but the input has dtype {input.dtype} (they must match)")
        check_same_device(op, input.data, add.data)
    view = (n, c, math.prod(input.shape[2:]))
    per_channel = n * view[2]
    if training:
        if per_channel <= 1:
            raise ValueError(f"{op}: expected more than 1 value per channel when training, "
                             f"got input size {input.shape}")
        running = None
        if running_mean is not None or running_var is not None or num_batches_tracked is not None:
            running = (running_mean, running_var, momentum, per_channel / (per_channel - 1), num_batches_tracked)
        y = _normalize(input, view, weight, bias, (1, c, 1), (0, 2), eps, running=running, add=add, relu=relu)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(f"{op}: running_mean and running_var are needed when training=False")
        stats = (running_mean.data.reshape(1, c, 1), running_var.data.reshape(1, c, 1))
        y = _normalize(input, view, weight, bias, (1, c, 1), (0, 2), eps, stats=stats, add=add, relu=relu)
    return y


def instance_norm(input: Tensor, running_mean: Tensor | None = None, running_var: Tensor | None = None,
                  weight: Tensor | None = None, bias: Tensor | None = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize each (sample, channel) plane of (N, C, *S) over S.

    Running buffers, when given, track the batch average of the per-instance mean and
    unbiased variance; ``use_input_stats=False`` normalizes with them instead.
    """
    op = "instance_norm"
    if input.ndim < 3:
        raise ShapeError(f"{op}: expected an input of shape (N, C, *spatial), got {input.shape}")
    n, c = input.shape[:2]
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        _check_param(op, name, t, c)
    size = math.prod(input.shape[2:])
    view = (n, c, size)
    if use_input_stats:
        if size <= 1:
            raise ValueError(f"{op}: expected more than 1 spatial element when training, got input size {input.shape}")
        sink: dict = {}
        y = _normalize(input, view, weight, bias, (1, c, 1), (2,), eps, sink=sink)
        if running_mean is not None:
            _update(running_mean, sink["mean"].mean(axis=0), momentum)
        if running_var is not None:
            _update(running_var, sink["var"].mean(axis=0) * (size / (size - 1)), momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(f"{op}: running_mean and running_var are needed when use_input_stats=False")
        stats = (running_mean.data.reshape(1, c, 1), running_var.data.reshape(1, c, 1))
        y = _normalize(input, view, weight, bias, (1, c, 1), (0, 2), eps, stats=stats)
    return y


def layer_norm(input: Tensor, normalized_shape, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalize over the trailing ``normalized_shape`` dims of (*, *normalized_shape)."""
    shape = (int(normalized_shape),) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
    k = len(shape)
    if input.shape[input.ndim - k:] != shape or input.ndim < k:
        raise ShapeError(f"layer_norm: input shape {input.shape} does not end with normalized_shape {shape}")
    size = int(np.prod(shape))
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.shape != shape:
            raise ShapeError(f"layer_norm: {name} has shape {t.shape} but normalized_shape is {shape}")
    view = (input.numel() // size if size else 0, size)
    return _normalize(input, view, weight, bias, (1, size), (1,), eps)


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalize (N, C, *S) over groups of C/num_groups channels and S, per sample."""
    if input.ndim < 2:
        raise ShapeError(f"group_norm: expected an input of shape (N, C, ...), got {input.shape}")
    n, c = input.shape[:2]
    g = int(num_groups)
    if g <= 0 or c % g:
        raise ShapeError(f"group_norm: channels {c} must be divisible by num_groups {num_groups}")
    for name, t in (("weight", weight), ("bias", bias)):
        _check_param("group_norm", name, t, c)
    view = (n, g, c // g, math.prod(input.shape[2:]))
    return _normalize(input, view, weight, bias, (1, g, c // g, 1), (2, 3), eps)


def local_response_norm(input: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> Tensor:
    """``x / (k + alpha * mean of x**2 over `size` neighbouring channels) ** beta`` (Krizhevsky et al., 2012).

    Channels are zero-padded by size//2 before and (size-1)//2 after, as in PyTorch.
    Composite of pooling and elementwise ops (gradient by autograd).
    """
    if input.ndim < 3:
        raise ShapeError(f"local_response_norm: expected an input of shape (N, C, *S), got {input.shape}")
    n, c = input.shape[:2]
    sq = reshape(input * input, (n, 1, c, -1))
    sq = pad(sq, (0, 0, size // 2, (size - 1) // 2))
    div = reshape(avg_pool2d(sq, (size, 1), stride=1), input.shape)
    return input / (div * float(alpha) + float(k)) ** float(beta)


class RmsNorm(Function):
    """y = x * r * w over rows of the (M, K) view, r = 1 / sqrt(mean(x**2) + eps) per row.

    With xhat = x * r and gh = g * w, backward is the closed form

        gx = r * (gh - xhat * mean(gh * xhat)),    gw = sum over rows of g * xhat

    (differentiate r: dr/dx = -r**3 x / K). The weight is used in x's dtype, as PyTorch does;
    its gradient goes back in its own dtype.
    """

    def forward(self, x, *w, view, eps):
        xp = xp_of(x)
        x2 = x.reshape(view)
        self.k = x.dtype.type(max(view[1], 1))  # (empty rows: no elements to average, r is unused)
        r = (xp.einsum("ij,ij->i", x2, x2) / self.k + x.dtype.type(eps)) ** -0.5
        self.r, self.xhat = r[:, None], x2 * r[:, None]
        self.w = w[0].reshape(1, view[1]).astype(x.dtype, copy=False) if w else None
        self.wmeta = (w[0].shape, w[0].dtype) if w else None
        y = self.xhat * self.w if w else self.xhat
        return y.reshape(x.shape)

    def backward(self, gy):
        xp = xp_of(gy)
        g = gy.reshape(self.xhat.shape)
        gh = g * self.w if self.w is not None else g
        gx = gw = None
        if self.needs_input_grad[0]:
            dot = xp.einsum("ij,ij->i", gh, self.xhat)[:, None] / self.k
            gx = (self.r * (gh - self.xhat * dot)).reshape(gy.shape)
        if self.w is not None and self.needs_input_grad[1]:
            shape, dtype = self.wmeta
            gw = xp.einsum("ij,ij->j", g, self.xhat).reshape(shape).astype(dtype, copy=False)
        return (gx, gw) if self.w is not None else gx


def rms_norm(input: Tensor, normalized_shape, weight: Tensor | None = None, eps: float | None = None) -> Tensor:
    """Root-mean-square normalization (Zhang & Sennrich, 2019) over the trailing ``normalized_shape`` dims.

    ``y = x / sqrt(mean(x**2) + eps) * weight``: LayerNorm without centering and without bias.
    ``eps=None`` takes the machine epsilon of the input's dtype (PyTorch's default).
    Shapes: input (*, *normalized_shape), weight normalized_shape -> input's shape.
    """
    if input.dtype.kind != "f":
        raise DTypeError(f"rms_norm: input must be floating point, got {input.dtype}")
    shape = (int(normalized_shape),) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
    k = len(shape)
    if k == 0:
        raise ShapeError("rms_norm: normalized_shape must have at least one dim, got ()")
    if input.ndim < k or input.shape[input.ndim - k:] != shape:
        raise ShapeError(f"rms_norm: input shape {input.shape} does not end with normalized_shape {shape}")
    if weight is not None:
        if weight.shape != shape:
            raise ShapeError(f"rms_norm: weight has shape {weight.shape} but normalized_shape is {shape}")
        check_same_device("rms_norm", input.data, weight.data)
    eps = float(np.finfo(input.dtype).eps) if eps is None else float(eps)
    view = (math.prod(input.shape[:input.ndim - k]), math.prod(shape))
    params = (weight,) if weight is not None else ()
    return RmsNorm.apply(input, *params, view=view, eps=eps)

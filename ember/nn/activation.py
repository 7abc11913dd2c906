"""Activation layers: thin Modules over the functions in ember.ops (the math lives there)."""
from __future__ import annotations

import numpy as np

from ember.errors import ShapeError
from ember.nn.module import Module, Parameter
from ember.ops import activation as A
from ember.ops import activation_more as M
from ember.ops.reduce import log_softmax, softmax
from ember.tensor import Tensor

__all__ = [
    "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Softplus",
    "Softmax", "LogSoftmax", "Softmin", "Hardtanh", "ReLU6", "Mish", "LogSigmoid", "Hardsigmoid", "Hardswish",
    "Softsign", "Threshold", "Hardshrink", "Softshrink", "Tanhshrink", "RReLU", "GLU", "Softmax2d",
]


class _Inplace(Module):
    """Shared by layers that take PyTorch's ``inplace`` flag (accepted; ember computes out of place)."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class ReLU(_Inplace):
    """max(x, 0)."""

    def forward(self, x: Tensor) -> Tensor:
        return A.relu(x)


class Sigmoid(Module):
    """1 / (1 + exp(-x)), finite for any x."""

    def forward(self, x: Tensor) -> Tensor:
        return A.sigmoid(x)


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return A.tanh(x)


class LeakyReLU(Module):
    """x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, x: Tensor) -> Tensor:
        return A.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class PReLU(Module):
    """Leaky ReLU with a learned slope: one shared value, or one per channel (dim 1) when num_parameters = C.

    Shapes: input (N, C, *) -> same; weight (num_parameters,), initialized to ``init``.
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device=None, dtype=None):
        super().__init__()
        self.num_parameters, self.init = num_parameters, init
        self.weight = Parameter(np.full((num_parameters,), init, dtype=np.dtype(dtype or np.float32)))
        if device is not None:
            self.to(device)

    def reset_parameters(self) -> None:
        from ember.nn.init import constant_

        constant_(self.weight, self.init)

    def forward(self, x: Tensor) -> Tensor:
        return A.prelu(x, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class ELU(Module):
    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, x: Tensor) -> Tensor:
        return A.elu(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class CELU(ELU):
    def forward(self, x: Tensor) -> Tensor:
        return A.celu(x, self.alpha)


class SELU(_Inplace):
    def forward(self, x: Tensor) -> Tensor:
        return A.selu(x)


class GELU(Module):
    """x * Phi(x); ``approximate="tanh"`` for the tanh approximation."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return A.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(_Inplace):
    def forward(self, x: Tensor) -> Tensor:
        return A.silu(x)


class Mish(_Inplace):
    def forward(self, x: Tensor) -> Tensor:
        return A.mish(x)


class Softplus(Module):
    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, x: Tensor) -> Tensor:
        return A.softplus(x, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class Hardtanh(Module):
    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__()
        self.min_val, self.max_val, self.inplace = min_val, max_val, inplace

    def forward(self, x: Tensor) -> Tensor:
        return A.hardtanh(x, self.min_val, self.max_val)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}" + (", inplace=True" if self.inplace else "")


class ReLU6(_Inplace):
    def forward(self, x: Tensor) -> Tensor:
        return A.relu6(x)


class LogSigmoid(Module):
    def forward(self, x: Tensor) -> Tensor:
        return A.logsigmoid(x)


class Hardsigmoid(_Inplace):
    def forward(self, x: Tensor) -> Tensor:
        return A.hardsigmoid(x)


class Hardswish(_Inplace):
    def forward(self, x: Tensor) -> Tensor:
        return A.hardswish(x)


class Softsign(Module):
    def forward(self, x: Tensor) -> Tensor:
        return A.softsign(x)


class Softmax(Module):
    """exp(x) / sum(exp(x)) along ``dim``."""

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return softmax(x, self.dim if self.dim is not None else M._legacy_dim(x.ndim))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmin(Softmax):
    """softmax(-x) along ``dim``."""

    def forward(self, x: Tensor) -> Tensor:
        return M.softmin(x, self.dim)


class LogSoftmax(Softmax):
    """log(softmax(x)) along ``dim``, computed stably in one op."""

    def forward(self, x: Tensor) -> Tensor:
        return log_softmax(x, self.dim if self.dim is not None else M._legacy_dim(x.ndim))


class Softmax2d(Module):
    """Softmax over the channels at every pixel: (N, C, H, W) or (C, H, W), along dim -3."""

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in (3, 4):
            raise ShapeError(f"Softmax2d: expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got shape {x.shape}")
        return softmax(x, -3)


class Threshold(Module):
    """x if x > threshold else value."""

    def __init__(self, threshold: float, value: float, inplace: bool = False):
        super().__init__()
        self.threshold, self.value, self.inplace = threshold, value, inplace

    def forward(self, x: Tensor) -> Tensor:
        return M.threshold(x, self.threshold, self.value)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, value={self.value}" + (", inplace=True" if self.inplace else "")


class Hardshrink(Module):
    """x if |x| > lambd else 0."""

    def __init__(self, lambd: float = 0.5):
        super().__init__()
        self.lambd = lambd

    def forward(self, x: Tensor) -> Tensor:
        return M.hardshrink(x, self.lambd)

    def extra_repr(self) -> str:
        return f"{self.lambd}"


class Softshrink(Hardshrink):
    """x - lambd if x > lambd, x + lambd if x < -lambd, else 0."""

    def forward(self, x: Tensor) -> Tensor:
        return M.softshrink(x, self.lambd)


class Tanhshrink(Module):
    """x - tanh(x)."""

    def forward(self, x: Tensor) -> Tensor:
        return M.tanhshrink(x)


class RReLU(Module):
    """Randomized leaky ReLU (Xu et al., 2015): in training a slope ~ U(lower, upper) per element
    with x <= 0, drawn from ``generator`` (ember's addition; default generator when None); in
    eval the mean slope (lower + upper) / 2."""

    def __init__(self, lower: float = 1.0 / 8, upper: float = 1.0 / 3, inplace: bool = False, *, generator=None):
        super().__init__()
        self.lower, self.upper, self.inplace, self.generator = lower, upper, inplace, generator

    def forward(self, x: Tensor) -> Tensor:
        return M.rrelu(x, self.lower, self.upper, self.training, generator=self.generator)

    def extra_repr(self) -> str:
        return f"lower={self.lower}, upper={self.upper}" + (", inplace=True" if self.inplace else "")


class GLU(Module):
    """Gated linear unit: halves a, b of ``dim`` -> a * sigmoid(b)."""

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return M.glu(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

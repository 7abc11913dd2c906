"""Matrix products: matmul (1-D to N-D, batched, broadcast) and the fused linear layer."""
from __future__ import annotations

import numpy as np

from ember.autograd import Function
from ember.backend import check_same_device, xp_of
from ember.errors import ShapeError
from ember.ops.shape import sum_to
from ember.tensor import Tensor

__all__ = ["matmul", "linear", "dot", "outer", "bmm", "mm"]


class MatMul(Function):
    """NumPy matmul semantics: 1-D operands gain and then lose a dim; batch dims broadcast."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, gy):
        xp = xp_of(gy)
        a, b = self.a, self.b
        # Promote 1-D operands to matrices so one formula serves every case.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = gy
        if a.ndim == 1 and b.ndim == 1:  # a dot product: gy is 0-d
            g2 = gy.reshape(1, 1)
        elif a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        elif b.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = g2 @ xp.swapaxes(b2, -1, -2)
            ga = sum_to(ga, a2.shape).reshape(a.shape)
        if self.needs_input_grad[1]:
            if a2.ndim == 2 and g2.ndim == 2:
                gb = a2.T @ g2
            elif a2.ndim > 2 and b2.ndim == 2:
                # (..., n, k) x (k, m): fold the batch into rows for one big GEMM
                gb = a2.reshape(-1, a2.shape[-1]).T @ g2.reshape(-1, g2.shape[-1])
            else:
                gb = sum_to(xp.swapaxes(a2, -1, -2) @ g2, b2.shape)
            gb = gb.reshape(b.shape)
        return ga, gb


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product with NumPy/PyTorch semantics for 1-D to N-D operands."""
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError("matmul: both operands must be Tensors")
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: operands must be at least 1-D, got shapes {a.shape} and {b.shape}")
    check_same_device("matmul", a.data, b.data)
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ShapeError(
            f"matmul: shapes {a.shape} and {b.shape} are not aligned ({k_a} (dim -1 of a) != {k_b} "
            f"(dim {0 if b.ndim == 1 else -2} of b))"
        )
    if a.ndim > 2 or b.ndim > 2:
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ShapeError(f"matmul: batch dims of {a.shape} and {b.shape} cannot be broadcast") from None
    if a.dtype != b.dtype:
        from ember.ops.elementwise import astype

        dtype = np.result_type(a.dtype, b.dtype)
        a, b = astype(a, dtype), astype(b, dtype)
    return MatMul.apply(a, b)


def mm(a: Tensor, b: Tensor) -> Tensor:
    """Product of two matrices (torch.mm): both operands 2-D, no broadcasting."""
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError(f"mm: expected 2-D tensors, got shapes {a.shape} and {b.shape}")
    return matmul(a, b)


def bmm(a: Tensor, b: Tensor) -> Tensor:
    """Batched matrix product (torch.bmm): (B, n, k) @ (B, k, m) -> (B, n, m), no broadcasting."""
    if a.ndim != 3 or b.ndim != 3:
        raise ShapeError(f"bmm: expected 3-D tensors, got shapes {a.shape} and {b.shape}")
    if a.shape[0] != b.shape[0]:
        raise ShapeError(f"bmm: batch sizes differ ({a.shape[0]} != {b.shape[0]}; shapes {a.shape} and {b.shape})")
    return matmul(a, b)


def dot(a: Tensor, b: Tensor) -> Tensor:
    if a.ndim != 1 or b.ndim != 1:
        raise ShapeError(f"dot: expected 1-D tensors, got {a.shape} and {b.shape}")
    return matmul(a, b)


def outer(a: Tensor, b: Tensor) -> Tensor:
    from ember.ops.shape import reshape

    return matmul(reshape(a, (-1, 1)), reshape(b, (1, -1)))


class Linear(Function):
    """y = x @ w.T + b in one node: one GEMM forward, two GEMMs and a sum backward."""

    def forward(self, x, w, b=None):
        self.x, self.w = x, w
        x2 = x.reshape(-1, x.shape[-1])
        y = x2 @ w.T
        if b is not None:
            y += b
        return y.reshape(x.shape[:-1] + (w.shape[0],))

    def backward(self, gy):
        g2 = gy.reshape(-1, gy.shape[-1])
        need = self.needs_input_grad
        gx = (g2 @ self.w).reshape(self.x.shape) if need[0] else None
        gw = g2.T @ self.x.reshape(-1, self.x.shape[-1]) if need[1] else None
        if len(need) == 2:
            return gx, gw
        gb = g2.sum(axis=0) if need[2] else None
        return gx, gw, gb


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Affine map over the last dim: x (..., in) @ weight (out, in).T + bias (out,)."""
    if x.ndim == 0 or x.shape[-1] != weight.shape[-1]:
        raise ShapeError(
            f"linear: input has {x.shape[-1] if x.ndim else 0} features but weight expects {weight.shape[-1]} "
            f"(input {x.shape}, weight {weight.shape})"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ShapeError(f"linear: bias has shape {bias.shape} but weight {weight.shape} needs ({weight.shape[0]},)")
    check_same_device("linear", x.data, weight.data)
    if x.dtype != weight.dtype:
        raise TypeError(f"linear: input dtype {x.dtype} does not match weight dtype {weight.dtype}")
    if bias is None:
        return Linear.apply(x, weight)
    return Linear.apply(x, weight, bias)

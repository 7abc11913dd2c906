"""Ops without gradients: comparisons, logic, rounding and finiteness tests.

They return boolean (or rounded) tensors that never join the autograd graph, as in
PyTorch, where ``x > 0`` or ``x.floor()`` has no useful derivative.
"""
from __future__ import annotations

import numpy as np

from ember.backend import check_same_device, xp_of
from ember.errors import ShapeError
from ember.ops.elementwise import as_tensor_like
from ember.tensor import Tensor

__all__ = [
    "eq", "ne", "lt", "le", "gt", "ge", "logical_not", "logical_and", "logical_or", "isfinite", "isnan",
    "floor", "ceil", "round",
]


def _compare(ufunc_name: str):
    def op(a, b) -> Tensor:
        if not isinstance(a, Tensor):
            a = as_tensor_like(a, b)
        bd = b.data if isinstance(b, Tensor) else b
        check_same_device(ufunc_name, a.data, bd) if isinstance(b, Tensor) else None
        xp = xp_of(a.data)
        try:
            return Tensor(getattr(xp, ufunc_name)(a.data, bd))
        except ValueError:
            raise ShapeError(
                f"{ufunc_name}: shapes {a.shape} and {tuple(np.shape(bd))} cannot be broadcast together"
            ) from None

    op.__name__ = ufunc_name
    op.__doc__ = f"Elementwise ``{ufunc_name}`` as a boolean tensor (no gradient)."
    return op


eq = _compare("equal")
ne = _compare("not_equal")
lt = _compare("less")
le = _compare("less_equal")
gt = _compare("greater")
ge = _compare("greater_equal")
logical_and = _compare("logical_and")
logical_or = _compare("logical_or")


def _unary_nograd(name: str):
    def op(x: Tensor) -> Tensor:
        return Tensor(getattr(xp_of(x.data), name)(x.data))

    op.__name__ = name
    op.__doc__ = f"Elementwise ``{name}`` (no gradient)."
    return op


logical_not = _unary_nograd("logical_not")
isfinite = _unary_nograd("isfinite")
isnan = _unary_nograd("isnan")
floor = _unary_nograd("floor")
ceil = _unary_nograd("ceil")
round = _unary_nograd("round")  # noqa: A001

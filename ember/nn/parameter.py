"""Parameter: a Tensor that a Module registers as learnable."""
from __future__ import annotations

import numpy as np

from ember.tensor import Tensor

__all__ = ["Parameter"]


class Parameter(Tensor):
    """A Tensor that a Module registers as learnable; ``requires_grad=True`` by default.

    Args:
        data: a Tensor (its array is shared, not copied) or a NumPy/CuPy array.
        requires_grad: whether optimizers should train it.
    """

    __slots__ = ()

    def __init__(self, data=None, requires_grad: bool = True):
        if data is None:
            data = np.empty((0,), dtype=np.float32)
        elif isinstance(data, Tensor):
            data = data.data
        elif not hasattr(data, "shape"):
            data = np.asarray(data, dtype=np.float32)
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __reduce_ex__(self, protocol):
        return (Parameter, (self.data, self.requires_grad))

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        p = Parameter(self.data.copy(), self.requires_grad)
        if self.grad is not None:
            p.grad = Tensor(self.grad.data.copy())
        memo[id(self)] = p
        return p

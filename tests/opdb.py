"""The op table that drives the per-op tests in test_ops.py.

One ``OpInfo`` row per op: the ember function, a float64 NumPy reference and/or the
PyTorch equivalent (the oracle), and a sample generator. Rows live beside their
family (opdb_core.py, opdb_select.py, opdb_nn.py, opdb_conv.py, opdb_spatial.py); this module
defines the row format and collects them.

A sample's ``inputs`` are NumPy arrays; float arrays become tensors that require
grad (unless listed in ``no_grad``), others are passed as constant tensors. Keyword
arguments go to every function unchanged. Samples should cover broadcast pairs,
0-d and empty tensors, and non-contiguous views where the op accepts them, and
stay away from kinks and ties (finite differences cannot see through them).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class Sample:
    inputs: tuple
    kwargs: dict = field(default_factory=dict)
    no_grad: tuple = ()  # positions of float inputs that must not require grad
    name: str = ""


@dataclass
class OpInfo:
    name: str
    fn: Callable  # ember: fn(*tensors, **kwargs) -> Tensor
    samples: Callable[[np.random.Generator], list]  # rng -> list[Sample]
    ref: Callable | None = None  # NumPy float64: ref(*arrays, **kwargs) -> array
    torch_fn: Callable | None = None  # PyTorch: torch_fn(*torch_tensors, **kwargs) -> tensor
    grad: bool = True  # differentiable?
    fwd_rtol: float = 1e-4
    fwd_atol: float = 1e-5
    grad_rtol: float = 1e-3
    grad_atol: float = 1e-5
    gradcheck_mode: str = "full"  # or "directional" for big inputs
    gpu: bool = True


def non_contiguous(a: np.ndarray) -> np.ndarray:
    """The same values as ``a`` in a non-contiguous view (every other element of a larger array)."""
    big = np.empty(a.shape[:-1] + (2 * a.shape[-1],) if a.ndim else (2,), dtype=a.dtype)
    if a.ndim == 0:
        return a
    big[..., ::2] = a
    return big[..., ::2]


def all_ops() -> list:
    from tests import opdb_conv, opdb_core, opdb_loss, opdb_more, opdb_nn, opdb_select, opdb_spatial

    return (opdb_core.OPS + opdb_select.OPS + opdb_nn.OPS + opdb_conv.OPS + opdb_spatial.OPS
            + opdb_loss.OPS + opdb_more.OPS)

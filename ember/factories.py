"""Tensor factories: tensor, zeros, ones, full, arange, linspace, eye, rand, randn, randint, ..."""
from __future__ import annotations

import numbers

import numpy as np

from ember.backend import Device, to_device
from ember.errors import DTypeError
from ember.random import get_generator
from ember.tensor import Tensor

__all__ = [
    "tensor", "as_tensor", "from_numpy", "zeros", "ones", "full", "empty", "zeros_like", "ones_like",
    "full_like", "empty_like", "arange", "linspace", "eye", "rand", "randn", "randint", "randperm",
    "rand_like", "randn_like", "float16", "float32", "float64", "int32", "int64", "uint8", "bool_",
    "get_default_dtype",
]

float16, float32, float64 = np.dtype("float16"), np.dtype("float32"), np.dtype("float64")
int8, int16, int32, int64, uint8, bool_ = (np.dtype(t) for t in ("int8", "int16", "int32", "int64", "uint8", "bool"))


def get_default_dtype():
    return float32


def _shape(size) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    return tuple(int(n) for n in size)


def _place(array, device, requires_grad) -> Tensor:
    if requires_grad and array.dtype.kind not in "fc":
        raise DTypeError(f"requires_grad: only floating point tensors can require grad, got {array.dtype}")
    if device is not None and Device(device).type != "cpu":
        array = to_device(array, device)
    return Tensor(array, requires_grad=requires_grad)


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (nested lists, numbers, arrays, tensors).

    Python floats become float32, ints int64 and bools bool, as in PyTorch; NumPy
    arrays keep their dtype unless ``dtype`` is given.
    """
    if isinstance(data, Tensor):
        data = data.data
    if hasattr(data, "__cuda_array_interface__"):
        array = data.copy() if dtype is None else data.astype(dtype)
        return Tensor(array, requires_grad=requires_grad)
    array = np.array(data, dtype=dtype, copy=True)
    if dtype is None and not isinstance(data, np.ndarray) and not isinstance(data, np.generic):
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        elif array.dtype.kind == "i":
            array = array.astype(np.int64)
    if requires_grad and array.dtype.kind not in "fc":
        raise DTypeError(f"tensor: only floating point tensors can require grad, got {array.dtype}")
    return _place(array, device, requires_grad)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like tensor() but without a copy when ``data`` is already a suitable array or Tensor."""
    if isinstance(data, Tensor) and (dtype is None or data.dtype == dtype):
        return data
    if isinstance(data, np.ndarray) and (dtype is None or data.dtype == dtype) and device is None:
        return Tensor(data)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with a NumPy array."""
    return Tensor(array)


def zeros(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _place(np.zeros(_shape(size), dtype=dtype or float32), device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _place(np.ones(_shape(size), dtype=dtype or float32), device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    if dtype is None:
        dtype = np.bool_ if isinstance(fill_value, bool) else (
            int64 if isinstance(fill_value, numbers.Integral) else float32)
    return _place(np.full(_shape((size,)), fill_value, dtype=dtype), device, requires_grad)


def _like(fn, x: Tensor, dtype, requires_grad, *args):
    return fn(*args, x.shape, dtype=dtype or x.dtype, device=x.device, requires_grad=requires_grad) if args else \
        fn(x.shape, dtype=dtype or x.dtype, device=x.device, requires_grad=requires_grad)


def zeros_like(x: Tensor, dtype=None, requires_grad=False) -> Tensor:
    return _like(zeros, x, dtype, requires_grad)


def ones_like(x: Tensor, dtype=None, requires_grad=False) -> Tensor:
    return _like(ones, x, dtype, requires_grad)


def empty_like(x: Tensor, dtype=None, requires_grad=False) -> Tensor:
    return _like(zeros, x, dtype, requires_grad)


def full_like(x: Tensor, fill_value, dtype=None, requires_grad=False) -> Tensor:
    return full(x.shape, fill_value, dtype=dtype or x.dtype, device=x.device, requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Values from start (inclusive) to end (exclusive); integer args give int64."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        ints = all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype = int64 if ints else float32
    return _place(np.arange(start, end, step).astype(dtype), device, requires_grad)


def linspace(start, end, steps: int, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _place(np.linspace(start, end, steps, dtype=np.float64).astype(dtype or float32), device, requires_grad)


def eye(n: int, m: int | None = None, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _place(np.eye(n, m, dtype=dtype or float32), device, requires_grad)


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Uniform samples in [0, 1), drawn in float64 (one stream for every dtype) and rounded to ``dtype``.

    A draw within half an ulp of 1 would round up to 1.0 in float32/float16: it becomes the largest
    value below 1 instead, so the interval stays half-open.
    """
    g = get_generator(generator)
    dt = np.dtype(dtype or float32)
    a = g.np.random(_shape(size), dtype=np.float64).astype(dt)
    if dt.kind == "f" and dt.itemsize < 8:
        np.minimum(a, np.nextafter(dt.type(1), dt.type(0)), out=a)
    return _place(a, device, requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Standard normal samples."""
    g = get_generator(generator)
    return _place(g.np.standard_normal(_shape(size)).astype(dtype or float32), device, requires_grad)


def randint(low, high=None, size=(), generator=None, dtype=None, device=None) -> Tensor:
    """Integers in [low, high) (``randint(high, size)`` also works, as in PyTorch)."""
    if isinstance(high, (tuple, list)):  # randint(high, size)
        low, high, size = 0, low, high
    elif high is None:
        low, high = 0, low
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    g = get_generator(generator)
    size = (size,) if isinstance(size, numbers.Integral) else tuple(size)
    return _place(g.np.integers(low, high, size=size).astype(dtype or int64), device, False)


def randperm(n: int, generator=None, dtype=None, device=None) -> Tensor:
    g = get_generator(generator)
    return _place(g.np.permutation(n).astype(dtype or int64), device, False)


def rand_like(x: Tensor, generator=None, dtype=None) -> Tensor:
    return rand(x.shape, generator=generator, dtype=dtype or x.dtype, device=x.device)


def randn_like(x: Tensor, generator=None, dtype=None) -> Tensor:
    return randn(x.shape, generator=generator, dtype=dtype or x.dtype, device=x.device)

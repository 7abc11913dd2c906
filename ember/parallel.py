"""Big NumPy copies on every CPU core.

BLAS already runs the convolutions' GEMMs on all cores, but NumPy runs a copy (the
im2row lowering, an NCHW <-> NHWC transpose) or an in-place add on one core. NumPy
releases the GIL while it moves plain numbers, so Python threads that each take a slab
of the array along one axis do run at the same time. :func:`split` does that for one
array operation; :func:`assign` and :func:`add_into` are the two the convolutions use,
and batch norm and ReLU split their passes the same way (:func:`combine` joins partial sums).

Small arrays (below ``MIN_ELEMENTS``) and arrays that are not NumPy arrays (CuPy on a
GPU, where one kernel launch already uses the whole device) take the plain one-thread
path, so the result never depends on the thread count: each element is written by
exactly one thread, with the same arithmetic as the serial operation.

``set_num_threads(n)`` / ``get_num_threads()`` mirror PyTorch's names; the default is
the number of cores this process may run on, or the ``EMBER_NUM_THREADS`` variable.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

__all__ = ["get_num_threads", "set_num_threads", "split", "combine", "assign", "add_into", "MIN_ELEMENTS"]

# Below about 64K floats (256 KB) the hand-off to a thread costs more than the copy saves.
MIN_ELEMENTS = 1 << 16

_threads: int | None = None
_pool: ThreadPoolExecutor | None = None


def _default_threads() -> int:
    env = os.environ.get("EMBER_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"EMBER_NUM_THREADS must be a positive integer, got {env!r}") from None
        if n < 1:
            raise ValueError(f"EMBER_NUM_THREADS must be a positive integer, got {env!r}")
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """Threads that ember's large copies are split across (default: the cores this process may use)."""
    global _threads
    if _threads is None:
        _threads = _default_threads()
    return _threads


def set_num_threads(n: int) -> None:
    """Split ember's large copies across ``n`` threads (1: no threads at all). BLAS keeps its own setting."""
    global _threads, _pool
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive integer, got {n!r}")
    if _pool is not None and int(n) != _threads:
        _pool.shutdown(wait=True)
        _pool = None
    _threads = int(n)


def _get_pool(n: int) -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="ember-copy")
    return _pool


def split(fn: Callable, *arrays, axis: int | None = None) -> list:
    """Run ``fn(*arrays)`` as ``fn(*slabs)`` over slabs of one axis on all threads; return the results.

    Each array is cut along ``axis`` into the same slabs, except an argument whose length
    on that axis is 1 (a broadcast operand such as a per-channel mean) or that is not an
    array (``None``, a number): those reach every call whole. ``fn`` may write into the slabs
    it gets, and nowhere else. ``axis`` defaults to the first axis of ``arrays[0]`` whose
    length is at least the thread count (the batch, or the rows of one image when the batch
    is small). Returns the calls' results in slab order (one result on the serial path).
    """
    first = arrays[0]
    n = get_num_threads()
    if n < 2 or type(first) is not np.ndarray or first.size < MIN_ELEMENTS:
        return [fn(*arrays)]
    if axis is None:
        axis = next((i for i, d in enumerate(first.shape) if d >= n), None)
        if axis is None:
            return [fn(*arrays)]
    length = first.shape[axis]
    cut = [isinstance(a, np.ndarray) and a.ndim == first.ndim and a.shape[axis] == length for a in arrays]
    if not all(c or not isinstance(a, np.ndarray) or a.ndim != first.ndim or a.shape[axis] == 1
               for a, c in zip(arrays, cut)):
        return [fn(*arrays)]  # an operand neither matches nor broadcasts along the axis: no split
    k = min(n, length)
    if k < 2:
        return [fn(*arrays)]
    edges = [length * i // k for i in range(k + 1)]
    lead = (slice(None),) * axis
    slabs = [[a[lead + (slice(lo, hi),)] if c else a for a, c in zip(arrays, cut)]
             for lo, hi in zip(edges[:-1], edges[1:])]
    pool = _get_pool(n)
    futures = [pool.submit(fn, *args) for args in slabs[1:]]
    results = [fn(*slabs[0])]  # the calling thread takes the first slab
    return results + [f.result() for f in futures]  # result() re-raises a worker's exception


def combine(parts: list, axis: int, reduced: bool):
    """Join the per-slab results of ``split``: add partial sums over a reduced axis, else concatenate."""
    if len(parts) == 1:
        return parts[0]
    if reduced:
        total = parts[0].copy()
        for p in parts[1:]:
            total += p
        return total
    return np.concatenate(parts, axis=axis)


def _copy(dst, src) -> None:
    dst[...] = src


def _add(dst, src) -> None:
    dst += src


def assign(out, src) -> None:
    """``out[...] = src`` (same shapes; src may be any strided view), split across threads."""
    split(_copy, out, src)


def add_into(out, src) -> None:
    """``out += src`` (same shapes), split across threads."""
    split(_add, out, src)

"""Big NumPy copies on every CPU core.

BLAS already runs the convolutions' GEMMs on all cores, but NumPy runs a copy (the
im2row lowering, an NCHW <-> NHWC transpose) or an in-place add on one core. NumPy
releases the GIL while it moves plain numbers, so Python threads that each take a slab
of the array along one axis do run at the same time. :func:`split` does that for one
array operation; :func:`assign` and :func:`add_into` are the two the convolutions use.

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

__all__ = ["get_num_threads", "set_num_threads", "split", "assign", "add_into", "MIN_ELEMENTS"]

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


def split(fn: Callable, out, *args) -> None:
    """Run ``fn(out, *args)`` as ``fn(out[s], *(a[s] for a in args))`` over slabs ``s`` on all threads.

    ``fn`` must write only into its ``out`` slab, and every array in ``args`` must have
    ``out``'s shape, so a slab of ``out`` depends only on the same slab of each argument.
    The slabs cut the first axis whose length is at least the thread count (an image batch,
    or the rows of one image when the batch is small); the calling thread takes one slab.
    """
    n = get_num_threads()
    if n < 2 or type(out) is not np.ndarray or out.size < MIN_ELEMENTS \
            or any(getattr(a, "shape", None) != out.shape for a in args):
        fn(out, *args)
        return
    axis = next((i for i, d in enumerate(out.shape) if d >= n), None)
    if axis is None:
        fn(out, *args)
        return
    edges = [out.shape[axis] * k // n for k in range(n + 1)]
    lead = (slice(None),) * axis
    parts = [lead + (slice(a, b),) for a, b in zip(edges[:-1], edges[1:])]
    pool = _get_pool(n)
    futures = [pool.submit(fn, out[s], *(a[s] for a in args)) for s in parts[1:]]
    fn(out[parts[0]], *(a[parts[0]] for a in args))
    for f in futures:
        f.result()  # re-raises a worker's exception here


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

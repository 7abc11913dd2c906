"""The CPU side of a GPU-vs-CPU test, run on the CPU code paths: ``with on(device): ...``; and
``dev(a)`` / ``channels_last_dev(a)``, a NumPy array's copy on the GPU (channels-last in memory).

On a GPU machine CPU arrays take the CPU paths anyway. Under tests/cuda_emulator.py every NumPy
array stands for a CuPy one, so without this the "CPU" side would take the GPU branch too and
the comparison would hold trivially.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ember import backend


def dev(a):
    """A NumPy array's values on the GPU."""
    return backend._cupy.asarray(a)


def channels_last_dev(a):
    """A NumPy (N, C, H, W) array on the GPU, lying channels-last in memory."""
    return dev(np.ascontiguousarray(a.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)


@contextlib.contextmanager
def on(device: str):
    """For "cpu", the block runs with ember's GPU branch switched off; otherwise as it is."""
    if device != "cpu":
        yield
        return
    saved, backend._cupy = backend._cupy, None
    try:
        yield
    finally:
        backend._cupy = saved

"""The CPU side of a GPU-vs-CPU test, run on the CPU code paths: ``with on(device): ...``.

On a GPU machine CPU arrays take the CPU paths anyway. Under tests/cuda_emulator.py every NumPy
array stands for a CuPy one, so without this the "CPU" side would take the GPU branch too and
the comparison would hold trivially.
"""
from __future__ import annotations

import contextlib

from ember import backend


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

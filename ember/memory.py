"""Keeping freed memory for reuse: a training step's large temporaries without page faults.

A convolution step allocates and frees tens of megabytes of temporaries (padded
inputs, lowered rows, outputs, gradients). glibc's malloc hands blocks above its
mmap threshold straight to the operating system and gives freed heap memory back
once the free top of the heap exceeds its trim threshold, so the next step's arrays
are fresh pages: the kernel zero-fills each 4 KiB page on first touch. On the W4
benchmark (one 64->64 3x3 convolution on 64x64x32x32, forward + backward, 2 threads)
that costs ~10 ms of an ~85 ms step (bench/bench_conv.py).

:func:`keep_freed_memory` raises both thresholds with ``mallopt`` so that freed blocks
stay in the process and are reused; the price is that the process keeps its peak
heap size instead of shrinking after a step. It changes the allocator of the whole
process (NumPy's and PyTorch's arrays alike), so ember never calls it on import: the
``ember train`` command and the benchmarks call it, and a script can too. This is the
problem PyTorch's performance guide solves by preloading jemalloc or tcmalloc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
# glibc caps the mmap threshold at 32 MiB on 64-bit systems; larger blocks are always mapped.
_MMAP_THRESHOLD_MAX = 32 << 20


def keep_freed_memory(trim_threshold: int = 1 << 30, top_pad: int = 16 << 20) -> bool:
    """Make glibc's malloc keep and reuse freed blocks (up to 32 MiB each) instead of returning them.

    Args:
        trim_threshold: free memory at the top of the heap kept before it is given back (bytes).
        top_pad: extra bytes requested whenever the heap grows, so growth happens rarely.

    Returns:
        True if the settings took effect; False where the C library has no ``mallopt``
        (macOS, Windows, musl) or the environment sets ``EMBER_KEEP_FREED_MEMORY=0``, where
        the call does nothing.
    """
    if not sys.platform.startswith("linux") or os.environ.get("EMBER_KEEP_FREED_MEMORY") == "0":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
    ok &= mallopt(_M_TRIM_THRESHOLD, int(min(trim_threshold, 2**31 - 1)))
    ok &= mallopt(_M_TOP_PAD, int(min(top_pad, 2**31 - 1)))
    return bool(ok)

"""Shared benchmark helpers: thread limits, timing, and which BLAS numpy really runs.

Benchmarks compare ember with PyTorch on the same machine in the same process, both
limited to the same number of threads, and report medians (robust to the odd slow
step on a shared machine).
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:  # run from a checkout without installing ember
    sys.path.insert(0, ROOT)

SLOW_BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def setup_threads(n: int = 2) -> str:
    """Limit PyTorch and numpy's BLAS to ``n`` threads and let malloc keep freed memory (both
    frameworks share the process's allocator: ember.memory); returns a one-line description."""
    import torch

    from ember.memory import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return f"torch: {n} threads; threadpoolctl missing, numpy BLAS uses its default thread count"
    threadpool_limits(n)
    return f"torch and numpy BLAS limited to {n} threads; malloc keeps freed memory"


def blas_report() -> str:
    """Which BLAS library, version and CPU kernel numpy's BLAS uses (via threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS: unknown (pip install threadpoolctl)"
    import numpy  # noqa: F401  (loads numpy's BLAS so threadpoolctl can see it)

    lines = []
    for info in threadpool_info():
        if info.get("user_api") != "blas":
            continue
        lines.append(
            f"BLAS: {info.get('internal_api')} {info.get('version')} kernel={info.get('architecture')} "
            f"threads={info.get('num_threads')} ({os.path.basename(info.get('filepath', ''))})"
        )
    forced = [f"{v}={os.environ[v]}" for v in SLOW_BLAS_VARS if v in os.environ]
    if forced:
        lines.append(
            "WARNING: " + ", ".join(forced) + " force a slower OpenBLAS kernel; run with "
            "`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/...`"
        )
    return "\n".join(lines) or "BLAS: none found by threadpoolctl"


def time_ms(fn: Callable[[], object]) -> float:
    """Wall time of one call, in milliseconds."""
    t0 = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - t0)


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median ms per call after ``warmup`` calls (``MINIMUM=1`` in the environment reports the
    minimum instead: on a machine shared with other jobs the median measures the neighbours)."""
    for _ in range(warmup):
        fn()
    times = [time_ms(fn) for _ in range(repeats)]
    return min(times) if os.environ.get("MINIMUM") else statistics.median(times)


def interleaved_medians(fns: dict[str, Callable[[], object]], steps: int, warmup: int) -> dict[str, float]:
    """Median ms per call of each function, alternating them step by step.

    Alternating (a, b, a, b, ...) rather than timing a then b spreads load from other
    processes on a shared machine evenly over both.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            times[name].append(time_ms(fn))
    return {name: statistics.median(ts) for name, ts in times.items()}

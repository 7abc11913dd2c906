"""Where a GPU training step's time goes, for bench/gpu_check.py: the kernels it launches and
their GPU time (``kernel_profile``), and the host's Python time by function (``host_profile``).

A step whose kernels keep the GPU busy for far less than the step's wall time waits on the
host: on Python and on the ~10 us each CuPy launch costs there.
"""
from __future__ import annotations

import cProfile
import io
import pstats


def kernel_profile(step, sync, reps: int = 5, table=None) -> str:
    """Kernels launched per step and their summed GPU time, read by PyTorch's profiler (CUPTI sees
    every kernel of the process, CuPy's too). Busy time far below the step's wall time means the
    step waits on the host (launch overhead, Python), not on the kernels."""
    from torch.profiler import ProfilerActivity, profile

    step()
    sync()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            step()
        sync()
    rows = []
    for ev in prof.key_averages():
        us = getattr(ev, "self_device_time_total", None)
        if us is None:
            us = getattr(ev, "self_cuda_time_total", 0.0)
        if us > 0 and ev.count > 0:
            rows.append((us / reps, ev.count / reps, ev.key))
    rows.sort(reverse=True)
    if table is not None:  # every kernel: us per step, launches per step, name
        table.extend(f"{us:10.1f} us {n:6.1f}x  {name}" for us, n, name in rows)
    busy = sum(r[0] for r in rows) / 1e3
    count = sum(r[1] for r in rows)
    top = "; ".join(f"{name[:48]} {us / 1e3:.2f} ms x{n:.0f}" for us, n, name in rows[:6])
    return f"{count:.0f} kernels+copies per step, GPU busy {busy:.2f} ms per step; top: {top}"


def host_profile(step, sync, path: str, steps: int = 10) -> None:
    """cProfile of ``steps`` calls of ``step`` written to ``path``: the 45 functions with the
    most time of their own, then the 60 with the most time in all (cProfile's overhead makes
    both ~30% larger than the unprofiled step)."""
    step()
    sync()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        step()
    sync()
    prof.disable()
    text = io.StringIO()
    stats = pstats.Stats(prof, stream=text)
    stats.sort_stats("tottime").print_stats(45)
    stats.sort_stats("cumulative").print_stats(60)
    with open(path, "w") as f:
        f.write(text.getvalue())

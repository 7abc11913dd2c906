"""Data parallelism for the CPU convolutions: each core lowers and multiplies its own chunks.

A lowered convolution alternates two kinds of work per chunk of images: a NumPy copy (the
lowering), which runs on the calling thread, and a GEMM, which OpenBLAS splits across its
threads. With 2 BLAS threads, half of every chunk is written by one core and multiplied on
the other, and the copies use one core only. ``run_parts`` instead hands each thread its own
contiguous share of the chunks, with one BLAS thread per GEMM, as PyTorch's OpenMP loops do:
a chunk stays on one core from copy to GEMM, and the copies run in parallel too. NumPy
releases the GIL inside copies and BLAS calls, so plain Python threads suffice. Measured on
2 cores, alternating both ways inside one process (bench/bench_conv.py's W4, forward + backward
of a 64->64 3x3 convolution on 64x64x32x32): 57-60 -> 50-51 ms, and 47.7 with the padded
copies shared too (now each chunk is padded by its own thread: ember.ops.conv_padded.Padded);
ResNet-20 training step ~255 -> ~229 ms.

Small convolutions (LeNet-5's) run their chunks in turn on 2 BLAS threads: waking a thread
(~70 us here) costs more than sharing saves there (``threads_for`` decides).

One hazard: after a multi-threaded BLAS call, OpenBLAS's idle threads keep spinning for a
while (~0.1 s by default) before they sleep, and a spinning thread takes a core from the
workers (W4 with its bias gradient computed by a 2-thread GEMV right before: 60 -> 88 ms).
So once a process has shared one pass, every later convolution pass is shared too
(``threads_for``), and ember's other BLAS calls next to them run on one BLAS thread
(``one_blas_thread``: the bias gradient's GEMV). ``OPENBLAS_THREAD_TIMEOUT=4`` in the
environment makes idle OpenBLAS threads sleep at once, for programs that mix in large BLAS
calls of their own.

The number of threads is the BLAS library's own thread count when ``run_parts`` is called
(set it as usual: OPENBLAS_NUM_THREADS, threadpoolctl); with one thread, or without
threadpoolctl to switch BLAS to one thread per call, the parts run one after another.
"""
from __future__ import annotations

import contextlib
import os
import threading

# "blas": the BLAS controllers (found on first use); "blas_depth", "blas_before": open
# one_blas_thread blocks and the counts to restore; "sharing": set by threads_for; "workers",
# "pid": the helper threads (``_Worker``) and the process that made them.
_state: dict = {}
_region = threading.Lock()  # one parallel region at a time; a second caller runs its parts itself


def _blas_controllers() -> list:
    """threadpoolctl's controllers of the BLAS libraries NumPy loaded ([] when unavailable)."""
    if "blas" not in _state:
        try:
            from threadpoolctl import ThreadpoolController
            _state["blas"] = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
        except Exception:  # not installed, or an unknown BLAS: run the parts sequentially
            _state["blas"] = []
    return _state["blas"]


_blas_lock = threading.Lock()  # guards the count of open ``one_blas_thread`` blocks and the saved counts


def workers() -> int:
    """How many threads ``run_parts`` would use now: the BLAS thread count (1 without control over
    it), as set outside any ``one_blas_thread`` block."""
    blas = _blas_controllers()
    if not blas:
        return 1
    with _blas_lock:
        counts = _state["blas_before"] if _state.get("blas_depth") else [c.get_num_threads() for c in blas]
    return max(1, min(counts))


@contextlib.contextmanager
def one_blas_thread():
    """Run the enclosed BLAS calls on one thread, so that no BLAS thread is left spinning.

    BLAS's thread count is process-wide: blocks opened by several threads at once share one
    switch, made by the first to enter and undone by the last to leave."""
    blas = _blas_controllers()
    with _blas_lock:
        if not _state.get("blas_depth"):
            _state["blas_before"] = [c.get_num_threads() for c in blas]
            _set_blas_threads(blas, [1] * len(blas))
        _state["blas_depth"] = _state.get("blas_depth", 0) + 1
    try:
        yield
    finally:
        with _blas_lock:
            _state["blas_depth"] -= 1
            if not _state["blas_depth"]:
                _set_blas_threads(blas, _state["blas_before"])


def _set_blas_threads(blas: list, counts: list) -> None:
    """Set each BLAS library's thread count from whichever thread calls: threadpoolctl lets only
    one "controlling" thread change OpenBLAS's process-wide count and silently ignores the others,
    so the claim is released first (``one_blas_thread`` serializes the callers)."""
    for c, n in zip(blas, counts):
        release = getattr(type(c), "clear_controlling_thread", None)
        if release is not None:
            release(force=True)
        c.set_num_threads(n)


# Floats of work (lowered or copied) from which a pass runs on several threads, and every pass
# after it: ResNet-20's convolutions (2.4-9.4M lowered per pass at batch 128) and W4 (38M) gain
# 13-17%; LeNet-5's (2.5-3.8M) measured 10% slower shared than on two BLAS threads, and stay so.
SHARE_FROM = 4 << 20


def threads_for(size: int) -> int:
    """Threads for one pass of ``size`` floats of work: ``workers()`` from ``SHARE_FROM`` on, and
    for every pass after the first such one (a pass left on two BLAS threads would leave
    OpenBLAS spinning into the shared ones next to it); 1 in a process that never saw one."""
    if size >= SHARE_FROM:
        _state["sharing"] = True
    return workers() if _state.get("sharing") else 1


# Floats from which an elementwise pass is cut among threads (``for_slices``); below it, the
# ~70 us of waking a thread cost more than half the pass saves. ResNet-20 step, alternating
# in one process: 231 ms unshared, 226 from 1M floats, 220 from 256K.
SLICE_FROM = 1 << 18


def for_slices(fn, n: int, size: int) -> list:
    """``[fn(slice) for slice in runs of range(n)]`` (the rows of an array), the runs on several
    threads when the process already shares its convolutions (``threads_for``) and the pass moves
    at least ``SLICE_FROM`` floats (``size``); else one run, ``slice(0, n)``. For elementwise
    passes next to the shared convolutions (ReLU's, batch norm's, sums of same-shaped arrays):
    each thread works on its own rows, the images it wrote in the convolution's pass; results
    come back in row order. Batch norm on (128, 16, 32, 32), forward + backward: 4.13 -> 3.39 ms;
    ReLU's forward and the residual sums: ResNet-20 step -2 to -8 ms in the machine's slow mode
    (README). Batch norm's sums, shared the same way, measured slower (204 -> 211 ms)."""
    if n < 2 or size < SLICE_FROM or not _state.get("sharing"):
        return [fn(slice(0, n))]
    return run_parts(lambda part: fn(slice(part[0], part[-1] + 1)), list(range(n)), workers())


def split(items: list, parts: int) -> list:
    """``items`` cut into ``parts`` contiguous runs of near-equal length (the first ones longer)."""
    q, r = divmod(len(items), parts)
    starts = [i * q + min(i, r) for i in range(parts + 1)]
    return [items[a:b] for a, b in zip(starts[:-1], starts[1:])]


def run_parts(work, items: list, threads: int) -> list:
    """``[work(part) for part in split(items, threads)]``, the parts on ``threads`` threads at once.

    Unless ``threads`` is 1, BLAS uses one thread per call meanwhile (each part's GEMMs stay on
    its core; also when a single part runs on the calling thread) and is restored afterwards.
    ``work`` must write only to memory no other part touches and return its partial results
    (sums are added up by the caller, in part order, so results are deterministic). While
    another region runs, the parts run in turn on the calling thread.
    """
    if threads < 2:
        return [work(items)]
    parts = [p for p in split(items, min(threads, len(items))) if p]
    with one_blas_thread():
        if len(parts) < 2 or not _region.acquire(blocking=False):
            return [work(p) for p in parts]
        try:
            # The calling thread takes the first part itself: one thread fewer to wake and wait for.
            helpers = _workers(len(parts) - 1)
            for helper, part in zip(helpers, parts[1:]):
                helper.start(work, part)
            try:
                first = work(parts[0])
            finally:
                outcomes = [helper.finish() for helper in helpers[:len(parts) - 1]]  # no part outlives the region
            for _, error in outcomes:
                if error is not None:
                    raise error
            return [first] + [value for value, _ in outcomes]
        finally:
            _region.release()


class _Worker:
    """A helper thread that runs one part at a time, signalled by two plain locks.

    A region hands each helper its part and waits for it: a lock released by one thread and
    acquired by another is the cheapest wake-up CPython has (~40 us a round trip here, against
    ~63 us for concurrent.futures' submit and result), and a training step of ResNet-20 runs
    ~140 regions. Daemon threads: an idle helper never keeps the interpreter alive.
    """

    def __init__(self, index: int):
        self.go, self.done = threading.Lock(), threading.Lock()
        self.go.acquire()
        self.done.acquire()
        self.job = self.outcome = None
        threading.Thread(target=self._loop, name=f"ember-chunks-{index}", daemon=True).start()

    def _loop(self):
        while True:
            self.go.acquire()
            work, part = self.job
            try:
                self.outcome = (work(part), None)
            except BaseException as error:  # handed to the region's caller, which raises it
                self.outcome = (None, error)
            # Drop this frame's references before waiting: the part's closure holds the region's
            # arrays (a convolution's output), which would otherwise stay alive until the next part.
            work = part = None
            self.done.release()

    def start(self, work, part) -> None:
        self.job = (work, part)
        self.go.release()

    def finish(self) -> tuple:
        """Wait for the part: (result, None), or (None, the exception it raised)."""
        self.done.acquire()
        outcome, self.job, self.outcome = self.outcome, None, None
        return outcome


def _workers(size: int) -> list:
    """At least ``size`` helper threads, made on first use and again in a forked child."""
    if _state.get("pid") != os.getpid():
        _state.update(workers=[], pid=os.getpid())
    helpers = _state["workers"]
    while len(helpers) < size:
        helpers.append(_Worker(len(helpers)))
    return helpers

"""Pooling and batch-norm layers of ResNet-20 / LeNet side by side with PyTorch (CPU, 2 threads).

Run:  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_layers.py [--repeat N]

Each row times forward + backward of one layer on the same float32 input in both
libraries and prints medians (the machine is shared, so medians, not minima or means)
and the ratio ember / torch (below 1 means ember is faster). The two libraries' steps
alternate inside one loop so that both see the same background load.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run from a checkout

import ember  # noqa: E402
from ember import nn  # noqa: E402
from ember.memory import keep_freed_memory  # noqa: E402

# "(cl)": ember's input and upstream gradient lie channels-last in memory, as inside ember's ResNet
# (convolutions return that layout); PyTorch gets its own default NCHW, as inside its ResNet.
CASES = [
    ("BatchNorm2d fwd+bwd", (128, 16, 32, 32), lambda lib, c: lib.BatchNorm2d(c)),
    ("BatchNorm2d fwd+bwd (cl)", (128, 16, 32, 32), lambda lib, c: lib.BatchNorm2d(c)),
    ("BatchNorm2d fwd+bwd", (128, 32, 16, 16), lambda lib, c: lib.BatchNorm2d(c)),
    ("BatchNorm2d fwd+bwd (cl)", (128, 32, 16, 16), lambda lib, c: lib.BatchNorm2d(c)),
    ("BatchNorm2d fwd+bwd", (128, 64, 8, 8), lambda lib, c: lib.BatchNorm2d(c)),
    ("BatchNorm2d fwd+bwd (cl)", (128, 64, 8, 8), lambda lib, c: lib.BatchNorm2d(c)),
    ("AdaptiveAvgPool2d(1) fwd+bwd", (128, 64, 8, 8), lambda lib, c: lib.AdaptiveAvgPool2d(1)),
    ("MaxPool2d(2) fwd+bwd", (128, 6, 28, 28), lambda lib, c: lib.MaxPool2d(2)),
    ("MaxPool2d(2) fwd+bwd", (128, 16, 10, 10), lambda lib, c: lib.MaxPool2d(2)),
]


def _median_ms(steps, repeat: int) -> list:
    """Median ms of each step; the steps alternate so both libraries see the same machine load."""
    for step in steps:
        step()  # warm-up (allocations, lazy init)
    times: list = [[] for _ in steps]
    for _ in range(repeat):
        for t, step in zip(times, steps):
            t0 = time.perf_counter()
            step()
            t.append(time.perf_counter() - t0)
    return [1e3 * statistics.median(t) for t in times]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--torch-threads", type=int, default=2,
                    help="torch intra-op threads (2 is the reference setting; 1 shows the effect of a busy machine)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    keep_freed_memory()  # as bench/common.setup_threads does for the other benchmarks
    rng = np.random.default_rng(0)
    print(f"{'layer':30s} {'input shape':18s} {'ember ms':>9s} {'torch ms':>9s} {'ratio':>6s}")
    for name, shape, make in CASES:
        x = rng.standard_normal(shape).astype(np.float32)
        g = rng.standard_normal(make(torch.nn, shape[1])(torch.from_numpy(x)).shape).astype(np.float32)
        em, tm = make(nn, shape[1]), make(torch.nn, shape[1])
        if name.endswith("(cl)"):  # same values, channels-last memory
            xe, ge = (ember.Tensor(np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2),
                                   requires_grad=a is x) for a in (x, g))
        else:
            xe, ge = ember.Tensor(x, requires_grad=True), ember.Tensor(g)
        xt, gt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(g)

        def ember_step():
            xe.grad = None
            em(xe).backward(ge)

        def torch_step():
            xt.grad = None
            tm(xt).backward(gt)

        te, tt = _median_ms([ember_step, torch_step], args.repeat)
        print(f"{name:30s} {str(shape):18s} {te:9.2f} {tt:9.2f} {te / tt:6.2f}")


if __name__ == "__main__":
    main()

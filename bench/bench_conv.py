"""Convolution speed, side by side with PyTorch (2 threads each), printing ms/step and ratios.

W4: one Conv2d 64->64, 3x3, padding 1, on a (64, 64, 32, 32) float32 input; forward + backward
(gradients for input, weight and bias). Also prints the achieved GFLOP/s and what numpy's own
GEMM reaches on the same GEMM shapes (the floor for an im2col convolution), and which BLAS
kernel numpy uses.

Run from the repository root:  python bench/bench_conv.py [--repeats 7] [--threads 2]
(On machines that set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, unset them for numpy's best kernel.)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import blas_report, median_ms, setup_threads  # noqa: E402  (also puts the checkout on sys.path)

import ember  # noqa: E402
from ember.ops.conv import conv2d  # noqa: E402
from ember.ops.im2col import batch_chunk  # noqa: E402


def workload(N, C, OC, H, W, k, pad, repeats, threads=2):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = (rng.standard_normal((OC, C, k, k)) * 0.05).astype(np.float32)
    b = np.zeros(OC, np.float32)
    gy = rng.standard_normal((N, OC, H + 2 * pad - k + 1, W + 2 * pad - k + 1)).astype(np.float32)

    ex, ew, eb = (ember.Tensor(a.copy(), requires_grad=True) for a in (x, w, b))
    egy = ember.Tensor(gy)

    def ember_step():
        ex.grad = ew.grad = eb.grad = None
        y = conv2d(ex, ew, eb, padding=pad)
        y.backward(egy)

    def ember_fwd():
        with ember.no_grad():
            conv2d(ex, ew, eb, padding=pad)

    import torch

    torch.set_num_threads(threads)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    tgy = torch.tensor(gy)

    def torch_step():
        tx.grad = tw.grad = tb.grad = None
        y = torch.nn.functional.conv2d(tx, tw, tb, padding=pad)
        y.backward(tgy)

    def torch_fwd():
        with torch.no_grad():
            torch.nn.functional.conv2d(tx, tw, tb, padding=pad)

    # numpy's GEMMs at the shapes ember's conv runs, per chunk of images: forward (OC,K)@(K,L); weight
    # grad (K,L)@(L,OC); data grad (stride 1: a forward-shaped conv of gy with the flipped weight).
    K, L = C * k * k, gy.shape[2] * gy.shape[3]
    B = batch_chunk(N, K * L)  # the chunk ember's columns use
    A = rng.standard_normal((OC, K)).astype(np.float32)
    col = rng.standard_normal((B, K, L)).astype(np.float32)
    g = rng.standard_normal((B, OC, L)).astype(np.float32)
    out1 = np.empty((B, OC, L), np.float32)

    def gemms():
        for _ in range(N // B):
            np.matmul(A, col, out=out1)
            (col @ g.swapaxes(-1, -2)).sum(0)
            np.matmul(A, col, out=out1)

    # Check the two agree before timing anything.
    ember_step()
    torch_step()
    err = np.abs(ex.grad.numpy() - tx.grad.numpy()).max() / np.abs(tx.grad.numpy()).max()
    flops = 3 * 2 * N * OC * K * L  # forward, weight grad, data grad
    rows = []
    for _ in range(2):  # interleave rounds so machine noise hits both frameworks alike
        rows.append((median_ms(ember_step, repeats), median_ms(torch_step, repeats), median_ms(gemms, repeats),
                     median_ms(ember_fwd, repeats), median_ms(torch_fwd, repeats)))
    e, t, gm, ef, tf = (statistics.median(col_) for col_ in zip(*rows))
    return e, t, gm, ef, tf, flops, err


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2, help="threads for torch and for numpy's BLAS")
    args = ap.parse_args(argv)
    print(setup_threads(args.threads), f"| numpy {np.__version__}")
    print(blas_report())
    name, shape = "W4 conv 64->64 3x3 pad1, x (64,64,32,32)", (64, 64, 64, 32, 32, 3, 1)
    e, t, gm, ef, tf, flops, err = workload(*shape, args.repeats, args.threads)
    print(f"{name}: grad rel. err vs torch {err:.1e}")
    print(f"  fwd+bwd  ember {e:7.1f} ms  torch {t:7.1f} ms  ratio {e / t:.2f}x")
    print(f"  fwd only ember {ef:7.1f} ms  torch {tf:7.1f} ms  ratio {ef / tf:.2f}x")
    print(f"  GFLOP/s  ember {flops / e / 1e6:6.1f}  torch {flops / t / 1e6:6.1f}  "
          f"numpy GEMMs alone {flops / gm / 1e6:6.1f} ({gm:.1f} ms, {gm / t:.2f}x torch)")


if __name__ == "__main__":
    main()

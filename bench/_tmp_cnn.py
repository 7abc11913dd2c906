"""Whole-network training steps, side by side with PyTorch (2 threads each).

W2: LeNet-5 on (128, 1, 28, 28), one SGD-momentum training step (forward, cross-entropy,
    backward, update). Target: ember <= 1.3x PyTorch's time.
W3: ResNet-20 (option A) on (128, 3, 32, 32), one SGD-momentum training step. Target <= 1.5x.
Both frameworks start from the same weights and see the same batch; prints the median
ms/step and the ratio.

Run from the repository root:  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_cnn.py
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import blas_report, median_ms, setup_threads  # noqa: E402  (also puts the checkout on sys.path)

import torch  # noqa: E402

import ember  # noqa: E402
from ember.models import get_model  # noqa: E402
from torch_models import get_torch_model  # noqa: E402

THREADS = 2


def workload(name: str, shape: tuple, repeats: int, **kw) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, 10, shape[0])
    ember.manual_seed(0)
    em = get_model(name, num_classes=10, in_channels=shape[1], input_size=shape[2], **kw)
    tm = get_torch_model(name, num_classes=10, in_channels=shape[1], input_size=shape[2])
    tm.load_state_dict({k: torch.from_numpy(np.array(v.data)) for k, v in em.state_dict().items()})
    em.train()
    tm.train()
    eopt = ember.optim.SGD(em.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    topt = torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    ex, ey = ember.tensor(x), ember.tensor(y)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def ember_step():
        loss = ember.nn.functional.cross_entropy(em(ex), ey)
        eopt.zero_grad()
        loss.backward()
        eopt.step()

    def torch_step():
        loss = torch.nn.functional.cross_entropy(tm(tx), ty)
        topt.zero_grad()
        loss.backward()
        topt.step()

    # Interleave the two so that machine load affects both alike.
    e_ms, t_ms = [], []
    for _ in range(3):
        t_ms.append(median_ms(torch_step, repeats))
        e_ms.append(median_ms(ember_step, repeats))
    if name == "resnet20":
        from pyinstrument import Profiler
        p = Profiler(interval=0.001); p.start()
        for _ in range(3): ember_step()
        p.stop(); open('/tmp/bench_w3_prof.txt', 'w').write(p.output_text(unicode=False, color=False))
        print("e_ms rounds", e_ms, "t_ms", t_ms)
    return statistics.median(e_ms), statistics.median(t_ms)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed steps per round (3 rounds, median)")
    ap.add_argument("--only", choices=["W2", "W3"], help="run one workload")
    args = ap.parse_args()
    print(setup_threads(THREADS), f"| torch {torch.__version__} | numpy {np.__version__}")
    print(blas_report())
    rows = []
    if args.only in (None, "W2"):
        # A LeNet-5 step takes milliseconds: time 10x more of them, or one slow step sways the median.
        rows.append(("W2 LeNet-5 train step, 128x1x28x28", 1.3,
                     *workload("lenet5", (128, 1, 28, 28), args.repeats)))
    if args.only in (None, "W3"):
        rows.append(("W3 ResNet-20 train step, 128x3x32x32", 1.5,
                     *workload("resnet20", (128, 3, 32, 32), max(2, args.repeats // 2))))
    print(f"{'workload':<40}{'ember ms':>10}{'torch ms':>10}{'ratio':>8}{'target':>8}")
    for name, target, e, t in rows:
        r = e / t
        print(f"{name:<40}{e:>10.1f}{t:>10.1f}{r:>7.2f}x{target:>7.1f}x  {'ok' if r <= target else 'SLOWER'}")


if __name__ == "__main__":
    main()

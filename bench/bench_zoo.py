"""ImageNet-family zoo models: one training step in ember and in PyTorch, side by side (2 threads each).

Z1: MobileNetV2 (width 1.0, small_input) on (64, 3, 32, 32), 10 classes.
Z2: ResNet-50 (ImageNet stem) on (16, 3, 64, 64), 10 classes.
One step is forward, cross-entropy, backward and an SGD-momentum update. Both frameworks start
from the same weights (ember's, loaded into the PyTorch twins of tests/test_models_imagenet.py)
and see the same batch; the two steps alternate within each round, and the script prints the
median ms/step of each and the ratio ember / PyTorch.

Run from the repository root, under the shared lock on a shared machine:
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_zoo.py
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import blas_report, interleaved_medians, setup_threads  # noqa: E402  (also puts the checkout on sys.path)

import torch  # noqa: E402

import ember  # noqa: E402
from ember.models import get_model  # noqa: E402
from tests.test_models_imagenet import TMobileNetV2, TResNet  # noqa: E402  (the PyTorch twins)

THREADS = 2


def twins(name: str, size: int):
    """(ember model, PyTorch model with ember's weights) for a workload."""
    ember.manual_seed(0)
    if name == "mobilenet_v2":
        em = get_model(name, num_classes=10, input_size=size)
        tm = TMobileNetV2(10, small=em.small_input)
    else:
        em = get_model(name, num_classes=10, input_size=size)
        tm = TResNet((3, 4, 6, 3), 10, small=em.small_input)
    tm.load_state_dict({k: torch.from_numpy(np.array(v.data)) for k, v in em.state_dict().items()}, strict=True)
    return em, tm


def workload(name: str, shape: tuple, steps: int, warmup: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, 10, shape[0])
    em, tm = twins(name, shape[2])
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

    ms = interleaved_medians({"torch": torch_step, "ember": ember_step}, steps, warmup)
    return ms["ember"], ms["torch"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="timed steps of each framework (alternating; median)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps of each first")
    ap.add_argument("--only", choices=["Z1", "Z2"], help="run one workload")
    args = ap.parse_args()
    print(setup_threads(THREADS), f"| torch {torch.__version__} | numpy {np.__version__}")
    print(blas_report())
    rows = []
    if args.only in (None, "Z1"):
        rows.append(("Z1 MobileNetV2 small_input train step, 64x3x32x32",
                     *workload("mobilenet_v2", (64, 3, 32, 32), args.steps, args.warmup)))
    if args.only in (None, "Z2"):
        rows.append(("Z2 ResNet-50 train step, 16x3x64x64",
                     *workload("resnet50", (16, 3, 64, 64), args.steps, args.warmup)))
    print(f"{'workload':<52} {'ember ms':>9} {'torch ms':>9} {'ratio':>6}")
    for label, e, t in rows:
        print(f"{label:<52} {e:9.1f} {t:9.1f} {e / t:6.2f}")


if __name__ == "__main__":
    main()

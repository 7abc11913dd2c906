"""MLP training step, ember next to PyTorch: 784-512-512-10 ReLU, batch 128, SGD momentum 0.9.

Both frameworks start from the same weights, see the same random batches, and run
forward, cross-entropy, backward and the SGD update; steps alternate between the two
(2 threads each), and the script prints the median ms per step and the ratio.
Target: ember <= 1.0x PyTorch.

Run from the repository root, WITHOUT the OpenBLAS overrides some machines set
(they force a slower kernel on numpy; do this only for benchmarking, never in tests):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_mlp.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_mlp.py --profile   # where ember's time goes
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import blas_report, interleaved_medians, setup_threads  # noqa: E402

import torch  # noqa: E402

import ember  # noqa: E402
import ember.nn.functional as F  # noqa: E402
from ember import nn  # noqa: E402

SIZES = (784, 512, 512, 10)
BATCH = 128


def build_pair(seed: int = 0):
    """An ember MLP and a torch MLP holding identical float32 weights."""
    ember.manual_seed(seed)
    ours = nn.Sequential(nn.Linear(SIZES[0], SIZES[1]), nn.ReLU(), nn.Linear(SIZES[1], SIZES[2]), nn.ReLU(),
                         nn.Linear(SIZES[2], SIZES[3]))
    theirs = torch.nn.Sequential(torch.nn.Linear(SIZES[0], SIZES[1]), torch.nn.ReLU(),
                                 torch.nn.Linear(SIZES[1], SIZES[2]), torch.nn.ReLU(),
                                 torch.nn.Linear(SIZES[2], SIZES[3]))
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            p.copy_(torch.from_numpy(ours.state_dict()[name].data.copy()))
    return ours, theirs


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60, help="timed steps per framework")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", action="store_true", help="profile ember's steps with pyinstrument")
    args = ap.parse_args(argv)

    print(setup_threads(args.threads))
    print(blas_report())
    rng = np.random.default_rng(0)
    n_batches = 8
    xs = rng.standard_normal((n_batches, BATCH, SIZES[0])).astype(np.float32)
    ys = rng.integers(0, SIZES[-1], (n_batches, BATCH))
    ex = [ember.Tensor(x) for x in xs]
    ey = [ember.Tensor(y) for y in ys]
    tx = [torch.from_numpy(x) for x in xs]
    ty = [torch.from_numpy(y) for y in ys]

    ours, theirs = build_pair()
    opt = ember.optim.SGD(ours.parameters(), lr=0.01, momentum=0.9)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.01, momentum=0.9)
    step = {"ember": 0, "torch": 0}
    losses = {"ember": [], "torch": []}

    def ember_step():
        i = step["ember"] % n_batches
        step["ember"] += 1
        opt.zero_grad()
        loss = F.cross_entropy(ours(ex[i]), ey[i])
        loss.backward()
        opt.step()
        losses["ember"].append(loss.item())

    def torch_step():
        i = step["torch"] % n_batches
        step["torch"] += 1
        topt.zero_grad()
        loss = torch.nn.functional.cross_entropy(theirs(tx[i]), ty[i])
        loss.backward()
        topt.step()
        losses["torch"].append(loss.item())

    ms = interleaved_medians({"ember": ember_step, "torch": torch_step}, args.steps, args.warmup)
    # Same weights, data and update rule: the two runs must agree (float32 rounding aside).
    drift = max(abs(a - b) for a, b in zip(losses["ember"], losses["torch"]))
    print(f"MLP {'-'.join(map(str, SIZES))} ReLU, batch {BATCH}, SGD(momentum=0.9), cross-entropy; "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    print(f"  ember  {ms['ember']:8.2f} ms/step (median)")
    print(f"  torch  {ms['torch']:8.2f} ms/step (median)")
    print(f"  ratio  {ms['ember'] / ms['torch']:8.2f}x  (target <= 1.00x)")
    print(f"  max |loss_ember - loss_torch| over {len(losses['ember'])} steps: {drift:.2e}")

    if args.profile:
        from pyinstrument import Profiler

        prof = Profiler(interval=0.0005)
        with prof:
            for _ in range(args.steps):
                ember_step()
        print(prof.output_text(unicode=False, color=False, show_all=False))


if __name__ == "__main__":
    main()

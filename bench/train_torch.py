"""Train the PyTorch twin of an ember zoo model with the identical recipe and data pipeline.

Same flags as ``ember train`` (the relevant subset is used): the batches come from the
same ember DataLoader, transforms and generators, the weights start from the same
ember initialization, and the lr follows the same per-step schedule; only the model's
math runs in PyTorch (2 threads). Prints per-epoch lines and the final test accuracy
for the results comparison.

    python bench/train_torch.py --model lenet5 --data fashion-mnist --epochs 10 --augment --warmup 1
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import torch  # noqa: E402

from ember.cli.train import _lr_lambda, add_arguments, build_run  # noqa: E402
from ember.memory import keep_freed_memory  # noqa: E402
from torch_models import get_torch_model  # noqa: E402


def to_torch(x, y):
    return torch.from_numpy(np.asarray(x.data)), torch.from_numpy(np.asarray(y.data))


def evaluate(model, loader) -> tuple[float, float]:
    model.eval()
    total, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = to_torch(x, y)
            out = model(x)
            total += float(torch.nn.functional.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
            n += len(y)
    model.train()
    return total / n, correct / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    args = ap.parse_args()
    torch.set_num_threads(2)
    keep_freed_memory()  # as `ember train` does, so both twins run with the same allocator settings
    torch.manual_seed(args.seed)
    args.out = args.out or f"runs/torch-{args.model}"
    trainer, data, test_loader, meta = build_run(args)  # ember's pipeline and initial weights
    model = get_torch_model(args.model, **meta["model_kwargs"])
    model.load_state_dict({k: torch.from_numpy(np.array(v.data)) for k, v in trainer.model.state_dict().items()})
    if args.optimizer != "sgd":
        raise SystemExit("train_torch.py: only --optimizer sgd is mirrored")
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                          nesterov=args.nesterov)
    steps = len(trainer.train_loader)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _lr_lambda(args.schedule, steps * args.epochs, int(round(args.warmup * steps))))
    train_time = 0.0
    for epoch in range(args.epochs):
        t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
        for x, y in trainer.train_loader:
            x, y = to_torch(x, y)
            out = model(x)
            loss = torch.nn.functional.cross_entropy(out, y, label_smoothing=args.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(y)
            correct += int((out.argmax(1) == y).sum())
            seen += len(y)
        dt = time.perf_counter() - t0  # training only, as ember's epoch time (validation excluded)
        train_time += dt
        line = f"epoch {epoch + 1:>3}/{args.epochs}  train loss {loss_sum / seen:.4f} acc {100 * correct / seen:.2f}%"
        if trainer.val_loader is not None:
            vl, va = evaluate(model, trainer.val_loader)
            line += f"  val loss {vl:.4f} acc {100 * va:.2f}%"
        print(line + f"  {seen / dt:.0f} img/s  {dt:.1f}s", flush=True)
    tl, ta = evaluate(model, test_loader)
    print(f"torch test accuracy: {100 * ta:.2f}% (loss {tl:.4f}), training time {train_time:.0f}s (validation excluded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

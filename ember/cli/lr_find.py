"""``ember lr-find``: the learning-rate range test (Smith 2017) on a zoo model and a dataset.

Example::

    ember lr-find --model lenet5 --data fashion-mnist --batch-size 128 --optimizer sgd --momentum 0.9 \\
        --start-lr 1e-6 --end-lr 10 --num-iter 200 --plot lr_find.png

Takes the model, data and optimizer flags of ``ember train`` with the same defaults (the
same training images, initial weights and batch order for the same ``--seed``), so the
suggested lr fits an ``ember train`` run with the same flags. Prints a table of the sweep
and a summary with the suggested lr; ``--plot`` also writes the loss-vs-lr curve as a PNG.
See ember.diagnostics.lr_finder for the method.
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["add_arguments", "run", "build_sweep"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ember.cli.train import add_model_data_optimizer_arguments

    add_model_data_optimizer_arguments(p, lr=False)
    g = p.add_argument_group("range test")
    g.add_argument("--start-lr", type=float, default=1e-7, help="first learning rate of the sweep")
    g.add_argument("--end-lr", type=float, default=10.0, help="last learning rate of the sweep")
    g.add_argument("--num-iter", type=int, default=100, metavar="STEPS", help="mini-batches in the sweep")
    g.add_argument("--mode", default="exp", choices=["exp", "linear"], help="spacing of the learning rates")
    g.add_argument("--smooth", type=float, default=0.98,
                   help="factor of the loss's moving average (bias-corrected; 0: none)")
    g.add_argument("--diverge-threshold", type=float, default=5.0, metavar="X",
                   help="stop when the smoothed loss exceeds X times its best value")
    g.add_argument("--rows", type=int, default=12, help="rows of the printed table")
    g.add_argument("--plot", default=None, metavar="PNG", help="write the loss-vs-lr curve to this file")


def build_sweep(args):
    """(model, optimizer, train loader, loss function) as ``ember train`` would build them."""
    import ember
    from ember.cli.train import _make_optimizer, load_data_and_model, make_transform
    from ember.data import ArrayDataset, DataLoader
    from ember.nn import functional as F

    data, (x_tr, y_tr, _, _), model, _ = load_data_and_model(args)
    transform = make_transform(data, args.augment, ember.Generator(args.seed + 2))
    loader = DataLoader(ArrayDataset(x_tr, y_tr, transform=transform), batch_size=args.batch_size,
                        shuffle=True, generator=ember.Generator(args.seed + 1), num_workers=args.num_workers)
    args.lr = args.start_lr  # the optimizer's lr is replaced at every step of the sweep
    optimizer = _make_optimizer(args, model.parameters())

    def loss_fn(out, target):
        return F.cross_entropy(out, target, label_smoothing=args.label_smoothing)

    return model, optimizer, loader, loss_fn


def run(args) -> int:
    from ember.diagnostics.lr_finder import lr_find

    try:
        model, optimizer, loader, loss_fn = build_sweep(args)
        res = lr_find(model, optimizer, loader, loss_fn, start_lr=args.start_lr, end_lr=args.end_lr,
                      num_iter=args.num_iter, mode=args.mode, smooth=args.smooth,
                      diverge_threshold=args.diverge_threshold, device=args.device)
    except (ValueError, FileNotFoundError) as e:
        print(f"ember lr-find: error: {e}", file=sys.stderr)
        return 2
    print(res.table(args.rows))
    print(res)
    if args.plot:
        try:
            res.plot(args.plot)
        except ModuleNotFoundError as e:
            print(f"ember lr-find: error: --plot needs matplotlib ({e})", file=sys.stderr)
            return 2
        print(f"wrote {args.plot}")
    return 0

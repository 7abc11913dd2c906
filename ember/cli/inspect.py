"""``ember inspect``: one self-contained HTML report of a checkpoint (or a fresh zoo model).

    ember inspect --checkpoint runs/x/best.safetensors --data fashion-mnist --run runs/x --out report.html

The checkpoint's metadata names the model and its arguments (written by ``ember
train``); ``--model`` overrides it or, without a checkpoint, inspects a freshly
initialized zoo model. Statistics use the first ``--batches`` x ``--batch-size``
test images, normalized as for training; ``--no-attributions`` leaves out the
input attributions of the first images.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None, help="a .safetensors checkpoint written by ember train")
    parser.add_argument("--model", default=None, help="zoo model name (default: the one in the checkpoint)")
    parser.add_argument("--data", default=None, help="dataset name, e.g. fashion-mnist, cifar10, synthetic-shapes "
                                                     "(default: the checkpoint's dataset)")
    parser.add_argument("--data-dir", default=None, help="folder holding the dataset files")
    parser.add_argument("--run", default=None, help="run folder with metrics.jsonl, for training curves")
    parser.add_argument("--out", default="report.html", help="where to write the HTML report")
    parser.add_argument("--batches", type=int, default=4, help="batches of test images for activation statistics")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch")
    parser.add_argument("--no-attributions", dest="attributions", action="store_false",
                        help="leave out the input-attribution section (saliency, SmoothGrad, integrated "
                             "gradients, occlusion)")


def run(args) -> int:
    from ember.cli.datasets import load_image_data
    from ember.diagnostics.report import build_report
    from ember.tensor import Tensor

    meta: dict = {}
    try:
        if args.checkpoint:
            from ember.cli.evaluate import load_model

            model, meta = load_model(args.checkpoint)
            name = meta["model"]
        elif args.model:
            name = args.model
        else:
            print("ember inspect: error: pass --checkpoint or --model", file=sys.stderr)
            return 2
        data = load_image_data(args.data or meta.get("data") or "synthetic-shapes", root=args.data_dir)
        if not args.checkpoint:  # a freshly initialized zoo model shaped for the data
            from ember.cli.summary import build_model

            model = build_model(name, (data.in_channels, data.input_size, data.input_size),
                                num_classes=data.num_classes)
    except (ValueError, FileNotFoundError) as e:
        print(f"ember inspect: error: {e}", file=sys.stderr)
        return 2
    n = max(args.batches, 1) * args.batch_size
    # Normalize as in training (the checkpoint stores the statistics it used).
    mean = np.asarray(meta.get("mean", data.mean), np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(meta.get("std", data.std), np.float32).reshape(1, -1, 1, 1)
    x = (data.x_test[:n].astype(np.float32) / 255.0 - mean) / std
    y = data.y_test[:n].astype(np.int64)
    batches = [(Tensor(np.ascontiguousarray(x[i:i + args.batch_size])), Tensor(y[i:i + args.batch_size]))
               for i in range(0, len(x), args.batch_size)]  # labels too: the report's gradient flow uses them
    title = f"{name} on {data.name}" + (f" ({os.path.basename(args.checkpoint)})" if args.checkpoint else "")
    off = {} if args.attributions else {"attribution_images": 0}  # else build_report's default
    build_report(model, batches, args.out, run=args.run, title=title,
                 class_names=list(meta.get("classes", data.classes)), **off)
    print(f"wrote {args.out}")
    return 0

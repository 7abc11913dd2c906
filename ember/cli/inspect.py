"""``ember inspect``: one self-contained HTML report of a checkpoint (or a fresh zoo model).

    ember inspect --checkpoint runs/x/best.safetensors --data fashion-mnist --run runs/x --out report.html

The checkpoint's metadata names the model and its arguments (written by ``ember
train``); ``--model`` overrides it or, without a checkpoint, inspects a freshly
initialized zoo model. Statistics use the first ``--batches`` x ``--batch-size``
test images, normalized as for training.
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
    parser.add_argument("--data-root", default=None, help="folder holding the dataset files")
    parser.add_argument("--run", default=None, help="run folder with metrics.jsonl, for training curves")
    parser.add_argument("--out", default="report.html", help="where to write the HTML report")
    parser.add_argument("--batches", type=int, default=4, help="batches of test images for activation statistics")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch")


def _meta_model(meta: dict) -> tuple[str | None, dict]:
    """Model name and builder kwargs from a checkpoint's metadata, whatever the nesting."""
    for key in ("model", "config", "args"):
        v = meta.get(key)
        if isinstance(v, str):
            return v, dict(meta.get("model_kwargs") or {})
        if isinstance(v, dict):
            name = v.get("name") or v.get("model")
            if isinstance(name, str):
                return name, dict(v.get("kwargs") or v.get("model_kwargs") or {})
    return None, {}


def _meta_data(meta: dict) -> str | None:
    for key in ("data", "dataset"):
        v = meta.get(key)
        if isinstance(v, str):
            return v
        if isinstance(v, dict) and isinstance(v.get("name"), str):
            return v["name"]
    for v in meta.values():
        if isinstance(v, dict):
            found = _meta_data(v) if v is not meta else None
            if found:
                return found
    return None


def run(args) -> int:
    from ember.cli.datasets import load_image_data
    from ember.diagnostics.report import build_report
    from ember.tensor import Tensor

    meta: dict = {}
    tensors = None
    if args.checkpoint:
        from ember.cli.checkpoint import read_checkpoint

        if not os.path.exists(args.checkpoint):
            print(f"ember inspect: checkpoint {args.checkpoint!r} does not exist", file=sys.stderr)
            return 2
        tensors, meta = read_checkpoint(args.checkpoint)
    name, kwargs = _meta_model(meta)
    name = args.model or name
    if name is None:
        print("ember inspect: no model name: pass --model (the checkpoint's metadata names none)", file=sys.stderr)
        return 2
    data_name = args.data or _meta_data(meta) or "synthetic-shapes"
    data = load_image_data(data_name, root=args.data_root)
    if not kwargs:  # fit a fresh zoo model to the data
        from ember.cli.summary import build_model

        model = build_model(name, (data.in_channels, data.input_size, data.input_size), num_classes=data.num_classes)
    else:
        from ember.models import get_model

        model = get_model(name, **kwargs)
    if tensors is not None:
        from ember.cli.checkpoint import model_state

        model.load_state_dict({k: Tensor(v) for k, v in model_state(tensors).items()})
    n = max(args.batches, 1) * args.batch_size
    x = data.x_test[:n].astype(np.float32) / 255.0
    mean = np.asarray(data.mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(data.std, np.float32).reshape(1, -1, 1, 1)
    x = (x - mean) / std
    batches = [Tensor(np.ascontiguousarray(x[i:i + args.batch_size])) for i in range(0, len(x), args.batch_size)]
    title = f"{name} on {data.name}" + (f" ({os.path.basename(args.checkpoint)})" if args.checkpoint else "")
    build_report(model, batches, args.out, run=args.run, title=title, class_names=list(data.classes))
    print(f"wrote {args.out}")
    return 0

"""``ember eval``: accuracy, per-class accuracy and confusion matrix of a saved checkpoint.

The checkpoint's metadata names the model and its keyword arguments, the dataset and
its normalization, so only the checkpoint is needed::

    ember eval --checkpoint runs/lenet5/best.safetensors --data fashion-mnist
"""
from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_arguments", "run", "load_model"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="a .safetensors file written by ember train")
    p.add_argument("--data", default=None, metavar="NAME", help="dataset (default: the one it was trained on)")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="folder with the dataset files")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="fail instead of downloading missing dataset files")
    p.add_argument("--split", default="test", choices=["test", "train"], help="which split to evaluate")
    p.add_argument("--batch-size", type=int, default=500, help="samples per evaluation batch")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--json", dest="json_out", default=None, metavar="FILE", help="also write the results as JSON")
    from ember.cli.segment import add_segment_arguments

    add_segment_arguments(p)  # --task segment (ember/cli/segment.py)


def load_model(path, device: str = "cpu"):
    """Rebuild the model recorded in a checkpoint and load its weights; returns (model, metadata)."""
    from ember.cli.checkpoint import model_state, read_checkpoint
    from ember.models import get_model

    tensors, meta = read_checkpoint(path)
    if "model" not in meta:
        raise ValueError(f"{path}: the checkpoint's metadata does not name a model (not written by ember train?)")
    model = get_model(meta["model"], **meta.get("model_kwargs", {}))
    model.load_state_dict(model_state(tensors))
    if device != "cpu":
        model.to(device)
    model.eval()
    return model, meta


def run(args) -> int:
    if getattr(args, "task", "classify") == "segment":
        from ember.cli.segment import run_eval

        return run_eval(args)
    from ember.cli.datasets import load_image_data
    from ember.cli.report import format_confusion, per_class_accuracy
    from ember.cli.train import make_transform
    from ember.cli.trainer import evaluate_model
    from ember.data import ArrayDataset, DataLoader

    try:
        model, meta = load_model(args.checkpoint, args.device)
        data = load_image_data(args.data or meta["data"], root=args.data_dir, download=args.download)
    except (ValueError, FileNotFoundError) as e:
        print(f"ember eval: error: {e}", file=sys.stderr)
        return 2
    # Normalize exactly as in training (the statistics are stored in the checkpoint).
    data.mean, data.std = tuple(meta.get("mean", data.mean)), tuple(meta.get("std", data.std))
    x, y = (data.x_test, data.y_test) if args.split == "test" else (data.x_train, data.y_train)
    loader = DataLoader(ArrayDataset(x, y, transform=make_transform(data, False)), batch_size=args.batch_size)
    res = evaluate_model(model, loader, args.device, data.num_classes)
    cm = res["confusion"]
    classes = meta.get("classes", data.classes)
    print(f"checkpoint: {args.checkpoint} ({meta['model']}, epoch {meta.get('progress', {}).get('epoch', '?')})")
    print(format_confusion(cm, classes))
    print(f"{args.split} accuracy: {100 * res['accuracy']:.2f}% ({int(cm.trace())}/{int(cm.sum())}), "
          f"loss {res['loss']:.4f}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"accuracy": res["accuracy"], "loss": res["loss"], "classes": classes,
                       "per_class_accuracy": [None if a != a else float(a) for a in per_class_accuracy(cm)],
                       "confusion": cm.tolist()}, f)
    return 0

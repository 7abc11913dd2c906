"""Train the segmentation models on FashionScenes under a time budget and report mIoU.

    python bench/train_segmentation.py --model unet --minutes 30 --out runs/seg-unet

Training scenes come from Fashion-MNIST's training split, test scenes (another seed) from
its test split. Prints one JSON line per logged step / epoch and, at the end, a summary
line: model, parameters, receptive field (ember.diagnostics), training seconds, pixel
accuracy and mean IoU on the test scenes of the model at the end of training (the
best epoch's mean IoU is printed beside it, for reference only: picking it looks at the test set).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ember.cli.segment import build_datasets, evaluate, fit, receptive_field_size, save_prediction_grid  # noqa: E402
from ember.models.segmentation import SEGMENTATION_MODELS  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="unet", choices=sorted(SEGMENTATION_MODELS))
    p.add_argument("--model-args", default="{}", help="JSON keyword arguments for the model")
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--canvas", type=int, default=64)
    p.add_argument("--train-scenes", type=int, default=10000)
    p.add_argument("--test-scenes", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--class-weight", default=None, help="comma-separated loss weight per class")
    p.add_argument("--augment", action="store_true", help="mirror a random half of each batch (image and mask)")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    t0 = time.perf_counter()
    train, test, k, cin, names = build_datasets("fashion-scenes", a.canvas, a.train_scenes, a.test_scenes, a.seed)
    print(json.dumps({"data_seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    model = SEGMENTATION_MODELS[a.model](num_classes=k, in_channels=cin, **json.loads(a.model_args))
    out = Path(a.out) if a.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    cw = None if a.class_weight is None else [float(v) for v in a.class_weight.split(",")]
    res = fit(model, train, test, k, batch_size=a.batch_size, lr=a.lr, time_limit=60 * a.minutes, seed=a.seed,
              class_weight=cw, out=out, class_names=names, log=lambda s: print(s, flush=True), augment=a.augment)
    final = res["final"]  # the model at the end of the schedule: no choice made by looking at the test set
    summary = {"model": a.model, "model_args": json.loads(a.model_args), "class_weight": cw,
               "train_scenes": a.train_scenes, "augment": a.augment, "batch_size": a.batch_size, "lr": a.lr,
               "params": sum(int(q.data.size) for q in model.parameters()),
               "receptive_field": receptive_field_size(model, (1, cin, a.canvas, a.canvas)),
               "train_seconds": round(res["train_seconds"]), "steps": res["steps"],
               "pixel_accuracy": round(final["pixel_accuracy"], 4), "mean_iou": round(final["mean_iou"], 4),
               "best_epoch_mean_iou": round(res["best"]["mean_iou"], 4),
               "iou": {n: (None if v is None else round(v, 3)) for n, v in final["iou"].items()}}
    print("SUMMARY " + json.dumps(summary), flush=True)
    if out:
        from ember.io import load_checkpoint

        model.load_state_dict(load_checkpoint(out / "last.safetensors")[0])
        (out / "metrics.json").write_text(json.dumps({**summary, **evaluate(model, test, k, class_names=names)},
                                                     indent=2))
        save_prediction_grid(model, test, out / "predictions.png", 6, names)


if __name__ == "__main__":
    main()

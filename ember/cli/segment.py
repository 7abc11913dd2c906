"""Semantic segmentation: training and evaluation behind ``ember train|eval --task segment``.

Example::

    ember train --task segment --model unet --data fashion-scenes --epochs 5 --lr 3e-3 \\
        --optimizer adam --out runs/unet-scenes
    ember eval --task segment --checkpoint runs/unet-scenes/last.safetensors

Writes to ``--out``: best.safetensors / last.safetensors (model weights; meta holds the
model and data settings), metrics.jsonl (loss per logged step, metrics per epoch),
metrics.json (final test metrics: pixel accuracy, mean IoU, IoU per class, confusion
matrix) and predictions.png (input, ground truth and prediction for a few test scenes).
The functions (``build_datasets``, ``fit``, ``evaluate``, ``save_prediction_grid``) work
without the command line too.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["add_segment_arguments", "run_train", "run_eval", "build_datasets", "fit", "evaluate",
           "save_prediction_grid", "receptive_field_size", "random_hflip_pair", "DATASETS"]

DATASETS = ["fashion-scenes", "sky-bird", "folder"]


def add_segment_arguments(p: argparse.ArgumentParser) -> None:
    """The flags that only ``--task segment`` uses (added to ``ember train`` and ``ember eval``)."""
    p.add_argument("--task", default="classify", choices=["classify", "segment"],
                   help="classify images, or segment them (one label per pixel)")
    g = p.add_argument_group("segmentation (--task segment)")
    g.add_argument("--canvas", type=int, default=64, help="fashion-scenes / sky-bird image side")
    g.add_argument("--train-scenes", type=int, default=10000, help="generated training scenes")
    g.add_argument("--test-scenes", type=int, default=1000, help="generated test scenes (from the test split)")
    g.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                   help="stop training after this long; the cosine schedule then runs over the time")
    g.add_argument("--class-weight", default=None, metavar="W0,W1,...",
                   help="per-class loss weights (comma separated)")
    g.add_argument("--grid", type=int, default=6, metavar="N", help="test scenes drawn in predictions.png")


def build_datasets(name: str, canvas: int = 64, train_scenes: int = 10000, test_scenes: int = 1000,
                   seed: int = 0, data_dir=None, need_train: bool = True):
    """(train set or None, test set, num_classes, in_channels, class names) for a dataset name.

    ``fashion-scenes`` draws training scenes from Fashion-MNIST's training split and test
    scenes (another seed) from its test split; ``sky-bird`` is synthetic; ``folder`` reads
    ``data_dir/train`` and ``data_dir/test`` as SegmentationFolders (``num_classes`` from
    the largest label seen in the first masks, so pass --model-arg num_classes=K if unsure).
    """
    from ember.data.datasets.scenes import FashionScenes, SegmentationFolder, SkyBird

    if name == "fashion-scenes":
        train = FashionScenes(root=data_dir, train=True, num_scenes=train_scenes, canvas=canvas, seed=seed) \
            if need_train else None
        test = FashionScenes(root=data_dir, train=False, num_scenes=test_scenes, canvas=canvas, seed=seed + 1)
        return train, test, FashionScenes.num_classes, 1, FashionScenes.classes
    if name == "sky-bird":
        train = SkyBird(n=train_scenes, size=canvas, seed=seed) if need_train else None
        test = SkyBird(n=test_scenes, size=canvas, seed=seed + 1)
        return train, test, SkyBird.num_classes, 3, SkyBird.classes
    if name == "folder":
        if data_dir is None:
            raise ValueError("segment: --data folder needs --data-dir DIR holding train/ and test/")
        test = SegmentationFolder(Path(data_dir) / "test")
        train = SegmentationFolder(Path(data_dir) / "train") if need_train else None
        probe = [test[i] for i in range(min(len(test), 16))]
        k = max(int(m[m != 255].max(initial=0)) for _, m in probe) + 1
        return train, test, k, int(probe[0][0].shape[0]), [str(i) for i in range(k)]
    raise ValueError(f"segment: unknown dataset {name!r}; valid: {', '.join(DATASETS)}")


def receptive_field_size(model, input_shape: tuple) -> str:
    """Theoretical receptive field of the model's output (ember.diagnostics), e.g. '108'."""
    from ember.diagnostics.receptive_field import receptive_fields

    fields = [f for _, _, f in receptive_fields(model, input_shape) if f is not None]
    return fields[-1].text() if fields else "?"


def evaluate(model, dataset, num_classes: int, batch_size: int = 100, class_names=None,
             ignore_index: int = 255) -> dict:
    """Pixel accuracy, per-class IoU, mean IoU and confusion matrix of ``model`` on ``dataset``."""
    import ember
    from ember.data import DataLoader
    from ember.metrics import SegmentationMetrics

    metrics = SegmentationMetrics(num_classes, ignore_index, class_names)
    was_training = model.training
    model.eval()
    with ember.no_grad():
        for x, y in DataLoader(dataset, batch_size=batch_size):
            metrics.update(model(x), y)
    model.train(was_training)
    return metrics.compute()


def fit(model, train_set, test_set, num_classes: int, *, epochs: int = 5, batch_size: int = 32, lr: float = 3e-3,
        weight_decay: float = 1e-4, optimizer: str = "adam", time_limit: float | None = None,
        class_weight=None, seed: int = 0, log=print, log_every: int = 20, out: Path | None = None,
        class_names=None, ignore_index: int = 255, eval_batch_size: int = 100, augment: bool = False) -> dict:
    """Train with pixel-wise cross-entropy and a cosine learning rate; evaluate after each epoch.

    The schedule runs over ``epochs`` epochs, or over ``time_limit`` seconds when given
    (training stops when the time is up). ``augment`` mirrors a random half of every batch
    left-right, image and mask together (:func:`random_hflip_pair`). Returns {"history":
    [...], "final": metrics of the last epoch, "best": metrics of the epoch with the highest
    mean IoU, "train_seconds": float, "steps": int}; writes best/last checkpoints and
    metrics.jsonl into ``out``. Report ``final``: choosing ``best`` looks at the test set.
    """
    import ember
    import ember.nn.functional as F
    from ember import optim
    from ember.data import DataLoader
    from ember.io import save_checkpoint

    ember.manual_seed(seed)
    params = list(model.parameters())
    if optimizer == "sgd":
        opt = optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    elif optimizer in ("adam", "adamw"):
        opt = (optim.AdamW if optimizer == "adamw" else optim.Adam)(params, lr=lr, weight_decay=weight_decay)
    else:
        raise ValueError(f"segment: optimizer must be sgd, adam or adamw, got {optimizer!r}")
    weight = None if class_weight is None else ember.tensor(np.asarray(class_weight, np.float32))
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True,
                        generator=ember.Generator().manual_seed(seed))
    flip_gen = np.random.Generator(np.random.PCG64(seed + 1)) if augment else None
    total_steps = epochs * len(loader)
    history, best, m, step, trained = [], None, None, 0, 0.0
    logf = open(out / "metrics.jsonl", "a") if out is not None else None
    try:
        for epoch in range(epochs if time_limit is None else 10 ** 9):
            model.train()
            start = time.perf_counter() - trained  # evaluation time does not count against the limit
            for x, y in loader:
                elapsed = time.perf_counter() - start
                frac = elapsed / time_limit if time_limit else step / total_steps
                if frac >= 1.0:
                    break
                for g in opt.param_groups:  # cosine decay from lr to 0 over steps or over the time limit
                    g["lr"] = 0.5 * lr * (1 + math.cos(math.pi * frac))
                if flip_gen is not None:
                    x, y = random_hflip_pair(x, y, flip_gen)
                loss = F.cross_entropy(model(x), y, weight=weight, ignore_index=ignore_index)
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                if step % log_every == 0:
                    rec = {"step": step, "epoch": epoch, "loss": float(loss.item()),
                           "seconds": round(time.perf_counter() - start, 1)}
                    log(json.dumps(rec))
                    if logf:
                        logf.write(json.dumps(rec) + "\n")
                        logf.flush()
            trained = time.perf_counter() - start
            m = evaluate(model, test_set, num_classes, eval_batch_size, class_names, ignore_index)
            rec = {"epoch": epoch, "train_seconds": round(trained, 1), "pixel_accuracy": m["pixel_accuracy"],
                   "mean_iou": m["mean_iou"]}
            history.append(rec)
            log(json.dumps(rec))
            if logf:
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
            if out is not None:
                state = model.state_dict()
                save_checkpoint(out / "last.safetensors", state, {"epoch": epoch, **rec})
            if best is None or m["mean_iou"] > best["mean_iou"]:
                best = m
                if out is not None:
                    save_checkpoint(out / "best.safetensors", state, {"epoch": epoch, **rec})
            done = (time_limit is not None and trained >= time_limit) or \
                (time_limit is None and step >= total_steps)
            if done:
                break
    finally:
        if logf:
            logf.close()
    return {"history": history, "final": m, "best": best, "train_seconds": trained, "steps": step}


def random_hflip_pair(x, y, generator: np.random.Generator):
    """Mirror each sample of a batch left-right with probability 1/2, image and mask alike.

    x: (N, C, H, W) images, y: (N, H, W) masks (Tensors). One coin per sample, drawn from
    ``generator``; the flip is a reversed view selected with ``where``, with no loop over
    the batch. A mirrored scene is as likely as the original (the items' classes do not
    depend on left and right), so this doubles the variety of the training scenes.
    """
    import ember
    from ember.backend import xp_of

    xp = xp_of(x.data)
    flip = xp.asarray(generator.random(x.shape[0]) < 0.5)
    xd = xp.where(flip[:, None, None, None], x.data[..., ::-1], x.data)
    yd = xp.where(flip[:, None, None], y.data[..., ::-1], y.data)
    return ember.Tensor(xd), ember.Tensor(yd)


def save_prediction_grid(model, dataset, path, n: int = 6, class_names=None) -> None:
    """PNG grid: one row per scene with the input, the ground truth and the prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import ember
    from ember.backend import asnumpy

    n = min(n, len(dataset))
    x, y = dataset.get_batch(np.arange(n)) if hasattr(dataset, "get_batch") else \
        tuple(np.stack(f) for f in zip(*[dataset[i] for i in range(n)]))
    model.eval()
    with ember.no_grad():
        pred = asnumpy(model(ember.tensor(np.asarray(x))).data).argmax(1)
    k = max(int(pred.max()), int(y[y != 255].max(initial=0))) + 1
    cmap = plt.get_cmap("tab20", max(k, 2))
    fig, axes = plt.subplots(n, 3, figsize=(6, 2 * n), squeeze=False)
    for i in range(n):
        img = np.asarray(x[i]).transpose(1, 2, 0)
        axes[i, 0].imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray")
        axes[i, 1].imshow(np.ma.masked_equal(y[i], 255), cmap=cmap, vmin=0, vmax=max(k, 2) - 1,
                          interpolation="nearest")
        axes[i, 2].imshow(pred[i], cmap=cmap, vmin=0, vmax=max(k, 2) - 1, interpolation="nearest")
        for a in axes[i]:
            a.set_xticks([])
            a.set_yticks([])
    for a, t in zip(axes[0], ["input", "ground truth", "prediction"]):
        a.set_title(t)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _print_metrics(m: dict, file=None) -> None:
    # Look sys.stdout up at call time: a default bound at import would keep a stream that
    # a caller (a test's output capture, a redirect) may since have replaced and closed.
    file = sys.stdout if file is None else file
    print(f"pixel accuracy {m['pixel_accuracy']:.4f}  mean IoU {m['mean_iou']:.4f}", file=file)
    for name, v in m["iou"].items():
        print(f"  IoU {name:<12s} {'n/a' if v is None else f'{v:.4f}'}", file=file)


def _build_model(name: str, num_classes: int, in_channels: int, extra: dict):
    from ember.models.segmentation import SEGMENTATION_MODELS

    key = name.lower().replace("_", "-")
    if key not in SEGMENTATION_MODELS:
        raise ValueError(f"segment: unknown model {name!r}; valid: {', '.join(SEGMENTATION_MODELS)}")
    return SEGMENTATION_MODELS[key](num_classes=num_classes, in_channels=in_channels, **extra)


# Settings that suit segmentation better than ``ember train``'s classification defaults;
# used for every flag that is not on the command line.
SEGMENT_DEFAULTS = {"data": "fashion-scenes", "optimizer": "adam", "lr": 3e-3, "batch_size": 16,
                    "weight_decay": 1e-4, "eval_batch_size": 100, "log_every": 20}


def _segment_defaults(args) -> None:
    argv = getattr(args, "_argv", None)
    if argv is None:  # called from Python with a ready namespace: take it as is
        return
    for key, value in SEGMENT_DEFAULTS.items():
        flag = "--" + key.replace("_", "-")
        if not any(a == flag or a.startswith(flag + "=") for a in argv):
            setattr(args, key, value)


def run_train(args) -> int:
    """``ember train --task segment``: train, then print and save the test metrics and a PNG grid."""
    _segment_defaults(args)
    extra = dict(getattr(args, "model_arg", []) or [])
    train, test, k, cin, names = build_datasets(args.data, args.canvas, args.train_scenes, args.test_scenes,
                                                args.seed, args.data_dir)
    model = _build_model(args.model, k, cin, extra)
    out = Path(args.out or f"runs/{args.model}-{args.data}")
    out.mkdir(parents=True, exist_ok=True)
    cw = None if args.class_weight is None else [float(v) for v in args.class_weight.split(",")]
    config = {"task": "segment", "model": args.model, "model_args": extra, "data": args.data, "canvas": args.canvas,
              "train_scenes": args.train_scenes, "test_scenes": args.test_scenes, "seed": args.seed,
              "num_classes": k, "in_channels": cin, "class_names": names,
              "augment": bool(getattr(args, "augment", False))}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    res = fit(model, train, test, k, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
              weight_decay=args.weight_decay, optimizer=args.optimizer, class_weight=cw,
              time_limit=None if args.time_limit is None else 60 * args.time_limit, seed=args.seed, out=out,
              class_names=names, eval_batch_size=args.eval_batch_size, log_every=args.log_every,
              augment=bool(getattr(args, "augment", False)))
    # Report the model as training left it (also last.safetensors); best.safetensors is the
    # epoch with the highest test mIoU, a choice made by looking at the test scenes.
    m = evaluate(model, test, k, args.eval_batch_size, names)
    m.update(train_seconds=res["train_seconds"], steps=res["steps"], model=args.model,
             receptive_field=receptive_field_size(model, (1, cin, args.canvas, args.canvas)))
    _print_metrics(m)
    print(f"trained {res['train_seconds']:.0f} s, {res['steps']} steps; receptive field {m['receptive_field']}")
    (out / "metrics.json").write_text(json.dumps(m, indent=2))
    save_prediction_grid(model, test, out / "predictions.png", args.grid, names)
    print(f"wrote {out}/last.safetensors (best.safetensors: best test epoch), metrics.json, predictions.png")
    return 0


def run_eval(args) -> int:
    """``ember eval --task segment --checkpoint DIR/best.safetensors``: metrics on the test scenes."""
    from ember.io import load_checkpoint

    if getattr(args, "_argv", None) is not None and "--batch-size" not in args._argv:
        args.batch_size = SEGMENT_DEFAULTS["eval_batch_size"]
    ckpt = Path(args.checkpoint)
    config = json.loads((ckpt.parent / "config.json").read_text())
    data = args.data or config["data"]
    _, test, k, cin, names = build_datasets(data, config["canvas"], 0, config["test_scenes"], config["seed"],
                                            getattr(args, "data_dir", None), need_train=False)
    model = _build_model(config["model"], k, cin, config.get("model_args", {}))
    tensors, _ = load_checkpoint(ckpt)
    model.load_state_dict(tensors)
    m = evaluate(model, test, k, args.batch_size, names)
    _print_metrics(m)
    if getattr(args, "json_out", None):
        Path(args.json_out).write_text(json.dumps(m, indent=2))
    save_prediction_grid(model, test, ckpt.parent / "predictions.png", getattr(args, "grid", 6), names)
    return 0

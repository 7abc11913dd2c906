"""``ember train``: train a zoo model on a dataset with a progress bar, checkpoints and metrics.

Example::

    ember train --model lenet5 --data fashion-mnist --epochs 10 --batch-size 128 --optimizer sgd \\
        --lr 0.05 --momentum 0.9 --weight-decay 5e-4 --schedule cosine --warmup 1 --augment --seed 0 \\
        --out runs/lenet5

Writes to ``--out``: last.safetensors and best.safetensors (atomically, every epoch),
metrics.jsonl (one JSON object per logged step / epoch / test), curves.png, confusion.json
and config.json.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "add_model_data_optimizer_arguments", "load_data_and_model", "run", "build_run"]


def _kv(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE parsed as JSON when possible (numbers, true/false, lists)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        return k.strip(), json.loads(v)
    except json.JSONDecodeError:
        return k.strip(), v


def add_model_data_optimizer_arguments(p: argparse.ArgumentParser, *, lr: bool = True) -> None:
    """The model, data, loss and optimizer flags, shared by ``ember train`` and ``ember lr-find``.

    ``lr=False`` leaves out ``--lr`` (``ember lr-find`` sweeps it instead).
    """
    from ember.cli.datasets import list_datasets
    from ember.models import list_models

    p.add_argument("--model", default="lenet5", metavar="NAME", help=f"model: {', '.join(list_models())}")
    p.add_argument("--model-arg", action="append", type=_kv, default=[], metavar="KEY=VALUE",
                   help="extra keyword argument for the model builder, e.g. shortcut=B (repeatable)")
    p.add_argument("--data", default="fashion-mnist", metavar="NAME", help=f"dataset: {', '.join(list_datasets())}")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder with the dataset files (default: cache, system package, then download)")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="fail instead of downloading missing dataset files")
    p.add_argument("--batch-size", type=int, default=128, help="samples per training step")
    p.add_argument("--optimizer", default="sgd",
                   choices=["sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "radam"],
                   help="optimizer")
    if lr:
        p.add_argument("--lr", type=float, default=0.05, help="peak learning rate")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD/RMSprop momentum")
    p.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="L2 penalty (decoupled for adamw)")
    p.add_argument("--label-smoothing", type=float, default=0.0, metavar="EPS",
                   help="label smoothing of the cross-entropy (Szegedy et al. 2016): the target becomes "
                        "(1 - EPS) * one-hot + EPS / classes, as in PyTorch")
    p.add_argument("--augment", action="store_true",
                   help="random crop (pad 2 for 28x28, 4 for 32x32) and horizontal flip; with --task segment, "
                        "a horizontal flip of image and mask together")
    p.add_argument("--seed", type=int, default=0, help="seed for initialization, shuffling and augmentation")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (cuda needs CuPy)")
    p.add_argument("--val-split", type=int, default=5000, metavar="N",
                   help="hold out N training images for validation (0: none)")
    p.add_argument("--limit-train", type=int, default=None, metavar="N", help="use only N training images")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader prefetch threads")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="read settings from a TOML or YAML file (flags win)")
    add_model_data_optimizer_arguments(p)
    p.add_argument("--epochs", type=int, default=10, help="passes over the training set")
    p.add_argument("--eval-batch-size", type=int, default=500, help="samples per evaluation batch")
    p.add_argument("--schedule", default="cosine", choices=["cosine", "step", "constant"],
                   help="learning-rate schedule, updated every step (step: x0.1 at 50%% and 75%%)")
    p.add_argument("--warmup", type=float, default=0.0, metavar="EPOCHS",
                   help="linear warm-up from lr/steps to lr over this many epochs")
    p.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                   help="MixUp (Zhang et al. 2018) of every training batch, lambda ~ Beta(ALPHA, ALPHA); 0: off")
    p.add_argument("--cutmix", type=float, default=0.0, metavar="ALPHA",
                   help="CutMix (Yun et al. 2019) of every training batch; with --mixup too, each batch gets "
                        "one of the two at random")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default runs/<model>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.safetensors")
    p.add_argument("--overfit-batch", action="store_true",
                   help="smoke test: train on one batch repeatedly; it should reach ~100%% accuracy")
    p.add_argument("--overfit-steps", type=int, default=50, help="steps per epoch with --overfit-batch")
    p.add_argument("--log-every", type=int, default=10, metavar="STEPS", help="log the loss every STEPS steps")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    from ember.cli.segment import add_segment_arguments

    add_segment_arguments(p)  # --task segment and its flags (ember/cli/segment.py)


def _lr_lambda(schedule: str, total: int, warmup: int):
    """Multiplier of the peak lr at step t (0-based): linear warm-up, then the schedule."""
    def f(t: int) -> float:
        if t < warmup:
            return (t + 1) / warmup
        if schedule == "constant":
            return 1.0
        if schedule == "step":
            return 0.1 ** sum(t >= m for m in (total // 2, (3 * total) // 4))
        progress = (t - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return f


def _make_optimizer(args, params):
    from ember import optim

    if args.optimizer == "sgd":
        return optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                         nesterov=args.nesterov)
    if args.optimizer == "adam":
        return optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    if args.optimizer == "adamw":
        return optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    if args.optimizer == "adagrad":
        return optim.Adagrad(params, lr=args.lr, weight_decay=args.weight_decay)
    if args.optimizer == "adadelta":
        return optim.Adadelta(params, lr=args.lr, weight_decay=args.weight_decay)
    if args.optimizer == "adamax":
        return optim.Adamax(params, lr=args.lr, weight_decay=args.weight_decay)
    if args.optimizer == "nadam":
        return optim.NAdam(params, lr=args.lr, weight_decay=args.weight_decay)
    if args.optimizer == "radam":
        return optim.RAdam(params, lr=args.lr, weight_decay=args.weight_decay)
    return optim.RMSprop(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)


def make_transform(data, augment: bool, generator=None):
    """Batch transform on uint8 (N, C, H, W): [random crop + flip], then float32 and normalization."""
    from ember.data import transforms as T

    mean = np.asarray(data.mean, np.float32).reshape(1, -1, 1, 1) * 255
    inv_std = 1.0 / (np.asarray(data.std, np.float32).reshape(1, -1, 1, 1) * 255)

    def normalize(x):
        return ((x.astype(np.float32) - mean) * inv_std).astype(np.float32)

    steps = []
    if augment:  # on uint8 before normalizing, so the padding is black like the image borders
        pad = 2 if data.input_size <= 28 else 4
        steps += [T.RandomCrop(data.input_size, padding=pad, generator=generator),
                  T.RandomHorizontalFlip(generator=generator)]
    steps.append(T.Lambda(normalize))
    return T.Compose(steps)


def make_mix(mixup: float, cutmix: float, num_classes: int, generator):
    """``mix(x, y) -> (x, y_soft)`` for ``--mixup``/``--cutmix`` (alphas; 0 is off), or None.

    With both on, each batch gets one of the two, chosen with equal odds (the recipe of
    torchvision's reference scripts)."""
    from ember.data import transforms as T

    for name, alpha in (("--mixup", mixup), ("--cutmix", cutmix)):
        if not alpha >= 0:
            raise ValueError(f"{name} must be >= 0 (0 is off), got {alpha}")
    mixers = ([T.MixUp(alpha=mixup, num_classes=num_classes, generator=generator)] if mixup > 0 else []) + \
             ([T.CutMix(alpha=cutmix, num_classes=num_classes, generator=generator)] if cutmix > 0 else [])
    if len(mixers) < 2:
        return mixers[0] if mixers else None

    def either(x, y):
        return mixers[int(generator.np.random() < 0.5)](x, y)
    return either


def load_data_and_model(args) -> tuple:
    """The data, the training/validation split and the seeded model, as ``ember train`` and
    ``ember lr-find`` build them from the same flags: (data, (x_tr, y_tr, x_val, y_val), model, model_kwargs)."""
    import ember
    from ember.cli.datasets import check_dataset_name, load_image_data
    from ember.models import _canonical, get_model

    _canonical(args.model)  # unknown names fail here, before any data is read
    check_dataset_name(args.data)
    if args.model.lower() == "perceptron":
        raise ValueError("the perceptron learns with its own rule, not by backprop: use "
                         "ember.models.Perceptron().fit(x, y) (see the README); pick another --model")
    data = load_image_data(args.data, root=args.data_dir, download=args.download)
    print(f"data: {data.name}: {len(data.x_train)} train / {len(data.x_test)} test images "
          f"{tuple(data.x_train.shape[1:])}, {data.num_classes} classes" + (f" ({data.source})" if data.source else ""))
    x, y = data.x_train, data.y_train
    if getattr(args, "overfit_batch", False):
        x_tr, y_tr = x[: args.batch_size], y[: args.batch_size]
        x_val, y_val = x_tr, y_tr
    else:
        if args.val_split >= len(x):
            raise ValueError(f"--val-split {args.val_split} leaves no training images (the set has {len(x)})")
        order = np.random.default_rng(0).permutation(len(x))  # the same validation images for every seed
        val_idx, tr_idx = order[: args.val_split], np.sort(order[args.val_split:])
        if args.limit_train is not None:
            tr_idx = tr_idx[: args.limit_train]
        x_tr, y_tr, x_val, y_val = x[tr_idx], y[tr_idx], x[val_idx], y[val_idx]

    model_kwargs = dict(num_classes=data.num_classes, in_channels=data.in_channels, input_size=data.input_size)
    model_kwargs.update(dict(args.model_arg))
    ember.manual_seed(args.seed)
    model = get_model(args.model, **model_kwargs)
    if args.device != "cpu":
        model.to(args.device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {args.model} ({n_params:,} parameters)")
    return data, (x_tr, y_tr, x_val, y_val), model, model_kwargs


def build_run(args):
    """Everything ``run`` needs: (trainer, data, test loader, meta). Separate so tests can drive it."""
    import ember
    from ember.cli.trainer import Trainer
    from ember.data import ArrayDataset, DataLoader
    from ember.optim.lr_scheduler import LambdaLR

    data, (x_tr, y_tr, x_val, y_val), model, model_kwargs = load_data_and_model(args)
    shuffle_gen, aug_gen = ember.Generator(args.seed + 1), ember.Generator(args.seed + 2)
    augment = args.augment and not args.overfit_batch
    if args.overfit_batch:  # one batch, repeated: each epoch is --overfit-steps steps on it
        reps = max(1, args.overfit_steps)
        train_ds = ArrayDataset(np.concatenate([x_tr] * reps), np.concatenate([y_tr] * reps),
                                transform=make_transform(data, False))
        train_loader = DataLoader(train_ds, batch_size=len(x_tr), shuffle=False)
    else:
        train_ds = ArrayDataset(x_tr, y_tr, transform=make_transform(data, augment, aug_gen))
        train_loader = DataLoader(train_ds, batch_size=args.batch_size, shuffle=True, drop_last=False,
                                  generator=shuffle_gen, num_workers=args.num_workers)
    eval_tf = make_transform(data, False)
    val_loader = None
    if len(x_val):
        val_loader = DataLoader(ArrayDataset(x_val, y_val, transform=eval_tf), batch_size=args.eval_batch_size)
    test_loader = DataLoader(ArrayDataset(data.x_test, data.y_test, transform=eval_tf),
                             batch_size=args.eval_batch_size)

    optimizer = _make_optimizer(args, model.parameters())
    steps = len(train_loader)
    total = steps * args.epochs
    scheduler = LambdaLR(optimizer, _lr_lambda(args.schedule, total, int(round(args.warmup * steps))))
    out = Path(args.out or f"runs/{args.model}")
    meta = {"model": args.model, "model_kwargs": model_kwargs, "data": data.name, "classes": data.classes,
            "mean": list(data.mean), "std": list(data.std), "args": {k: v for k, v in vars(args).items()
                                                                    if not k.startswith("_")}}
    mix_gen = ember.Generator(args.seed + 3)
    mix = None if args.overfit_batch else make_mix(args.mixup, args.cutmix, data.num_classes, mix_gen)
    trainer = Trainer(model, optimizer, scheduler, train_loader, val_loader, epochs=args.epochs, out_dir=out,
                      device=args.device, shuffle_gen=shuffle_gen, aug_gen=aug_gen, meta=meta,
                      log_every=args.log_every, progress_bar=args.progress,
                      label_smoothing=args.label_smoothing, mix=mix, mix_gen=mix_gen if mix else None)
    return trainer, data, test_loader, meta


def run(args) -> int:
    if getattr(args, "task", "classify") == "segment":
        from ember.cli.segment import run_train

        return run_train(args)
    from ember.cli.config import apply_config
    from ember.cli.report import format_confusion, plot_curves
    from ember.cli.trainer import NonFiniteLossError, atomic_write_text

    try:
        if getattr(args, "config", None):
            parser = argparse.ArgumentParser()
            add_arguments(parser)
            apply_config(parser, args, list(getattr(args, "_argv", sys.argv[1:])), "train")
        trainer, data, test_loader, meta = build_run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"ember train: error: {e}", file=sys.stderr)
        return 2
    out = trainer.out_dir
    last = out / "last.safetensors"
    if args.resume:
        if not last.exists():
            print(f"ember train: error: --resume but {last} does not exist", file=sys.stderr)
            return 2
        trainer.resume(last)
        st = trainer.state
        print(f"resumed from {last}: epoch {st.epoch + 1}, step {st.step} (global step {st.global_step})")
    else:
        trainer._truncate_metrics(0)
    atomic_write_text(out / "config.json", json.dumps(meta["args"], indent=2, default=str))
    try:
        trainer.fit()
    except KeyboardInterrupt:
        path = trainer.save("last.safetensors")
        st = trainer.state
        print(f"\ninterrupted at epoch {st.epoch + 1}, step {st.step}: saved {path}; continue with the same "
              "command plus --resume", file=sys.stderr)
        return 130
    except NonFiniteLossError as e:
        print(f"ember train: {e}", file=sys.stderr)
        return 1
    print(plot_curves(trainer.metrics_path, out / "curves.png"))
    res = trainer.evaluate(test_loader, data.num_classes)
    cm = res["confusion"]
    trainer._log({"type": "test", "loss": res["loss"], "accuracy": res["accuracy"]})
    atomic_write_text(out / "confusion.json", json.dumps({"classes": data.classes, "matrix": cm.tolist()}))
    print(format_confusion(cm, data.classes))
    print(f"test accuracy: {100 * res['accuracy']:.2f}% (loss {res['loss']:.4f}, final model)")
    best = trainer.state
    print(f"saved {last} and {out / 'best.safetensors'} (best validation epoch {best.best_epoch})")
    if args.overfit_batch:
        # The validation set is the batch itself, evaluated after the last step (train_acc averages all steps).
        final = trainer.history[-1].get("val_acc", 0.0) if trainer.history else 0.0
        ok = final >= 0.99
        print(f"overfit-batch: {100 * final:.1f}% on the batch after {best.global_step} steps: "
              + ("OK" if ok else "FAILED (the model cannot fit one batch: check the model and the lr)"))
        return 0 if ok else 1
    return 0

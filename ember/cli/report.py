"""What ``ember train`` / ``ember eval`` print and draw: confusion matrices, per-class accuracy, curves."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["confusion_matrix", "format_confusion", "per_class_accuracy", "plot_curves"]


def confusion_matrix(target: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts: row = true class, column = predicted class."""
    target = np.asarray(target, np.int64)
    pred = np.asarray(pred, np.int64)
    return np.bincount(target * num_classes + pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class (diagonal / row sums); NaN for a class with no samples."""
    rows = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, np.diag(cm) / np.maximum(rows, 1), np.nan)


def format_confusion(cm: np.ndarray, classes: list[str]) -> str:
    """A text table: per-class accuracy, then the confusion matrix (rows true, columns predicted)."""
    k = len(classes)
    names = [str(c)[:12] for c in classes]
    acc = per_class_accuracy(cm)
    width = max(5, len(str(int(cm.max()) if cm.size else 0)) + 1)
    lines = ["per-class accuracy:"]
    for i in range(k):
        lines.append(f"  {i:>2} {names[i]:<12} {100 * acc[i]:6.2f}%  ({cm[i, i]}/{cm[i].sum()})")
    lines.append("confusion matrix (rows: true class, columns: predicted class):")
    lines.append("     " + "".join(f"{j:>{width}}" for j in range(k)))
    for i in range(k):
        lines.append(f"  {i:>2} " + "".join(f"{cm[i, j]:>{width}}" for j in range(k)))
    return "\n".join(lines)


def plot_curves(metrics_path: str | Path, out_png: str | Path) -> str:
    """Draw loss and accuracy per epoch from metrics.jsonl into a PNG; returns a note for the user.

    matplotlib is optional: without it the plot is skipped and the note says so.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: skipped the loss/accuracy plot (pip install matplotlib)"
    with open(metrics_path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    epochs = [r for r in rows if r.get("type") == "epoch"]
    steps = [r for r in rows if r.get("type") == "step"]
    if not epochs:
        return "no finished epoch yet: skipped the plot"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    n_per_epoch = max((r["step"] for r in steps), default=1)
    if steps:
        ax1.plot([(r["global_step"]) / n_per_epoch for r in steps], [r["loss"] for r in steps], color="0.75",
                 lw=0.8, label="train (per step)")
    e = [r["epoch"] for r in epochs]
    ax1.plot(e, [r["train_loss"] for r in epochs], "o-", label="train")
    ax2.plot(e, [100 * r["train_acc"] for r in epochs], "o-", label="train")
    if "val_loss" in epochs[0]:
        ax1.plot(e, [r["val_loss"] for r in epochs], "s-", label="validation")
        ax2.plot(e, [100 * r["val_acc"] for r in epochs], "s-", label="validation")
    ax1.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return f"plot: {out_png}"

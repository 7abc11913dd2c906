"""Segmentation metrics from a confusion matrix: pixel accuracy, per-class IoU, mean IoU.

Everything is derived from one K x K confusion matrix ``cm[true, pred]`` (pixel counts),
built in a single ``bincount`` over ``true * K + pred``; pixels labelled ``ignore_index``
are dropped first. From it (Long et al. 2015, "Fully convolutional networks for semantic
segmentation", section 5):

    pixel accuracy  = sum_i cm[i, i] / sum cm
    IoU_i           = cm[i, i] / (sum_j cm[i, j] + sum_j cm[j, i] - cm[i, i])
    mean IoU        = mean of IoU_i over the classes present in the labels or the predictions

A class that appears in neither has IoU NaN and is left out of the mean (it would be 0/0).
Works on NumPy and CuPy arrays and on ember Tensors; results come back as NumPy / floats.
"""
from __future__ import annotations

import numpy as np

from ember.backend import asnumpy, xp_of
from ember.errors import ShapeError

__all__ = ["confusion_matrix", "pixel_accuracy", "iou_per_class", "mean_iou", "SegmentationMetrics"]


def _raw(a):
    return a.data if hasattr(a, "data") and hasattr(a, "requires_grad") else a


def confusion_matrix(pred, target, num_classes: int, ignore_index: int | None = 255) -> np.ndarray:
    """K x K int64 matrix ``cm[t, p]`` = number of pixels of true class t predicted as p.

    Args:
        pred: predicted classes, any shape (e.g. (N, H, W)), or scores (N, K, H, W) which are
            reduced by argmax over axis 1.
        target: true classes, the shape of ``pred`` without the class axis.
        num_classes: K.
        ignore_index: target value whose pixels are skipped (None: none skipped).
    """
    pred, target = _raw(pred), _raw(target)
    xp = xp_of(pred, target)
    if pred.ndim == target.ndim + 1:
        pred = pred.argmax(axis=1)
    if pred.shape != target.shape:
        raise ShapeError(f"confusion_matrix: pred has shape {tuple(pred.shape)} but target has shape "
                         f"{tuple(target.shape)}")
    t = target.reshape(-1).astype(np.int64)
    p = pred.reshape(-1).astype(np.int64)
    if ignore_index is not None:
        keep = t != ignore_index
        t, p = t[keep], p[keep]
    bad = (t < 0) | (t >= num_classes) | (p < 0) | (p >= num_classes)
    if bool(bad.any()):  # bincount would otherwise fold them into the wrong cells
        raise ValueError(f"confusion_matrix: labels must lie in [0, {num_classes}) (or be ignore_index="
                         f"{ignore_index}); got target range [{int(t.min())}, {int(t.max())}], pred range "
                         f"[{int(p.min())}, {int(p.max())}]")
    cm = xp.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return asnumpy(cm.reshape(num_classes, num_classes)).astype(np.int64)


def pixel_accuracy(cm: np.ndarray) -> float:
    """Fraction of counted pixels whose prediction is right (NaN when no pixel is counted)."""
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """(K,) float64 intersection over union per class; NaN where the class is absent in both."""
    inter = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


def mean_iou(cm: np.ndarray) -> float:
    """Mean of the per-class IoU over classes present in labels or predictions."""
    iou = iou_per_class(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


class SegmentationMetrics:
    """Accumulates a confusion matrix over batches: ``update(logits_or_pred, target)``, then ``compute()``.

    Example::

        m = SegmentationMetrics(num_classes=11, ignore_index=255)
        for x, y in loader:
            m.update(model(x), y)
        print(m.compute()["mean_iou"])
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255, class_names: list | None = None):
        self.num_classes, self.ignore_index = int(num_classes), ignore_index
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        self.reset()

    def reset(self) -> None:
        self.cm = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred, target) -> None:
        self.cm += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def compute(self) -> dict:
        """{"pixel_accuracy", "mean_iou", "iou" {name: value}, "confusion_matrix" (list of lists)}."""
        iou = iou_per_class(self.cm)
        return {
            "pixel_accuracy": pixel_accuracy(self.cm),
            "mean_iou": mean_iou(self.cm),
            "iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(self.class_names, iou)},
            "confusion_matrix": self.cm.tolist(),
        }

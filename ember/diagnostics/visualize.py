"""Pictures of a network's insides (matplotlib, imported lazily; PNG output).

Every ``plot_*`` function returns a ``matplotlib.figure.Figure`` built without pyplot
(no global state, no display needed) and, given ``path``, also writes it as a PNG.
``png_bytes(fig)`` gives the PNG in memory (the HTML report embeds it as base64).

Class activation maps follow Zhou et al. 2016, "Learning deep features for
discriminative localization": for a classifier ending in global average pooling and
one linear layer with weights W (classes x K), the map of class c is
``sum_k W[c, k] * f_k(x, y)`` over the last feature maps f (K, h, w). Grad-CAM (Selvaraju et
al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization")
works for any CNN: at a layer's output A (K, h, w), ``ReLU(sum_k alpha_k * A_k)`` with
``alpha_k`` the spatial mean of d(score_c)/dA_k; at the features a global average pool
reads, it equals ReLU(CAM) / (h * w).
"""
from __future__ import annotations

import io
import json
import math
import os

import numpy as np

from ember.autograd import grad, no_grad
from ember.backend import asnumpy, to_device
from ember.diagnostics.trace import eval_mode, trace
from ember.errors import ShapeError
from ember.tensor import Tensor

__all__ = ["png_bytes", "first_conv_weight", "plot_filters", "feature_maps", "plot_feature_maps",
           "plot_activation_histograms", "plot_correlation", "read_metrics", "plot_training_curves",
           "class_activation_map", "grad_cam", "plot_cam", "plot_erf"]


def _figure(w: float, h: float):
    from matplotlib.figure import Figure  # lazy: matplotlib is an optional extra

    return Figure(figsize=(w, h), dpi=100)


def _finish(fig, path):
    if path is not None:
        fig.savefig(os.fspath(path), format="png")
    return fig


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _grid(n: int) -> tuple[int, int]:
    cols = int(math.ceil(math.sqrt(n)))
    return int(math.ceil(n / cols)), cols


def _norm01(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def _as_image(x: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, H, W) -> something imshow draws: RGB (H, W, 3) or grayscale (H, W)."""
    if x.shape[0] == 3:
        return _norm01(x.transpose(1, 2, 0)), None
    return _norm01(x.mean(axis=0)), "gray"


def first_conv_weight(model) -> np.ndarray:
    """The weight (O, I, KH, KW) of the first module with a 4-D weight, in registration order."""
    for _, m in model.named_modules():
        w = getattr(m, "weight", None)
        if isinstance(w, Tensor) and w.ndim == 4:
            return asnumpy(w.data)
    raise ShapeError("plot_filters: the model has no module with a 4-D (conv) weight")


def plot_filters(model_or_weight, path=None, max_filters: int = 64):
    """Grid of first-layer filters: RGB for 3 input channels, grayscale otherwise (mean over inputs).

    Args:
        model_or_weight: a Module (its first conv weight is used) or an array (O, I, KH, KW).
    """
    w = model_or_weight if isinstance(model_or_weight, np.ndarray) else (
        asnumpy(model_or_weight.data) if isinstance(model_or_weight, Tensor) else first_conv_weight(model_or_weight))
    w = w[:max_filters].astype(np.float64)
    rows, cols = _grid(len(w))
    fig = _figure(1.1 * cols + 0.4, 1.1 * rows + 0.6)
    fig.suptitle(f"first-layer filters {tuple(w.shape[1:])}")
    for i, f in enumerate(w):
        ax = fig.add_subplot(rows, cols, i + 1)
        img, cmap = _as_image(f)
        ax.imshow(img, cmap=cmap, interpolation="nearest")
        ax.set_axis_off()
    return _finish(fig, path)


def _layer_output(model, x: Tensor, layer: str) -> np.ndarray:
    mods = dict(model.named_modules())
    if layer not in mods:
        raise ValueError(f"feature_maps: no module named {layer!r}; choose from {[n for n in mods if n]}")
    got: list = []
    handle = mods[layer].register_forward_hook(lambda m, a, y: got.append(y) if not got else None)
    try:
        with no_grad(), eval_mode(model):
            model(x)
    finally:
        handle.remove()
    return asnumpy(got[0].data)


def feature_maps(model, x: Tensor, layer: str) -> np.ndarray:
    """Output (C, H, W) of module ``layer`` for one input ``x`` (C, H, W) or (1, C, H, W)."""
    if x.ndim == 3:
        x = Tensor(x.data[None])
    y = _layer_output(model, x[:1], layer)
    if y.ndim != 4:
        raise ShapeError(f"feature_maps: layer {layer!r} output has shape {y.shape}, expected (N, C, H, W)")
    return y[0]


def plot_feature_maps(model, x: Tensor, layer: str, path=None, max_maps: int = 32):
    """One panel per channel of ``layer``'s output for one input (shared color scale)."""
    maps = feature_maps(model, x, layer)[:max_maps]
    rows, cols = _grid(len(maps))
    fig = _figure(1.2 * cols + 0.4, 1.2 * rows + 0.6)
    fig.suptitle(f"feature maps of {layer} {tuple(maps.shape[1:])}")
    lo, hi = float(maps.min()), float(maps.max())
    for i, m in enumerate(maps):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(m, cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_axis_off()
    return _finish(fig, path)


def plot_activation_histograms(report, path=None, bins: int = 50):
    """Histogram of sampled outputs for each layer of an ActivationReport (log counts)."""
    n = max(len(report), 1)
    cols = min(n, 4)
    rows = int(math.ceil(n / cols))
    fig = _figure(3.2 * cols, 2.4 * rows + 0.4)
    for i, s in enumerate(report):
        ax = fig.add_subplot(rows, cols, i + 1)
        if s.samples is not None and s.samples.size:
            ax.hist(s.samples, bins=bins, color="#4c72b0", log=True)
        ax.set_title(f"{s.name} ({s.type})", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _finish(fig, path)


def plot_correlation(stats, path=None):
    """The unit-by-unit correlation matrix of one LayerStats (constant units blank)."""
    fig = _figure(4.6, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(stats.corr, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax)
    ax.set_title(f"{stats.name}: correlation of {stats.unit_word}\nmean |r| = {stats.mean_abs_corr:.2f}", fontsize=9)
    return _finish(fig, path)


def read_metrics(run) -> list[dict]:
    """Per-epoch records of a run folder's metrics file (JSON lines), or of a .jsonl path.

    ``ember train`` logs both ``{"type": "step", ...}`` and ``{"type": "epoch", ...}``
    records; when typed records are present only the epoch ones are returned.
    """
    p = os.fspath(run)
    if os.path.isdir(p):
        names = sorted(f for f in os.listdir(p) if f.endswith(".jsonl"))
        pref = [f for f in names if f.startswith("metrics")]
        if not (pref or names):
            raise FileNotFoundError(f"read_metrics: no .jsonl metrics file in {p}")
        p = os.path.join(p, (pref or names)[0])
    with open(p) as fh:
        recs = [json.loads(line) for line in fh if line.strip()]
    epochs = [r for r in recs if r.get("type") == "epoch"]
    return epochs or [r for r in recs if "type" not in r] or recs


def plot_training_curves(run, path=None):
    """Loss and accuracy curves (train and validation) against epoch (or step)."""
    recs = read_metrics(run)
    xkey = next((k for k in ("epoch", "step", "iteration") if recs and all(k in r for r in recs)), None)
    keys = sorted({k for r in recs for k, v in r.items() if isinstance(v, (int, float)) and k != xkey})
    panels = [[k for k in keys if "loss" in k], [k for k in keys if "acc" in k]]
    panels = [p for p in panels if p]
    fig = _figure(5.0 * max(len(panels), 1), 3.4)
    for i, group in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for k in group:
            pts = [(r[xkey] if xkey else j, r[k]) for j, r in enumerate(recs) if isinstance(r.get(k), (int, float))]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=k)
        ax.set_xlabel(xkey or "record")
        ax.set_title("loss" if "loss" in group[0] else "accuracy")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path)


def class_activation_map(model, x: Tensor, target=None) -> tuple[np.ndarray, np.ndarray]:
    """Class activation maps (Zhou et al. 2016) for a batch.

    The model must end in global average pooling followed by one Linear layer.
    Returns ``(cams (N, h, w), classes (N,))``: for each image the map of ``target``
    (an int or a sequence of N ints; default: the predicted class), at the resolution
    of the last feature maps.
    """
    calls = trace(model, x)
    fc_i = max((i for i, c in enumerate(calls) if type(c.module).__name__ == "Linear"), default=None)
    if fc_i is None:
        raise ShapeError("class_activation_map: the model has no Linear layer")
    fc = calls[fc_i].module
    K = fc.weight.shape[1]
    feats = None
    for c in reversed(calls[:fc_i]):  # the input of the global pooling is the feature map
        for t in [c.output] + c.inputs:
            if isinstance(t, Tensor) and t.ndim == 4 and t.shape[1] == K and t.shape[2] * t.shape[3] > 1:
                feats = asnumpy(t.data)
                break
        if feats is not None:
            break
    if feats is None:
        raise ShapeError(f"class_activation_map: no (N, {K}, h, w) feature map feeds the last Linear "
                         f"(in_features={K}); CAM needs global average pooling before it")
    logits = asnumpy(calls[-1].output.data) if calls[-1].out_shape and len(calls[-1].out_shape) == 2 else \
        asnumpy(calls[fc_i].output.data)
    cls = logits.argmax(axis=1) if target is None else np.broadcast_to(np.asarray(target), (feats.shape[0],))
    w = asnumpy(fc.weight.data)[cls]  # (N, K)
    return np.einsum("nk,nkhw->nhw", w, feats), cls


def grad_cam(model, x: Tensor, layer: str | None = None, target=None) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM (Selvaraju et al. 2017) for a batch, for any classifier with (N, classes) outputs.

    ``layer``: the leaf module whose output A (N, K, h, w) is explained (its last call; default:
    the last leaf module with a spatial output, the deepest feature maps). Returns ``(maps (N, h,
    w), classes (N,))``: ``ReLU(sum_k alpha_k A_k)`` per image, ``alpha_k`` the mean over (x, y) of
    the gradient of the score of ``target`` (an int or N ints; default: the predicted class) with
    respect to A_k(x, y). The model runs once in eval mode; no ``.grad`` is touched.
    """
    calls = trace(model, x)
    out = calls[-1].output
    if not isinstance(out, Tensor) or out.ndim != 2:
        raise ShapeError(f"grad_cam: the model must end in (N, classes) scores, got the last layer's output "
                         f"{getattr(out, 'shape', None)}")
    spatial = [c for c in calls if isinstance(c.output, Tensor) and c.output.ndim == 4]
    if layer is None:
        picks = [c for c in spatial if c.output.shape[2] * c.output.shape[3] > 1]
        if not picks:
            raise ShapeError("grad_cam: no layer gives an (N, C, h, w) output with h * w > 1")
    else:
        picks = [c for c in spatial if c.name == layer]
        if not picks:
            raise ValueError(f"grad_cam: no leaf module named {layer!r} with a 4-D output; choose one of "
                             f"{sorted({c.name for c in spatial})}")
    a = picks[-1].output
    logits = asnumpy(out.data)
    n = logits.shape[0]
    cls = logits.argmax(axis=1) if target is None else np.broadcast_to(np.asarray(target), (n,))
    seed = np.zeros_like(logits)
    seed[np.arange(n), cls] = 1.0  # the gradient of the chosen class's score, for each image
    (g,) = grad(out, a, grad_outputs=Tensor(to_device(seed, out.device)), allow_unused=True)
    if g is None:
        raise ShapeError(f"grad_cam: the scores do not depend on layer {picks[-1].name!r}")
    alpha = asnumpy(g.data).mean(axis=(2, 3))  # (N, K): each feature map's importance
    return np.maximum(np.einsum("nk,nkhw->nhw", alpha, asnumpy(a.data)), 0.0), cls


def plot_cam(model, x: Tensor, path=None, max_images: int = 8, class_names=None, method: str = "auto"):
    """Each image with its class activation map overlaid (predicted class): ``method`` "cam"
    (Zhou et al.; global average pooling + Linear models only), "grad_cam" (any CNN classifier),
    or "auto" (CAM where the model allows it, else Grad-CAM)."""
    if method not in ("auto", "cam", "grad_cam"):
        raise ValueError(f"plot_cam: method must be 'auto', 'cam' or 'grad_cam', got {method!r}")
    x = x[:max_images]
    if method == "grad_cam":
        cams, cls = grad_cam(model, x)
    else:
        try:
            cams, cls = class_activation_map(model, x)
        except ShapeError:
            if method == "cam":
                raise
            cams, cls = grad_cam(model, x)
            method = "grad_cam"
    imgs = asnumpy(x.data)
    fig = _figure(2.2 * len(imgs), 2.5)
    for i, (img, cam) in enumerate(zip(imgs, cams)):
        ax = fig.add_subplot(1, len(imgs), i + 1)
        im, cmap = _as_image(img)
        H, W = im.shape[:2]
        ax.imshow(im, cmap=cmap, extent=(0, W, H, 0))
        ax.imshow(cam, cmap="jet", alpha=0.45, extent=(0, W, H, 0), interpolation="bilinear")
        ax.set_title(str(class_names[cls[i]]) if class_names else f"class {cls[i]}", fontsize=8)
        ax.set_axis_off()
    fig.suptitle("Grad-CAM" if method == "grad_cam" else "class activation maps", fontsize=9)
    return _finish(fig, path)


def plot_erf(erfs, path=None):
    """Heatmaps of effective receptive fields with the theoretical window outlined."""
    from matplotlib.patches import Rectangle

    erfs = list(erfs)
    fig = _figure(3.0 * len(erfs), 3.3)
    for i, e in enumerate(erfs):
        ax = fig.add_subplot(1, len(erfs), i + 1)
        ax.imshow(e.heatmap, cmap="magma", interpolation="nearest")
        t, l, b, r = e.theoretical
        ax.add_patch(Rectangle((l - 0.5, t - 0.5), r - l + 1, b - t + 1, fill=False, ec="cyan", lw=1))
        m = max(2, (b - t + 1) // 4)  # zoom on the theoretical window (plus a margin)
        ax.set_xlim(max(l - m, 0) - 0.5, min(r + m, e.heatmap.shape[1] - 1) + 0.5)
        ax.set_ylim(min(b + m, e.heatmap.shape[0] - 1) + 0.5, max(t - m, 0) - 0.5)
        ax.set_title(f"{e.layer}\n{100 * e.mass:.0f}% of mass in {100 * e.fraction:.0f}% of RF", fontsize=8)
        ax.set_axis_off()
    fig.tight_layout()
    return _finish(fig, path)

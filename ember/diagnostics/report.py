"""One self-contained HTML report of a model: everything ``ember inspect`` shows.

Sections: the layer table (output shapes, parameters, receptive fields), hidden
activation statistics with a verdict per layer, activation histograms, the
correlation matrix of the most correlated layer, the gradient flow (when the data
carries labels), first-layer filters, feature maps for one input, effective receptive
fields, class activation maps (CAM for classifiers with global average pooling,
Grad-CAM for other CNN classifiers), input attributions (saliency, SmoothGrad,
integrated gradients, occlusion) for classifiers and, given a run folder, the training curves.
Images are PNGs embedded as base64 ``data:`` URIs, so the file can be mailed around.
"""
from __future__ import annotations

import base64
import html
import os
import time

import numpy as np

from ember.autograd import no_grad
from ember.backend import asnumpy
from ember.diagnostics.activations import activation_stats
from ember.diagnostics.attribution import draw_attributions, integrated_gradients, occlusion, saliency, smoothgrad
from ember.diagnostics.gradient_flow import gradient_flow
from ember.diagnostics.receptive_field import effective_receptive_field
from ember.diagnostics.summary import summarize
from ember.diagnostics import visualize as viz
from ember.diagnostics.trace import eval_mode
from ember.errors import DTypeError, ShapeError
from ember.ops.reduce import softmax
from ember.random import Generator
from ember.tensor import Tensor

__all__ = ["build_report"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{margin-bottom:0}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
th{background:#f4f4f4}td.num{text-align:right}img{max-width:100%;display:block;margin:8px 0}
.cards{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.ok{color:#1a7f37}.warn{color:#b35900}.bad{color:#c62828;font-weight:bold}.muted{color:#777}
"""


def _img(fig, alt: str) -> str:
    data = base64.b64encode(viz.png_bytes(fig)).decode("ascii")
    fig.clear()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(rows: list, numeric: set = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>{html.escape(str(c))}</td>'
                         for i, c in enumerate(r)) + "</tr>" for r in rows[1:])
    return f"<table><tr>{head}</tr>{body}</table>"


def _first_batch(data) -> Tensor:
    if isinstance(data, Tensor):
        return data
    if isinstance(data, tuple) and isinstance(data[0], Tensor):
        return data[0]
    b = next(iter(data))
    x = b[0] if isinstance(b, (tuple, list)) else b
    return x if isinstance(x, Tensor) else Tensor(np.asarray(x))


def _first_labels(data):
    """The labels of the first batch when the data carries them ((x, y) pairs), else None."""
    if isinstance(data, Tensor):
        return None
    b = data if isinstance(data, tuple) else next(iter(data))
    if isinstance(b, (tuple, list)) and len(b) >= 2:
        y = b[1] if isinstance(b[1], Tensor) else Tensor(np.asarray(b[1]))
        return y if y.dtype.kind in "iu" else None
    return None


_ATTRIBUTIONS = (("saliency", "saliency"), ("smoothgrad", "SmoothGrad"),
                 ("integrated_gradients", "integrated gradients"), ("occlusion", "occlusion"))


def _centre_share(maps: np.ndarray) -> np.ndarray:
    """(N,) share of each map's total |value| inside the central box of half the height and half
    the width of (N, H, W) maps; NaN for an all-zero map."""
    a = np.abs(maps.astype(np.float64))
    H, W = a.shape[1:]
    box = a[:, H // 4:H - H // 4, W // 4:W - W // 4].sum(axis=(1, 2))
    total = a.sum(axis=(1, 2))
    return np.divide(box, total, out=np.full(len(a), np.nan), where=total > 0)


def _attribution_section(model, x: Tensor, class_names=None, n_samples: int = 16, steps: int = 32) -> list:
    """Input attributions of the predicted class for the images x (N, C, H, W): a picture, what each
    method does, and a table per image. Cost: N * (1 + n_samples + steps) forward-backward passes
    plus N * 49 forwards (occlusion on a 7 x 7 grid of windows), in batches of 64 rows."""
    parts = ["<h2>What the network looks at: input attributions</h2>"]
    if x.ndim != 4:
        return parts + [f'<p class="muted">Skipped: the inputs are {tuple(x.shape[1:])} per sample, not images '
                        f'(C, H, W).</p>']
    with eval_mode(model), no_grad():
        out = model(x)
    if not (isinstance(out, Tensor) and out.ndim == 2 and out.shape[1] >= 2):
        got = tuple(out.shape[1:]) if isinstance(out, Tensor) else type(out).__name__
        kind = " (a segmentation model: one score per pixel and class)" if getattr(out, "ndim", 0) == 4 else ""
        return parts + [f'<p class="muted">Skipped: these methods explain one class score per image, so they '
                        f'need a classifier, (N, C, H, W) -&gt; (N, classes >= 2); this model returns {got} per '
                        f'image{kind}.</p>']
    logits = asnumpy(out.data).astype(np.float64)
    probs = asnumpy(softmax(out, dim=1).data)
    cls = logits.argmax(axis=1)
    H, W = x.shape[2:]
    win, stride = (max(H // 4, 1), max(W // 4, 1)), (max(H // 8, 1), max(W // 8, 1))
    res = {"saliency": saliency(model, x, cls),
           "smoothgrad": smoothgrad(model, x, cls, n_samples=n_samples, generator=Generator(0)),
           "integrated_gradients": integrated_gradients(model, x, cls, steps=steps),
           "occlusion": occlusion(model, x, cls, window=win, stride=stride)}
    names = [str(class_names[c]) if class_names is not None and c < len(class_names) else f"class {c}" for c in cls]
    ig = res["integrated_gradients"]
    delta = ig.score - ig.baseline_score
    rel = np.divide(ig.gap, np.abs(delta), out=np.full(len(cls), np.nan), where=delta != 0)
    centre = {key: _centre_share(res[key].map) for key, _ in _ATTRIBUTIONS}
    uniform = (H - 2 * (H // 4)) * (W - 2 * (W // 4)) / (H * W)
    pct = lambda v: "-" if np.isnan(v) else f"{100 * v:.0f}%"  # noqa: E731
    parts += [
        f"<p>Which input pixels the score of the predicted class depends on, for the first {len(cls)} images "
        "(those of the class activation maps), by four methods that ask the question differently. The network "
        "runs in eval mode; the colour scale is per map (hot: magnitude; red / blue: raises / lowers the "
        "score).</p><ul>",
        "<li><b>Saliency</b> (Simonyan, Vedaldi &amp; Zisserman 2014, <i>Deep Inside Convolutional Networks</i>): "
        "the gradient of the class's logit with respect to the input, largest |value| over the channels: the "
        "pixels whose small change would move the score fastest. One backward pass; noisy, and local: it says "
        "how sensitive the score is to a pixel, not how much that pixel contributes.</li>",
        f"<li><b>SmoothGrad</b> (Smilkov, Thorat, Kim, Vi&eacute;gas &amp; Wattenberg 2017): the same gradient "
        f"averaged over {n_samples} copies of the image with Gaussian noise (standard deviation 15% of the "
        "image's range), which averages away much of the gradient's pixel-to-pixel noise.</li>",
        f"<li><b>Integrated gradients</b> (Sundararajan, Taly &amp; Yan 2017, <i>Axiomatic Attribution for Deep "
        f"Networks</i>): (x - b) times the gradient averaged along the straight path from the baseline b = 0 "
        f"(the training mean for normalized data) to the image x ({steps}-point trapezoid rule), summed over "
        "the channels. The attributions add up to F(x) - F(b), the logit's change from baseline to image "
        "(completeness); the table's gap says how far this quadrature is from it (more steps shrink it).</li>",
        f"<li><b>Occlusion</b> (Zeiler &amp; Fergus 2014, <i>Visualizing and Understanding Convolutional "
        f"Networks</i>): the drop in the class's softmax probability when a {win[0]}x{win[1]} window (stride "
        f"{stride[0]}) of the image is set to 0, averaged over the windows covering each pixel: red regions "
        "matter for the prediction. Forward passes only, so it also works where gradients mislead.</li></ul>",
        "<p>On an untrained network these maps are mostly noise; and some maps change little when the weights "
        "are randomized (Adebayo et al. 2018, <i>Sanity Checks for Saliency Maps</i>), so trust what several "
        "methods agree on. <i>Centre</i>: the share of a map's total |value| inside the central box "
        f"of half the height and half the width ({100 * uniform:.0f}% of the pixels, so {100 * uniform:.0f}% "
        "for a map that ignores position).</p>",
        _img(draw_attributions(asnumpy(x.data), {key: res[key] for key, _ in _ATTRIBUTIONS},
                               [f"{nm} (p={probs[i, c]:.2f})" for i, (nm, c) in enumerate(zip(names, cls))]),
             "input attributions"),
        '<div class="cards">']
    for i, c in enumerate(cls):
        rows = [(f"image {i + 1}", ""), ("predicted class", names[i]), ("probability", f"{probs[i, c]:.3f}"),
                ("logit F(x)", f"{logits[i, c]:.3g}"), ("IG: F(x) - F(0)", f"{delta[i]:.3g}"),
                ("IG: completeness gap", f"{ig.gap[i]:.2g} ({'-' if np.isnan(rel[i]) else f'{100 * rel[i]:.2g}%'})")]
        rows += [(f"centre: {label}", pct(centre[key][i])) for key, label in _ATTRIBUTIONS]
        parts.append(_table(rows, numeric={1}))
    return parts + ["</div>"]


def build_report(model, data, out=None, *, run=None, title: str = "ember model report",
                 max_batches: int | None = None, class_names=None, erf_layers: int = 3,
                 attribution_images: int = 3) -> str:
    """Render the report; write it to ``out`` if given; return the HTML text.

    Args:
        model: an ``ember.nn.Module`` (left unchanged; diagnostics run in eval mode).
        data: a Tensor batch (N, C, H, W), an (x, y) pair, or a loader of batches; its
            first batch is used for pictures, up to ``max_batches`` for statistics.
        run: a training run folder with a metrics ``.jsonl`` file (optional).
        class_names: names of the classes, for the titles of class activation maps and attributions.
        erf_layers: how many layers' effective receptive fields to draw.
        attribution_images: how many of the first images get input attributions (0 leaves
            the section out).
    """
    if isinstance(attribution_images, bool) or not isinstance(attribution_images, (int, np.integer)) \
            or attribution_images < 0:
        raise ValueError(f"build_report: attribution_images must be an int >= 0, got {attribution_images!r}")
    t0 = time.time()
    x = _first_batch(data)
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="muted">input batch {tuple(x.shape)}; generated {time.strftime("%Y-%m-%d %H:%M")}</p>']

    summary = summarize(model, x[:1])
    parts += ["<h2>Layers</h2>", _table(summary.table(), numeric={3}),
              f"<p>parameters: {summary.total:,} ({summary.trainable:,} trainable). RF: theoretical receptive "
              f"field in input pixels; jump: input pixels between neighbouring units.</p>"]

    stats = activation_stats(model, data, max_batches=max_batches)
    pct = lambda v: "-" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    rows = [("layer", "type", "units", "mean", "std", "zeros", "dead", "saturated", "ignore input", "mean |r|")]
    rows += [(s.name, s.type, s.units, f"{s.mean:.3g}", f"{s.std:.3g}", pct(s.sparsity), pct(s.dead),
              pct(s.saturated), pct(s.constant), "-" if np.isnan(s.mean_abs_corr) else f"{s.mean_abs_corr:.2f}")
             for s in stats]
    parts += ["<h2>Hidden activations</h2>",
              "<p>Good training: units are sparse, uncorrelated and vary with the input. Bad training: units "
              "ignore the input (dead, constant, saturated) or correlate strongly.</p>",
              _table(rows, numeric={2, 3, 4, 5, 6, 7, 8, 9}), "<ul>"]
    parts += [f'<li class="{s.level}">{html.escape(s.verdict)}</li>' for s in stats] + ["</ul>"]
    if stats:
        parts.append(_img(viz.plot_activation_histograms(stats), "activation histograms"))
        with_corr = [s for s in stats if not np.isnan(s.mean_abs_corr)]
        if with_corr:
            worst = max(with_corr, key=lambda s: s.mean_abs_corr)
            parts += [f"<p>Most correlated layer: {html.escape(worst.name)}</p>",
                      _img(viz.plot_correlation(worst), f"correlation matrix of {worst.name}")]

    y = _first_labels(data)
    if y is not None:
        try:
            with eval_mode(model):
                flow = gradient_flow(model, x, y)
        except (ShapeError, DTypeError, IndexError):  # outputs and labels that cross entropy cannot pair
            flow = None
        if flow:
            num = lambda v: "-" if v is None else f"{v:.2e}"  # noqa: E731
            rows = [("layer", "type", "|dL/dy| per sample", "zeros", "|dL/dw|", "|dL/dw| / |w|")]
            rows += [(s.name, s.type, num(s.grad_norm), f"{100 * s.zeros:.0f}%", num(s.param_grad_norm),
                      "-" if not s.param_norm else f"{s.param_grad_norm / s.param_norm:.2e}") for s in flow]
            parts += ["<h2>Gradient flow</h2>",
                      "<p>The cross-entropy loss's gradient on the first batch, followed back from the last layer "
                      "to the first (eval mode): a healthy network keeps its size; vanishing or exploding "
                      "gradients shrink or grow it layer by layer.</p>",
                      _table(rows, numeric={2, 3, 4, 5}), "<ul>"]
            parts += [f'<li class="{lv}">{html.escape(t)}</li>' for lv, t in flow.verdicts] + ["</ul>"]

    spatial = [r for r in summary if r.out_shape and len(r.out_shape) == 4 and r.params > 0]
    try:
        fig = viz.plot_filters(model)
        parts += ["<h2>First-layer filters</h2>", _img(fig, "first-layer filters")]
    except ShapeError:
        pass
    if spatial:
        parts.append("<h2>Feature maps (first input)</h2>")
        for r in spatial[:2]:
            parts.append(_img(viz.plot_feature_maps(model, x[:1], r.name, max_maps=16), f"feature maps of {r.name}"))
        picks = sorted({0, len(spatial) // 2, len(spatial) - 1})[:erf_layers]
        erfs = [effective_receptive_field(model, x[:8], spatial[i].name) for i in picks]
        parts += ["<h2>Effective receptive fields</h2>",
                  "<p>Mean |gradient| of the central output unit w.r.t. the input over the batch "
                  "(Luo et al. 2016); the box is the theoretical field.</p>",
                  _img(viz.plot_erf(erfs), "effective receptive fields")]
    try:
        fig = viz.plot_cam(model, x[:6], class_names=class_names)
        parts += ["<h2>Class activation maps</h2>", _img(fig, "class activation maps")]
    except ShapeError:
        pass
    if attribution_images > 0:
        parts += _attribution_section(model, x[:attribution_images], class_names)
    if run is not None:
        parts += ["<h2>Training curves</h2>", _img(viz.plot_training_curves(run), "training curves")]
    parts.append(f'<p class="muted">built in {time.time() - t0:.1f} s by ember.diagnostics</p>')
    text = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")
    if out is not None:
        tmp = os.fspath(out) + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, os.fspath(out))
    return text

"""One self-contained HTML report of a model: everything ``ember inspect`` shows.

Sections: the layer table (output shapes, parameters, receptive fields), hidden
activation statistics with a verdict per layer, activation histograms, the
correlation matrix of the most correlated layer, the gradient flow (when the data
carries labels), first-layer filters, feature maps for one input, effective receptive
fields, class activation maps (CAM for classifiers with global average pooling,
Grad-CAM for other CNN classifiers) and, given a run folder, the training curves.
Images are PNGs embedded as base64 ``data:`` URIs, so the file can be mailed around.
"""
from __future__ import annotations

import base64
import html
import os
import time

import numpy as np

from ember.diagnostics.activations import activation_stats
from ember.diagnostics.gradient_flow import gradient_flow
from ember.diagnostics.receptive_field import effective_receptive_field
from ember.diagnostics.summary import summarize
from ember.diagnostics import visualize as viz
from ember.diagnostics.trace import eval_mode
from ember.errors import DTypeError, ShapeError
from ember.tensor import Tensor

__all__ = ["build_report"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{margin-bottom:0}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
th{background:#f4f4f4}td.num{text-align:right}img{max-width:100%;display:block;margin:8px 0}
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


def build_report(model, data, out=None, *, run=None, title: str = "ember model report",
                 max_batches: int | None = None, class_names=None, erf_layers: int = 3) -> str:
    """Render the report; write it to ``out`` if given; return the HTML text.

    Args:
        model: an ``ember.nn.Module`` (left unchanged; diagnostics run in eval mode).
        data: a Tensor batch (N, C, H, W), an (x, y) pair, or a loader of batches; its
            first batch is used for pictures, up to ``max_batches`` for statistics.
        run: a training run folder with a metrics ``.jsonl`` file (optional).
    """
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

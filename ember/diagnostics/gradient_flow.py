"""How the gradient flows back through a network: vanishing, exploding and blocked gradients.

Backprop multiplies the gradient by each layer's Jacobian on its way down. In a deep stack of
sigmoids each factor is at most 1/4, so the gradient reaching the first layers shrinks
geometrically ("vanishing gradients": those layers barely learn); badly scaled weights can make it
grow instead ("exploding"); and a ReLU that is off for an input passes no gradient at all, so a
layer whose units are mostly off blocks the flow. Good initialization (Glorot, He), normalization
and residual connections exist to keep the gradient's size about the same at every depth.

``gradient_flow(model, x, target)`` runs one forward and backward pass on a batch and reports, per
layer (in forward order): the size of the gradient of the loss with respect to the layer's output
(its L2 norm per sample, averaged over the batch as a root mean square: comparable between layers
of different widths, where a per-element average is not), the fraction of its entries that are
exactly zero, and the norm of the gradient of the layer's own parameters next to the parameters'
norm. It reads the gradients with ``Tensor.register_hook`` and
``ember.autograd.grad``, so no ``.grad`` is touched, and it restores the model's buffers (batch
norm's running statistics), so the model is left as it was.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ember.autograd import grad
from ember.backend import xp_of
from ember.diagnostics.model_check import _resolve_loss
from ember.diagnostics.trace import leaf_modules
from ember.tensor import Tensor

__all__ = ["GradStats", "GradientReport", "gradient_flow"]


@dataclass
class GradStats:
    """The gradient at one layer's output (and of its parameters) for one batch."""

    name: str
    type: str
    grad_norm: float  # d(loss)/d(output)'s L2 norm per sample, root mean square over the batch
    zeros: float  # fraction of d(loss)/d(output) exactly 0 (units that pass no gradient)
    param_grad_norm: float | None  # ||d(loss)/d(w)|| over the layer's own parameters (None: it has none)
    param_norm: float | None  # ||w|| over the same parameters


class GradientReport(list):
    """A list of GradStats in forward order, with ``verdicts`` (level, text); ``str()`` is a table
    followed by the verdicts."""

    verdicts: list

    def __str__(self) -> str:
        head = ("layer", "type", "|dL/dy| per sample", "zeros", "|dL/dw|", "|dL/dw| / |w|")
        num = lambda v: "-" if v is None else f"{v:.2e}"  # noqa: E731
        rows = [(s.name, s.type, num(s.grad_norm), f"{100 * s.zeros:.0f}%", num(s.param_grad_norm),
                 "-" if not s.param_norm else f"{s.param_grad_norm / s.param_norm:.2e}") for s in self]
        w = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
        line = lambda r: "  ".join(c.ljust(x) for c, x in zip(r, w)).rstrip()  # noqa: E731
        return "\n".join([line(head), line(tuple("-" * x for x in w))] + [line(r) for r in rows] + [""] +
                         [f"[{level}] {text}" for level, text in self.verdicts])


def _verdicts(stats: list) -> list:
    """Plain-language judgements: the gradient's size from the last layer to the first, and layers
    whose output gradient is mostly exact zeros."""
    out = []
    bad = [s.name for s in stats if not np.isfinite(s.grad_norm)]
    if bad:
        out.append(("bad", f"the gradient is not finite at {', '.join(bad)}"))
    live = [s for s in stats if np.isfinite(s.grad_norm)]
    if len(live) >= 2:
        first, last = live[0], live[-1]
        ratio = first.grad_norm / last.grad_norm if last.grad_norm > 0 else np.inf if first.grad_norm > 0 else 1.0
        span = f"{first.name} (first) gets {ratio:.1e} times the gradient of {last.name} (last)"
        if ratio < 1e-2:
            out.append(("bad" if ratio < 1e-3 else "warn", f"vanishing gradient: {span}; the early layers "
                        "will barely learn (try ReLU, He/Glorot init, batch norm or residual connections)"))
        elif ratio > 1e2:
            out.append(("bad" if ratio > 1e3 else "warn", f"exploding gradient: {span} (try a smaller init "
                        "scale, normalization or gradient clipping)"))
        else:
            out.append(("ok", f"no vanishing or exploding gradient (within a factor of 100): {span}"))
    # Many exact zeros are normal: before a ReLU the units that are off (about half), before a 2x2 max
    # pool the three of four positions that were not the maximum. None at all reaching a layer is not.
    for s in stats:
        if s.zeros >= 0.99:
            out.append(("bad", f"{s.name} ({s.type}): {100 * s.zeros:.0f}% of its output's gradient entries are "
                        "exactly 0: no gradient gets through to it (dead ReLUs after it?)"))
    return out


def _norm(arrays) -> float:
    return float(np.sqrt(sum(float((xp_of(a).asarray(a, dtype=np.float64) ** 2).sum()) for a in arrays)))


def gradient_flow(model, x: Tensor, target, loss="cross_entropy", layers: list[str] | None = None) -> GradientReport:
    """One batch's gradient at every chosen layer (default: each leaf module with parameters),
    with verdicts on vanishing, exploding and blocked gradients.

    Args:
        model: an ``ember.nn.Module``, run in its current mode (train or eval).
        x, target: a batch and its targets; ``loss``: "cross_entropy", "mse", "nll" or a
            callable ``loss(output, target) -> scalar Tensor``.
        layers: module names to watch, in any order (reported in forward order).
    """
    loss_fn = _resolve_loss(loss, "gradient_flow")
    mods = dict(leaf_modules(model))
    mods.update({n: m for n, m in model.named_modules() if n})
    if layers is None:
        layers = [n for n, m in leaf_modules(model) if next(iter(m.parameters(recurse=False)), None) is not None]
    unknown = [n for n in layers if n not in mods]
    if unknown:
        raise ValueError(f"gradient_flow: no module named {unknown}; choose from {list(mods)}")
    seen: dict = {}  # key -> [module, output gradient array or None], in forward order

    def hook_for(name):
        def forward_hook(module, args, output):
            if not isinstance(output, Tensor) or not output.requires_grad:
                return
            k = sum(1 for key in seen if key == name or key.startswith(name + "#"))
            key = name if k == 0 else f"{name}#{k + 1}"  # a module used twice gets two rows
            seen[key] = [module, None]
            output.register_hook(lambda g: seen[key].__setitem__(1, g.data))
        return forward_hook

    handles = [mods[n].register_forward_hook(hook_for(n)) for n in layers]
    saved = [(b, b.data.copy()) for b in model.buffers()]
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        value = loss_fn(model(x), target)
        grads = grad(value, params, allow_unused=True) if params else ()
    finally:
        for h in handles:
            h.remove()
        for b, data in saved:  # a training-mode forward moved batch norm's running statistics
            b.data[...] = data
    by_param = {id(p): g for p, g in zip(params, grads)}
    stats = []
    for key, (module, g) in seen.items():
        own = [p for p in module.parameters(recurse=False) if id(p) in by_param]
        pg = [by_param[id(p)].data for p in own if by_param[id(p)] is not None]
        if g is None:
            size, zeros = 0.0, 1.0  # no gradient reached this output at all
        else:
            g64 = xp_of(g).asarray(g, dtype=np.float64)
            size = float(np.sqrt(float((g64 ** 2).sum()) / max(g.shape[0], 1))) if g.ndim else abs(float(g64))
            zeros = float((g == 0).mean()) if g.size else 0.0
        stats.append(GradStats(key, type(module).__name__, size, zeros, _norm(pg) if own else None,
                               _norm([p.data for p in own]) if own else None))
    report = GradientReport(stats)
    report.verdicts = _verdicts(stats)
    return report

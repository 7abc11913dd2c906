"""Receptive fields: theoretical (from the layers) and effective (from gradients).

Theoretical field, per spatial axis, propagated layer by layer (Dumoulin & Visin 2016;
Araujo et al. 2019, "Computing receptive fields of CNNs"). For a layer with kernel k,
dilation d, stride s and padding p, with k' = d (k - 1) + 1:

    rf_out    = rf_in + (k' - 1) * jump_in       size of the input window one unit sees
    jump_out  = jump_in * s                       input pixels between neighbouring units
    start_out = start_in + ((k' - 1) / 2 - p) * jump_in    centre of unit 0, in input pixels

Pointwise layers (activations, normalization, dropout) pass the field through.
Where two branches meet (a residual ``out + shortcut``) the larger field wins.
Layers whose output has no spatial axes (Linear, Flatten) see the whole input.

Effective field (Luo et al. 2016, "Understanding the effective receptive field in deep
CNNs"): the gradient of a central output unit with respect to the input, averaged
(in absolute value) over inputs. It is typically Gaussian-shaped and much smaller than
the theoretical field; :class:`ERF` reports which fraction of the theoretical window
holds most (95%) of its mass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ember.autograd import enable_grad, grad
from ember.backend import asnumpy
from ember.diagnostics.trace import Call, eval_mode, first_ancestors, graph_key, trace
from ember.errors import ShapeError
from ember.tensor import Tensor

__all__ = ["Field", "receptive_fields", "effective_receptive_field", "ERF"]


@dataclass(frozen=True)
class Field:
    """Receptive field of one layer's output, per spatial axis (H, W).

    ``rf`` is the window size in input pixels, ``jump`` the input distance between
    adjacent output units (effective stride), ``start`` the centre of output unit 0 in
    input pixel coordinates (pixel i has centre i). ``global_`` marks outputs without
    spatial axes, whose units see the whole input (rf is then the window they cover).
    """

    rf: tuple
    jump: tuple
    start: tuple
    global_: bool = False
    size: tuple = ()  # spatial size of the output this field describes (for a later flatten)

    @property
    def area(self) -> float:
        return float(np.prod(self.rf))

    def text(self) -> str:
        if not self.rf:
            return "-"
        r = f"{self.rf[0]:g}" if len(set(self.rf)) == 1 else "x".join(f"{v:g}" for v in self.rf)
        return f"{r} (all)" if self.global_ else r


def _tup(v, n: int) -> tuple:
    if isinstance(v, (tuple, list)):
        return tuple(v) if len(v) == n else tuple(v) * n if len(v) == 1 else tuple(v[:n])
    return (v,) * n


def _spatial(t) -> tuple | None:
    return tuple(t.shape[2:]) if isinstance(t, Tensor) and t.ndim >= 3 else None


def _make_global(f: Field, size: tuple) -> Field:
    """A unit that pools every position of an input with field ``f`` and spatial ``size``."""
    if f.global_:
        return f
    rf = tuple(r + (n - 1) * j for r, n, j in zip(f.rf, size, f.jump))
    start = tuple(s + (n - 1) / 2 * j for s, n, j in zip(f.start, size, f.jump))
    return Field(rf, tuple(n * j for n, j in zip(size, f.jump)), start, True)


def _layer_rule(call: Call, f: Field, in_size: tuple | None, out_size: tuple | None) -> Field | None:
    """The output field of one leaf module given its input field (None: cannot tell)."""
    m = call.module
    kind = type(m).__name__
    if f.global_ or out_size is None:
        if f.global_:
            return f
        size = in_size if in_size is not None else f.size  # a functional flatten sits in between
        return _make_global(f, size) if size else f
    n = len(out_size)
    if in_size is None:  # spatial output from a non-spatial input (e.g. a decoder's first layer)
        return None
    if "Adaptive" in kind:  # adaptive pooling: window ~ ceil(in/out), stride in // out
        if all(o == 1 for o in out_size):
            return _make_global(f, in_size)
        k = tuple(math.ceil(i / o) for i, o in zip(in_size, out_size))
        s = tuple(max(i // o, 1) for i, o in zip(in_size, out_size))
        return _window(f, k, s, (0,) * n, (1,) * n)
    if hasattr(m, "kernel_size"):
        k = _tup(m.kernel_size, n)
        stride = getattr(m, "stride", None)
        s = _tup(stride if stride not in (None, ()) else m.kernel_size, n)
        d = _tup(getattr(m, "dilation", 1), n)
        pad = getattr(m, "padding", 0)
        if isinstance(pad, str):  # 'same' / 'valid' (stride 1 only in PyTorch)
            pad = tuple((di * (ki - 1)) / 2 for di, ki in zip(d, k)) if pad == "same" else (0,) * n
        p = _tup(pad, n)
        if "Transpose" in kind:
            return _transposed(f, k, s, p, d)
        return _window(f, k, s, p, d)
    if hasattr(m, "scale_factor") and in_size != out_size:  # upsampling
        s = tuple(o / i for o, i in zip(out_size, in_size))
        extra = 0 if getattr(m, "mode", "nearest") == "nearest" else 1
        return Field(tuple(r + extra * j for r, j in zip(f.rf, f.jump)), tuple(j / si for j, si in zip(f.jump, s)),
                     tuple(st + j * (1 / (2 * si) - 0.5) for st, j, si in zip(f.start, f.jump, s)))
    if in_size != out_size:  # an unknown layer that changes the spatial size
        return None
    return f  # pointwise: activation, normalization, dropout, identity


def _window(f: Field, k, s, p, d) -> Field:
    ke = [di * (ki - 1) + 1 for di, ki in zip(d, k)]
    return Field(
        tuple(r + (e - 1) * j for r, e, j in zip(f.rf, ke, f.jump)),
        tuple(j * si for j, si in zip(f.jump, s)),
        tuple(st + ((e - 1) / 2 - pi) * j for st, e, pi, j in zip(f.start, ke, p, f.jump)),
    )


def _transposed(f: Field, k, s, p, d) -> Field:
    # Output o of a transposed conv receives input i where o = i*s - p + d*t; about
    # ceil(k'/s) inputs per output, spaced jump_in apart.
    ke = [di * (ki - 1) + 1 for di, ki in zip(d, k)]
    return Field(
        tuple(r + (math.ceil(e / si) - 1) * j for r, e, si, j in zip(f.rf, ke, s, f.jump)),
        tuple(j / si for j, si in zip(f.jump, s)),
        tuple(st + (pi - (e - 1) / 2) * j / si for st, e, pi, si, j in zip(f.start, ke, p, s, f.jump)),
    )


def fields_from_trace(calls: list[Call]) -> list[Field | None]:
    """Theoretical field of every traced call's output, in call order."""
    if not calls:
        return []
    root = calls[0].root
    n = root.ndim - 2
    known: dict = {id(root): Field((1,) * n, (1,) * n, (0.0,) * n, size=tuple(root.shape[2:]))}
    out = []
    for c in calls:
        ins = [f for t in c.inputs for f in first_ancestors(t, known)]
        ins = [f for f in ins if f is not None]
        src = max(ins, key=lambda f: f.area) if ins else None
        in_t = c.inputs[0] if c.inputs else None
        f = None
        if src is not None and isinstance(c.output, Tensor):
            f = _layer_rule(c, src, _spatial(in_t), _spatial(c.output))
            if f is not None and not f.global_:
                f = replace(f, size=_spatial(c.output) or ())
        if isinstance(c.output, Tensor):
            known[graph_key(c.output)] = f
        out.append(f)
    return out


def receptive_fields(model, x) -> list[tuple[str, str, Field | None]]:
    """Theoretical receptive field of every leaf module, in forward order.

    Args:
        model: an ``ember.nn.Module``.
        x: an example input Tensor (N, C, H, W) (only its shape matters) or a shape tuple.

    Returns:
        ``[(name, type, Field or None), ...]``; None where a layer's rule is unknown.
    """
    if isinstance(x, tuple):
        x = Tensor(np.zeros(x, dtype=np.float32))
    calls = trace(model, x)
    return [(c.name, c.type, f) for c, f in zip(calls, fields_from_trace(calls))]


@dataclass
class ERF:
    """Effective receptive field of one layer (Luo et al. 2016).

    ``heatmap`` (H, W): mean |d y_center / d x| over inputs, summed over input channels,
    normalized to sum 1. ``theoretical`` is the (top, left, bottom, right) window of the
    theoretical field clipped to the input (inclusive). ``fraction`` is the share of
    that window's pixels needed to hold ``mass`` of the heatmap (smallest set first).
    """

    layer: str
    heatmap: np.ndarray
    center: tuple
    theoretical: tuple
    field: Field | None
    mass: float
    fraction: float

    @property
    def support(self) -> np.ndarray:
        """Boolean mask of input pixels with nonzero gradient."""
        return self.heatmap > 0


def effective_receptive_field(model, x, layer: str | None = None, *, n: int = 8, mass: float = 0.95,
                              seed: int = 0) -> ERF:
    """Effective receptive field of ``layer``'s central output unit.

    Args:
        model: an ``ember.nn.Module``; run in eval mode (restored afterwards).
        x: input batch (N, C, H, W) to average over, or a shape (C, H, W) / (N, C, H, W)
            from which ``n`` standard-normal inputs are drawn.
        layer: name of a leaf module with a 4-D output (default: the last such one).
        mass: the share of the heatmap the reported fraction must hold.
    """
    if isinstance(x, tuple):
        shape = x if len(x) == 4 else (n,) + tuple(x)
        x = Tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))
    calls = trace(model, x[:1] if x.shape[0] > 1 else x)
    fields = fields_from_trace(calls)
    spatial = [(c, f) for c, f in zip(calls, fields) if c.out_shape is not None and len(c.out_shape) == 4]
    if not spatial:
        raise ShapeError("effective_receptive_field: no layer produces a 4-D (N, C, H, W) output")
    if layer is None:
        call, field = spatial[-1]
    else:
        match = [(c, f) for c, f in spatial if c.name == layer]
        if not match:
            raise ValueError(f"effective_receptive_field: no leaf module named {layer!r} with a 4-D output; "
                             f"choose one of {[c.name for c, _ in spatial]}")
        call, field = match[0]
    target = call.module
    captured: list = []

    def hook(module, args, output):
        if not captured:
            captured.append(output)

    xin = Tensor(x.data.astype(x.data.dtype if x.dtype.kind == "f" else np.float32, copy=True), requires_grad=True)
    handle = target.register_forward_hook(hook)
    try:
        with enable_grad(), eval_mode(model):
            model(xin)
    finally:
        handle.remove()
    y = captured[0]
    oh, ow = y.shape[2] // 2, y.shape[3] // 2
    # Samples are independent in eval mode, so one backward of the batch sum gives
    # every sample's gradient of its own central unit (summed over channels); grad()
    # leaves the parameters' .grad as they were.
    (gx,) = grad(y[:, :, oh, ow].sum(), xin)
    g = np.abs(asnumpy(gx.data).astype(np.float64)).sum(axis=1).mean(axis=0)
    total = g.sum()
    heat = g / total if total > 0 else g
    H, W = heat.shape
    if field is not None and not field.global_:
        cy = field.start[0] + oh * field.jump[0]
        cx = field.start[1] + ow * field.jump[1]
        half = [(r - 1) / 2 for r in field.rf]
        box = (max(int(math.ceil(cy - half[0])), 0), max(int(math.ceil(cx - half[1])), 0),
               min(int(math.floor(cy + half[0])), H - 1), min(int(math.floor(cx + half[1])), W - 1))
    else:
        box = (0, 0, H - 1, W - 1)
    area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
    vals = np.sort(heat.ravel())[::-1]
    need = int(np.searchsorted(np.cumsum(vals), mass * vals.sum() - 1e-12) + 1) if total > 0 else 0
    return ERF(call.name, heat, (oh, ow), box, field, mass, min(need / max(area, 1), 1.0))

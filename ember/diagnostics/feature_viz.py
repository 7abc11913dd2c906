"""What a unit wants to see: activation maximization, top dataset examples, guided backprop.

- ``maximize_activation``: gradient ascent on the input image to excite one unit (Erhan, Bengio,
  Courville & Vincent 2009, "Visualizing Higher-Layer Features of a Deep Network"), with the
  regularizers of Yosinski, Clune, Nguyen, Fuchs & Lipson 2015, "Understanding Neural Networks
  Through Deep Visualization": L2 decay, a Gaussian blur every few steps, random jitter, clipping.
  Each step maximizes ``a(x) - weight_decay * ||x||^2``, a(x) the unit's activation: the spatial mean
  of a channel (objective "mean") or its centre unit ("center"); for a Linear layer, one unit.
- ``class_model``: the same on a class logit (Simonyan, Vedaldi & Zisserman 2014, "Deep Inside
  Convolutional Networks", class model visualisation: argmax_I S_c(I) - lambda ||I||^2).
- ``dataset_examples``: the k inputs of a dataset that excite a channel most (Zeiler & Fergus 2014).
- ``guided_backprop``: the input gradient where every ReLU's backward also zeroes negative incoming
  gradients (Springenberg, Dosovitskiy, Brox & Riedmiller 2015, "Striving for Simplicity").

All of them run the model in eval mode (restored afterwards) and take gradients with
``ember.autograd.grad``, so no parameter's ``.grad`` changes. Several channels are optimized at once:
one image per channel in one batch, one forward and one backward per step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ember import nn
from ember.autograd import enable_grad, grad, no_grad
from ember.backend import asnumpy, xp_of
from ember.data.dataloader import DataLoader
from ember.data.dataset import Dataset
from ember.diagnostics.attribution import (Attribution, _backward, _channel_max_abs, _forward, _input, _pick,
                                          _positive, _targets)
from ember.diagnostics.trace import eval_mode
from ember.diagnostics.visualize import _as_image, _figure, _finish, _grid
from ember.errors import GraphError, ShapeError
from ember.ops.activation import Relu
from ember.ops.normalize import Normalize
from ember.random import get_generator
from ember.tensor import Tensor

__all__ = ["FeatureVisualization", "TopExamples", "maximize_activation", "class_model", "dataset_examples",
           "guided_backprop"]


def _plot_grid(images: np.ndarray, titles: list, suptitle: str, path):
    rows, cols = _grid(len(images))
    fig = _figure(1.6 * cols + 0.4, 1.7 * rows + 0.6)
    fig.suptitle(suptitle, fontsize=9)
    for i, img in enumerate(images):
        ax = fig.add_subplot(rows, cols, i + 1)
        im, cmap = _as_image(img) if img.ndim == 3 else (img.reshape(1, -1), "viridis")
        ax.imshow(im, cmap=cmap, interpolation="nearest")
        ax.set_title(titles[i], fontsize=7)
        ax.set_axis_off()
    return _finish(fig, path)


@dataclass
class FeatureVisualization:
    """The result of :func:`maximize_activation` / :func:`class_model` for k units.

    ``images`` (k, *input_shape): the input found for each unit; ``units`` (k,): the channel (unit,
    class) each image excites; ``trace`` (steps, k): the unit's activation at each step (on the
    jittered image the step saw); ``activations`` (k,): its activation at the final image.
    """

    images: np.ndarray
    units: np.ndarray
    trace: np.ndarray
    activations: np.ndarray
    layer: str
    objective: str

    def plot(self, path=None):
        """One panel per image (RGB for 3 channels, else grayscale), titled with its unit and
        activation. Returns a matplotlib Figure; with ``path`` also writes a PNG."""
        word = "class" if self.layer == "logits" else "unit"
        titles = [f"{word} {u}: {a:.3g}" for u, a in zip(self.units, self.activations)]
        return _plot_grid(self.images, titles, f"what excites {self.layer} ({self.objective})", path)


@dataclass
class TopExamples:
    """The result of :func:`dataset_examples`: ``inputs`` (k, ...) in decreasing activation,
    ``activations`` (k,), ``indices`` (k,) their positions in the data's iteration order, and
    ``positions`` (k, 2): where in the feature map the channel peaks (-1 for unit outputs)."""

    inputs: np.ndarray
    activations: np.ndarray
    indices: np.ndarray
    positions: np.ndarray
    layer: str
    channel: int

    def plot(self, path=None):
        """One panel per input, titled with its index and activation; returns a Figure."""
        titles = [f"#{i}: {a:.3g}" for i, a in zip(self.indices, self.activations)]
        return _plot_grid(self.inputs, titles, f"top inputs for {self.layer} channel {self.channel}", path)


class _Stop(Exception):
    """Raised by the reading hook: nothing after the watched layer needs to run."""


def _module(op: str, model, layer) -> tuple[str, object]:
    """(name, module) of ``layer``: a name from ``model.named_modules()`` or one of its modules."""
    named = [(n, m) for n, m in model.named_modules() if n]
    for n, m in named:
        if n == layer or m is layer:
            return n, m
    raise ValueError(f"{op}: no module named {layer!r} in the model; valid layers: {[n for n, _ in named]}")


def _run_to(op: str, name: str, model, module, x: Tensor) -> Tensor:
    """The output of ``module`` (of the model when None) at its first call in ``model(x)``."""
    if module is None:
        out = model(x)
    else:
        got: list = []

        def hook(m, args, y):
            got.append(y)
            raise _Stop  # the layers after it would only cost time

        handle = module.register_forward_hook(hook)
        try:
            model(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        if not got:
            raise ValueError(f"{op}: layer {name!r} did not run in the model's forward pass")
        out = got[0]
    if not isinstance(out, Tensor) or out.ndim < 2 or out.shape[0] != x.shape[0]:
        raise ShapeError(f"{op}: {name} must give a batch (N, C, ...) for N={x.shape[0]} inputs, got "
                         f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}")
    return out


def _like(model) -> tuple:
    """(xp, dtype) of the model's first floating parameter (NumPy float32 if it has none)."""
    p = next((p.data for p in model.parameters() if p.data.dtype.kind == "f"), None)
    return (np, np.dtype(np.float32)) if p is None else (xp_of(p), p.dtype)


def _units(op: str, name: str, channel, k: int, width: int) -> np.ndarray:
    if channel is None:
        _positive(op, "k", k)
        return np.arange(min(k, width))
    u = np.asarray(channel)
    if u.dtype.kind not in "iu" or u.ndim > 1 or u.size == 0:
        raise ValueError(f"{op}: channel must be an int, a sequence of ints or None, got {channel!r}")
    bad = (u < 0) | (u >= width)
    if bad.any():
        raise ValueError(f"{op}: channel {int(u[bad].flat[0])} is out of range for {name}, which has {width} "
                         f"channels (valid: 0..{width - 1})")
    return u.reshape(-1).astype(np.int64)


def _seed(shape: tuple, units: np.ndarray, objective: str, xp, dtype):
    """The seed whose dot product with the layer output (k, C, *S) row i is unit units[i]'s activation:
    1/|S| on its channel (mean) or 1 at the channel's centre (center)."""
    seed = xp.zeros(shape, dtype=dtype)
    rows, ch = xp.arange(shape[0]), xp.asarray(units)
    if objective == "mean" or len(shape) == 2:
        seed[rows, ch] = 1.0 / max(int(np.prod(shape[2:])), 1)
    else:
        seed[(rows, ch) + tuple(s // 2 for s in shape[2:])] = 1.0
    return seed


def _blur(x, sigma: float):
    """Separable Gaussian blur of the last two axes (edge padding), one shifted slice per tap."""
    xp = xp_of(x)
    r = max(1, int(np.ceil(3 * sigma)))
    w = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma ** 2))
    w /= w.sum()
    for axis in (-2, -1):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (r, r)
        xpad, n, y = xp.pad(x, pad, mode="edge"), x.shape[axis], xp.zeros_like(x)
        for i, wi in enumerate(w):  # a loop over kernel taps, not pixels
            y += x.dtype.type(wi) * (xpad[:, :, i:i + n] if axis == -2 else xpad[..., i:i + n])
        x = y
    return x


def _check(op: str, input_shape, steps, lr, weight_decay, blur_every, blur_sigma, jitter, clip, init,
           objective) -> tuple:
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else ()
    if not shape or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in shape):
        raise ValueError(f"{op}: input_shape must be the shape of one input, e.g. (C, H, W), got {input_shape!r}")
    _positive(op, "steps", steps)
    for nm, v, lo in (("lr", lr, 0), ("weight_decay", weight_decay, 0), ("blur_sigma", blur_sigma, 0)):
        if not (isinstance(v, (int, float, np.floating)) and v >= lo) or (nm == "lr" and v == 0):
            raise ValueError(f"{op}: {nm} must be a number {'>' if nm == 'lr' else '>='} 0, got {v!r}")
    for nm, v in (("blur_every", blur_every), ("jitter", jitter)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{op}: {nm} must be an int >= 0 (0: off), got {v!r}")
    if clip is not None and not (isinstance(clip, (tuple, list)) and len(clip) == 2 and clip[0] < clip[1]):
        raise ValueError(f"{op}: clip must be None or a pair (lo, hi) with lo < hi, got {clip!r}")
    if init not in ("zeros", "noise"):
        raise ValueError(f"{op}: init must be 'zeros' or 'noise', got {init!r}")
    if objective not in ("mean", "center"):
        raise ValueError(f"{op}: objective must be 'mean' or 'center', got {objective!r}")
    return tuple(int(s) for s in shape)


def _ascend(op: str, model, name: str, module, channel, k: int, input_shape, steps: int, lr: float,
            weight_decay: float, blur_every: int, blur_sigma: float, jitter: int, clip, generator, init: str,
            objective: str) -> FeatureVisualization:
    shape = _check(op, input_shape, steps, lr, weight_decay, blur_every, blur_sigma, jitter, clip, init, objective)
    xp, dtype = _like(model)
    gen = get_generator(generator).np  # drawn on the host: the same shifts and noise on any device
    image = len(shape) == 3  # jitter and blur act on (C, H, W) images only
    with eval_mode(model):
        with no_grad():
            probe = _run_to(op, name, model, module, Tensor(xp.zeros((1,) + shape, dtype=dtype)))
        units = _units(op, name, channel, k, probe.shape[1])
        n = len(units)
        seed = _seed((n,) + tuple(probe.shape[1:]), units, objective, xp, probe.data.dtype)
        start = gen.standard_normal(shape) * 0.1 if init == "noise" else np.zeros(shape)
        # Every unit starts from the same image and sees the same shifts, so its result does not
        # depend on which other units share the batch.
        x = xp.array(np.broadcast_to(start, (n,) + shape), dtype=dtype)
        trace = np.empty((steps, n))
        for t in range(steps):
            dy, dx = (int(v) for v in gen.integers(-jitter, jitter + 1, size=2)) if jitter and image else (0, 0)
            xin = Tensor(xp.roll(x, (dy, dx), axis=(-2, -1)) if (dy or dx) else x, requires_grad=True)
            with enable_grad():
                out = _run_to(op, name, model, module, xin)
            if not out.requires_grad:
                raise GraphError(f"{op}: {name} does not depend on the input, so no gradient can excite it")
            trace[t] = asnumpy((out.data * seed).reshape(n, -1).sum(axis=1))
            (g,) = grad(out, xin, grad_outputs=Tensor(seed))
            g = xp.roll(g.data, (-dy, -dx), axis=(-2, -1)) if (dy or dx) else g.data
            x = x + x.dtype.type(lr) * (g - x.dtype.type(2 * weight_decay) * x)  # ascent on a - wd * ||x||^2
            if image and blur_every and blur_sigma > 0 and (t + 1) % blur_every == 0:
                x = _blur(x, blur_sigma)
            if clip is not None:
                x = xp.clip(x, clip[0], clip[1])
        with no_grad():
            final = _run_to(op, name, model, module, Tensor(x))
    acts = asnumpy((final.data * seed).reshape(n, -1).sum(axis=1))
    return FeatureVisualization(asnumpy(x), units, trace, acts, name, objective)


def maximize_activation(model, layer, channel=None, input_shape=None, k: int = 8, steps: int = 200,
                        lr: float = 0.05, weight_decay: float = 1e-4, blur_every: int = 4, blur_sigma: float = 0.5,
                        jitter: int = 2, clip=None, generator=None, init: str = "zeros",
                        objective: str = "mean") -> FeatureVisualization:
    """The input that maximally excites a unit of ``layer``, by gradient ascent (Erhan et al. 2009;
    regularized as in Yosinski et al. 2015).

    Args:
        model: a Module; it runs in eval mode (restored afterwards); no ``.grad`` is touched.
        layer: a module name (as in ``model.named_modules()``) or the module; its output (N, C, ...)
            at its first call is read with a forward hook (the layers after it do not run).
        channel: the channel (unit of a 2-D output) to excite, a sequence of them (optimized together,
            one image each, in one batch), or None for the first ``k`` channels.
        input_shape: the shape of one input, (C, H, W) (or (D,) for feature vectors).
        steps, lr: plain gradient ascent x += lr * (grad a(x) - 2 * weight_decay * x).
        weight_decay: L2 penalty on the image: for a linear unit w . x the optimum is w / (2 * weight_decay).
        blur_every, blur_sigma: a Gaussian blur (std ``blur_sigma`` pixels) every ``blur_every`` steps (0: off).
        jitter: each step sees the images shifted (circularly) by a random (dy, dx) in [-jitter, jitter],
            the same for the whole batch, drawn from ``generator`` (0: off). Images only, like the blur.
        clip: None or (lo, hi): the pixel range kept after every step.
        init: "zeros" or "noise" (one N(0, 0.1^2) image drawn from ``generator``, the start of every unit;
            in a bias-free conv + batch-norm + ReLU network a zero image can be a dead start: zero gradient).
        objective: "mean" (spatial mean of the channel) or "center" (its centre unit).

    Returns a :class:`FeatureVisualization`: images (k, *input_shape), trace (steps, k), activations (k,).
    """
    name, module = _module("maximize_activation", model, layer)
    return _ascend("maximize_activation", model, name, module, channel, k, input_shape, steps, lr, weight_decay,
                   blur_every, blur_sigma, jitter, clip, generator, init, objective)


def class_model(model, classes, input_shape, steps: int = 200, lr: float = 0.05, weight_decay: float = 1e-4,
                blur_every: int = 4, blur_sigma: float = 0.5, jitter: int = 2, clip=None, generator=None,
                init: str = "zeros") -> FeatureVisualization:
    """Class model visualisation (Simonyan et al. 2014): the image maximizing the logit of each of
    ``classes`` (an int or a sequence) minus ``weight_decay * ||x||^2``; the other arguments and the
    result as in :func:`maximize_activation` (``units`` holds the classes, ``layer`` is "logits")."""
    if classes is None:
        raise ValueError("class_model: classes must be an int or a sequence of ints, got None")
    return _ascend("class_model", model, "logits", None, classes, 1, input_shape, steps, lr, weight_decay,
                   blur_every, blur_sigma, jitter, clip, generator, init, "mean")


def _batches(data, batch_size: int):
    """Input arrays from a Tensor/array batch, an (x, y) pair, a Dataset, or an iterable of batches."""
    if isinstance(data, tuple) and data and isinstance(data[0], (Tensor, np.ndarray)):
        data = data[0]
    if isinstance(data, (Tensor, np.ndarray)):
        xd = data.data if isinstance(data, Tensor) else data
        for a in range(0, len(xd), batch_size):
            yield xd[a:a + batch_size]
        return
    samples = isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")
                                            and not isinstance(data, (list, tuple)))  # a map-style dataset
    for b in (DataLoader(data, batch_size=batch_size) if samples else data):
        x = b[0] if isinstance(b, (tuple, list)) else b
        yield x.data if isinstance(x, Tensor) else np.asarray(x)


def dataset_examples(model, layer, data, channel: int, k: int = 9, objective: str = "max",
                     batch_size: int = 128) -> TopExamples:
    """The ``k`` inputs of ``data`` that excite ``channel`` of ``layer`` most (Zeiler & Fergus 2014's
    "top activating" view), found batch by batch with a running top-k (no per-sample loop).

    Args:
        data: a batch (Tensor or array (N, ...)), an (x, y) pair, an ember Dataset (read in batches of
            ``batch_size``) or an iterable of batches (a DataLoader; ``x`` or ``(x, y, ...)`` each).
        objective: how a channel's map becomes one number per input: "max" (its strongest position),
            "mean" (spatial mean) or "center" (the centre unit).

    Returns :class:`TopExamples`, highest first (ties: the earlier input first).
    """
    op = "dataset_examples"
    name, module = _module(op, model, layer)
    _positive(op, "k", k)
    _positive(op, "batch_size", batch_size)
    if not isinstance(channel, (int, np.integer)) or isinstance(channel, bool):
        raise ValueError(f"{op}: channel must be one int, got {channel!r}")
    if objective not in ("max", "mean", "center"):
        raise ValueError(f"{op}: objective must be 'max', 'mean' or 'center', got {objective!r}")
    xp, dtype = _like(model)
    top = None  # (inputs, scores, indices, positions) of the best so far, best first
    seen = 0
    with eval_mode(model), no_grad():
        for xd in _batches(data, batch_size):
            xd = xp.asarray(xd)
            y = _run_to(op, name, model, module, Tensor(xd if xd.dtype.kind == "f" else xd.astype(dtype))).data
            (c,) = _units(op, name, channel, 1, y.shape[1])
            m = y[:, int(c)].reshape(len(y), -1)  # (B, positions) of the channel
            if objective == "center":
                mid = np.ravel_multi_index(tuple(d // 2 for d in y.shape[2:]), y.shape[2:]) if y.ndim > 2 else 0
                s = m[:, int(mid)]
            else:
                s = m.max(axis=1) if objective == "max" else m.mean(axis=1)
            s = asnumpy(s).astype(np.float64)
            best = np.argsort(-s, kind="stable")[:k]  # only these can enter the top k: move just them
            peak = asnumpy(m[xp.asarray(best)].argmax(axis=1))
            pos = np.stack(np.unravel_index(peak, y.shape[2:]), axis=1) if y.ndim == 4 else np.full((len(best), 2), -1)
            cand = (asnumpy(xd[xp.asarray(best)]), s[best], seen + best, pos)
            seen += len(y)
            if top is not None:  # the earlier inputs first, so that the stable sort keeps them first among ties
                cand = tuple(np.concatenate([a, b]) for a, b in zip(top, cand))
            keep = np.argsort(-cand[1], kind="stable")[:k]
            top = tuple(a[keep] for a in cand)
    if top is None:
        raise ValueError(f"{op}: data holds no inputs")
    return TopExamples(top[0], top[1], top[2], top[3], name, int(channel))


def _guide(op: str, out: Tensor) -> None:
    """Make every ReLU between ``out`` and the input pass only positive gradients backwards: a
    gradient hook on each ReLU node's output (where ``Tensor.register_hook`` keeps a non-leaf's
    hooks) clamps the incoming gradient at 0, and the ReLU's own backward then zeroes x <= 0."""
    stack, seen = [out.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        if type(fn) is Relu:
            fn.__dict__.setdefault("hooks", {})[op] = lambda g: Tensor(xp_of(g.data).maximum(g.data, 0))
        elif type(fn) is Normalize and fn.relu:
            raise GraphError(f"{op}: the model applies a ReLU fused into batch norm (batch_norm(..., relu=True)) "
                             "outside an nn.ReLU module; guided backprop cannot reach that ReLU")
        stack.extend(p for p in getattr(fn, "next", ()) if p is not None and not isinstance(p, Tensor))


def guided_backprop(model, x, target=None) -> Attribution:
    """Guided backpropagation (Springenberg et al. 2015): d score[target] / d x where every ReLU's
    backward passes only positive gradients through positive inputs: gx = (x > 0) * max(gy, 0).

    Works for ``nn.ReLU`` modules and ``F.relu`` calls alike (the ReLU nodes are found in the graph);
    while it runs, a hook on each ``nn.ReLU`` makes ResNet's ``bn_relu`` run batch norm and ReLU as
    separate ops. Returns an :class:`Attribution` ("guided_backprop"): ``attributions`` the guided
    gradient (N, C, H, W), ``map`` (N, H, W) its max over channels of |.|.
    """
    op = "guided_backprop"
    x = _input(op, x)
    handles = [m.register_forward_hook(lambda *a: None) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with eval_mode(model):
            xin, out = _forward(op, model, x.data)
            cls = _targets(op, target, out.data)
            _guide(op, out)
            g = asnumpy(_backward(xin, out, cls))
    finally:
        for h in handles:
            h.remove()
    return Attribution(op, _channel_max_abs(g), g, cls, _pick(out.data, cls))

"""Input attribution: which input pixels (or features) a classifier's score depends on.

Four methods, all for any classifier Module that maps (N, C, H, W) images (or (N, D) feature
vectors) to (N, classes) scores, explaining for each input the score of ``target`` (an int,
one int per input, or None for the predicted class):

- ``saliency``: the vanilla gradient d score / d x (Simonyan, Vedaldi & Zisserman 2014, "Deep
  Inside Convolutional Networks: Visualising Image Classification Models and Saliency Maps");
  the map of a pixel is the largest |gradient| over its channels, as in the paper.
- ``smoothgrad``: the mean gradient over noisy copies x + N(0, sigma^2), sigma = noise_level *
  (max(x) - min(x)) per input (Smilkov et al. 2017, "SmoothGrad: removing noise by adding noise").
- ``integrated_gradients``: (x - b) * the mean gradient along the straight path from a baseline b
  to x (Sundararajan, Taly & Yan 2017, "Axiomatic Attribution for Deep Networks"). The attributions
  add up to F(x) - F(b) (completeness); the returned ``gap`` says how far the quadrature is from it.
- ``occlusion``: the drop in the target's softmax probability when a window of the input is
  covered (Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks").

The score F is the model's output (a logit) for the target. Every method runs the model in eval
mode (restored afterwards), takes gradients with ``ember.autograd.grad`` so no parameter's
``.grad`` changes, evaluates its noisy copies / path points / occluded copies in batches of
``batch_size`` (one forward and one backward per batch), and computes on the device of ``x``;
the results come back as NumPy arrays in an :class:`Attribution`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ember.autograd import enable_grad, grad, no_grad
from ember.backend import asnumpy, xp_of
from ember.diagnostics.trace import eval_mode
from ember.diagnostics.visualize import _as_image, _figure, _finish
from ember.errors import DeviceError, DTypeError, ShapeError
from ember.ops.reduce import softmax
from ember.random import rng_for
from ember.tensor import Tensor

__all__ = ["Attribution", "saliency", "smoothgrad", "integrated_gradients", "occlusion", "plot_attributions",
           "draw_attributions"]


@dataclass
class Attribution:
    """What an attribution method found, for a batch of N inputs x (N, C, H, W) or (N, D).

    ``map``: one value per pixel, (N, H, W) (per feature, (N, D), for 2-D inputs): max over
    channels of |gradient| (saliency, smoothgrad), the attributions summed over channels (integrated
    gradients: still adds up to F(x) - F(b)), or the mean probability drop of the windows covering
    the pixel (occlusion; 0 where no window reaches). ``attributions``: the method's raw output: the
    gradient (N, C, H, W) (saliency), the mean gradient (smoothgrad), the attributions (integrated
    gradients) or the drop per window position (N, H', W') (occlusion). ``target`` (N,): the class
    explained; ``score`` (N,): its logit at x. Integrated gradients also fill ``baseline_score``
    (F(b), (N,)) and ``gap`` (N,): |sum(attributions) - (F(x) - F(b))|.
    """

    method: str
    map: np.ndarray
    attributions: np.ndarray
    target: np.ndarray
    score: np.ndarray
    baseline_score: np.ndarray | None = None
    gap: np.ndarray | None = None


def _input(op: str, x) -> Tensor:
    """The input as a detached float Tensor with a batch axis and at least one feature axis."""
    data = x.data if isinstance(x, Tensor) else x
    data = data if hasattr(data, "ndim") else np.asarray(data)
    if data.ndim < 2 or data.shape[0] == 0:
        raise ShapeError(f"{op}: x must be a batch (N, C, H, W) or (N, D) with N >= 1, got shape {tuple(data.shape)}")
    if data.dtype.kind != "f":
        data = data.astype(np.float32)
    return Tensor(data)


def _check_scores(op: str, out, n: int):
    if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != n:
        raise ShapeError(f"{op}: the model must return (N, classes) scores for N={n} inputs, got "
                         f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}")
    return out


def _scores(op: str, model, xs) -> object:
    """The model's (rows, classes) scores for the raw array ``xs``, without a graph."""
    with no_grad():
        return _check_scores(op, model(Tensor(xs)), xs.shape[0]).data


def _targets(op: str, target, logits) -> np.ndarray:
    """``target`` checked against the scores (N, K) and broadcast to (N,) int64."""
    n, k = logits.shape
    if target is None:
        return asnumpy(logits.argmax(axis=1)).astype(np.int64)
    t = asnumpy(target.data if isinstance(target, Tensor) else target)
    if t.dtype.kind not in "iu":  # bools and floats are not class indices
        raise DTypeError(f"{op}: target must be an int, a sequence of ints or None, got dtype {t.dtype}")
    if t.ndim > 1 or (t.ndim == 1 and len(t) != n):
        raise ShapeError(f"{op}: target has shape {tuple(t.shape)} but x holds {n} inputs (expected an int or "
                         f"{n} ints)")
    bad = (t < 0) | (t >= k)
    if bad.any():
        raise ValueError(f"{op}: target {int(t[bad].flat[0])} is out of range for a model with {k} classes "
                         f"(valid: 0..{k - 1})")
    return np.broadcast_to(t, (n,)).astype(np.int64)


def _pick(scores, cls: np.ndarray) -> np.ndarray:
    """scores[i, cls[i]] for every row, as float64 NumPy."""
    return asnumpy(scores).astype(np.float64)[np.arange(len(cls)), cls]


def _forward(op: str, model, xs):
    """A forward of the raw array ``xs`` that records the graph back to a fresh input leaf."""
    xin = Tensor(xs, requires_grad=True)
    with enable_grad():
        return xin, _check_scores(op, model(xin), xs.shape[0])


def _backward(xin: Tensor, out: Tensor, cls: np.ndarray):
    """d out[i, cls[i]] / d xin[i] for every row i, in one backward: rows are independent in eval
    mode, so the seed one-hot(cls) gives each row the gradient of its own score."""
    xp = xp_of(out.data)
    seed = xp.zeros(out.shape, dtype=out.dtype)
    seed[xp.arange(len(cls)), xp.asarray(cls)] = 1
    (g,) = grad(out, xin, grad_outputs=Tensor(seed))
    return g.data


def _sum_rows(g, seg: np.ndarray, n: int, w=None):
    """Rows of g (B, ...) summed into n groups by ``seg`` (B,) (optionally weighted by w (B,)): one
    GEMM with a (n, B) one-hot matrix, on either device, with no scatter."""
    xp = xp_of(g)
    m = (xp.asarray(seg)[None, :] == xp.arange(n)[:, None]).astype(g.dtype)
    if w is not None:
        m *= xp.asarray(w, dtype=g.dtype)[None, :]
    return (m @ g.reshape(len(seg), -1)).reshape((n,) + g.shape[1:])


def _weighted_grads(op: str, model, like, img: np.ndarray, cls: np.ndarray, weights: np.ndarray, batch_size: int,
                    make) -> object:
    """sum over rows r of weights[r] * d score[cls[img[r]]] / d input_r, per image (shaped like ``like``),
    where ``make(rows)`` builds the inputs of a batch of rows (row r belongs to image img[r]; a
    batch may span several images): one forward and one backward per batch."""
    acc = xp_of(like).zeros_like(like)
    for a in range(0, len(img), batch_size):
        rows = np.arange(a, min(a + batch_size, len(img)))
        i = img[rows]
        g = _backward(*_forward(op, model, make(rows)), cls[i])
        lo, hi = int(i[0]), int(i[-1]) + 1
        acc[lo:hi] += _sum_rows(g, i - lo, hi - lo, weights[rows])
    return acc


def _channel_max_abs(g) -> np.ndarray:
    g = asnumpy(g)
    return np.abs(g).max(axis=1) if g.ndim > 2 else np.abs(g)


def _positive(op: str, name: str, v) -> None:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{op}: {name} must be a positive int, got {v!r}")


def saliency(model, x, target=None, abs: bool = True) -> Attribution:
    """Vanilla gradient saliency (Simonyan et al. 2014): d score[target] / d x.

    Args:
        model: a classifier Module, x (N, ...) -> (N, classes).
        x: inputs (N, C, H, W) or (N, D).
        target: the class to explain: an int, N ints, or None (the predicted class).
        abs: the map holds max over channels of |gradient| (as in the paper); with False it keeps
            the sign of that largest-magnitude gradient.

    Returns an :class:`Attribution`: ``map`` (N, H, W), ``attributions`` the raw gradient (N, C, H, W).
    """
    x = _input("saliency", x)
    with eval_mode(model):
        xin, out = _forward("saliency", model, x.data)
        cls = _targets("saliency", target, out.data)
        g = asnumpy(_backward(xin, out, cls))
    m = _channel_max_abs(g)
    if not abs:  # keep the sign of the gradient whose magnitude the map shows
        m = np.take_along_axis(g, np.abs(g).argmax(axis=1)[:, None], axis=1)[:, 0] if g.ndim > 2 else g
    return Attribution("saliency", m, g, cls, _pick(out.data, cls))


def _bshape(n: int, ndim: int) -> tuple:
    return (n,) + (1,) * (ndim - 1)


def smoothgrad(model, x, target=None, n_samples: int = 25, noise_level: float = 0.15, generator=None,
               batch_size: int = 64) -> Attribution:
    """SmoothGrad (Smilkov et al. 2017): the gradient of score[target] averaged over ``n_samples``
    noisy copies x + N(0, sigma^2) of each input, sigma = ``noise_level`` * (max(x_i) - min(x_i)).

    The N * n_samples copies are drawn from ``generator`` (an ``ember.Generator``; default: the
    default generator) and evaluated ``batch_size`` rows at a time. ``target`` defaults to the class
    predicted for the clean input. Returns an :class:`Attribution`: ``attributions`` the mean
    gradient (N, C, H, W), ``map`` (N, H, W) its max over channels of |.|; with noise_level=0 both
    equal :func:`saliency`'s.
    """
    op = "smoothgrad"
    x = _input(op, x)
    _positive(op, "batch_size", batch_size)
    _positive(op, "n_samples", n_samples)
    if not noise_level >= 0:
        raise ValueError(f"{op}: noise_level must be >= 0, got {noise_level!r}")
    xd = x.data
    xp, n = xp_of(xd), xd.shape[0]
    flat = xd.reshape(n, -1)
    sigma = (noise_level * (flat.max(axis=1) - flat.min(axis=1))).astype(xd.dtype)
    rng = rng_for(generator, xd)
    img = np.repeat(np.arange(n), n_samples)  # copy j of image i sits in row i * n_samples + j

    def noisy(rows):  # drawn batch by batch, in row order
        ii = xp.asarray(img[rows])
        noise = rng.standard_normal((len(rows),) + xd.shape[1:], dtype=xd.dtype)
        return xd[ii] + sigma[ii].reshape(_bshape(len(rows), xd.ndim)) * noise

    with eval_mode(model):
        scores = _scores(op, model, xd)
        cls = _targets(op, target, scores)
        total = _weighted_grads(op, model, xd, img, cls, np.ones(len(img)), batch_size, noisy)
    mean = asnumpy(total / n_samples)
    return Attribution(op, _channel_max_abs(mean), mean, cls, _pick(scores, cls))


def _path(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points alpha in [0, 1] and weights for the integral over the path (they sum to 1)."""
    if method == "riemann_trapezoid":
        if steps < 2:
            raise ValueError(f"integrated_gradients: method 'riemann_trapezoid' needs steps >= 2, got {steps}")
        w = np.full(steps, 1.0 / (steps - 1))
        w[[0, -1]] /= 2
        return np.linspace(0.0, 1.0, steps), w
    if method == "gauss_legendre":
        t, w = np.polynomial.legendre.leggauss(steps)  # on [-1, 1]; map to [0, 1]
        return (t + 1) / 2, w / 2
    raise ValueError(f"integrated_gradients: method must be 'riemann_trapezoid' or 'gauss_legendre', got {method!r}")


def _baseline(x: Tensor, baseline):
    """The baseline as a raw array of x's shape, dtype and device."""
    xd = x.data
    xp = xp_of(xd)
    if baseline is None:
        return xp.zeros_like(xd)
    if isinstance(baseline, Tensor):
        if baseline.device != x.device:
            raise DeviceError(f"integrated_gradients: baseline is on {baseline.device} but x is on {x.device}")
        baseline = baseline.data
    elif xp is np and xp_of(baseline) is not np:
        raise DeviceError("integrated_gradients: baseline is a GPU array but x is on the CPU")
    b = xp.asarray(baseline, dtype=xd.dtype)
    try:
        return xp.ascontiguousarray(xp.broadcast_to(b, xd.shape))
    except ValueError:
        raise ShapeError(f"integrated_gradients: baseline of shape {tuple(b.shape)} does not broadcast to x's "
                         f"shape {tuple(xd.shape)}") from None


def integrated_gradients(model, x, target=None, baseline=None, steps: int = 50,
                         method: str = "riemann_trapezoid", batch_size: int = 64) -> Attribution:
    """Integrated gradients (Sundararajan, Taly & Yan 2017): for each input element,
    ``(x - b) * integral_0^1 dF(b + a (x - b)) / dx da``, F the score of ``target``.

    The integral is a quadrature over ``steps`` path points: ``"riemann_trapezoid"`` (equally
    spaced, both ends included) or ``"gauss_legendre"`` (exact for polynomial paths of degree
    < 2 * steps). ``baseline`` (default zeros) is anything that broadcasts to x (a scalar, (C, H, W),
    (N, C, H, W)). The N * steps path points are evaluated ``batch_size`` rows at a time.
    Returns an :class:`Attribution` whose ``gap`` (N,) = |sum(attributions) - (F(x) - F(b))| (the
    completeness axiom; it shrinks as steps grow), ``attributions`` (N, C, H, W) and ``map``
    (N, H, W) their sum over channels.
    """
    op = "integrated_gradients"
    x = _input(op, x)
    _positive(op, "batch_size", batch_size)
    _positive(op, "steps", steps)
    alphas, weights = _path(method, steps)
    xd = x.data
    xp, n = xp_of(xd), xd.shape[0]
    b = _baseline(x, baseline)
    diff = xd - b
    img, k = np.divmod(np.arange(n * steps), steps)  # point k of image i sits in row i * steps + k

    def points(rows):
        ii = xp.asarray(img[rows])
        return b[ii] + xp.asarray(alphas[k[rows]], dtype=xd.dtype).reshape(_bshape(len(rows), xd.ndim)) * diff[ii]

    with eval_mode(model):
        both = _scores(op, model, xp.concatenate([xd, b]))  # F(x) and F(b) in one forward
        cls = _targets(op, target, both[:n])
        acc = _weighted_grads(op, model, xd, img, cls, weights[k], batch_size, points)
    attr = asnumpy(diff * acc)
    fx, fb = _pick(both[:n], cls), _pick(both[n:], cls)
    gap = np.abs(attr.reshape(n, -1).sum(axis=1, dtype=np.float64) - (fx - fb))
    m = attr.sum(axis=1) if attr.ndim > 2 else attr
    return Attribution(op, m, attr, cls, fx, baseline_score=fb, gap=gap)


def _pair(op: str, name: str, v, k: int) -> tuple:
    t = tuple(v) if isinstance(v, (tuple, list)) else (v,) * k
    if len(t) != k or not all(isinstance(e, (int, np.integer)) and e >= 1 for e in t):
        raise ValueError(f"{op}: {name} must be a positive int or {k} positive ints, got {v!r}")
    return t


def _cover(size: int, window: int, stride: int) -> np.ndarray:
    """(positions, size) bool: which of ``size`` pixels the window at each position covers."""
    starts = np.arange((size - window) // stride + 1) * stride
    pix = np.arange(size)
    return (pix[None, :] >= starts[:, None]) & (pix[None, :] < starts[:, None] + window)


def occlusion(model, x, target=None, window=8, stride=4, fill=0.0, batch_size: int = 64) -> Attribution:
    """Occlusion sensitivity (Zeiler & Fergus 2014): the drop in the softmax probability of
    ``target`` when a ``window`` of the input is replaced by ``fill``.

    The window (an int or (h, w); for (N, D) inputs an int over the features) slides with
    ``stride`` over the spatial axes, covering all channels; ``fill`` is a number or ``"mean"``
    (each input's per-channel mean). All N * H' * W' occluded copies are evaluated ``batch_size``
    at a time. Returns an :class:`Attribution`: ``attributions`` (N, H', W') the drop at each window
    position (H' = (H - h) // stride + 1), ``map`` (N, H, W) the mean drop over the windows that
    cover each pixel (0 where none does). Positive: covering that region hurts the target's score.
    """
    op = "occlusion"
    x = _input(op, x)
    _positive(op, "batch_size", batch_size)
    xd = x.data
    xp, n = xp_of(xd), xd.shape[0]
    sp = 2 if xd.ndim > 2 else 1  # first spatial axis: (N, C, *spatial) or (N, D)
    size = xd.shape[sp:]
    win = _pair(op, "window", window, len(size))
    st = _pair(op, "stride", stride, len(size))
    if any(w > s for w, s in zip(win, size)):
        raise ShapeError(f"{op}: window {win} is larger than the input's spatial size {tuple(size)}")
    if isinstance(fill, str) and fill == "mean":
        fills = xd.mean(axis=tuple(range(sp, xd.ndim)), keepdims=True)
    elif isinstance(fill, (int, float, np.number)) and not isinstance(fill, bool):
        fills = xp.full(_bshape(n, xd.ndim), fill, dtype=xd.dtype)
    else:
        raise ValueError(f"{op}: fill must be a number or 'mean', got {fill!r}")
    covers = [_cover(s, w, t) for s, w, t in zip(size, win, st)]
    on_device = [xp.asarray(c) for c in covers]
    grid = tuple(c.shape[0] for c in covers)
    rows = np.arange(n * int(np.prod(grid)))  # window p of image i sits in row i * P + p
    img, pos = np.divmod(rows, int(np.prod(grid)))
    drops = np.empty(len(rows))
    with eval_mode(model):
        scores = _scores(op, model, xd)
        cls = _targets(op, target, scores)
        p0 = _pick(softmax(Tensor(scores), dim=1).data, cls)
        for a in range(0, len(rows), batch_size):
            i, ii = img[a:a + batch_size], xp.asarray(img[a:a + batch_size])
            at = np.unravel_index(pos[a:a + batch_size], grid)  # the window's position along each axis
            mask = xp.ones((len(i),) + (1,) * len(size), dtype=bool)
            for d, c in enumerate(on_device):  # the window is the product of one interval per axis
                cut = c[xp.asarray(at[d])]
                mask = mask & cut.reshape((len(i),) + tuple(s if e == d else 1 for e, s in enumerate(size)))
            mask = mask if sp == 1 else mask[:, None]
            copies = xp.where(mask, fills[ii], xd[ii])
            with no_grad():
                probs = softmax(_check_scores(op, model(Tensor(copies)), len(i)), dim=1).data
            drops[a:a + len(i)] = p0[i] - _pick(probs, cls[i])
    drops = drops.reshape((n,) + grid)
    heat, count = drops, np.ones(())
    for c in covers:  # contract each window axis with its cover matrix: sum of drops over covering windows
        heat = np.tensordot(heat, c.astype(np.float64), axes=([1], [0]))
        count = np.multiply.outer(count, c.sum(axis=0))
    heat = np.divide(heat, count, out=np.zeros_like(heat), where=count > 0)
    return Attribution(op, heat, drops, cls, _pick(scores, cls))


_METHODS = {"saliency": saliency, "smoothgrad": smoothgrad, "integrated_gradients": integrated_gradients,
            "occlusion": occlusion}
_SIGNED = ("integrated_gradients", "occlusion")  # maps with a sign: diverging colors centred on 0


def plot_attributions(model, x, path=None, methods=("saliency", "smoothgrad", "integrated_gradients", "occlusion"),
                      class_names=None, max_images: int = 6, target=None):
    """A grid of attribution maps: one row per image (at most ``max_images``), the image first,
    then one column per method (names of this module's functions, run with their defaults).

    ``x`` (N, C, H, W); ``target`` as in the methods (default: the predicted class), whose name
    (``class_names[c]``, else "class c") titles each row. Returns a matplotlib Figure; with
    ``path`` also writes it as a PNG.
    """
    x = _input("plot_attributions", x)
    if x.ndim != 4:
        raise ShapeError(f"plot_attributions: x must be images (N, C, H, W), got shape {tuple(x.shape)}")
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    unknown = [m for m in methods if m not in _METHODS]
    if unknown or not methods:
        raise ValueError(f"plot_attributions: unknown methods {unknown}; choose from {list(_METHODS)}")
    if target is not None:  # one target per image: keep those of the images drawn
        t = asnumpy(target.data if isinstance(target, Tensor) else target)
        if t.ndim == 1 and len(t) != x.shape[0]:
            raise ShapeError(f"plot_attributions: target has {len(t)} entries but x holds {x.shape[0]} images")
        target = t[:max_images] if t.ndim == 1 else target
    x = Tensor(x.data[:max_images])
    results = {m: _METHODS[m](model, x, target=target) for m in methods}
    cls = results[methods[0]].target
    titles = [str(class_names[int(c)]) if class_names is not None else f"class {int(c)}" for c in cls]
    return draw_attributions(asnumpy(x.data), results, titles, path)


def draw_attributions(images: np.ndarray, results: dict, titles: list, path=None):
    """The grid of ``plot_attributions`` from results already computed: ``images`` (N, C, H, W),
    ``results`` {method name: Attribution for those images} (columns in its order), ``titles`` one
    per row. Signed maps (integrated gradients, occlusion) get diverging colours centred on 0."""
    n, cols = len(images), len(results) + 1
    fig = _figure(2.0 * cols, 2.1 * n + 0.3)
    for i, img in enumerate(images):
        ax = fig.add_subplot(n, cols, i * cols + 1)
        im, cmap = _as_image(img)
        ax.imshow(im, cmap=cmap, interpolation="nearest")
        ax.set_title(titles[i], fontsize=8)
        ax.set_axis_off()
        for j, (name, r) in enumerate(results.items()):
            ax = fig.add_subplot(n, cols, i * cols + j + 2)
            m = r.map[i]
            if name in _SIGNED:
                lim = float(np.abs(m).max()) or 1.0
                ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            else:
                ax.imshow(m, cmap="hot", interpolation="nearest")
            if i == 0:
                ax.set_title(name.replace("_", " "), fontsize=8)
            ax.set_axis_off()
    fig.tight_layout()
    return _finish(fig, path)

"""Loss-landscape views: the loss along a line in weight space, and on a plane around a network.

``interpolate`` walks the line from theta_a to theta_b (Goodfellow, Vinyals & Saxe 2015); ``loss_surface``
evaluates a grid around the model's weights along random filter-normalized directions (Li, Xu, Taylor,
Studer & Goldstein 2018, ``random_directions``). A ReLU network is unchanged when a filter is scaled up
and the next layer down, so without filter normalization a step would mean more to small filters than
to large ones, and pictures of different networks could not be compared.

The model is left as it was: parameters and buffers get scratch copies during the sweep, and the
original arrays (never written), version counters, modes and BN momenta come back in a ``finally``.
Points run in eval mode under ``no_grad`` on the same batches (read once, moved to the model's
device); the loss over batches is their mean weighted by batch size.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Iterator, Mapping

import numpy as np

from ember.autograd import no_grad
from ember.backend import to_device, xp_of
from ember.diagnostics.model_check import _resolve_loss
from ember.diagnostics.visualize import _figure, _finish
from ember.errors import ShapeError
from ember.random import rng_for
from ember.tensor import Tensor

__all__ = ["LossLandscape", "interpolate", "random_directions", "loss_surface"]


def _on_grid(grid: np.ndarray, v: float) -> int | None:
    """Index of the grid point equal to v (up to round-off), else None."""
    i = int(np.argmin(np.abs(grid - v)))
    return i if abs(grid[i] - v) <= 1e-9 * max(1.0, float(np.ptp(grid))) else None


def _curvature(x: np.ndarray, y: np.ndarray, i: int) -> float:
    """d2y/dx2 of the parabola through grid point i and its neighbours (exact for a parabola)."""
    if len(x) < 3:
        return float("nan")
    i = min(max(i, 1), len(x) - 2)
    (x0, x1, x2), (y0, y1, y2) = x[i - 1:i + 2], y[i - 1:i + 2]
    return float(2 * ((y2 - y1) / (x2 - x1) - (y1 - y0) / (x1 - x0)) / (x2 - x0))


def _basin(x: np.ndarray, y: np.ndarray, i: int, level: float) -> tuple[float, float]:
    """The interval around grid point i where y <= level (crossings linearly interpolated; a grid end
    where the curve stays below); nan when y[i] is above the level."""
    if not y[i] <= level:
        return float("nan"), float("nan")
    ends = []
    for step, stop in ((-1, -1), (1, len(x))):
        j = i
        while j + step != stop and y[j + step] <= level:  # walks the grid (tens of points), not the data
            j += step
        k = j + step  # the first point above the level, if the grid has one
        ends.append(float(x[j]) if k == stop or not np.isfinite(y[k]) else
                    float(x[j] + (level - y[j]) * (x[k] - x[j]) / (y[k] - y[j])))
    return ends[0], ends[1]


@dataclass(repr=False)
class LossLandscape:
    """Losses along a line or over a plane in weight space: ``kind`` "interpolation" (``alphas`` along
    theta_a -> theta_b) or "directions" (coefficients of directions around the model's weights);
    ``losses`` (A,), or (A, B) with ``losses[i, j]`` at ``(alphas[i], betas[j])``; ``accuracies`` alike
    (None unless the targets are class labels). ``str()`` summarizes, ``plot()`` draws."""

    kind: str
    alphas: np.ndarray
    losses: np.ndarray
    accuracies: np.ndarray | None = None
    betas: np.ndarray | None = None
    label: str = ""

    def _argmin(self) -> tuple:
        return np.unravel_index(int(np.argmin(np.nan_to_num(self.losses, nan=np.inf))), self.losses.shape)

    def minimum(self) -> tuple:
        """(alpha, loss) or (alpha, beta, loss) at the lowest grid point."""
        idx = self._argmin()
        return tuple(float(g[i]) for g, i in zip((self.alphas, self.betas), idx)) + (float(self.losses[idx]),)

    def loss_at(self, alpha: float, beta: float | None = None) -> float:
        """The loss at a grid point (nan if (alpha, beta) is not on the grid)."""
        idx = tuple(_on_grid(g, v) for g, v in zip((self.alphas, self.betas), (alpha, beta)[:self.losses.ndim]))
        return float("nan") if None in idx else float(self.losses[idx])

    def _per_axis(self, fn):
        """``fn(coordinates, losses, index of the minimum)`` along the line, or along each axis through
        the minimum of a plane (a pair)."""
        i = self._argmin()
        if self.losses.ndim == 1:
            return fn(self.alphas, self.losses, i[0])
        return fn(self.alphas, self.losses[:, i[1]], i[0]), fn(self.betas, self.losses[i[0], :], i[1])

    def curvature(self):
        """Second derivative of the loss at the minimum (a plane: along each axis)."""
        return self._per_axis(_curvature)

    def basin(self, factor: float = 2.0, level: float | None = None):
        """(lo, hi) around the minimum where the loss stays below ``factor`` times the minimum, or below
        ``level`` if given (use it when the minimum is 0); a plane: one pair per axis."""
        lv = factor * self.minimum()[-1] if level is None else level
        return self._per_axis(lambda x, y, i: _basin(x, y, i, lv))

    def barrier(self) -> float | None:
        """Interpolation only: the most the loss rises above the straight line between the losses at
        alpha = 0 and 1 (0: no barrier); None if 0 or 1 is not on the grid."""
        i0, i1 = _on_grid(self.alphas, 0.0), _on_grid(self.alphas, 1.0)
        if self.kind != "interpolation" or i0 is None or i1 is None:
            return None
        a, L = self.alphas[i0:i1 + 1], self.losses[i0:i1 + 1]
        return float(max(0.0, np.max(L - ((1 - a) * L[0] + a * L[-1]))))

    def __str__(self) -> str:
        L, idx, m, (lo, hi) = self.losses, self._argmin(), self.minimum(), self.alphas[[0, -1]]
        f = lambda i: f"loss {L[i]:.4g}" + ("" if self.accuracies is None else  # noqa: E731
                                            f" (accuracy {100 * self.accuracies[i]:.1f}%)")
        if self.losses.ndim == 2:
            (ka, kb), c = self.curvature(), tuple(_on_grid(g, 0.0) for g in (self.alphas, self.betas))
            out = [f"loss over theta + alpha * d1 + beta * d2, {L.shape[0]} x {L.shape[1]} grid, alpha in [{lo:g}, "
                   f"{hi:g}], beta in [{self.betas[0]:g}, {self.betas[-1]:g}] ({self.label})"]
            out += [f"  centre (the model): {f(c)}"] if None not in c else []
            within = f"{100 * np.mean(L <= 2 * m[-1]):.0f}% of the grid" if m[-1] > 0 else "n/a (minimum 0)"
            return "\n".join(out + [f"  minimum: {f(idx)} at (alpha, beta) = ({m[0]:.3g}, {m[1]:.3g})",
                                    f"  curvature at the minimum: {ka:.3g} along d1, {kb:.3g} along d2; loss within "
                                    f"2x the minimum on {within}"])
        interp = self.kind == "interpolation"
        out = [f"loss along {'(1 - alpha) * theta_a + alpha * theta_b' if interp else 'theta + alpha * d'}, "
               f"{len(self.alphas)} points in [{lo:g}, {hi:g}] ({self.label})"]
        out += [f"  alpha = {a:g}: {f(i)}" + ("" if interp else "  (the model)") for a in ((0, 1) if interp else (0,))
                if (i := _on_grid(self.alphas, a)) is not None]
        out.append(f"  minimum: {f(idx)} at alpha = {m[0]:.3g}")
        if (b := self.barrier()) is not None:
            i0, i1 = _on_grid(self.alphas, 0.0), _on_grid(self.alphas, 1.0)
            mono = "falls monotonically" if np.all(np.diff(L[i0:i1 + 1]) <= 0) else "not monotone"
            out.append(f"  from alpha = 0 to 1: {mono}; barrier over the chord between the end losses {b:.4g}")
        l0, l1 = self.basin()
        edge = ", reaches the grid's edge" if l0 == lo or l1 == hi else ""
        width = f"alpha in [{l0:.3g}, {l1:.3g}] (width {l1 - l0:.3g}{edge})" if m[-1] > 0 else "n/a (minimum 0)"
        return "\n".join(out + [f"  sharpness at the minimum: d2L/dalpha2 = {self.curvature():.3g}; loss within 2x "
                                f"the minimum for {width}"])

    def __repr__(self) -> str:
        return f"LossLandscape({self.kind}, losses {self.losses.shape}, minimum {self.minimum()})"

    def plot(self, path=None, log: bool = False):
        """The curve (loss against alpha; accuracy dashed on a second axis) or filled contours of the
        plane with the centre marked; ``log``: log-scaled loss. Writes a PNG to ``path`` if given and
        returns the matplotlib Figure (matplotlib is imported only here)."""
        fig = _figure(5.6, 3.8 if self.losses.ndim == 1 else 4.6)
        ax = fig.add_subplot(1, 1, 1)
        if self.losses.ndim == 1:
            ax.plot(self.alphas, self.losses, color="#4c72b0", marker="o", ms=2.5)
            ax.set(xlabel="alpha", ylabel="loss", yscale="log" if log else "linear")
            for a in (0.0, 1.0) if self.kind == "interpolation" else (0.0,):
                ax.axvline(a, color="gray", ls=":", lw=1)
            if self.accuracies is not None:
                ax2 = ax.twinx()
                ax2.plot(self.alphas, self.accuracies, color="#dd8452", ls="--")
                ax2.set(ylabel="accuracy (dashed)", ylim=(0, 1.02))
        else:
            z = np.ma.masked_invalid(np.log10(np.maximum(self.losses, 1e-300)) if log else self.losses).T
            cf = ax.contourf(self.alphas, self.betas, z, levels=20, cmap="viridis")
            if z.max() > z.min():
                ax.contour(self.alphas, self.betas, z, levels=20, colors="k", linewidths=0.4)
            fig.colorbar(cf, ax=ax, label="log10 loss" if log else "loss")
            ax.plot([0.0], [0.0], "r+", ms=10)
            ax.set(xlabel="alpha (direction 1)", ylabel="beta (direction 2)")
        ax.set_title(str(self).split("\n")[0], fontsize=7, wrap=True)
        fig.tight_layout()
        return _finish(fig, path)


def _batches(data, n_batches: int | None, device, op: str) -> list:
    """Up to ``n_batches`` (x, y) pairs, as Tensors on ``device``, from one pair or an iterable of pairs."""
    if n_batches is not None and int(n_batches) < 1:
        raise ValueError(f"{op}: n_batches must be a positive int or None, got {n_batches}")
    single = isinstance(data, (tuple, list)) and len(data) == 2 and hasattr(data[0], "shape")
    on = lambda v: Tensor(to_device(v.data if isinstance(v, Tensor) else v, device)) \
        if hasattr(v, "shape") else v  # noqa: E731
    out = []
    for b in islice([data] if single else data, n_batches):
        if not isinstance(b, (tuple, list)) or len(b) < 2:
            raise TypeError(f"{op}: each batch must be an (input, target) pair, got {type(b).__name__}")
        out.append((on(b[0]), on(b[1])))
    if not out:
        raise ValueError(f"{op}: the data gave no batches")
    return out


def _bn_modules(model) -> list:
    """Modules that normalize with tracked running statistics (BatchNorm, tracking InstanceNorm)."""
    return [m for m in model.modules()
            if getattr(m, "track_running_stats", False) and isinstance(getattr(m, "running_var", None), Tensor)]


@contextmanager
def _scratch(model, bn_mods: list) -> Iterator[dict]:
    """Swap a scratch copy (same layout) into every parameter and buffer; yields {id(tensor): scratch}.
    On exit, however it is left, the original arrays, versions, modes and momenta come back."""
    tensors = list(model.parameters()) + list(model.buffers())
    saved, work = [(t, t.data, t._vc[0]) for t in tensors], {}
    attrs = [(m, "training", m.training) for m in model.modules()] + [(m, "momentum", m.momentum) for m in bn_mods]
    try:
        for t in tensors:
            w = xp_of(t.data).empty_like(t.data)
            w[...] = t.data
            t.data = work[id(t)] = w
        model.eval()
        with no_grad():
            yield work
    finally:
        for t, data, version in saved:
            t.data, t._vc[0] = data, version
        for m, name, value in attrs:
            setattr(m, name, value)


def _combine(out, bases: list, coefs) -> None:
    """``out = sum(c * base)`` (some term always counts); a coefficient 1 copies and 0 skips its term, so
    the ends of a line (alpha = 0 or 1) and the centre of a grid are the stored weights bit for bit."""
    xp, first = xp_of(out), True
    for base, c in zip(bases, map(float, coefs)):
        if base is None or c == 0.0:
            continue
        if first:
            xp.copyto(out, base) if c == 1.0 else xp.multiply(base, c, out=out)
        else:
            out += base if c == 1.0 else base * c
        first = False


def _evaluate(model, loss_fn, batches: list, op: str) -> tuple[float, float | None]:
    """Mean loss over the batches (weighted by batch size) and the accuracy when targets are labels."""
    total, n, correct, counted, classify = 0.0, 0, 0, 0, True
    for x, y in batches:
        out = model(x)
        v = loss_fn(out, y)
        v = v.data if isinstance(v, Tensor) else v
        if int(np.size(v)) != 1:
            raise ShapeError(f"{op}: the loss must be a scalar, got shape {tuple(np.shape(v))} (reduce it)")
        k = int(x.shape[0])
        total, n = total + xp_of(v).asarray(v, dtype=np.float64).reshape(()) * k, n + k  # no sync per batch
        o, t = getattr(out, "data", None), getattr(y, "data", None)
        classify = classify and o is not None and t is not None and t.dtype.kind in "iu" and o.ndim >= 2 \
            and t.shape == o.shape[:1] + o.shape[2:]
        if classify:
            correct, counted = correct + (o.argmax(axis=1) == t).sum(), counted + t.size
    return float(total) / n, (float(correct) / counted if classify and counted else None)


def _sweep(model, points: list, targets: list, loss, data, n_batches, bn_mods: list, bn_data, bn_batches: int,
           op: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Evaluate every point: at each, every (tensor, bases) target is ``sum(coef * base)``; BN statistics
    are recomputed at each point when ``bn_mods`` is not empty."""
    loss_fn = _resolve_loss(loss, op)
    p = next(iter(model.parameters()), None)
    if p is None:
        raise ValueError(f"{op}: the model has no parameters")
    batches = _batches(data, n_batches, p.device, op)
    bn_b = [] if not bn_mods else batches[:bn_batches] if bn_data is None else \
        _batches(bn_data, bn_batches, p.device, op)
    losses, accs = np.empty(len(points)), np.empty(len(points))
    nonneg = {id(m.running_var) for m in _bn_modules(model)}
    with _scratch(model, bn_mods) as work:
        for i, coefs in enumerate(points):
            for t, bases in targets:
                _combine(work[id(t)], bases, coefs)
                if id(t) in nonneg:  # a variance blended outside [0, 1] can go below 0
                    xp_of(work[id(t)]).maximum(work[id(t)], 0, out=work[id(t)])
            # fresh BN statistics as torch.optim.swa_utils.update_bn makes them: reset, then a cumulative
            # average (momentum None) over bn_b, here with only the norm layers in train mode
            for m in bn_mods:
                m.momentum, m.training = None, True
                m.running_mean.data[...], m.running_var.data[...] = 0, 1
                if isinstance(getattr(m, "num_batches_tracked", None), Tensor):
                    m.num_batches_tracked.data[...] = 0
            for x, _ in bn_b:
                model(x)
            for m in bn_mods:
                m.training = False
            losses[i], acc = _evaluate(model, loss_fn, batches, op)
            accs[i] = np.nan if acc is None else acc
    return losses, None if np.isnan(accs).any() else accs


def _state_arrays(model, state, op: str, which: str) -> dict:
    """{id(tensor): array on the tensor's device, in its dtype} from a state dict (or a Module's)."""
    state = state.state_dict() if hasattr(state, "state_dict") else state
    if not isinstance(state, Mapping):
        raise TypeError(f"{op}: {which} must be a state dict or a Module, got {type(state).__name__}")
    own = model.state_dict(keep_vars=True)
    missing, unexpected, out = [k for k in own if k not in state], [k for k in state if k not in own], {}
    if missing or unexpected:
        raise KeyError(f"{op}: {which} does not fit the model (missing keys {missing}, unexpected {unexpected})")
    for k, t in own.items():
        v = state[k].data if isinstance(state[k], Tensor) else state[k]
        if tuple(v.shape) != t.shape:
            raise ShapeError(f"{op}: {which}[{k!r}] has shape {tuple(v.shape)} but the model's is {t.shape}")
        out[id(t)] = to_device(v, t.device).astype(t.dtype, copy=False)
    return out


def interpolate(model, state_a, state_b, loader_or_batch, loss_fn="cross_entropy", alphas=np.linspace(-0.5, 1.5, 41),
                n_batches: int | None = 10, *, bn: str = "interpolate", bn_data=None,
                bn_batches: int = 4) -> LossLandscape:
    """Loss (and accuracy) along theta(alpha) = (1 - alpha) * theta_a + alpha * theta_b (Goodfellow, Vinyals
    & Saxe 2015, "Qualitatively characterizing neural network optimization problems"): from the
    initialization (alpha = 0) to the trained weights (1) the loss of many networks falls monotonically.
    Loss above the straight line between the end losses is a barrier (Frankle et al. 2020, "Linear mode
    connectivity and the lottery ticket hypothesis"). alpha = 0 and 1 evaluate theta_a and theta_b exactly.
    Returns a LossLandscape of kind "interpolation": ``alphas`` (A,), ``losses`` (A,), ``accuracies``.

    Args:
        model: an ``ember.nn.Module`` (left exactly as it was).
        state_a, state_b: state dicts with the model's keys (e.g. copies of ``model.state_dict()`` at
            initialization and after training), or Modules of the same architecture.
        loader_or_batch: an (x, y) pair or an iterable of pairs (a DataLoader); the first ``n_batches``
            (None: all) are read once and reused at every alpha.
        loss_fn: "cross_entropy", "mse", "nll" or ``loss(output, target) -> scalar Tensor``.
        alphas: the points (A,), sorted before use.
        bn: batch norm's running statistics at theta(alpha). "interpolate" (default) blends them like
            the weights (variances clipped at 0 past the ends): free and exact at both ends, but the
            activations' real mean and variance are nonlinear in the weights, so mid-line losses can
            show a barrier made only by stale statistics. "recompute" resets them at every alpha and
            averages them over ``bn_batches`` batches of ``bn_data`` (default: the evaluation batches;
            pass training batches), as after averaging weights (Izmailov et al. 2018, "Averaging
            weights leads to wider optima and better generalization"): the loss the network at
            theta(alpha) really has, for one forward more per BN batch and point. Integer buffers
            (``num_batches_tracked``) are never interpolated.
    """
    op = "interpolate"
    alphas = np.sort(np.asarray(alphas, dtype=np.float64).ravel())
    if bn not in ("interpolate", "recompute") or int(bn_batches) < 1 or \
            not alphas.size or not np.isfinite(alphas).all():
        raise ValueError(f"{op}: need bn 'interpolate' or 'recompute' (got {bn!r}), bn_batches >= 1 (got "
                         f"{bn_batches}) and finite alphas (got {alphas})")
    a, b = _state_arrays(model, state_a, op, "state_a"), _state_arrays(model, state_b, op, "state_b")
    bn_mods = _bn_modules(model) if bn == "recompute" else []
    fixed = {id(getattr(m, k)) for m in bn_mods for k in ("running_mean", "running_var")}
    targets = [(t, [a[id(t)], b[id(t)]]) for t in list(model.parameters()) + list(model.buffers())
               if id(t) in a and t.dtype.kind in "fc" and id(t) not in fixed]
    losses, accs = _sweep(model, [(1.0 - x, x) for x in alphas], targets, loss_fn, loader_or_batch, n_batches,
                          bn_mods, bn_data, bn_batches, op)
    return LossLandscape("interpolation", alphas, losses, accs, label=f"BN statistics {bn}d")


def random_directions(model, n: int = 1, generator=None, normalization: str = "filter",
                      ignore_biasbn: bool = True) -> list[dict]:
    """``n`` (1 or 2) random Gaussian directions in weight space, normalized as in Li et al. 2018,
    "Visualizing the loss landscape of neural nets": a list of ``n`` dicts {parameter name: array with
    the parameter's shape, dtype and device}.

    Args:
        normalization: "filter" (each slice ``d[i]`` along dim 0 of a parameter with 2+ dims gets the
            norm of ``w[i]``; a 1-D parameter is one filter), "layer" (each tensor gets its parameter's
            norm) or "none" (plain N(0, 1) entries).
        ignore_biasbn: parameters with at most one dim (biases, batch norm's weight and bias) get a
            zero direction, as in the paper; False includes them (the draws are the same either way).
        generator: an ``ember.Generator`` (seeded: the same directions every time).
    """
    named = list(model.named_parameters())
    if n not in (1, 2) or normalization not in ("filter", "layer", "none") or not named:
        raise ValueError(f"random_directions: need n 1 or 2 (got {n}), normalization 'filter', 'layer' or 'none' "
                         f"(got {normalization!r}) and a model with parameters (it has {len(named)})")
    out = []
    for _ in range(n):
        d = {}
        for name, p in named:
            w, xp = p.data, xp_of(p.data)
            g = rng_for(generator, w).standard_normal(w.shape, dtype=np.float64 if w.dtype == np.float64
                                                      else np.float32).astype(np.float64)
            if w.ndim <= 1 and ignore_biasbn:
                d[name] = xp.zeros_like(w)
                continue
            if normalization != "none":
                axes = tuple(range(1, w.ndim)) if normalization == "filter" and w.ndim > 1 else None
                gn, wn = (xp.sqrt((v * v).sum(axis=axes, keepdims=True)) for v in (g, w.astype(np.float64)))
                g = g * (wn / xp.where(gn > 0, gn, 1.0))
            d[name] = g.astype(w.dtype)
        out.append(d)
    return out


def _direction_bases(model, directions: list, op: str) -> list:
    """(parameter, [its array, d1, (d2)]) for every parameter; a name left out of a direction is None."""
    params, arrays = dict(model.named_parameters()), [{} for _ in directions]
    for k, d in enumerate(directions):
        if set(d) - set(params):
            raise KeyError(f"{op}: direction {k} names {sorted(set(d) - set(params))}, not parameters of the model")
        for name, v in d.items():
            v, p = v.data if isinstance(v, Tensor) else v, params[name]
            if tuple(v.shape) != p.shape:
                raise ShapeError(f"{op}: direction {k}[{name!r}] has shape {tuple(v.shape)} but the parameter's is "
                                 f"{p.shape}")
            arrays[k][name] = to_device(v, p.device).astype(p.dtype, copy=False)
    return [(p, [p.data] + [a.get(name) for a in arrays]) for name, p in params.items()]


def _grid(span, res, op: str) -> np.ndarray:
    lo, hi = (float(v) for v in span)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi) or int(res) < 2:
        raise ValueError(f"{op}: need a span (lo, hi) with lo < hi and a resolution >= 2, got {span} and {res}")
    g = np.linspace(lo, hi, int(res))
    g[np.abs(g) < 1e-9 * (hi - lo)] = 0.0  # linspace round-off: the centre is the model itself
    return g


def loss_surface(model, loader_or_batch, loss_fn="cross_entropy", directions=None, span=(-1.0, 1.0), resolution=21,
                 n_batches: int | None = 10, *, generator=None, normalization: str = "filter",
                 ignore_biasbn: bool = True) -> LossLandscape:
    """Loss at theta + alpha * d1 (+ beta * d2) around the model's weights theta (Li et al. 2018): a
    LossLandscape of kind "directions" with ``alphas`` (A,) and ``losses`` (A,) for one direction; with
    two, also ``betas`` (B,) and ``losses`` (A, B), ``losses[i, j]`` at (alphas[i], betas[j]).

    Args:
        directions: a dict {parameter name: array} or a list of 1 or 2 (``random_directions``, or your
            own; names left out do not move). None: two drawn by :func:`random_directions` with
            ``generator``, ``normalization`` and ``ignore_biasbn``.
        span: (lo, hi) for every axis, or one per axis; resolution: points per axis (int or one per axis).
        loader_or_batch, loss_fn, n_batches: as for :func:`interpolate`. Batch norm keeps the model's
            running statistics (as in the paper), so the centre is the model's own loss.
    """
    op, how = "loss_surface", "given directions"
    if directions is None:
        directions = random_directions(model, 2, generator, normalization, ignore_biasbn)
        how = f"{normalization}-normalized random directions" + (", biases/BN fixed" if ignore_biasbn else "")
    directions = [directions] if isinstance(directions, Mapping) else list(directions)
    nd = len(directions)
    spans, res = (list(span) if np.ndim(span) == 2 else [span] * nd,
                  list(resolution) if np.ndim(resolution) == 1 else [resolution] * nd)
    if nd not in (1, 2) or len(spans) != nd or len(res) != nd:
        raise ValueError(f"{op}: need 1 or 2 directions and a span and resolution for each, got {nd} direction(s), "
                         f"span {span}, resolution {resolution}")
    axes = [_grid(s, r, op) for s, r in zip(spans, res)]
    points = [(1.0, a) for a in axes[0]] if nd == 1 else [(1.0, a, b) for a in axes[0] for b in axes[1]]
    losses, accs = _sweep(model, points, _direction_bases(model, directions, op), loss_fn, loader_or_batch, n_batches,
                          [], None, 0, op)
    shape = tuple(len(a) for a in axes)
    return LossLandscape("directions", axes[0], losses.reshape(shape), None if accs is None else accs.reshape(shape),
                         betas=axes[1] if nd == 2 else None, label=how)

"""The learning-rate range test ("LR finder"): sweep the lr upward and watch the loss.

L. N. Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, sec. 3.3:
train for a few hundred mini-batches while the learning rate grows from a tiny value to a
huge one, and plot the loss against the lr. At first nothing happens (the steps are too
small to matter), then the loss falls, faster and faster, and then it turns up and
explodes. A good learning rate lies where the loss falls fastest.

``lr_find(model, optimizer, loader)`` runs that sweep: at step i (0-based, of ``num_iter``)
every parameter group gets

* ``mode="exp"``:    lr_i = start_lr * (end_lr / start_lr) ** (i / (num_iter - 1))
* ``mode="linear"``: lr_i = start_lr + (end_lr - start_lr) * i / (num_iter - 1)

(so the first step uses ``start_lr`` and the last ``end_lr`` exactly). The loss of batch i
(computed before the update that uses lr_i, as the usual implementations record it) is
smoothed by an exponential moving average with bias correction (Kingma and Ba 2015, Adam):
``avg_i = smooth * avg_{i-1} + (1 - smooth) * loss_i`` from ``avg_{-1} = 0`` and
``smoothed_i = avg_i / (1 - smooth ** (i + 1))``. The sweep stops early when the loss is
not finite or the smoothed loss exceeds ``diverge_threshold`` times the best smoothed loss
so far (a ratio that means something only while the loss is positive, so a loss that goes
negative stops only at a non-finite value); that step is still recorded, so the plot shows
the blow-up.

The suggestion is the lr at the steepest descent of the smoothed loss against log10(lr)
(``numpy.gradient``, which handles the uneven spacing of a linear sweep), ignoring the first
and last few points, where the average is still noisy or already exploding.

The model and the optimizer are left exactly as they were: parameters and buffers (batch
norm's running statistics), gradients, every module's train/eval flag, the optimizer's
state and every parameter group's hyper-parameters are copied before the sweep and put
back afterwards, also when the sweep raises. Only random generators advance (dropout,
the loader's shuffling), as in any other computation.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from itertools import chain
from typing import Callable, Iterator

import numpy as np

from ember.backend import Device
from ember.diagnostics.model_check import _resolve_loss
from ember.errors import DeviceError, ShapeError
from ember.tensor import Tensor

__all__ = ["lr_find", "LRFindResult"]


def _lr_sequence(start_lr: float, end_lr: float, num_iter: int, mode: str) -> list[float]:
    """The ``num_iter`` learning rates of the sweep, ``start_lr`` first and ``end_lr`` last (exactly)."""
    if mode == "exp":
        return [float(v) for v in np.geomspace(start_lr, end_lr, num_iter)]
    return [float(v) for v in np.linspace(start_lr, end_lr, num_iter)]


@dataclass
class LRFindResult:
    """What ``lr_find`` recorded, one entry per step taken (fewer than ``num_iter`` if it diverged).

    Attributes:
        lrs: learning rate of each step.
        losses: raw mini-batch loss of each step (the last one may be inf/NaN when it diverged).
        smoothed: bias-corrected exponential moving average of ``losses``.
        suggestion: lr at the steepest descent of ``smoothed`` against log10(lr), or None.
        min_loss_lr: lr at the lowest smoothed loss, the first and last few points left out as for
            the suggestion (a common rule of thumb: train at a tenth of it).
        diverged_at: lr of the step where the sweep stopped because the loss diverged, or None.
    """

    lrs: list
    losses: list
    smoothed: list
    mode: str = "exp"
    num_iter: int = 0
    diverge_threshold: float = 5.0
    diverged_at: float | None = None
    suggestion: float | None = field(init=False)
    min_loss_lr: float | None = field(init=False)

    def __post_init__(self) -> None:
        lo, hi = self._window(10, 5)
        s = np.asarray(self.smoothed[lo:hi], dtype=np.float64)
        self.min_loss_lr = float(self.lrs[lo + int(np.argmin(s))]) if len(s) else None
        self.suggestion = self.suggest()

    def _window(self, skip_start: int, skip_end: int) -> tuple[int, int]:
        """[lo, hi): the finite points without the first and last few (each at most a tenth of them)."""
        s = np.asarray(self.smoothed, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(s))
        n = int(bad[0]) if len(bad) else len(s)
        lo, hi = min(skip_start, n // 10), n - min(skip_end, n // 10)
        return (lo, hi) if hi - lo >= 3 else (0, n)

    def suggest(self, skip_start: int = 10, skip_end: int = 5) -> float | None:
        """The lr where the smoothed loss falls fastest per decade of lr, on the way to its minimum.

        The first ``skip_start`` and last ``skip_end`` finite points are ignored (each at most a
        tenth of them, so short sweeps keep most points). Only points up to the lowest smoothed
        loss are candidates: past it the average decays from a blow-up, which looks like a
        descent but is no place to train. The slope is ``numpy.gradient``'s (central differences
        inside). None when fewer than three points remain or the smoothed loss never falls.
        """
        lo, hi = self._window(skip_start, skip_end)
        s = np.asarray(self.smoothed[lo:hi], dtype=np.float64)
        if len(s) < 3:
            return None
        slope = np.gradient(s, np.log10(np.asarray(self.lrs[lo:hi], dtype=np.float64)))
        i = int(np.argmin(slope[: int(np.argmin(s)) + 1]))
        return float(self.lrs[lo + i]) if slope[i] < 0 else None

    def table(self, rows: int = 12) -> str:
        """About ``rows`` evenly spaced steps as text: step, lr, loss, smoothed loss."""
        n = len(self.lrs)
        picks = sorted(set(np.linspace(0, n - 1, min(rows, n)).round().astype(int).tolist())) if n else []
        head = ("step", "lr", "loss", "smoothed")
        body = [(str(i + 1), f"{self.lrs[i]:.2e}", f"{self.losses[i]:.4f}", f"{self.smoothed[i]:.4f}") for i in picks]
        width = [max(len(r[k]) for r in [head] + body) for k in range(4)]
        line = lambda r: "  ".join(c.rjust(w) for c, w in zip(r, width))  # noqa: E731
        return "\n".join([line(head), line(tuple("-" * w for w in width))] + [line(r) for r in body])

    def __str__(self) -> str:
        if not self.lrs:
            return "LR range test: no steps were run"
        lines = [f"LR range test ({self.mode}, {len(self.lrs)} of {self.num_iter} steps, "
                 f"lr {self.lrs[0]:.1e} to {self.lrs[-1]:.1e})"]
        low = ""
        if self.min_loss_lr is not None:
            low = (f", lowest smoothed loss {self.smoothed[self.lrs.index(self.min_loss_lr)]:.4f} "
                   f"at lr {self.min_loss_lr:.2e}")
        lines.append(f"  loss {self.losses[0]:.4f} at the start{low}")
        if self.diverged_at is not None:
            lines.append(f"  the loss diverged at lr {self.diverged_at:.2e} (not finite, or the smoothed loss above "
                         f"{self.diverge_threshold:g}x its best), where the sweep stopped")
        else:
            lines.append("  the loss did not diverge (a larger end_lr shows where it does)")
        if self.suggestion is not None:
            lines.append(f"  suggested lr {self.suggestion:.2e}, where the smoothed loss falls fastest"
                         + (f" (a tenth of the lowest-loss lr: {self.min_loss_lr / 10:.2e})"
                            if self.min_loss_lr is not None else ""))
        else:
            lines.append("  no suggestion: the smoothed loss never fell (try a smaller start_lr or more steps, "
                         "or check the model and the data)")
        return "\n".join(lines)

    def plot(self, path=None):
        """Loss against lr (log axis), raw and smoothed, with the suggestion marked; a matplotlib Figure.

        Given ``path``, also writes the figure as a PNG.
        """
        from ember.diagnostics.visualize import _figure, _finish  # lazy: matplotlib is optional

        fig = _figure(6.0, 4.0)
        ax = fig.add_subplot(1, 1, 1)
        lrs = np.asarray(self.lrs, dtype=np.float64)
        raw = np.asarray(self.losses, dtype=np.float64)
        s = np.asarray(self.smoothed, dtype=np.float64)
        ax.plot(lrs, raw, color="0.7", lw=1, label="loss")
        ax.plot(lrs, s, color="C0", lw=2, label="smoothed loss")
        if self.suggestion is not None:
            k = self.lrs.index(self.suggestion)
            ax.axvline(self.suggestion, color="C3", ls="--", lw=1)
            ax.plot([self.suggestion], [s[k]], "o", color="C3", label=f"suggested lr {self.suggestion:.1e}")
        if self.min_loss_lr is not None:
            k = self.lrs.index(self.min_loss_lr)
            ax.plot([self.min_loss_lr], [s[k]], "v", color="C2", label=f"lowest loss at {self.min_loss_lr:.1e}")
        ax.set_xscale("log")
        kept = s[:-1] if self.diverged_at is not None and len(s) > 1 else s  # the blow-up would flatten the rest
        kept = kept[np.isfinite(kept)]
        if len(kept):
            lo, hi = float(kept.min()), float(kept.max())
            pad = 0.1 * (hi - lo) or 0.1 * abs(hi) or 1.0
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.set_title("LR range test" + (f" (diverged at {self.diverged_at:.1e})" if self.diverged_at else ""))
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return _finish(fig, path)


def _check(start_lr, end_lr, num_iter, mode, smooth, diverge_threshold) -> None:
    if not (isinstance(start_lr, (int, float)) and math.isfinite(start_lr) and start_lr > 0):
        raise ValueError(f"lr_find: start_lr must be a positive number, got {start_lr!r}")
    if not (isinstance(end_lr, (int, float)) and math.isfinite(end_lr) and end_lr > start_lr):
        raise ValueError(f"lr_find: end_lr must be larger than start_lr, got end_lr={end_lr!r} "
                         f"and start_lr={start_lr!r}")
    if isinstance(num_iter, bool) or not isinstance(num_iter, int) or num_iter < 2:
        raise ValueError(f"lr_find: num_iter must be an integer >= 2, got {num_iter!r}")
    if mode not in ("exp", "linear"):
        raise ValueError(f"lr_find: mode must be 'exp' or 'linear', got {mode!r}")
    if not (isinstance(smooth, (int, float)) and 0 <= smooth < 1):
        raise ValueError(f"lr_find: smooth must be in [0, 1), got {smooth!r}")
    if not (isinstance(diverge_threshold, (int, float)) and diverge_threshold > 1):
        raise ValueError(f"lr_find: diverge_threshold must be a number > 1, got {diverge_threshold!r}")


def _cycle(loader) -> Iterator:
    """The loader's batches, starting over (a new epoch) whenever it runs out."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("lr_find: the loader yielded no batches")


def _batch(batch, device: Device) -> tuple:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise TypeError(f"lr_find: the loader must yield (input, target) pairs, got {type(batch).__name__}"
                        + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""))
    return tuple((v if isinstance(v, Tensor) else Tensor(v)).to(device) for v in batch)


class _Snapshot:
    """Copies of everything the sweep changes in ``model`` and ``optimizer``; ``restore()`` puts them back."""

    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer
        # state_dict() values share memory with the model: copy the arrays.
        self.model_state = {k: v.data.copy() for k, v in model.state_dict().items()}
        persistent = set(model.state_dict())
        self.other_buffers = [(b, b.data.copy()) for k, b in model.named_buffers() if k not in persistent]
        self.grads = [(p, p.grad, None if p.grad is None else p.grad.data.copy()) for p in self._params()]
        self.modes = [(m, m.training) for m in model.modules()]
        self.opt_state = copy.deepcopy(optimizer.state_dict())  # its buffers are the optimizer's own Tensors
        self.groups = list(optimizer.param_groups)

    def _params(self) -> list:
        seen, out = set(), []
        for p in chain(self.model.parameters(), (p for g in self.optimizer.param_groups for p in g["params"])):
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
        return out

    def restore(self) -> None:
        self.model.load_state_dict(self.model_state)
        for b, a in self.other_buffers:
            b.data[...] = a
        for p, g, a in self.grads:
            if g is not None:
                g.data = a
            p.grad = g
        for m, training in self.modes:
            m.training = training
        self.optimizer.load_state_dict(self.opt_state)
        # load_state_dict builds new group dicts; refill the original ones so references to them stay valid
        for mine, loaded in zip(self.groups, self.optimizer.param_groups):
            mine.clear()
            mine.update(loaded)
        self.optimizer.param_groups = self.groups


def lr_find(model, optimizer, loader, loss_fn: str | Callable = "cross_entropy", start_lr: float = 1e-7,
            end_lr: float = 10.0, num_iter: int = 100, mode: str = "exp", smooth: float = 0.98,
            diverge_threshold: float = 5.0, device=None) -> LRFindResult:
    """Smith's learning-rate range test; the model and optimizer are left exactly as they were.

    Args:
        model: an ``ember.nn.Module``, trained (in train mode) during the sweep.
        optimizer: an ember optimizer over the model's parameters; every parameter group gets the
            sweep's lr at each step, its other settings (momentum, weight decay) are used as they are.
        loader: an iterable of ``(input, target)`` batches, e.g. a DataLoader (restarted when exhausted).
        loss_fn: ``loss_fn(output, target) -> scalar Tensor``, or "cross_entropy" / "mse" / "nll".
        start_lr, end_lr: first and last learning rate (0 < start_lr < end_lr).
        num_iter: number of steps (mini-batches) in the sweep, at least 2.
        mode: "exp" (geometric spacing, the usual choice) or "linear".
        smooth: factor of the bias-corrected moving average of the loss, in [0, 1) (0: no smoothing).
        diverge_threshold: stop when the smoothed loss exceeds this many times the best one so far.
        device: where batches go; default the device of the model's parameters (which must match).

    Returns:
        an ``LRFindResult`` (``lrs``, ``losses``, ``smoothed``, ``suggestion``, ``min_loss_lr``,
        ``diverged_at``; ``print`` it for a summary, ``.plot(path)`` for the curve).

    Example::

        res = lr_find(model, optim.SGD(model.parameters(), lr=0.1, momentum=0.9), train_loader)
        print(res); res.plot("lr_find.png")
    """
    _check(start_lr, end_lr, num_iter, mode, smooth, diverge_threshold)
    fn = _resolve_loss(loss_fn, "lr_find")
    first = next(iter(model.parameters()), None)
    model_device = first.device if first is not None else Device("cpu")
    device = model_device if device is None else Device(device)
    if device != model_device:
        raise DeviceError(f"lr_find: the model is on {model_device} but device={str(device)!r}; "
                          f"move it first with model.to({str(device)!r}) and build the optimizer after")
    plan = _lr_sequence(float(start_lr), float(end_lr), num_iter, mode)
    lrs, losses, smoothed = [], [], []
    diverged_at, avg, best = None, 0.0, math.inf
    snapshot = _Snapshot(model, optimizer)
    try:
        model.train()
        batches = _cycle(loader)
        for i, lr in enumerate(plan):
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = _batch(next(batches), device)
            # A diverging sweep overflows on purpose at its end: NumPy's warnings about it are muted.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                loss = fn(model(x), y)
                if not isinstance(loss, Tensor):
                    raise TypeError(f"lr_find: loss_fn must return a Tensor, got {type(loss).__name__}")
                if loss.data.size != 1:
                    raise ShapeError(f"lr_find: loss_fn must return a one-element Tensor, got shape {loss.shape}")
                value = float(loss.item())
                avg = smooth * avg + (1.0 - smooth) * value
                s = avg / (1.0 - smooth ** (i + 1))
                lrs.append(lr)
                losses.append(value)
                smoothed.append(s)
                if not math.isfinite(value) or (best > 0 and s > diverge_threshold * best):
                    diverged_at = lr
                    break
                best = min(best, s)
                model.zero_grad()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        snapshot.restore()
    return LRFindResult(lrs, losses, smoothed, mode=mode, num_iter=num_iter,
                        diverge_threshold=float(diverge_threshold), diverged_at=diverged_at)

"""Hidden-activation statistics through forward hooks, with a verdict per layer.

What a course on training deep networks tells you to look at: in a network that
trains well, hidden units are *sparse* (many exact zeros after a ReLU), *uncorrelated*
(each unit says something the others don't) and have *high variance* across inputs.
In a network that trains badly, units ignore the input (dead: never fire; constant:
same output for every image; saturated: stuck at a sigmoid/tanh bound) or correlate
strongly with each other.

``activation_stats(model, data)`` streams a batch or a whole loader through the model
with a hook on each chosen layer and accumulates, per layer: mean, std, sparsity
(fraction of exactly-zero outputs), dead units (never > 0 over all the data),
saturated units, units whose output does not vary with the input, and the mean
absolute pairwise correlation between units (channels of conv layers, each
summarized per image by its spatial mean, or with ``spatial="flatten"`` every
position counted as a sample). ``UpdateRatioTracker`` records, per parameter, the
update-to-weight ratio ||w_new - w_old|| / ||w_old|| of each optimizer step
(a healthy step is around 1e-3).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ember.autograd import no_grad
from ember.backend import asnumpy, xp_of
from ember.diagnostics.trace import eval_mode, leaf_modules
from ember.tensor import Tensor

__all__ = ["LayerStats", "ActivationReport", "activation_stats", "UpdateRatioTracker", "ACTIVATION_TYPES"]

ACTIVATION_TYPES = {"ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish",
                    "Softplus", "Sigmoid", "Tanh", "Hardtanh", "Hardsigmoid", "Hardswish"}
SATURATING = {"Sigmoid": (0.0, 1.0), "Tanh": (-1.0, 1.0), "Hardtanh": (-1.0, 1.0), "Hardsigmoid": (0.0, 1.0)}
SAT_TOL = 0.01  # within 1% of the output range from a bound counts as saturated


@dataclass
class LayerStats:
    """Statistics of one layer's outputs over all the data seen."""

    name: str
    type: str
    units: int  # channels (4-D outputs) or features (2-D outputs)
    unit_word: str  # "channels" or "units"
    images: int
    mean: float
    std: float
    sparsity: float  # fraction of outputs exactly 0
    dead: float | None  # fraction of units never > 0 (None for sigmoid/tanh)
    saturated: float | None  # fraction of units at a bound on >90% of outputs (sigmoid/tanh only)
    constant: float  # fraction of live units whose per-image value never varies
    mean_abs_corr: float  # over pairs of non-constant units; nan if fewer than 2
    dead_units: np.ndarray = field(repr=False, default=None)
    corr: np.ndarray = field(repr=False, default=None)
    samples: np.ndarray = field(repr=False, default=None)  # a random subset of outputs, for histograms
    level: str = "ok"  # "ok", "warn" or "bad"
    verdict: str = ""


class ActivationReport(list):
    """A list of LayerStats; ``str()`` is a table followed by the verdicts."""

    def __str__(self) -> str:
        head = ("layer", "type", "units", "mean", "std", "zeros", "dead", "sat", "|r|")
        pct = lambda v: "-" if v is None else f"{100 * v:.0f}%"  # noqa: E731
        rows = [(s.name, s.type, str(s.units), f"{s.mean:.3g}", f"{s.std:.3g}", pct(s.sparsity), pct(s.dead),
                 pct(s.saturated), "-" if np.isnan(s.mean_abs_corr) else f"{s.mean_abs_corr:.2f}") for s in self]
        w = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
        line = lambda r: "  ".join(c.ljust(x) for c, x in zip(r, w)).rstrip()  # noqa: E731
        return "\n".join([line(head), line(tuple("-" * x for x in w))] + [line(r) for r in rows] + [""] +
                         [f"[{s.level}] {s.verdict}" for s in self])


class _Acc:
    """Streaming sums for one layer (small arrays only: per-unit vectors and a C x C matrix)."""

    def __init__(self, name: str, kind: str, max_corr_units: int, spatial: str, rng: np.random.Generator):
        self.name, self.kind, self.spatial, self.rng = name, kind, spatial, rng
        self.max_corr_units = max_corr_units
        self.n = self.images = 0
        self.s = self.ss = self.zeros = 0.0
        self.ever_pos = self.sat = self.count = self.zs = self.zz = self.pick = None
        self.zn = 0
        self.samples: list = []

    def update(self, y) -> None:
        xp = xp_of(y)
        N, C = y.shape[0], y.shape[1] if y.ndim > 1 else 1
        y3 = y.reshape(N, C, -1).astype(xp.float64)
        if self.ever_pos is None:
            self.spatial_ndim = y.ndim - 2
            self.ever_pos = np.zeros(C, bool)
            self.sat = np.zeros(C)
            self.count = 0
            self.pick = np.arange(C) if C <= self.max_corr_units else \
                np.sort(self.rng.choice(C, self.max_corr_units, replace=False))
            k = len(self.pick)
            self.zs, self.zz = np.zeros(k), np.zeros((k, k))
        self.images += N
        self.n += y3.size
        self.s += float(y3.sum())
        self.ss += float((y3 * y3).sum())
        self.zeros += float((y3 == 0).sum())
        self.ever_pos |= asnumpy((y3 > 0).any(axis=(0, 2)))
        self.count += N * y3.shape[2]
        if self.kind in SATURATING:
            lo, hi = SATURATING[self.kind]
            tol = SAT_TOL * (hi - lo)
            self.sat += asnumpy(((y3 <= lo + tol) | (y3 >= hi - tol)).sum(axis=(0, 2)))
        sel = y3[:, xp.asarray(self.pick)] if len(self.pick) < C else y3
        z = sel.mean(axis=2) if self.spatial == "mean" else sel.transpose(0, 2, 1).reshape(-1, sel.shape[1])
        self.zn += z.shape[0]
        self.zs += asnumpy(z.sum(axis=0))
        self.zz += asnumpy(z.T @ z)
        if sum(len(v) for v in self.samples) < 20000:
            flat = asnumpy(y3.reshape(-1))
            self.samples.append(flat[self.rng.integers(0, flat.size, min(flat.size, 2000))])

    def finish(self) -> LayerStats:
        C = len(self.ever_pos)
        mean = self.s / self.n
        std = float(np.sqrt(max(self.ss / self.n - mean * mean, 0.0)))
        mu = self.zs / self.zn
        cov = self.zz / self.zn - np.outer(mu, mu)
        var = np.clip(np.diag(cov), 0, None)
        live = var > 1e-12 * max(1.0, float(np.max(np.abs(mu), initial=0.0)) ** 2)
        sd = np.sqrt(np.where(live, var, 1.0))
        corr = np.where(np.outer(live, live), cov / np.outer(sd, sd), np.nan)
        np.fill_diagonal(corr, np.where(live, 1.0, np.nan))
        k = int(live.sum())
        mac = float((np.nansum(np.abs(corr)) - k) / (k * (k - 1))) if k >= 2 else float("nan")
        saturating = self.kind in SATURATING
        dead_mask = ~self.ever_pos
        picked_dead = dead_mask[self.pick]
        constant = float((~live & ~picked_dead).mean()) if len(live) else 0.0
        st = LayerStats(
            self.name, self.kind, C, "channels" if self.spatial_ndim > 0 else "units", self.images, mean, std,
            self.zeros / self.n, None if saturating else float(dead_mask.mean()),
            float((self.sat / self.count > 0.9).mean()) if saturating else None, constant, mac,
            np.flatnonzero(dead_mask) if not saturating else np.array([], int), corr,
            np.concatenate(self.samples) if self.samples else np.zeros(0),
        )
        st.level, st.verdict = _verdict(st)
        return st


def _verdict(s: LayerStats) -> tuple[str, str]:
    """Plain-language judgement following "good: sparse, uncorrelated, high variance"."""
    where = f"{s.name} ({s.type})"
    on = f"on {s.images:,} images"
    problems = []
    if s.dead is not None and s.dead >= 0.1:
        problems.append(("bad" if s.dead >= 0.5 else "warn", f"{100 * s.dead:.0f}% of {s.unit_word} never fire {on}"))
    if s.saturated is not None and s.saturated >= 0.1:
        problems.append(("bad" if s.saturated >= 0.5 else "warn",
                         f"{100 * s.saturated:.0f}% of {s.unit_word} are saturated (stuck near a bound) {on}"))
    if s.constant >= 0.1:
        problems.append(("warn", f"{100 * s.constant:.0f}% of {s.unit_word} ignore the input "
                                 f"(same value for every image)"))
    if not np.isnan(s.mean_abs_corr) and s.mean_abs_corr >= 0.5:
        problems.append(("bad" if s.mean_abs_corr >= 0.9 else "warn",
                         f"{s.unit_word} correlate strongly (mean |r| = {s.mean_abs_corr:.2f})"))
    if problems:
        level = "bad" if any(lv == "bad" for lv, _ in problems) else "warn"
        return level, f"{where}: " + "; ".join(t for _, t in problems)
    r = "n/a" if np.isnan(s.mean_abs_corr) else f"{s.mean_abs_corr:.2f}"
    return "ok", (f"{where}: healthy {on}: {100 * s.sparsity:.0f}% zeros, mean |r| = {r} between "
                  f"{s.unit_word}, std {s.std:.3g}")


def _batches(data, max_batches: int | None):
    """Yield input Tensors from a Tensor, an (x, y) pair, or an iterable of either."""
    if isinstance(data, Tensor) or isinstance(data, np.ndarray):
        yield data if isinstance(data, Tensor) else Tensor(data)
        return
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        yield data[0]
        return
    for i, b in enumerate(data):
        if max_batches is not None and i >= max_batches:
            break
        x = b[0] if isinstance(b, (tuple, list)) else b
        yield x if isinstance(x, Tensor) else Tensor(np.asarray(x))


def default_layers(model) -> list[str]:
    """Activation modules if the model has any, else every leaf module with parameters."""
    leaves = leaf_modules(model)
    acts = [n for n, m in leaves if type(m).__name__ in ACTIVATION_TYPES]
    return acts or [n for n, m in leaves if next(iter(m.parameters(recurse=False)), None) is not None]


def activation_stats(model, data, layers: list[str] | None = None, *, max_batches: int | None = None,
                     spatial: str = "mean", max_corr_units: int = 512, seed: int = 0) -> ActivationReport:
    """Per-layer statistics of hidden activations over a batch or a loader.

    Args:
        model: an ``ember.nn.Module``; run in eval mode without grad (modes restored).
        data: a Tensor (N, ...), an (x, y) pair, or an iterable of batches (a DataLoader).
        layers: module names to hook (default: :func:`default_layers`).
        spatial: how a conv channel becomes one value per sample for correlations and
            per-unit variance: "mean" (spatial mean per image) or "flatten" (each position).
        max_corr_units: layers wider than this use a fixed random subset of units for
            the correlation matrix.

    Returns:
        An ActivationReport (list of LayerStats, in forward order of first use).
    """
    if spatial not in ("mean", "flatten"):
        raise ValueError(f"activation_stats: spatial must be 'mean' or 'flatten', got {spatial!r}")
    mods = dict(leaf_modules(model))
    mods.update({n: m for n, m in model.named_modules() if n})
    layers = default_layers(model) if layers is None else list(layers)
    unknown = [n for n in layers if n not in mods]
    if unknown:
        raise ValueError(f"activation_stats: no module named {unknown}; choose from {list(mods)}")
    rng = np.random.default_rng(seed)
    accs: dict = {}
    seen_in_pass: dict = {}

    def hook_for(name):
        def hook(module, args, output):
            if not isinstance(output, Tensor) or output.dtype.kind != "f":
                return
            k = seen_in_pass.get(name, 0)  # a module used twice per forward gets two entries
            seen_in_pass[name] = k + 1
            key = name if k == 0 else f"{name}#{k + 1}"
            if key not in accs:
                accs[key] = _Acc(key, type(module).__name__, max_corr_units, spatial, rng)
            accs[key].update(output.data)
        return hook

    handles = [mods[n].register_forward_hook(hook_for(n)) for n in layers]
    try:
        with no_grad(), eval_mode(model):
            for x in _batches(data, max_batches):
                seen_in_pass.clear()
                model(x)
    finally:
        for h in handles:
            h.remove()
    return ActivationReport(a.finish() for a in accs.values())


class UpdateRatioTracker:
    """Update-to-weight ratio ||w_after - w_before|| / ||w_before|| of every parameter per step.

    Use around the optimizer step::

        tracker = UpdateRatioTracker(model)
        with tracker:
            optimizer.step()
        print(tracker)        # per parameter: last, median, verdict

    A ratio near 1e-3 is the usual sign of a sensible learning rate; much larger means
    the weights are being thrown around, much smaller that they barely move.
    """

    def __init__(self, model, every: int = 1):
        self.named = [(n, p) for n, p in model.named_parameters()]
        self.every = max(int(every), 1)
        self.history: dict[str, list[float]] = {n: [] for n, _ in self.named}
        self.steps = 0
        self._before = None

    def __enter__(self) -> "UpdateRatioTracker":
        self._before = [p.data.copy() for _, p in self.named] if self.steps % self.every == 0 else None
        return self

    def __exit__(self, *exc) -> None:
        if self._before is not None and exc[0] is None:
            for (n, p), old in zip(self.named, self._before):
                xp = xp_of(old)
                num = float(xp.linalg.norm((p.data - old).astype(xp.float64)))
                den = float(xp.linalg.norm(old.astype(xp.float64)))
                self.history[n].append(num / den if den > 0 else float("inf") if num > 0 else 0.0)
        self._before = None
        self.steps += 1

    def ratios(self) -> dict[str, float]:
        """Median ratio per parameter over the tracked steps."""
        return {n: float(np.median(h)) for n, h in self.history.items() if h}

    def __str__(self) -> str:
        out = []
        for n, r in self.ratios().items():
            note = "large (lower the lr?)" if r > 1e-2 else "tiny (raise the lr?)" if r < 1e-5 else "ok"
            out.append(f"{n:<40} median {r:.2e} over {len(self.history[n])} steps  {note}")
        return "\n".join(out) or "no steps tracked"

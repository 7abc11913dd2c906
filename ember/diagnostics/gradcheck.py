"""Gradient checking by finite differences (float64 central differences).

``gradcheck(fn, inputs)`` compares the gradients ember's autograd computes with
numerical ones. A non-scalar output ``y`` is reduced to the scalar ``L = sum(y * v)``
for a fixed random ``v`` (a random projection), so one backward gives the analytic
``dL/dx`` for every input and the numerical estimate is

    dL/dx[i] ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)        (mode="full")

which costs two forwards per input element. For large inputs ``mode="directional"``
checks a few random unit directions d instead: (L(x + eps d) - L(x - eps d)) / (2 eps)
against ``dL/dx . d`` (two forwards per direction).

The building block is :func:`check_tensors`, which takes a closure computing the
projected loss and the tensors to check; ``gradcheck`` (functions) and a later
``gradcheck_model`` (modules) are thin layers over it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ember.autograd import no_grad
from ember.backend import asnumpy, xp_of
from ember.errors import EmberError
from ember.tensor import Tensor

__all__ = ["gradcheck", "check_tensors", "GradcheckReport", "GradcheckEntry", "GradcheckError"]


@dataclass
class GradcheckEntry:
    """The comparison for one checked tensor."""

    name: str
    shape: tuple
    max_abs_err: float  # max |numeric - analytic|
    max_rel_err: float  # max |numeric - analytic| / max(|numeric|, |analytic|)
    checked: int  # elements (mode "full") or directions (mode "directional") compared
    passed: bool
    worst: str = ""  # where the worst mismatch is, and both values


@dataclass
class GradcheckReport:
    """Per-tensor errors of one gradient check; ``str(report)`` is a table."""

    entries: list = field(default_factory=list)
    mode: str = "full"
    eps: float = 1e-6
    atol: float = 1e-5
    rtol: float = 1e-3

    @property
    def passed(self) -> bool:
        return all(e.passed for e in self.entries)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def max_abs_err(self) -> float:
        return max((e.max_abs_err for e in self.entries), default=0.0)

    @property
    def max_rel_err(self) -> float:
        return max((e.max_rel_err for e in self.entries), default=0.0)

    def __str__(self) -> str:
        head = ("tensor", "shape", "checked", "max abs err", "max rel err", "ok")
        rows = [
            (e.name, str(e.shape), str(e.checked), f"{e.max_abs_err:.3e}", f"{e.max_rel_err:.3e}",
             "yes" if e.passed else "NO")
            for e in self.entries
        ]
        widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
        line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
        out = [
            f"gradcheck ({self.mode}, eps={self.eps:g}, atol={self.atol:g}, rtol={self.rtol:g}): "
            + ("passed" if self.passed else "FAILED"),
            line(head),
            line(tuple("-" * w for w in widths)),
        ]
        out += [line(r) for r in rows]
        out += [f"  {e.name}: {e.worst}" for e in self.entries if not e.passed and e.worst]
        return "\n".join(out)


class GradcheckError(EmberError, AssertionError):
    """Analytic and numerical gradients disagree; ``.report`` holds the details."""

    def __init__(self, report: GradcheckReport):
        super().__init__(str(report))
        self.report = report


def _compare(name: str, shape: tuple, num: np.ndarray, ana: np.ndarray, atol: float, rtol: float,
             what: str) -> GradcheckEntry:
    """Elementwise |num - ana| <= atol + rtol * |num| (numpy.allclose's rule)."""
    err = np.abs(num - ana)
    scale = np.maximum(np.abs(num), np.abs(ana))
    rel = np.divide(err, scale, out=np.zeros_like(err), where=scale > 0)
    bad = ~(err <= atol + rtol * np.abs(num))  # also catches nan
    worst = ""
    if err.size:
        i = int(np.argmax(np.where(np.isnan(err), np.inf, err)))
        loc = tuple(int(j) for j in np.unravel_index(i, err.shape)) if what == "element" else i
        worst = f"worst at {what} {loc}: numeric {num.flat[i]:.6g}, analytic {ana.flat[i]:.6g}"
    return GradcheckEntry(
        name, shape, float(np.nanmax(err, initial=0.0)) if not np.isnan(err).any() else float("nan"),
        float(np.max(rel, initial=0.0)), int(err.size), not bool(bad.any()), worst,
    )


def check_tensors(loss: Callable[[], Tensor], tensors: Sequence[Tensor], names: Sequence[str], *,
                  eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3, mode: str = "full",
                  n_directions: int = 4, seed: int = 0) -> GradcheckReport:
    """Check d loss() / d t for each float64 leaf ``t`` in ``tensors``.

    ``loss()`` must rebuild a scalar from the current contents of ``tensors`` every
    time it is called (it is called once with grad mode on, then under no_grad with
    each tensor's array perturbed in place and restored).
    """
    if mode not in ("full", "directional"):
        raise ValueError(f"gradcheck: mode must be 'full' or 'directional', got {mode!r}")
    for t in tensors:
        t.grad = None
    out = loss()
    if out.requires_grad:
        out.backward()
    analytic = [asnumpy(t.grad.data) if t.grad is not None else np.zeros(t.shape) for t in tensors]

    def value() -> float:
        with no_grad():
            return float(loss().item())

    rng = np.random.default_rng(seed)
    report = GradcheckReport(mode=mode, eps=eps, atol=atol, rtol=rtol)
    for t, name, ana in zip(tensors, names, analytic):
        x = t.data
        xp = xp_of(x)
        if mode == "full":
            num = np.zeros(t.shape)
            flat = x.reshape(-1)  # a view: x is our own contiguous float64 copy
            for i in range(flat.size):
                orig = flat[i].item()
                flat[i] = orig + eps
                hi = value()
                flat[i] = orig - eps
                lo = value()
                flat[i] = orig
                num.flat[i] = (hi - lo) / (2 * eps)
            report.entries.append(_compare(name, t.shape, num, ana, atol, rtol, "element"))
        else:
            nums, anas = [], []
            orig = x.copy()
            for _ in range(n_directions):
                d = rng.standard_normal(t.shape)
                d /= max(np.linalg.norm(d), 1e-300)
                dx = xp.asarray(d)
                x[...] = orig + eps * dx
                hi = value()
                x[...] = orig - eps * dx
                lo = value()
                x[...] = orig
                nums.append((hi - lo) / (2 * eps))
                anas.append(float((ana * d).sum()))
            report.entries.append(_compare(name, t.shape, np.array(nums), np.array(anas), atol, rtol, "direction"))
    return report


def _as_float64_leaf(t: Tensor) -> Tensor:
    data = t.data
    if data.dtype.kind == "f":
        data = data.astype(np.float64, order="C", copy=True)  # a fresh contiguous copy
        return Tensor(data, requires_grad=t.requires_grad)
    return Tensor(data)


def _project(out, rng: np.random.Generator, cache: list) -> Tensor:
    """sum(y * v) over the float outputs, with the same v on every call."""
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    outs = [y for y in outs if isinstance(y, Tensor) and y.dtype.kind == "f"]
    if not outs:
        raise TypeError("gradcheck: fn must return a floating point Tensor (or a tuple of them)")
    if not cache:
        cache.extend(Tensor(xp_of(y.data).asarray(rng.standard_normal(y.shape))) for y in outs)
    total = None
    for y, v in zip(outs, cache):
        if y.shape != v.shape:
            raise ValueError(f"gradcheck: fn's output changed shape between calls ({v.shape} -> {y.shape})")
        term = (y.double() * v).sum()
        total = term if total is None else total + term
    return total


def gradcheck(fn: Callable, inputs, *, params: Sequence[Tensor] = (), eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, mode: str = "full", n_directions: int = 4, seed: int = 0,
              raise_exception: bool = True, names: Sequence[str] | None = None) -> GradcheckReport:
    """Compare autograd gradients of ``fn(*inputs)`` with central differences in float64.

    Args:
        fn: called as ``fn(*inputs)``; returns a Tensor (any shape) or a tuple of Tensors.
        inputs: a Tensor or a sequence; Tensors that require grad are checked, each
            replaced by a float64 copy (other float tensors become float64 constants;
            anything else is passed unchanged).
        params: tensors ``fn`` uses without taking them as arguments (a layer's or a
            model's parameters). Their arrays are switched to float64 for the check,
            checked too, and restored afterwards (data and grad).
        eps, atol, rtol: step and tolerances; an element fails when
            ``|numeric - analytic| > atol + rtol * |numeric|``.
        mode: "full" (every element) or "directional" (``n_directions`` random unit
            directions per tensor, for large inputs).
        seed: seeds the output projection and the directions.
        raise_exception: raise GradcheckError (an AssertionError) on failure.

    Returns:
        A GradcheckReport: per tensor the max abs and rel errors; ``str()`` is a table.
    """
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    args = [_as_float64_leaf(x) if isinstance(x, Tensor) else x for x in inputs]
    params = list(params)
    for p in params:
        if not isinstance(p, Tensor) or p.dtype.kind != "f":
            raise TypeError("gradcheck: params must be floating point Tensors")
    checked = [a for a, x in zip(args, inputs) if isinstance(x, Tensor) and x.requires_grad]
    if names is None:
        names = [f"input {i}" for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
        names += [getattr(p, "name", None) or f"param {i}" for i, p in enumerate(params)]
    if not checked and not params:
        raise ValueError("gradcheck: no input requires grad and no params were given; nothing to check")

    saved = [(p.data, p.grad, p.requires_grad) for p in params]
    rng = np.random.default_rng(seed)
    cache: list = []
    try:
        for p in params:
            p.data = p.data.astype(np.float64, order="C", copy=True)
            p.grad = None
            p.requires_grad = True
        report = check_tensors(
            lambda: _project(fn(*args), rng, cache), checked + params, names,
            eps=eps, atol=atol, rtol=rtol, mode=mode, n_directions=n_directions, seed=seed,
        )
    finally:
        for p, (data, grad, req) in zip(params, saved):
            p.data, p.grad, p.requires_grad = data, grad, req
    if raise_exception and not report.passed:
        raise GradcheckError(report)
    return report

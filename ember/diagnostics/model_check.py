"""Check every parameter gradient of a whole model by finite differences.

``gradcheck_model(model, x, target, loss)`` deep-copies the model, moves the copy,
the input and every buffer to float64, and compares the gradient backprop gives for
each parameter with central differences of the loss (see
:mod:`ember.diagnostics.gradcheck`). Small tensors are checked element by element,
large ones along a few random unit directions. The original model is not touched.

Randomness must not change the loss between the two sides of a difference, so dropout
layers in the copy are put in eval mode. Batch norm in train mode is deterministic
(it normalizes with the batch's own statistics) and is left as it is, so its backward
through the batch statistics is checked too.
"""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np

from ember.backend import xp_of
from ember.diagnostics.gradcheck import GradcheckError, GradcheckReport, check_tensors
from ember.tensor import Tensor

__all__ = ["gradcheck_model"]


def _resolve_loss(loss, op: str = "gradcheck_model") -> Callable:
    if callable(loss):
        return loss
    import ember.nn.functional as F

    table = {"cross_entropy": "cross_entropy", "mse": "mse_loss", "nll": "nll_loss"}
    if loss in table:
        return getattr(F, table[loss])
    raise ValueError(f"{op}: loss must be a callable or one of {sorted(table)}, got {loss!r}")


def _deterministic(model) -> None:
    """Dropout layers (any class named *Dropout*) go to eval mode; everything else keeps its mode."""
    for m in model.modules():
        if "Dropout" in type(m).__name__:
            m.training = False


def gradcheck_model(model, x: Tensor, target, loss="cross_entropy", *, eps: float = 1e-6, atol: float = 1e-5,
                    rtol: float = 1e-3, max_full: int = 16, n_directions: int = 3, seed: int = 0,
                    raise_exception: bool = False) -> GradcheckReport:
    """Finite-difference check of d loss(model(x), target) / d p for every parameter p.

    Args:
        model: an ``ember.nn.Module`` (deep-copied; the original is unchanged).
        x: input Tensor (N, ...); use a small batch and small spatial size, since each
            check costs two forward passes.
        target: whatever ``loss`` takes as its second argument (class indices (N,) for
            cross entropy); float targets are converted to float64.
        loss: ``loss(output, target) -> scalar Tensor``, or "cross_entropy" / "mse" / "nll".
        max_full: tensors with at most this many elements are checked element by
            element (mode "full"), larger ones along ``n_directions`` random directions.
        raise_exception: raise GradcheckError when some parameter fails.

    Returns:
        A GradcheckReport with one entry per parameter (named as in ``named_parameters``);
        ``print(report)`` shows a table with the worst relative error of each.
    """
    fn = _resolve_loss(loss)
    net = copy.deepcopy(model)
    net.double()  # parameters and buffers, in place
    _deterministic(net)
    xd = Tensor(x.data.astype(np.float64, copy=True)) if x.dtype.kind == "f" else x
    if isinstance(target, Tensor) and target.dtype.kind == "f":
        target = Tensor(target.data.astype(np.float64, copy=True))
    named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("gradcheck_model: the model has no parameters that require grad")
    for _, p in named:  # check_tensors perturbs elements through a flat view: needs C order
        p.data = xp_of(p.data).ascontiguousarray(p.data)

    def closure() -> Tensor:
        return fn(net(xd), target)

    small = [(n, p) for n, p in named if p.numel() <= max_full]
    large = [(n, p) for n, p in named if p.numel() > max_full]
    report = GradcheckReport(mode="full+directional" if small and large else ("full" if small else "directional"),
                             eps=eps, atol=atol, rtol=rtol)
    for group, mode in ((small, "full"), (large, "directional")):
        if group:
            part = check_tensors(closure, [p for _, p in group], [n for n, _ in group], eps=eps, atol=atol,
                                 rtol=rtol, mode=mode, n_directions=n_directions, seed=seed)
            report.entries.extend(part.entries)
    order = {n: i for i, (n, _) in enumerate(named)}
    report.entries.sort(key=lambda e: order[e.name])
    if raise_exception and not report.passed:
        raise GradcheckError(report)
    return report

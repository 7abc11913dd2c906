"""Record which leaf modules a forward pass runs, in order, with their inputs and outputs.

Every diagnostic that needs to "see inside" a network (layer tables, receptive
fields, activation statistics, class activation maps) starts from one traced run:
a forward hook on every leaf module (a module without children) appends a
:class:`Call` each time the module runs. Residual blocks and other custom modules
need no special cases, because only leaves are hooked and the autograd graph
(``tensor.grad_fn.next``) links each leaf's input back to the leaf outputs it was
computed from, through any functional ops (``out + identity``, ``F.relu``) between them.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from ember.autograd import Function, enable_grad
from ember.tensor import Tensor

__all__ = ["Call", "trace", "leaf_modules", "eval_mode", "graph_key", "first_ancestors"]


@dataclass
class Call:
    """One run of one leaf module during a traced forward pass."""

    index: int
    name: str  # dotted path from the root, e.g. "layer1.0.conv1"
    module: object
    inputs: list = field(repr=False)  # the Tensor arguments
    output: object = field(repr=False)  # a Tensor (or whatever the module returned)
    root: object = field(default=None, repr=False)  # the traced input (graph leaf)

    @property
    def type(self) -> str:
        return type(self.module).__name__

    @property
    def out_shape(self) -> tuple | None:
        return tuple(self.output.shape) if isinstance(self.output, Tensor) else None


def leaf_modules(model) -> list[tuple[str, object]]:
    """``(name, module)`` for every module without children (the root too, if it has none)."""
    out = []
    for name, m in model.named_modules():
        if next(iter(m.children()), None) is None:
            out.append((name or type(m).__name__, m))
    return out


@contextmanager
def eval_mode(model, keep_train: tuple = ()) -> Iterator[None]:
    """Temporarily put every submodule in eval mode (restored on exit), so a diagnostic
    forward pass neither updates batch-norm running statistics nor draws dropout masks."""
    saved = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield
    finally:
        for m, mode in saved:
            m.training = mode


def graph_key(t: Tensor) -> int:
    """Identity of the value a tensor holds in the autograd graph: its grad_fn if it has
    one (in-place ops and aliases share it), else the tensor itself (a leaf)."""
    return id(t.grad_fn) if t.grad_fn is not None else id(t)


def first_ancestors(t: Tensor, known: dict) -> list:
    """The entries of ``known`` (keyed by :func:`graph_key`) nearest to ``t`` on every
    path back through the autograd graph; parameters and other leaves are ignored."""
    k = graph_key(t)
    if k in known:
        return [known[k]]
    found, seen = [], set()
    stack = [t.grad_fn] if t.grad_fn is not None else []
    while stack:
        fn = stack.pop()
        for parent in getattr(fn, "next", ()):
            if parent is None or id(parent) in seen:
                continue
            seen.add(id(parent))
            if id(parent) in known:
                found.append(known[id(parent)])
            elif isinstance(parent, Function):
                stack.append(parent)
    return found


def trace(model, x, *, train: bool = False) -> list[Call]:
    """Run ``model(x)`` once with a forward hook on every leaf module.

    Args:
        model: an ``ember.nn.Module``.
        x: input Tensor (N, ...). A float copy requiring grad is used, so every
            intermediate value carries a grad_fn linking it to its producers.
        train: keep the model's modes; by default the pass runs in eval mode
            (modes are restored afterwards, so the model is left as it was).

    Returns:
        The calls in execution order (a module used twice appears twice).
    """
    calls: list[Call] = []

    def hook_for(name):
        def hook(module, args, output):
            ins = [a for a in args if isinstance(a, Tensor)]
            calls.append(Call(len(calls), name, module, ins, output))
        return hook

    data = x.data if isinstance(x, Tensor) else np.asarray(x)
    if data.dtype.kind != "f":
        data = data.astype(np.float32)
    xin = Tensor(data.copy(), requires_grad=True)
    handles = [m.register_forward_hook(hook_for(name)) for name, m in leaf_modules(model)]
    try:
        with enable_grad():
            if train:
                model(xin)
            else:
                with eval_mode(model):
                    model(xin)
    finally:
        for h in handles:
            h.remove()
    for c in calls:
        c.root = xin
    return calls

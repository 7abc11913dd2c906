"""Stochastic gradient descent with momentum (heavy-ball or Nesterov).

Update rule (PyTorch's, step t, gradient g, parameter p)::

    g = -g                    if maximize
    g = g + weight_decay * p  (L2 penalty)
    b = g                     at the first step, else  b = momentum * b + (1 - dampening) * g
    g = g + momentum * b      if nesterov, else  g = b
    p = p - lr * g

Nesterov momentum in this form is from Sutskever et al., "On the importance of
initialization and momentum in deep learning" (ICML 2013).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from ember.backend import xp_of
from ember.optim import cuda_step
from ember.optim.optimizer import Optimizer
from ember.tensor import Tensor

__all__ = ["SGD"]


class SGD(Optimizer):
    """``SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, maximize=False)``.

    State per parameter: ``momentum_buffer`` (same shape as the parameter) when
    ``momentum != 0``.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False):
        self._check_args("SGD", lr=lr, momentum=momentum, weight_decay=weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"SGD: nesterov=True requires momentum > 0 and dampening == 0 "
                f"(got momentum={momentum}, dampening={dampening})"
            )
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
            wd, nesterov, maximize = group["weight_decay"], group["nesterov"], group["maximize"]
            on_gpu = []  # CuPy parameters: all updated in one launch after the loop
            for p, x, g, state in self._grads(group):
                if self._fused(x, g):
                    on_gpu.append((p, x, g, state))
                    continue
                # Arithmetic on raw arrays records nothing in the graph (no_grad semantics);
                # p.grad itself is never modified: the first rewrite of g makes a new array.
                if maximize:
                    g = -g
                if wd != 0:
                    g = g + wd * x
                if momentum != 0:
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        b = g.copy()
                        state["momentum_buffer"] = Tensor(b)
                    else:
                        b = buf.data
                        b *= momentum
                        if dampening == 0:
                            b += g
                        else:
                            b += (1 - dampening) * g
                    g = g + momentum * b if nesterov else b
                x -= lr * g
                p._vc[0] += 1  # a graph that saved p now refuses to backward through stale values
            for batch in self._by_dtype(on_gpu):
                bufs, first = None, [False] * len(batch)
                if momentum != 0:
                    first = [state.get("momentum_buffer") is None for _, _, _, state in batch]
                    for (p, x, g, state), new in zip(batch, first):
                        if new:
                            state["momentum_buffer"] = Tensor(xp_of(x).empty_like(x))
                    bufs = [state["momentum_buffer"].data for _, _, _, state in batch]
                cuda_step.sgd_step([b[1] for b in batch], [b[2] for b in batch], bufs, first, lr, wd, maximize,
                                   momentum, dampening, nesterov)
        return loss

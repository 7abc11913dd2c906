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
from ember.ops import cuda_kernels
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
        if lr < 0.0:
            raise ValueError(f"SGD: invalid learning rate lr={lr} (must be >= 0)")
        if momentum < 0.0:
            raise ValueError(f"SGD: invalid momentum={momentum} (must be >= 0)")
        if weight_decay < 0.0:
            raise ValueError(f"SGD: invalid weight_decay={weight_decay} (must be >= 0)")
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
            for p, x, g, state in self._grads(group):
                if cuda_kernels.fits(x, g):  # GPU: the whole update in one fused launch
                    buf = state.get("momentum_buffer") if momentum != 0 else None
                    first = momentum != 0 and buf is None
                    if first:
                        buf = state["momentum_buffer"] = Tensor(xp_of(x).empty_like(x))
                    cuda_kernels.sgd_step(x, g, lr, wd, maximize, momentum, dampening, nesterov,
                                          None if buf is None else buf.data, first)
                    p._vc[0] += 1
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
        return loss

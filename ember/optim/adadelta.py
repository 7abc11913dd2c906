"""Adadelta (Zeiler, "ADADELTA: An Adaptive Learning Rate Method", arXiv:1212.5701, 2012), step t::

    g = g + weight_decay * p
    s = rho * s + (1 - rho) * g * g                  (running mean of squared gradients)
    d = sqrt(u + eps) / sqrt(s + eps) * g            (the step, in the units of p)
    u = rho * u + (1 - rho) * d * d                  (running mean of squared steps)
    p = p - lr * d

Adagrad's step shrinks for good; Adadelta forgets old gradients (like RMSprop) and multiplies by
the root mean square of the recent steps, so that the step has the units of p and the paper needs
no learning rate (lr = 1). PyTorch's formulation: eps inside both square roots, an ``lr`` factor.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from ember.backend import xp_of
from ember.optim.optimizer import Optimizer
from ember.tensor import Tensor

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    """``Adadelta(params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, *, maximize=False)``.

    State per parameter: ``step``, ``square_avg`` (s above) and ``acc_delta`` (u above),
    each buffer shaped like the parameter.
    """

    def __init__(self, params: Iterable, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0, *, maximize: bool = False):
        self._check_args("Adadelta", lr=lr, eps=eps, weight_decay=weight_decay)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Adadelta: invalid rho={rho} (must be in [0, 1])")
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            lr, rho, eps = group["lr"], group["rho"], group["eps"]
            for p, x, g, state in self._grads(group):
                xp = xp_of(x)
                if not state:
                    state["step"] = 0
                    state["square_avg"] = Tensor(xp.zeros_like(x))
                    state["acc_delta"] = Tensor(xp.zeros_like(x))
                state["step"] += 1
                g = self._update_grad(x, g, group)
                s, u = state["square_avg"].data, state["acc_delta"].data
                s *= rho
                s += (1 - rho) * (g * g)
                d = xp.sqrt(u + eps)
                d /= xp.sqrt(s + eps)
                d *= g
                u *= rho
                u += (1 - rho) * (d * d)
                d *= lr
                x -= d
                p._vc[0] += 1  # a graph that saved p now refuses to backward through stale values
        return loss

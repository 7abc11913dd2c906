"""Adagrad (Duchi, Hazan and Singer, "Adaptive Subgradient Methods for Online Learning and
Stochastic Optimization", JMLR 2011), step t::

    g = g + weight_decay * p
    lr_t = lr / (1 + (t - 1) * lr_decay)
    s = s + g * g                      (every squared gradient so far, per element)
    p = p - lr_t * g / (sqrt(s) + eps)

Each weight's step shrinks with the gradients it has seen: rare features keep large steps,
frequent ones small. Because s only grows, the steps shrink for good; RMSprop replaces the sum
by a running mean to forget old gradients. PyTorch's formulation and defaults (eps outside the
square root; s starts at ``initial_accumulator_value``; the state is made when the optimizer is).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from ember.backend import xp_of
from ember.optim.optimizer import Optimizer
from ember.tensor import Tensor

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    """``Adagrad(params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10)``.

    State per parameter: ``step`` and ``sum`` (the squared gradients accumulated so far).
    """

    def __init__(self, params: Iterable, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, *, maximize: bool = False):
        self._check_args("Adagrad", lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                         initial_accumulator_value=initial_accumulator_value, eps=eps)
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize)
        super().__init__(params, defaults)
        for group in self.param_groups:  # as PyTorch: every parameter has its state from the start
            for p in group["params"]:
                self._init_state(self.state.setdefault(p, {}), p.data, group)

    @staticmethod
    def _init_state(state: dict, x, group: dict) -> None:
        if not state:
            state["step"] = 0
            state["sum"] = Tensor(xp_of(x).full_like(x, group["initial_accumulator_value"]))

    def step(self, closure: Callable[[], Any] | None = None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            lr, lr_decay, eps = group["lr"], group["lr_decay"], group["eps"]
            for p, x, g, state in self._grads(group):
                xp = xp_of(x)
                self._init_state(state, x, group)  # (a group added after construction)
                state["step"] += 1
                g = self._update_grad(x, g, group)
                s = state["sum"].data
                s += g * g
                d = xp.sqrt(s)
                d += eps
                x -= (lr / (1 + (state["step"] - 1) * lr_decay)) * (g / d)
                p._vc[0] += 1  # a graph that saved p now refuses to backward through stale values
        return loss

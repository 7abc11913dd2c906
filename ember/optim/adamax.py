"""Adamax (Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, section 7.1), step t::

    g = g + weight_decay * p
    m = m + (1 - beta1) * (g - m)                (first moment, as in Adam)
    u = max(beta2 * u, |g| + eps)                (exponentially weighted infinity norm)
    p = p - lr / (1 - beta1^t) * m / u

Adam's second moment is an L2 norm of past gradients; Adamax takes the limit of the Lp norm as
p goes to infinity, a running maximum that needs no bias correction. PyTorch's formulation: eps
is added to |g| inside the maximum (so u > 0 and the division is safe).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from ember.backend import xp_of
from ember.optim.optimizer import Optimizer
from ember.tensor import Tensor

__all__ = ["Adamax"]


class Adamax(Optimizer):
    """``Adamax(params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, *, maximize=False)``.

    State per parameter: ``step``, ``exp_avg`` (m above) and ``exp_inf`` (u above), each buffer
    shaped like the parameter.
    """

    def __init__(self, params: Iterable, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, *, maximize: bool = False):
        self._check_args("Adamax", betas, lr=lr, eps=eps, weight_decay=weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for p, x, g, state in self._grads(group):
                xp = xp_of(x)
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = Tensor(xp.zeros_like(x))
                    state["exp_inf"] = Tensor(xp.zeros_like(x))
                state["step"] += 1
                g = self._update_grad(x, g, group)
                m, u = state["exp_avg"].data, state["exp_inf"].data
                m += (1 - beta1) * (g - m)
                u *= beta2
                a = xp.abs(g)
                a += eps
                xp.maximum(u, a, out=u)
                xp.divide(m, u, out=a)
                a *= lr / (1 - beta1 ** state["step"])
                x -= a
                p._vc[0] += 1  # a graph that saved p now refuses to backward through stale values
        return loss

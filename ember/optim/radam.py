"""RAdam (Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020), step t::

    g = g + weight_decay * p                     (L2 penalty folded into the gradient), or
    p = p * (1 - lr * weight_decay)              (decoupled_weight_decay=True, as AdamW)
    m = m + (1 - beta1) * (g - m)                (first moment, as in Adam)
    v = beta2 * v + (1 - beta2) * g * g          (second moment, as in Adam)
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * t * beta2^t / (1 - beta2^t)
    r_t = sqrt((rho_t - 4) (rho_t - 2) rho_inf / ((rho_inf - 4) (rho_inf - 2) rho_t))
    p = p - lr * m / (1 - beta1^t) * r_t * sqrt(1 - beta2^t) / (sqrt(v) + eps)   if rho_t > 5
    p = p - lr * m / (1 - beta1^t)                                                 otherwise

In the first steps v rests on a few gradients and the adaptive step 1 / sqrt(v) has a large
variance; rho_t (the length of the moving average, in effect) measures that, and while it is
at most 5 RAdam takes plain momentum steps, then rescales Adam's step by r_t (which rises to 1).
It is the principled version of a learning-rate warm-up. PyTorch's formulation: eps is added to
sqrt(v) before the bias correction sqrt(1 - beta2^t).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

from ember.backend import xp_of
from ember.optim.optimizer import Optimizer
from ember.tensor import Tensor

__all__ = ["RAdam"]


class RAdam(Optimizer):
    """``RAdam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
    decoupled_weight_decay=False, *, maximize=False)``.

    State per parameter: ``step``, ``exp_avg`` and ``exp_avg_sq`` (shaped like the parameter).
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled_weight_decay: bool = False, *,
                 maximize: bool = False):
        self._check_args("RAdam", betas, lr=lr, eps=eps, weight_decay=weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            rho_inf = 2 / (1 - beta2) - 1
            for p, x, g, state in self._grads(group):
                xp = xp_of(x)
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = Tensor(xp.zeros_like(x))
                    state["exp_avg_sq"] = Tensor(xp.zeros_like(x))
                state["step"] += 1
                t = state["step"]
                g = self._update_grad(x, g, group)
                m, v = state["exp_avg"].data, state["exp_avg_sq"].data
                m += (1 - beta1) * (g - m)
                v *= beta2
                v += (1 - beta2) * (g * g)
                bias1, bias2 = 1 - beta1**t, 1 - beta2**t
                rho_t = rho_inf - 2 * t * beta2**t / bias2
                step = m * (lr / bias1)
                if rho_t > 5.0:
                    r_t = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
                    d = xp.sqrt(v)
                    d += eps
                    step *= r_t * math.sqrt(bias2)
                    step /= d
                x -= step
                p._vc[0] += 1  # a graph that saved p now refuses to backward through stale values
        return loss

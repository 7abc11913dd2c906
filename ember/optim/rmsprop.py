"""RMSprop (Hinton, Coursera "Neural Networks for Machine Learning", lecture 6e), step t::

    g = g + weight_decay * p
    s = alpha * s + (1 - alpha) * g * g          (running mean of squared gradients)
    a = a + (1 - alpha) * (g - a)                (centered: running mean of gradients,
    d = sqrt(s - a * a) + eps                     Graves, arXiv:1308.0850), else d = sqrt(s) + eps
    b = momentum * b + g / d ;  p = p - lr * b   (momentum > 0)
    p = p - lr * g / d                           (momentum == 0)

PyTorch's formulation: eps is added outside the square root.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from ember.backend import xp_of
from ember.optim import cuda_step
from ember.optim.optimizer import Optimizer
from ember.tensor import Tensor

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """``RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False)``.

    State per parameter: ``step``, ``square_avg``, plus ``momentum_buffer`` when
    ``momentum > 0`` and ``grad_avg`` when ``centered``.
    """

    def __init__(self, params: Iterable, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, *,
                 maximize: bool = False):
        self._check_args("RMSprop", lr=lr, eps=eps, momentum=momentum, weight_decay=weight_decay, alpha=alpha)
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
            wd, momentum, centered = group["weight_decay"], group["momentum"], group["centered"]
            on_gpu = []  # CuPy parameters: all updated in one launch after the loop
            for p, x, g, state in self._grads(group):
                xp = xp_of(x)
                if not state:
                    state["step"] = 0
                    state["square_avg"] = Tensor(xp.zeros_like(x))
                    if momentum > 0:
                        state["momentum_buffer"] = Tensor(xp.zeros_like(x))
                    if centered:
                        state["grad_avg"] = Tensor(xp.zeros_like(x))
                state["step"] += 1
                if self._fused(x, g) and momentum == 0 and not centered:
                    on_gpu.append((p, x, g, state))
                    continue
                if group["maximize"]:
                    g = -g
                if wd != 0:
                    g = g + wd * x
                s = state["square_avg"].data
                tmp = xp.multiply(g, g)
                tmp *= 1 - alpha
                s *= alpha
                s += tmp
                if centered:
                    a = state["grad_avg"].data
                    xp.subtract(g, a, out=tmp)
                    tmp *= 1 - alpha
                    a += tmp
                    xp.multiply(a, a, out=tmp)
                    xp.subtract(s, tmp, out=tmp)
                    xp.sqrt(tmp, out=tmp)
                else:
                    xp.sqrt(s, out=tmp)
                tmp += eps
                xp.divide(g, tmp, out=tmp)  # tmp = g / d
                if momentum > 0:
                    b = state["momentum_buffer"].data
                    b *= momentum
                    b += tmp
                    tmp = b
                x -= lr * tmp
                p._vc[0] += 1  # a graph that saved p now refuses to backward through stale values
            for batch in self._by_dtype(on_gpu):
                cuda_step.rmsprop_step([b[1] for b in batch], [b[2] for b in batch],
                                       [b[3]["square_avg"].data for b in batch], lr, alpha, eps, wd, group["maximize"])
        return loss

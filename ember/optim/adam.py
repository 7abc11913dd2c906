"""Adam and AdamW.

Adam (Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015), step t::

    g = g + weight_decay * p                     (Adam: L2 penalty folded into the gradient)
    p = p * (1 - lr * weight_decay)              (AdamW: decoupled decay, Loshchilov & Hutter,
                                                  "Decoupled Weight Decay Regularization", ICLR 2019)
    m = m + (1 - beta1) * (g - m)                (first moment, an exponential moving average)
    v = beta2 * v + (1 - beta2) * g * g          (second moment)
    v_max = max(v_max, v)                        (amsgrad: Reddi et al., ICLR 2018)
    p = p - lr / (1 - beta1^t) * m / (sqrt(v or v_max) / sqrt(1 - beta2^t) + eps)

which is PyTorch's formulation, eps included (added after the bias correction).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

from ember.backend import xp_of
from ember.optim import cuda_step
from ember.optim.optimizer import Optimizer
from ember.tensor import Tensor

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False)``.

    State per parameter: ``step`` (int), ``exp_avg``, ``exp_avg_sq`` and, with
    ``amsgrad``, ``max_exp_avg_sq`` (each shaped like the parameter).
    ``decoupled_weight_decay=True`` turns it into AdamW.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, *,
                 maximize: bool = False, decoupled_weight_decay: bool = False):
        name = type(self).__name__
        self._check_args(name, betas, lr=lr, eps=eps, weight_decay=weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            wd, amsgrad, decoupled = group["weight_decay"], group["amsgrad"], group["decoupled_weight_decay"]
            on_gpu = []  # CuPy parameters: all updated in one launch after the loop
            for p, x, g, state in self._grads(group):
                xp = xp_of(x)
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = Tensor(xp.zeros_like(x))
                    state["exp_avg_sq"] = Tensor(xp.zeros_like(x))
                    if amsgrad:
                        state["max_exp_avg_sq"] = Tensor(xp.zeros_like(x))
                state["step"] += 1
                t = state["step"]
                if self._fused(x, g) and not amsgrad:
                    on_gpu.append((p, x, g, state))
                    continue
                if group["maximize"]:
                    g = -g
                if wd != 0:
                    if decoupled:
                        x *= 1 - lr * wd
                    else:
                        g = g + wd * x
                m, v = state["exp_avg"].data, state["exp_avg_sq"].data
                # One scratch array serves every temporary below, so each step allocates once.
                tmp = xp.subtract(g, m)
                tmp *= 1 - beta1
                m += tmp
                xp.multiply(g, g, out=tmp)
                tmp *= 1 - beta2
                v *= beta2
                v += tmp
                if amsgrad:
                    v = xp.maximum(state["max_exp_avg_sq"].data, v, out=state["max_exp_avg_sq"].data)
                step_size = lr / (1 - beta1**t)
                xp.sqrt(v, out=tmp)
                tmp /= math.sqrt(1 - beta2**t)
                tmp += eps
                xp.divide(m, tmp, out=tmp)
                tmp *= step_size
                x -= tmp
                p._vc[0] += 1  # a graph that saved p now refuses to backward through stale values
            for batch in self._by_dtype(on_gpu):
                st = [b[3] for b in batch]
                cuda_step.adam_step([b[1] for b in batch], [b[2] for b in batch], [s["exp_avg"].data for s in st],
                                    [s["exp_avg_sq"].data for s in st], [s["step"] for s in st], lr, beta1, beta2,
                                    eps, wd, decoupled, group["maximize"])
        return loss


class AdamW(Adam):
    """``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False)``.

    Adam with decoupled weight decay: ``p *= 1 - lr * weight_decay`` before the Adam update.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, decoupled_weight_decay=True)

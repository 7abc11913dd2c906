"""NAdam (Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop), step t::

    g = g + weight_decay * p                     (L2 penalty folded into the gradient), or
    p = p * (1 - lr * weight_decay)              (decoupled_weight_decay=True: NAdamW)
    mu_t = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay))   (the momentum schedule)
    mu_prod = mu_1 * mu_2 * ... * mu_t
    m = m + (1 - beta1) * (g - m)                (first moment, as in Adam)
    v = beta2 * v + (1 - beta2) * g * g          (second moment, as in Adam)
    d = sqrt(v / (1 - beta2^t)) + eps
    p = p - lr * (1 - mu_t) / (1 - mu_prod) * g / d
          - lr * mu_{t+1} / (1 - mu_prod * mu_{t+1}) * m / d

Nesterov's trick in Adam: the step looks one momentum step ahead, using next step's momentum
coefficient mu_{t+1} on m and the current gradient for the rest. mu_t grows from about
beta1 / 2 to beta1 (Dozat's warming momentum; ``momentum_decay`` is his psi = 0.004). This is
PyTorch's formulation, defaults and all.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from ember.backend import xp_of
from ember.optim.optimizer import Optimizer
from ember.tensor import Tensor

__all__ = ["NAdam"]


class NAdam(Optimizer):
    """``NAdam(params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, momentum_decay=4e-3,
    decoupled_weight_decay=False, *, maximize=False)``.

    State per parameter: ``step``, ``mu_product`` (a Python float: the product of the momentum
    coefficients so far, 1 at the start), ``exp_avg`` and ``exp_avg_sq`` (shaped like the parameter).
    """

    def __init__(self, params: Iterable, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, maximize: bool = False):
        self._check_args("NAdam", betas, lr=lr, eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                        maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            psi = group["momentum_decay"]
            for p, x, g, state in self._grads(group):
                xp = xp_of(x)
                if not state:
                    state["step"] = 0
                    state["mu_product"] = 1.0
                    state["exp_avg"] = Tensor(xp.zeros_like(x))
                    state["exp_avg_sq"] = Tensor(xp.zeros_like(x))
                state["step"] += 1
                t = state["step"]
                g = self._update_grad(x, g, group)
                mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * psi))
                mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
                mu_prod = state["mu_product"] = state["mu_product"] * mu
                m, v = state["exp_avg"].data, state["exp_avg_sq"].data
                m += (1 - beta1) * (g - m)
                v *= beta2
                v += (1 - beta2) * (g * g)
                d = xp.sqrt(v / (1 - beta2**t))
                d += eps
                x -= (lr * (1 - mu) / (1 - mu_prod)) * (g / d)
                x -= (lr * mu_next / (1 - mu_prod * mu_next)) * (m / d)
                p._vc[0] += 1  # a graph that saved p now refuses to backward through stale values
        return loss

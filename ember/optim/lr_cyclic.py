"""Cyclical schedules: OneCycleLR, CyclicLR and CosineAnnealingWarmRestarts (SGDR).

Each returns to a high learning rate (once, every cycle, or at every restart) and is
stepped every batch. Use them from ``ember.optim.lr_scheduler``, which imports them;
this file imports the base class from there.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

from ember.optim.lr_scheduler import LRScheduler, _fn_state, _load_fn_state, _per_group
from ember.optim.optimizer import Optimizer

__all__ = ["OneCycleLR", "CyclicLR", "CosineAnnealingWarmRestarts"]


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin, "Super-Convergence", arXiv:1708.07120); step it every batch.

    The lr rises from ``max_lr / div_factor`` to ``max_lr`` over the first ``pct_start``
    of ``total_steps``, then anneals to ``initial_lr / final_div_factor``; momentum (or
    Adam's beta1) moves the opposite way between ``max_momentum`` and ``base_momentum``.
    ``three_phase`` returns to ``initial_lr`` symmetrically before the final anneal.
    """

    def __init__(self, optimizer: Optimizer, max_lr: float | Sequence[float], total_steps: int | None = None,
                 epochs: int | None = None, steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True,
                 base_momentum: float | Sequence[float] = 0.85, max_momentum: float | Sequence[float] = 0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1):
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError("OneCycleLR: give total_steps, or epochs and steps_per_epoch")
            total_steps = epochs * steps_per_epoch
        if not isinstance(total_steps, int) or total_steps <= 0:
            raise ValueError(f"OneCycleLR: total_steps must be a positive integer, got {total_steps}")
        if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise ValueError(f"OneCycleLR: pct_start must be a float in [0, 1], got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.total_steps, self.anneal_strategy = total_steps, anneal_strategy
        up = float(pct_start * total_steps) - 1
        # Each phase: (last step of the phase, group key of the start lr, key of the end lr,
        # key of the start momentum, key of the end momentum).
        if three_phase:
            self.phases = [
                [up, "initial_lr", "max_lr", "max_momentum", "base_momentum"],
                [float(2 * pct_start * total_steps) - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"],
                [total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"],
            ]
        else:
            self.phases = [
                [up, "initial_lr", "max_lr", "max_momentum", "base_momentum"],
                [total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"],
            ]
        groups = optimizer.param_groups
        max_lrs = _per_group("OneCycleLR", "max_lr", max_lr, len(groups))
        if last_epoch == -1:
            for group, m in zip(groups, max_lrs):
                group["initial_lr"] = m / div_factor
                group["max_lr"] = m
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError("OneCycleLR: cycle_momentum needs an optimizer with momentum or betas")
            self.use_beta1 = "betas" in optimizer.defaults
            maxs = _per_group("OneCycleLR", "max_momentum", max_momentum, len(groups))
            bases = _per_group("OneCycleLR", "base_momentum", base_momentum, len(groups))
            if last_epoch == -1:
                for group, hi, lo in zip(groups, maxs, bases):
                    _set_momentum(group, self.use_beta1, hi)
                    group["max_momentum"], group["base_momentum"] = hi, lo
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        t = self.last_epoch
        if t > self.total_steps:
            raise ValueError(f"OneCycleLR: tried to step {t} times but total_steps is {self.total_steps}")
        lrs = []
        for group in self.optimizer.param_groups:
            start = 0.0
            for i, (end, lr0, lr1, m0, m1) in enumerate(self.phases):
                if t <= end or i == len(self.phases) - 1:
                    pct = (t - start) / (end - start)
                    lrs.append(self._anneal(group[lr0], group[lr1], pct))
                    if self.cycle_momentum:
                        _set_momentum(group, self.use_beta1, self._anneal(group[m0], group[m1], pct))
                    break
                start = end
        return lrs


class CyclicLR(LRScheduler):
    """Cyclical learning rates (Smith, "Cyclical Learning Rates for Training Neural Networks",
    WACV 2017, arXiv:1506.01186); step it every batch.

    A cycle lasts ``step_size_up + step_size_down`` steps (``step_size_down`` defaults to
    ``step_size_up``): the lr climbs linearly from ``base_lr`` to ``max_lr`` and falls back.
    The height of the triangle is multiplied by ``scale_fn``:

    - ``mode="triangular"``: 1, every cycle reaches ``max_lr``;
    - ``mode="triangular2"``: ``1 / 2 ** (cycle - 1)``, the height halves every cycle;
    - ``mode="exp_range"``: ``gamma ** step``, the height decays every step;
    - or your own ``scale_fn(x)`` (then ``mode`` is ignored), evaluated at the cycle number
      (``scale_mode="cycle"``, cycles count from 1) or at the step number (``"iterations"``).

    With ``cycle_momentum`` the momentum (Adam's beta1 for optimizers with ``betas``) moves
    the opposite way, from ``max_momentum`` at ``base_lr`` to ``base_momentum`` at ``max_lr``.
    As in PyTorch, building the scheduler sets every group's lr to ``base_lr`` and its momentum
    to ``max_momentum``; ``base_lr``, ``max_lr`` and the momenta take one value or one per group.
    """

    def __init__(self, optimizer: Optimizer, base_lr: float | Sequence[float], max_lr: float | Sequence[float],
                 step_size_up: int = 2000, step_size_down: int | None = None, mode: str = "triangular",
                 gamma: float = 1.0, scale_fn: Callable[[float], float] | None = None, scale_mode: str = "cycle",
                 cycle_momentum: bool = True, base_momentum: float | Sequence[float] = 0.8,
                 max_momentum: float | Sequence[float] = 0.9, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"CyclicLR: {type(optimizer).__name__} is not an Optimizer")
        n = len(optimizer.param_groups)
        base_lrs = _per_group("CyclicLR", "base_lr", base_lr, n)
        self.max_lrs = _per_group("CyclicLR", "max_lr", max_lr, n)
        if not step_size_up > 0:
            raise ValueError(f"CyclicLR: step_size_up must be positive, got {step_size_up}")
        up = float(step_size_up)
        down = up if step_size_down is None else float(step_size_down)
        if not down >= 0:
            raise ValueError(f"CyclicLR: step_size_down must be >= 0, got {step_size_down}")
        if scale_fn is None and mode not in ("triangular", "triangular2", "exp_range"):
            raise ValueError(
                f"CyclicLR: mode must be 'triangular', 'triangular2' or 'exp_range' when scale_fn is None, got {mode!r}"
            )
        if scale_fn is not None and not callable(scale_fn):
            raise TypeError(f"CyclicLR: scale_fn must be callable, got {type(scale_fn).__name__}")
        if scale_mode not in ("cycle", "iterations"):
            raise ValueError(f"CyclicLR: scale_mode must be 'cycle' or 'iterations', got {scale_mode!r}")
        if last_epoch == -1:
            for group, lr in zip(optimizer.param_groups, base_lrs):
                group["lr"] = lr
        self.total_size = up + down
        self.step_ratio = up / self.total_size  # the fraction of a cycle spent climbing
        self.mode, self.gamma = mode, gamma
        self._scale_fn_custom = scale_fn
        if scale_fn is None:  # the built-in modes decide what their scale_fn is evaluated at
            scale_mode = "iterations" if mode == "exp_range" else "cycle"
        self.scale_mode = scale_mode
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError(
                    f"CyclicLR: cycle_momentum=True needs an optimizer with momentum or betas, and "
                    f"{type(optimizer).__name__} has neither; pass cycle_momentum=False"
                )
            self.use_beta1 = "betas" in optimizer.defaults
            self.base_momentums = _per_group("CyclicLR", "base_momentum", base_momentum, n)
            self.max_momentums = _per_group("CyclicLR", "max_momentum", max_momentum, n)
            if last_epoch == -1:
                for group, hi, lo in zip(optimizer.param_groups, self.max_momentums, self.base_momentums):
                    _set_momentum(group, self.use_beta1, hi)
                    group["max_momentum"], group["base_momentum"] = hi, lo
        super().__init__(optimizer, last_epoch)
        # PyTorch's order: the first step used the groups' initial_lr, later ones use base_lr.
        self.base_lrs = base_lrs

    def scale_fn(self, x: float) -> float:
        """The height factor at ``x``: a cycle number (from 1) or a step number, per ``scale_mode``."""
        if self._scale_fn_custom is not None:
            return self._scale_fn_custom(x)
        if self.mode == "triangular":
            return 1.0
        if self.mode == "triangular2":
            return 1 / (2.0 ** (x - 1))
        return self.gamma**x

    def get_lr(self) -> list[float]:
        """The lrs at step ``last_epoch``; with ``cycle_momentum`` this also sets the groups' momenta."""
        t = self.last_epoch
        cycle = math.floor(1 + t / self.total_size)
        x = 1.0 + t / self.total_size - cycle  # position within the cycle, in [0, 1)
        rise = x / self.step_ratio if x <= self.step_ratio else (x - 1) / (self.step_ratio - 1)
        scale = self.scale_fn(cycle if self.scale_mode == "cycle" else t)
        if self.cycle_momentum:
            for group, lo, hi in zip(self.optimizer.param_groups, self.base_momentums, self.max_momentums):
                _set_momentum(group, self.use_beta1, hi - (hi - lo) * rise * scale)
        return [lo + (hi - lo) * rise * scale for lo, hi in zip(self.base_lrs, self.max_lrs)]

    def state_dict(self) -> dict:
        """As PyTorch: a scale_fn that is a function is saved as None, a callable object as its attributes."""
        state = super().state_dict()
        state["_scale_fn_custom"] = _fn_state(self._scale_fn_custom)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)
        saved_fn = state.pop("_scale_fn_custom", None)
        super().load_state_dict(state)
        _load_fn_state(self._scale_fn_custom, saved_fn)


class CosineAnnealingWarmRestarts(LRScheduler):
    """SGDR: cosine annealing with warm restarts (Loshchilov & Hutter, "SGDR: Stochastic Gradient
    Descent with Warm Restarts", ICLR 2017, arXiv:1608.03983).

    ``lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2``, where ``T_cur``
    counts the epochs since the last restart and period ``i`` lasts ``T_i = T_0 * T_mult ** i``
    epochs. ``step()`` advances one epoch; ``step(epoch)`` jumps to ``epoch``, which may be
    fractional, so stepping every batch is ``scheduler.step(epoch + i / batches_per_epoch)``.
    """

    def __init__(self, optimizer: Optimizer, T_0: int, T_mult: int = 1, eta_min: float = 0.0,
                 last_epoch: int = -1):
        if not isinstance(T_0, int) or T_0 <= 0:
            raise ValueError(f"CosineAnnealingWarmRestarts: T_0 must be a positive integer, got {T_0!r}")
        if not isinstance(T_mult, int) or T_mult < 1:
            raise ValueError(f"CosineAnnealingWarmRestarts: T_mult must be an integer >= 1, got {T_mult!r}")
        if not isinstance(eta_min, (float, int)):
            raise ValueError(
                f"CosineAnnealingWarmRestarts: eta_min must be a float or int, got {type(eta_min).__name__}"
            )
        self.T_0, self.T_i, self.T_mult, self.eta_min = T_0, T_0, T_mult, eta_min
        self.T_cur = last_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        c = (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
        return [self.eta_min + (base - self.eta_min) * c for base in self.base_lrs]

    def step(self, epoch: float | None = None) -> None:
        """Advance one epoch, or go to ``epoch`` (a float is fine; later ``step()`` calls continue from
        ``floor(epoch)``)."""
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur += 1
            if self.T_cur >= self.T_i:
                self.T_cur %= self.T_i
                self.T_i *= self.T_mult
        elif epoch < 0:
            raise ValueError(f"CosineAnnealingWarmRestarts.step: epoch must be non-negative, got {epoch}")
        else:
            self.T_i, self.T_cur = self._period(epoch)
        self._set_epoch(math.floor(epoch))

    def _period(self, epoch: float) -> tuple[int, float]:
        """(T_i, T_cur) at ``epoch``: the length of the period it falls in and the time since its start."""
        T_0, m = self.T_0, self.T_mult
        if epoch < T_0:
            return T_0, epoch
        if m == 1:
            return T_0, epoch % T_0

        def start(k: int) -> int:  # restart k comes after T_0 * (1 + m + ... + m**(k-1)) epochs
            return T_0 * (m**k - 1) // (m - 1)

        k = int(math.log(epoch / T_0 * (m - 1) + 1, m))
        # The float log can land one period short exactly at a restart (log(1000, 10) < 3);
        # PyTorch then returns the end of the previous period, here the restart.
        while start(k + 1) <= epoch:
            k += 1
        while start(k) > epoch:
            k -= 1
        return T_0 * m**k, epoch - start(k)


def _set_momentum(group: dict, use_beta1: bool, value: float) -> None:
    """Set SGD's ``momentum``, or Adam's beta1, of one param group."""
    if use_beta1:
        group["betas"] = (value, *group["betas"][1:])
    else:
        group["momentum"] = value

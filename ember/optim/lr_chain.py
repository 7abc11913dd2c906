"""PolynomialLR, MultiplicativeLR, and ChainedScheduler, which multiplies schedules together.

Use them from ``ember.optim.lr_scheduler``, which imports them; this file imports the
base class from there.

ember computes a schedule in closed form (the lr at epoch ``e`` from ``initial_lr`` and
``e``), but PyTorch's schedulers update the lr the optimizer holds now
(``lr_e = f(lr_{e-1})``), and ``ChainedScheduler`` depends on that: stepping
``ConstantLR(factor=0.1)`` and then ``ExponentialLR(gamma=0.9)`` applies both factors.
So a chain steps each schedule through PyTorch's recursive form, written out below
(``_RECURSIVE``). Schedules without one (LambdaLR, OneCycleLR, CyclicLR,
CosineAnnealingWarmRestarts, and subclasses) set their own lr whatever the lr was,
in PyTorch as here.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

from ember.optim.lr_scheduler import (
    ConstantLR, CosineAnnealingLR, ExponentialLR, LinearLR, LRScheduler, MultiStepLR, ReduceLROnPlateau,
    SequentialLR, StepLR,
)
from ember.optim.optimizer import Optimizer

__all__ = ["PolynomialLR", "MultiplicativeLR", "ChainedScheduler"]


class PolynomialLR(LRScheduler):
    """``lr = initial_lr * (1 - min(epoch, total_iters) / total_iters) ** power``: 0 from ``total_iters`` on."""

    def __init__(self, optimizer: Optimizer, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1):
        if not total_iters > 0 or int(total_iters) != total_iters:
            raise ValueError(f"PolynomialLR: total_iters must be a positive integer, got {total_iters}")
        if not power >= 0:
            raise ValueError(f"PolynomialLR: power must be >= 0, got {power}")
        self.total_iters, self.power = total_iters, power
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        f = (1.0 - min(self.total_iters, self.last_epoch) / self.total_iters) ** self.power
        return [base * f for base in self.base_lrs]


class MultiplicativeLR(LRScheduler):
    """Multiply each group's lr by ``lr_lambda(epoch)`` at every step after the constructor's.

    Recursive by definition (``lr_e = lr_{e-1} * lr_lambda(e)``): it scales whatever lr the
    group holds, so to resume, load the optimizer's state dict (its lrs) with this one's.
    ``lr_lambda``: one function of the epoch, or one per param group.
    """

    def __init__(self, optimizer: Optimizer, lr_lambda: Callable[[int], float] | Sequence[Callable],
                 last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"MultiplicativeLR: {type(optimizer).__name__} is not an Optimizer")
        n = len(optimizer.param_groups)
        fns = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * n
        if len(fns) != n:
            raise ValueError(f"MultiplicativeLR: expected {n} lr_lambdas (one per group), got {len(fns)}")
        for fn in fns:
            if not callable(fn):
                raise TypeError(f"MultiplicativeLR: lr_lambda must be callable, got {type(fn).__name__}")
        self.lr_lambdas = fns
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [_multiplicative(self, g["lr"], i, self._is_initial) for i, g in enumerate(self.optimizer.param_groups)]


class ChainedScheduler(LRScheduler):
    """Step several schedulers of one optimizer together; their effects compose as in PyTorch.

    ``ChainedScheduler([ConstantLR(opt, factor=0.1, total_iters=2), ExponentialLR(opt, 0.9)])``
    gives ``lr = initial_lr * 0.1 * 0.9 ** epoch`` for two epochs, then ``initial_lr * 0.9 ** epoch``.
    Build the schedulers just before the chain, in the order given. To resume, build them and
    the chain afresh, then load the optimizer's state dict and the chain's.
    """

    def __init__(self, schedulers: Sequence[LRScheduler], optimizer: Optimizer | None = None):
        if len(schedulers) < 1:
            raise ValueError("ChainedScheduler: expects at least one scheduler")
        optimizer = optimizer or schedulers[0].optimizer
        for i, s in enumerate(schedulers):
            if not hasattr(s, "optimizer"):
                raise TypeError(f"ChainedScheduler: scheduler {i} ({type(s).__name__}) has no optimizer")
            if isinstance(s, ReduceLROnPlateau):
                raise ValueError(f"ChainedScheduler: scheduler {i} is ReduceLROnPlateau, which needs a metric")
            if s.optimizer is not optimizer:
                raise ValueError(f"ChainedScheduler: scheduler {i} ({type(s).__name__}) drives another optimizer")
        self.optimizer = optimizer
        self._schedulers = list(schedulers)
        # Each constructor above set its own first lr; PyTorch's build on one another (and a
        # resumed schedule keeps the lrs its optimizer holds).
        if all(getattr(s, "last_epoch", 0) == 0 for s in self._schedulers):
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"]
            _replay_first_step(self)
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    def step(self) -> None:
        for s in self._schedulers:
            _chain_step(s)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def __repr__(self) -> str:
        return f"ChainedScheduler({[type(s).__name__ for s in self._schedulers]}, last_lr={self._last_lr})"


def _chain_step(s: LRScheduler) -> None:
    """Step ``s`` as PyTorch does inside a chain: its recursive form, applied to the lrs the groups hold."""
    form = _RECURSIVE.get(type(s))
    if form is not None:
        s.last_epoch += 1
        _apply(s, form, initial=False)
    elif isinstance(s, SequentialLR):
        s._advance(_chain_step)
    else:
        s.step()  # a closed-form schedule sets its own lr; a nested chain steps its schedulers like this


def _replay_first_step(s: LRScheduler) -> None:
    """Redo the constructors' steps in order, each on the lr the one before left."""
    form = _RECURSIVE.get(type(s))
    if isinstance(s, ChainedScheduler):
        for child in s._schedulers:
            _replay_first_step(child)
        s._last_lr = [group["lr"] for group in s.optimizer.param_groups]
    elif form is not None:
        _apply(s, form, initial=True)
    else:
        for group, lr in zip(s.optimizer.param_groups, s.get_last_lr()):
            group["lr"] = lr


def _apply(s: LRScheduler, form: Callable, initial: bool) -> None:
    for i, group in enumerate(s.optimizer.param_groups):
        group["lr"] = form(s, group["lr"], i, initial)
    s._last_lr = [group["lr"] for group in s.optimizer.param_groups]


# PyTorch's recursive forms: the new lr of group i from the lr it holds, at epoch s.last_epoch.
# ``initial`` marks the step a constructor takes.

def _step(s: StepLR, lr: float, i: int, initial: bool) -> float:
    e = s.last_epoch
    return lr * s.gamma if e > 0 and e % s.step_size == 0 else lr


def _multistep(s: MultiStepLR, lr: float, i: int, initial: bool) -> float:
    k = s.milestones.count(s.last_epoch)
    return lr * s.gamma**k if k else lr


def _constant(s: ConstantLR, lr: float, i: int, initial: bool) -> float:
    if s.last_epoch == 0:
        return lr * s.factor
    return lr * (1.0 / s.factor) if s.last_epoch == s.total_iters else lr


def _linear(s: LinearLR, lr: float, i: int, initial: bool) -> float:
    e = s.last_epoch
    if e == 0:
        return lr * s.start_factor
    if initial or e > s.total_iters:
        return lr
    d = s.end_factor - s.start_factor
    return lr * (1.0 + d / (s.total_iters * s.start_factor + (e - 1) * d))


def _exponential(s: ExponentialLR, lr: float, i: int, initial: bool) -> float:
    return lr if initial else lr * s.gamma


def _polynomial(s: PolynomialLR, lr: float, i: int, initial: bool) -> float:
    e, n = s.last_epoch, s.total_iters
    if initial or e > n:
        return lr
    return lr * ((1.0 - e / n) / (1.0 - (e - 1) / n)) ** s.power


def _multiplicative(s: MultiplicativeLR, lr: float, i: int, initial: bool) -> float:
    return lr if initial else lr * s.lr_lambdas[i](s.last_epoch)


def _cosine(s: CosineAnnealingLR, lr: float, i: int, initial: bool) -> float:
    e, T, eta = s.last_epoch, s.T_max, s.eta_min
    if initial:
        return lr
    if (e - 1 - T) % (2 * T) == 0:  # leaving the minimum, where the ratio below would be 0 / 0
        return lr + (s.base_lrs[i] - eta) * (1 - math.cos(math.pi / T)) / 2
    return (1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T)) * (lr - eta) + eta


_RECURSIVE: dict[type, Callable] = {
    StepLR: _step, MultiStepLR: _multistep, ConstantLR: _constant, LinearLR: _linear,
    ExponentialLR: _exponential, PolynomialLR: _polynomial, MultiplicativeLR: _multiplicative,
    CosineAnnealingLR: _cosine,
}

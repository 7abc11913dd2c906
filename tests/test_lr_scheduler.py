"""LR schedulers next to torch.optim.lr_scheduler: same lr (and momentum) at every step."""
import copy
import json
import math

import numpy as np
import pytest
import torch

import ember
from ember.optim import SGD, Adam, lr_scheduler as S

TS = torch.optim.lr_scheduler


def _opts(opt_name="SGD"):
    ours = [ember.Tensor(np.zeros(2), requires_grad=True) for _ in range(2)]
    theirs = [torch.zeros(2, requires_grad=True) for _ in range(2)]
    if opt_name == "SGD":
        o = SGD([{"params": ours[:1]}, {"params": ours[1:], "lr": 0.05}], lr=0.1, momentum=0.9)
        t = torch.optim.SGD([{"params": theirs[:1]}, {"params": theirs[1:], "lr": 0.05}], lr=0.1, momentum=0.9)
    else:
        o = Adam([{"params": ours[:1]}, {"params": ours[1:], "lr": 0.05}], lr=0.1)
        t = torch.optim.Adam([{"params": theirs[:1]}, {"params": theirs[1:], "lr": 0.05}], lr=0.1)
    return o, t


def _momenta(opt):
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups]


def _compare(make_ours, make_theirs, steps=30, opt_name="SGD", metrics=None):
    o, t = _opts(opt_name)
    ours, theirs = make_ours(o), make_theirs(t)
    assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12, abs=1e-15)
    for i in range(steps):
        o.step()
        t.step()  # torch warns when a scheduler steps before its optimizer
        if metrics is None:
            ours.step()
            theirs.step()
        else:
            ours.step(metrics[i])
            theirs.step(metrics[i])
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12, abs=1e-15), i
        assert [g["lr"] for g in o.param_groups] == pytest.approx([g["lr"] for g in t.param_groups], rel=1e-12)
        assert _momenta(o) == pytest.approx(_momenta(t), rel=1e-12), i
    return ours


CASES = {
    "StepLR": lambda m, o: m.StepLR(o, step_size=4, gamma=0.5),
    "MultiStepLR": lambda m, o: m.MultiStepLR(o, milestones=[3, 7, 7, 20], gamma=0.3),
    "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.9),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
    "LinearLR": lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=8),
    "ConstantLR": lambda m, o: m.ConstantLR(o, factor=0.25, total_iters=4),
    "LambdaLR": lambda m, o: m.LambdaLR(o, lr_lambda=[lambda e: 0.95**e, lambda e: 1 / (1 + e)]),
    "OneCycleLR": lambda m, o: m.OneCycleLR(o, max_lr=[1.0, 0.4], total_steps=31),
    "OneCycleLR-3phase-linear": lambda m, o: m.OneCycleLR(
        o, max_lr=0.5, epochs=3, steps_per_epoch=11, pct_start=0.25, anneal_strategy="linear", three_phase=True),
    "SequentialLR": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.01, total_iters=5), m.CosineAnnealingLR(o, T_max=20)], milestones=[5]),
    "SequentialLR-3": lambda m, o: m.SequentialLR(
        o, [m.ConstantLR(o, factor=0.1, total_iters=2), m.ExponentialLR(o, 0.8), m.StepLR(o, 3)],
        milestones=[4, 12]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_schedules_match_torch(name):
    make = CASES[name]
    _compare(lambda o: make(S, o), lambda t: make(TS, t))


def test_one_cycle_cycles_adam_beta1():
    make = lambda m, o: m.OneCycleLR(o, max_lr=0.3, total_steps=30, base_momentum=0.8)  # noqa: E731
    _compare(lambda o: make(S, o), lambda t: make(TS, t), opt_name="Adam")


def test_one_cycle_refuses_to_run_past_total_steps():
    o, _ = _opts()
    s = S.OneCycleLR(o, max_lr=0.1, total_steps=3)
    for _ in range(3):
        s.step()
    with pytest.raises(ValueError, match="total_steps is 3"):
        s.step()


@pytest.mark.parametrize("kw", [
    dict(patience=2),
    dict(mode="max", factor=0.5, patience=1, threshold=0.1, threshold_mode="abs", cooldown=2),
    dict(patience=0, min_lr=[0.02, 0.001], cooldown=1),
])
def test_reduce_on_plateau_matches_torch(kw):
    metrics = [1.0, 0.9, 0.95, 0.93, 0.92, 0.91, 0.95, 0.5, 0.6, 0.7, 0.8, 0.81, 0.9, 0.49] * 2
    _compare(lambda o: S.ReduceLROnPlateau(o, **kw), lambda t: TS.ReduceLROnPlateau(t, **kw),
             steps=len(metrics), metrics=metrics)


@pytest.mark.parametrize("name", ["CosineAnnealingLR", "OneCycleLR", "SequentialLR", "MultiStepLR"])
def test_state_dict_resume(name):
    make = CASES[name]
    o, _ = _opts()
    full = make(S, o)
    lrs = []
    for _ in range(20):
        full.step()
        lrs.append(full.get_last_lr())

    o1, _ = _opts()
    s1 = make(S, o1)
    for _ in range(8):
        s1.step()
    saved = json.loads(json.dumps(s1.state_dict()))  # plain JSON: no callables, no tensors
    o2, _ = _opts()
    o2.load_state_dict(o1.state_dict())
    s2 = make(S, o2)
    s2.load_state_dict(saved)
    for i in range(8, 20):
        s2.step()
        assert s2.get_last_lr() == pytest.approx(lrs[i], rel=1e-12)


def test_reduce_on_plateau_state_dict_is_json():
    o, _ = _opts()
    s = S.ReduceLROnPlateau(o, patience=0)
    s.step(1.0)
    s.step(2.0)
    state = json.loads(json.dumps(s.state_dict()))
    s2 = S.ReduceLROnPlateau(_opts()[0], patience=0)
    s2.load_state_dict(state)
    assert s2.best == 1.0 and s2.get_last_lr() == s.get_last_lr()
    assert s.get_last_lr()[0] == pytest.approx(0.01)


def test_argument_errors():
    o, _ = _opts()
    with pytest.raises(ValueError, match="start_factor"):
        S.LinearLR(o, start_factor=0)
    with pytest.raises(ValueError, match="one more|len\\(milestones\\)"):
        S.SequentialLR(o, [S.StepLR(o, 2)], milestones=[3])
    with pytest.raises(ValueError, match="factor must be < 1.0"):
        S.ReduceLROnPlateau(o, factor=1.0)
    with pytest.raises(ValueError, match="expected 2 values of max_lr"):
        S.OneCycleLR(o, max_lr=[0.1], total_steps=10)
    with pytest.raises(TypeError, match="not an Optimizer"):
        S.StepLR(object(), 2)
    fresh, _ = _opts()
    with pytest.raises(KeyError, match="initial_lr"):
        S.StepLR(fresh, 2, last_epoch=3)


def test_cosine_closed_form_values():
    o, _ = _opts()
    s = S.CosineAnnealingLR(o, T_max=4)
    vals = []
    for _ in range(4):
        s.step()
        vals.append(s.get_last_lr()[0])
    assert vals == pytest.approx([0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(1, 5)])
    assert vals[-1] == pytest.approx(0.0, abs=1e-15)


# ---- CyclicLR, CosineAnnealingWarmRestarts, PolynomialLR, MultiplicativeLR, ChainedScheduler ----------------

class Halving:
    """A callable object: PyTorch saves its attributes in state_dict (a lambda is saved as None)."""

    def __init__(self, base=0.5):
        self.base = base

    def __call__(self, x):
        return self.base ** (x - 1)


MORE = {
    "CyclicLR-triangular": lambda m, o: m.CyclicLR(o, base_lr=[0.01, 0.02], max_lr=[0.1, 0.3], step_size_up=4),
    "CyclicLR-triangular2": lambda m, o: m.CyclicLR(
        o, 0.01, 0.1, step_size_up=3, step_size_down=5, mode="triangular2", base_momentum=[0.7, 0.8]),
    "CyclicLR-exp_range": lambda m, o: m.CyclicLR(
        o, 0.001, 0.05, step_size_up=2.5, mode="exp_range", gamma=0.97, max_momentum=0.95),
    "CyclicLR-scale_fn-iterations": lambda m, o: m.CyclicLR(
        o, 0.01, 0.1, step_size_up=5, scale_fn=lambda x: 1 / (1 + 0.1 * x), scale_mode="iterations"),
    "CyclicLR-scale_fn-cycle-object": lambda m, o: m.CyclicLR(o, 0.01, 0.1, step_size_up=2, scale_fn=Halving()),
    "CyclicLR-sawtooth-no-momentum": lambda m, o: m.CyclicLR(
        o, 0.01, 0.1, step_size_up=6, step_size_down=0, cycle_momentum=False),
    "CAWR": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=5),
    "CAWR-Tmult2": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.001),
    "CAWR-Tmult3": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=1, T_mult=3, eta_min=1e-4),
    "PolynomialLR": lambda m, o: m.PolynomialLR(o),
    "PolynomialLR-power": lambda m, o: m.PolynomialLR(o, total_iters=17, power=2.5),
    "MultiplicativeLR": lambda m, o: m.MultiplicativeLR(o, [lambda e: 0.95, lambda e: 1 - 0.01 * (e % 4)]),
    "Chained-doc": lambda m, o: m.ChainedScheduler(
        [m.ConstantLR(o, factor=0.1, total_iters=2), m.ExponentialLR(o, gamma=0.9)]),
    "Chained-warmup-cosine": lambda m, o: m.ChainedScheduler(
        [m.LinearLR(o, start_factor=0.1, end_factor=0.8, total_iters=6),
         m.CosineAnnealingLR(o, T_max=7, eta_min=0.001)]),
    "Chained-decays": lambda m, o: m.ChainedScheduler(
        [m.StepLR(o, 5, 0.5), m.MultiStepLR(o, [3, 8, 8], 0.7), m.PolynomialLR(o, total_iters=30, power=0.5),
         m.MultiplicativeLR(o, lambda e: 0.99), m.ConstantLR(o, 0.5, total_iters=3)], optimizer=o),
    "Chained-cyclic-then-decay": lambda m, o: m.ChainedScheduler(
        [m.CyclicLR(o, 0.01, 0.1, step_size_up=4, mode="triangular2"), m.ExponentialLR(o, 0.98)]),
    "Chained-decay-then-closed-form": lambda m, o: m.ChainedScheduler(
        [m.ExponentialLR(o, 0.9), m.CosineAnnealingWarmRestarts(o, 4, 2), m.StepLR(o, 3)]),
    "Chained-nested-and-sequential": lambda m, o: m.ChainedScheduler(
        [m.LinearLR(o, 0.5, total_iters=4),
         m.ChainedScheduler([m.ExponentialLR(o, 0.95), m.ConstantLR(o, 0.5, total_iters=6)]),
         m.SequentialLR(o, [m.MultiplicativeLR(o, lambda e: 0.9), m.ExponentialLR(o, 0.97)], milestones=[5])]),
    "Sequential-new-children": lambda m, o: m.SequentialLR(
        o, [m.MultiplicativeLR(o, lambda e: 0.9), m.CosineAnnealingWarmRestarts(o, 3, 2),
            m.CyclicLR(o, 0.01, 0.1, step_size_up=3), m.PolynomialLR(o, 10, 2.0)], milestones=[4, 15, 30]),
}


@pytest.mark.parametrize("name", list(MORE))
def test_more_schedules_match_torch(name):
    make = MORE[name]
    _compare(lambda o: make(S, o), lambda t: make(TS, t), steps=45)


@pytest.mark.parametrize("name", ["CyclicLR-triangular", "CyclicLR-exp_range", "Chained-cyclic-then-decay"])
def test_cyclic_lr_cycles_adam_beta1(name):
    make = MORE[name]
    _compare(lambda o: make(S, o), lambda t: make(TS, t), steps=30, opt_name="Adam")


def test_cyclic_lr_sets_base_lr_and_max_momentum_on_construction():
    o, t = _opts()
    kw = dict(base_lr=0.001, max_lr=0.01, base_momentum=0.6, max_momentum=0.85)
    s, ts = S.CyclicLR(o, **kw), TS.CyclicLR(t, **kw)
    assert s.get_last_lr() == ts.get_last_lr() == [0.001, 0.001]
    assert _momenta(o) == _momenta(t) == [0.85, 0.85]
    for g, tg in zip(o.param_groups, t.param_groups):
        assert [g[k] for k in ("base_momentum", "max_momentum", "initial_lr")] == [0.6, 0.85, 0.001]
        assert [g[k] for k in ("base_momentum", "max_momentum", "initial_lr")] == [tg[k] for k in (
            "base_momentum", "max_momentum", "initial_lr")]


def _torch_warm_restarts(T_0, T_mult, epochs):
    t = _opts()[1]
    ts = TS.CosineAnnealingWarmRestarts(t, T_0, T_mult, eta_min=0.002)
    lrs = []
    for e in epochs:
        t.step()
        ts.step(e)
        lrs.append(ts.get_last_lr())
    return lrs


@pytest.mark.parametrize("T_0,T_mult", [(4, 1), (2, 2), (3, 3)])
def test_warm_restarts_fractional_epochs_match_torch(T_0, T_mult):
    """Per-batch stepping, ``step(epoch + i / iters)``, interleaved with plain ``step()`` and jumps."""
    o = _opts()[0]
    s = S.CosineAnnealingWarmRestarts(o, T_0, T_mult, eta_min=0.002)
    t = _opts()[1]
    ts = TS.CosineAnnealingWarmRestarts(t, T_0, T_mult, eta_min=0.002)
    calls = [epoch + i / 7 for epoch in range(30) for i in range(7)] + [None] * 10 + [3.5, None, 50, None, 0.25]
    for e in calls:
        o.step()
        t.step()
        s.step() if e is None else s.step(e)
        ts.step() if e is None else ts.step(e)
        assert s.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12), e
        assert (s.last_epoch, s.T_i) == (ts.last_epoch, ts.T_i) and s.T_cur == pytest.approx(ts.T_cur), e


def test_warm_restarts_jump_lands_on_the_restart():
    """PyTorch's step(111) with T_0=1, T_mult=10 computes log(1000, 10) = 2.999... and returns the end of the
    previous period (eta_min); ember returns the restart, as PyTorch's own step() sequence does."""
    stepped = _torch_warm_restarts(1, 10, [None] * 111)[-1]
    jumped = _torch_warm_restarts(1, 10, [111])[-1]
    assert stepped == pytest.approx([0.1, 0.05]) and jumped == pytest.approx([0.002, 0.002])  # torch's two answers
    o = _opts()[0]
    s = S.CosineAnnealingWarmRestarts(o, 1, 10, eta_min=0.002)
    s.step(111)
    assert s.get_last_lr() == pytest.approx(stepped) and (s.T_i, s.T_cur) == (1000, 0)


RESUMABLE = ["CyclicLR-triangular2", "CyclicLR-exp_range", "CyclicLR-scale_fn-cycle-object", "CAWR-Tmult2",
             "PolynomialLR-power", "MultiplicativeLR", "Chained-warmup-cosine", "Chained-decays",
             "Chained-nested-and-sequential", "Sequential-new-children"]


@pytest.mark.parametrize("name", RESUMABLE)
@pytest.mark.parametrize("source", ["ember", "torch"])
def test_more_state_dict_resume_matches_torch(name, source):
    """Stop mid-cycle, save (through JSON), rebuild, load optimizer + scheduler state, and keep matching torch."""
    make = MORE[name]
    _, t = _opts()
    ts = make(TS, t)
    o1, _ = _opts()
    s1 = make(S, o1)
    expected = []
    for i in range(40):
        t.step()
        ts.step()
        expected.append((ts.get_last_lr(), _momenta(t)))
        if i == 12:
            mid_t = (copy.deepcopy(t.state_dict()), copy.deepcopy(ts.state_dict()))
        if i <= 12:
            s1.step()
    opt_state, sched_state = (o1.state_dict(), s1.state_dict()) if source == "ember" else mid_t
    sched_state = json.loads(json.dumps(sched_state))
    o2, _ = _opts()
    s2 = make(S, o2)  # as PyTorch recommends: build the scheduler, then load the optimizer's state
    o2.load_state_dict({"state": {}, "param_groups": opt_state["param_groups"]})
    s2.load_state_dict(sched_state)
    for i in range(13, 40):
        s2.step()
        assert s2.get_last_lr() == pytest.approx(expected[i][0], rel=1e-12), i
        assert _momenta(o2) == pytest.approx(expected[i][1], rel=1e-12), i


TORCH_ONLY_KEYS = {"_step_count", "_get_lr_called_within_step"}


@pytest.mark.parametrize("name", ["CyclicLR-triangular", "CyclicLR-sawtooth-no-momentum",
                                  "CyclicLR-scale_fn-cycle-object", "CAWR-Tmult2", "PolynomialLR",
                                  "MultiplicativeLR", "Chained-doc"])
def test_more_state_dict_keys_and_values_match_torch(name):
    make = MORE[name]
    o, t = _opts()
    s, ts = make(S, o), make(TS, t)
    for _ in range(7):
        o.step()
        t.step()
        s.step()
        ts.step()
    ours, theirs = s.state_dict(), ts.state_dict()

    def plain(state):
        out = {k: v for k, v in state.items() if k not in TORCH_ONLY_KEYS}
        if "_schedulers" in out:
            out["_schedulers"] = [plain(sd) for sd in out["_schedulers"]]
        return out

    def close(a, b):
        if isinstance(a, dict):
            return isinstance(b, dict) and set(a) == set(b) and all(close(a[k], b[k]) for k in a)
        if isinstance(a, (list, tuple)):
            return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
        return a == pytest.approx(b, rel=1e-12) if isinstance(a, float) else a == b

    assert close(ours, plain(theirs)), (ours, plain(theirs))
    json.dumps(ours)


def test_callable_object_state_is_saved_and_restored():
    o, _ = _opts()
    fn = Halving(0.25)
    s = S.CyclicLR(o, 0.01, 0.1, step_size_up=2, scale_fn=fn)
    m = S.MultiplicativeLR(o, [Halving(0.9), lambda e: 0.5])
    assert s.state_dict()["_scale_fn_custom"] == {"base": 0.25}
    assert m.state_dict()["lr_lambdas"] == [{"base": 0.9}, None]
    s.load_state_dict({**s.state_dict(), "_scale_fn_custom": {"base": 0.75}})
    m.load_state_dict({**m.state_dict(), "lr_lambdas": [{"base": 0.6}, None]})
    assert fn.base == 0.75 and s.scale_fn(3) == pytest.approx(0.75**2) and m.lr_lambdas[0].base == 0.6


def test_new_schedulers_are_in_the_namespace():
    import ember.optim.lr_scheduler as mod

    for name in ["CyclicLR", "CosineAnnealingWarmRestarts", "PolynomialLR", "MultiplicativeLR", "ChainedScheduler"]:
        assert name in mod.__all__ and getattr(mod, name).__name__ == name
    assert all(hasattr(mod, name) and hasattr(TS, name) for name in mod.__all__)
    assert ember.optim.lr_scheduler.CyclicLR.__module__ == "ember.optim.lr_cyclic"


@pytest.mark.parametrize("call,exc,match", [
    (lambda o: S.CyclicLR(o, 0.01, 0.1, mode="triangle"), ValueError, "CyclicLR: mode must be"),
    (lambda o: S.CyclicLR(o, 0.01, 0.1, scale_fn=lambda x: 1.0, scale_mode="epoch"), ValueError, "scale_mode"),
    (lambda o: S.CyclicLR(o, 0.01, 0.1, scale_fn=0.5), TypeError, "CyclicLR: scale_fn must be callable"),
    (lambda o: S.CyclicLR(o, 0.01, 0.1, step_size_up=0), ValueError, "CyclicLR: step_size_up must be positive"),
    (lambda o: S.CyclicLR(o, 0.01, 0.1, step_size_down=-1), ValueError, "CyclicLR: step_size_down"),
    (lambda o: S.CyclicLR(o, [0.01], 0.1), ValueError, "CyclicLR: expected 2 values of base_lr"),
    (lambda o: S.CyclicLR(o, 0.01, 0.1, max_momentum=[0.9] * 3), ValueError, "expected 2 values of max_momentum"),
    (lambda o: S.CyclicLR(object(), 0.01, 0.1), TypeError, "CyclicLR: object is not an Optimizer"),
    (lambda o: S.CosineAnnealingWarmRestarts(o, T_0=0), ValueError, "CosineAnnealingWarmRestarts: T_0"),
    (lambda o: S.CosineAnnealingWarmRestarts(o, T_0=2.5), ValueError, "T_0 must be a positive integer"),
    (lambda o: S.CosineAnnealingWarmRestarts(o, 2, T_mult=0), ValueError, "T_mult must be an integer >= 1"),
    (lambda o: S.CosineAnnealingWarmRestarts(o, 2, eta_min="0"), ValueError, "eta_min must be a float"),
    (lambda o: S.CosineAnnealingWarmRestarts(o, 2).step(-1), ValueError, "step: epoch must be non-negative"),
    (lambda o: S.PolynomialLR(o, total_iters=0), ValueError, "PolynomialLR: total_iters must be a positive"),
    (lambda o: S.PolynomialLR(o, power=-1.0), ValueError, "PolynomialLR: power must be >= 0"),
    (lambda o: S.MultiplicativeLR(o, [lambda e: 1.0]), ValueError, "MultiplicativeLR: expected 2 lr_lambdas"),
    (lambda o: S.MultiplicativeLR(o, 0.9), TypeError, "MultiplicativeLR: lr_lambda must be callable"),
    (lambda o: S.ChainedScheduler([]), ValueError, "ChainedScheduler: expects at least one"),
    (lambda o: S.ChainedScheduler([S.StepLR(o, 2), S.ReduceLROnPlateau(o)]), ValueError, "1 is ReduceLROnPlateau"),
    (lambda o: S.ChainedScheduler([S.StepLR(o, 2), S.StepLR(_opts()[0], 2)]), ValueError, "1 .StepLR. drives"),
])
def test_more_argument_errors(call, exc, match):
    o, _ = _opts()
    with pytest.raises(exc, match=match):
        call(o)


def test_cycle_momentum_needs_momentum_or_betas():
    from ember.optim import Adagrad

    o = Adagrad([ember.Tensor(np.zeros(2), requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="CyclicLR: cycle_momentum=True needs an optimizer with momentum or betas"):
        S.CyclicLR(o, 0.01, 0.1)
    with pytest.raises(ValueError, match="momentum or beta1"):
        TS.CyclicLR(torch.optim.Adagrad([torch.zeros(2, requires_grad=True)]), 0.01, 0.1)
    assert S.CyclicLR(o, 0.01, 0.1, cycle_momentum=False).get_last_lr() == [0.01]

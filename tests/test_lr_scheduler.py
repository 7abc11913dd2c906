"""LR schedulers next to torch.optim.lr_scheduler: same lr (and momentum) at every step."""
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

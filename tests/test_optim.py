"""Optimizers next to torch.optim: same start, same gradients, 20 steps, same parameters."""
import contextlib
import copy
import inspect
import json

import numpy as np
import pytest
import torch

import ember
from ember.errors import GraphError, ShapeError
from ember.io import flatten_optimizer_state, unflatten_optimizer_state
from ember.optim import SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, NAdam, RAdam, RMSprop

SHAPES = [(5, 4), (4,), (3,)]


def _grad(x: np.ndarray, step: int, k: int) -> np.ndarray:
    """A gradient that depends on the current parameter values, so divergence compounds."""
    noise = np.random.default_rng(100 * step + k).standard_normal(x.shape)
    return np.sin(3 * x) + 0.1 * x**2 + 0.5 * noise


def _pair(dtype, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    ours = [ember.Tensor(a.copy(), requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
    return ours, theirs


def _run(opt, params, steps, start=0, torch_side=False):
    for t in range(start, start + steps):
        for k, p in enumerate(params):
            x = p.detach().numpy() if torch_side else p.data
            # The last parameter has no gradient every third step: both libraries skip it.
            g = None if (k == len(params) - 1 and t % 3 == 0) else _grad(x, t, k).astype(x.dtype)
            if torch_side:
                p.grad = None if g is None else torch.from_numpy(g)
            else:
                p.grad = None if g is None else ember.Tensor(g)
        opt.step()


CASES = [
    (SGD, torch.optim.SGD, dict(lr=0.1)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.5, dampening=0.3, weight_decay=0.1, maximize=True)),
    (Adam, torch.optim.Adam, dict(lr=0.01)),
    (Adam, torch.optim.Adam, dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    (Adam, torch.optim.Adam, dict(lr=0.02, betas=(0.8, 0.9), eps=1e-6, maximize=True)),
    (AdamW, torch.optim.AdamW, dict(lr=0.01)),
    (AdamW, torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    (RMSprop, torch.optim.RMSprop, dict(lr=0.01)),
    (RMSprop, torch.optim.RMSprop, dict(lr=0.01, centered=True, momentum=0.9, weight_decay=0.1)),
    (RMSprop, torch.optim.RMSprop, dict(lr=0.005, alpha=0.9, momentum=0.5, maximize=True)),
    (Adagrad, torch.optim.Adagrad, dict(lr=0.1)),
    (Adagrad, torch.optim.Adagrad, dict(lr=0.05, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.2)),
    (Adagrad, torch.optim.Adagrad, dict(lr=0.05, eps=1e-6, maximize=True)),
    (Adadelta, torch.optim.Adadelta, dict()),
    (Adadelta, torch.optim.Adadelta, dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1)),
    (Adadelta, torch.optim.Adadelta, dict(rho=0.95, maximize=True)),
    (Adamax, torch.optim.Adamax, dict(lr=0.01)),
    (Adamax, torch.optim.Adamax, dict(lr=0.02, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1)),
    (Adamax, torch.optim.Adamax, dict(lr=0.01, maximize=True)),
    (NAdam, torch.optim.NAdam, dict(lr=0.01)),
    (NAdam, torch.optim.NAdam, dict(lr=0.01, weight_decay=0.1, momentum_decay=0.01)),
    (NAdam, torch.optim.NAdam, dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1, decoupled_weight_decay=True,
                                    maximize=True)),
    # RAdam: rho_t > 5 from step 6 on, so 20 steps run both the momentum and the rectified branch.
    (RAdam, torch.optim.RAdam, dict(lr=0.01)),
    (RAdam, torch.optim.RAdam, dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1)),
    (RAdam, torch.optim.RAdam, dict(lr=0.01, eps=1e-6, weight_decay=0.1, decoupled_weight_decay=True,
                                    maximize=True)),
]
TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-6)}


@contextlib.contextmanager
def _torch_default_dtype(dtype):
    """PyTorch keeps scalar state (NAdam's mu_product) in its default dtype; ember in Python floats."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if dtype == np.float64 else torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ours_cls,torch_cls,kw", CASES, ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(CASES)])
def test_matches_torch(ours_cls, torch_cls, kw, dtype):
    ours, theirs = _pair(dtype)
    opt = ours_cls(ours, **kw)
    _run(opt, ours, 20)
    with _torch_default_dtype(dtype):
        ref = torch_cls(theirs, **kw)
        _run(ref, theirs, 20, torch_side=True)
    for a, b in zip(ours, theirs):
        assert a.data.dtype == dtype
        np.testing.assert_allclose(a.data, b.detach().numpy(), **TOL[dtype])
    # Same state keys per parameter as PyTorch (so state dicts map one to one).
    sd, ref_sd = opt.state_dict(), ref.state_dict()
    assert sorted(sd["state"]) == sorted(ref_sd["state"])
    for i in sd["state"]:
        assert set(sd["state"][i]) == set(ref_sd["state"][i])
        for key, value in sd["state"][i].items():
            if key != "step":  # buffers are Tensors; NAdam's mu_product is a float (a 0-d tensor in torch)
                np.testing.assert_allclose(getattr(value, "data", value), ref_sd["state"][i][key].numpy(),
                                           **TOL[dtype])
            else:
                assert value == int(ref_sd["state"][i][key])
    assert sd["param_groups"][0]["params"] == ref_sd["param_groups"][0]["params"]


def test_param_groups_have_their_own_hyperparameters():
    ours, theirs = _pair(np.float64)
    opt = SGD([{"params": ours[:2], "lr": 0.3}, {"params": ours[2:]}], lr=0.01, momentum=0.9)
    ref = torch.optim.SGD([{"params": theirs[:2], "lr": 0.3}, {"params": theirs[2:]}], lr=0.01, momentum=0.9)
    assert opt.param_groups[0]["lr"] == 0.3 and opt.param_groups[1]["lr"] == 0.01
    _run(opt, ours, 5)
    _run(ref, theirs, 5, torch_side=True)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.data, b.detach().numpy(), rtol=1e-12)
    assert opt.state_dict()["param_groups"][1]["params"] == [2]


def test_add_param_group_and_duplicates():
    ours, _ = _pair(np.float32)
    opt = Adam(ours[:2], lr=0.1)
    opt.add_param_group({"params": ours[2], "lr": 0.5})
    assert len(opt.param_groups) == 2 and opt.param_groups[1]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [ours[0]]})
    with pytest.raises(ValueError, match="same parameter more than once"):
        SGD([ours[0], ours[0]], lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="single Tensor"):
        SGD(ours[0], lr=0.1)


ROUND_TRIP = {SGD: dict(lr=0.01, momentum=0.9), Adam: dict(lr=0.01, amsgrad=True),
              AdamW: dict(lr=0.01, amsgrad=True), RMSprop: dict(lr=0.01, momentum=0.9), Adagrad: dict(lr=0.01, lr_decay=0.1),
              Adadelta: dict(lr=0.01, weight_decay=0.1), Adamax: dict(lr=0.01),
              NAdam: dict(lr=0.01, momentum_decay=0.01), RAdam: dict(lr=0.01)}


@pytest.mark.parametrize("cls", list(ROUND_TRIP), ids=lambda c: c.__name__)
def test_state_dict_round_trip_resumes_exactly(cls):
    kw = ROUND_TRIP[cls]
    full, _ = _pair(np.float64)
    opt = cls(full, **kw)
    _run(opt, full, 12)

    first, _ = _pair(np.float64)
    opt1 = cls(first, **kw)
    _run(opt1, first, 6)
    saved = copy.deepcopy(opt1.state_dict())
    resumed = [ember.Tensor(p.data.copy(), requires_grad=True) for p in first]
    opt2 = cls(resumed, lr=123.0)  # hyper-parameters come back from the state dict
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["lr"] == 0.01
    _run(opt2, resumed, 6, start=6)
    for a, b in zip(full, resumed):
        np.testing.assert_array_equal(a.data, b.data)


def test_load_state_dict_checks_structure():
    ours, _ = _pair(np.float32)
    opt = SGD(ours, lr=0.1, momentum=0.9)
    _run(opt, ours, 2)
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="parameter group 0 has 3 parameters"):
        SGD(ours[:2], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="1 parameter groups but the optimizer has 2"):
        SGD([{"params": ours[:1]}, {"params": ours[1:]}], lr=0.1).load_state_dict(sd)
    bad = copy.deepcopy(sd)
    bad["state"][0]["momentum_buffer"] = ember.Tensor(np.zeros((2, 2), np.float32))
    with pytest.raises(ShapeError, match="momentum_buffer"):
        SGD(ours, lr=0.1).load_state_dict(bad)


def test_load_state_dict_casts_buffers_to_param_dtype():
    ours, _ = _pair(np.float32)
    opt = Adam(ours, lr=0.1)
    _run(opt, ours, 2)
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"] = ember.Tensor(sd["state"][0]["exp_avg"].data.astype(np.float64))
    opt2 = Adam(ours, lr=0.1)
    opt2.load_state_dict(sd)
    assert opt2.state[ours[0]]["exp_avg"].dtype == np.float32
    assert opt2.state[ours[0]]["exp_avg"].data is not sd["state"][0]["exp_avg"].data


def test_zero_grad():
    ours, _ = _pair(np.float32)
    opt = SGD(ours, lr=0.1)
    for p in ours:
        p.grad = ember.Tensor(np.ones(p.shape, np.float32))
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.data.any() for p in ours)
    opt.zero_grad()
    assert all(p.grad is None for p in ours)


def test_step_bumps_version_so_stale_graph_refuses_backward():
    p = ember.Tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    y = (p * p).sum()
    p.grad = ember.Tensor(np.ones(2, np.float32))
    v = p._version
    SGD([p], lr=0.1).step()
    assert p._version == v + 1
    with pytest.raises(GraphError, match="modified in place"):
        y.backward()


def test_skips_params_without_grad_and_keeps_no_state():
    ours, _ = _pair(np.float32)
    before = ours[1].data.copy()
    opt = Adam(ours, lr=0.1)
    ours[0].grad = ember.Tensor(np.ones(ours[0].shape, np.float32))
    opt.step()
    np.testing.assert_array_equal(ours[1].data, before)
    assert ours[1] not in opt.state and ours[0] in opt.state


def test_step_with_closure_and_real_backward():
    w = ember.Tensor(np.array([3.0, -2.0]), requires_grad=True)
    opt = SGD([w], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss.item()) == pytest.approx(13.0)
    np.testing.assert_allclose(w.data, [1.5, -1.0])  # w - 0.25 * 2w


@pytest.mark.parametrize("bad,match", [
    (lambda ps: SGD(ps, lr=-1), "learning rate"),
    (lambda ps: SGD(ps, lr=0.1, nesterov=True), "nesterov"),
    (lambda ps: Adam(ps, betas=(1.0, 0.9)), "betas"),
    (lambda ps: RMSprop(ps, momentum=-0.5), "momentum"),
    (lambda ps: AdamW(ps, eps=-1.0), "eps"),
    # regression: SGD, Adam, RMSprop and Adagrad compared with "< 0", which let NaN through
    (lambda ps: SGD(ps, lr=float("nan")), "SGD: invalid learning rate lr=nan"),
    (lambda ps: Adam(ps, weight_decay=float("nan")), "Adam: invalid weight_decay=nan"),
    (lambda ps: RMSprop(ps, alpha=float("nan")), "RMSprop: invalid alpha=nan"),
    (lambda ps: Adagrad(ps, eps=float("nan")), "Adagrad: invalid eps=nan"),
    (lambda ps: Adagrad(ps, lr_decay=-0.1), "Adagrad: invalid lr_decay=-0.1"),
    (lambda ps: Adagrad(ps, initial_accumulator_value=-1.0), "initial_accumulator_value"),
    (lambda ps: Adadelta(ps, rho=1.5), r"Adadelta: invalid rho=1.5 \(must be in \[0, 1\]\)"),
    (lambda ps: Adadelta(ps, lr=float("nan")), "Adadelta: invalid learning rate lr=nan"),
    (lambda ps: Adamax(ps, betas=(0.9, 1.0)), r"Adamax: invalid betas=\(0.9, 1.0\)"),
    (lambda ps: Adamax(ps, eps=-1e-8), "Adamax: invalid eps"),
    (lambda ps: NAdam(ps, momentum_decay=-0.1), "NAdam: invalid momentum_decay=-0.1"),
    (lambda ps: NAdam(ps, betas=(-0.1, 0.9)), "NAdam: invalid betas"),
    (lambda ps: RAdam(ps, weight_decay=-0.1), "RAdam: invalid weight_decay=-0.1"),
    (lambda ps: RAdam(ps, betas=(0.9,)), "RAdam: invalid betas"),
])
def test_invalid_hyperparameters(bad, match):
    ours, _ = _pair(np.float32)
    with pytest.raises(ValueError, match=match):
        bad(ours)


def test_rejects_non_leaf_and_integer_tensors():
    p = ember.Tensor(np.ones(3, np.float32), requires_grad=True)
    with pytest.raises(ValueError, match="non-leaf"):
        SGD([p * 2], lr=0.1)
    with pytest.raises(TypeError, match="floating point"):
        SGD([ember.Tensor(np.ones(3, np.int64))], lr=0.1)


def test_adamw_defaults_match_torch():
    ours, theirs = _pair(np.float32)
    a, b = AdamW(ours).param_groups[0], torch.optim.AdamW(theirs).param_groups[0]
    for key in ("lr", "betas", "eps", "weight_decay", "amsgrad"):
        assert a[key] == b[key], key
    assert SGD(ours).param_groups[0]["lr"] == torch.optim.SGD(theirs).param_groups[0]["lr"]
    r, s = RMSprop(ours).param_groups[0], torch.optim.RMSprop(theirs).param_groups[0]
    for key in ("lr", "alpha", "eps", "momentum", "centered"):
        assert r[key] == s[key], key
    a, b = Adagrad(ours), torch.optim.Adagrad(theirs)
    for key in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
        assert a.param_groups[0][key] == b.param_groups[0][key], key
    assert sorted(a.state_dict()["state"]) == sorted(b.state_dict()["state"])  # state made up front, as PyTorch


def test_trains_module_parameters_like_torch():
    """nn.Parameter (a Tensor subclass) from real layers, real backward, 5 AdamW steps."""
    ember.manual_seed(0)
    lin = ember.nn.Linear(4, 3)
    ref = torch.nn.Linear(4, 3)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(lin.weight.data.copy()))
        ref.bias.copy_(torch.from_numpy(lin.bias.data.copy()))
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    opt, topt = AdamW(lin.parameters(), lr=0.05), torch.optim.AdamW(ref.parameters(), lr=0.05)
    for _ in range(5):
        opt.zero_grad()
        y = lin(ember.Tensor(x))
        (y * y).sum().backward()
        opt.step()
        topt.zero_grad()
        ty = ref(torch.from_numpy(x))
        (ty * ty).sum().backward()
        topt.step()
    np.testing.assert_allclose(lin.weight.data, ref.weight.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lin.bias.data, ref.bias.detach().numpy(), rtol=1e-5, atol=1e-6)


NEW = [(Adadelta, torch.optim.Adadelta), (Adamax, torch.optim.Adamax), (NAdam, torch.optim.NAdam),
       (RAdam, torch.optim.RAdam)]
SKIPPED = {"foreach", "capturable", "differentiable", "fused"}  # PyTorch's implementation switches


@pytest.mark.parametrize("ours_cls,torch_cls", NEW, ids=[c[0].__name__ for c in NEW])
def test_signature_and_defaults_match_torch(ours_cls, torch_cls):
    ours = [(p.name, p.kind, p.default) for p in inspect.signature(ours_cls).parameters.values()]
    theirs = [(p.name, p.kind, p.default) for p in inspect.signature(torch_cls).parameters.values()
              if p.name not in SKIPPED]
    assert [o[0] for o in ours] == [t[0] for t in theirs]
    for o, t in zip(ours[1:], theirs[1:]):
        assert o[2] == t[2], o[0]  # the default value
        # torch's positional `foreach` sits where ember's `*` is, so maximize is keyword-only in both
        assert o[1] == t[1] or (o[1], t[1]) == (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                 inspect.Parameter.KEYWORD_ONLY), o[0]
    a, b = _pair(np.float32)
    group, ref_group = ours_cls(a).param_groups[0], torch_cls(b).param_groups[0]
    assert set(group) == set(ref_group) - SKIPPED
    for key in group:
        if key != "params":
            assert group[key] == ref_group[key], key


@pytest.mark.parametrize("ours_cls,torch_cls", NEW, ids=[c[0].__name__ for c in NEW])
def test_unknown_keywords_raise_type_error(ours_cls, torch_cls):
    ours, _ = _pair(np.float32)
    with pytest.raises(TypeError, match="foreach"):
        ours_cls(ours, foreach=True)  # accepted by torch, meaningless here: not silently ignored
    with pytest.raises(TypeError, match="momentum"):
        ours_cls(ours, momentum=0.9)
    with pytest.raises(TypeError):
        ours_cls(ours, 1e-3, (0.9, 0.999), 1e-8, 0.0, False, False, False)  # one positional too many


@pytest.mark.parametrize("ours_cls,torch_cls,kw,ok", [
    (Adadelta, torch.optim.Adadelta, dict(rho=1.0), True),
    (Adadelta, torch.optim.Adadelta, dict(rho=0.0, lr=0.0, eps=0.0), True),
    (Adadelta, torch.optim.Adadelta, dict(rho=-0.01), False),
    (Adadelta, torch.optim.Adadelta, dict(lr=float("nan")), False),
    (Adamax, torch.optim.Adamax, dict(betas=(0.0, 0.0)), True),
    (Adamax, torch.optim.Adamax, dict(betas=(0.9, 1.0)), False),
    (Adamax, torch.optim.Adamax, dict(weight_decay=-1e-4), False),
    (NAdam, torch.optim.NAdam, dict(momentum_decay=0.0), True),
    (NAdam, torch.optim.NAdam, dict(momentum_decay=-1e-3), False),
    (NAdam, torch.optim.NAdam, dict(betas=(1.0, 0.9)), False),
    (RAdam, torch.optim.RAdam, dict(eps=-1.0), False),
    (RAdam, torch.optim.RAdam, dict(lr=-1e-3), False),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_accepts_and_rejects_what_torch_does(ours_cls, torch_cls, kw, ok):
    ours, theirs = _pair(np.float32)
    if ok:
        ours_cls(ours, **kw), torch_cls(theirs, **kw)
        return
    with pytest.raises(ValueError):
        torch_cls(theirs, **kw)
    with pytest.raises(ValueError, match=f"{ours_cls.__name__}: invalid"):
        ours_cls(ours, **kw)


def test_nadam_mu_product_survives_a_checkpoint():
    """mu_product is a float: it goes to the checkpoint's JSON part and resumes bit for bit."""
    full, _ = _pair(np.float64)
    _run(NAdam(full, lr=0.01), full, 8)
    first, _ = _pair(np.float64)
    opt = NAdam(first, lr=0.01)
    _run(opt, first, 4)
    tensors, meta = flatten_optimizer_state(opt.state_dict())
    assert isinstance(meta["state"]["0"]["mu_product"], float) and "optimizer.state.0.exp_avg" in tensors
    restored = unflatten_optimizer_state({k: ember.Tensor(v.data.copy()) for k, v in tensors.items()},
                                         json.loads(json.dumps(meta)))
    resumed = [ember.Tensor(p.data.copy(), requires_grad=True) for p in first]
    opt2 = NAdam(resumed)
    opt2.load_state_dict(restored)
    _run(opt2, resumed, 4, start=4)
    for a, b in zip(full, resumed):
        np.testing.assert_array_equal(a.data, b.data)


def test_radam_takes_momentum_steps_until_rho_t_exceeds_5():
    # One parameter, constant gradient 1: m / (1 - beta1^t) = 1, so a momentum step moves p by exactly -lr.
    p = ember.Tensor(np.zeros(3), requires_grad=True)
    opt = RAdam([p], lr=0.1)
    moves = []
    for _ in range(7):
        before = p.data.copy()
        p.grad = ember.Tensor(np.ones(3))
        opt.step()
        moves.append(float(before[0] - p.data[0]))
    np.testing.assert_allclose(moves[:5], 0.1, rtol=1e-12)  # rho_t = 1.0, 2.0, 3.0, 4.0, 4.996
    assert 0 < moves[5] < 0.1  # rho_t = 5.994: Adam's step |m / sqrt(v)| = 1, times r_t < 1

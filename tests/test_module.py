"""Module, Parameter, containers and Linear: registration, state dicts, hooks, modes, repr, torch interop."""
import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch

import ember
import ember.nn as nn
from ember.errors import GraphError
from ember.nn.module import StateDictError


def mlp():
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(3, 5), nn.ReLU())
        self.head = nn.Linear(5, 2, bias=False)
        self.scale = nn.Parameter(ember.ones(2))
        self.register_buffer("count", ember.zeros(1))
        self.register_buffer("cache", ember.zeros(3), persistent=False)

    def forward(self, x):
        return self.head(self.features(x)) * self.scale


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU())
        self.head = torch.nn.Linear(5, 2, bias=False)
        self.scale = torch.nn.Parameter(torch.ones(2))
        self.register_buffer("count", torch.zeros(1))
        self.register_buffer("cache", torch.zeros(3), persistent=False)


def test_parameter_is_tensor_requiring_grad():
    p = nn.Parameter(ember.zeros(2, 3))
    assert isinstance(p, ember.Tensor) and p.requires_grad and p.shape == (2, 3)
    assert not nn.Parameter(ember.zeros(2), requires_grad=False).requires_grad
    assert repr(p).startswith("Parameter containing:")


def test_registration_and_iteration():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "features.0.weight", "features.0.bias", "head.weight"]
    assert [n for n, _ in net.named_buffers()] == ["count", "cache"]
    assert [n for n, _ in net.named_children()] == ["features", "head"]
    assert [n for n, _ in net.named_modules()] == ["", "features", "features.0", "features.1", "head"]
    assert len(list(net.parameters())) == 4 and len(list(net.buffers())) == 2
    assert len(list(net.parameters(recurse=False))) == 1
    assert net.head.bias is None and "bias" in net.head._parameters
    # reassigning a registered name replaces it, deleting unregisters it
    net.scale = nn.Parameter(ember.ones(2) * 2)
    assert net._parameters["scale"] is net.scale
    del net.scale
    assert "scale" not in net._parameters
    with pytest.raises(AttributeError):
        net.scale


def test_state_dict_keys_match_torch():
    for e, t in [(mlp(), torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))),
                 (Net(), TorchNet())]:
        assert list(e.state_dict()) == list(t.state_dict())
        assert [s.shape for s in e.state_dict().values()] == [tuple(s.shape) for s in t.state_dict().values()]


def test_shared_parameters_appear_once():
    lin = nn.Linear(2, 2)
    seq = nn.Sequential(lin, lin)
    assert len(list(seq.parameters())) == 2
    assert list(seq.state_dict()) == list(torch.nn.Sequential(*[torch.nn.Linear(2, 2)] * 2).state_dict())


def test_state_dict_round_trip():
    a, b = Net(), Net()
    b.load_state_dict(a.state_dict())
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and np.array_equal(va.numpy(), vb.numpy())
    x = ember.randn(4, 3)
    np.testing.assert_array_equal(a(x).detach().numpy(), b(x).detach().numpy())
    # NumPy arrays as values, cast to the parameter dtype
    sd = {k: v.numpy().astype(np.float64) + 1 for k, v in a.state_dict().items()}
    b.load_state_dict(sd)
    assert b.head.weight.dtype == np.float32
    np.testing.assert_allclose(b.head.weight.detach().numpy(), a.head.weight.detach().numpy() + 1, rtol=1e-6)


def test_state_dict_shares_memory_and_is_detached():
    lin = nn.Linear(2, 3)
    sd = lin.state_dict()
    assert not sd["weight"].requires_grad
    assert sd["weight"].data is lin.weight.data
    assert lin.state_dict(keep_vars=True)["weight"] is lin.weight


def test_load_state_dict_strict_lists_every_problem_and_changes_nothing():
    net = Net()
    before = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    sd = {k: v.numpy() * 0 for k, v in Net().state_dict().items()}
    del sd["head.weight"], sd["count"]
    sd["bogus"] = np.zeros(1)
    sd["features.0.bias"] = np.zeros(7)
    with pytest.raises(StateDictError) as info:
        net.load_state_dict(sd)
    msg = str(info.value)
    for needle in ["head.weight", "count", "bogus", "features.0.bias", "(7,)", "(5,)"]:
        assert needle in msg
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])  # nothing was loaded
    assert isinstance(info.value, RuntimeError)


def test_load_state_dict_non_strict_returns_keys():
    net = Net()
    sd = {k: v for k, v in Net().state_dict().items() if k != "count"}
    sd["extra.weight"] = ember.zeros(1)
    missing, unexpected = net.load_state_dict(sd, strict=False)
    assert missing == ["count"] and unexpected == ["extra.weight"]
    np.testing.assert_array_equal(net.head.weight.detach().numpy(), sd["head.weight"].numpy())
    # shape mismatches are errors even when not strict (as in PyTorch)
    sd["head.weight"] = ember.zeros(3, 3)
    with pytest.raises(StateDictError, match="head.weight"):
        net.load_state_dict(sd, strict=False)


def test_load_bumps_version_so_stale_graphs_fail():
    lin = nn.Linear(2, 2)
    y = lin(ember.randn(3, 2, requires_grad=True)).sum()
    lin.load_state_dict(nn.Linear(2, 2).state_dict())
    with pytest.raises(GraphError, match="modified in place"):
        y.backward()


def test_torch_linear_state_dict_loads_and_matches():
    torch.manual_seed(0)
    t = torch.nn.Linear(6, 3)
    e = nn.Linear(6, 3)
    e.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    y = e(ember.tensor(x))
    np.testing.assert_allclose(y.detach().numpy(), t(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    y.sum().backward()
    ty = t(torch.from_numpy(x))
    ty.sum().backward()
    np.testing.assert_allclose(e.weight.grad.numpy(), t.weight.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(e.bias.grad.numpy(), t.bias.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_linear_default_init_bounds():
    lin = nn.Linear(50, 40)
    bound = 1 / np.sqrt(50)
    w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert np.abs(b).max() <= bound
    np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.05)
    assert nn.Linear(3, 2, bias=False).bias is None
    assert nn.Linear(3, 2, dtype=ember.float64).weight.dtype == np.float64
    g1, g2 = ember.Generator(1), ember.Generator(1)
    np.testing.assert_array_equal(nn.Linear(3, 2, generator=g1).weight.detach().numpy(),
                                  nn.Linear(3, 2, generator=g2).weight.detach().numpy())


def test_linear_batched_and_bad_input():
    lin = nn.Linear(4, 2)
    assert lin(ember.randn(2, 3, 4)).shape == (2, 3, 2)
    with pytest.raises(ValueError, match="linear"):
        lin(ember.randn(3, 5))


def test_forward_hooks_and_removal():
    lin = nn.Linear(2, 2)
    calls = []
    h1 = lin.register_forward_pre_hook(lambda m, args: calls.append(("pre", args[0].shape)))
    h2 = lin.register_forward_hook(lambda m, args, out: calls.append(("post", out.shape)))
    x = ember.randn(3, 2)
    lin(x)
    assert calls == [("pre", (3, 2)), ("post", (3, 2))]
    h1.remove()
    h2.remove()
    lin(x)
    assert len(calls) == 2
    # hooks may replace inputs and outputs
    lin.register_forward_pre_hook(lambda m, args: (args[0] * 0,))
    h = lin.register_forward_hook(lambda m, args, out: out + 1)
    y = lin(x)
    np.testing.assert_allclose(y.detach().numpy(), np.broadcast_to(lin.bias.detach().numpy() + 1, (3, 2)), rtol=1e-6)
    h.remove()


def test_train_eval_propagate():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    with pytest.raises(TypeError):
        net.train("no")


def test_zero_grad_requires_grad_and_apply():
    lin = nn.Linear(2, 2)
    lin(ember.randn(3, 2)).sum().backward()
    lin.zero_grad(set_to_none=False)
    assert np.all(lin.weight.grad.numpy() == 0)
    lin.zero_grad()
    assert lin.weight.grad is None
    lin.requires_grad_(False)
    assert not any(p.requires_grad for p in lin.parameters())
    seen = []
    mlp().apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "ReLU", "Linear", "Sequential"]


def test_to_dtype_keeps_identity():
    net = Net()
    w = net.head.weight
    assert net.double() is net
    assert net.head.weight is w and w.dtype == np.float64 and net.count.dtype == np.float64
    y = net(ember.randn(2, 3, dtype=ember.float64))
    assert y.dtype == np.float64
    net.float()
    assert w.dtype == np.float32
    net.to("cpu")
    net.to(device="cpu", dtype=ember.float32)
    assert w.device == "cpu"
    with pytest.raises(TypeError):
        net.to(ember.int64)


def test_sequential_indexing_slicing_append():
    seq = mlp()
    assert len(seq) == 3 and isinstance(seq[1], nn.ReLU) and seq[-1] is seq[2]
    sub = seq[:2]
    assert isinstance(sub, nn.Sequential) and len(sub) == 2 and sub[0] is seq[0]
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear"]
    seq.append(nn.Sigmoid())
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"] and len(seq) == 4
    assert seq(ember.randn(5, 3)).shape == (5, 2)
    with pytest.raises(IndexError):
        seq[4]
    named = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.Tanh())]))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"]
    del seq[1]
    assert [k for k, _ in seq.named_children()] == ["0", "1", "2"]


def test_module_list_and_dict():
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    ml.append(nn.ReLU())
    assert len(ml) == 4 and isinstance(ml[-1], nn.ReLU) and len(ml[1:]) == 3
    assert list(ml.state_dict())[:2] == ["0.weight", "0.bias"]
    md = nn.ModuleDict({"enc": nn.Linear(2, 3), "dec": nn.Linear(3, 2)})
    assert list(md) == ["enc", "dec"] and "enc" in md and len(md) == 2
    assert list(md.state_dict()) == ["enc.weight", "enc.bias", "dec.weight", "dec.bias"]
    md.pop("enc")
    assert list(md.keys()) == ["dec"]


def test_flatten_unflatten_identity():
    x = ember.randn(2, 3, 4, 5)
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, 2)(x).shape == (24, 5)
    assert nn.Unflatten(1, (3, 20))(nn.Flatten()(x)).shape == (2, 3, 20)
    assert nn.Identity(54, unused=1)(x) is x


def test_repr_like_torch():
    e = mlp()
    t = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    assert repr(e) == repr(t)
    assert repr(nn.Flatten()) == repr(torch.nn.Flatten())
    nested = nn.Sequential(nn.Sequential(nn.Linear(1, 1)), nn.Identity())
    tn = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(1, 1)), torch.nn.Identity())
    assert repr(nested) == repr(tn)


def test_registration_errors():
    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(ember.zeros(1))

    with pytest.raises(AttributeError, match="__init__"):
        Early()
    lin = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="weight"):
        lin.weight = ember.zeros(2, 2)
    with pytest.raises(KeyError):
        lin.register_buffer("a.b", ember.zeros(1))
    with pytest.raises(TypeError):
        lin.register_buffer("buf", np.zeros(1))


def test_deepcopy_keeps_registries_consistent():
    a = Net()
    b = copy.deepcopy(a)
    assert b.head.weight is b._modules["head"]._parameters["weight"]
    assert b.head.weight is not a.head.weight
    np.testing.assert_array_equal(b.head.weight.detach().numpy(), a.head.weight.detach().numpy())


def test_end_to_end_gradient_flows_to_all_parameters():
    net = Net()
    net(ember.randn(4, 3)).sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in net.parameters())


def test_parameter_containers_register_like_torch():
    class Scales(nn.Module):
        def __init__(self):
            super().__init__()
            self.s = nn.ParameterList([nn.Parameter(ember.ones(2)), nn.Parameter(ember.ones(3))])
            self.d = nn.ParameterDict({"gain": nn.Parameter(ember.ones(1))})

    class TorchScales(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.s = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))])
            self.d = torch.nn.ParameterDict({"gain": torch.nn.Parameter(torch.ones(1))})

    m = Scales()
    assert list(m.state_dict()) == list(TorchScales().state_dict()) == ["s.0", "s.1", "d.gain"]
    assert len(list(m.parameters())) == 3
    m.s.append(ember.zeros(4))  # a plain tensor becomes a Parameter
    assert isinstance(m.s[-1], nn.Parameter) and m.s[-1].requires_grad and len(m.s) == 3
    m.d["bias"] = ember.zeros(1)
    assert "bias" in m.d and list(m.d) == ["gain", "bias"]
    del m.d["gain"]
    assert list(m.state_dict()) == ["s.0", "s.1", "s.2", "d.bias"]
    opt = ember.optim.SGD(m.parameters(), lr=0.1)
    (m.s[0].sum() + (m.s[2] * 2).sum() + m.d["bias"].sum()).backward()
    opt.step()
    np.testing.assert_allclose(m.s[2].detach().numpy(), -0.2)
    with pytest.raises(TypeError, match="ParameterList: expected an ember.nn.Parameter or Tensor, got list"):
        m.s.append([1.0])
    with pytest.raises(IndexError, match="ParameterList: index 5 is out of range"):
        m.s[5]

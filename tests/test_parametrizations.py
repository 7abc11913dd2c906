"""ember.nn.utils.parametrize and parametrizations (weight_norm, spectral_norm) against torch, states copied across."""
import copy
import pickle

import numpy as np
import pytest
import torch

import ember
from ember import nn
from ember.nn.utils.norm_hooks import random_unit
from ember.nn.utils import parametrizations as P
from ember.nn.utils import parametrize
from tests.test_norm_utils import LAYERS, TOL  # the same layers and tolerances as the hook API's tests

TP, TPZ = torch.nn.utils.parametrizations, torch.nn.utils.parametrize


def _to_ember(sd):
    return {k: v.detach().numpy().copy() for k, v in sd.items()}


def _pair(kind, dtype, apply_e, apply_t):
    make_e, make_t, x_shape = LAYERS[kind]
    torch.manual_seed(0)
    t = make_t().to(torch.float64 if dtype == np.float64 else torch.float32)
    e = make_e(dtype)
    e.load_state_dict(_to_ember(t.state_dict()))
    apply_e(e)
    apply_t(t)
    assert list(e.state_dict()) == list(t.state_dict())
    e.load_state_dict(_to_ember(t.state_dict()))
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape).astype(dtype)
    return e, t, x


def _step(e, t, x, dtype, seed=0):
    """One forward + backward on both with the same upstream gradient; compares the outputs and all gradients."""
    ye, yt = e(ember.Tensor(x)), t(torch.from_numpy(x))
    gy = np.random.default_rng(seed).standard_normal(yt.shape).astype(dtype)
    e.zero_grad()
    t.zero_grad()
    ye.backward(ember.Tensor(gy))
    yt.backward(torch.from_numpy(gy))
    np.testing.assert_allclose(ye.data, yt.detach().numpy(), **TOL[dtype])
    tp = dict(t.named_parameters())
    for name, p in e.named_parameters():
        np.testing.assert_allclose(p.grad.data, tp[name].grad.numpy(), **TOL[dtype], err_msg=name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind,dim", [("linear", 0), ("linear", None), ("conv2d", 0), ("conv2d", 1),
                                      ("convtranspose2d", 0), ("convtranspose2d", -1)])
def test_weight_norm_parametrization_matches_torch(kind, dim, dtype):
    e, t, x = _pair(kind, dtype, lambda m: P.weight_norm(m, dim=dim), lambda m: TP.weight_norm(m, dim=dim))
    assert type(e).__name__ == type(t).__name__ == "Parametrized" + type(e).__bases__[0].__name__
    assert repr(e).split("\n")[1:] == repr(t).split("\n")[1:]
    assert list(e.state_dict())[1:] == ["parametrizations.weight.original0", "parametrizations.weight.original1"]
    with torch.no_grad():
        g = t.parametrizations.weight.original0
        g.mul_(torch.linspace(0.5, 2.0, g.numel(), dtype=g.dtype).reshape(g.shape))
    e.load_state_dict(_to_ember(t.state_dict()))
    _step(e, t, x, dtype)
    np.testing.assert_allclose(e.weight.data, t.weight.detach().numpy(), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["linear", "conv2d", "convtranspose2d"])
def test_spectral_norm_parametrization_matches_torch(kind, dtype):
    e, t, x = _pair(kind, dtype, lambda m: P.spectral_norm(m, n_power_iterations=2),
                    lambda m: TP.spectral_norm(m, n_power_iterations=2))
    se, st = e.parametrizations.weight[0], t.parametrizations.weight[0]
    for step in range(3):  # training mode: every read of the weight moves u and v
        _step(e, t, x, dtype, seed=step)
        np.testing.assert_allclose(se._u.data, st._u.numpy(), **TOL[dtype])
        np.testing.assert_allclose(se._v.data, st._v.numpy(), **TOL[dtype])
    e.eval()
    t.eval()
    u0 = se._u.data.copy()
    _step(e, t, x, dtype)
    np.testing.assert_array_equal(se._u.data, u0)  # eval mode: no update


@pytest.mark.parametrize("training", [True, False])
def test_spectral_norm_registration_runs_power_iteration_like_torch(training):
    """15 steps at registration, plus one read of the weight (n_power_iterations more steps in training mode)."""
    ember.manual_seed(7)
    e = P.spectral_norm(nn.Conv2d(3, 4, 2, dtype=np.float64).train(training), n_power_iterations=2)
    ember.manual_seed(7)
    e2 = nn.Conv2d(3, 4, 2, dtype=np.float64)  # same weight draw, then the same u, v draws
    w = e2.weight.data
    u0, v0 = random_unit(w, 4, 1e-12), random_unit(w, 12, 1e-12)
    st = TP.spectral_norm(torch.nn.Conv2d(3, 4, 2).double()).parametrizations.weight[0]
    st._u.copy_(torch.from_numpy(u0))
    st._v.copy_(torch.from_numpy(v0))
    st._power_method(torch.from_numpy(w).reshape(4, -1), 15 + 2 * training)
    np.testing.assert_allclose(e.parametrizations.weight[0]._u.data, st._u.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(e.parametrizations.weight[0]._v.data, st._v.numpy(), rtol=1e-10, atol=1e-12)
    assert e.parametrizations.weight[0]._u.shape == (4,)
    assert P.spectral_norm(nn.ConvTranspose2d(3, 5, 2)).parametrizations.weight[0]._u.shape == (5,)  # dim 1


@pytest.mark.parametrize("which", ["weight_norm", "spectral_norm"])
def test_state_dict_loads_into_torch(which):
    e, t, x = _pair("conv2d", np.float64, getattr(P, which), getattr(TP, which))
    e.eval()
    t.eval()
    with ember.no_grad():
        for p in e.parameters():
            p.mul_(1.5)
    t.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in e.state_dict().items()})  # strict
    with torch.no_grad():
        np.testing.assert_allclose(e(ember.Tensor(x)).data, t(torch.from_numpy(x)).numpy(), rtol=1e-12, atol=1e-13)


def test_spectral_norm_of_a_vector_is_its_direction():
    e, t, _ = _pair("linear", np.float64, lambda m: P.spectral_norm(m, name="bias"),
                    lambda m: TP.spectral_norm(m, name="bias"))
    assert list(e.state_dict()) == ["weight", "parametrizations.bias.original"]
    np.testing.assert_allclose(e.bias.data, t.bias.detach().numpy(), rtol=1e-12)
    assert np.linalg.norm(e.bias.data) == pytest.approx(1.0)


@pytest.mark.parametrize("which", ["weight_norm", "spectral_norm"])
def test_remove_parametrizations_matches_torch(which):
    e, t, x = _pair("conv2d", np.float64, getattr(P, which), getattr(TP, which))
    _step(e, t, x, np.float64)
    e.eval()
    t.eval()  # reading the weight in training mode would run one more power-iteration step
    expected = e(ember.Tensor(x)).data
    param_ids = {id(p) for p in e.parameters()}
    parametrize.remove_parametrizations(e, "weight")
    TPZ.remove_parametrizations(t, "weight")
    assert type(e) is nn.Conv2d and not parametrize.is_parametrized(e) and "parametrizations" not in e.__dict__
    assert list(e.state_dict()) == list(t.state_dict()) == ["bias", "weight"]
    np.testing.assert_allclose(e.weight.data, t.weight.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(e(ember.Tensor(x)).data, expected, rtol=1e-12, atol=1e-14)
    # one original: the very same Parameter comes back (an optimizer built before keeps working)
    assert (id(e.weight) in param_ids) == (which == "spectral_norm")


def test_remove_keeping_the_original():
    torch_like = nn.Linear(3, 4, dtype=np.float64)
    w0 = torch_like.weight.data.copy()
    P.spectral_norm(torch_like)
    parametrize.remove_parametrizations(torch_like, "weight", leave_parametrized=False)
    np.testing.assert_array_equal(torch_like.weight.data, w0)
    with pytest.raises(ValueError, match="leave_parametrized=False is impossible .* 2 original tensors"):
        parametrize.remove_parametrizations(P.weight_norm(nn.Linear(3, 4)), "weight", leave_parametrized=False)


def test_training_run_matches_torch():
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(36, 3))
    tm.double()
    em = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(36, 3)).double()
    em.load_state_dict(_to_ember(tm.state_dict()))
    P.weight_norm(em[0])
    TP.weight_norm(tm[0])
    P.spectral_norm(em[3])
    TP.spectral_norm(tm[3])
    em.load_state_dict(_to_ember(tm.state_dict()))
    eopt = ember.optim.Adam(em.parameters(), lr=0.01)
    topt = torch.optim.Adam(tm.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 2, 5, 5)), rng.integers(0, 3, 8)
    for _ in range(5):
        eopt.zero_grad()
        topt.zero_grad()
        le = nn.functional.cross_entropy(em(ember.Tensor(x)), ember.Tensor(y))
        lt = torch.nn.functional.cross_entropy(tm(torch.from_numpy(x)), torch.from_numpy(y))
        le.backward()
        lt.backward()
        eopt.step()
        topt.step()
        assert float(le) == pytest.approx(lt.item(), rel=1e-10)
    tsd = tm.state_dict()
    for k, v in em.state_dict().items():
        np.testing.assert_allclose(v.data, tsd[k].numpy(), rtol=1e-9, atol=1e-11, err_msg=k)


# ---- the general machinery -------------------------------------------------------------------------
def _sym(x):
    """The upper triangle of x mirrored below the diagonal."""
    upper = ember.Tensor(np.triu(np.ones(x.shape, x.dtype)))
    strict = ember.Tensor(np.triu(np.ones(x.shape, x.dtype), 1))
    return x * upper + (x * strict).transpose(0, 1)


class Symmetric(nn.Module):
    def forward(self, x):
        return _sym(x)

    def right_inverse(self, a):
        return a


class Scale(nn.Module):
    def forward(self, x):
        return x * 2.0


def test_custom_parametrization_assign_cache_and_stack():
    m = parametrize.register_parametrization(nn.Linear(3, 3, dtype=np.float64), "weight", Symmetric())
    w = m.weight.data
    np.testing.assert_array_equal(w, w.T)
    assert parametrize.is_parametrized(m) and parametrize.is_parametrized(m, "weight")
    assert not parametrize.is_parametrized(m, "bias") and parametrize.type_before_parametrizations(m) is nn.Linear
    a = np.arange(9.0).reshape(3, 3)
    m.weight = ember.Tensor(a)  # the setter stores right_inverse(a) in original
    np.testing.assert_array_equal(m.parametrizations.weight.original.data, a)
    with parametrize.cached():
        assert m.weight is m.weight  # computed once inside the block
    assert m.weight is not m.weight
    parametrize.register_parametrization(m, "weight", Scale())  # stacked: applied after Symmetric
    np.testing.assert_allclose(m.weight.data, 2 * _sym(ember.Tensor(a)).data)
    with pytest.raises(RuntimeError, match="Scale does not implement right_inverse"):
        m.weight = ember.Tensor(a)
    m.train(False)
    assert not m.parametrizations.weight[0].training
    c = copy.deepcopy(m)
    np.testing.assert_array_equal(c.weight.data, m.weight.data)
    with pytest.raises(RuntimeError, match="only be saved through state_dict"):
        pickle.dumps(m)


def test_errors():
    class Halve(nn.Module):
        def forward(self, x):
            return x[:1]

    with pytest.raises(ValueError, match=r"changed the tensor from \(4, 3\) float32 to \(1, 3\) float32; pass unsafe"):
        parametrize.register_parametrization(nn.Linear(3, 4), "weight", Halve())
    m = parametrize.register_parametrization(nn.Linear(3, 4), "weight", Halve(), unsafe=True)
    assert m.weight.shape == (1, 3)
    with pytest.raises(ValueError, match="Linear has no parameter, buffer or parametrized tensor named 'foo'"):
        parametrize.register_parametrization(nn.Linear(3, 4), "foo", Scale())
    with pytest.raises(ValueError, match="weight_norm: Linear has no parameter, buffer or parametrized tensor named"):
        P.weight_norm(nn.Linear(3, 4), name="foo")
    with pytest.raises(ValueError, match="spectral_norm: Linear has no parameter or buffer named 'foo'"):
        P.spectral_norm(nn.Linear(3, 4), name="foo")
    with pytest.raises(ValueError, match="remove_parametrizations: Linear has no parametrization on 'weight'"):
        parametrize.remove_parametrizations(nn.Linear(3, 4), "weight")
    with pytest.raises(ValueError, match="n_power_iterations=0"):
        P.spectral_norm(nn.Linear(3, 4), n_power_iterations=0)
    with pytest.raises(IndexError, match="spectral_norm: dim 2 is out of range"):
        P.spectral_norm(nn.Linear(3, 4), dim=2)
    with pytest.raises(KeyError, match="attribute 'weight' already exists"):  # as in PyTorch
        P.weight_norm(nn.Linear(3, 4)).weight = nn.Parameter(np.zeros((4, 3), np.float32))

"""ember.nn.utils weight_norm / spectral_norm (forward pre-hooks) against torch.nn.utils, state dicts copied across."""
import copy

import numpy as np
import pytest
import torch

import ember
from ember import nn
from ember.nn.utils import remove_spectral_norm, remove_weight_norm, spectral_norm, weight_norm

# torch's pre-hook weight_norm is deprecated in favour of the parametrizations API but still the oracle here.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.nn.utils.weight_norm.* is deprecated:FutureWarning")

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-6)}

LAYERS = {
    "linear": (lambda dt: nn.Linear(5, 4, dtype=dt), lambda: torch.nn.Linear(5, 4), (6, 5)),
    "conv2d": (lambda dt: nn.Conv2d(3, 4, 3, padding=1, dtype=dt), lambda: torch.nn.Conv2d(3, 4, 3, padding=1),
               (2, 3, 5, 5)),
    "convtranspose2d": (lambda dt: nn.ConvTranspose2d(3, 2, 3, stride=2, dtype=dt),
                        lambda: torch.nn.ConvTranspose2d(3, 2, 3, stride=2), (2, 3, 4, 4)),
}


def _tdtype(dtype):
    return torch.float64 if dtype == np.float64 else torch.float32


def _layers(kind, dtype):
    make_e, make_t, x_shape = LAYERS[kind]
    torch.manual_seed(0)
    t = make_t().to(_tdtype(dtype))
    e = make_e(dtype)
    e.load_state_dict(_to_ember(t.state_dict()))
    return e, t, x_shape


def _to_ember(sd):
    return {k: v.detach().numpy().copy() for k, v in sd.items()}


def _to_torch(sd):
    return {k: torch.from_numpy(v.numpy().copy()) for k, v in sd.items()}


def _forward_backward(e, t, x, gy):
    ye, yt = e(ember.Tensor(x)), t(torch.from_numpy(x))
    ye.backward(ember.Tensor(gy))
    yt.backward(torch.from_numpy(gy))
    return ye, yt


def _inputs(x_shape, e, t, dtype, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    training = t.training
    with torch.no_grad():  # in eval mode, so spectral norm's u and v stay put
        y_shape = tuple(t.eval()(torch.from_numpy(x)).shape)
    t.train(training)
    return x, rng.standard_normal(y_shape).astype(dtype)


def _assert_grads(e, t, dtype, names):
    te = dict(t.named_parameters())
    for name, p in e.named_parameters():
        if name in names:
            np.testing.assert_allclose(p.grad.data, te[name].grad.numpy(), **TOL[dtype], err_msg=name)


# ---- weight norm -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind,dim", [("linear", 0), ("linear", 1), ("linear", None), ("linear", -1),
                                      ("conv2d", 0), ("conv2d", 2), ("conv2d", -2), ("conv2d", None),
                                      ("convtranspose2d", 0), ("convtranspose2d", 1)])
def test_weight_norm_matches_torch(kind, dim, dtype):
    e, t, x_shape = _layers(kind, dtype)
    w0 = e.weight.data.copy()
    weight_norm(e, dim=dim)
    torch.nn.utils.weight_norm(t, dim=dim)
    assert list(e.state_dict()) == list(t.state_dict()) == ["bias", "weight_g", "weight_v"]
    assert e.weight_g.shape == tuple(t.weight_g.shape)
    np.testing.assert_allclose(e.weight_g.data, t.weight_g.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(e.weight.data, w0, **TOL[dtype])  # the reparametrized weight starts unchanged
    assert not isinstance(e.weight, nn.Parameter) and "weight" not in dict(e.named_parameters())
    with torch.no_grad():  # move g away from ||v|| so the gradients see a real rescaling
        t.weight_g.mul_(torch.linspace(0.5, 2.0, t.weight_g.numel(), dtype=t.weight_g.dtype).reshape(t.weight_g.shape))
    e.load_state_dict(_to_ember(t.state_dict()))
    x, gy = _inputs(x_shape, e, t, dtype)
    ye, yt = _forward_backward(e, t, x, gy)
    np.testing.assert_allclose(ye.data, yt.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(e.weight.data, t.weight.detach().numpy(), **TOL[dtype])
    _assert_grads(e, t, dtype, {"weight_g", "weight_v", "bias"})


def test_weight_norm_state_dict_loads_into_torch_and_back():
    e, t, x_shape = _layers("conv2d", np.float64)
    weight_norm(e)
    torch.nn.utils.weight_norm(t)
    with ember.no_grad():
        e.weight_g.mul_(3.0)
        e.weight_v.add_(0.1)
    t.load_state_dict(_to_torch(e.state_dict()))  # strict
    x, _ = _inputs(x_shape, e, t, np.float64)
    with torch.no_grad():
        np.testing.assert_allclose(e(ember.Tensor(x)).data, t(torch.from_numpy(x)).numpy(), rtol=1e-12, atol=1e-12)


def test_weight_norm_of_a_vector_and_whole_tensor_shapes():
    e = weight_norm(nn.Linear(3, 4, dtype=np.float64), name="bias")
    np.testing.assert_allclose(e.bias_g.data, np.abs(e.bias_v.data))  # one element per norm
    e = weight_norm(nn.Conv2d(2, 3, 2), dim=None)
    assert e.weight_g.shape == () and float(e.weight_g) == pytest.approx(np.linalg.norm(e.weight_v.data), rel=1e-6)


@pytest.mark.parametrize("kind", ["linear", "conv2d", "convtranspose2d"])
def test_remove_weight_norm_restores_the_reparametrized_weight(kind):
    e, t, x_shape = _layers(kind, np.float64)
    weight_norm(e)
    torch.nn.utils.weight_norm(t)
    with torch.no_grad():
        t.weight_g.mul_(1.7)
    e.load_state_dict(_to_ember(t.state_dict()))
    x, _ = _inputs(x_shape, e, t, np.float64)
    expected = e(ember.Tensor(x)).data
    remove_weight_norm(e)
    torch.nn.utils.remove_weight_norm(t)
    assert list(e.state_dict()) == list(t.state_dict()) == ["bias", "weight"]
    assert isinstance(e.weight, nn.Parameter) and not e._forward_pre_hooks
    np.testing.assert_allclose(e.weight.data, t.weight.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(e(ember.Tensor(x)).data, expected, rtol=1e-12, atol=1e-14)


# ---- spectral norm ------------------------------------------------------------------------------
def _spectral_pair(kind, dtype, **kw):
    e, t, x_shape = _layers(kind, dtype)
    spectral_norm(e, **kw)
    torch.nn.utils.spectral_norm(t, **kw)
    e.load_state_dict(_to_ember(t.state_dict()))  # same weight_orig, u and v
    return e, t, x_shape


def _assert_buffers(e, t, dtype):
    for name in ("weight_u", "weight_v"):
        np.testing.assert_allclose(getattr(e, name).data, getattr(t, name).numpy(), **TOL[dtype], err_msg=name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_power_iterations", [1, 3])
@pytest.mark.parametrize("kind", ["linear", "conv2d", "convtranspose2d"])
def test_spectral_norm_training_matches_torch(kind, n_power_iterations, dtype):
    e, t, x_shape = _spectral_pair(kind, dtype, n_power_iterations=n_power_iterations)
    assert list(e.state_dict()) == list(t.state_dict()) == ["bias", "weight_orig", "weight_u", "weight_v"]
    for step in range(3):  # each training-mode forward moves u and v
        x, gy = _inputs(x_shape, e, t, dtype, seed=step)
        e.zero_grad()
        t.zero_grad()
        ye, yt = _forward_backward(e, t, x, gy)
        np.testing.assert_allclose(ye.data, yt.detach().numpy(), **TOL[dtype])
        _assert_buffers(e, t, dtype)
        np.testing.assert_allclose(e.weight.data, t.weight.detach().numpy(), **TOL[dtype])
        _assert_grads(e, t, dtype, {"weight_orig", "bias"})
    w_mat = e.weight.data if kind != "convtranspose2d" else np.moveaxis(e.weight.data, 1, 0)
    assert np.linalg.norm(w_mat.reshape(w_mat.shape[0], -1), 2) == pytest.approx(1.0, abs=0.3)


@pytest.mark.parametrize("kind", ["linear", "conv2d"])
def test_spectral_norm_two_forwards_then_one_backward(kind):
    """The second forward changes u and v in place; the first one's gradient must use the u, v it saw."""
    e, t, x_shape = _spectral_pair(kind, np.float64)
    x, gy = _inputs(x_shape, e, t, np.float64)
    xe, ge, xt, gt = ember.Tensor(x), ember.Tensor(gy), torch.from_numpy(x), torch.from_numpy(gy)
    ye = (e(xe) * ge).sum() + (e(xe) * (2 * ge)).sum()
    yt = (t(xt) * gt).sum() + (t(xt) * (2 * gt)).sum()
    ye.backward()
    yt.backward()
    assert float(ye) == pytest.approx(yt.item(), rel=1e-12)
    _assert_buffers(e, t, np.float64)
    _assert_grads(e, t, np.float64, {"weight_orig", "bias"})


def test_spectral_norm_state_dict_loads_into_torch():
    """ember's own (randomly drawn) u and v travel with the state dict; torch then computes the same weight."""
    e, t, x_shape = _layers("convtranspose2d", np.float64)
    spectral_norm(e)
    torch.nn.utils.spectral_norm(t)
    x, gy = _inputs(x_shape, e, t, np.float64)
    e(ember.Tensor(x))  # a training step on ember's side only
    t.load_state_dict(_to_torch(e.state_dict()))  # strict
    _assert_buffers(e, t, np.float64)
    ye, yt = _forward_backward(e, t, x, gy)  # both take the next step from the same u and v
    np.testing.assert_allclose(ye.data, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    _assert_buffers(e, t, np.float64)


@pytest.mark.parametrize("kind", ["linear", "conv2d", "convtranspose2d"])
def test_spectral_norm_eval_does_not_update_buffers(kind):
    e, t, x_shape = _spectral_pair(kind, np.float64)
    e.eval()
    t.eval()
    u0, v0 = e.weight_u.data.copy(), e.weight_v.data.copy()
    for step in range(2):
        x, gy = _inputs(x_shape, e, t, np.float64, seed=step)
        e.zero_grad()
        t.zero_grad()
        ye, yt = _forward_backward(e, t, x, gy)
        np.testing.assert_array_equal(e.weight_u.data, u0)
        np.testing.assert_array_equal(e.weight_v.data, v0)
        np.testing.assert_allclose(ye.data, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        _assert_grads(e, t, np.float64, {"weight_orig", "bias"})


@pytest.mark.parametrize("kind", ["linear", "conv2d", "convtranspose2d"])
def test_remove_spectral_norm_restores_the_normalized_weight(kind):
    e, t, x_shape = _spectral_pair(kind, np.float64)
    x, _ = _inputs(x_shape, e, t, np.float64)
    e(ember.Tensor(x))
    t(torch.from_numpy(x))  # one training step of power iteration on both
    e.eval()
    expected = e(ember.Tensor(x)).data
    remove_spectral_norm(e)
    torch.nn.utils.remove_spectral_norm(t)
    assert list(e.state_dict()) == list(t.state_dict()) == ["bias", "weight"]
    assert isinstance(e.weight, nn.Parameter) and not e._forward_pre_hooks
    np.testing.assert_allclose(e.weight.data, t.weight.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(e(ember.Tensor(x)).data, expected, rtol=1e-12, atol=1e-14)


def test_spectral_norm_dims_and_initial_state():
    ember.manual_seed(3)
    e = spectral_norm(nn.ConvTranspose2d(3, 5, 2, dtype=np.float64))  # weight (3, 5, 2, 2): dim 1 by default
    t = torch.nn.utils.spectral_norm(torch.nn.ConvTranspose2d(3, 5, 2))
    assert e.weight_u.shape == tuple(t.weight_u.shape) == (5,) and e.weight_v.shape == tuple(t.weight_v.shape) == (12,)
    np.testing.assert_allclose([np.linalg.norm(e.weight_u.data), np.linalg.norm(e.weight_v.data)], 1.0, rtol=1e-12)
    np.testing.assert_array_equal(e.weight.data, e.weight_orig.data)  # raw weight until the first forward
    ember.manual_seed(3)
    again = spectral_norm(nn.ConvTranspose2d(3, 5, 2, dtype=np.float64))
    np.testing.assert_array_equal(again.weight_u.data, e.weight_u.data)  # seeded draws
    e, t, x_shape = _spectral_pair("conv2d", np.float64, dim=1)
    assert e.weight_u.shape == (3,) and e.weight_v.shape == (36,)
    x, gy = _inputs(x_shape, e, t, np.float64)
    ye, yt = _forward_backward(e, t, x, gy)
    np.testing.assert_allclose(ye.data, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    _assert_buffers(e, t, np.float64)
    neg = spectral_norm(nn.Conv2d(3, 4, 3), dim=-3)  # negative dims count from the end (torch's old API crashes)
    assert neg.weight_u.shape == (3,)


def test_deepcopy_keeps_the_hooks():
    e = spectral_norm(weight_norm(nn.Linear(4, 3, dtype=np.float64), name="bias"))
    c = copy.deepcopy(e)
    x = ember.Tensor(np.random.default_rng(0).standard_normal((2, 4)))
    np.testing.assert_allclose(c(x).data, e(x).data, rtol=1e-12)
    assert c.weight_orig is not e.weight_orig and list(c.state_dict()) == list(e.state_dict())


# ---- training ----------------------------------------------------------------------------------------
def test_training_run_matches_torch():
    """SGD with momentum on a weight-normed conv, a spectral-normed conv and a weight-normed linear head."""
    def build(lib):
        n = lib.nn
        conv1 = n.Conv2d(2, 4, 3, padding=1)
        conv2 = n.Conv2d(4, 4, 3, stride=2)
        head = n.Linear(16, 3)
        return conv1, conv2, head

    torch.manual_seed(0)
    tc1, tc2, th = (m.double() for m in build(torch))
    ec1, ec2, eh = build(ember)
    for e, t in ((ec1, tc1), (ec2, tc2), (eh, th)):
        e.double()
        e.load_state_dict(_to_ember(t.state_dict()))
    weight_norm(ec1)
    torch.nn.utils.weight_norm(tc1)
    spectral_norm(ec2)
    torch.nn.utils.spectral_norm(tc2)
    ec2.load_state_dict(_to_ember(tc2.state_dict()))
    weight_norm(eh, dim=None)
    torch.nn.utils.weight_norm(th, dim=None)
    emodel = nn.Sequential(ec1, nn.ReLU(), ec2, nn.Tanh(), nn.Flatten(), eh)
    tmodel = torch.nn.Sequential(tc1, torch.nn.ReLU(), tc2, torch.nn.Tanh(), torch.nn.Flatten(), th)
    assert list(emodel.state_dict()) == list(tmodel.state_dict())
    eopt = ember.optim.SGD(emodel.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 2, 5, 5)), rng.integers(0, 3, 8)
    losses = []
    for _ in range(5):
        eopt.zero_grad()
        topt.zero_grad()
        le = nn.functional.cross_entropy(emodel(ember.Tensor(x)), ember.Tensor(y))
        lt = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
        le.backward()
        lt.backward()
        eopt.step()
        topt.step()
        assert float(le) == pytest.approx(lt.item(), rel=1e-10)
        losses.append(float(le))
    assert losses[-1] < losses[0]
    tsd = tmodel.state_dict()
    for k, v in emodel.state_dict().items():
        np.testing.assert_allclose(v.data, tsd[k].numpy(), rtol=1e-9, atol=1e-11, err_msg=k)


# ---- errors ------------------------------------------------------------------------------------------
def test_errors():
    m = weight_norm(nn.Linear(3, 4))
    with pytest.raises(RuntimeError, match="weight_norm: cannot register two weight_norm hooks on the same "
                                           "parameter 'weight' of Linear"):
        weight_norm(m)
    with pytest.raises(AttributeError, match=r"weight_norm: Linear has no parameter 'foo' .*"
                                             r"does not exist; parameters: weight, bias"):
        weight_norm(nn.Linear(3, 4), name="foo")
    with pytest.raises(AttributeError, match="'bias' .*it is None"):
        weight_norm(nn.Linear(3, 4, bias=False), name="bias")
    with pytest.raises(IndexError, match=r"weight_norm: dim 2 is out of range for a weight of shape \(4, 3\)"):
        weight_norm(nn.Linear(3, 4), dim=2)
    with pytest.raises(ValueError, match="remove_weight_norm: weight_norm of 'weight' not found in Linear"):
        remove_weight_norm(nn.Linear(3, 4))
    s = spectral_norm(nn.Linear(3, 4))
    with pytest.raises(RuntimeError, match="spectral_norm: cannot register two spectral_norm hooks on the same "
                                           "parameter 'weight' of Linear"):
        spectral_norm(s)
    with pytest.raises(KeyError, match="spectral_norm: Linear has no parameter 'foo'"):
        spectral_norm(nn.Linear(3, 4), name="foo")
    with pytest.raises(ValueError, match="spectral_norm: expected n_power_iterations to be positive, "
                                         "but got n_power_iterations=0"):
        spectral_norm(nn.Linear(3, 4), n_power_iterations=0)
    with pytest.raises(IndexError, match=r"spectral_norm: dim 4 is out of range for a weight of shape \(2, 3, 1, 1\)"):
        spectral_norm(nn.Conv2d(3, 2, 1), dim=4)
    with pytest.raises(ValueError, match="remove_spectral_norm: spectral_norm of 'weight' not found in Linear"):
        remove_spectral_norm(m)
    # both normalizations on one module are independent hooks, removable in any order
    both = spectral_norm(weight_norm(nn.Linear(3, 4), name="bias"))
    remove_weight_norm(both, "bias")
    remove_spectral_norm(both)
    assert sorted(dict(both.named_parameters())) == ["bias", "weight"]

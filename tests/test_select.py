"""PyTorch habits beyond the op table: bad input to gather/sort/topk/one_hot and friends, gradient
hooks (Tensor.register_hook), set_grad_enabled, ParameterList/ParameterDict, new_* factories, and
(values, indices) results. The ops' values and gradients are checked in tests/opdb_select.py."""
from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F
from ember.errors import DTypeError, GraphError, ShapeError

torch = pytest.importorskip("torch")


# ---- bad input names the op, the argument and both sides ---------------------------------------------
@pytest.mark.parametrize("call, err, words", [
    (lambda x: x.gather(1, ember.tensor([[0.0]])), DTypeError, ["gather", "integer", "float"]),
    (lambda x: x.gather(1, ember.tensor([0, 1])), ShapeError, ["gather", "1 dims", "(3, 4)"]),
    (lambda x: x.gather(1, ember.tensor([[0]] * 4)), ShapeError, ["gather", "size 4", "size 3", "dim 0"]),
    (lambda x: x.gather(1, ember.tensor([[4]])), IndexError, ["gather", "index 4", "[0, 4)", "dim 1"]),
    (lambda x: x.gather(1, ember.tensor([[-1]])), IndexError, ["gather", "-1"]),
    (lambda x: x.gather(2, ember.tensor([[0]])), Exception, ["gather", "dim"]),
    (lambda x: x.masked_fill(ember.tensor([1, 0, 1, 0]), 0.0), DTypeError, ["masked_fill", "bool", "int64"]),
    (lambda x: x.masked_fill(ember.ones(2, 3, 4).bool(), 0.0), ShapeError, ["masked_fill", "(2, 3, 4)", "(3, 4)"]),
    (lambda x: x.masked_fill(x > 0, ember.ones(2)), ShapeError, ["masked_fill", "0-d"]),
    (lambda x: x.topk(5), ValueError, ["topk", "[0, 4]", "5"]),
    (lambda x: x.topk(-1), ValueError, ["topk", "-1"]),
    (lambda x: x.narrow(1, 3, 2), IndexError, ["narrow", "start 3", "length 2", "size 4"]),
    (lambda x: x.roll((1, 2), (0,)), ValueError, ["roll", "2 shifts", "1 dims"]),
    (lambda x: x.roll((1, 2)), ValueError, ["roll", "one int"]),
    (lambda x: x[None].t(), ShapeError, ["t", "(1, 3, 4)"]),
    (lambda x: ember.bmm(x, x), ShapeError, ["bmm", "3-D", "(3, 4)"]),
    (lambda x: ember.bmm(x.reshape(1, 3, 4), ember.ones(2, 4, 3)), ShapeError, ["bmm", "1 != 2"]),
    (lambda x: x.mm(x.reshape(3, 4, 1)), ShapeError, ["mm", "2-D", "(3, 4, 1)"]),
])
def test_bad_input_is_named(call, err, words):
    x = ember.randn(3, 4)
    with pytest.raises(err) as e:
        call(x)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_one_hot_matches_torch_and_checks_labels():
    y = np.array([[1, 0], [3, 2]])
    np.testing.assert_array_equal(F.one_hot(ember.tensor(y), 5).numpy(),
                                  torch.nn.functional.one_hot(torch.from_numpy(y), 5).numpy())
    assert F.one_hot(ember.tensor(y)).shape == (2, 2, 4) and F.one_hot(ember.tensor(y)).dtype == np.int64
    with pytest.raises(IndexError, match=r"one_hot: label 3 is out of range \[0, 3\)"):
        F.one_hot(ember.tensor(y), 3)
    with pytest.raises(IndexError, match="one_hot: label -1"):
        F.one_hot(ember.tensor([0, -1]))
    with pytest.raises(DTypeError, match="one_hot: index must be an integer tensor"):
        F.one_hot(ember.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="empty"):
        F.one_hot(ember.tensor(np.zeros(0, dtype=np.int64)))


def test_values_indices_are_named_and_unpack():
    x = ember.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]])
    for res in (x.max(1), x.min(1), x.sort(1), x.topk(2)):
        v, i = res
        assert v is res.values and i is res.indices and i.dtype == np.int64
    np.testing.assert_array_equal(x.topk(2).indices.numpy(), [[0, 2], [1, 2]])
    np.testing.assert_array_equal(x.sort(1, descending=True).values.numpy(), [[3, 2, 1], [5, 4, 0]])


def test_top5_accuracy_idiom():
    logits = ember.tensor(np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32))
    y = ember.tensor(np.random.default_rng(1).integers(0, 10, 64))
    hit = (logits.topk(5).indices == y[:, None]).any(1)
    want = (torch.from_numpy(logits.numpy()).topk(5).indices == torch.from_numpy(y.numpy())[:, None]).any(1)
    np.testing.assert_array_equal(hit.numpy(), want.numpy())


def test_manual_cross_entropy_by_gather_matches_f_cross_entropy():
    rng = np.random.default_rng(2)
    z = ember.tensor(rng.standard_normal((8, 5)), requires_grad=True)
    y = ember.tensor(rng.integers(0, 5, 8))
    loss = -z.log_softmax(1).gather(1, y[:, None]).mean()
    loss.backward()
    z2 = ember.tensor(z.detach().numpy(), requires_grad=True)
    ref = F.cross_entropy(z2, y)
    ref.backward()
    np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-12)
    np.testing.assert_allclose(z.grad.numpy(), z2.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_cumsum_of_ints_is_int64_like_torch():
    a = np.array([[1, 2], [3, 4]], dtype=np.int32)
    got = ember.cumsum(ember.tensor(a), 0)
    assert got.dtype == torch.cumsum(torch.from_numpy(a), 0).numpy().dtype == np.int64


# ---- gradient hooks -----------------------------------------------------------------------------------
def test_hooks_see_and_replace_gradients_like_torch():
    a = np.random.default_rng(3).standard_normal(4)
    seen = {}

    def run(lib, t):
        x = t(a, requires_grad=True)
        h = x * 3

        def watch_and_double(g):
            seen[lib] = g.numpy().copy()
            return g * 2

        h.register_hook(watch_and_double)
        x.register_hook(lambda g: g + 1)
        (h.tanh()).sum().backward()
        return x.grad.numpy()

    got = run("ember", lambda v, requires_grad: ember.tensor(v, requires_grad=requires_grad))
    want = run("torch", lambda v, requires_grad: torch.tensor(v, requires_grad=requires_grad))
    np.testing.assert_allclose(seen["ember"], seen["torch"], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_hook_remove_order_and_retain_grad():
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    calls = []
    y.retain_grad()
    h1 = y.register_hook(lambda g: calls.append("a") or g * 10)
    y.register_hook(lambda g: calls.append("b"))
    y.sum().backward(retain_graph=True)
    assert calls == ["a", "b"]
    np.testing.assert_allclose(y.grad.numpy(), [10, 10])  # retain_grad sees the hooked gradient, as in PyTorch
    np.testing.assert_allclose(x.grad.numpy(), [20, 20])
    h1.remove()
    x.grad, y.grad = None, None
    y.sum().backward()
    assert calls == ["a", "b", "b"]
    np.testing.assert_allclose(x.grad.numpy(), [2, 2])


def test_hook_errors():
    with pytest.raises(GraphError, match="register_hook: the tensor does not require grad"):
        ember.ones(2).register_hook(print)
    x = ember.ones(2, requires_grad=True)
    x.register_hook(lambda g: ember.ones(3))
    with pytest.raises(ShapeError, match=r"register_hook: .* shape \(3,\).* shape \(2,\)"):
        (x * 2).sum().backward()


def test_leaf_hook_on_backward_from_the_leaf_itself():
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    x.register_hook(lambda g: g * 5)
    x.backward(ember.tensor([1.0, 1.0]))
    np.testing.assert_allclose(x.grad.numpy(), [5, 5])


# ---- set_grad_enabled ---------------------------------------------------------------------------------
def test_set_grad_enabled_as_call_block_and_decorator():
    x = ember.ones(2, requires_grad=True)
    try:
        ember.set_grad_enabled(False)
        assert not (x * 2).requires_grad
    finally:
        ember.set_grad_enabled(True)
    with ember.set_grad_enabled(False):
        assert not ember.is_grad_enabled()
        with ember.set_grad_enabled(True):
            assert (x * 2).requires_grad
        assert not ember.is_grad_enabled()
    assert ember.is_grad_enabled()

    @ember.set_grad_enabled(False)
    def f():
        return (x * 2).requires_grad

    assert ember.is_grad_enabled() and f() is False and ember.is_grad_enabled()


# ---- containers of parameters ---------------------------------------------------------------------------
class _Scales(nn.Module):
    def __init__(self, lib):
        super().__init__()
        self.s = lib.ParameterList([lib.Parameter(lib_ones(lib, 2)), lib.Parameter(lib_ones(lib, 3))])
        self.d = lib.ParameterDict({"gain": lib.Parameter(lib_ones(lib, 1))})


def lib_ones(lib, n):
    return ember.ones(n) if lib is nn else torch.ones(n)


def test_parameter_containers_register_like_torch():
    m = _Scales(nn)

    class T(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.s = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))])
            self.d = torch.nn.ParameterDict({"gain": torch.nn.Parameter(torch.ones(1))})

    assert list(m.state_dict()) == list(T().state_dict()) == ["s.0", "s.1", "d.gain"]
    assert len(list(m.parameters())) == 3
    m.s.append(ember.zeros(4))  # a plain tensor becomes a Parameter
    assert isinstance(m.s[-1], nn.Parameter) and m.s[-1].requires_grad and len(m.s) == 3
    m.d["bias"] = ember.zeros(1)
    assert "bias" in m.d and list(m.d) == ["gain", "bias"]
    del m.d["gain"]
    assert list(m.state_dict()) == ["s.0", "s.1", "s.2", "d.bias"]
    opt = ember.optim.SGD(m.parameters(), lr=0.1)
    loss = m.s[0].sum() + (m.s[2] * 2).sum() + m.d["bias"].sum()
    loss.backward()
    opt.step()
    np.testing.assert_allclose(m.s[2].detach().numpy(), -0.2)
    with pytest.raises(TypeError, match="ParameterList: expected an ember.nn.Parameter or Tensor, got list"):
        m.s.append([1.0])
    with pytest.raises(IndexError, match="ParameterList: index 5 is out of range"):
        m.s[5]


# ---- new_* -------------------------------------------------------------------------------------------------
def test_new_factories_take_dtype_and_device_from_self():
    x = ember.ones(2, dtype=np.float64)
    for t in (x.new_zeros(2, 3), x.new_ones((2, 3)), x.new_empty(2, 3), x.new_full((2, 3), 7.0)):
        assert t.shape == (2, 3) and t.dtype == np.float64 and t.device == x.device and not t.requires_grad
    assert x.new_tensor([1, 2]).dtype == np.float64
    assert x.new_zeros(2, dtype=np.int64).dtype == np.int64
    np.testing.assert_array_equal(x.new_full((2,), 7.0).numpy(), [7, 7])

"""Gradient plumbing with PyTorch's names: Tensor.register_hook, ember.set_grad_enabled and
ember.autograd.grad (first derivatives, no .grad touched), each against PyTorch."""
from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.autograd import grad
from ember.errors import GraphError, ShapeError

torch = pytest.importorskip("torch")


# ---- Tensor.register_hook ---------------------------------------------------------------------------
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


# ---- ember.autograd.grad ------------------------------------------------------------------------------
def _pair(a):
    return ember.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


def test_grad_matches_torch_for_leaves_and_intermediates_and_leaves_grad_untouched():
    rng = np.random.default_rng(4)
    (x, tx), (w, tw) = _pair(rng.standard_normal((3, 4))), _pair(rng.standard_normal((4, 2)))
    h, th = (x @ w).tanh(), (tx @ tw).tanh()
    y, ty = (h * h).sum() + x.sum(), (th * th).sum() + tx.sum()
    got = grad(y, [x, h, w])
    want = torch.autograd.grad(ty, [tx, th, tw])
    for g, t in zip(got, want):
        np.testing.assert_allclose(g.numpy(), t.numpy(), rtol=1e-12, atol=1e-15)
    assert x.grad is None and w.grad is None  # nothing accumulated anywhere


def test_grad_of_several_outputs_with_seeds_sums_them():
    rng = np.random.default_rng(5)
    (a, ta), (b, tb) = _pair(rng.standard_normal(3)), _pair(rng.standard_normal(3))
    seed = rng.standard_normal(3)
    got = grad([a * b, (a * a).sum()], [a, b], grad_outputs=[ember.tensor(seed), None])
    want = torch.autograd.grad([ta * tb, (ta * ta).sum()], [ta, tb], grad_outputs=[torch.tensor(seed), None])
    for g, t in zip(got, want):
        np.testing.assert_allclose(g.numpy(), t.numpy(), rtol=1e-12)


def test_grad_gives_each_input_its_own_array_and_runs_leaf_hooks():
    a, b = ember.tensor([1.0, 2.0], requires_grad=True), ember.tensor([3.0, 4.0], requires_grad=True)
    ga, gb = grad((a + b).sum(), [a, b])  # add hands one array to both inputs
    assert ga.data is not gb.data
    ga.data[0] = 9.0
    np.testing.assert_array_equal(gb.numpy(), [1, 1])
    a.register_hook(lambda g: g * 3)
    (g,) = grad((a * 2).sum(), a)
    np.testing.assert_array_equal(g.numpy(), [6, 6])


def test_grad_saliency_of_a_model_input():
    model = ember.nn.Sequential(ember.nn.Conv2d(1, 2, 3, padding=1), ember.nn.ReLU(), ember.nn.Flatten(),
                                ember.nn.Linear(2 * 5 * 5, 3))
    x = ember.randn(1, 1, 5, 5, requires_grad=True)
    (g,) = grad(model(x)[0, 1], x)
    assert g.shape == x.shape and all(p.grad is None for p in model.parameters())


def test_grad_errors():
    a, b = ember.tensor([1.0, 2.0], requires_grad=True), ember.tensor([3.0], requires_grad=True)
    with pytest.raises(GraphError, match="grad: input 1 was not used.*allow_unused=True"):
        grad((a * 2).sum(), [a, b])
    assert grad((a * 2).sum(), [a, b], allow_unused=True)[1] is None
    with pytest.raises(GraphError, match="grad: input 0 does not require grad"):
        grad((a * 2).sum(), ember.ones(2))
    with pytest.raises(GraphError, match="grad: create_graph=True .* not supported"):
        grad((a * 2).sum(), a, create_graph=True)
    with pytest.raises(GraphError, match="grad: gradient can be implicit only for a scalar output"):
        grad(a * 2, a)
    with pytest.raises(ShapeError, match=r"grad: gradient has shape \(3,\) but the output has shape \(2,\)"):
        grad(a * 2, a, grad_outputs=ember.ones(3))
    with pytest.raises(GraphError, match="grad: output 0 does not require grad"):
        grad(ember.ones(2).sum(), a)
    with pytest.raises(GraphError, match="grad: 1 grad_outputs for 2 outputs"):
        grad([a.sum(), a.sum()], a, grad_outputs=[None])
    y = (a * a).sum()
    grad(y, a)
    with pytest.raises(GraphError, match="a second time"):  # the graph was freed, as after backward()
        grad(y, a)


def test_grad_visits_only_the_ops_between_outputs_and_inputs():
    """A middle tensor's gradient runs no backward below it, and asks each op only for the inputs
    that lead to a requested tensor; the ops' needs_input_grad are restored afterwards."""
    calls = []

    class Spy(ember.autograd.Function):
        def forward(self, a, b):
            return a * b

        def backward(self, gy):
            calls.append(self.needs_input_grad)
            return (gy * 2 if self.needs_input_grad[0] else None), (gy * 3 if self.needs_input_grad[1] else None)

    x = ember.tensor([1.0, 2.0], requires_grad=True)
    w = ember.tensor([3.0, 4.0], requires_grad=True)
    below = Spy.apply(x, w)          # below the requested tensor: must not run
    mid = below.tanh()
    out = Spy.apply(mid, w)          # asked only for mid's gradient, not w's
    (g,) = grad(out.sum(), mid, retain_graph=True)
    np.testing.assert_array_equal(g.numpy(), [2.0, 2.0])
    assert calls == [(True, False)]
    out.sum().backward()             # a full backward afterwards: every op, every input
    assert calls[1:] == [(True, True), (True, True)] and x.grad is not None and w.grad is not None


def test_grad_through_a_diamond_whose_branches_meet_in_any_order():
    """Which ops lead to the input is decided after all their inputs are, whatever order the
    graph's walk meets them in (p + exp(p) and exp(p) + p)."""
    for flip in (False, True):
        x = ember.tensor([0.5, -1.0], requires_grad=True)
        p = x * 2
        a = p.exp()
        y = (a + p) if flip else (p + a)
        (g,) = grad(y.sum(), x)
        np.testing.assert_allclose(g.numpy(), 2 * np.exp(2 * np.array([0.5, -1.0])) + 2, rtol=1e-6)

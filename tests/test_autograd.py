"""Engine semantics: accumulation, grad mode, graph lifetime, in-place detection, aliasing, errors."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import ember
from ember import backend
from ember.autograd import Function
from ember.errors import DTypeError, GraphError, ShapeError


def leaf(*values):
    return ember.tensor(np.array(values, dtype=np.float64), dtype=ember.float64, requires_grad=True)


def test_fan_out_accumulates():
    x = leaf(1.0, 2.0, 3.0)
    y = x * x + x.exp() + x  # x used by four consumers
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.data + np.exp(x.data) + 1)


def test_diamond_graph_visits_shared_node_once():
    x = leaf(0.5, -1.0)
    h = x.tanh()
    y = h * 2 + h * 3
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 5 * (1 - np.tanh(x.data) ** 2))


def test_broadcast_gradient_is_reduced_to_input_shape():
    a = ember.randn(4, 3, dtype=ember.float64, requires_grad=True)
    b = ember.randn(3, dtype=ember.float64, requires_grad=True)
    c = ember.randn(4, 1, dtype=ember.float64, requires_grad=True)
    s = ember.tensor(2.0, dtype=ember.float64, requires_grad=True)
    (a * b + c * s).sum().backward()
    assert b.grad.shape == (3,) and c.grad.shape == (4, 1) and s.grad.shape == ()
    np.testing.assert_allclose(b.grad.numpy(), a.data.sum(0))
    np.testing.assert_allclose(c.grad.numpy(), np.full((4, 1), 6.0))
    np.testing.assert_allclose(s.grad.item(), c.data.sum() * 3)


def test_unused_input_gets_no_grad():
    x, unused = leaf(1.0, 2.0), leaf(3.0)
    (x * 2).sum().backward()
    assert unused.grad is None
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])


def test_branch_without_gradient_is_skipped():
    x = leaf(1.0, 2.0)
    y = x * 3
    z = (y.argmax() == 1)  # a no-grad use of y must not block y's own gradient
    assert not z.requires_grad
    (y * 2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 6.0])


def test_no_grad_and_enable_grad_context_managers():
    x = leaf(1.0)
    with ember.no_grad():
        assert not ember.is_grad_enabled()
        y = x * 2
        with ember.enable_grad():
            z = x * 2
        w = x * 2
    assert ember.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None
    assert not w.requires_grad


def test_no_grad_restores_mode_after_exception():
    with pytest.raises(KeyError):
        with ember.no_grad():
            raise KeyError("boom")
    assert ember.is_grad_enabled()


@pytest.mark.parametrize("decorator", [ember.no_grad(), ember.no_grad], ids=["called", "bare"])
def test_no_grad_decorator(decorator):
    @decorator
    def double(t):
        """Doc survives."""
        return t * 2

    x = leaf(1.0)
    assert not double(x).requires_grad
    assert double.__name__ == "double" and double.__doc__ == "Doc survives."
    assert ember.is_grad_enabled()


def test_enable_grad_decorator_inside_no_grad():
    @ember.enable_grad()
    def double(t):
        return t * 2

    x = leaf(1.0)
    with ember.no_grad():
        assert double(x).requires_grad
        assert not ember.is_grad_enabled()


def test_second_backward_without_retain_graph_raises():
    x = leaf(1.0, 2.0)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(GraphError, match="retain_graph"):
        y.backward()


def test_retain_graph_allows_second_backward_and_accumulates():
    x = leaf(1.0, 2.0)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first)


def test_grad_accumulates_across_two_graphs():
    x = leaf(1.0, 2.0)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 + 2 * x.data)


def test_graph_is_freed_after_backward():
    x = leaf(1.0, 2.0)
    y = (x.exp() * 2).sum()
    fn = y.grad_fn
    y.backward()
    assert fn.freed and not hasattr(fn, "next")


def _chain(x, n):
    y = x
    for _ in range(n):
        y = y * 1.0001
    return y


def test_deep_chain_backward_is_iterative():
    x = leaf(1.0)
    _chain(x, 10_000).sum().backward()
    np.testing.assert_allclose(x.grad.item(), 1.0001 ** 10_000, rtol=1e-9)


def test_deep_chain_deallocation_does_not_overflow():
    # Dropping a 100,000-op graph that never ran backward frees Functions that point
    # to Functions; a recursive deallocation would overflow the C stack.
    x = leaf(1.0)
    y = _chain(x, 100_000)
    ref = weakref.ref(y.grad_fn)
    del y
    assert ref() is None
    y = _chain(x, 100_000)
    y.sum().backward()
    assert x.grad is not None


def test_intermediate_freed_without_gc():
    """No reference cycles: intermediates die by reference counting alone."""
    gc.disable()
    try:
        x = leaf(1.0, 2.0)
        h = x.exp()
        ref_h, ref_fn = weakref.ref(h), weakref.ref(h.grad_fn)
        y = (h * 2).sum()
        del h
        assert ref_h() is None  # the tensor goes as soon as nothing uses it...
        assert ref_fn() is not None  # ...while its Function stays for backward
        y.backward()
        assert x.grad is not None
        del y
        assert ref_fn() is None  # and the graph goes with the output
        z = (x * 3).tanh()
        ref_z = weakref.ref(z.grad_fn)
        del z
        assert ref_z() is None  # a graph that never ran backward is freed too
    finally:
        gc.enable()


def test_retain_grad_keeps_non_leaf_grad():
    x = leaf(1.0, -2.0)
    h = x * 3
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), 2 * h.data)
    np.testing.assert_allclose(x.grad.numpy(), 6 * h.data)
    g = x * 2
    assert g.grad is None  # non-leaves do not keep .grad unless asked


def test_inplace_change_of_saved_tensor_raises():
    w = leaf(1.0, 2.0)
    a = ember.tensor([3.0, 4.0], dtype=ember.float64)
    y = (w * a).sum()  # Mul saved a
    a.mul_(2)
    with pytest.raises(GraphError, match="modified in place"):
        y.backward()


def test_inplace_change_of_an_unsaved_input_is_allowed():
    """Like PyTorch, only inputs that backward reads must stay unchanged: Add, Sub and Neg read none,
    Embedding only its indices (regression: two max_norm lookups of one table used to refuse)."""
    w = leaf(1.0, 2.0)
    a = ember.tensor([3.0, 4.0], dtype=ember.float64)
    y = ((w + a) - a).sum() + (-a).sum()
    a.mul_(2)
    y.backward()
    np.testing.assert_allclose(w.grad.numpy(), [1.0, 1.0])
    table = ember.nn.Embedding(4, 3, max_norm=1.0)
    with ember.no_grad():
        table.weight.mul_(5)  # every row's norm > 1: each lookup renormalizes the rows it picks
    out = table(ember.tensor([0, 1])).sum() + table(ember.tensor([1, 2])).sum()  # row 2 rescaled after lookup 1
    out = out + table(ember.tensor([3])).sum()  # rescales row 3 in place after the first two lookups ran
    out.backward()
    np.testing.assert_allclose(table.weight.grad.numpy().sum(axis=1), [3.0, 6.0, 3.0, 3.0])
    b = ember.tensor([1.0, 2.0], dtype=ember.float64)
    z = (w * b).sum()  # Mul reads b: still refused
    b.add_(1)
    with pytest.raises(GraphError, match="modified in place"):
        z.backward()


def test_inplace_change_through_detached_alias_raises():
    w = leaf(1.0, 2.0)
    y = w.exp()
    z = (y * w).sum()
    with ember.no_grad():
        w.detach().zero_()  # shares w's version counter
    with pytest.raises(GraphError, match="in place"):
        z.backward()


def test_inplace_on_leaf_requiring_grad_needs_no_grad():
    w = leaf(1.0, 2.0)
    with pytest.raises(GraphError, match="no_grad"):
        w.add_(1)
    with ember.no_grad():
        w.add_(1)
    np.testing.assert_allclose(w.data, [2.0, 3.0])
    assert w._version == 1


def test_leaf_grads_never_alias():
    a, b = leaf(1.0, 2.0), leaf(3.0, 4.0)
    (a + b).sum().backward()
    a.grad.data[...] = 100  # an optimizer scaling a.grad in place
    np.testing.assert_allclose(b.grad.numpy(), [1.0, 1.0])
    x = leaf(1.0, 2.0)
    (x + x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])
    seed = ember.tensor([1.0, 1.0], dtype=ember.float64)
    c = leaf(0.0, 0.0)
    c.backward(seed)
    c.grad.data[...] = 7
    np.testing.assert_allclose(seed.numpy(), [1.0, 1.0])  # the seed gradient is not aliased either
    d, e = leaf(1.0, 2.0), leaf(3.0, 4.0)
    d.sum().backward()
    e.sum().backward()
    d.grad.data[0] = 5  # the all-ones from Sum's broadcast view must not be shared
    assert e.grad.data[0] == 1 and d.grad.data.flags.writeable


def test_seed_gradient_is_never_aliased_by_leaf_grads():
    """The engine does not copy the seed, so a leaf that would receive it (Add hands gy through) or a view
    of it (reshape, transpose) must get a copy: changing .grad in place leaves the caller's seed alone."""
    for make in (lambda a, b: a + b, lambda a, b: a.reshape(2, 2) + b.reshape(2, 2), lambda a, b: (a + b).reshape(4)):
        a, b = leaf(1.0, 2.0, 3.0, 4.0), leaf(0.0, 0.0, 0.0, 0.0)
        y = make(a, b)
        seed = ember.tensor(np.arange(y.numel(), dtype=np.float64).reshape(y.shape))
        y.backward(seed)
        a.grad.data[...] = -1
        b.grad.data[...] = -2
        np.testing.assert_array_equal(seed.numpy().reshape(-1), [0.0, 1.0, 2.0, 3.0])
    x = leaf(1.0, 2.0, 3.0, 4.0)
    seed = ember.tensor(np.ones((2, 2)))
    x.reshape(2, 2).transpose(0, 1).backward(seed)
    x.grad.data[...] = 9
    np.testing.assert_array_equal(seed.numpy(), np.ones((2, 2)))


@pytest.mark.skipif(getattr(backend._cupy, "__name__", "") == "cupy_emulated",
                    reason="the CPU route's memory layout; the GPU route returns gx in x's own order")
def test_sole_views_become_grads_without_a_copy(rng):
    """A convolution's input gradient is a channels-last view of an array only it refers to: the engine
    stores it as .grad as is (no copy), while views of shared arrays are still copied (test above)."""
    from ember.autograd import _owns_memory

    x = ember.Tensor(rng.standard_normal((2, 8, 6, 6)).astype(np.float32), requires_grad=True)
    w = ember.Tensor(rng.standard_normal((8, 8, 3, 3)).astype(np.float32))
    ember.nn.functional.conv2d(x, w, padding=1).sum().backward()
    assert x.grad.data.base is not None and x.grad.data.transpose(0, 2, 3, 1).flags.c_contiguous
    shared = np.zeros((3, 4))
    assert _owns_memory(shared) and not _owns_memory(shared.T) and _owns_memory(np.zeros((4, 3)).T.copy())


def test_backward_on_non_scalar_needs_gradient():
    x = ember.randn(2, 3, requires_grad=True)
    y = x * 2
    with pytest.raises(GraphError, match=r"scalar.*\(2, 3\)"):
        y.backward()
    y.backward(ember.ones(2, 3))
    np.testing.assert_allclose(x.grad.numpy(), np.full((2, 3), 2.0))


def test_backward_gradient_shape_mismatch():
    x = ember.randn(2, 3, requires_grad=True)
    with pytest.raises(ShapeError, match=r"\(3, 2\).*\(2, 3\)"):
        (x * 2).backward(ember.ones(3, 2))


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(GraphError, match="does not require grad"):
        ember.ones(2).sum().backward()


def test_engine_checks_gradient_shape_and_dtype():
    class BadShape(Function):
        def forward(self, x):
            return x * 2

        def backward(self, gy):
            return gy[:1]

    class BadDType(Function):
        def forward(self, x):
            return x * 2

        def backward(self, gy):
            return gy.astype(np.float32)

    x = leaf(1.0, 2.0)
    with pytest.raises(ShapeError, match="BadShape"):
        BadShape.apply(x).sum().backward()
    with pytest.raises(DTypeError, match="BadDType"):
        BadDType.apply(x).sum().backward()


def test_requires_grad_propagates_and_detach_cuts():
    x = leaf(1.0)
    c = ember.ones(1, dtype=ember.float64)
    assert (x * c).requires_grad and not (c * 2).requires_grad
    d = (x * 2).detach()
    assert not d.requires_grad and d.grad_fn is None
    y = x * 2
    assert np.shares_memory(y.detach().data, y.data)


def test_mixed_dtype_gradients_come_back_in_input_dtype():
    a = ember.randn(3, requires_grad=True)  # float32
    b = ember.randn(3, dtype=ember.float64, requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64


def test_error_messages_name_both_shapes():
    with pytest.raises(ShapeError, match=r"matmul.*\(2, 3\).*\(4, 5\)"):
        ember.randn(2, 3) @ ember.randn(4, 5)
    with pytest.raises(ShapeError, match=r"add.*\(3,\).*\(4,\)"):
        ember.randn(3) + ember.randn(4)
    with pytest.raises(ShapeError, match=r"mul.*\(2, 3\).*\(3, 2\)"):
        ember.randn(2, 3) * ember.randn(3, 2)


def test_tensor_subclass_leaves_get_gradients():
    class Param(ember.Tensor):  # like nn.Parameter
        __slots__ = ()

    w = Param(np.array([1.0, 2.0]), requires_grad=True)
    (w * w).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [2.0, 4.0])


def test_zero_d_grads_and_results_support_inplace_setters():
    x = ember.tensor(2.0, requires_grad=True)
    (x * x).backward()
    x.grad.zero_()  # NumPy gives scalars for 0-d results; the grad must still be writable
    assert x.grad.item() == 0.0 and x.grad.shape == ()
    y = ember.tensor(1.0).exp()
    y.fill_(3.0)
    assert y.item() == 3.0


@pytest.mark.parametrize("make_view", [lambda a: a[0:2], lambda a: a.reshape(3, 1), lambda a: a.T,
                                       lambda a: ember.flip(a, 0)], ids=["slice", "reshape", "T", "flip"])
def test_views_share_the_version_counter(make_view):
    w = leaf(1.0, 2.0, 3.0)
    a = ember.tensor([3.0, 4.0, 5.0], dtype=ember.float64)
    y = (w * a).sum()  # Mul saved a
    v = make_view(a)
    v.mul_(2)  # changes a's memory through a view
    with pytest.raises(GraphError, match="modified in place"):
        y.backward()

"""Tensor basics, in-place setters with version counting, factories and seeded randomness."""
from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.errors import DTypeError, GraphError, ShapeError


# ---- properties and conversion ---------------------------------------------------------------------------
def test_properties():
    t = ember.zeros(2, 3, 4)
    assert t.shape == (2, 3, 4) and t.ndim == 3 and t.dim() == 3 and t.numel() == 24
    assert t.size() == (2, 3, 4) and t.size(1) == 3 and t.size(-1) == 4
    assert t.dtype == np.float32 and t.device == "cpu" and str(t.device) == "cpu"
    assert t.is_leaf and not t.requires_grad and t.grad is None and len(t) == 2


def test_T_reverses_dims_and_has_gradient():
    x = ember.randn(2, 3, requires_grad=True)
    assert x.T.shape == (3, 2)
    np.testing.assert_array_equal(x.T.detach().numpy(), x.detach().numpy().T)
    (x.T * ember.arange(6.0).reshape(3, 2)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.arange(6.0).reshape(3, 2).T)


def test_item_and_numpy():
    assert ember.tensor(2.5).item() == 2.5 and isinstance(ember.tensor([3]).item(), int)
    with pytest.raises(ShapeError, match=r"item.*\(2,\)"):
        ember.zeros(2).item()
    x = ember.ones(2, requires_grad=True)
    with pytest.raises(GraphError, match="detach"):
        x.numpy()
    np.testing.assert_array_equal(x.detach().numpy(), [1.0, 1.0])
    assert float(ember.tensor(1.5)) == 1.5 and int(ember.tensor(7)) == 7


def test_len_of_0d_raises():
    with pytest.raises(TypeError):
        len(ember.tensor(1.0))


def test_detach_shares_data_but_not_graph():
    x = ember.ones(3, requires_grad=True)
    y = x * 2
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None and np.shares_memory(d.data, y.data)


def test_requires_grad_():
    x = ember.ones(2)
    assert x.requires_grad_() is x and x.requires_grad
    with pytest.raises(GraphError, match="floating point"):
        ember.arange(3).requires_grad_()
    y = x * 2
    with pytest.raises(GraphError, match="non-leaf"):
        y.requires_grad_(False)


def test_comparisons_return_tensors_without_grad():
    x = ember.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for r in (x == 2.0, x != 2.0, x < 2.0, x <= 2.0, x > 2.0, x >= 2.0, x.argmax(), x.argmin()):
        assert isinstance(r, ember.Tensor) and not r.requires_grad and r.grad_fn is None
    np.testing.assert_array_equal((x == 2.0).numpy(), [False, True, False])
    assert x.argmax().item() == 2 and x.argmax().dtype == np.int64


def test_scalar_operand_keeps_float32():
    x = ember.ones(2)
    assert (x * 0.5).dtype == np.float32 and (2.0 - x).dtype == np.float32 and (x ** 2).dtype == np.float32
    assert (np.float64(2.0) * x).dtype == np.float32  # NumPy scalars act like Python numbers, as in PyTorch


def test_repr():
    assert repr(ember.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert "requires_grad=True" in repr(ember.ones(1, requires_grad=True))
    assert "grad_fn=<MulBackward>" in repr(ember.ones(1, requires_grad=True) * 2)
    assert "dtype=float64" in repr(ember.ones(1, dtype=ember.float64))


# ---- in-place setters ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,args,expected", [
    ("zero_", (), [0.0, 0.0, 0.0]),
    ("fill_", (4.0,), [4.0, 4.0, 4.0]),
    ("copy_", (np.array([7.0, 8.0, 9.0]),), [7.0, 8.0, 9.0]),
    ("add_", (1.0,), [2.0, 3.0, 4.0]),
    ("add_", (np.array([1.0, 1.0, 1.0]), 2), [3.0, 4.0, 5.0]),
    ("sub_", (1.0,), [0.0, 1.0, 2.0]),
    ("mul_", (2.0,), [2.0, 4.0, 6.0]),
    ("div_", (2.0,), [0.5, 1.0, 1.5]),
    ("clamp_", (1.5, 2.5), [1.5, 2.0, 2.5]),
])
def test_inplace_setters(name, args, expected):
    t = ember.tensor([1.0, 2.0, 3.0])
    data = t.data
    args = tuple(ember.tensor(a) if isinstance(a, np.ndarray) else a for a in args)
    assert getattr(t, name)(*args) is t
    np.testing.assert_allclose(t.numpy(), expected)
    assert t.data is data and t._version == 1  # same array, version bumped


def test_setitem_bumps_version_and_writes():
    t = ember.zeros(2, 3)
    t[0, 1:] = 5.0
    t[ember.tensor([1])] = ember.ones(1, 3)
    np.testing.assert_array_equal(t.numpy(), [[0, 5, 5], [1, 1, 1]])
    assert t._version == 2


def test_copy_shape_mismatch_names_both_shapes():
    with pytest.raises(ShapeError, match=r"copy_.*\(4,\).*\(3,\)"):
        ember.zeros(3).copy_(ember.zeros(4))


def test_inplace_on_graph_tensor_raises():
    y = ember.ones(2, requires_grad=True) * 2
    with pytest.raises(GraphError, match="in-place"):
        y.mul_(2)


# ---- factories ---------------------------------------------------------------------------------------------
def test_tensor_dtype_inference_and_copy():
    assert ember.tensor([1.0, 2.0]).dtype == np.float32
    assert ember.tensor([1, 2]).dtype == np.int64
    assert ember.tensor([True]).dtype == np.bool_
    assert ember.tensor(np.zeros(2)).dtype == np.float64  # arrays keep their dtype
    assert ember.tensor([1, 2], dtype=ember.float64).dtype == np.float64
    a = np.zeros(2)
    ember.tensor(a).data[0] = 1
    assert a[0] == 0  # tensor() copies
    assert np.shares_memory(ember.from_numpy(a).data, a)
    with pytest.raises(DTypeError):
        ember.tensor([1, 2], requires_grad=True)


@pytest.mark.parametrize("fn,args,shape,value", [
    (ember.zeros, (2, 3), (2, 3), 0.0), (ember.zeros, ((2, 3),), (2, 3), 0.0), (ember.ones, (4,), (4,), 1.0),
    (ember.full, ((2, 2), 7.0), (2, 2), 7.0), (ember.empty, (0, 3), (0, 3), None),
])
def test_filled_factories(fn, args, shape, value):
    t = fn(*args)
    assert t.shape == shape and t.dtype == np.float32
    if value is not None:
        assert (t.numpy() == value).all()
    assert fn(*args, dtype=ember.float64).dtype == np.float64


def test_like_factories():
    x = ember.randn(2, 3, dtype=ember.float64)
    for fn, v in ((ember.zeros_like, 0), (ember.ones_like, 1)):
        t = fn(x)
        assert t.shape == (2, 3) and t.dtype == np.float64 and (t.numpy() == v).all()
    assert ember.full_like(x, 3).numpy().max() == 3 and ember.zeros_like(x, dtype=ember.int64).dtype == np.int64
    assert ember.rand_like(x).dtype == np.float64 and ember.randn_like(x).shape == (2, 3)


def test_arange_linspace_eye():
    np.testing.assert_array_equal(ember.arange(5).numpy(), np.arange(5))
    assert ember.arange(5).dtype == np.int64 and ember.arange(0, 1, 0.25).dtype == np.float32
    np.testing.assert_allclose(ember.arange(1, 2, 0.25).numpy(), [1, 1.25, 1.5, 1.75])
    np.testing.assert_allclose(ember.linspace(0, 1, 5).numpy(), [0, 0.25, 0.5, 0.75, 1])
    assert ember.linspace(0, 1, 3, dtype=ember.float64).dtype == np.float64
    np.testing.assert_array_equal(ember.eye(2, 3).numpy(), np.eye(2, 3))
    assert ember.arange(3, dtype=ember.float32).dtype == np.float32


def test_factories_requires_grad():
    assert ember.zeros(2, requires_grad=True).requires_grad
    assert ember.randn(2, requires_grad=True).requires_grad
    with pytest.raises(DTypeError):
        ember.arange(3, requires_grad=True)


# ---- randomness ----------------------------------------------------------------------------------------------
RANDOM = [
    ("rand", lambda g: ember.rand(3, 4, generator=g)),
    ("randn", lambda g: ember.randn(3, 4, generator=g)),
    ("randint", lambda g: ember.randint(0, 10, (5,), generator=g)),
    ("randint_high_only", lambda g: ember.randint(10, (5,), generator=g)),
    ("randperm", lambda g: ember.randperm(8, generator=g)),
    ("rand_like", lambda g: ember.rand_like(ember.zeros(3), generator=g)),
    ("randn_like", lambda g: ember.randn_like(ember.zeros(3), generator=g)),
]


@pytest.mark.parametrize("name,draw", RANDOM, ids=[r[0] for r in RANDOM])
def test_random_functions_accept_generator_and_manual_seed(name, draw):
    a = draw(ember.Generator(5))
    b = draw(ember.Generator(5))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    ember.manual_seed(11)
    c = draw(None)
    ember.manual_seed(11)
    d = draw(None)
    np.testing.assert_array_equal(c.numpy(), d.numpy())
    e = draw(None)  # the stream moves on
    assert not np.array_equal(d.numpy(), e.numpy())


def test_random_values_and_dtypes():
    g = ember.Generator(0)
    u = ember.rand(10000, generator=g)
    assert u.dtype == np.float32 and 0 <= u.numpy().min() and u.numpy().max() < 1
    n = ember.randn(10000, generator=g, dtype=ember.float64)
    assert n.dtype == np.float64 and abs(n.numpy().mean()) < 0.05 and abs(n.numpy().std() - 1) < 0.05
    r = ember.randint(3, 6, (1000,), generator=g)
    assert r.dtype == np.int64 and set(np.unique(r.numpy())) == {3, 4, 5}
    assert sorted(ember.randperm(6, generator=g).tolist()) == list(range(6))
    with pytest.raises(ValueError, match="randint"):
        ember.randint(5, 5, (2,))


def test_rand_stays_below_one_after_rounding():
    """Regression: rand drew float64 and rounded, so a draw within half an ulp of 1 became 1.0 (in
    float16 about 1 in 4,000 draws; in float32 1 in 2**25)."""
    g = ember.Generator(0)
    h = ember.rand(200000, generator=g, dtype=ember.float16).numpy()
    assert h.max() < 1 and (h == np.nextafter(np.float16(1), np.float16(0))).sum() > 10
    f = ember.rand(1000, generator=ember.Generator(3)).numpy()  # the stream itself is unchanged
    ref = np.random.Generator(np.random.PCG64(3)).random(1000).astype(np.float32)
    np.testing.assert_array_equal(f, ref)


def test_generator_state_round_trip_and_type_check():
    g = ember.Generator(1)
    state = g.get_state()
    a = ember.randn(4, generator=g)
    g.set_state(state)
    np.testing.assert_array_equal(ember.randn(4, generator=g).numpy(), a.numpy())
    assert g.initial_seed() == 1 and ember.Generator().manual_seed(2).initial_seed() == 2
    with pytest.raises(TypeError, match="Generator"):
        ember.randn(2, generator=np.random.default_rng(0))


def test_new_factories_take_dtype_and_device_from_self():
    x = ember.ones(2, dtype=np.float64)
    for t in (x.new_zeros(2, 3), x.new_ones((2, 3)), x.new_empty(2, 3), x.new_full((2, 3), 7.0)):
        assert t.shape == (2, 3) and t.dtype == np.float64 and t.device == x.device and not t.requires_grad
    assert x.new_tensor([1, 2]).dtype == np.float64
    assert x.new_zeros(2, dtype=np.int64).dtype == np.int64
    np.testing.assert_array_equal(x.new_full((2,), 7.0).numpy(), [7, 7])

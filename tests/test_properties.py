"""Property-based checks (hypothesis) of broadcasting, reductions and reshapes against NumPy."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import ember

dims = st.lists(st.integers(1, 4), min_size=0, max_size=4)


@st.composite
def broadcast_pair(draw):
    """Two shapes that broadcast: the second drops leading dims and sets some dims to 1."""
    a = draw(dims)
    drop = draw(st.integers(0, len(a)))
    b = [1 if draw(st.booleans()) else n for n in a[drop:]]
    return tuple(a), tuple(b)


@settings(max_examples=60, deadline=None)
@given(broadcast_pair(), st.integers(0, 2**31 - 1))
def test_mul_gradients_sum_over_broadcast_axes(shapes, seed):
    sa, sb = shapes
    rng = np.random.default_rng(seed)
    a_np, b_np = rng.standard_normal(sa), rng.standard_normal(sb)
    a = ember.tensor(a_np, requires_grad=True)
    b = ember.tensor(b_np, requires_grad=True)
    (a * b).sum().backward()
    full_b = np.broadcast_to(b_np, np.broadcast_shapes(sa, sb))
    full_a = np.broadcast_to(a_np, full_b.shape)
    np.testing.assert_allclose(a.grad.numpy(), full_b.reshape(sa) if full_b.shape == sa else full_b, rtol=1e-12)
    # b's gradient sums a over the axes b was broadcast along
    lead = full_a.ndim - len(sb)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(sb) if n == 1 and full_a.shape[lead + i] != 1)
    expect = full_a.sum(axis=axes, keepdims=True).reshape(sb)
    np.testing.assert_allclose(b.grad.numpy(), expect, rtol=1e-10, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(dims, st.integers(0, 2**31 - 1), st.booleans())
def test_reductions_match_numpy(shape, seed, keepdim):
    x_np = np.random.default_rng(seed).standard_normal(shape)
    x = ember.tensor(x_np)
    for d in [None] + list(range(-len(shape), len(shape))):
        np.testing.assert_allclose(ember.sum(x, d, keepdim).numpy(), x_np.sum(axis=d, keepdims=keepdim), rtol=1e-12)
        if x_np.size and (d is None or shape[d] > 0):
            np.testing.assert_allclose(ember.amax(x, d, keepdim).numpy(), x_np.max(axis=d, keepdims=keepdim))


@settings(max_examples=60, deadline=None)
@given(dims, st.integers(0, 2**31 - 1))
def test_reshape_permute_roundtrip_gradient_is_identity(shape, seed):
    x_np = np.random.default_rng(seed).standard_normal(shape)
    x = ember.tensor(x_np, requires_grad=True)
    perm = tuple(reversed(range(len(shape))))
    y = x.permute(perm).reshape(-1) if shape else x.reshape(-1)
    g = np.random.default_rng(seed + 1).standard_normal(y.shape)
    y.backward(ember.tensor(g))
    expect = g.reshape(tuple(shape[i] for i in perm)).transpose(np.argsort(perm)) if shape else g.reshape(())
    np.testing.assert_allclose(x.grad.numpy(), expect)

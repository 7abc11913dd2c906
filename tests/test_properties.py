"""Property-based checks (hypothesis) of broadcasting, reductions, reshapes and the select ops, against
NumPy and PyTorch."""
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


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=4), st.integers(0, 2**31 - 1), st.data())
def test_select_ops_and_their_gradients_match_torch(shape, seed, data):
    """gather, sort, topk, cumsum and roll on random shapes and dims: values, indices and gradients vs PyTorch
    (values drawn without ties, where sorting is well defined)."""
    import torch

    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    a = (rng.permutation(n) + rng.uniform(0, 0.5, n)).reshape(shape)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    k = data.draw(st.integers(0, shape[dim]))
    index_shape = [data.draw(st.integers(0, m)) if i != dim % len(shape) else data.draw(st.integers(0, 4))
                   for i, m in enumerate(shape)]
    index = rng.integers(0, shape[dim], index_shape)
    seeds = {}

    def run(lib, x):
        outs = [x.gather(dim, lib.tensor(index) if lib is torch else ember.tensor(index)),
                x.sort(dim, descending=True)[0], x.topk(k, dim)[0], x.cumsum(dim), x.roll(2, dim)]
        total = sum((o * lib.tensor(seeds.setdefault(i, rng.standard_normal(o.shape)))).sum() for i, o in enumerate(outs))
        total.backward()
        idx = [x.sort(dim)[1], x.topk(k, dim, largest=False)[1]]
        return [o.detach().numpy() for o in outs] + [i.numpy() for i in idx] + [x.grad.numpy()]

    got = run(ember, ember.tensor(a, requires_grad=True))
    want = run(torch, torch.tensor(a, requires_grad=True))
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)

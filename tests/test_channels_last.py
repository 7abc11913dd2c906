"""Every spatial op gives the same values and gradients whether its input lies NCHW or channels-last in memory.

Convolutions return channels-last arrays (ember/ops/conv_lowering.py), so every op that may follow one must be
layout-blind: the results may differ only in memory order, never in value.
"""
from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.backend import is_channels_last

OPS = {
    "conv2d_rows": lambda x, w: F.conv2d(x, w["w16"], padding=1),
    "conv2d_strided": lambda x, w: F.conv2d(x, w["w16"], stride=2, padding=1),
    "conv2d_grouped": lambda x, w: F.conv2d(x, w["wg"], padding=1, groups=4),
    "conv_transpose2d": lambda x, w: F.conv_transpose2d(x, w["wt"], stride=2, padding=1, output_padding=1),
    "max_pool2d": lambda x, w: F.max_pool2d(x, 2),
    "max_pool2d_overlap": lambda x, w: F.max_pool2d(x, 3, stride=1, padding=1),
    "avg_pool2d": lambda x, w: F.avg_pool2d(x, 3, stride=2, padding=1),
    "adaptive_avg_pool2d": lambda x, w: F.adaptive_avg_pool2d(x, (3, 2)),
    "adaptive_max_pool2d": lambda x, w: F.adaptive_max_pool2d(x, 3),
    "lp_pool2d": lambda x, w: F.lp_pool2d(x, 2.0, 2),
    "batch_norm": lambda x, w: F.batch_norm(x, None, None, w["g"], w["b"], training=True),
    "group_norm": lambda x, w: F.group_norm(x, 4, w["g"], w["b"]),
    "instance_norm": lambda x, w: F.instance_norm(x),
    "layer_norm": lambda x, w: F.layer_norm(x, x.shape[1:]),
    "local_response_norm": lambda x, w: F.local_response_norm(x, 3),
    "interpolate_bilinear": lambda x, w: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
    "interpolate_nearest": lambda x, w: F.interpolate(x, size=(9, 7), mode="nearest"),
    "pixel_shuffle": lambda x, w: F.pixel_shuffle(x, 2),
    "unfold": lambda x, w: F.unfold(x, 3, padding=1),
    "pad_reflect": lambda x, w: F.pad(x, (1, 2, 2, 1), mode="reflect"),
    "maxout": lambda x, w: F.maxout(x, 4),
    "channel_pool": lambda x, w: F.channel_pool(x, 4, mode="mean"),
    "relu_add_slice": lambda x, w: F.relu(x) + x[:, :, ::-1, :] * 2,
    "flatten_linear": lambda x, w: F.linear(x.flatten(1), w["lin"]),
    "cat_channels": lambda x, w: ember.cat([x, F.relu(x)], dim=1),
}


def _channels_last(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_is_blind_to_input_memory_order(name, rng):
    x = rng.standard_normal((3, 16, 8, 6))
    params = {"w16": rng.standard_normal((16, 16, 3, 3)) * 0.1, "wg": rng.standard_normal((16, 4, 3, 3)) * 0.1,
              "wt": rng.standard_normal((16, 8, 3, 3)) * 0.1, "g": rng.standard_normal(16),
              "b": rng.standard_normal(16), "lin": rng.standard_normal((5, 16 * 8 * 6)) * 0.05}
    results = []
    for layout in (np.ascontiguousarray, _channels_last):
        xe = ember.Tensor(layout(x), requires_grad=True)
        assert is_channels_last(xe.data) == (layout is _channels_last)
        ws = {k: ember.Tensor(v, requires_grad=True) for k, v in params.items()}
        y = OPS[name](xe, ws)
        g = np.random.default_rng(1).standard_normal(y.shape)
        y.backward(ember.Tensor(g))
        results.append((y.data, xe.grad.data, {k: w.grad.data for k, w in ws.items() if w.grad is not None}))
    (y0, gx0, gw0), (y1, gx1, gw1) = results
    np.testing.assert_allclose(y1, y0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx1, gx0, rtol=1e-12, atol=1e-12)
    assert gw0.keys() == gw1.keys()
    for k in gw0:
        np.testing.assert_allclose(gw1[k], gw0[k], rtol=1e-12, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("args", [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1)], ids=["tiles", "overlap"])
def test_max_pool_keeps_a_channels_last_layout(args, rng):
    """Max pooling of channels-last input (a rows-lowered convolution's output, as in LeNet-5's second
    layer) gives channels-last output and input gradient, so the ReLU before it multiplies arrays of
    one layout; NCHW input stays NCHW."""
    from ember.backend import xp_of

    if xp_of(np.zeros(1)) is not np:
        pytest.skip("arrays take the GPU branch here (tests.cuda_emulator): one pooling kernel, NCHW output")
    x = rng.standard_normal((2, 6, 8, 8)).astype(np.float32)
    for data, want in ((x, False), (_channels_last(x), True)):
        xe = ember.Tensor(data, requires_grad=True)
        y = F.max_pool2d(xe, **args)
        y.backward(ember.Tensor(np.ones(y.shape, np.float32)))
        assert is_channels_last(y.data) == want and is_channels_last(xe.grad.data) == want


def test_memory_order_views_arrays_in_the_first_ones_memory_order():
    from ember.backend import memory_order

    x = np.ascontiguousarray(np.arange(2 * 3 * 4 * 5.0).reshape(2, 4, 5, 3)).transpose(0, 3, 1, 2)  # (N, C, H, W)
    stat = np.arange(3.0).reshape(1, 3, 1, 1)
    xv, sv, k = memory_order(x, stat, 2.0)
    assert xv.shape == (2, 4, 5, 3) and xv.flags.c_contiguous and k == 2.0
    assert sv.shape == (1, 1, 1, 3) and np.array_equal(xv + sv, (x + stat).transpose(0, 2, 3, 1))
    c = np.zeros((2, 3, 4, 5))
    assert memory_order(c, stat)[0] is c and memory_order(c, stat)[1] is stat  # already in order: as given


@pytest.mark.parametrize("shape,perm", [
    ((2, 3, 4, 5), (0, 2, 3, 1)), ((2, 3, 4), (0, 2, 1)), ((2, 3, 4, 5), None), ((4, 5), (1, 0)),
    ((2, 1, 4, 5), (0, 2, 3, 1)), ((2, 3, 4, 1), (0, 2, 3, 1)), ((3, 4, 5, 6), (3, 1, 0, 2)), ((3, 4, 5), (1, 2, 0)),
])
def test_empty_as_and_memory_order_follow_the_memory_layout(shape, perm):
    """backend.empty_as allocates in a's memory order, memory_order permutes a to C-contiguous."""
    from ember.backend import empty_as, memory_order

    a = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    if perm is not None:  # an array of `shape` whose memory runs along `perm`
        a = np.ascontiguousarray(a.transpose(perm)).transpose(np.argsort(perm))
    b = empty_as(a)
    assert b.shape == a.shape and b.dtype == a.dtype
    assert all(x == y for x, y, n in zip(a.strides, b.strides, shape) if n > 1)
    assert empty_as(a, np.bool_).strides == tuple(s // 4 for s in b.strides)
    ordered, same = memory_order(a, a)
    assert ordered.flags.c_contiguous and same.strides == ordered.strides


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 3, 0, 5), (3, 4, 5), (5, 6)])
def test_empty_in_order_makes_one_strided_array_on_cupy_as_numpy_would_transpose(shape):
    """On CuPy, backend.empty_in_order makes a single array with the strides of the memory order
    (``cupy.ndarray(memptr=cuda.alloc(n), strides=...)``); it must lie exactly like NumPy's
    ``empty(permuted shape).transpose(inverse)``, for every order (checked with the emulated CuPy
    of tests/cuda_emulator.py, whose ``ndarray`` builds the array from those same arguments)."""
    import itertools

    from ember.backend import empty_in_order
    from tests.cuda_emulator import _fake_cupy

    fake = _fake_cupy()
    for perm in itertools.permutations(range(len(shape))):
        order = (perm, tuple(np.argsort(perm)))
        for dtype in (np.dtype(np.float32), np.dtype(np.float64)):
            want, got = empty_in_order(np, shape, order, dtype), empty_in_order(fake, shape, order, dtype)
            assert got.shape == want.shape == shape and got.dtype == dtype
            if got.size:  # (NumPy reports other strides for an empty array; none is ever used)
                assert got.strides == want.strides, (perm, got.strides, want.strides)
            assert got.base is not None and got.base.nbytes == got.nbytes  # exactly the memory it needs


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 3, 4, 5), (2, 1, 4, 5), (2, 3, 1, 1), (2, 3, 0, 5), (3, 5), (4,)])
def test_layout_checks_read_from_strides_agree_with_the_transposed_views(shape):
    """is_channels_last and is_dense work from the strides alone; every memory order of every
    shape, and views with gaps, reversed or cut to one element along an axis, agree with the flags
    of the transposed view they used to make."""
    import itertools

    from ember.backend import _memory_perm, is_dense

    base = np.zeros(shape, dtype=np.float32)
    for perm in itertools.permutations(range(len(shape))):
        a = np.ascontiguousarray(base.transpose(perm)).transpose(np.argsort(perm))
        for v in [a] + ([a[:, ::2], a[..., :1], a[::-1]] if a.ndim >= 2 else [a[::2]]):
            assert is_channels_last(v) == (v.ndim == 4 and v.transpose(0, 2, 3, 1).flags.c_contiguous)
            order = _memory_perm(v)
            dense = v.flags.c_contiguous if order is None else v.transpose(order[0]).flags.c_contiguous
            assert is_dense(v) == dense, (v.shape, v.strides)

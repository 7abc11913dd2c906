"""Pooling layers against PyTorch in float32 on realistic sizes, plus tie and shift properties."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ember
import ember.nn.functional as F
from ember import nn
from tests.torch_compare import rel_err


def _check_module(em, tm, x, rng, fwd=1e-4, grad=1e-3):
    """Forward and input gradient of an ember module vs a torch module on float32 input."""
    xe = ember.Tensor(x.copy(), requires_grad=True)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    ye, yt = em(xe), tm(xt)
    if isinstance(yt, tuple):
        np.testing.assert_array_equal(ye[1].numpy(), yt[1].numpy())
        ye, yt = ye[0], yt[0]
    assert ye.shape == tuple(yt.shape) and ye.dtype == np.float32
    assert rel_err(ye.data, yt.detach().numpy()) <= fwd
    g = rng.standard_normal(ye.shape).astype(np.float32)
    ye.backward(ember.Tensor(g))
    yt.backward(torch.from_numpy(g))
    assert rel_err(xe.grad.data, xt.grad.numpy()) <= grad


@pytest.mark.parametrize("args,kw", [
    ((2,), {}), ((3,), dict(stride=2, padding=1)), ((3,), dict(stride=2, ceil_mode=True)),
    ((3,), dict(stride=1, padding=1)), (((2, 3),), dict(stride=(2, 1), dilation=(1, 2), padding=(1, 1))),
    ((2,), dict(return_indices=True)), ((3,), dict(stride=2, padding=1, ceil_mode=True, return_indices=True)),
])
def test_max_pool2d_vs_torch(args, kw, rng):
    x = rng.standard_normal((16, 6, 28, 27)).astype(np.float32)
    _check_module(nn.MaxPool2d(*args, **kw), torch.nn.MaxPool2d(*args, **kw), x, rng)


@pytest.mark.parametrize("args,kw", [
    ((2,), {}), ((3,), dict(stride=2, padding=1)), ((3,), dict(stride=2, padding=1, ceil_mode=True)),
    ((3,), dict(stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ((3,), dict(stride=1, divisor_override=7)), ((8,), {}),
])
def test_avg_pool2d_vs_torch(args, kw, rng):
    x = rng.standard_normal((16, 6, 29, 32)).astype(np.float32)
    _check_module(nn.AvgPool2d(*args, **kw), torch.nn.AvgPool2d(*args, **kw), x, rng)


@pytest.mark.parametrize("size", [1, 4, (3, 5), (7, None), 10])
def test_adaptive_pools_vs_torch(size, rng):
    x = rng.standard_normal((8, 16, 13, 16)).astype(np.float32)
    _check_module(nn.AdaptiveAvgPool2d(size), torch.nn.AdaptiveAvgPool2d(size), x, rng)
    _check_module(nn.AdaptiveMaxPool2d(size, return_indices=True), torch.nn.AdaptiveMaxPool2d(size, True), x, rng)


def test_pool1d_and_lp_vs_torch(rng):
    x = rng.standard_normal((8, 5, 101)).astype(np.float32)
    _check_module(nn.MaxPool1d(3, 2, 1, ceil_mode=True), torch.nn.MaxPool1d(3, 2, 1, ceil_mode=True), x, rng)
    _check_module(nn.AvgPool1d(4, 3, 2), torch.nn.AvgPool1d(4, 3, 2), x, rng)
    xp = rng.uniform(0.5, 2, (8, 4, 15, 16)).astype(np.float32)
    _check_module(nn.LPPool2d(2, 3, 2), torch.nn.LPPool2d(2, 3, 2), xp, rng)


def test_max_unpool_round_trip_vs_torch(rng):
    x = rng.standard_normal((4, 3, 10, 12)).astype(np.float32)
    y, idx = F.max_pool2d(ember.Tensor(x), 2, return_indices=True)
    yt, it = torch.nn.functional.max_pool2d(torch.from_numpy(x), 2, return_indices=True)
    np.testing.assert_array_equal(idx.numpy(), it.numpy())
    ye = ember.Tensor(y.data, requires_grad=True)
    u = nn.MaxUnpool2d(2)(ye, idx)
    ut = torch.nn.MaxUnpool2d(2)(yt.requires_grad_(), it)
    np.testing.assert_array_equal(u.data, ut.detach().numpy())
    g = rng.standard_normal(u.shape).astype(np.float32)
    u.backward(ember.Tensor(g))
    ut.backward(torch.from_numpy(g))
    np.testing.assert_array_equal(ye.grad.data, yt.grad.numpy())
    with pytest.raises(IndexError, match="max_unpool2d"):
        F.max_unpool2d(ye, ember.Tensor(idx.data + 1000), 2)


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
                                dict(kernel_size=3, stride=2, ceil_mode=True)])
def test_max_pool_tie_gradient_goes_to_first_element(kw):
    """All-equal windows: each window's gradient lands on exactly one element and sums to the upstream one."""
    x = ember.Tensor(np.ones((2, 3, 7, 8), dtype=np.float32), requires_grad=True)
    y = F.max_pool2d(x, **kw)
    g = np.arange(1, y.numel() + 1, dtype=np.float32).reshape(y.shape)
    y.backward(ember.Tensor(g))
    assert np.isclose(x.grad.data.sum(), g.sum())
    # Each window is credited to its first (top-left-most in row-major order) in-bounds
    # element, which is also what torch's CPU kernel picks.
    xt = torch.ones(2, 3, 7, 8, requires_grad=True)
    torch.nn.functional.max_pool2d(xt, **kw).backward(torch.from_numpy(g))
    np.testing.assert_array_equal(x.grad.data, xt.grad.numpy())
    _, idx = F.max_pool2d(x.detach(), return_indices=True, **kw)
    nonzero = np.flatnonzero(x.grad.data[0, 0])
    assert set(nonzero) == set(idx.data[0, 0].ravel())


@pytest.mark.parametrize("k", [2, (3, 2), 4])
def test_max_pool_ties_on_exact_tiles_match_torch(k, rng):
    """Kernel == stride tiling the input (the contiguous-planes path of MaxPool2d): ties, including
    all-zero windows as after a ReLU, credit the first element, as PyTorch does, and match the indices."""
    data = np.maximum(rng.integers(-2, 2, size=(2, 3, 12, 8)), 0).astype(np.float32)
    x = ember.Tensor(data, requires_grad=True)
    y = F.max_pool2d(x, k)
    g = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(ember.Tensor(g))
    xt = torch.from_numpy(data).requires_grad_()
    yt, it = torch.nn.functional.max_pool2d(xt, k, return_indices=True)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_array_equal(y.data, yt.detach().numpy())
    np.testing.assert_array_equal(x.grad.data, xt.grad.numpy())
    np.testing.assert_array_equal(F.max_pool2d(x.detach(), k, return_indices=True)[1].data, it.numpy())


def test_max_pool_tie_exactly_one_per_window_disjoint():
    x = ember.Tensor(np.zeros((1, 1, 4, 4), dtype=np.float32), requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    expected = np.zeros((4, 4), dtype=np.float32)
    expected[::2, ::2] = 1  # the top-left element of every 2x2 window
    np.testing.assert_array_equal(x.grad.data[0, 0], expected)


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1)])
def test_max_pool_nan_window_still_passes_its_gradient_to_one_element(kw):
    """A window holding a NaN has a NaN maximum that equals nothing: its gradient goes to the NaN (as in
    PyTorch; never lost, never doubled), and return_indices agrees with where the gradient went."""
    data = np.arange(2 * 6 * 6, dtype=np.float32).reshape(1, 2, 6, 6)
    data[0, 0, 1, 1] = np.nan
    x = ember.Tensor(data, requires_grad=True)
    y = F.max_pool2d(x, **kw)
    g = np.arange(1, y.numel() + 1, dtype=np.float32).reshape(y.shape)
    y.backward(ember.Tensor(g))
    assert np.isnan(y.data[0, 0]).any()
    assert np.isclose(x.grad.data.sum(), g.sum())
    _, idx = F.max_pool2d(x.detach(), return_indices=True, **kw)
    credited = np.zeros(data.shape[2:], dtype=np.float32)
    np.add.at(credited.reshape(-1), idx.data[0, 0].ravel(), g[0, 0].ravel())
    np.testing.assert_array_equal(x.grad.data[0, 0], credited)
    xt = torch.from_numpy(data).requires_grad_()
    torch.nn.functional.max_pool2d(xt, **kw).backward(torch.from_numpy(g))
    np.testing.assert_array_equal(x.grad.data, xt.grad.numpy())


def test_max_pool_window_with_several_nans_credits_the_last_as_pytorch():
    """Regression: ember credited a window's first NaN; PyTorch's CPU kernel takes every NaN it meets, so
    the last one gets the index and the gradient (found by the fractional-pooling work)."""
    a = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [1, np.nan, 2, np.nan], [np.nan, 0, 0, 0]], np.float32)[None, None]
    a = np.concatenate([a, a[..., ::-1].copy()], 1)
    for kw in (dict(kernel_size=(2, 4)), dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=2)):
        x = ember.Tensor(a, requires_grad=True)
        y, idx = F.max_pool2d(x, return_indices=True, **kw)
        y.sum().backward()
        xt = torch.from_numpy(a).requires_grad_()
        yt, it = torch.nn.functional.max_pool2d(xt, return_indices=True, **kw)
        yt.sum().backward()
        np.testing.assert_array_equal(idx.data, it.numpy())
        np.testing.assert_array_equal(x.grad.data, xt.grad.numpy())


def test_max_pool_is_stable_to_one_pixel_shift():
    """A feature that moves by one pixel inside a pooling window leaves the pooled map unchanged."""
    img = np.zeros((1, 1, 8, 8), dtype=np.float32)
    img[0, 0, 2, 4] = 1.0  # a single bright feature
    shifted = np.roll(img, 1, axis=3)  # moved one pixel right: (2, 5), same 2x2 window
    a = F.max_pool2d(ember.Tensor(img), 2).numpy()
    b = F.max_pool2d(ember.Tensor(shifted), 2).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(img, shifted)  # the raw inputs differ everywhere the feature moved
    # Without pooling the representation changes; with a shift across a window border it changes too.
    across = np.roll(img, 2, axis=3)
    assert not np.array_equal(a, F.max_pool2d(ember.Tensor(across), 2).numpy())


def test_maxout_and_channel_pool(rng):
    x = rng.standard_normal((4, 12, 5, 5)).astype(np.float32)
    xe = ember.Tensor(x, requires_grad=True)
    y = nn.MaxOut(3)(xe)
    np.testing.assert_array_equal(y.data, x.reshape(4, 4, 3, 5, 5).max(axis=2))
    y.sum().backward()
    assert np.all(xe.grad.data.reshape(4, 4, 3, 5, 5).sum(axis=2) == 1)  # one winner per group
    m = nn.ChannelPool(4, mode="mean")(ember.Tensor(x))
    np.testing.assert_allclose(m.data, x.reshape(4, 3, 4, 5, 5).mean(axis=2), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="maxout"):
        F.maxout(ember.Tensor(x), 5)
    with pytest.raises(ValueError, match="mode"):
        nn.ChannelPool(2, mode="sum")


def test_pool_errors():
    x = ember.Tensor(np.zeros((1, 1, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="max_pool2d: padding"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="avg_pool2d"):
        F.avg_pool2d(x, 5)
    with pytest.raises(ValueError, match="max_pool2d"):
        F.max_pool2d(ember.Tensor(np.zeros((4, 4), dtype=np.float32)), 2)
    with pytest.raises(TypeError, match="kernel_size"):
        F.max_pool2d(x, "2")


def test_module_reprs():
    assert repr(nn.MaxPool2d(2)) == repr(torch.nn.MaxPool2d(2))
    assert repr(nn.AvgPool2d(3, 2, 1)) == repr(torch.nn.AvgPool2d(3, 2, 1))
    assert repr(nn.AdaptiveAvgPool2d(1)) == repr(torch.nn.AdaptiveAvgPool2d(1))
    assert repr(nn.MaxUnpool2d(2)) == repr(torch.nn.MaxUnpool2d(2))
    assert repr(nn.AvgPool1d(3)) == repr(torch.nn.AvgPool1d(3))
    assert repr(nn.LPPool2d(2, 3)) == repr(torch.nn.LPPool2d(2, 3))

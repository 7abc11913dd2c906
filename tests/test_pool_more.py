"""The 1-D adaptive/Lp/unpooling pools and fractional max pooling against PyTorch.

Modules vs torch.nn (forward, indices, input gradients; float32 on realistic sizes),
unpooling round trips, fractional max pooling with the same ``_random_samples`` as
PyTorch (output, indices and gradient, float32 and float64), output_ratio vs
output_size, seeded reproducibility, tie and NaN rules, and error messages.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import ember
import ember.nn.functional as F
from ember import nn
from ember.errors import DTypeError, ShapeError
from tests.torch_compare import rel_err


def _run(em, tm, x, rng, *extra):
    """Forward (+ indices) and input gradient of ember vs torch callables on the same input."""
    xe = ember.Tensor(x.copy(), requires_grad=True)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    ye, yt = em(xe, *extra), tm(xt, *extra)
    ie = it = None
    if isinstance(yt, tuple):
        (ye, ie), (yt, it) = ye, yt
        assert ie.dtype == np.int64
        np.testing.assert_array_equal(ie.data, it.numpy())
    assert ye.shape == tuple(yt.shape) and ye.dtype == x.dtype
    g = rng.standard_normal(ye.shape).astype(x.dtype)
    ye.backward(ember.Tensor(g))
    yt.backward(torch.from_numpy(g))
    return ye.data, yt.detach().numpy(), xe.grad.data, xt.grad.numpy(), ie


# ---- the 1-D pools --------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 5, 7, 13, 40, (6,)])
def test_adaptive_pool1d_modules_vs_torch(size, rng):
    x = rng.standard_normal((8, 16, 26)).astype(np.float32)
    y, yt, g, gt, _ = _run(nn.AdaptiveAvgPool1d(size), torch.nn.AdaptiveAvgPool1d(size), x, rng)
    assert rel_err(y, yt) <= 1e-6 and rel_err(g, gt) <= 1e-6
    y, yt, g, gt, idx = _run(nn.AdaptiveMaxPool1d(size, return_indices=True),
                             torch.nn.AdaptiveMaxPool1d(size, return_indices=True), x, rng)
    np.testing.assert_array_equal(y, yt)
    np.testing.assert_allclose(g, gt, rtol=1e-6, atol=1e-6)  # (overlapping bins: float32 sums in another order)
    assert idx.min() >= 0 and idx.max() < 26


def test_pool1d_unbatched_and_with_indices_names(rng):
    x = rng.standard_normal((4, 19)).astype(np.float64)
    xe, xt = ember.Tensor(x), torch.from_numpy(x)
    for name, args in [("adaptive_max_pool1d_with_indices", (5,)), ("max_pool1d_with_indices", (3, 2, 1)),
                       ("adaptive_avg_pool1d", (6,)), ("lp_pool1d", (2, 3))]:
        got, want = getattr(F, name)(xe, *args), getattr(TF, name)(xt, *args)
        got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
        assert len(got) == len(want), name
        for a, b in zip(got, want):
            assert a.shape == tuple(b.shape), name
            np.testing.assert_allclose(a.data, b.numpy(), rtol=1e-12, atol=1e-12, err_msg=name)
    x4 = ember.Tensor(rng.standard_normal((2, 3, 9, 10)))
    for name, args in [("max_pool2d_with_indices", (3, 2, 1)), ("adaptive_max_pool2d_with_indices", ((4, 3),))]:
        (y, i), (yt, it) = getattr(F, name)(x4, *args), getattr(TF, name)(torch.from_numpy(x4.data), *args)
        np.testing.assert_array_equal(y.data, yt.numpy())
        np.testing.assert_array_equal(i.data, it.numpy())


@pytest.mark.parametrize("p,args", [(2, (3, 2)), (1, (4,)), (3.0, (2, 1)), (float("inf"), (3, 2)),
                                    (-float("inf"), (2,)), (2, (3, 2, True))])
def test_lp_pool1d_vs_torch(p, args, rng):
    x = rng.uniform(0.5, 2.0, (8, 5, 31)).astype(np.float32)
    if p in (float("inf"), -float("inf")):
        x *= rng.choice([-1.0, 1.0], x.shape).astype(np.float32)  # |x| is what these pool
    y, yt, g, gt, _ = _run(nn.LPPool1d(p, *args), torch.nn.LPPool1d(p, *args), x, rng)
    assert rel_err(y, yt) <= 1e-5 and rel_err(g, gt) <= 1e-5


def test_lp_pool2d_infinite_norm_is_max_of_abs(rng):
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    for p in (float("inf"), -float("inf")):
        y, yt, g, gt, _ = _run(nn.LPPool2d(p, 3, 2), torch.nn.LPPool2d(p, 3, 2), x, rng)
        np.testing.assert_array_equal(y, yt)
        np.testing.assert_allclose(g, gt, rtol=1e-6, atol=1e-6)  # (overlapping windows: float32 sums reordered)


@pytest.mark.parametrize("k,s,p,size", [(2, None, 0, None), (3, 2, 1, (30,)), (3, 3, 0, (31,)), (2, 2, 0, (8, 4, 30))])
def test_max_unpool1d_round_trip_vs_torch(k, s, p, size, rng):
    x = rng.standard_normal((8, 4, 30)).astype(np.float32)
    y, idx = nn.MaxPool1d(k, s, p, return_indices=True)(ember.Tensor(x))
    yt, it = torch.nn.MaxPool1d(k, s, p, return_indices=True)(torch.from_numpy(x))
    np.testing.assert_array_equal(idx.data, it.numpy())
    y2, yt2, g, gt, _ = _run(lambda v: nn.MaxUnpool1d(k, s, p)(v, idx, size),
                             lambda v: torch.nn.MaxUnpool1d(k, s, p)(v, it, size), y.data, rng)
    np.testing.assert_array_equal(y2, yt2)
    np.testing.assert_array_equal(g, gt)
    # every pooled maximum is back where it came from
    back = np.take_along_axis(x, idx.data, axis=-1)
    np.testing.assert_array_equal(back, y.data)


def test_max_unpool_output_size_is_checked_like_torch():
    y = ember.Tensor(np.ones((1, 2, 10), dtype=np.float32))
    idx = ember.Tensor(np.zeros((1, 2, 10), dtype=np.int64))
    with pytest.raises(ValueError, match=r"max_unpool1d: invalid output_size \(25,\).*between 18 and 22"):
        F.max_unpool1d(y, idx, 2, output_size=(25,))
    with pytest.raises(ValueError, match="invalid output_size"):
        TF.max_unpool1d(torch.ones(1, 2, 10), torch.zeros(1, 2, 10, dtype=torch.long), 2, output_size=(25,))
    with pytest.raises(IndexError, match="max_unpool1d: index 20 is out of range for output size 20"):
        F.max_unpool1d(y, ember.Tensor(np.full((1, 2, 10), 20)), 2)
    with pytest.raises(ShapeError, match=r"max_unpool1d: indices shape \(1, 2, 9\) does not match input shape "
                                         r"\(1, 2, 10\)"):
        F.max_unpool1d(y, ember.Tensor(np.zeros((1, 2, 9), dtype=np.int64)), 2)
    with pytest.raises(ValueError, match=r"max_unpool2d: invalid output_size \(3, 9\)"):
        F.max_unpool2d(ember.Tensor(np.ones((1, 1, 2, 2))), ember.Tensor(np.zeros((1, 1, 2, 2), dtype=np.int64)),
                       2, output_size=(3, 9))


def test_pool1d_errors_name_the_op():
    x4 = ember.Tensor(np.zeros((1, 2, 3, 4), dtype=np.float32))
    with pytest.raises(ShapeError, match=r"adaptive_avg_pool1d: expected a 2-d \(C, L\) or 3-d .* got shape"):
        F.adaptive_avg_pool1d(x4, 2)
    with pytest.raises(TypeError, match=r"adaptive_max_pool1d: output_size must be an int or a 1-tuple, got \(3, 4\)"):
        F.adaptive_max_pool1d(ember.Tensor(np.zeros((1, 2, 6), dtype=np.float32)), (3, 4))
    with pytest.raises(TypeError, match="lp_pool1d: kernel_size"):
        F.lp_pool1d(ember.Tensor(np.ones((1, 2, 6), dtype=np.float32)), 2, (2, 3))


def test_adaptive_max_pool_nan_windows_match_torch():
    """A bin holding NaNs outputs NaN and reports its last NaN, as PyTorch's adaptive kernel does."""
    nan = np.nan
    x = np.array([[[[0, 0, 0, 0], [0, 0, 0, 0], [1, nan, 2, nan], [nan, 0, 0, 0]]]])
    xe = ember.Tensor(x, requires_grad=True)
    xt = torch.from_numpy(x).requires_grad_()
    y, i = F.adaptive_max_pool2d(xe, (3, 1), return_indices=True)
    yt, it = TF.adaptive_max_pool2d(xt, (3, 1), return_indices=True)
    np.testing.assert_array_equal(y.data, yt.detach().numpy())  # (equal_nan by default)
    np.testing.assert_array_equal(i.data, it.numpy())
    y.sum().backward()
    yt.sum().backward()
    np.testing.assert_array_equal(xe.grad.data, xt.grad.numpy())


def test_module_reprs_match_torch():
    for name, args in [("AdaptiveAvgPool1d", (3,)), ("AdaptiveMaxPool1d", (3, True)), ("LPPool1d", (2, 3, 2)),
                       ("MaxUnpool1d", (3, 2, 1)), ("FractionalMaxPool2d", (3, (5, 4)))]:
        assert repr(getattr(nn, name)(*args)) == repr(getattr(torch.nn, name)(*args))


# ---- fractional max pooling -----------------------------------------------------------------------------
_FRAC = [
    ("k2", (4, 3, 32, 27), 2, dict(output_size=(22, 15))),
    ("k3_overlap", (2, 4, 25, 17), 3, dict(output_size=(11, 7))),
    ("rect_kernel", (2, 3, 20, 24), (2, 3), dict(output_size=(13, 10))),
    ("ratio", (2, 3, 20, 21), (3, 2), dict(output_ratio=(0.5, 0.7))),
    ("out1", (2, 2, 9, 9), 4, dict(output_size=1)),
    ("tight", (1, 2, 9, 8), 2, dict(output_size=(8, 7))),
    ("unbatched", (3, 15, 14), 2, dict(output_size=(9, 10))),
    ("empty_out", (2, 2, 9, 9), 2, dict(output_size=(0, 3))),
    ("empty_batch", (0, 2, 9, 9), 2, dict(output_size=(5, 4))),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,shape,k,kw", _FRAC, ids=[c[0] for c in _FRAC])
def test_fractional_max_pool2d_matches_torch_given_samples(name, shape, k, kw, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    u = rng.random((1 if len(shape) == 3 else shape[0], shape[-3], 2)).astype(dtype)
    y, yt, g, gt, idx = _run(
        lambda v: nn.FractionalMaxPool2d(k, return_indices=True, _random_samples=ember.Tensor(u), **kw)(v),
        lambda v: torch.nn.FractionalMaxPool2d(k, return_indices=True, _random_samples=torch.from_numpy(u), **kw)(v),
        x, rng)
    np.testing.assert_array_equal(y, yt)
    if dtype == np.float64:
        np.testing.assert_array_equal(g, gt)
    else:  # overlapping windows sum several gradients into one element; the order of float32 adds differs
        np.testing.assert_allclose(g, gt, rtol=1e-6, atol=1e-6)
    assert idx.shape == y.shape


def test_fractional_windows_are_computed_in_the_input_dtype(rng):
    """Long axes: float32 samples give other window starts in float32 than in float64 arithmetic,
    and ember follows PyTorch's float32 ones exactly (one window per plane, value = its position)."""
    n, m, k, planes = 1000, 333, 2, 2000
    u = rng.random((planes, 1, 2)).astype(np.float32)
    x = np.broadcast_to(np.arange(n, dtype=np.float32), (planes, 1, 1, n)).copy()
    _, idx = F.fractional_max_pool2d(ember.Tensor(x), (1, k), (1, m), return_indices=True,
                                     _random_samples=ember.Tensor(u))
    _, it = TF.fractional_max_pool2d(torch.from_numpy(x), (1, k), (1, m), return_indices=True,
                                     _random_samples=torch.from_numpy(u))
    np.testing.assert_array_equal(idx.data, it.numpy())
    _, i64 = F.fractional_max_pool2d(ember.Tensor(x.astype(np.float64)), (1, k), (1, m), return_indices=True,
                                     _random_samples=ember.Tensor(u.astype(np.float64)))
    assert (i64.data != idx.data).any()  # the dtype really matters here


def test_fractional_ties_and_nans_follow_torch():
    """Equal values: the first element of the window in row-major order wins (like max_pool2d);
    NaNs: the last NaN of the window (PyTorch's fractional kernel)."""
    u = np.full((1, 1, 2), 0.5)
    nan = np.nan
    cases = [np.zeros((1, 1, 6, 6)), np.full((1, 1, 6, 6), -np.inf),
             np.array([[[[0, 0, 0, 0], [1, 3, 0, 0], [1, nan, 2, nan], [nan, 0, 0, 0]]]])]
    for x in cases:
        for k, out in [(2, 3), (3, 2), ((2, 4), (3, 1))]:
            if x.shape[-1] < 6 and k != (2, 4):
                continue
            xe, xt = ember.Tensor(x, requires_grad=True), torch.from_numpy(x).requires_grad_()
            y, i = F.fractional_max_pool2d(xe, k, out, return_indices=True, _random_samples=ember.Tensor(u))
            yt, it = TF.fractional_max_pool2d(xt, k, out, return_indices=True, _random_samples=torch.from_numpy(u))
            np.testing.assert_array_equal(y.data, yt.detach().numpy())
            np.testing.assert_array_equal(i.data, it.numpy())
            g = np.arange(1.0, y.numel() + 1).reshape(y.shape)
            y.backward(ember.Tensor(g))
            yt.backward(torch.from_numpy(g))
            np.testing.assert_array_equal(xe.grad.data, xt.grad.numpy())
            assert np.isclose(xe.grad.data.sum(), g.sum())  # every window credits exactly one element


def test_fractional_output_ratio_equals_output_size(rng):
    x = ember.Tensor(rng.standard_normal((2, 3, 21, 19)))
    u = ember.Tensor(rng.random((2, 3, 2)))
    a = F.fractional_max_pool2d(x, 2, output_ratio=(0.5, 0.75), _random_samples=u)
    b = F.fractional_max_pool2d(x, 2, output_size=(10, 14), _random_samples=u)  # int(21*.5), int(19*.75)
    assert a.shape == (2, 3, 10, 14)
    np.testing.assert_array_equal(a.data, b.data)
    c = F.fractional_max_pool2d(x, 2, output_ratio=0.5, _random_samples=u)
    assert c.shape == (2, 3, 10, 9)


def test_fractional_unpool_round_trip_vs_torch(rng):
    x = rng.standard_normal((2, 3, 15, 13))
    u = rng.random((2, 3, 2))
    y, i = F.fractional_max_pool2d(ember.Tensor(x), 3, (9, 7), return_indices=True, _random_samples=ember.Tensor(u))
    yt, it = TF.fractional_max_pool2d(torch.from_numpy(x), 3, (9, 7), return_indices=True,
                                      _random_samples=torch.from_numpy(u))
    back = F.max_unpool2d(y, i, 7, 1)  # (9 - 1) * 1 + 7 = 15, (7 - 1) * 1 + 7 = 13
    np.testing.assert_array_equal(back.data, TF.max_unpool2d(yt, it, 7, 1).numpy())
    assert np.all((back.data == 0) | (back.data == x))


def test_fractional_generator_is_reproducible(rng):
    x = ember.Tensor(rng.standard_normal((4, 8, 31, 29)).astype(np.float32))
    a = F.fractional_max_pool2d(x, 2, (20, 19), return_indices=True, generator=ember.Generator(3))[1]
    b = F.fractional_max_pool2d(x, 2, (20, 19), return_indices=True, generator=ember.Generator(3))[1]
    c = F.fractional_max_pool2d(x, 2, (20, 19), return_indices=True, generator=ember.Generator(4))[1]
    np.testing.assert_array_equal(a.data, b.data)
    assert (a.data != c.data).any()
    ember.manual_seed(7)  # the default generator
    d = F.fractional_max_pool2d(x, 2, (20, 19), return_indices=True)[1]
    e = F.fractional_max_pool2d(x, 2, (20, 19), return_indices=True)[1]
    ember.manual_seed(7)
    np.testing.assert_array_equal(F.fractional_max_pool2d(x, 2, (20, 19), return_indices=True)[1].data, d.data)
    assert (d.data != e.data).any()  # fresh windows every call
    m1 = nn.FractionalMaxPool2d(3, output_ratio=0.6, generator=ember.Generator(9))
    m2 = nn.FractionalMaxPool2d(3, output_ratio=0.6, generator=ember.Generator(9))
    np.testing.assert_array_equal(m1(x).data, m2(x).data)



def test_fractional_windows_step_by_floor_or_ceil_of_alpha():
    """Graham's sequence: the first window at 0, the last at n - k, steps of floor or ceil of
    alpha = (n - k) / (m - 1). With x = its own flat position, each argmax is its window's
    bottom-right corner, which gives the window starts."""
    h, w, k, (oh, ow) = 31, 29, 2, (20, 11)
    x = ember.Tensor(np.arange(h * w, dtype=np.float64).reshape(1, 1, h, w).repeat(64, axis=1))
    _, idx = F.fractional_max_pool2d(x, k, (oh, ow), return_indices=True, generator=ember.Generator(1))
    rows, cols = idx.data[..., :, 0] // w - (k - 1), idx.data[..., 0, :] % w - (k - 1)
    for starts, n, m in ((rows, h, oh), (cols, w, ow)):
        alpha = (n - k) / (m - 1)
        assert (starts[..., 0] == 0).all() and (starts[..., -1] == n - k).all()
        assert set(np.unique(np.diff(starts, axis=-1))) == {int(np.floor(alpha)), int(np.ceil(alpha))}
    assert len({tuple(r) for r in rows[0]}) > 1  # planes get their own windows


def test_fractional_module_buffer_and_state_dict(rng):
    u = rng.random((2, 3, 2))
    m = nn.FractionalMaxPool2d(2, output_size=5, _random_samples=ember.Tensor(u))
    mt = torch.nn.FractionalMaxPool2d(2, output_size=5, _random_samples=torch.from_numpy(u))
    assert list(m.state_dict()) == list(mt.state_dict()) == ["_random_samples"]
    assert list(nn.FractionalMaxPool2d(2, output_size=5).state_dict()) == []
    x = rng.standard_normal((2, 3, 9, 8))
    np.testing.assert_array_equal(m(ember.Tensor(x)).data, mt(torch.from_numpy(x)).numpy())


def test_fractional_errors_name_the_op_and_both_sides():
    x = ember.Tensor(np.zeros((2, 3, 9, 9), dtype=np.float32))
    u = ember.Tensor(np.full((2, 3, 2), 0.5, dtype=np.float32))
    with pytest.raises(ValueError, match="fractional_max_pool2d requires specifying either an output_size"):
        F.fractional_max_pool2d(x, 2)
    with pytest.raises(ShapeError, match=r"fractional_max_pool2d: pool height 2 too large relative to input "
                                         r"height 9: output height 9 needs .* at least .* = 10"):
        F.fractional_max_pool2d(x, 2, output_size=9, _random_samples=u)
    with pytest.raises(ShapeError, match=r"pool width 3 too large relative to input width 9"):
        F.fractional_max_pool2d(x, (2, 3), output_size=(4, 8), _random_samples=u)
    with pytest.raises(ShapeError, match=r"_random_samples must have shape \(N >= 2, 3, 2\) for input of shape "
                                         r"\(2, 3, 9, 9\), got \(2, 4, 2\)"):
        F.fractional_max_pool2d(x, 2, output_size=4, _random_samples=ember.Tensor(np.zeros((2, 4, 2), np.float32)))
    with pytest.raises(DTypeError, match="_random_samples has dtype float64 but input has dtype float32"):
        F.fractional_max_pool2d(x, 2, output_size=4, _random_samples=ember.Tensor(np.zeros((2, 3, 2))))
    with pytest.raises(ValueError, match=r"_random_samples must lie in \[0, 1\), got values in \[0.5, 1.0\]"):
        F.fractional_max_pool2d(x, 2, output_size=4, _random_samples=ember.Tensor(
            np.array([[[0.5, 1.0]] * 3] * 2, dtype=np.float32)))
    with pytest.raises(ValueError, match="fractional_max_pool2d: kernel_size must be >= 1"):
        F.fractional_max_pool2d(x, 0, output_size=4)
    with pytest.raises(TypeError, match="fractional_max_pool2d: expected a floating point input"):
        F.fractional_max_pool2d(ember.Tensor(np.zeros((1, 1, 5, 5), dtype=np.int64)), 2, output_size=2)
    with pytest.raises(ValueError, match=r"FractionalMaxPool2d: output_ratio must be between 0 and 1 \(got 1.0\)"):
        nn.FractionalMaxPool2d(2, output_ratio=1.0)
    with pytest.raises(ValueError, match=r"only one of output_size \(3\) and output_ratio \(0.5\)"):
        nn.FractionalMaxPool2d(2, output_size=3, output_ratio=0.5)
    with pytest.raises(ValueError, match="FractionalMaxPool2d requires specifying either"):
        nn.FractionalMaxPool2d(2)
    # PyTorch refuses the same inputs
    with pytest.raises(RuntimeError, match="too large"):
        TF.fractional_max_pool2d(torch.zeros(2, 3, 9, 9), 2, output_size=9)
    with pytest.raises(RuntimeError, match="same dtype"):
        TF.fractional_max_pool2d(torch.zeros(2, 3, 9, 9), 2, output_size=4, _random_samples=torch.zeros(2, 3, 2).double())


def test_adaptive_max_pool_bins_with_more_than_255_elements(rng):
    """17 x 17 bins: the winner's candidate number no longer fits a byte."""
    x = rng.standard_normal((2, 3, 50, 50)).astype(np.float32)
    y, yt, g, gt, _ = _run(lambda v: F.adaptive_max_pool2d(v, 3, return_indices=True),
                           lambda v: TF.adaptive_max_pool2d(v, 3, return_indices=True), x, rng)
    np.testing.assert_array_equal(y, yt)
    np.testing.assert_array_equal(g, gt)

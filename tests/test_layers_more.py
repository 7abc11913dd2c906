"""The layers of ember/ops/activation_more.py, ember/nn/padding.py, ChannelShuffle and RMSNorm against torch.nn:
modules in float32 (forward and gradients), reprs and attributes, RMSNorm's state dict and eps default,
rrelu's random training mode (slopes, gradient, generator, distribution), and errors.
The functions themselves are rows of the op table (tests/opdb_more.py)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import ember
import ember.nn as nn
import ember.nn.functional as F
from ember.diagnostics.gradcheck import gradcheck
from ember.errors import DTypeError, ShapeError
from tests.torch_compare import rel_err


def _both(em, tm, x, *, fwd=1e-6, grad=1e-6, params=()):
    """Run an ember and a torch module on float32 ``x`` with one random upstream gradient; compare
    the outputs, the input gradients and the gradients of the named parameters."""
    xe = ember.Tensor(x.astype(np.float32), requires_grad=True)
    xt = torch.tensor(x.astype(np.float32), requires_grad=True)
    ye, yt = em(xe), tm(xt)
    assert ye.shape == tuple(yt.shape) and ye.dtype == np.float32
    assert rel_err(ye.data, yt.detach().numpy()) <= fwd
    g = np.random.default_rng(7).standard_normal(ye.shape).astype(np.float32)
    ye.backward(ember.Tensor(g))
    yt.backward(torch.from_numpy(g))
    assert rel_err(xe.grad.data, xt.grad.numpy()) <= grad
    for name in params:
        assert rel_err(getattr(em, name).grad.data, getattr(tm, name).grad.numpy()) <= grad, name


def _away(rng, shape, kinks, gap=0.05):
    x = rng.uniform(-3, 3, shape)
    for k in kinks:
        x = np.where(np.abs(x - k) < gap, k + 2 * gap, x)
    return x


# ---- activations as modules ------------------------------------------------------------------------
@pytest.mark.parametrize("make,kinks", [
    (lambda m: m.Threshold(0.1, 20.0), (0.1,)),
    (lambda m: m.Threshold(-1.0, 0.5), (-1.0,)),
    (lambda m: m.Hardshrink(), (-0.5, 0.5)),
    (lambda m: m.Hardshrink(1.5), (-1.5, 1.5)),
    (lambda m: m.Softshrink(), (-0.5, 0.5)),
    (lambda m: m.Softshrink(0.25), (-0.25, 0.25)),
    (lambda m: m.Tanhshrink(), ()),
    (lambda m: m.GLU(), ()),
    (lambda m: m.GLU(1), ()),
    (lambda m: m.Softmin(1), ()),
    (lambda m: m.Softmin(-1), ()),
    (lambda m: m.Softmax2d(), ()),
    (lambda m: m.RReLU(0.1, 0.3), (0.0,)),
    (lambda m: m.ChannelShuffle(2), ()),
])
def test_activation_modules_match_torch(make, kinks, rng):
    em, tm = make(nn), make(torch.nn)
    em.eval(), tm.eval()  # RReLU: the mean slope
    assert repr(em) == repr(tm)
    _both(em, tm, _away(rng, (3, 4, 2, 6), kinks))


def test_reprs_match_torch():
    for make in [lambda m: m.RReLU(), lambda m: m.RReLU(0.2, 0.4, True), lambda m: m.Softmin(),
                 lambda m: m.Tanhshrink(), lambda m: m.Threshold(0.5, -2), lambda m: m.Threshold(0.5, -2, inplace=True),
                 lambda m: m.GLU(dim=-2),
                 lambda m: m.ChannelShuffle(groups=3), lambda m: m.RMSNorm(4),
                 lambda m: m.RMSNorm([2, 3], eps=1e-6, elementwise_affine=False)]:
        assert repr(make(nn)) == repr(make(torch.nn))


def test_softmin_implicit_dim_and_dtype(rng):
    """dim=None takes PyTorch's legacy choice (1 for 2- and 4-d input, 0 for 3-d); dtype converts first."""
    for shape in [(3, 4), (2, 3, 4), (2, 3, 2, 2), (5,)]:
        x = rng.standard_normal(shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's "implicit dimension choice" warning
            want = torch.nn.Softmin()(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(nn.Softmin()(ember.Tensor(x)).data, want, rtol=1e-12)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    y = F.softmin(ember.Tensor(x), 1, dtype=np.float64)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y.data, torch.nn.functional.softmin(torch.from_numpy(x), 1, dtype=torch.float64).numpy(), rtol=1e-12)


def test_threshold_int_and_nan_pass_through_like_torch():
    xi = np.arange(-3, 4)
    y = F.threshold(ember.Tensor(xi), 0.5, 7.5)
    assert y.dtype == xi.dtype
    np.testing.assert_array_equal(y.data, torch.nn.functional.threshold(torch.from_numpy(xi), 0.5, 7.5).numpy())
    x = np.array([np.nan, -1.0, 0.3, 2.0], dtype=np.float32)
    for fn, tfn in [(lambda t: F.threshold(t, 0.0, 5.0), lambda t: torch.nn.functional.threshold(t, 0.0, 5.0)),
                    (F.hardshrink, torch.nn.functional.hardshrink), (F.softshrink, torch.nn.functional.softshrink),
                    (lambda t: F.hardshrink(t, -0.5), lambda t: torch.nn.functional.hardshrink(t, -0.5))]:
        np.testing.assert_array_equal(fn(ember.Tensor(x)).data, tfn(torch.from_numpy(x)).numpy())


# ---- rrelu ------------------------------------------------------------------------------------------
def test_rrelu_eval_is_leaky_relu_with_mean_slope(rng):
    x = ember.Tensor(rng.standard_normal((4, 5)))
    np.testing.assert_array_equal(F.rrelu(x, 0.1, 0.3).data, F.leaky_relu(x, 0.2).data)  # training=False default
    m = nn.RReLU(0.1, 0.3).eval()
    np.testing.assert_array_equal(m(x).data, F.leaky_relu(x, 0.2).data)


def test_rrelu_training_slopes_and_gradient(rng):
    lower, upper = 0.1, 0.3
    x = ember.Tensor(rng.standard_normal((50, 40)), requires_grad=True)
    m = nn.RReLU(lower, upper)
    assert m.training
    y = m(x)
    neg = x.data <= 0
    np.testing.assert_array_equal(y.data[~neg], x.data[~neg])  # x > 0 passes unchanged
    slope = y.data[neg] / x.data[neg]
    assert slope.min() >= lower and slope.max() < upper
    assert len(np.unique(slope)) > 0.99 * slope.size  # one draw per element, not one per tensor
    y.backward(ember.ones(*y.shape, dtype=np.float64))
    np.testing.assert_allclose(x.grad.data[neg], slope, rtol=1e-12)  # the gradient uses the drawn slope
    np.testing.assert_array_equal(x.grad.data[~neg], 1.0)
    m.eval()
    np.testing.assert_array_equal(m(x).data, F.leaky_relu(x, 0.2).data)


def test_rrelu_slopes_are_uniform():
    """Slopes of 200k negative inputs: mean, variance and the Kolmogorov-Smirnov distance to U(lower, upper)."""
    lower, upper = 1 / 8, 1 / 3
    x = ember.Tensor(-np.ones(200_000, dtype=np.float32))
    s = np.sort(-F.rrelu(x, lower, upper, training=True, generator=ember.Generator(3)).data.astype(np.float64))
    n = s.size
    assert abs(s.mean() - (lower + upper) / 2) < 4 * (upper - lower) / np.sqrt(12 * n)
    assert abs(s.var() / ((upper - lower) ** 2 / 12) - 1) < 0.02
    cdf = (s - lower) / (upper - lower)
    ks = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    assert ks < 1.63 / np.sqrt(n)  # the 1% critical value
    # and PyTorch's slopes have the same law (two-sample comparison of the means)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        t = -torch.nn.functional.rrelu(torch.from_numpy(x.data), lower, upper, training=True).numpy().astype(float)
    assert abs(t.mean() - s.mean()) < 6 * (upper - lower) / np.sqrt(12 * n)


def test_rrelu_generator_reproducible_and_independent(rng):
    x = ember.Tensor(-rng.uniform(0.1, 1, (6, 7)).astype(np.float32))
    a = F.rrelu(x, training=True, generator=ember.Generator(5)).data
    b = nn.RReLU(generator=ember.Generator(5))(x).data
    np.testing.assert_array_equal(a, b)
    c = F.rrelu(x, training=True, generator=ember.Generator(6)).data
    assert not np.array_equal(a, c)
    ember.manual_seed(1)
    d = F.rrelu(x, training=True).data
    ember.manual_seed(1)
    np.testing.assert_array_equal(F.rrelu(x, training=True).data, d)
    assert F.rrelu(ember.Tensor(-np.ones(3)), training=True).dtype == np.float64  # draws in the input's dtype


def test_rrelu_training_gradcheck(rng):
    x = ember.Tensor(_away(rng, (3, 5), (0.0,), 0.1), requires_grad=True)
    # a fresh generator with the same seed per call: the same slopes for every finite difference
    assert gradcheck(lambda t: F.rrelu(t, 0.1, 0.4, training=True, generator=ember.Generator(0)), [x])


# ---- padding layers ----------------------------------------------------------------------------------
PADS = ["ZeroPad1d", "ZeroPad2d", "ZeroPad3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d", "ReflectionPad1d",
        "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d", "ReplicationPad2d", "ReplicationPad3d",
        "CircularPad1d", "CircularPad2d", "CircularPad3d"]


@pytest.mark.parametrize("name", PADS)
def test_padding_layers_match_torch(name, rng):
    d = int(name[-2])
    args = (1.5,) if name.startswith("Constant") else ()
    widths = tuple(int(v) for v in rng.integers(0, 3, 2 * d))
    for padding in (2, widths, list(widths)):
        em, tm = getattr(nn, name)(padding, *args), getattr(torch.nn, name)(padding, *args)
        assert em.padding == tuple(tm.padding) and isinstance(em.padding, tuple)
        assert repr(em) == repr(tm)
        for batch in ((2, 3), (3,)):
            _both(em, tm, rng.standard_normal(batch + (4, 5, 3)[:d]))


@pytest.mark.parametrize("mode", ["Reflection", "Replication", "Circular"])
def test_negative_padding_crops_like_torch(mode):
    x = np.arange(4.0).reshape(1, 4)
    for widths in [(-1, 3), (3, -1), (-2, 2), (2, -1), (-1, 1)]:
        em, tm = getattr(nn, mode + "Pad1d")(widths), getattr(torch.nn, mode + "Pad1d")(widths)
        np.testing.assert_array_equal(em(ember.Tensor(x)).data, tm(torch.from_numpy(x)).numpy(), err_msg=str(widths))


def test_padding_errors():
    with pytest.raises(ValueError, match=r"ZeroPad2d: padding must have 4 entries.*\(1, 2, 3\)"):
        nn.ZeroPad2d((1, 2, 3))
    with pytest.raises(TypeError, match="ReflectionPad1d: padding must be an int or a tuple of 2 ints"):
        nn.ReflectionPad1d(1.5)
    with pytest.raises(ShapeError, match=r"ReflectionPad2d: expected a 3-d .* or 4-d .* got shape \(3, 4\)"):
        nn.ReflectionPad2d(1)(ember.zeros(3, 4))
    with pytest.raises(ShapeError, match=r"CircularPad1d: expected a 2-d .* got shape \(1, 1, 3, 4\)"):
        nn.CircularPad1d(1)(ember.zeros(1, 1, 3, 4))
    with pytest.raises(ShapeError, match="reflect padding .* must be smaller than the padded dim"):
        nn.ReflectionPad1d(4)(ember.zeros(1, 4))
    with pytest.raises(ShapeError, match="ZeroPad2d: expected an input with at least 2 dims"):
        nn.ZeroPad2d(1)(ember.zeros(4))


# ---- channel shuffle -----------------------------------------------------------------------------------
def test_channel_shuffle_permutation_and_inverse(rng):
    x = ember.Tensor(np.arange(6.0).reshape(1, 6, 1, 1))
    np.testing.assert_array_equal(F.channel_shuffle(x, 2).data.ravel(), [0, 3, 1, 4, 2, 5])
    y = ember.Tensor(rng.standard_normal((2, 12, 3, 2)))
    back = F.channel_shuffle(F.channel_shuffle(y, 3), 4)  # groups g then C / g: the identity
    np.testing.assert_array_equal(back.data, y.data)
    xi = np.arange(12).reshape(1, 6, 2)
    np.testing.assert_array_equal(F.channel_shuffle(ember.Tensor(xi), 3).data,
                                  torch.nn.functional.channel_shuffle(torch.from_numpy(xi), 3).numpy())


def test_channel_shuffle_errors():
    x = ember.zeros(1, 6, 2, 2)
    with pytest.raises(ShapeError, match=r"channel_shuffle: channels 6 must be divisible by groups 4 \(input"):
        F.channel_shuffle(x, 4)
    with pytest.raises(ValueError, match="channel_shuffle: groups must be positive, got 0"):
        F.channel_shuffle(x, 0)
    with pytest.raises(ShapeError, match=r"channel_shuffle: expected an input with more than 2 dims .* \(1, 6\)"):
        F.channel_shuffle(ember.zeros(1, 6), 2)
    with pytest.raises(ValueError, match="ChannelShuffle: groups must be a positive int, got -2"):
        nn.ChannelShuffle(-2)


# ---- RMSNorm -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,normalized", [((8, 16), 16), ((4, 5, 6, 7), (6, 7)), ((3, 33), [33])])
def test_rmsnorm_matches_torch(shape, normalized, rng):
    em, tm = nn.RMSNorm(normalized), torch.nn.RMSNorm(normalized)
    assert list(em.state_dict()) == list(tm.state_dict()) == ["weight"]
    np.testing.assert_array_equal(em.weight.data, tm.weight.detach().numpy())  # ones
    w = rng.uniform(0.5, 1.5, em.weight.shape).astype(np.float32)
    tm.weight.data.copy_(torch.from_numpy(w))
    em.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    _both(em, tm, rng.standard_normal(shape) * 3 + 0.5, fwd=1e-6, grad=1e-5, params=("weight",))


def test_rmsnorm_without_affine_and_eps(rng):
    em, tm = nn.RMSNorm(4, eps=1e-3, elementwise_affine=False), torch.nn.RMSNorm(4, eps=1e-3, elementwise_affine=False)
    assert em.weight is None and list(em.state_dict()) == [] == list(tm.state_dict())
    assert list(em.parameters()) == []
    _both(em, tm, rng.standard_normal((3, 4)) * 0.05)  # small values: eps matters


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rmsnorm_default_eps_is_dtype_eps(dtype):
    """eps=None is finfo(dtype).eps, visible where mean(x**2) is of that size."""
    x = np.array([[1e-4, 2e-4, -1e-4, 3e-4]], dtype=dtype) * (1e-5 if dtype == np.float64 else 1)
    y = F.rms_norm(ember.Tensor(x), [4]).data
    want = x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + np.finfo(dtype).eps)
    np.testing.assert_allclose(y, want, rtol=1e-5)
    np.testing.assert_allclose(y, torch.nn.functional.rms_norm(torch.from_numpy(x), [4]).numpy(), rtol=1e-5)
    assert abs(y).max() < 0.9  # eps dominates (without it the largest entry would be ~1.5)


def test_rmsnorm_dtypes_and_zero_input(rng):
    m = nn.RMSNorm(4, dtype=np.float64)
    assert m.weight.dtype == np.float64
    w = ember.Tensor(rng.uniform(0.5, 1.5, 4).astype(np.float32), requires_grad=True)  # weight in another dtype
    x = ember.Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    y = F.rms_norm(x, (4,), w)
    assert y.dtype == np.float64  # the input's dtype, as PyTorch
    y.sum().backward()
    assert w.grad.dtype == np.float32 and x.grad.dtype == np.float64
    tw, tx = torch.tensor(w.data, requires_grad=True), torch.tensor(x.data, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: "cannot dispatch to fused implementation"
        torch.nn.functional.rms_norm(tx, [4], tw).sum().backward()
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(w.grad.data, tw.grad.numpy(), rtol=1e-6)
    z = ember.zeros(2, 4, requires_grad=True)  # all zeros: finite, gradient 1 / sqrt(eps) as in torch
    F.rms_norm(z, [4]).sum().backward()
    np.testing.assert_allclose(z.grad.data, 1 / np.sqrt(np.finfo(np.float32).eps), rtol=1e-6)


def test_rmsnorm_errors():
    x = ember.zeros(2, 3, 4)
    with pytest.raises(ShapeError, match=r"rms_norm: input shape \(2, 3, 4\) does not end with normalized_shape \(3,\)"):
        F.rms_norm(x, (3,))
    with pytest.raises(ShapeError, match=r"rms_norm: weight has shape \(3,\) but normalized_shape is \(4,\)"):
        F.rms_norm(x, (4,), ember.ones(3))
    with pytest.raises(ShapeError, match="rms_norm: normalized_shape must have at least one dim"):
        F.rms_norm(x, ())
    with pytest.raises(DTypeError, match="rms_norm: input must be floating point, got int64"):
        F.rms_norm(ember.Tensor(np.arange(4)), (4,))
    with pytest.raises(ShapeError, match="does not end with normalized_shape"):
        nn.RMSNorm(4)(ember.zeros(2, 3))
    with pytest.raises(ValueError, match="RMSNorm: normalized_shape must not be negative"):
        nn.RMSNorm(-1)


# ---- activation errors ---------------------------------------------------------------------------------
def test_activation_errors():
    with pytest.raises(ShapeError, match=r"glu: dim 1 must have an even size to be halved, got size 3 \(input"):
        F.glu(ember.zeros(2, 3), 1)
    with pytest.raises(ShapeError, match="glu: a 0-d input cannot be halved"):
        F.glu(ember.tensor(1.0))
    with pytest.raises(IndexError, match="glu: dim 2 is out of range"):
        F.glu(ember.zeros(2, 4), 2)
    with pytest.raises(ValueError, match="softshrink: lambd must be non-negative, got -0.5"):
        F.softshrink(ember.zeros(3), -0.5)
    with pytest.raises(ValueError, match=r"rrelu: lower bound \(0.5\) must be less than or equal to the upper"):
        F.rrelu(ember.zeros(3), 0.5, 0.1, training=True)
    with pytest.raises(ValueError, match="rrelu: lower bound"):
        nn.RReLU(0.5, 0.1).eval()(ember.zeros(3))
    with pytest.raises(ShapeError, match=r"Softmax2d: expected a 3-d .* got shape \(2, 3\)"):
        nn.Softmax2d()(ember.zeros(2, 3))
    for fn in (F.hardshrink, F.softshrink, F.tanhshrink, F.glu, F.rrelu, F.softmin):
        with pytest.raises(DTypeError, match=f"{fn.__name__}: input must be floating point"):
            fn(ember.Tensor(np.arange(4)))

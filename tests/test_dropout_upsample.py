"""Dropout (statistics, generators, eval identity) and resizing layers against PyTorch in float32."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ember
import ember.nn.functional as F
from ember import nn
from tests.torch_compare import rel_err


# ---- dropout ------------------------------------------------------------------------------------------
def test_dropout_is_inverted_and_backward_uses_the_mask():
    x = ember.Tensor(np.ones((200, 500), dtype=np.float32), requires_grad=True)
    y = F.dropout(x, 0.2, generator=ember.Generator(3))
    vals = np.unique(y.data)
    np.testing.assert_allclose(vals, [0.0, 1.25], rtol=1e-6)
    assert abs((y.data == 0).mean() - 0.2) < 0.01  # 100k draws: the drop rate is p within 1%
    assert abs(y.data.mean() - 1.0) < 0.02  # expectation preserved
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, y.data)  # d(sum)/dx is the scaled mask itself


def test_dropout_generator_reproducible_and_independent_of_default():
    x = ember.Tensor(np.ones((64, 64), dtype=np.float32))
    a = F.dropout(x, 0.5, generator=ember.Generator(7)).numpy()
    ember.manual_seed(123)
    b = F.dropout(x, 0.5, generator=ember.Generator(7)).numpy()
    np.testing.assert_array_equal(a, b)
    ember.manual_seed(0)
    c = F.dropout(x, 0.5).numpy()
    ember.manual_seed(0)
    np.testing.assert_array_equal(c, F.dropout(x, 0.5).numpy())
    assert not np.array_equal(a, c)


def test_dropout_eval_identity_and_edge_probabilities():
    x = ember.Tensor(np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32))
    layer = nn.Dropout(0.5)
    layer.eval()
    assert layer(x) is x
    assert F.dropout(x, 0.0) is x
    assert np.all(F.dropout(x, 1.0).numpy() == 0)
    for p in (-0.1, 1.5, "0.5"):
        with pytest.raises(ValueError, match="between 0 and 1"):
            F.dropout(x, p)
        with pytest.raises(ValueError, match="between 0 and 1"):
            nn.Dropout(p)
    assert repr(nn.Dropout(0.3)) == repr(torch.nn.Dropout(0.3))
    assert repr(nn.Dropout2d()) == repr(torch.nn.Dropout2d())


def test_dropout2d_drops_whole_channels():
    x = ember.Tensor(np.ones((16, 32, 5, 5), dtype=np.float32), requires_grad=True)
    y = nn.Dropout2d(0.5, generator=ember.Generator(1))(x)
    planes = y.data.reshape(16, 32, 25)
    assert np.all(planes.min(axis=2) == planes.max(axis=2))  # each plane all kept or all dropped
    assert set(np.unique(planes)) == {0.0, 2.0}
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, y.data)
    with pytest.raises(ValueError, match="dropout2d"):
        F.dropout2d(ember.Tensor(np.ones((4, 4), dtype=np.float32)))


# ---- resizing -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [
    dict(scale_factor=2, mode="nearest"), dict(size=(45, 37), mode="nearest"), dict(size=(11, 13), mode="nearest"),
    dict(scale_factor=2, mode="bilinear", align_corners=False), dict(scale_factor=2, mode="bilinear", align_corners=True),
    dict(size=(45, 37), mode="bilinear"), dict(size=(11, 13), mode="bilinear", align_corners=True),
    dict(scale_factor=(1.3, 0.7), mode="bilinear"), dict(scale_factor=1.7, mode="nearest", recompute_scale_factor=True),
])
def test_upsample_vs_torch(kw, rng):
    x = rng.standard_normal((8, 6, 24, 20)).astype(np.float32)
    em, tm = nn.Upsample(**kw), torch.nn.Upsample(**kw)
    assert repr(em) == repr(tm)
    xe = ember.Tensor(x.copy(), requires_grad=True)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    ye, yt = em(xe), tm(xt)
    assert ye.shape == tuple(yt.shape) and ye.dtype == np.float32
    assert rel_err(ye.data, yt.detach().numpy()) <= 1e-4
    g = rng.standard_normal(ye.shape).astype(np.float32)
    ye.backward(ember.Tensor(g))
    yt.backward(torch.from_numpy(g))
    assert rel_err(xe.grad.data, xt.grad.numpy()) <= 1e-3


def test_pixel_shuffle_layers_round_trip(rng):
    x = rng.standard_normal((4, 18, 5, 7)).astype(np.float32)
    y = nn.PixelShuffle(3)(ember.Tensor(x))
    np.testing.assert_array_equal(y.numpy(), torch.nn.PixelShuffle(3)(torch.from_numpy(x)).numpy())
    np.testing.assert_array_equal(nn.PixelUnshuffle(3)(y).numpy(), x)
    with pytest.raises(ValueError, match="pixel_shuffle"):
        F.pixel_shuffle(ember.Tensor(x), 4)


def test_interpolate_errors():
    x = ember.Tensor(np.zeros((1, 1, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="exactly one"):
        F.interpolate(x)
    with pytest.raises(ValueError, match="mode 'trilinear'"):
        F.interpolate(x, scale_factor=2, mode="trilinear")
    with pytest.raises(ValueError, match="align_corners"):
        F.interpolate(x, scale_factor=2, align_corners=True)
    with pytest.raises(ValueError, match="size"):
        F.interpolate(x, size=(2, 2, 2))

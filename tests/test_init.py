"""ember.nn.init: statistics and bounds against PyTorch's formulas, generators, versions, errors."""
import math

import numpy as np
import pytest
import torch

import ember
import ember.nn as nn
from ember.nn import init


def _w(*shape, dtype=np.float32):
    return nn.Parameter(np.zeros(shape, dtype=dtype))


def test_calculate_gain_matches_torch():
    for name in ["linear", "conv2d", "sigmoid", "tanh", "relu", "selu"]:
        assert init.calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))
    for p in [None, 0.2, math.sqrt(5)]:
        assert init.calculate_gain("leaky_relu", p) == pytest.approx(torch.nn.init.calculate_gain("leaky_relu", p))
    with pytest.raises(ValueError, match="unsupported"):
        init.calculate_gain("swish")


@pytest.mark.parametrize("shape", [(8, 3), (16, 3, 5, 5), (4, 6, 3)])
def test_fans_match_torch(shape):
    assert init._calculate_fan_in_and_fan_out(ember.zeros(*shape)) == \
        torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(shape))
    with pytest.raises(ValueError, match="fewer than 2"):
        init._calculate_fan_in_and_fan_out(ember.zeros(5))


def test_uniform_and_normal_statistics():
    w = _w(200, 300)
    init.uniform_(w, -2.0, 3.0)
    a = w.detach().numpy()
    assert a.min() >= -2.0 and a.max() < 3.0
    assert a.mean() == pytest.approx(0.5, abs=0.02) and a.std() == pytest.approx(5 / math.sqrt(12), rel=0.01)
    init.normal_(w, 1.0, 0.5)
    a = w.detach().numpy()
    assert a.mean() == pytest.approx(1.0, abs=0.005) and a.std() == pytest.approx(0.5, rel=0.01)


def test_trunc_normal_bounds_and_std():
    w = _w(300, 300)
    init.trunc_normal_(w, mean=0.0, std=1.0, a=-1.0, b=2.0)
    a = w.detach().numpy()
    assert a.min() >= -1.0 and a.max() <= 2.0
    ref = torch.nn.init.trunc_normal_(torch.zeros(300, 300), 0.0, 1.0, -1.0, 2.0).numpy()
    assert a.mean() == pytest.approx(ref.mean(), abs=0.01) and a.std() == pytest.approx(ref.std(), rel=0.01)


def test_constant_zeros_ones():
    w = _w(3, 4)
    assert np.all(init.ones_(w).detach().numpy() == 1)
    assert np.all(init.zeros_(w).detach().numpy() == 0)
    assert np.all(init.constant_(w, 0.3).detach().numpy() == np.float32(0.3))


@pytest.mark.parametrize("shape", [(256, 128), (64, 32, 3, 3)])
def test_xavier_and_kaiming_statistics(shape):
    fan_in, fan_out = init._calculate_fan_in_and_fan_out(ember.zeros(*shape))
    w = _w(*shape)
    a = init.xavier_uniform_(w, gain=2.0).detach().numpy()
    bound = 2.0 * math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(a).max() <= bound and np.abs(a).max() > 0.95 * bound
    assert a.std() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    a = init.xavier_normal_(w).detach().numpy()
    assert a.std() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.03)
    a = init.kaiming_uniform_(w, a=0.1, nonlinearity="leaky_relu").detach().numpy()
    bound = math.sqrt(2 / (1 + 0.01)) * math.sqrt(3 / fan_in)
    assert np.abs(a).max() <= bound and np.abs(a).max() > 0.95 * bound
    a = init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu").detach().numpy()
    assert a.std() == pytest.approx(math.sqrt(2) / math.sqrt(fan_out), rel=0.03)
    assert abs(a.mean()) < 0.01
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal_(w, mode="fan_avg")


@pytest.mark.parametrize("shape", [(10, 20), (8, 4, 3, 3), (6, 5, 7)])
def test_default_init_matches_torch_bounds(shape):
    w, b = _w(*shape), _w(shape[0])
    init.default_init_(w, b)
    fan_in = int(np.prod(shape[1:]))
    bound = 1 / math.sqrt(fan_in)
    tw = torch.empty(shape)
    torch.nn.init.kaiming_uniform_(tw, a=math.sqrt(5))
    assert np.abs(w.detach().numpy()).max() <= bound + 1e-7
    assert tw.abs().max().item() <= bound + 1e-7
    assert np.abs(b.detach().numpy()).max() <= bound


def test_generator_reproducible_and_default_generator():
    w1, w2 = _w(5, 5), _w(5, 5)
    init.normal_(w1, generator=ember.Generator(7))
    init.normal_(w2, generator=ember.Generator(7))
    np.testing.assert_array_equal(w1.detach().numpy(), w2.detach().numpy())
    ember.manual_seed(3)
    init.kaiming_uniform_(w1)
    ember.manual_seed(3)
    init.kaiming_uniform_(w2)
    np.testing.assert_array_equal(w1.detach().numpy(), w2.detach().numpy())
    init.kaiming_uniform_(w2)
    assert not np.array_equal(w1.detach().numpy(), w2.detach().numpy())
    with pytest.raises(TypeError, match="generator"):
        init.normal_(w1, generator=np.random.default_rng(0))


def test_in_place_under_grad_mode_bumps_version_and_keeps_dtype():
    w = _w(4, 3, dtype=np.float64)
    arr, v = w.data, w._version
    init.xavier_uniform_(w)  # a leaf requiring grad may be initialized without no_grad
    assert w.data is arr and w._version == v + 1 and w.dtype == np.float64
    assert w.grad_fn is None and w.requires_grad
    t = ember.zeros(0, 3)
    assert init.kaiming_uniform_(t) is t  # zero-element tensors are a no-op


def test_tensor_methods_delegate():
    t = ember.zeros(100, 100)
    t.uniform_(-1, 1)
    assert -1 <= t.numpy().min() and t.numpy().max() < 1
    t.normal_(0, 2)
    assert t.numpy().std() == pytest.approx(2, rel=0.03)

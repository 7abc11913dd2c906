"""Normalization layers against PyTorch: float32 forward/gradients, running statistics, errors, state dicts."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ember
from ember.backend import xp_of
import ember.nn.functional as F
from ember import nn
from tests.torch_compare import rel_err


def _randomize(em, tm, rng):
    """Give both modules the same non-trivial affine parameters."""
    for name in ("weight", "bias"):
        p = getattr(em, name, None)
        if p is not None:
            v = rng.uniform(0.5, 1.5, p.shape).astype(np.float32)
            p.data[...] = v
            getattr(tm, name).data.copy_(torch.from_numpy(v))


def _channels_last(a):
    """The same values with the channel axis (1) moved last in memory (what convolutions return)."""
    perm = (0,) + tuple(range(2, a.ndim)) + (1,)
    return np.ascontiguousarray(a.transpose(perm)).transpose(np.argsort(perm))


def _step(em, tm, x, rng, fwd=1e-4, grad=1e-3, layout=(False, False)):
    """One forward/backward of both modules; compares output, input gradient and parameter gradients.
    ``layout`` says whether ember's input and upstream gradient lie channels-last in memory."""
    xe = ember.Tensor(_channels_last(x) if layout[0] else x.copy(), requires_grad=True)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    ye, yt = em(xe), tm(xt)
    assert ye.shape == tuple(yt.shape) and ye.dtype == np.float32
    assert rel_err(ye.data, yt.detach().numpy()) <= fwd
    g = rng.standard_normal(ye.shape).astype(np.float32)
    ye.backward(ember.Tensor(_channels_last(g) if layout[1] else g))
    yt.backward(torch.from_numpy(g))
    assert rel_err(xe.grad.data, xt.grad.numpy()) <= grad
    for name in ("weight", "bias"):
        p = getattr(em, name, None)
        if p is not None:
            assert rel_err(p.grad.data, getattr(tm, name).grad.numpy()) <= grad, name
            p.grad = None
            getattr(tm, name).grad = None


@pytest.mark.parametrize("shape", [(128, 16, 32, 32), (128, 64, 8, 8), (3, 5, 7, 9)])
def test_batchnorm2d_train_eval_vs_torch(shape, rng):
    c = shape[1]
    em, tm = nn.BatchNorm2d(c), torch.nn.BatchNorm2d(c)
    _randomize(em, tm, rng)
    for _ in range(3):  # running stats over several steps
        x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
        _step(em, tm, x, rng)
    assert rel_err(em.running_mean.data, tm.running_mean.numpy()) <= 1e-4
    assert rel_err(em.running_var.data, tm.running_var.numpy()) <= 1e-4
    assert int(em.num_batches_tracked.data) == int(tm.num_batches_tracked) == 3
    em.eval()
    tm.eval()
    _step(em, tm, (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32), rng)
    assert int(em.num_batches_tracked.data) == 3  # eval does not count batches


@pytest.mark.parametrize("layout", [(True, True), (True, False), (False, True)], ids=["cl_cl", "cl_nchw", "nchw_cl"])
@pytest.mark.parametrize("make,shape", [(nn.BatchNorm2d, (64, 16, 16, 16)), (nn.BatchNorm2d, (3, 5, 7, 9)),
                                        (nn.BatchNorm1d, (6, 24, 10))], ids=["2d_16ch", "2d_odd", "1d"])
def test_batchnorm_channels_last_memory_vs_torch(make, shape, layout, rng):
    """Channels-last inputs run on tiled channel rows (norm._ChannelRows): same values, gradients and
    running statistics as PyTorch, in training and in eval, whatever the upstream gradient's layout."""
    c = shape[1]
    em, tm = make(c), getattr(torch.nn, make.__name__)(c)
    _randomize(em, tm, rng)
    for _ in range(2):
        _step(em, tm, (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32), rng, layout=layout)
    assert rel_err(em.running_mean.data, tm.running_mean.numpy()) <= 1e-4
    assert rel_err(em.running_var.data, tm.running_var.numpy()) <= 1e-4
    em.eval()
    tm.eval()
    _step(em, tm, (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32), rng, layout=layout)
    y = em(ember.Tensor(_channels_last(rng.standard_normal(shape).astype(np.float32))))
    if xp_of(y.data) is np:  # on the CPU the output stays channels-last (the GPU kernel writes NCHW)
        assert _channels_last(y.data).strides == y.data.strides


@pytest.mark.parametrize("kw", [dict(momentum=None), dict(affine=False), dict(track_running_stats=False),
                                dict(momentum=0.3, eps=1e-3)])
def test_batchnorm1d_options_vs_torch(kw, rng):
    for shape in [(32, 10), (16, 10, 7)]:
        em, tm = nn.BatchNorm1d(10, **kw), torch.nn.BatchNorm1d(10, **kw)
        _randomize(em, tm, rng)
        for _ in range(4):
            _step(em, tm, rng.standard_normal(shape).astype(np.float32) + 1, rng)
        em.eval()
        tm.eval()
        _step(em, tm, rng.standard_normal(shape).astype(np.float32), rng)
        if em.running_mean is not None:
            assert rel_err(em.running_mean.data, tm.running_mean.numpy()) <= 1e-4
            assert rel_err(em.running_var.data, tm.running_var.numpy()) <= 1e-4


def test_batchnorm_state_dict_matches_torch():
    em, tm = nn.BatchNorm2d(4), torch.nn.BatchNorm2d(4)
    assert list(em.state_dict()) == list(tm.state_dict())
    tm.running_mean.fill_(0.25)
    tm.num_batches_tracked.fill_(7)
    em.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    assert np.all(em.running_mean.data == 0.25) and int(em.num_batches_tracked.data) == 7
    assert repr(em) == repr(tm)


@pytest.mark.parametrize("make", ["BatchNorm1d", "BatchNorm2d", "InstanceNorm2d"])
def test_running_statistics_have_torchs_dtypes(make):
    # regression: running_mean/var were float64 (np.zeros with dtype=None) beside float32 weights,
    # which also kept the GPU's one-launch running update from applying
    kw = {"track_running_stats": True} if make.startswith("Instance") else {}
    em, tm = getattr(nn, make)(3, **kw), getattr(torch.nn, make)(3, **kw)
    want = {k: str(v.dtype).replace("torch.", "") for k, v in tm.state_dict().items()}
    assert {k: str(v.dtype) for k, v in em.state_dict().items()} == want
    assert getattr(nn, make)(3, dtype=np.float64, **kw).running_var.dtype == np.float64


def test_running_stats_update_in_place_and_bump_version(rng):
    bn = nn.BatchNorm2d(3)
    buf, version = bn.running_mean.data, bn.running_mean._version
    bn(ember.Tensor(rng.standard_normal((4, 3, 2, 2)).astype(np.float32)))
    assert bn.running_mean.data is buf and bn.running_mean._version == version + 1
    assert not np.all(buf == 0)


def test_batchnorm_one_value_per_channel_errors():
    bn = nn.BatchNorm1d(5)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(ember.Tensor(np.zeros((1, 5), dtype=np.float32)))
    bn.eval()
    assert bn(ember.Tensor(np.zeros((1, 5), dtype=np.float32))).shape == (1, 5)
    with pytest.raises(ValueError, match="expected 4D input"):
        nn.BatchNorm2d(5)(ember.Tensor(np.zeros((2, 5), dtype=np.float32)))
    with pytest.raises(ValueError, match="weight has 3 elements"):
        F.batch_norm(ember.Tensor(np.zeros((2, 5), dtype=np.float32)), None, None,
                     ember.Tensor(np.ones(3, dtype=np.float32)), training=True)


@pytest.mark.parametrize("make", [
    lambda lib: lib.LayerNorm(64), lambda lib: lib.LayerNorm((8, 8), elementwise_affine=False),
    lambda lib: lib.LayerNorm((8, 8), bias=False), lambda lib: lib.GroupNorm(4, 16),
    lambda lib: lib.GroupNorm(16, 16, affine=False), lambda lib: lib.InstanceNorm2d(16),
    lambda lib: lib.InstanceNorm2d(16, affine=True), lambda lib: lib.LocalResponseNorm(5, alpha=1e-2),
])
def test_other_norms_vs_torch(make, rng):
    em, tm = make(nn), make(torch.nn)
    assert repr(em) == repr(tm)
    _randomize(em, tm, rng)
    shape = (16, 16, 8, 8) if not isinstance(em, nn.LayerNorm) or em.normalized_shape == (8, 8) else (16, 16, 64)
    _step(em, tm, (rng.standard_normal(shape) * 3 + 1).astype(np.float32), rng)


def test_instance_norm_running_stats_vs_torch(rng):
    em = nn.InstanceNorm2d(4, affine=True, track_running_stats=True)
    tm = torch.nn.InstanceNorm2d(4, affine=True, track_running_stats=True)
    assert list(em.state_dict()) == list(tm.state_dict())
    _randomize(em, tm, rng)
    for _ in range(3):
        _step(em, tm, rng.standard_normal((6, 4, 5, 5)).astype(np.float32) + 2, rng)
    assert rel_err(em.running_mean.data, tm.running_mean.numpy()) <= 1e-4
    assert rel_err(em.running_var.data, tm.running_var.numpy()) <= 1e-4
    em.eval()
    tm.eval()
    _step(em, tm, rng.standard_normal((6, 4, 5, 5)).astype(np.float32), rng)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("x_last,add_last,g_last", [(False, False, False), (True, True, True), (True, False, True),
                                                    (False, True, False)])
def test_batchnorm_add_relu_vs_torch(x_last, add_last, g_last, training, rng):
    """bn(x, add=r, relu=True) = relu(bn(x) + r) in one op: values, the gradients of x, r and the
    parameters, and the running statistics as PyTorch's three ops, in every memory order (on the CPU
    the sum and the ReLU run on the channel rows of a channels-last x)."""
    shape = (8, 16, 6, 5)
    em, tm = nn.BatchNorm2d(16), torch.nn.BatchNorm2d(16)
    _randomize(em, tm, rng)
    em.train(training)
    tm.train(training)
    x, r, g = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
    xe = ember.Tensor(_channels_last(x) if x_last else x.copy(), requires_grad=True)
    re = ember.Tensor(_channels_last(r) if add_last else r.copy(), requires_grad=True)
    xt, rt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(r).requires_grad_()
    ye, yt = em(xe, add=re, relu=True), torch.relu(tm(xt) + rt)
    assert rel_err(ye.data, yt.detach().numpy()) <= 1e-5 and (ye.data == 0).mean() > 0.2
    if x_last:
        assert _channels_last(ye.data).strides == ye.data.strides  # stays channels-last
    ye.backward(ember.Tensor(_channels_last(g) if g_last else g))
    yt.backward(torch.from_numpy(g))
    for a, b in [(xe.grad, xt.grad), (re.grad, rt.grad), (em.weight.grad, tm.weight.grad),
                 (em.bias.grad, tm.bias.grad), (em.running_mean, tm.running_mean), (em.running_var, tm.running_var)]:
        assert rel_err(a.data, b.detach().numpy()) <= 1e-4


def test_batchnorm_add_errors_name_both_sides():
    x = ember.Tensor(np.zeros((2, 3, 4, 4), dtype=np.float32))
    bn = nn.BatchNorm2d(3)
    with pytest.raises(ValueError, match=r"batch_norm: add has shape \(2, 3, 4, 1\) but the input has shape \(2, 3, 4, 4\)"):
        bn(x, add=ember.Tensor(np.zeros((2, 3, 4, 1), dtype=np.float32)))  # no broadcasting: a residual sum
    with pytest.raises(TypeError, match="batch_norm: add has dtype float64 but the input has dtype float32"):
        bn(x, add=ember.Tensor(np.zeros((2, 3, 4, 4))))
    with pytest.raises(TypeError, match="batch_norm: add must be a Tensor, got ndarray"):
        bn(x, add=np.zeros((2, 3, 4, 4), dtype=np.float32))


def test_norm_errors():
    x = ember.Tensor(np.zeros((2, 6, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="num_groups 4"):
        F.group_norm(x, 4)
    with pytest.raises(ValueError, match="normalized_shape"):
        F.layer_norm(x, (4,))
    with pytest.raises(ValueError, match="divisible"):
        nn.GroupNorm(4, 6)

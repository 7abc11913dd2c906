"""GPU tests of batch norm's training route (ember/ops/cuda_norm.py: batch_norm_forward/backward),
with and without affine parameters and running statistics, and with the residual sum and ReLU
that ResNet's blocks fold into it (``add=``, ``relu=``), in every memory order of x, the residual
and the incoming gradient: each against the CPU, and the forward kernel against NumPy. Marked
``gpu``: they skip without CuPy and a CUDA GPU (tests/cuda_emulator.py runs them on the CPU).
"""
import numpy as np
import pytest

import ember
from ember import backend
from ember.backend import asnumpy, cupy_available
from tests.gpu_compare import channels_last_dev as _channels_last_dev
from tests.gpu_compare import dev as _dev
from tests.gpu_compare import on

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")]

RNG = np.random.default_rng(2)


# ---- batch norm in training ------------------------------------------------------------------------
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("affine,track", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batch_norm_gpu_route_matches_cpu(affine, track, dtype, channels_last):
    x = (RNG.standard_normal((6, 5, 4, 3)) * 3 + 2).astype(dtype)
    gy = RNG.standard_normal(x.shape).astype(dtype)
    results = []
    for device in ("cpu", "cuda"):
        with on(device):
            bn = ember.nn.BatchNorm2d(5, affine=affine, track_running_stats=track, dtype=dtype)
            if affine:
                bn.weight.data[...] = np.linspace(0.5, 2, 5)
                bn.bias.data[...] = np.linspace(-1, 1, 5)
            bn.to(device)
            xt = ember.Tensor(_channels_last_dev(x) if device == "cuda" and channels_last else
                              (_dev(x) if device == "cuda" else x.copy()), requires_grad=True)
            for _ in range(2):  # the running statistics move twice
                y = bn(xt)
            y.backward(gradient=ember.Tensor(_dev(gy) if device == "cuda" else gy))
            got = [y.data, xt.grad.data] + ([bn.weight.grad.data, bn.bias.grad.data] if affine else [])
            got += [bn.running_mean.data, bn.running_var.data, bn.num_batches_tracked.data] if track else []
            if track:
                assert int(asnumpy(bn.num_batches_tracked.data)) == 2
            if device == "cuda" and channels_last:
                assert backend.is_channels_last(y.data) and backend.is_channels_last(xt.grad.data)
            results.append([asnumpy(a) for a in got])
    tol = 1e-10 if dtype == np.float64 else 2e-5
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("add_grad", [True, False])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("x_last,add_last,gy_last", [(False, False, False), (True, True, True), (True, False, False),
                                                     (False, True, True)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batch_norm_add_relu_gpu_route_matches_cpu(dtype, x_last, add_last, gy_last, relu, add_grad, training):
    """relu(bn(x) + add) in one op (the fused kernels in training, the generic route in eval), with
    x, add and the incoming gradient in either memory order, against the CPU."""
    x = (RNG.standard_normal((6, 5, 4, 3)) * 3 + 2).astype(dtype)
    r = RNG.standard_normal(x.shape).astype(dtype)
    gy = RNG.standard_normal(x.shape).astype(dtype)
    results = []
    for device in ("cpu", "cuda"):
        with on(device):
            bn = ember.nn.BatchNorm2d(5, dtype=dtype)
            bn.weight.data[...] = np.linspace(0.5, 2, 5)
            bn.bias.data[...] = np.linspace(-1, 1, 5)
            bn.to(device)
            bn.train(training)
            put = (lambda a, last: _channels_last_dev(a) if last else _dev(a)) if device == "cuda" else \
                (lambda a, last: a.copy())
            xt = ember.Tensor(put(x, x_last), requires_grad=True)
            rt = ember.Tensor(put(r, add_last), requires_grad=add_grad)
            y = bn(xt, add=rt, relu=relu)
            assert (y.grad_fn.fused is not None) == (device == "cuda" and training)  # the fused kernels' route
            y.backward(gradient=ember.Tensor(put(gy, gy_last)))
            got = [y.data, xt.grad.data, bn.weight.grad.data, bn.bias.grad.data, bn.running_mean.data]
            assert (rt.grad is not None) == add_grad
            got += [rt.grad.data] if add_grad else []
            if device == "cuda" and x_last and training:  # (the fused kernels keep x's order)
                assert backend.is_channels_last(y.data) and backend.is_channels_last(xt.grad.data)
            results.append([asnumpy(a) for a in got])
    assert relu == bool((results[0][0] == 0).any())
    tol = 1e-10 if dtype == np.float64 else 2e-5
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol)


def test_batch_norm_add_relu_backward_twice_with_retain_graph():
    x = RNG.standard_normal((4, 3, 5, 5)).astype(np.float32)
    r = RNG.standard_normal(x.shape).astype(np.float32)
    gy = RNG.standard_normal(x.shape).astype(np.float32)
    bn = ember.nn.BatchNorm2d(3).to("cuda")
    xt, rt = ember.Tensor(_dev(x), requires_grad=True), ember.Tensor(_dev(r), requires_grad=True)
    y = bn(xt, add=rt, relu=True)
    grads = []
    for _ in range(2):
        xt.grad = rt.grad = bn.weight.grad = None
        y.backward(gradient=ember.Tensor(_dev(gy)), retain_graph=True)
        grads.append([asnumpy(t.grad.data) for t in (xt, rt, bn.weight)])
    for a, b in zip(*grads):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_batch_norm_gpu_route_backward_twice_with_retain_graph():
    """Backward sums into zeros that forward handed out; a second backward gets new ones."""
    x = RNG.standard_normal((4, 3, 5, 5)).astype(np.float32)
    gy = RNG.standard_normal(x.shape).astype(np.float32)
    bn = ember.nn.BatchNorm2d(3).to("cuda")
    xt = ember.Tensor(_dev(x), requires_grad=True)
    y = bn(xt)
    grads = []
    for _ in range(2):
        xt.grad = bn.weight.grad = None
        y.backward(gradient=ember.Tensor(_dev(gy)), retain_graph=True)
        grads.append([asnumpy(t.grad.data) for t in (xt, bn.weight)])
    for a, b in zip(*grads):  # (the GPU's atomic sums may add in another order)
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_batch_norm_forward_kernel_matches_numpy():
    from ember.ops import cuda_norm as CN

    x = RNG.standard_normal((4, 3, 5)) + 100.0  # a large mean: sums of squares in double stay exact
    w, b = RNG.standard_normal(3), RNG.standard_normal(3)
    rm, rv = RNG.standard_normal(3), RNG.random(3) + 0.5
    running = (_dev(rm.copy()), _dev(rv.copy()), 0.1, 20 / 19)  # copies: the emulator's _dev aliases
    xd = _dev(x)
    y, sums = CN.batch_norm_forward(xd, CN._channel_layout(xd, (0, 2)), _dev(w), _dev(b), 1e-5, running)
    sums = asnumpy(sums)
    assert sums.shape == (18,) and not sums[6:12].any()  # backward's sums start from these zeros
    np.testing.assert_allclose(sums[:6], np.concatenate([x.sum((0, 2)), (x * x).sum((0, 2))]), rtol=1e-12)
    mean, invstd = sums[12:15], sums[15:]  # saved for backward
    m, v = x.mean((0, 2)), x.var((0, 2))
    np.testing.assert_allclose(asnumpy(mean), m, rtol=1e-12)
    np.testing.assert_allclose(asnumpy(invstd), 1 / np.sqrt(v + 1e-5), rtol=1e-8)
    want = (x - m[:, None]) / np.sqrt(v[:, None] + 1e-5) * w[:, None] + b[:, None]
    np.testing.assert_allclose(asnumpy(y), want, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(asnumpy(running[0]), 0.9 * rm + 0.1 * m, rtol=1e-12)
    np.testing.assert_allclose(asnumpy(running[1]), 0.9 * rv + 0.1 * v * 20 / 19, rtol=1e-8)

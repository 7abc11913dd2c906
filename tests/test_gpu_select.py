"""GPU tests of indexing, ordering and gradient plumbing: index and label checks on the GPU (CuPy
would wrap a bad index silently), sort/topk/gather against the CPU, gradient hooks and
``ember.autograd.grad`` on GPU tensors, and RReLU's random slopes drawn on the GPU. Marked ``gpu``;
they skip cleanly without CuPy and a GPU (and run on the CPU under tests/cuda_emulator.py with
EMBER_EMULATE_GPU_TESTS=1)."""
from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.backend import asnumpy, cupy_available
from ember.autograd import grad
from tests.gpu_compare import dev, on

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")]

RNG = np.random.default_rng(7)


def test_bad_indices_and_labels_raise_on_the_gpu():
    x = ember.Tensor(dev(RNG.standard_normal((3, 4))))
    with pytest.raises(IndexError, match=r"gather: index 4 is out of range \[0, 4\) for dim 1"):
        x.gather(1, ember.Tensor(dev(np.array([[0], [4], [1]]))))
    with pytest.raises(IndexError, match="gather: index -1"):
        x.gather(1, ember.Tensor(dev(np.array([[0], [-1], [1]]))))
    with pytest.raises(IndexError, match=r"one_hot: label 5 is out of range \[0, 5\)"):
        F.one_hot(ember.Tensor(dev(np.array([0, 5]))), 5)


def test_select_ops_match_the_cpu():
    a = RNG.permutation(60).reshape(5, 12).astype(np.float64) * 0.5
    idx = RNG.integers(0, 12, (5, 3))
    labels = RNG.integers(0, 12, 5)
    results = []
    for device, to in (("cpu", np.asarray), ("cuda", dev)):
        with on(device):
            x = ember.Tensor(to(a), requires_grad=True)
            top = x.topk(4, dim=1)
            srt = x.sort(dim=0, descending=True)
            g = x.gather(1, ember.Tensor(to(idx)))
            cum = x.cumsum(1)
            rolled = x.roll((1, -2), (0, 1))
            masked = x.masked_fill(x > 10, -1.0)
            loss = (top.values.sum() + (srt.values * srt.values).sum() + (g * g).sum() + cum.mean()
                    + (rolled * rolled).sum() + masked.sum())
            loss.backward()
            hot = F.one_hot(ember.Tensor(to(labels)), 12)
            outs = [top.values, top.indices, srt.values, srt.indices, g, cum, rolled, masked, hot, x.grad]
            results.append([asnumpy(t.data) for t in outs])
    for c, gpu in zip(*results):
        assert c.dtype == gpu.dtype
        np.testing.assert_allclose(gpu, c, rtol=1e-12, atol=1e-12)


def test_hooks_and_autograd_grad_on_the_gpu():
    w = ember.Tensor(dev(RNG.standard_normal((4, 3))), requires_grad=True)
    x = ember.Tensor(dev(RNG.standard_normal((2, 4))), requires_grad=True)
    h = (x @ w).tanh()
    seen = []
    h.register_hook(lambda g: seen.append(g.device) or g * 2)
    gx, gw = grad((h * h).sum(), [x, w])
    assert seen == [x.device] and gx.device == gw.device == x.device  # (cuda; the CPU under the emulator)
    assert w.grad is None and x.grad is None
    xc, wc = ember.tensor(asnumpy(x.data), requires_grad=True), ember.tensor(asnumpy(w.data), requires_grad=True)
    with on("cpu"):
        hc = (xc @ wc).tanh()
        hc.register_hook(lambda g: g * 2)
        (hc * hc).sum().backward()
    np.testing.assert_allclose(asnumpy(gx.data), xc.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(asnumpy(gw.data), wc.grad.numpy(), rtol=1e-12)


def test_rrelu_draws_its_slopes_on_the_gpu_and_backpropagates_them():
    a = RNG.standard_normal((64, 50))
    x = ember.Tensor(dev(a), requires_grad=True)
    y = F.rrelu(x, 0.1, 0.3, training=True, generator=ember.Generator(4))
    y.sum().backward()
    slope, g = asnumpy(y.data) / a, asnumpy(x.grad.data)
    neg = a < 0
    np.testing.assert_allclose(slope[~neg], 1.0)
    assert 0.1 <= slope[neg].min() and slope[neg].max() <= 0.3 and abs(slope[neg].mean() - 0.2) < 0.01
    np.testing.assert_allclose(g, np.where(neg, slope, 1.0), rtol=1e-12)  # the gradient is the drawn slope
    again = F.rrelu(ember.Tensor(dev(a)), 0.1, 0.3, training=True, generator=ember.Generator(4))
    np.testing.assert_array_equal(asnumpy(again.data), asnumpy(y.data))


def test_max_pool_nan_windows_credit_the_last_nan_on_the_gpu():
    a = RNG.standard_normal((2, 3, 9, 9)).astype(np.float32)
    a[RNG.random(a.shape) < 0.15] = np.nan
    out = {}
    for device, to in (("cpu", np.asarray), ("cuda", dev)):
        with on(device):
            x = ember.Tensor(to(a), requires_grad=True)
            y, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
            y.sum().backward()
            out[device] = [asnumpy(t.data) for t in (y, idx, x.grad)]
    for c, g in zip(out["cpu"], out["cuda"]):
        np.testing.assert_array_equal(g, c)

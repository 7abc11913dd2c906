"""Convolution layers and ops against PyTorch on realistic sizes, plus properties.

Op-level gradchecks on small inputs live in tests/opdb_conv.py (run by test_ops.py).
"""
from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember import nn
from ember.diagnostics.conv_matrix import conv_matrix, conv_to_linear, param_counts
from ember.backend import xp_of
from ember.errors import DTypeError, ShapeError
from ember.ops import im2row
from tests.torch_compare import assert_matches, rel_err, run_both

torch = pytest.importorskip("torch")
TF = torch.nn.functional


CASES = [
    ("resnet_3x3", (8, 16, 32, 32), (32, 16, 3, 3), dict(padding=1)),
    ("stem_7x7_s2", (4, 3, 64, 64), (16, 3, 7, 7), dict(stride=2, padding=3)),
    ("downsample_1x1_s2", (8, 32, 16, 16), (64, 32, 1, 1), dict(stride=2)),
    ("depthwise", (4, 32, 20, 20), (32, 1, 3, 3), dict(padding=1, groups=32)),
    ("grouped_dilated", (2, 16, 25, 23), (24, 4, 3, 3), dict(padding=2, dilation=2, groups=4)),
    ("odd_strided", (3, 8, 31, 17), (12, 8, 5, 2), dict(stride=(3, 2), padding=(2, 1))),
]


@pytest.mark.parametrize("name,xs,ws,kw", CASES, ids=[c[0] for c in CASES])
def test_conv2d_matches_torch_float32(name, xs, ws, kw, rng):
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws) * 0.1, rng.standard_normal(ws[0])
    assert_matches(F.conv2d, TF.conv2d, [x, w, b], name, **kw)


def test_conv_transpose2d_and_conv1d_match_torch(rng):
    x, w, b = rng.standard_normal((4, 16, 9, 11)), rng.standard_normal((16, 4, 4, 4)) * 0.1, rng.standard_normal(8)
    assert_matches(F.conv_transpose2d, TF.conv_transpose2d, [x, w, b], "transposed", stride=2, padding=1,
                   output_padding=1, groups=2)
    x, w = rng.standard_normal((4, 8, 100)), rng.standard_normal((16, 8, 5)) * 0.1
    ye, yt, es, ts = run_both(F.conv1d, TF.conv1d, [x, w], stride=2, padding=2)
    assert rel_err(ye.data, yt.detach().numpy()) <= 1e-4
    assert rel_err(es[1].grad.data, ts[1].grad.numpy()) <= 1e-3


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch warns about its own extra copy
def test_same_padding_with_even_kernel_is_asymmetric_like_torch(rng):
    x, w = rng.standard_normal((2, 3, 8, 7)), rng.standard_normal((4, 3, 4, 2))
    ye, yt, es, ts = run_both(F.conv2d, TF.conv2d, [x, w], padding="same")
    assert ye.shape == (2, 4, 8, 7)
    assert rel_err(ye.data, yt.detach().numpy()) <= 1e-4
    assert rel_err(es[0].grad.data, ts[0].grad.numpy()) <= 1e-3


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_conv2d_layer_state_dict_and_padding_modes_match_torch(mode, rng):
    m = nn.Conv2d(3, 8, (3, 5), stride=(2, 1), padding=(1, 2), padding_mode=mode)
    t = torch.nn.Conv2d(3, 8, (3, 5), stride=(2, 1), padding=(1, 2), padding_mode=mode)
    assert list(m.state_dict()) == list(t.state_dict())
    t.load_state_dict({k: torch.tensor(v.data) for k, v in m.state_dict().items()})
    x = rng.standard_normal((4, 3, 12, 10)).astype(np.float32)
    xe, xt = ember.Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ye, yt = m(xe), t(xt)
    assert rel_err(ye.data, yt.detach().numpy()) <= 1e-4
    ye.sum().backward()
    yt.sum().backward()
    assert rel_err(xe.grad.data, xt.grad.numpy()) <= 1e-3
    assert rel_err(m.weight.grad.data, t.weight.grad.numpy()) <= 1e-3


def test_default_init_matches_pytorch_bounds():
    m = nn.Conv2d(16, 32, 3)
    bound = 1 / np.sqrt(16 * 9)  # kaiming_uniform_(a=sqrt(5)) gives 1/sqrt(fan_in); same for the bias
    w = m.weight.data
    assert w.dtype == np.float32 and np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.05 * bound
    assert np.abs(m.bias.data).max() <= bound
    ct = nn.ConvTranspose2d(16, 8, 4)  # PyTorch's fan_in for a transposed weight is dim 1 * kernel
    assert np.abs(ct.weight.data).max() <= 1 / np.sqrt(8 * 16)


def test_conv_transpose_layer_output_size(rng):
    m = nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1)
    x = ember.Tensor(rng.standard_normal((1, 4, 5, 5)).astype(np.float32))
    assert m(x).shape == (1, 2, 9, 9)
    assert m(x, output_size=(10, 10)).shape == (1, 2, 10, 10)
    with pytest.raises(ValueError, match="output_size"):
        m(x, output_size=(12, 10))


def test_conv_matrix_is_the_linear_map(rng):
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1, groups=1, dtype=np.float64)
    x = rng.standard_normal((4, 2, 7, 6))
    y = conv(ember.Tensor(x)).data
    M = conv_matrix(conv, (2, 7, 6))
    assert M.shape == (y[0].size, x[0].size)
    bias = np.repeat(conv.bias.data, y.shape[2] * y.shape[3])
    np.testing.assert_allclose(x.reshape(4, -1) @ M.T + bias, y.reshape(4, -1), atol=1e-12)
    lin = conv_to_linear(conv, (2, 7, 6))
    np.testing.assert_allclose(lin(ember.Tensor(x.reshape(4, -1))).data, y.reshape(4, -1), atol=1e-12)
    # Locality: an output unit depends on at most C*KH*KW inputs.
    assert (np.count_nonzero(M, axis=1) <= 2 * 9).all()


def test_conv_matrix_with_padding_mode_and_param_counts():
    conv = nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular", dtype=np.float64)
    M = conv_matrix(conv, (1, 2, 5, 5))  # a batch shape is accepted; N is dropped
    x = np.random.default_rng(1).standard_normal((1, 2, 5, 5))
    y = conv(ember.Tensor(x)).data.reshape(-1) - np.repeat(conv.bias.data, 25)
    np.testing.assert_allclose(M @ x.reshape(-1), y, atol=1e-12)
    counts = param_counts(conv, (2, 5, 5))
    assert counts == {"conv": 4 * 2 * 9 + 4, "locally_connected": 25 * 4 * 18 + 100, "dense": 50 * 100 + 100}


def test_locally_connected_from_conv_gives_same_outputs(rng):
    conv = nn.Conv2d(4, 6, (3, 2), stride=2, padding=1, groups=2)
    lc = nn.LocallyConnected2d.from_conv(conv, (9, 8))
    assert lc.weight.shape == (lc.output_size[0] * lc.output_size[1], 6, 4 * 3 * 2)
    x = ember.Tensor(rng.standard_normal((3, 4, 9, 8)).astype(np.float32))
    np.testing.assert_allclose(lc(x).data, conv(x).data, rtol=1e-5, atol=1e-5)
    # Unshared: changing one location's filter changes only that location.
    before = lc(x).data  # compared with itself: conv2d may sum in another order (rounding differs)
    lc.weight.data[0] += 1.0
    diff = np.abs(lc(x).data - before).sum(axis=(0, 1))
    assert diff[0, 0] > 0 and diff.reshape(-1)[1:].max() == 0


def test_locally_connected_gradients(rng):
    lc = nn.LocallyConnected2d(2, 3, 3, (5, 6), padding=1, dtype=np.float64)
    x = ember.Tensor(rng.standard_normal((2, 2, 5, 6)), requires_grad=True)
    ember.diagnostics.gradcheck(lambda t: lc(t), [x], params=list(lc.parameters()), mode="directional")


def test_translation_equivariance_away_from_borders(rng):
    w = ember.Tensor(rng.standard_normal((4, 3, 3, 3)))
    x = rng.standard_normal((1, 3, 16, 16))
    shifted = np.roll(x, (2, 3), axis=(2, 3))
    y = F.conv2d(ember.Tensor(x), w).data
    ys = F.conv2d(ember.Tensor(shifted), w).data
    np.testing.assert_allclose(ys[:, :, 2 + 2:, 3 + 2:], y[:, :, 2:-2, 2:-3], atol=1e-12)


def test_unfold_fold_layers_match_torch(rng):
    x = rng.standard_normal((2, 3, 8, 9)).astype(np.float32)
    u, tu = nn.Unfold(3, padding=1, stride=2), torch.nn.Unfold(3, padding=1, stride=2)
    cols = u(ember.Tensor(x))
    np.testing.assert_allclose(cols.data, tu(torch.tensor(x)).numpy(), rtol=1e-6)
    f, tf = nn.Fold((8, 9), 3, padding=1, stride=2), torch.nn.Fold((8, 9), 3, padding=1, stride=2)
    np.testing.assert_allclose(f(cols).data, tf(torch.tensor(cols.data)).numpy(), rtol=1e-5, atol=1e-6)


def test_clear_errors():
    x = ember.zeros((8, 1, 28, 28))
    w = ember.zeros((16, 3, 3, 3))
    with pytest.raises(ShapeError, match=r"conv2d: input has 1 channels but weight expects 3 \(input \(8, 1, 28, 28\)"):
        F.conv2d(x, w)
    with pytest.raises(ShapeError, match="smaller than the kernel's extent"):
        F.conv2d(ember.zeros((1, 3, 2, 2)), w)
    with pytest.raises(ShapeError, match="groups=2 must divide"):
        F.conv2d(ember.zeros((1, 6, 5, 5)), ember.zeros((3, 3, 3, 3)), groups=2)
    with pytest.raises(ShapeError, match="bias must have shape"):
        F.conv2d(ember.zeros((1, 3, 5, 5)), w, ember.zeros(3))
    with pytest.raises(DTypeError, match="conv2d"):
        F.conv2d(ember.zeros((1, 3, 5, 5), dtype=np.float64), w)
    with pytest.raises(ValueError, match="stride"):
        F.conv2d(ember.zeros((1, 3, 5, 5)), w, stride=0)
    with pytest.raises(ValueError, match="'same' needs stride 1"):
        F.conv2d(ember.zeros((1, 3, 5, 5)), w, padding="same", stride=2)
    with pytest.raises(ShapeError, match="conv1d: input length 2"):
        F.conv1d(ember.zeros((1, 3, 2)), ember.zeros((4, 3, 3)))
    with pytest.raises(ShapeError, match="reflect padding"):
        F.pad(ember.zeros((1, 1, 3, 3)), (3, 0), mode="reflect")
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(3, 4, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="LocallyConnected2d: expected input"):
        nn.LocallyConnected2d(3, 4, 3, (8, 8))(ember.zeros((1, 3, 9, 8)))


def test_channels_last_memory_flows_through_conv_bn_relu(rng):
    """Rows-lowered convolutions return channels-last memory (NCHW shape); batch norm, ReLU and the next
    convolution keep it, and values and gradients match PyTorch whatever layout each array has."""
    x = rng.standard_normal((4, 16, 12, 12))
    w1, w2 = rng.standard_normal((16, 16, 3, 3)) * 0.1, rng.standard_normal((24, 16, 3, 3)) * 0.1
    gamma, beta = rng.standard_normal(16), rng.standard_normal(16)

    def net(F_, x, w1, w2, gamma, beta):
        h = F_.conv2d(x, w1, padding=1)
        h = F_.relu(F_.batch_norm(h, None, None, gamma, beta, training=True))
        return F_.conv2d(h, w2, stride=2, padding=1)

    for upstream_channels_last in (False, True):
        es = [ember.Tensor(a.astype(np.float32), requires_grad=True) for a in (x, w1, w2, gamma, beta)]
        ts = [torch.tensor(a.astype(np.float32), requires_grad=True) for a in (x, w1, w2, gamma, beta)]
        h = F.conv2d(es[0], es[1], padding=1)
        assert im2row.is_channels_last(h.data) and h.data.shape == (4, 16, 12, 12)
        if xp_of(h.data) is np:  # the GPU's batch-norm kernel writes NCHW
            assert im2row.is_channels_last(F.batch_norm(h, None, None, es[3], es[4], training=True).data)
        ye, yt = net(F, *es), net(TF, *ts)
        assert rel_err(ye.data, yt.detach().numpy()) <= 1e-4
        g = rng.standard_normal(yt.shape).astype(np.float32)
        if upstream_channels_last:
            g = np.ascontiguousarray(g.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        ye.backward(ember.Tensor(g))
        yt.backward(torch.tensor(np.ascontiguousarray(g)))
        for e, t, what in zip(es, ts, ("x", "w1", "w2", "gamma", "beta")):
            assert rel_err(e.grad.data, t.grad.numpy()) <= 1e-3, (what, upstream_channels_last)


def test_conv2d_remembers_checked_geometries_and_still_checks_every_call():
    """conv2d looks up the geometry of a call it has seen (ops/conv.py's _conv2d_geometry): a new
    input size gets its own, list arguments (unhashable) work uncached, bad arguments raise each time."""
    from ember.ops import conv as C

    w = ember.randn(4, 3, 3, 3)
    for size in (8, 9, 8):
        y = F.conv2d(ember.randn(2, 3, size, size), w, stride=2, padding=1)
        assert y.shape == (2, 4, (size + 1) // 2, (size + 1) // 2)
    assert F.conv2d(ember.randn(1, 3, 8, 8), w, stride=[2, 1], padding=[1, 0]).shape == (1, 4, 4, 6)
    assert any(key[3] == 2 for key in C._GEOMETRIES)
    for _ in range(2):
        with pytest.raises(ValueError, match="conv2d: groups"):
            F.conv2d(ember.randn(2, 3, 8, 8), w, groups=0)
        with pytest.raises(ShapeError, match="smaller than the kernel"):
            F.conv2d(ember.randn(2, 3, 2, 2), w)

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
from ember.ops import im2col, im2row

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _rel(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(np.asarray(b)).max(), 1e-12))


def _run_both(fn, tfn, arrays, **kw):
    """Forward + backward with one random upstream gradient in ember and torch (float32)."""
    es = [ember.Tensor(a.astype(np.float32), requires_grad=True) for a in arrays]
    ts = [torch.tensor(a.astype(np.float32), requires_grad=True) for a in arrays]
    ye, yt = fn(*es, **kw), tfn(*ts, **kw)
    g = np.random.default_rng(5).standard_normal(yt.shape).astype(np.float32)
    ye.backward(ember.Tensor(g))
    yt.backward(torch.tensor(g))
    return ye, yt, es, ts


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
    ye, yt, es, ts = _run_both(F.conv2d, TF.conv2d, [x, w, b], **kw)
    assert ye.dtype == np.float32 and ye.shape == tuple(yt.shape)
    assert _rel(ye.data, yt.detach().numpy()) <= 1e-4
    for e, t, what in zip(es, ts, ("input", "weight", "bias")):
        assert _rel(e.grad.data, t.grad.numpy()) <= 1e-3, what


@pytest.mark.parametrize("rows", [True, False], ids=["channels_last_rows", "channels_first_columns"])
def test_both_lowerings_match_torch(rows, rng, monkeypatch):
    """conv2d picks rows or columns by channel count (conv.rows_pay); force each on every case."""
    from ember.ops import conv

    monkeypatch.setattr(conv, "rows_pay", lambda cin_per_group: rows)
    for name, xs, ws, kw in CASES[:1] + CASES[3:]:
        x, w, b = rng.standard_normal((2,) + xs[1:]), rng.standard_normal(ws) * 0.1, rng.standard_normal(ws[0])
        ye, yt, es, ts = _run_both(F.conv2d, TF.conv2d, [x, w, b], **kw)
        assert _rel(ye.data, yt.detach().numpy()) <= 1e-4, name
        for e, t, what in zip(es, ts, ("input", "weight", "bias")):
            assert _rel(e.grad.data, t.grad.numpy()) <= 1e-3, (name, what)
    x, w, b = rng.standard_normal((2, 16, 9, 11)), rng.standard_normal((16, 4, 4, 4)) * 0.1, rng.standard_normal(8)
    ye, yt, es, ts = _run_both(F.conv_transpose2d, TF.conv_transpose2d, [x, w, b], stride=2, padding=1,
                               output_padding=1, groups=2)
    assert _rel(ye.data, yt.detach().numpy()) <= 1e-4
    for e, t in zip(es, ts):
        assert _rel(e.grad.data, t.grad.numpy()) <= 1e-3


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch warns about its own extra copy
@pytest.mark.parametrize("wide", [True, False], ids=["wide_grid_columns", "plain_columns"])
def test_columns_on_the_wide_grid_and_plain_match_torch(wide, rng, monkeypatch):
    """Stride-1 columns run on the wide grid when output rows are short (conv_lowering._wide); force
    each way on the columns lowering, with padding, dilation, groups, odd sizes and a chunked batch."""
    from ember.ops import conv, conv_lowering

    monkeypatch.setattr(conv, "rows_pay", lambda cin_per_group: False)
    monkeypatch.setattr(conv_lowering, "_wide", lambda g, xp: wide and g.sh == 1 and g.sw == 1)
    monkeypatch.setattr(im2col.batch_chunk, "__defaults__", (3000,))  # a few images per chunk, with remainder
    cases = [((5, 3, 11, 9), (4, 3, 3, 3), dict(padding=1)),
             ((5, 6, 12, 12), (16, 6, 5, 5), dict()),
             ((3, 8, 13, 10), (8, 2, 3, 2), dict(padding=(2, 1), dilation=2, groups=4)),
             ((2, 4, 9, 17), (6, 4, 1, 4), dict(padding="same"))]
    for xs, ws, kw in cases:
        x, w, b = rng.standard_normal(xs), rng.standard_normal(ws) * 0.1, rng.standard_normal(ws[0])
        ye, yt, es, ts = _run_both(F.conv2d, TF.conv2d, [x, w, b], **kw)
        assert _rel(ye.data, yt.detach().numpy()) <= 1e-4, (xs, kw)
        for e, t, what in zip(es, ts, ("input", "weight", "bias")):
            assert _rel(e.grad.data, t.grad.numpy()) <= 1e-3, (xs, kw, what)
    x, w = rng.standard_normal((3, 4, 7, 6)), rng.standard_normal((4, 3, 3, 3)) * 0.1
    ye, yt, es, ts = _run_both(F.conv_transpose2d, TF.conv_transpose2d, [x, w], padding=1)
    assert _rel(ye.data, yt.detach().numpy()) <= 1e-4
    for e, t in zip(es, ts):
        assert _rel(e.grad.data, t.grad.numpy()) <= 1e-3


@pytest.mark.parametrize("slabs", [True, False], ids=["width_rows_slabs", "full_rows"])
def test_rows_lowered_along_the_width_or_whole_match_torch(slabs, rng, monkeypatch):
    """Rows of one group with stride 1 in height and < 64 output channels are lowered along the
    width only, straight from the unpadded input (im2row.WidthRows), and each kernel row's slab
    meets the weight per image (conv_lowering._slabs_pay); force either way on every geometry that
    could take it (padding, dilation and stride along the width), with a chunked batch and a remainder."""
    from ember.ops import conv_lowering

    monkeypatch.setattr(conv_lowering, "_slabs_pay", lambda g, OCg, G: slabs and g.sh == 1 and G == 1)
    monkeypatch.setattr(im2col.batch_chunk, "__defaults__", (6000,))  # a few images per chunk, with remainder
    cases = [((5, 16, 12, 12), (16, 16, 3, 3), dict(padding=1)),
             ((3, 32, 9, 7), (48, 32, 3, 3), dict(padding=1)),
             ((4, 8, 11, 13), (12, 8, 5, 3), dict(padding=(2, 1), dilation=(2, 1))),
             ((3, 8, 10, 15), (8, 8, 3, 4), dict(stride=(1, 2), padding=(0, 3))),
             ((3, 8, 9, 12), (8, 8, 3, 3), dict(padding=(1, 2), dilation=(1, 2))),
             ((2, 8, 5, 4), (8, 8, 3, 1), dict(padding=(1, 3))),  # padding wider than the kernel: padded first
             ((2, 8, 6, 6), (8, 8, 1, 3), dict())]
    for xs, ws, kw in cases:
        x, w, b = rng.standard_normal(xs), rng.standard_normal(ws) * 0.1, rng.standard_normal(ws[0])
        ye, yt, es, ts = _run_both(F.conv2d, TF.conv2d, [x, w, b], **kw)
        assert _rel(ye.data, yt.detach().numpy()) <= 1e-4, (xs, kw)
        for e, t, what in zip(es, ts, ("input", "weight", "bias")):
            assert _rel(e.grad.data, t.grad.numpy()) <= 1e-3, (xs, kw, what)


def test_width_rows_equal_im2row_of_the_padded_input(rng):
    """im2row.WidthRows lowers along the width straight from unpadded x (interior windows in one
    copy, border columns piece by piece); it must equal im2row of the zero-padded x, for paddings,
    strides and dilations along the width, and say when padding wider than the kernel does not fit."""
    import itertools

    from ember.ops.im2row import WidthRows, im2row, pad_nhwc_into

    fitted = unfit = 0
    for H, W, KW, sw, dw, pads in itertools.product(
            [1, 4], [1, 3, 8], [1, 2, 3, 5], [1, 2, 3], [1, 2], [(0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 0, 3), (0, 1, 4, 0)]):
        t, b, l, r = pads
        if W + l + r < (KW - 1) * dw + 1:
            continue
        x = rng.standard_normal((3, H, W, 4)).astype(np.float32)
        g = im2col.make_geometry(H + t + b, W, (1, KW), (1, sw), (1, dw), (0, 0, l, r))
        xpad = np.zeros((3, H + t + b, W + l + r, 4), np.float32)
        want = im2row(pad_nhwc_into(x.transpose(0, 3, 1, 2), pads, xpad), g, 1).reshape(3, -1, KW * 4)
        lowering = WidthRows(x, pads, g)
        if not lowering.fits:
            unfit += 1
            continue
        got = lowering.lower(1, 3, out=np.full(want.size, np.nan, np.float32))
        np.testing.assert_array_equal(got, want[1:3], err_msg=str((H, W, KW, sw, dw, pads)))
        fitted += 1
    assert fitted > 100 and unfit > 0


def test_offsets2im_equals_row2im(rng):
    """The CPU data gradient adds one contiguous block per kernel offset (im2row.offsets2im), into
    phase planes when strided; it must equal row2im's slice-adds of the same values laid out as rows."""
    from ember.ops.im2row import offsets2im, row2im

    cases = [((2, 10, 10, 8), (3, 3), (1, 1), (1, 1), 1),
             ((3, 11, 9, 6), (3, 2), (2, 2), (1, 1), 2),
             ((2, 13, 12, 4), (3, 3), (3, 2), (2, 1), 1),
             ((1, 9, 9, 8), (2, 2), (2, 2), (2, 2), 4),
             ((2, 8, 7, 3), (1, 1), (2, 3), (1, 1), 1)]
    for (n, Hp, Wp, C), (KH, KW), (sh, sw), (dh, dw), G in cases:
        g = im2col.make_geometry(Hp, Wp, (KH, KW), (sh, sw), (dh, dw), (0, 0, 0, 0))
        L, Cg = g.OH * g.OW, C // G
        parts = rng.standard_normal((G, KH * KW, n * L, Cg)).astype(np.float32)
        rows = parts.reshape(G, KH * KW, n * L, Cg).transpose(2, 0, 1, 3).reshape(n * L, G, KH * KW * Cg)
        want = row2im(np.ascontiguousarray(rows), g, np.zeros((n, Hp, Wp, C), np.float32))
        got = offsets2im(parts, g, np.zeros((n, Hp, Wp, C), np.float32))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=str((Hp, Wp, KH, KW, sh, sw, dh, dw, G)))


def test_conv2d_batch_chunks_with_remainder(rng, monkeypatch):
    """The CPU path lowers a few images at a time; a batch that is not a multiple of the chunk must work."""
    monkeypatch.setattr(im2col.batch_chunk, "__defaults__", (2 * 8 * 9 * 36,))  # 2 images per chunk
    x, w, b = rng.standard_normal((5, 8, 6, 6)), rng.standard_normal((4, 8, 3, 3)), rng.standard_normal(4)
    for kw in (dict(padding=1), dict(stride=2, padding=1)):  # stride 1 and the col2im path
        ye, yt, es, ts = _run_both(F.conv2d, TF.conv2d, [x, w, b], **kw)
        assert _rel(ye.data, yt.detach().numpy()) <= 1e-4
        for e, t in zip(es, ts):
            assert _rel(e.grad.data, t.grad.numpy()) <= 1e-3


def test_conv_transpose2d_and_conv1d_match_torch(rng):
    x, w, b = rng.standard_normal((4, 16, 9, 11)), rng.standard_normal((16, 4, 4, 4)) * 0.1, rng.standard_normal(8)
    kw = dict(stride=2, padding=1, output_padding=1, groups=2)
    ye, yt, es, ts = _run_both(F.conv_transpose2d, TF.conv_transpose2d, [x, w, b], **kw)
    assert _rel(ye.data, yt.detach().numpy()) <= 1e-4
    for e, t in zip(es, ts):
        assert _rel(e.grad.data, t.grad.numpy()) <= 1e-3
    x, w = rng.standard_normal((4, 8, 100)), rng.standard_normal((16, 8, 5)) * 0.1
    ye, yt, es, ts = _run_both(F.conv1d, TF.conv1d, [x, w], stride=2, padding=2)
    assert _rel(ye.data, yt.detach().numpy()) <= 1e-4
    assert _rel(es[1].grad.data, ts[1].grad.numpy()) <= 1e-3


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch warns about its own extra copy
def test_same_padding_with_even_kernel_is_asymmetric_like_torch(rng):
    x, w = rng.standard_normal((2, 3, 8, 7)), rng.standard_normal((4, 3, 4, 2))
    ye, yt, es, ts = _run_both(F.conv2d, TF.conv2d, [x, w], padding="same")
    assert ye.shape == (2, 4, 8, 7)
    assert _rel(ye.data, yt.detach().numpy()) <= 1e-4
    assert _rel(es[0].grad.data, ts[0].grad.numpy()) <= 1e-3


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_conv2d_layer_state_dict_and_padding_modes_match_torch(mode, rng):
    m = nn.Conv2d(3, 8, (3, 5), stride=(2, 1), padding=(1, 2), padding_mode=mode)
    t = torch.nn.Conv2d(3, 8, (3, 5), stride=(2, 1), padding=(1, 2), padding_mode=mode)
    assert list(m.state_dict()) == list(t.state_dict())
    t.load_state_dict({k: torch.tensor(v.data) for k, v in m.state_dict().items()})
    x = rng.standard_normal((4, 3, 12, 10)).astype(np.float32)
    xe, xt = ember.Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ye, yt = m(xe), t(xt)
    assert _rel(ye.data, yt.detach().numpy()) <= 1e-4
    ye.sum().backward()
    yt.sum().backward()
    assert _rel(xe.grad.data, xt.grad.numpy()) <= 1e-3
    assert _rel(m.weight.grad.data, t.weight.grad.numpy()) <= 1e-3


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
        assert _rel(ye.data, yt.detach().numpy()) <= 1e-4
        g = rng.standard_normal(yt.shape).astype(np.float32)
        if upstream_channels_last:
            g = np.ascontiguousarray(g.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        ye.backward(ember.Tensor(g))
        yt.backward(torch.tensor(np.ascontiguousarray(g)))
        for e, t, what in zip(es, ts, ("x", "w1", "w2", "gamma", "beta")):
            assert _rel(e.grad.data, t.grad.numpy()) <= 1e-3, (what, upstream_channels_last)


def test_to_nhwc_two_step_transpose_matches_one_copy(rng):
    """to_nhwc transposes in two steps from 64 channels with planes >= 4 KiB (cache aliasing); same values."""
    for shape in ((2, 64, 32, 32), (2, 72, 33, 31), (2, 64, 8, 8), (3, 5, 32, 33)):
        x = rng.standard_normal(shape).astype(np.float32)
        for pads in ((0, 0, 0, 0), (1, 2, 0, 3)):
            t, b, l, r = pads
            ref = np.pad(x.transpose(0, 2, 3, 1), ((0, 0), (t, b), (l, r), (0, 0)))
            np.testing.assert_array_equal(im2row.to_nhwc(x, pads), ref)
            np.testing.assert_array_equal(im2row.to_nhwc(im2row.channels_last(x), pads), ref)
        assert im2row.is_channels_last(im2row.channels_last(x))
        np.testing.assert_array_equal(im2row.channels_last(x), x)


def test_im2col_in_two_steps_matches_the_window_copy(rng):
    """Stride-1-down-the-columns im2col lowers along the width first, then copies whole kernel-row
    blocks (im2col._width_first_pays); it must equal the one-step copy of every window."""
    cases = [((3, 1, 28, 28), (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),  # LeNet-5's first convolution
             ((2, 3, 17, 12), (3, 2), (1, 2), (1, 1), (1, 0, 0, 1)),  # strided along the width only
             ((2, 2, 15, 14), (3, 3), (1, 1), (2, 3), (2, 2, 1, 3)),  # dilated, asymmetric padding
             ((1, 4, 9, 70), (5, 1), (1, 1), (1, 1), (0, 0, 0, 0))]  # long rows, tall kernel
    for shape, k, s, d, p in cases:
        x = rng.standard_normal(shape).astype(np.float32)
        g = im2col.make_geometry(shape[2], shape[3], k, s, d, p)
        assert im2col._width_first_pays(g), (shape, k)
        xpad = im2col.pad_input(x, g)
        ref = np.ascontiguousarray(im2col.windows(xpad, g)).reshape(shape[0], -1, g.OH * g.OW)
        np.testing.assert_array_equal(im2col.im2col(xpad, g), ref)
        buf = np.full(ref.size + 7, np.nan, dtype=np.float32)  # a reused, larger buffer
        np.testing.assert_array_equal(im2col.im2col(xpad, g, out=buf), ref)
    assert not im2col._width_first_pays(im2col.make_geometry(32, 32, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)))


@pytest.mark.parametrize("threads", [1, 3])
def test_batch_chunks_cover_the_batch_in_near_equal_parts(threads, monkeypatch):
    """The CPU lowers a batch in chunks of at most batch_chunk images, near-equal in size, larger first
    (no small remainder), and as many as the threads or a multiple of them (ember.parallel)."""
    from ember import parallel
    from ember.ops import conv_lowering
    from ember.ops.im2col import batch_chunk

    monkeypatch.setattr(parallel, "workers", lambda: threads)
    monkeypatch.delitem(parallel._state, "sharing", raising=False)
    assert conv_lowering._chunks(4, 100, np) == ([(0, 4)], 1)  # too little work to share
    for N, per_image in ((128, 29400), (128, 52224), (5, 10**9), (7, 1 << 16), (1, 10**6), (100, 1 << 18)):
        chunks, used = conv_lowering._chunks(N, per_image, np)
        assert chunks[0][0] == 0 and chunks[-1][1] == N
        assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
        sizes = [b - a for a, b in chunks]
        assert max(sizes) <= batch_chunk(N, per_image) and max(sizes) - min(sizes) <= 1, (N, per_image, sizes)
        assert sizes == sorted(sizes, reverse=True)  # the first chunk sizes the reused buffers
        assert used in (1, threads) and (used == 1 or len(chunks) % used == 0 or len(chunks) == N), (N, sizes)
    # (5, 10**9) was big enough to share: from then on every pass shares, small ones too.
    assert conv_lowering._chunks(4, 100, np)[1] == threads
    assert [b - a for a, b in conv_lowering._chunks(128, 29400, np)[0]] == [43, 43, 42]  # 44 fit: not 44, 44, 40
    want = [32] * 4 if threads == 1 else [22, 22, 21, 21, 21, 21]  # 42 fit: not 42 x 3 + 2
    assert batch_chunk(128, 31207) == 42 and [b - a for a, b in conv_lowering._chunks(128, 31207, np)[0]] == want


@pytest.mark.parametrize("rows", [True, False])
def test_padded_chunks_equal_slices_of_the_whole_padded_input(rows, rng):
    """conv_lowering.Padded pads a chunk of images at a time into a reused buffer (the GEMM passes'
    chunks, larger first): every chunk equals that slice of the whole padded array, in the lowering's
    layout, from NCHW or channels-last x, with and without padding (then a view of x, no copy)."""
    from ember.ops.conv_lowering import Padded

    x = rng.standard_normal((7, 5, 6, 9)).astype(np.float32)
    for data in (x, im2row.channels_last(x)):
        for pads in ((0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 1, 3)):
            t, b, l, r = pads
            whole = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
            if rows:
                whole = whole.transpose(0, 2, 3, 1)
            src = Padded(data, pads, rows)
            assert src.shape == whole.shape
            buf = None
            for n0, n1 in ((0, 3), (3, 5), (5, 7)):
                buf, part = src.chunk(n0, n1, buf)
                np.testing.assert_array_equal(part, whole[n0:n1])
                if not any(pads) and (not rows or data is not x):  # NCHW x for rows: one transposed copy
                    assert np.shares_memory(part, data)


@pytest.mark.parametrize("oc", [6, 16, 32])
@pytest.mark.parametrize("gy_channels_last", [False, True])
def test_columns_conv_output_layout_and_gradients(oc, gy_channels_last, rng):
    """A columns-lowered convolution (few input channels, ResNet's first) writes its output
    channels-last from 16 output channels on (``_columns_channels_last``), NCHW below; its weight
    gradient reads gy in either memory order. Values against PyTorch."""
    x = rng.standard_normal((5, 3, 12, 20)).astype(np.float32)
    w = (rng.standard_normal((oc, 3, 3, 3)) * 0.3).astype(np.float32)
    b = rng.standard_normal(oc).astype(np.float32)
    ex, ew, eb = (ember.Tensor(a, requires_grad=True) for a in (x, w, b))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ye = F.conv2d(ex, ew, eb, stride=1, padding=1)
    yt = torch.nn.functional.conv2d(tx, tw, tb, stride=1, padding=1)
    if xp_of(x) is np:  # (under tests.cuda_emulator arrays take the GPU branch: NCHW)
        assert im2row.is_channels_last(ye.data) == (oc >= 16)
    assert _rel(ye.data, yt.detach().numpy()) <= 1e-5
    g = rng.standard_normal(yt.shape).astype(np.float32)
    ye.backward(ember.Tensor(im2row.channels_last(g) if gy_channels_last else g))
    yt.backward(torch.tensor(g))
    for e, t in ((ex, tx), (ew, tw), (eb, tb)):
        assert _rel(e.grad.data, t.grad.numpy()) <= 1e-4

"""How convolutions are lowered to GEMMs (ember/ops/conv_lowering.py, im2col.py, im2row.py): each
lowering forced on cases that could take it and checked against PyTorch, and the lowering pieces
(width rows, per-offset data gradients, padded chunks, batch chunks) against plain references.
"""
from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.backend import xp_of
from ember.ops import im2col, im2row
from tests.test_conv import CASES
from tests.torch_compare import assert_matches, rel_err

torch = pytest.importorskip("torch")
TF = torch.nn.functional


@pytest.mark.parametrize("rows", [True, False], ids=["channels_last_rows", "channels_first_columns"])
def test_both_lowerings_match_torch(rows, rng, monkeypatch):
    """conv2d picks rows or columns by channel count (conv.rows_pay); force each on every case."""
    from ember.ops import conv

    monkeypatch.setattr(conv, "rows_pay", lambda cin_per_group, KW=1: rows)
    monkeypatch.setattr(conv, "rows_add_back", lambda channels_per_group: rows)
    for name, xs, ws, kw in CASES[:1] + CASES[3:]:
        x, w, b = rng.standard_normal((2,) + xs[1:]), rng.standard_normal(ws) * 0.1, rng.standard_normal(ws[0])
        assert_matches(F.conv2d, TF.conv2d, [x, w, b], name, **kw)
    x, w, b = rng.standard_normal((2, 16, 9, 11)), rng.standard_normal((16, 4, 4, 4)) * 0.1, rng.standard_normal(8)
    assert_matches(F.conv_transpose2d, TF.conv_transpose2d, [x, w, b], "transposed", stride=2, padding=1,
                   output_padding=1, groups=2)


def test_rows_forward_with_columns_data_gradient_match_torch(rng):
    """A 5x5 convolution of 6 channels (LeNet-5's second) lowers rows forward (window rows of 30 floats,
    conv_lowering.rows_pay) but adds its data gradient back as columns (6-float runs are too short for
    rows, rows_add_back): the two layouts meet in one op, with and without padding, strided or not."""
    from ember.ops import conv, conv_lowering

    assert conv_lowering.rows_pay(6, 5) and not conv_lowering.rows_add_back(6)
    assert not conv_lowering.rows_pay(3, 3) and not conv_lowering.rows_pay(1, 5) and conv_lowering.rows_pay(8, 1)
    for kw in (dict(), dict(padding=2), dict(stride=2, padding=1)):
        x, w, b = rng.standard_normal((5, 6, 14, 14)), rng.standard_normal((16, 6, 5, 5)) * 0.1, rng.standard_normal(16)
        assert_matches(F.conv2d, TF.conv2d, [x, w, b], kw, **kw)
    assert conv.rows_add_back is conv_lowering.rows_add_back


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch warns about its own extra copy
@pytest.mark.parametrize("wide", [True, False], ids=["wide_grid_columns", "plain_columns"])
def test_columns_on_the_wide_grid_and_plain_match_torch(wide, rng, monkeypatch):
    """Stride-1 columns run on the wide grid when output rows are short (conv_lowering._wide); force
    each way on the columns lowering, with padding, dilation, groups, odd sizes and a chunked batch."""
    from ember.ops import conv, conv_lowering

    monkeypatch.setattr(conv, "rows_pay", lambda cin_per_group, KW=1: False)
    monkeypatch.setattr(conv_lowering, "_wide", lambda g, xp: wide and g.sh == 1 and g.sw == 1)
    monkeypatch.setattr(im2col.batch_chunk, "__defaults__", (3000,))  # a few images per chunk, with remainder
    cases = [((5, 3, 11, 9), (4, 3, 3, 3), dict(padding=1)),
             ((5, 6, 12, 12), (16, 6, 5, 5), dict()),
             ((3, 8, 13, 10), (8, 2, 3, 2), dict(padding=(2, 1), dilation=2, groups=4)),
             ((2, 4, 9, 17), (6, 4, 1, 4), dict(padding="same"))]
    for xs, ws, kw in cases:
        x, w, b = rng.standard_normal(xs), rng.standard_normal(ws) * 0.1, rng.standard_normal(ws[0])
        assert_matches(F.conv2d, TF.conv2d, [x, w, b], (xs, kw), **kw)
    x, w = rng.standard_normal((3, 4, 7, 6)), rng.standard_normal((4, 3, 3, 3)) * 0.1
    assert_matches(F.conv_transpose2d, TF.conv_transpose2d, [x, w], "transposed", padding=1)


@pytest.mark.parametrize("slabs", [True, False], ids=["width_rows_slabs", "full_rows"])
def test_rows_lowered_along_the_width_or_whole_match_torch(slabs, rng, monkeypatch):
    """Rows of one group with stride 1 in height and < 64 output channels are lowered along the
    width only, straight from the unpadded input (im2row.WidthRows), and each kernel row's slab
    meets the weight per image (conv_lowering._slabs_pay); force either way on every geometry that
    could take it (padding, dilation and stride along the width), with a chunked batch and a remainder."""
    from ember.ops import conv_lowering

    monkeypatch.setattr(conv_lowering, "_slabs_pay", lambda g, OCg, G, xp: slabs and G == 1)
    monkeypatch.setattr(im2col.batch_chunk, "__defaults__", (6000,))  # a few images per chunk, with remainder
    cases = [((5, 16, 12, 12), (16, 16, 3, 3), dict(padding=1)),
             ((3, 32, 9, 7), (48, 32, 3, 3), dict(padding=1)),
             ((4, 8, 11, 13), (12, 8, 5, 3), dict(padding=(2, 1), dilation=(2, 1))),
             ((3, 8, 10, 15), (8, 8, 3, 4), dict(stride=(1, 2), padding=(0, 3))),
             ((3, 8, 9, 12), (8, 8, 3, 3), dict(padding=(1, 2), dilation=(1, 2))),
             ((2, 8, 5, 4), (8, 8, 3, 1), dict(padding=(1, 3))),  # padding wider than the kernel: padded first
             ((2, 8, 6, 6), (8, 8, 1, 3), dict()),
             ((3, 16, 12, 12), (32, 16, 3, 3), dict(stride=2, padding=1)),  # strided: rows lowered by phase
             ((3, 8, 13, 11), (8, 8, 5, 3), dict(stride=(3, 1), padding=(2, 1), dilation=(2, 1))),
             ((2, 8, 9, 9), (8, 8, 2, 2), dict(stride=(4, 2), padding=(3, 0)))]
    for xs, ws, kw in cases:
        x, w, b = rng.standard_normal(xs), rng.standard_normal(ws) * 0.1, rng.standard_normal(ws[0])
        assert_matches(F.conv2d, TF.conv2d, [x, w, b], (xs, kw), **kw)


def test_width_rows_equal_im2row_of_the_padded_input(rng):
    """im2row.WidthRows lowers along the width straight from unpadded x (interior windows in one
    copy, border columns piece by piece); it must equal im2row of the zero-padded x, for paddings,
    strides and dilations along the width, and say when padding wider than the kernel does not fit."""
    import itertools

    from ember.ops.im2row import WidthRows, im2row, pad_nhwc_into

    fitted = unfit = 0
    for H, W, KW, sw, dw, pads in itertools.product(
            [1, 4], [1, 3, 8], [1, 2, 3, 5], [1, 2, 3], [1, 2],
            [(0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 0, 3), (0, 1, 4, 0)]):
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
        assert_matches(F.conv2d, TF.conv2d, [x, w, b], kw, **kw)


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
    """conv_padded.Padded pads a chunk of images at a time into a reused buffer (the GEMM passes'
    chunks, larger first): every chunk equals that slice of the whole padded array, in the lowering's
    layout, from NCHW or channels-last x, with and without padding (then a view of x, no copy)."""
    from ember.ops.conv_padded import Padded

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
    assert rel_err(ye.data, yt.detach().numpy()) <= 1e-5
    g = rng.standard_normal(yt.shape).astype(np.float32)
    ye.backward(ember.Tensor(im2row.channels_last(g) if gy_channels_last else g))
    yt.backward(torch.tensor(g))
    for e, t in ((ex, tx), (ew, tw), (eb, tb)):
        assert rel_err(e.grad.data, t.grad.numpy()) <= 1e-4

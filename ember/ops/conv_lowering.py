"""Lowering a convolution to GEMMs: the three passes (forward, weight grad, data grad)
shared by conv2d and conv_transpose2d (ember.ops.conv).

How conv2d runs (x: (N, C, H, W), w: (OC, C/G, KH, KW), G groups, K = C/G*KH*KW, L = OH*OW).
The batch is lowered a few images at a time into one reused buffer (``im2col.batch_chunk``:
chunks of ~1.25M floats, near-equal in size), so the copy that fills it and the GEMMs that
read it share the cache. Zero padding is added chunk by chunk too (``Padded``), right before
the lowering reads it. The lowering is not kept for backward: backward pads and lowers the
saved input again.

Rows (channels-last), used from 8 input channels per group on, or window rows of 24+ floats (``rows_pay``):

    forward     xpad = Padded(x).chunk(...)         (nb, Hp, Wp, C) pad per chunk (an NCHW x is made channels-last once)
                rows = im2row(xpad)                 (nb*L, G, K)    runs of KW*C/G floats
                y    = rows @ w (per group)         (N*L, OC/G)     tall GEMM written straight into the output
    grad of w   gw  += rows^T @ gy                  (K, N*L) @ (N*L, OC/G), gy read channels-last
    grad of x   stride 1 and C >= OC: gx = conv2d(pad(gy), flipped w with in/out swapped)
                else: per kernel offset gy @ w[kh, kw]^T, added back by ``offsets2im``: KH*KW
                shifted boxes (with a stride, into one contiguous plane per phase of it)
                When gx is a convolution, it and gw share one parallel region, a chunk of
                images at a time through both (``_data_and_weight_grads``).

    The output is returned in channels-last memory: an (N, OC, OH, OW)-shaped view of the
    (N, OH, OW, OC) array the GEMM wrote (PyTorch calls this the channels_last memory format).
    Batch norm, ReLU and residual sums keep that order, so the next convolution's padding is
    a plain copy and its backward reads gy without a transpose; an NCHW x or gy is transposed
    once (in two steps where cache aliasing would slow one down, ``to_nhwc``). Measured
    on W4 (bench/bench_conv.py), with the page-fault fix of ember.memory: 81 -> 58-62 ms.

    On the CPU, with one group and at most 64 output channels (``_slabs_pay``) the rows are lowered
    along the width only (3x less copying for a 3x3 kernel at stride 1), straight from the
    unpadded input (``im2row.WidthRows``: no padded copy), the padded rows phase by phase
    of the height's stride: kernel row kh reads a slab of each image's rows, so forward and
    grad of w run KH thinner GEMMs per image, the forward's written straight into the output.

Columns (channels-first, PyTorch's F.unfold layout), used below 8 channels per group,
where channels-last runs are too short to copy fast (LeNet's 1-channel input):

    col = im2col(pad(x)) (N, G, K, L);  y = w (G, OC/G, K) @ col per image, already NCHW;
    gw += col @ gy^T;  gx as above with col2im.

    With stride 1 and output rows shorter than 16 (``_wide``: LeNet's second convolution)
    the columns index output pixels on the padded width ("wide grid", ``im2col_wide``):
    every kernel offset then copies one contiguous run per plane, and the columns of a
    chunk's images sit side by side so that one GEMM per group covers the chunk. The data
    gradient's columns span whole planes (``col2im_planes``), so that its adds run across
    all the chunk's images at once.

Rows measured 1.3-1.7x faster than columns on ResNet-20's 16- to 64-channel layers, at
1 thread: the (pixels, K) @ (K, OC) GEMM runs 30-50% faster than (OC, K) @ (K, pixels)
for small OC, and the copy moves longer runs (bench/bench_conv.py, bench/bench_cnn.py).
"""
from __future__ import annotations

import numpy as np

from ember.backend import is_channels_last, xp_of
from ember.ops.conv_padded import Padded, _scratch
from ember.ops.im2col import (
    Geometry, batch_chunk, col2im, col2im_planes, im2col, im2col_wide, unused_wide_view, wide_length, wide_view,
)
from ember.ops.im2row import channels_last, offsets2im, row2im
from ember.parallel import one_blas_thread, run_parts, split, threads_for


# ---- the three GEMM passes, shared by conv2d and conv_transpose2d ----------------------------------
def _chunks(N: int, per_image: int, xp) -> tuple[list, int]:
    """The chunks of images to lower one at a time, as (start, stop) pairs, and how many threads
    to run them on (``ember.parallel``).

    On a GPU: one batched GEMM over the whole batch, one thread. On the CPU: cache-sized chunks
    (``batch_chunk``) of near-equal sizes, the larger first (the loops size their reused buffers
    by their first chunk), so that no chunk is a small remainder whose GEMMs run short (128
    images at 42 per chunk: 4 x 32, not 3 x 42 + 2); as many as the threads, or a multiple of
    them, so that each thread gets the same work; one thread in a process whose passes have all
    been too small to share (``ember.parallel.threads_for``).
    """
    if xp is not np:
        return [(0, N)], 1
    n = -(-N // batch_chunk(N, per_image))
    threads = threads_for(N * per_image)
    if threads > 1:
        n = min(N, -(-n // threads) * threads)
    return [(p[0], p[-1] + 1) for p in split(list(range(N)), n)], threads


def rows_pay(cin_per_group: int, KW: int = 1) -> bool:
    """Whether to lower channels-last (rows) rather than channels-first (columns), for a
    forward pass or a weight gradient.

    A channels-last window row is KW*C/G contiguous floats; with few input channels
    per group those runs are too short to copy fast (LeNet's 1-channel input measured
    2-3x slower) and the columns' OW-long runs win. From 8 channels per group on, or
    window rows of 24+ floats (LeNet-5's second convolution: 5x6), the rows' long runs
    and the (pixels, K) @ (K, OC/G) GEMM orientation win (1.3-1.7x faster on ResNet-20's
    16- to 64-channel layers; LeNet-5's second convolution forward 1.0 -> 0.6 ms, weight
    gradient 0.8 -> 0.5 ms, and 3x faster in the machine's slow mode).
    """
    return cin_per_group >= 8 or KW * cin_per_group >= 24


def rows_add_back(channels_per_group: int) -> bool:
    """Whether a lowered gradient is added back as rows (``offsets2im``/``row2im``: runs of
    C/G floats per pixel) rather than as columns (``col2im``: runs along the width): from 8
    channels per group. LeNet-5's second convolution (6 channels) adds back as columns even
    though its forward lowers rows: 1.0 against 1.5 ms."""
    return channels_per_group >= 8


def _lowered_weight(w, G: int, rows: bool):
    """Weight (OC, C/G, KH, KW) -> (G, K, OC/G) with K in the lowering's order: (kh, kw, c) or (c, kh, kw)."""
    xp = xp_of(w)
    OC, Cg, KH, KW = w.shape
    w5 = w.reshape(G, OC // G, Cg, KH, KW)
    return xp.ascontiguousarray(w5.transpose(0, 3, 4, 2, 1) if rows else w5.transpose(0, 2, 3, 4, 1)).reshape(
        G, -1, OC // G)


def _weight_from_lowered(gwk, shape, rows: bool):
    """Inverse of ``_lowered_weight``: (G, K, OC/G) -> (OC, C/G, KH, KW)."""
    xp = xp_of(gwk)
    OC, Cg, KH, KW = shape
    G = gwk.shape[0]
    if rows:
        return xp.ascontiguousarray(gwk.reshape(G, KH, KW, Cg, OC // G).transpose(0, 4, 3, 1, 2)).reshape(shape)
    return xp.ascontiguousarray(gwk.swapaxes(-1, -2)).reshape(shape)


def _slabs_pay(g: Geometry, OCg: int, G: int, xp) -> bool:
    """Whether ``Padded.width_rows`` beats full rows: one group and at most 64 output channels,
    where the copy (per pixel ~K floats, vs ~K*OC for the GEMM) is a large share of the work.
    Measured on ResNet-20's layers (batch 128, 2 threads, forward and grad of w): 16 channels
    1.25x faster than full rows, 32 channels 5-10% faster (ResNet-20 step 226 -> 216 ms), 64
    channels at 8x8 17% faster forward, 3% grad of w (step 210 -> 205 ms), W4's 64 channels at
    32x32 the same; the stride-2 layers 16 -> 32 and 32 -> 64 15-22% faster (step 211 -> 209.5,
    206 -> 204.5 ms); 128 channels 4-5% slower, 256 channels 20-30% slower (their full rows'
    GEMMs, K = 9*C long, run faster than the KH thinner ones and the sums of their results).
    On a GPU full rows: one GEMM of the whole batch and a few launches, where the slabs would take
    KH GEMMs, KH-1 sums and a copy per border column."""
    return xp is np and G == 1 and OCg <= 64


def _columns_channels_last(g: Geometry, OC: int, xp) -> bool:
    """Whether a columns forward writes its output channels-last: from 16 output channels on, on
    the CPU, with plain (not wide-grid) columns. The next layers (batch norm, ReLU, a rows
    convolution, residual sums) then need no transposing copy. The (pixels, K) @ (K, OC) GEMM
    per image runs 20% slower than (OC, K) @ (K, pixels) at 16 output channels, 1.3-1.7x faster
    from 32 (3-channel 32x32 input, batch chunks of 16); a 6-channel output (LeNet-5's first
    convolution) runs 2x slower and its NCHW pooling follows, so it stays NCHW."""
    return xp is np and OC >= 16 and not _wide(g, xp)


def _wide(g: Geometry, xp) -> bool:
    """Whether columns use the wide grid (``im2col_wide``): stride 1 and short output rows, on the
    CPU. Its copies and col2im adds run along whole padded planes instead of OW-long pieces, and
    one GEMM covers a chunk of images. A 5x5 convolution from 6 to 16 channels with 8-pixel
    output rows (batch 128), forward + backward: 3.6 -> 2.2 ms; one from 1 to 6 channels with
    24-pixel rows is faster as plain columns (2.4 vs 3.0 ms), where the runs are long already and
    the K-major layout costs two transposing copies. LeNet-5's second convolution (10-pixel rows)
    takes the wide grid, its first (28) does not. (On a GPU one kernel does col2im whatever the runs.)"""
    return xp is np and g.sh == 1 and g.sw == 1 and g.OW < 16


def _wide_gy(gy, n0: int, n1: int, buf, g: Geometry, Wp: int):
    """gy[n0:n1] (nb, OC, OH, OW) as K-major wide columns (OC, nb*Lw), zeros in the unused ones."""
    nb, OC, Lw = n1 - n0, gy.shape[1], wide_length(g, Wp)
    buf, gyw = _scratch(buf, (OC, nb, Lw), gy.dtype, np)
    wide_view(gyw, g, Wp)[...] = gy[n0:n1].transpose(1, 0, 2, 3)
    if g.OH > 1 and Wp > g.OW:
        unused_wide_view(gyw, g, Wp)[...] = 0
    return buf, gyw.reshape(OC, nb * Lw)


def _plane_gy(gy, n0: int, n1: int, buf, g: Geometry, padded: tuple):
    """gy[n0:n1] (nb, OC, OH, OW) as K-major columns on whole padded planes (OC, nb*Hp*Wp): column
    n*Hp*Wp + oh*Wp + ow holds output (oh, ow) of image n, every other column zero."""
    (nb, OC), (Hp, Wp) = (n1 - n0, gy.shape[1]), padded
    buf, gyp = _scratch(buf, (OC, nb, Hp * Wp), gy.dtype, np)
    gyp[...] = 0
    wide_view(gyp, g, Wp)[...] = gy[n0:n1].transpose(1, 0, 2, 3)
    return buf, gyp.reshape(OC, nb * Hp * Wp)


def _gemm_forward(src: Padded, wk, g: Geometry, b=None, rows: bool = True):
    """The conv of padded input ``src`` with wk (G, K, OCg) (``_lowered_weight``), + b (OC,): (N, OC, OH, OW).

    src pads channels-last (N, Hp, Wp, C) when ``rows`` else channels-first (N, C, Hp, Wp).
    Rows give the result in channels-last memory (an NCHW-shaped view of an (N, OH, OW, OC)
    array, the GEMM's own layout), and so do columns with many output channels
    (``_columns_channels_last``); other columns give NCHW memory.
    """
    y, per_image, work = _forward_pass(src, wk, g, b, rows)
    run_parts(work, *_chunks(src.shape[0], per_image, xp_of(src.x)))
    return y


def _forward_pass(src: Padded, wk, g: Geometry, b=None, rows: bool = True):
    """``_gemm_forward`` in parts: (y, floats lowered per image, work), where ``work(chunks)``
    fills y for a list of (n0, n1) chunks of images on the calling thread, with its own buffers."""
    xp = xp_of(src.x)
    G, K, OCg = wk.shape
    N, L, OC = src.shape[0], g.OH * g.OW, G * OCg
    KWC, plan = K // g.KH, rows and _slabs_pay(g, OCg, G, xp) and src.width_plan(g)
    slabs, wide = bool(plan), not rows and _wide(g, xp)
    wkt = None if rows else xp.ascontiguousarray(wk.swapaxes(-1, -2))  # (G, OCg, K), tiny
    nhwc = rows or _columns_channels_last(g, OC, xp)
    out = xp.empty((N, g.OH, g.OW, OC) if nhwc else (N, OC, g.OH, g.OW), dtype=src.dtype)
    per_image = plan[1] * g.OW * KWC if slabs else G * K * (wide_length(g, src.shape[3]) if wide else L)

    def work(chunks):  # one thread's share, with its own reused buffers
        buf = ybuf = tbuf = pbuf = None
        for n0, n1 in chunks:
            nb = n1 - n0
            if slabs:  # per image: y[n] = sum over kh of slab_kh[n] @ w[kh], written straight into out
                low, first = src.width_rows(n0, n1, g, buf)
                y3 = out[n0:n1].reshape(nb, L, OC)
                tbuf, tmp = _scratch(tbuf, (nb, L, OC), src.dtype, xp)
                for kh in range(g.KH):
                    s0 = first[kh] * g.OW
                    xp.matmul(low[:, s0:s0 + L], wk[0, kh * KWC:(kh + 1) * KWC], out=y3 if kh == 0 else tmp)
                    if kh:
                        y3 += tmp
            elif rows:
                pbuf, low = src.lowered_rows(n0, n1, g, G, pbuf, buf)  # (nb*L, G, K)
                yt = out[n0:n1].reshape(nb * L, G, OCg)  # the GEMM writes the output in place
                xp.matmul(low.transpose(1, 0, 2), wk, out=yt.transpose(1, 0, 2))  # per group (nb*L, K) @ (K, OCg)
            elif wide:
                pbuf, xc = src.chunk(n0, n1, pbuf)
                low = im2col_wide(xc, g, out=buf)  # (G*K, nb*Lw)
                ybuf, yw = _scratch(ybuf, (G, OCg, low.shape[-1]), src.dtype, xp)
                xp.matmul(wkt, low.reshape(G, K, -1), out=yw)  # one GEMM per group for the whole chunk
                y = wide_view(yw.reshape(OC, nb, -1), g, src.shape[3]).transpose(1, 0, 2, 3)
                if b is None:
                    out[n0:n1] = y
                else:  # the bias is added while the outputs are copied out
                    xp.add(y, b.reshape(-1, 1, 1), out=out[n0:n1])
            else:
                pbuf, xc = src.chunk(n0, n1, pbuf)
                low = im2col(xc, g, out=buf).reshape(nb, G, K, L)
                if nhwc:  # per image and group (L, K) @ (K, OCg), written channels-last
                    xp.matmul(low.swapaxes(-1, -2), wk, out=out[n0:n1].reshape(nb, L, G, OCg).transpose(0, 2, 1, 3))
                else:
                    xp.matmul(wkt, low, out=out[n0:n1].reshape(nb, G, OCg, L))
            if b is not None and not wide:  # while the chunk is in cache
                out[n0:n1] += b if nhwc else b.reshape(-1, 1, 1)
            buf = low if buf is None else buf

    return (out.transpose(0, 3, 1, 2) if nhwc else out), per_image, work


def _gemm_weight_grad(src: Padded, gy, g: Geometry, G: int, rows: bool = True):
    """gwk (G, K, OCg) = sum over output pixels of lowered(src)^T @ gy, per group (src: ``Padded``).

    gy (N, OC, OH, OW) may lie in either memory order; rows read it channels-last
    (``channels_last``: free when it already is), columns as it lies.
    """
    per_image, work = _weight_grad_pass(src, gy, g, G, rows)
    return _added(run_parts(work, *_chunks(gy.shape[0], per_image, xp_of(gy))))


def _added(parts: list):
    """The sum of partial sums, in their order (so that results do not depend on timing)."""
    total = parts[0]
    for part in parts[1:]:
        total += part
    return total


def _weight_grad_pass(src: Padded, gy, g: Geometry, G: int, rows: bool = True):
    """``_gemm_weight_grad`` in parts: (floats lowered per image, work), where ``work(chunks)``
    returns the partial gwk of a list of (n0, n1) chunks of images, computed on the calling thread."""
    xp = xp_of(src.x)
    N, OC = gy.shape[:2]
    OCg, L = OC // G, g.OH * g.OW
    K = src.shape[3 if rows else 1] // G * g.KH * g.KW
    KWC, plan = K // g.KH, rows and _slabs_pay(g, OCg, G, xp) and src.width_plan(g)
    slabs, wide, Wp = bool(plan), not rows and _wide(g, xp), src.shape[-1]
    gyl = channels_last(gy).transpose(0, 2, 3, 1) if rows else gy  # columns: either order, read in place
    per_image = plan[1] * g.OW * KWC if slabs else G * K * (wide_length(g, Wp) if wide else L)

    def work(chunks):  # one thread's share: its own buffers and its own partial sum
        # full rows start from their first chunk's product (one launch fewer on a GPU)
        gwk = None if rows and not slabs else xp.zeros((G, K, OCg), dtype=gy.dtype)
        buf = gbuf = pbuf = None
        for n0, n1 in chunks:
            nb = n1 - n0
            if slabs:  # per image: gw[kh] += slab_kh[n]^T @ gy[n], summed over the chunk's images
                low, first = src.width_rows(n0, n1, g, buf)
                gy3 = gyl[n0:n1].reshape(nb, L, OCg)
                gbuf, part = _scratch(gbuf, (nb, KWC, OCg), gy.dtype, xp)
                for kh in range(g.KH):
                    s0 = first[kh] * g.OW
                    xp.matmul(low[:, s0:s0 + L].transpose(0, 2, 1), gy3, out=part)
                    gwk[0, kh * KWC:(kh + 1) * KWC] += part.sum(axis=0)
            elif rows:
                pbuf, low = src.lowered_rows(n0, n1, g, G, pbuf, buf)
                # (G, K, nb*L) @ (G, nb*L, OCg): BLAS reads both transposed views without a copy.
                part = low.transpose(1, 2, 0) @ gyl[n0:n1].reshape(-1, G, OCg).transpose(1, 0, 2)
                gwk = part if gwk is None else _added([gwk, part])
            elif wide:  # the unused wide columns meet zeros in gy
                pbuf, xc = src.chunk(n0, n1, pbuf)
                low = im2col_wide(xc, g, out=buf)
                gbuf, gyw = _wide_gy(gyl, n0, n1, gbuf, g, Wp)
                gwk += low.reshape(G, K, -1) @ gyw.reshape(G, OCg, -1).swapaxes(-1, -2)
            else:
                pbuf, xc = src.chunk(n0, n1, pbuf)
                low = im2col(xc, g, out=buf)
                # (nb, G, K, L) @ (nb, G, L, OCg): the tall-result orientation measured ~25% faster.
                gwk += (low.reshape(nb, G, K, L) @ gyl[n0:n1].reshape(nb, G, OCg, L).swapaxes(-1, -2)).sum(axis=0)
            buf = low if buf is None else buf
        return xp.zeros((G, K, OCg), dtype=gy.dtype) if gwk is None else gwk

    return per_image, work


def _data_and_weight_grads(gsrc: Padded, wk2, g2: Geometry, src: Padded, gy, g: Geometry, G: int, rows: bool):
    """A convolution's data gradient, computed as the convolution of padded gy (``gsrc``) with the
    lowered flipped weight ``wk2`` (geometry g2), and its lowered weight gradient, in one parallel region:
    each thread takes a chunk of images through both passes in turn, so that the chunk's gy is
    still in cache for the second and one hand-off serves both. Returns (gx, gwk)."""
    gx, per_data, data_work = _forward_pass(gsrc, wk2, g2, None, rows)
    per_weight, weight_work = _weight_grad_pass(src, gy, g, G, rows)

    def work(chunks):
        partials = []
        for chunk in chunks:
            data_work([chunk])
            partials.append(weight_work([chunk]))
        return _added(partials)

    return gx, _added(run_parts(work, *_chunks(gy.shape[0], max(per_data, per_weight), xp_of(gy))))


def _gemm_data_grad(gy, wk, g: Geometry, padded_shape, rows: bool = True):
    """gxpad (padded_shape, channels-last when ``rows``) = the adjoint of ``_gemm_forward``.

    One GEMM lifts gy to lowered form (rows or columns), then row2im/col2im adds it back.
    gy may lie in either memory order (as in ``_gemm_weight_grad``).
    """
    xp = xp_of(gy)
    G, K, OCg = wk.shape
    N, L = gy.shape[0], g.OH * g.OW
    wkt = xp.ascontiguousarray(wk.swapaxes(-1, -2))  # (G, OCg, K), tiny
    wide, (Hp, Wp) = not rows and _wide(g, xp), padded_shape[-2:]
    gxpad = (xp.empty if wide else xp.zeros)(padded_shape, dtype=gy.dtype)  # wide chunks assign all of it
    gyl = channels_last(gy).transpose(0, 2, 3, 1) if rows else xp.ascontiguousarray(gy)
    by_offset = rows and xp is np  # CPU: one GEMM per kernel offset; GPU: one GEMM, one gather kernel
    if by_offset:  # (G, KH*KW, OCg, Cg): the weight of each kernel offset, transposed
        wko = xp.ascontiguousarray(wk.reshape(G, g.KH * g.KW, -1, OCg).swapaxes(-1, -2))

    def work(chunks):  # one thread's share, with its own reused buffers
        buf = gbuf = tbuf = None
        for n0, n1 in chunks:
            nb = n1 - n0
            if by_offset:  # per group and offset (nb*L, OCg) @ (OCg, Cg): contiguous blocks to add back
                buf, parts = _scratch(buf, (G, g.KH * g.KW, nb * L, wko.shape[-1]), gy.dtype, xp)
                gyt = gyl[n0:n1].reshape(-1, G, OCg).transpose(1, 0, 2)[:, None]  # (G, 1, nb*L, OCg)
                xp.matmul(gyt, wko, out=parts)
                offsets2im(parts, g, gxpad[n0:n1])
            elif rows:
                buf, low = _scratch(buf, (nb * L, G, K), gy.dtype, xp)
                gyt = gyl[n0:n1].reshape(-1, G, OCg)
                xp.matmul(gyt.transpose(1, 0, 2), wkt, out=low.transpose(1, 0, 2))
                row2im(low, g, gxpad[n0:n1])
            elif wide:  # on whole planes (``col2im_planes``); gy's zeros in unused columns stay zeros
                gbuf, gyw = _plane_gy(gyl, n0, n1, gbuf, g, (Hp, Wp))
                buf, low = _scratch(buf, (G, K, gyw.shape[-1]), gy.dtype, xp)
                xp.matmul(wk, gyw.reshape(G, OCg, -1), out=low)
                tbuf, planes = _scratch(tbuf, (padded_shape[1], gyw.shape[-1]), gy.dtype, xp)
                planes[...] = 0
                col2im_planes(low.reshape(G * K, -1), g, Wp, planes)
                gxpad[n0:n1] = planes.reshape(-1, nb, Hp, Wp).transpose(1, 0, 2, 3)
            else:
                buf, low = _scratch(buf, (nb, G, K, L), gy.dtype, xp)
                xp.matmul(wk, gyl[n0:n1].reshape(nb, G, OCg, L), out=low)
                col2im(low.reshape(nb, G * K, L), g, gxpad[n0:n1])

    run_parts(work, *_chunks(N, G * K * (Hp * Wp if wide else L), xp))
    return gxpad


def _bias_grad(gy):
    """Sum gy (N, OC, OH, OW) over all but the channel axis, reading memory in order."""
    N, OC = gy.shape[:2]
    xp = xp_of(gy)
    # One BLAS thread: a multi-threaded GEMV would leave OpenBLAS threads spinning into the
    # parallel loops that follow (ember.parallel).
    with one_blas_thread():
        if is_channels_last(gy):  # (N*OH*OW, OC) rows: their sum is a GEMV (4x faster than sum(axis=0))
            rows = gy.transpose(0, 2, 3, 1).reshape(-1, OC)
            return xp.ones(rows.shape[0], dtype=gy.dtype) @ rows
        # NCHW: sum each contiguous pixel plane by a GEMV (5x faster than sum(axis=2)), then the batch
        planes = xp.ascontiguousarray(gy).reshape(N * OC, -1)
        return (planes @ xp.ones(planes.shape[1], dtype=gy.dtype)).reshape(N, OC).sum(axis=0)

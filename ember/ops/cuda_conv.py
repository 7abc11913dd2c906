"""conv2d's GPU route: each pass one gather kernel and one cuBLAS product, no weight copies.

Chosen in ember.ops.conv.Conv2d (``cuda_conv.fits``); the CPU route, whose lowering is tuned
for caches and threads, is described in ember/ops/conv_lowering.py. On a GPU the batch is
lowered at once (in chunks only beyond ``_BUDGET`` floats), and the host's time per pass is
what counts (a ResNet-20 step is bound by it: bench/gpu_overhead.py), so every pass is a fixed,
small number of launches.

x: (N, C, H, W) in either memory order, w: (OC, C/G, KH, KW), G groups, Kg = C/G*KH*KW,
L = OH*OW. The rows of x hold, for each output pixel and group, its window in the weight's
own order (c, kh, kw), so that the weight's memory *is* the lowered weight: (G, OC/G, Kg).

    forward    rows = im2row(x)                 (N*L, G, Kg)   one gather launch, padding read as 0
               y    = rows @ w^T (per group)    (N*L, OC)      one cuBLAS call, y channels-last
    grad of w  gw   = gy^T @ rows (per group)   (OC/G, Kg)     rows gathered again; written in w's layout
    grad of x  d    = gy @ w (per group)        (N*L, G, Kg)   one cuBLAS call
               gx   = row2im(d)                 (N, C, H, W)   one gather launch: each input
                                                               element sums the rows that read it
    grad of b  per-channel sums of gy (cuda_norm's channel sums)

gy is read as the (N*L, OC) matrix of its channels-last memory (a free view when it lies
channels-last, as it does between convolutions, batch norms and ReLUs; else one copy).
"""
from __future__ import annotations

import functools

from ember.ops import cuda_kernels, cuda_norm
from ember.ops.cuda_gemm import gemm
from ember.ops.cuda_kernels import Loop, _cp, _sizes

_BUDGET = 2 ** 27  # floats of lowered rows per chunk of images (512 MiB in float32)


def fits(x, w, b=None) -> bool:
    """Whether conv2d of x (N, C, H, W) with w takes this route: CuPy float arrays of one dtype."""
    return x.ndim == 4 and cuda_kernels.fits(x, w, *((b,) if b is not None else ()))


@functools.cache
def _row2im_kernel(geometry: tuple, index: str, channels_last: bool):
    split = ("const int c = r % C; r /= C; const int w = r % W; r /= W; const int h = r % H;"
             if channels_last else
             "const int w = r % W; r /= W; const int h = r % H; r /= H; const int c = r % C;")
    return Loop(
        "ember_conv_row2im", "const T* rows, T* gx",
        _sizes(geometry) + f"""
        // one thread per element (n, c, h, w) of gx, i running through gx's memory in order:
        // the sum of the row entries that read that input element (a gather: no atomics)
        const int C = G * Cg;
        {index} r = i;
        {split}
        const {index} n = r / {'H' if channels_last else 'C'};
        const int grp = c / Cg, cg = c % Cg;
        T s = 0;
        for (int kh = 0; kh < KH; ++kh) {{
            const int hp = h + PT - kh * DH;  // = oh * SH for the output rows that read it
            if (hp < 0 || hp % SH != 0 || hp / SH >= OH) continue;
            for (int kw = 0; kw < KW; ++kw) {{
                const int wp = w + PL - kw * DW;
                if (wp < 0 || wp % SW != 0 || wp / SW >= OW) continue;
                const {index} pix = (n * OH + hp / SH) * OW + wp / SW;
                s += rows[(((pix * G + grp) * Cg + cg) * KH + kh) * KW + kw];
            }}
        }}
        gx[i] = s;
        """,
    )


def im2row(x, g, groups: int, pads: tuple, out=None):
    """Rows (N*OH*OW, G, C/G*KH*KW) of x (N, C, H, W; any strides) zero-padded by pads = (t, b, l, r),
    each row's window in (c, kh, kw) order, in one launch (into ``out``'s memory when given).

    NumPy equivalent::

        xp = pad(x, pads);  win[n, oh, ow, c, kh, kw] = xp[n, c, oh*sh + kh*dh, ow*sw + kw*dw]
        rows = win.reshape(N*OH*OW, G, -1)
    """
    return cuda_kernels.lower_rows(x, g, groups, pads, "c kh kw", out)


def row2im(rows, g, groups: int, pads: tuple, gx):
    """The adjoint of ``im2row``: gx (N, C, H, W), C-contiguous or channels-last, set to the sum
    over the row entries read from each of its elements (padding's entries dropped).

    NumPy equivalent::

        gxp = zeros(padded);  win = rows.reshape(N, OH, OW, C, KH, KW)
        for kh, kw: gxp[:, :, kh*dh : kh*dh + sh*(OH-1) + 1 : sh, kw*dw : ... : sw] += win[..., kh, kw] (as NCHW)
        gx[...] = gxp[:, :, t:t+H, l:l+W]
    """
    last = not gx.flags.c_contiguous  # then channels-last: i runs through (n, h, w, c)
    kernel = _row2im_kernel(cuda_kernels.geometry_of(gx.shape, g, groups, pads),
                            cuda_kernels.index_type(max(rows.size, gx.size)), last)
    kernel(gx.size, rows, gx, dtype=gx.dtype)
    return gx


def _chunks(N: int, per_image: int) -> list:
    """(n0, n1) chunks of the batch whose lowered rows fit ``_BUDGET`` floats (one chunk, usually:
    then the passes below use their arrays whole, without slicing views, each of which costs the
    host ~1 us on a GPU)."""
    step = max(1, _BUDGET // max(1, per_image))
    return [(n0, min(N, n0 + step)) for n0 in range(0, N, step)]


def gy_rows(gy):
    """gy (N, OC, OH, OW) as the (N*OH*OW, OC) matrix of its channels-last memory (a copy if NCHW)."""
    t = gy.transpose(0, 2, 3, 1)
    if not t.flags.c_contiguous:
        t = _cp().ascontiguousarray(t)
    return t.reshape(-1, gy.shape[1])


def forward(x, w, b, g, groups: int, pads: tuple):
    """conv2d of x (N, C, H, W) with w (OC, C/G, KH, KW) (+ b (OC,)): y (N, OC, OH, OW), lying channels-last."""
    N, OC = x.shape[0], w.shape[0]
    G, L, Kg = groups, g.OH * g.OW, w.size // OC
    y = _cp().empty((N, g.OH, g.OW, OC), dtype=x.dtype)
    y3 = y.reshape(N * L, G, OC // G)
    wt = w.reshape(G, OC // G, Kg).transpose(0, 2, 1)  # (G, Kg, OCg): a transposed view, no copy
    chunks = _chunks(N, L * Kg * G)
    for n0, n1 in chunks:
        whole = len(chunks) == 1
        rows = im2row(x if whole else x[n0:n1], g, G, pads)
        ys = y3 if whole else y3[n0 * L:n1 * L]
        gemm(rows.transpose(1, 0, 2), wt, ys.transpose(1, 0, 2))  # per group (nb*L, Kg) @ (Kg, OCg)
    if b is not None:
        y += b
    return y.transpose(0, 3, 1, 2)


def weight_grad(x, gy, g, groups: int, pads: tuple, wshape: tuple):
    """gw (OC, C/G, KH, KW): per group gy^T (OCg, N*L) @ rows (N*L, Kg), summed over chunks of the
    batch; gy (N, OC, OH, OW) or already its (N*L, OC) rows (``gy_rows``)."""
    N, OC, G, L = x.shape[0], wshape[0], groups, g.OH * g.OW
    Kg = wshape[1] * wshape[2] * wshape[3]
    gyt = (gy if gy.ndim == 2 else gy_rows(gy)).reshape(N * L, G, OC // G).transpose(1, 2, 0)  # (G, OCg, N*L)
    gw = _cp().empty(wshape, dtype=gy.dtype)
    gwk = gw.reshape(G, OC // G, Kg)
    chunks = _chunks(N, L * Kg * G)
    for k, (n0, n1) in enumerate(chunks):
        whole = len(chunks) == 1
        rows = im2row(x if whole else x[n0:n1], g, G, pads)
        gemm(gyt if whole else gyt[:, :, n0 * L:n1 * L], rows.transpose(1, 0, 2), gwk, beta=1.0 if k else 0.0)
    return gw


def data_grad(gy, w, g, groups: int, pads: tuple, xshape: tuple, channels_last: bool):
    """gx (N, C, H, W), in channels-last memory when asked: per group gy (N*L, OCg) @ w (OCg, Kg),
    added back to the input elements by ``row2im``; gy as in ``weight_grad``."""
    cp = _cp()
    N, C, H, W = xshape
    OC, G, L = w.shape[0], groups, g.OH * g.OW
    Kg = w.size // OC
    gy3 = (gy if gy.ndim == 2 else gy_rows(gy)).reshape(N * L, G, OC // G).transpose(1, 0, 2)  # (G, N*L, OCg)
    wk = w.reshape(G, OC // G, Kg)
    gx = cp.empty((N, H, W, C), dtype=gy.dtype).transpose(0, 3, 1, 2) if channels_last else cp.empty(xshape, gy.dtype)
    chunks = _chunks(N, L * Kg * G)
    if len(chunks) == 1:
        d = cp.empty((N * L, G, Kg), dtype=gy.dtype)  # the lowered gradient of x, summed back by row2im
        gemm(gy3, wk, d.transpose(1, 0, 2))
        return row2im(d, g, G, pads, gx)
    buf = cp.empty((chunks[0][1] * L * G * Kg,), dtype=gy.dtype)  # the first chunk is the largest
    for n0, n1 in chunks:
        d = buf[:(n1 - n0) * L * G * Kg].reshape((n1 - n0) * L, G, Kg)
        gemm(gy3[:, n0 * L:n1 * L], wk, d.transpose(1, 0, 2))
        row2im(d, g, G, pads, gx[n0:n1])
    return gx


def bias_grad(gy):
    """gb (OC,): the sum of gy (N, OC, OH, OW) over all but the channel axis."""
    return cuda_norm.sum_product((0, 2, 3), gy).reshape(gy.shape[1])

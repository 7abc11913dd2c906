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

gy is read as the (N*L, OC) matrix of its channels-last memory (as it lies between convolutions,
batch norms and ReLUs; else one copy). Each product names its matrices inside the arrays'
memory (``cuda_gemm.Mat``: rows, columns, leading dimension, spacing of the groups) instead of
building reshaped and transposed views, ~20 per convolution, each ~2 us of host time inside a
training step on a GPU host.
"""
from __future__ import annotations

import functools
import threading

from ember import backend
from ember.ops import cuda_kernels, cuda_norm
from ember.ops.cuda_gemm import Mat, gemm_mats
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
    each row's window in (c, kh, kw) order, in one launch (into ``out``'s memory when given),
    returned flat: the passes below name their matrices in it (``Mat``) without views.

    NumPy equivalent::

        xp = pad(x, pads);  win[n, oh, ow, c, kh, kw] = xp[n, c, oh*sh + kh*dh, ow*sw + kw*dw]
        rows = win.reshape(-1)
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


_SCRATCH: dict = {}  # (thread, stream, device, dtype) -> the flat scratch buffer of ``scratch``


def scratch(like, n: int):
    """A flat buffer of at least n elements of like's dtype, on its device, for what lives only
    within one pass: the lowered rows, or the lowered gradient of x. One buffer serves every
    convolution run from this thread on the current stream, grown to the largest asked for: the
    kernels and cuBLAS calls of one stream run in order, so a pass's gather never overwrites rows
    that an earlier pass's product still reads. (An allocation costs ~6 us of host time inside a
    training step on a GPU host; this saves two per convolution.) ``ember.cuda.empty_cache``
    frees these buffers."""
    cp = _cp()
    key = (threading.get_ident(), cp.cuda.get_current_stream().ptr, getattr(like.data, "device_id", 0), like.dtype)
    buf = _SCRATCH.get(key)
    if buf is None or buf.size < n:
        _SCRATCH.pop(key, None)  # (the pool may reuse the old block for the new one)
        buf = _SCRATCH[key] = cp.empty(n, dtype=like.dtype)
    return buf


def free_scratch() -> None:
    """Drop the scratch buffers (their memory returns to CuPy's pool)."""
    _SCRATCH.clear()


def gy_channels_last(gy):
    """gy (N, OC, OH, OW) itself when it lies channels-last (then its memory is the (N*OH*OW, OC)
    matrix the passes below read), else a copy of it that does."""
    if backend.is_channels_last(gy):
        return gy
    return _cp().ascontiguousarray(gy.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def _dense(w):
    return w if w.flags.c_contiguous else _cp().ascontiguousarray(w)


def forward(x, w, b, g, groups: int, pads: tuple):
    """conv2d of x (N, C, H, W) with w (OC, C/G, KH, KW) (+ b (OC,)): y (N, OC, OH, OW), lying channels-last."""
    N, OC = x.shape[0], w.shape[0]
    G, L, Kg = groups, g.OH * g.OW, w.size // OC
    OCg = OC // G
    y = backend.empty_in_layout(_cp(), (N, OC, g.OH, g.OW), x.dtype, True)  # memory: the (N*L, OC) matrix of outputs
    wt = Mat(_dense(w), Kg, OCg, ld=Kg, step=OCg * Kg, t=True)  # group g's w[g]^T (Kg, OCg): w read transposed
    chunks = _chunks(N, L * Kg * G)
    for n0, n1 in chunks:
        P = (n1 - n0) * L  # output pixels in this chunk
        rows = im2row(x if len(chunks) == 1 else x[n0:n1], g, G, pads, scratch(x, P * G * Kg))
        # per group g: rows[:, g] (P, Kg) @ w[g]^T (Kg, OCg) -> columns g*OCg.. of y's rows from n0*L
        gemm_mats(Mat(rows, P, Kg, ld=G * Kg, step=Kg), wt, Mat(y, P, OCg, ld=OC, step=OCg, offset=n0 * L * OC), G)
    if b is not None:
        y_rows = y.transpose(0, 2, 3, 1)  # (N, OH, OW, OC): C-contiguous, so the add runs flat
        y_rows += b
    return y


def weight_grad(x, gy, g, groups: int, pads: tuple, wshape: tuple):
    """gw (OC, C/G, KH, KW): per group gy^T (OCg, N*L) @ rows (N*L, Kg), summed over chunks of the
    batch; gy (N, OC, OH, OW), best lying channels-last (``gy_channels_last``)."""
    N, OC, G, L = x.shape[0], wshape[0], groups, g.OH * g.OW
    OCg, Kg = OC // G, wshape[1] * wshape[2] * wshape[3]
    gy = gy_channels_last(gy)
    gw = _cp().empty(wshape, dtype=gy.dtype)
    chunks = _chunks(N, L * Kg * G)
    for k, (n0, n1) in enumerate(chunks):
        P = (n1 - n0) * L
        rows = im2row(x if len(chunks) == 1 else x[n0:n1], g, G, pads, scratch(x, P * G * Kg))
        # per group g: gy[:, g]^T (OCg, P) @ rows[:, g] (P, Kg) -> gw[g] (OCg, Kg), summed over chunks
        gemm_mats(Mat(gy, OCg, P, ld=OC, step=OCg, t=True, offset=n0 * L * OC), Mat(rows, P, Kg, ld=G * Kg, step=Kg),
                  Mat(gw, OCg, Kg, ld=Kg, step=OCg * Kg), G, beta=1.0 if k else 0.0)
    return gw


def data_grad(gy, w, g, groups: int, pads: tuple, xshape: tuple, channels_last: bool):
    """gx (N, C, H, W), in channels-last memory when asked: per group gy (N*L, OCg) @ w (OCg, Kg),
    added back to the input elements by ``row2im``; gy as in ``weight_grad``."""
    cp = _cp()
    N, C, H, W = xshape
    OC, G, L = w.shape[0], groups, g.OH * g.OW
    OCg, Kg = OC // G, w.size // OC
    gy, wk = gy_channels_last(gy), Mat(_dense(w), OCg, Kg, ld=Kg, step=OCg * Kg)  # group g's w[g] (OCg, Kg)
    gx = backend.empty_in_layout(cp, xshape, gy.dtype, channels_last)
    chunks = _chunks(N, L * Kg * G)
    d = scratch(gy, chunks[0][1] * L * G * Kg)  # the lowered gradient of x (the first chunk is the largest)
    for n0, n1 in chunks:
        P = (n1 - n0) * L
        # per group g: gy[:, g] (P, OCg) @ w[g] (OCg, Kg) -> d[:, g] (P, Kg), summed back into gx by row2im
        gemm_mats(Mat(gy, P, OCg, ld=OC, step=OCg, offset=n0 * L * OC), wk, Mat(d, P, Kg, ld=G * Kg, step=Kg), G)
        row2im(d, g, G, pads, gx if len(chunks) == 1 else gx[n0:n1])
    return gx


def bias_grad(gy):
    """gb (OC,): the sum of gy (N, OC, OH, OW) over all but the channel axis."""
    return cuda_norm.sum_product((0, 2, 3), gy).reshape(gy.shape[1])

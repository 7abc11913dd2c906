"""Matrix products of strided GPU views straight through cuBLAS: ``gemm(a, b, out)``.

The convolutions' GPU route (ember/ops/cuda_conv.py) multiplies views: a weight read
transposed, one group's columns of the lowered rows, an output written into every G-th block of
columns. cuBLAS reads any matrix whose rows (or columns) are evenly spaced, given the spacing
(the "leading dimension") and whether to read it transposed, so ``gemm`` hands it those views
as they are, in one call, with nothing copied and nothing checked twice. (``cupy.matmul`` of a
small 2-D product cost 18-33 us of host time on H200 hosts, a batched one 24-42 us;
bench/gpu_overhead.py times ``gemm`` beside it.)

cuBLAS is column-major. A row-major (r, c) matrix with row stride ld is, to cuBLAS, the
column-major (c, r) matrix with leading dimension ld: its transpose. So the row-major product
C = op(A) @ op(B) is computed as the column-major C^T = op(B)^T @ op(A)^T: the operands swap
places, and each is read transposed exactly when it is stored transposed (a view such as
``w.T``, whose unit stride runs down its columns).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ember import backend

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
# alpha and beta are read by cuBLAS from host memory (CuPy's handles use host pointer mode): the
# arrays are kept here and their addresses looked up once (a NumPy .ctypes lookup costs ~2 us)
_SCALARS = {(dt, v): np.array(v, dtype=dt) for dt in (_F32, _F64) for v in (0.0, 1.0)}
_ADDRESS = {key: a.ctypes.data for key, a in _SCALARS.items()}
_CUBLAS = []  # CuPy's cuBLAS bindings and its handle getter, looked up on first use


def _layout(a, rows: int, cols: int):
    """(transposed, leading dimension) of the last two axes of view a, a (rows, cols) matrix to
    cuBLAS: (False, row stride) when its rows are contiguous runs, (True, column stride) when
    its columns are; None when neither (then the caller copies or falls back)."""
    item = a.itemsize
    s_r, s_c = a.strides[-2], a.strides[-1]
    if (s_c == item or cols == 1) and s_r % item == 0 and s_r // item >= max(1, cols):
        return False, max(1, s_r // item) if rows > 1 else max(1, cols)
    if (s_r == item or rows == 1) and s_c % item == 0 and s_c // item >= max(1, rows):
        return True, max(1, s_c // item) if cols > 1 else max(1, rows)
    return None


def _batch_stride(a) -> int:
    """Elements between consecutive matrices of a 3-D view (0 for a broadcast operand)."""
    return 0 if a.shape[0] == 1 else a.strides[0] // a.itemsize


def _blas():
    """(CuPy's cuBLAS bindings, the current device's handle, which CuPy keeps per device and
    thread). tests/cuda_emulator.py replaces this."""
    if not _CUBLAS:
        try:
            from cupy_backends.cuda.libs import cublas
        except ImportError:  # older CuPy
            from cupy.cuda import cublas
        device = backend._cupy.cuda.device
        handle = getattr(device, "get_cublas_handle", None) or (lambda: device.Device().cublas_handle)
        _CUBLAS.extend([cublas, handle])
    return _CUBLAS[0], _CUBLAS[1]()


def _ptr(a) -> int:
    """Device address of a's first element (a NumPy array's host address under the emulator)."""
    return a.ctypes.data if isinstance(a, np.ndarray) else a.data.ptr


class Mat(NamedTuple):
    """A matrix inside a dense GPU array's memory, or one per group at a fixed spacing, named
    without making a view (each CuPy view costs the host ~2 us inside a training step; a
    convolution's three products needed ~20 of them).

    Group g's matrix has ``rows`` x ``cols`` elements; element (r, c) lies at element
    ``offset + g * step + r * ld + c`` of ``array``'s memory (``ld``, the "leading dimension":
    elements from one row to the next), or at ``offset + g * step + c * ld + r`` when ``t`` (the
    memory holds its transpose). NumPy equivalent, for a C-contiguous ``array``::

        flat = array.reshape(-1)[offset + g * step:]
        m = as_strided(flat, (rows, cols), (1, ld) if t else (ld, 1))  # (in elements)
    """
    array: object
    rows: int
    cols: int
    ld: int
    step: int = 0
    t: bool = False
    offset: int = 0


def gemm_mats(a: Mat, b: Mat, out: Mat, groups: int = 1, beta: float = 0.0):
    """Per group g < ``groups``: ``out_g = a_g @ b_g + beta * out_g``, in one cuBLAS call. The
    arrays must lie densely in memory (any axis order) in one float dtype, out untransposed, a
    with at least one column; every matrix must lie inside its array (checked: cuBLAS would
    read or write past it).

    NumPy equivalent: ``for g in range(groups): out_g[...] = a_g @ b_g + beta * out_g``.
    """
    M, K, N = a.rows, a.cols, b.cols
    if b.rows != K or out.rows != M or out.cols != N or out.t:
        raise ValueError(f"gemm: shapes do not chain: a ({M}, {K}) @ b ({b.rows}, {N}) -> out "
                         f"({out.rows}, {out.cols}{', transposed' if out.t else ''})")
    if M == 0 or N == 0:
        return
    dt = out.array.dtype
    if K == 0 or dt not in (_F32, _F64) or not (_inside(a, groups, dt) and _inside(b, groups, dt)
                                                and _inside(out, groups, dt)):
        _refuse(a, b, out, groups)
    item = dt.itemsize
    _call(dt, a.t, b.t, M, N, K, _ptr(a.array) + a.offset * item, a.ld, a.step,
          _ptr(b.array) + b.offset * item, b.ld, b.step, _ptr(out.array) + out.offset * item, out.ld, out.step,
          groups, beta)


def _inside(m: Mat, groups: int, dt) -> bool:
    """Whether m's matrices lie inside its array, which lies densely in memory, of dtype dt."""
    x = m.array
    inner, outer = (m.rows, m.cols) if m.t else (m.cols, m.rows)
    return (x.dtype == dt and m.offset >= 0 and m.step >= 0 and 0 < inner <= m.ld and outer > 0
            and m.offset + (groups - 1) * m.step + (outer - 1) * m.ld + inner <= x.size
            and (x.flags.c_contiguous or backend.is_dense(x)))


def _refuse(a: Mat, b: Mat, out: Mat, groups: int):
    """Raise the error that says why ``gemm_mats`` cannot run these operands."""
    dt = out.array.dtype
    if a.cols == 0:
        raise ValueError("gemm: a has no columns (K = 0)")
    for name, m in (("a", a), ("b", b), ("out", out)):
        x = m.array
        if x.dtype != dt or dt not in (_F32, _F64):
            raise TypeError(f"gemm: {name} is {x.dtype}, expected {dt} (float32 or float64, one for all)")
        if not (x.flags.c_contiguous or backend.is_dense(x)):
            raise ValueError(f"gemm: {name} does not lie densely in memory (strides {x.strides})")
        if not _inside(m, groups, dt):
            raise ValueError(f"gemm: {name}'s matrices ({m.rows}, {m.cols}), leading dimension {m.ld}, "
                             f"{groups} of them {m.step} apart from element {m.offset}, do not fit in "
                             f"its {x.size} elements")
    raise RuntimeError("gemm: _refuse called on operands that fit")  # (unreachable)


def gemm(a, b, out, beta: float = 0.0):
    """``out[...] = a @ b + beta * out`` for float32/float64 CuPy views, 2-D or 3-D (batched),
    in one cuBLAS call and no copies. Operands may be strided views (transposed, sliced,
    every other row) as long as each matrix has unit stride along its rows or its columns;
    out must have unit stride along its rows. 3-D operands may broadcast a batch of 1.
    Anything else goes through ``cupy.matmul``.

    NumPy equivalent: ``out[...] = a @ b + beta * out``.
    """
    M, K = a.shape[-2:]
    N = b.shape[-1]
    if b.shape[-2] != K or out.shape[-2:] != (M, N) or a.ndim != b.ndim or a.ndim != out.ndim:
        raise ValueError(f"gemm: shapes do not chain: a {a.shape} @ b {b.shape} -> out {out.shape}")
    dt = out.dtype
    la, lb, lo = _layout(a, M, K), _layout(b, K, N), _layout(out, M, N)
    if (dt not in (_F32, _F64) or a.dtype != dt or b.dtype != dt or la is None or lb is None
            or lo is None or lo[0] or a.ndim not in (2, 3) or min(M, N, K) == 0):
        return _fallback(a, b, out, beta)
    batch = out.shape[0] if out.ndim == 3 else 1
    if out.ndim == 3 and (a.shape[0] not in (1, batch) or b.shape[0] not in (1, batch) or out.strides[0] == 0):
        raise ValueError(f"gemm: batch sizes differ: a {a.shape}, b {b.shape}, out {out.shape}")
    three = out.ndim == 3
    _call(dt, la[0], lb[0], M, N, K, _ptr(a), la[1], _batch_stride(a) if three else 0,
          _ptr(b), lb[1], _batch_stride(b) if three else 0, _ptr(out), lo[1],
          out.strides[0] // out.itemsize if three else 0, batch, beta)
    return out


def _call(dt, ta: bool, tb: bool, M: int, N: int, K: int, pa: int, lda: int, sa: int, pb: int, ldb: int,
          sb: int, po: int, ldo: int, so: int, batch: int, beta: float) -> None:
    """The cuBLAS call: row-major out (M, N) = op(A) (M, K) @ op(B) (K, N) + beta * out, matrices
    at addresses p*, leading dimensions ld*, batch strides s* (elements), A/B stored transposed
    when ta/tb."""
    cublas, handle = _blas()
    one, scale = _ADDRESS[dt, 1.0], _ADDRESS.get((dt, float(beta)))
    if scale is None:
        keep = np.array(beta, dtype=dt)
        scale = keep.ctypes.data
    # column-major C^T (N, M) = op(B)^T (N, K) @ op(A)^T (K, M): B first, then A
    opb = cublas.CUBLAS_OP_T if tb else cublas.CUBLAS_OP_N
    opa = cublas.CUBLAS_OP_T if ta else cublas.CUBLAS_OP_N
    if batch == 1:  # one product: plain GEMM (a batched call costs the host more)
        f = cublas.sgemm if dt == _F32 else cublas.dgemm
        f(handle, opb, opa, N, M, K, one, pb, ldb, pa, lda, scale, po, ldo)
    else:
        f = cublas.sgemmStridedBatched if dt == _F32 else cublas.dgemmStridedBatched
        f(handle, opb, opa, N, M, K, one, pb, ldb, sb, pa, lda, sa, scale, po, ldo, so, batch)


def _fallback(a, b, out, beta: float):
    xp = backend.xp_of(out)
    if beta == 0:
        return xp.matmul(a, b, out=out) if out.flags.c_contiguous else _assign(out, xp.matmul(a, b))
    out *= out.dtype.type(beta)
    out += xp.matmul(a, b)
    return out


def _assign(out, value):
    out[...] = value
    return out

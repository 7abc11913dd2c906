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
    cublas, handle = _blas()
    one, scale = _ADDRESS[dt, 1.0], _ADDRESS.get((dt, float(beta)))
    if scale is None:
        keep = np.array(beta, dtype=dt)
        scale = keep.ctypes.data
    # column-major C^T (N, M) = op(B)^T (N, K) @ op(A)^T (K, M): B first, then A
    tb = cublas.CUBLAS_OP_T if lb[0] else cublas.CUBLAS_OP_N
    ta = cublas.CUBLAS_OP_T if la[0] else cublas.CUBLAS_OP_N
    if batch == 1:  # one product: plain GEMM (a batched call costs the host more), batch 0's addresses
        f = cublas.sgemm if dt == _F32 else cublas.dgemm
        f(handle, tb, ta, N, M, K, one, _ptr(b), lb[1], _ptr(a), la[1], scale, _ptr(out), lo[1])
    else:
        f = cublas.sgemmStridedBatched if dt == _F32 else cublas.dgemmStridedBatched
        f(handle, tb, ta, N, M, K, one, _ptr(b), lb[1], _batch_stride(b), _ptr(a), la[1],
          _batch_stride(a), scale, _ptr(out), lo[1], out.strides[0] // out.itemsize, batch)
    return out


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

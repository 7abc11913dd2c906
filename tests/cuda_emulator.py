"""Run ember's GPU code paths on the CPU: a g++ emulation of the CuPy kernels in ember/ops/cuda_kernels.py.

For machines without a GPU. Used as a pytest plugin, it makes ember treat every NumPy
array as a "CuPy" array, so each op takes its GPU branch (``xp is not np``), and every
ElementwiseKernel body of ember's GPU code is compiled with g++ as one loop over ``i``
(atomicAdd becomes ``+=``), and so is every RawKernel of cuda_kernels.Loop (one "thread",
whose grid-stride loop visits every i); ReductionKernel map expressions are evaluated with
NumPy, and cuBLAS's GEMMs (ember/ops/cuda_gemm.py) by NumPy on the raw addresses.
Everything else is NumPy. It checks index arithmetic and dispatch, not CUDA itself
(NVRTC, launch configuration, atomics and speed need a real GPU: bench/gpu_check.py)::

    python -m pytest -p tests.cuda_emulator -q tests/test_ops.py tests/test_pool.py -k "not gpu"
    EMBER_EMULATE_GPU_TESTS=1 python -m pytest -p tests.cuda_emulator -q tests/test_gpu_routes.py

(the second runs the gpu-marked kernel and route tests; those about devices themselves, marked
``device``, are skipped). tests/test_gpu_emulated.py runs both in CI when g++ is there.

Random draws stay NumPy's and arrays report device "cpu"; tests about devices themselves
are meaningless under this plugin.
"""
import ctypes
import hashlib
import os
import subprocess
import sys
import tempfile
import types

import numpy as np

_BUILD = tempfile.mkdtemp(prefix="ember_cuda_emulator_")


_CT = {"int32": "int", "int64": "long long", "bool": "bool", "float32": "float", "float64": "double"}
_NP = {"int32": np.int32, "int64": np.int64, "bool": np.bool_, "float32": np.float32, "float64": np.float64}


def _parse(spec: str) -> list:
    """'raw T x, int32 n' -> [(True, 'T', 'x'), (False, 'int32', 'n')]."""
    out = []
    for part in spec.split(","):
        toks = part.split()
        raw = toks[0] == "raw"
        if raw:
            toks = toks[1:]
        out.append((raw, toks[0], toks[1]))
    return out


# CUDA's device functions the kernels use, for g++ (atomicAdd on one thread is a plain add)
_PRELUDE = """
#include <cmath>
#include <cstddef>
using std::sqrt;
using std::max;
inline double rsqrt(double v) { return 1 / std::sqrt(v); }
inline float rsqrt(float v) { return 1 / std::sqrt(v); }
template <class U> U atomicAdd(U* a, U v) { U o = *a; *a += v; return o; }
"""


def _compile(src: str, name: str):
    """The shared library g++ makes of ``src`` (built once per source, in this run's build folder)."""
    h = hashlib.md5(src.encode()).hexdigest()[:10]
    so = os.path.join(_BUILD, f"{name}_{h}.so")
    if not os.path.exists(so):
        with open(so[:-3] + ".cpp", "w") as f:
            f.write(src)
        subprocess.run(["g++", "-O1", "-shared", "-fPIC", "-o", so, so[:-3] + ".cpp"], check=True)
    return ctypes.CDLL(so)


class ElementwiseKernel:
    """cupy.ElementwiseKernel's calling convention; the body runs as C++ in a loop over i (arrays broadcast)."""

    def __init__(self, in_params, out_params, operation, name):
        self.ins, self.outs, self.op, self.name = _parse(in_params), _parse(out_params), operation, name
        self.libs = {}

    def _lib(self, T, params):
        key = (T, tuple(params))
        if key in self.libs:
            return self.libs[key]
        lines = []
        for k, (raw, typ, nm, is_out, is_arr) in enumerate(params):
            ct = T if typ == "T" else _CT[typ]
            if raw:
                lines.append(f"{ct}* {nm} = ({ct}*)args[{k}];")
            elif is_arr:
                lines.append(f"{ct}& {nm} = (({ct}*)args[{k}])[i];")
            else:
                lines.append(f"const {ct} {nm} = *({ct}*)args[{k}];")
        src = _PRELUDE + f"""
{f"typedef {T} T;" if T else ""}
extern "C" void run(long n, void** args) {{
  for (ptrdiff_t i = 0; i < n; ++i) {{
    {' '.join(lines)}
    {self.op}
  }}
}}
"""
        lib = self.libs[key] = _compile(src, self.name)
        return lib

    def __call__(self, *args, size=None):
        specs = self.ins + self.outs
        if len(args) == len(self.ins):  # outputs omitted: allocate like CuPy (broadcast shape, dtype T)
            arrs = [a for (raw, _, _), a in zip(self.ins, args) if not raw and isinstance(a, np.ndarray)]
            tdt = next(np.asarray(a).dtype for (raw, typ, _), a in zip(self.ins, args) if typ == "T")
            shp = np.broadcast_shapes(*[a.shape for a in arrs])
            outs = [np.empty(shp, tdt if typ == "T" else _NP[typ]) for _, typ, _ in self.outs]
            self(*args, *outs)
            return outs[0] if len(outs) == 1 else tuple(outs)
        assert len(args) == len(specs), (self.name, len(args), len(specs))
        arrays = [a for (raw, _, _), a in zip(specs, args) if not raw and isinstance(a, np.ndarray)]
        shape = np.broadcast_shapes(*[a.shape for a in arrays]) if size is None else (size,)
        T = None
        for (raw, typ, _), a in zip(specs, args):
            if typ == "T" and isinstance(a, (np.ndarray, np.generic)):
                T = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}[np.asarray(a).dtype]
                break
        Tn = np.float32 if T == "float" else np.float64
        params, bufs, writeback = [], [], []
        for k, ((raw, typ, nm), a) in enumerate(zip(specs, args)):
            is_out = k >= len(self.ins)
            dt = Tn if typ == "T" else _NP[typ]
            if raw:
                assert a.dtype == dt and a.flags.c_contiguous, (self.name, nm)
                buf = a
                params.append((raw, typ, nm, is_out, True))
            elif isinstance(a, np.ndarray):
                assert a.dtype == dt, (self.name, nm, a.dtype, dt)
                buf = np.ascontiguousarray(np.broadcast_to(a, shape)).copy()
                params.append((raw, typ, nm, is_out, True))
                if is_out:
                    writeback.append((a, buf))
            else:
                if isinstance(a, np.generic):
                    assert typ != "T" or a.dtype == dt, (self.name, nm, a.dtype)
                buf = np.array(a, dtype=dt)
                params.append((raw, typ, nm, is_out, False))
            bufs.append(buf)
        lib = self._lib(T, params)
        ptrs = (ctypes.c_void_p * len(bufs))(*[b.ctypes.data for b in bufs])
        lib.run(ctypes.c_long(int(np.prod(shape))), ptrs)
        for a, buf in writeback:
            a[...] = buf
        outs = [a for (raw, _, _), a in zip(self.outs, args[len(self.ins):])]
        return outs[0] if len(outs) == 1 else tuple(outs)


class RawKernel:
    """cupy.RawKernel for the grid-stride loops of ember.ops.cuda_kernels.Loop: the source compiled
    with g++ and called once with one block of one thread, whose loop then visits every i."""

    _PRELUDE = _PRELUDE + """
struct Dim3 { unsigned x, y, z; };
static const Dim3 blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
#define __global__
"""
    _C = {np.dtype(np.int32): ctypes.c_int, np.dtype(np.int64): ctypes.c_longlong,
          np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double}

    def __init__(self, code, name):
        self.fn = getattr(_compile(self._PRELUDE + code, name), name)

    def __call__(self, grid, block, args):
        cargs = []
        for a in args:
            if isinstance(a, np.ndarray):  # dense in some axis order, read from its first element
                dense = a.transpose(np.argsort([-st for st in a.strides], kind="stable"))
                assert a.size <= 1 or dense.flags.c_contiguous, "RawKernel: pointer arguments must lie densely"
                cargs.append(ctypes.c_void_p(a.ctypes.data))
            else:
                cargs.append(self._C[np.asarray(a).dtype](a))
        self.fn(*cargs)


class ReductionKernel:
    """The sum-reductions cuda_kernels.py defines: the map expression (valid Python too) summed by NumPy."""

    def __init__(self, in_params, out_params, map_expr, reduce_expr, post_map_expr, identity, name):
        self.ins = _parse(in_params)
        self.map_expr = map_expr
        assert reduce_expr == "a + b" and post_map_expr == "y = a" and identity == "0"

    def __call__(self, *args, axis=None, keepdims=False):
        env = {nm: a for (_, _, nm), a in zip(self.ins, args)}
        v = eval(self.map_expr, {}, env)
        return np.asarray(v.sum(axis=axis, keepdims=keepdims), dtype=args[0].dtype)


class _Cublas:
    """cuBLAS's column-major GEMMs on raw host addresses (what ember.ops.cuda_gemm calls), by NumPy:
    so that the emulator checks cuda_gemm's leading dimensions, transposes and batch strides."""

    CUBLAS_OP_N, CUBLAS_OP_T = 0, 1

    @staticmethod
    def _mat(ptr, dtype, rows, cols, ld, extra=0):
        """The column-major (rows, cols) matrix at address ptr with leading dimension ld."""
        item = np.dtype(dtype).itemsize
        n = (cols - 1) * ld + rows + extra
        flat = np.frombuffer((ctypes.c_char * (n * item)).from_address(ptr), dtype=dtype)
        return np.lib.stride_tricks.as_strided(flat, (rows, cols), (item, ld * item))

    def _gemm(self, dtype, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
        a = self._mat(A, dtype, k, m, lda).T if ta else self._mat(A, dtype, m, k, lda)
        b = self._mat(B, dtype, n, k, ldb).T if tb else self._mat(B, dtype, k, n, ldb)
        c = self._mat(C, dtype, m, n, ldc)
        al, be = (self._mat(p, dtype, 1, 1, 1)[0, 0] for p in (alpha, beta))
        c[...] = al * (a @ b) + (be * c if be != 0 else 0)

    def _batched(self, dtype, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, count):
        item = np.dtype(dtype).itemsize
        for i in range(count):
            self._gemm(dtype, ta, tb, m, n, k, alpha, A + i * sa * item, lda, B + i * sb * item, ldb, beta,
                       C + i * sc * item, ldc)

    def sgemm(self, handle, *args):
        self._gemm(np.float32, *args)

    def dgemm(self, handle, *args):
        self._gemm(np.float64, *args)

    def sgemmStridedBatched(self, handle, *args):
        self._batched(np.float32, *args)

    def dgemmStridedBatched(self, handle, *args):
        self._batched(np.float64, *args)


def __getattr__(name):  # everything else: NumPy (so xp_of() returning this module still works)
    return getattr(np, name)


class _NdarrayType(type):
    """Stands for ``cupy.ndarray``: ``isinstance`` sees NumPy arrays, and calling it makes a NumPy
    array the way ``cupy.ndarray(shape, dtype, memptr=..., strides=...)`` makes a CuPy one, over
    memory from ``cuda.alloc`` (here a NumPy byte buffer)."""

    def __instancecheck__(cls, obj):
        return isinstance(obj, np.ndarray)

    def __call__(cls, shape, dtype=float, memptr=None, strides=None):
        return np.ndarray(shape, dtype, buffer=memptr, strides=strides)


class ndarray(metaclass=_NdarrayType):
    pass


def _fake_cupy() -> types.ModuleType:
    """A module that is NumPy plus the two kernel classes (what ember's GPU branches call)."""
    mod = types.ModuleType("cupy_emulated")
    mod.__getattr__ = lambda name: getattr(np, name)
    mod.ndarray, mod.asnumpy = ndarray, np.asarray
    mod.cuda = types.SimpleNamespace(get_current_stream=lambda: types.SimpleNamespace(ptr=0),  # one stream
                                     alloc=lambda nbytes: np.empty(nbytes, dtype=np.uint8))
    mod.ElementwiseKernel, mod.ReductionKernel, mod.RawKernel = ElementwiseKernel, ReductionKernel, RawKernel
    mod.argsort = lambda a, axis=-1: np.argsort(a, axis=axis, kind="stable")  # CuPy's sort is always stable
    return mod


def install() -> None:
    """Route ember's array code through the emulated CuPy (call before running ops)."""
    from ember import backend
    import ember.tensor

    backend._cupy = _fake_cupy()
    from ember.ops import cuda_gemm

    cuda_gemm._blas = lambda: (_Cublas(), 0)
    on_cpu = backend.device_of
    backend.cupy_available = lambda: False  # keep the real-GPU tests skipped
    import ember.random

    original = ember.random.rng_for

    def rng_for(generator=None, like=None):  # draws stay NumPy's, as on the CPU
        return ember.random.get_generator(generator).np

    moved = backend.to_device

    def to_device(array, device):  # "moving" to the GPU copies, as a real move would
        return np.array(array, copy=True) if backend.Device(device).type == "cuda" else np.asarray(array)

    for name, mod in list(sys.modules.items()):  # also where they were imported by name
        if name.startswith("ember") and getattr(mod, "rng_for", None) is original:
            mod.rng_for = rng_for
        if name.startswith("ember") and getattr(mod, "device_of", None) is on_cpu:
            mod.device_of = lambda a: backend.CPU  # arrays still live on the CPU
        if name.startswith("ember") and getattr(mod, "to_device", None) is moved:
            mod.to_device = to_device
    cupyx = types.ModuleType("cupyx")
    cupyx.scatter_add = np.add.at
    sys.modules.setdefault("cupyx", cupyx)


def pytest_configure(config):  # used as a plugin: -p tests.cuda_emulator
    install()
    if os.environ.get("EMBER_EMULATE_GPU_TESTS"):  # run the gpu-marked tests too (kernels and routes)
        from ember import backend

        backend.cupy_available = lambda: True


def pytest_collection_modifyitems(config, items):
    """Skip the tests about devices themselves (marked ``device``): arrays here live on the CPU."""
    import pytest

    skip = pytest.mark.skip(reason="about devices themselves: meaningless under tests/cuda_emulator.py")
    for item in items:
        if item.get_closest_marker("device") is not None:
            item.add_marker(skip)

"""Array libraries and devices: the only module that imports CuPy.

Device follows data: a tensor lives where its array lives (``numpy.ndarray`` ->
"cpu", ``cupy.ndarray`` -> "cuda:N"). Ops never ask a global setting; they call
``xp_of(*arrays)`` to get the module (numpy or cupy) that computes on them.
"""
from __future__ import annotations

import numpy as np

from ember.errors import DeviceError
from ember.parallel import for_slices

try:  # CuPy is an optional extra; everything works without it.
    import cupy as _cupy  # type: ignore
except Exception:  # ImportError, or a CUDA library that fails to load
    _cupy = None


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def xp_of(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``."""
    if _cupy is not None:
        for a in arrays:
            if isinstance(a, _cupy.ndarray):
                return _cupy
    return np


class Device:
    """A device name: ``Device("cpu")``, ``Device("cuda")``, ``Device("cuda:1")``."""

    __slots__ = ("type", "index")

    def __init__(self, spec: "str | Device" = "cpu", index: int | None = None):
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        if not isinstance(spec, str):
            raise DeviceError(f"device: expected a name like 'cpu' or 'cuda:0', got {spec!r}")
        name, _, idx = spec.partition(":")
        if name not in ("cpu", "cuda"):
            raise DeviceError(f"device: unknown device type {name!r} (expected 'cpu' or 'cuda')")
        if idx:
            if not idx.isdigit():
                raise DeviceError(f"device: bad device index in {spec!r}")
            index = int(idx)
        if name == "cpu":
            index = None
        elif index is None:
            index = 0
        self.type, self.index = name, index

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        return f"device(type='{self.type}'" + ("" if self.index is None else f", index={self.index}") + ")"

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            other = Device(other)
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))


CPU = Device("cpu")


def device_of(array) -> Device:
    """The device an array lives on."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return Device("cuda", array.device.id)
    return CPU


def to_device(array, device: "str | Device"):
    """Copy ``array`` to ``device`` (no copy when it is already there)."""
    device = Device(device)
    if device.type == "cpu":
        return asnumpy(array)
    if not cupy_available():
        raise DeviceError(f"to: device {device} requested but CuPy with a CUDA GPU is not available")
    with _cupy.cuda.Device(device.index):
        if isinstance(array, _cupy.ndarray) and array.device.id == device.index:
            return array
        return _cupy.asarray(array)


def asnumpy(array) -> np.ndarray:
    """A NumPy array with the same contents (a no-op for NumPy arrays)."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy.asnumpy(array)
    return np.asarray(array)


def check_same_device(op: str, *arrays) -> None:
    """Raise DeviceError naming ``op`` when the arrays live on different devices."""
    if _cupy is None:  # without CuPy everything is on the CPU
        return
    # fast path (every GPU op passes here): the GPU index of each array, -1 for the CPU
    if len({getattr(a.data, "device_id", 0) if isinstance(a, _cupy.ndarray) else -1 for a in arrays}) <= 1:
        return
    devices = {device_of(a) for a in arrays}
    if len(devices) > 1:
        names = " and ".join(sorted(str(d) for d in devices))
        raise DeviceError(f"{op}: operands are on different devices ({names}); move them with .to(device)")


def scatter_add(target, index, values) -> None:
    """``target[index] += values`` where repeated indices accumulate (NumPy's ``add.at``)."""
    if _cupy is not None and isinstance(target, _cupy.ndarray):
        if hasattr(_cupy.add, "at"):  # CuPy 13+ (CuPy 14 deprecates cupyx.scatter_add)
            _cupy.add.at(target, index, values)
        else:
            import cupyx  # older CuPy: the atomic scatter-add lives in cupyx

            cupyx.scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)


def is_channels_last(x) -> bool:
    """Whether 4-D array x (N, C, H, W) lies in memory as (N, H, W, C), PyTorch's channels_last format.

    Rows-lowered convolutions return their output this way (ember.ops.conv_lowering), and
    elementwise ops, batch norm and ReLU keep it, so a network's activations stay channels-last.
    """
    return x.ndim == 4 and _lies_in(x, (0, 2, 3, 1))


def _lies_in(a, order: tuple) -> bool:
    """Whether a's elements fill a block of memory with its axes nested in ``order`` (outermost
    first): ``a.transpose(order)`` is C-contiguous. Read off the strides (axes of length 1 lie
    anywhere), without making the transposed view: on a GPU each view costs the host ~1 us,
    and most arrays of a training step are asked this."""
    if a.size == 0:
        return True
    shape, strides = a.shape, a.strides
    expect = a.itemsize
    for i in reversed(order):
        if shape[i] != 1:
            if strides[i] != expect:
                return False
            expect *= shape[i]
    return True


_CHANNELS_LAST = ((0, 2, 3, 1), (0, 3, 1, 2))  # (N, C, H, W) lying as (N, H, W, C), and back


def _memory_perm(a):
    """(perm, inverse): the axis order that lists a's axes from largest stride to smallest (how a
    lies in memory) and its inverse permutation, or None when a is C-contiguous. The common
    cases, channels-last (N, C, H, W) and (N, C, L), are spelled out: sorting costs the host a
    few microseconds, and GPU code asks this of most arrays."""
    if a.ndim < 2 or a.flags.c_contiguous:
        return None
    st = a.strides
    if a.ndim == 4 and st[1] < st[3] <= st[2] <= st[0]:
        return _CHANNELS_LAST
    if a.ndim == 3 and st[1] < st[2] <= st[0]:
        return (0, 2, 1), (0, 2, 1)
    perm = tuple(sorted(range(a.ndim), key=lambda i: -st[i]))
    return perm, tuple(sorted(range(a.ndim), key=lambda i: perm[i]))


def is_dense(a) -> bool:
    """Whether a fills a block of memory without gaps, in some order of its axes (C-contiguous,
    channels-last ...): then element i of a and of ``empty_as(a)`` sit at the same offset."""
    order = _memory_perm(a)
    return a.flags.c_contiguous if order is None else _lies_in(a, order[0])


def memory_order(a, *others) -> tuple:
    """a and ``others`` with their axes permuted so that a is C-contiguous where a permutation
    makes it so (a channels-last (N, C, H, W) becomes (N, H, W, C)); others of a's rank take the
    same permutation (broadcast statistics such as (1, C, 1, 1) too), scalars pass through.

    CuPy's elementwise kernels index every operand through its shape and strides unless all of
    them are C-contiguous, when a kernel runs along one flat index: batch norm's and ReLU's fused
    kernels ran ~3x slower on channels-last arrays (measured on an H200) until given them this way.
    """
    order = _memory_perm(a)
    if order is None:
        return (a, *others)
    perm = order[0]
    return tuple(t.transpose(perm) if getattr(t, "ndim", 0) == a.ndim else t for t in (a, *others))


def empty_in_order(xp, shape: tuple, order: tuple, dtype):
    """An uninitialized array of ``shape`` whose memory holds its axes nested in the order
    ``order[0]`` (outermost first; ``order[1]`` its inverse permutation, as ``_memory_perm``
    gives them), densely: ``empty([shape[i] for i in perm]).transpose(inverse)``. On CuPy it is
    made as one array with those strides (``cupy.ndarray`` over freshly allocated memory), not as
    an array and a transposed view: each CuPy array object costs the host 1-3 us inside a GPU
    training step, which makes ~100 of these."""
    perm, inverse = order
    if xp is np:
        return np.empty(tuple([shape[i] for i in perm]), dtype=dtype).transpose(inverse)
    strides = [0] * len(shape)
    step = np.dtype(dtype).itemsize
    for axis in reversed(perm):  # innermost axis first: one element apart
        strides[axis] = step
        step *= shape[axis]
    return xp.ndarray(shape, dtype, memptr=xp.cuda.alloc(step), strides=tuple(strides))


def empty_as(a, dtype=None, shape=None):
    """An uninitialized array of a's shape (or ``shape``, of a's rank) lying in memory in a's
    axis order (densely), like ``empty_like`` with order "K" but cheaper on the host (CuPy's
    takes ~8 us, measured on an H200 host; a GPU training step makes a hundred of them)."""
    xp = xp_of(a)
    dtype = a.dtype if dtype is None else dtype
    shape = a.shape if shape is None else shape
    order = _memory_perm(a)
    if order is None:
        return xp.empty(shape, dtype=dtype)
    return empty_in_order(xp, shape, order, dtype)


def copy_as(a, like):
    """A copy of a laid out in memory like ``like`` (same shape; ``empty_as``)."""
    out = empty_as(like, a.dtype)
    out[...] = a
    return out


def add_keep_channels_last(a, b):
    """a + b for same-shaped arrays; when exactly one is channels-last the sum is too.

    NumPy returns NCHW for mixed memory orders. A residual network adds a convolution's
    channels-last output to an NCHW shortcut (and sums such gradients in backward);
    keeping channels-last there keeps every layer after it on its fast path.
    """
    if a.shape != b.shape or a.ndim == 0:
        return a + b
    xp = xp_of(a)
    if xp is not np:  # GPU: one raw launch when both lie in one order (ember/ops/cuda_kernels.py)
        from ember.ops.cuda_kernels import add_same_order

        y = add_same_order(a, b)
        if y is not None:
            return y
    out = empty_as(b if a.ndim == 4 and is_channels_last(b) and not is_channels_last(a) else a)
    if xp is np:  # runs of images on the threads next to shared convolutions (ember.parallel)
        for_slices(lambda n: np.add(a[n], b[n], out=out[n]), len(a), a.size)
        return out
    o, a, b = memory_order(out, a, b)  # GPU: one flat kernel where all three share one order
    xp.add(a, b, out=o)
    return out


def empty_in_layout(xp, shape: tuple, dtype, channels_last: bool):
    """An empty array of ``shape`` (..., C, H, W), laid out channels-last in memory ((..., H, W, C))
    when ``channels_last``."""
    if not channels_last:
        return xp.empty(shape, dtype=dtype)
    if len(shape) == 4:
        return empty_in_order(xp, shape, _CHANNELS_LAST, dtype)
    n = len(shape) - 3
    return empty_in_order(xp, shape, ((*range(n), n + 1, n + 2, n), (*range(n), n + 2, n, n + 1)), dtype)


def zeros_in_layout(xp, shape: tuple, dtype, channels_last: bool):
    """Zeros of ``shape`` (N, C, H, W when ``channels_last``) laid out channels-last or C-contiguous."""
    if channels_last:
        N, C, H, W = shape
        return xp.zeros((N, H, W, C), dtype=dtype).transpose(0, 3, 1, 2)
    return xp.zeros(shape, dtype=dtype)

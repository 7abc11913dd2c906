"""GPU helpers in PyTorch's shape: ``ember.cuda.is_available()``, ``synchronize()``, memory stats.

All of them go through CuPy (an optional extra). Without CuPy or without a GPU,
``is_available()`` is False and the others raise a DeviceError that says so.
"""
from __future__ import annotations

from ember import backend
from ember.errors import DeviceError


def is_available() -> bool:
    """True when CuPy is installed and sees a CUDA GPU."""
    return backend.cupy_available()


def _cupy():
    if not is_available():
        raise DeviceError("ember.cuda: CuPy with a CUDA GPU is not available (pip install 'ember[gpu]')")
    return backend._cupy


def device_count() -> int:
    return backend._cupy.cuda.runtime.getDeviceCount() if is_available() else 0


def get_device_name(index: int = 0) -> str:
    props = _cupy().cuda.runtime.getDeviceProperties(index)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def synchronize(index: int | None = None) -> None:
    """Wait until every kernel queued on the device has finished (use before timing)."""
    cp = _cupy()
    if index is None:
        cp.cuda.Device().synchronize()
    else:
        cp.cuda.Device(index).synchronize()


def memory_allocated() -> int:
    """Bytes held by live arrays in CuPy's memory pool."""
    return _cupy().get_default_memory_pool().used_bytes()


def memory_reserved() -> int:
    """Bytes the memory pool holds from the driver (live arrays plus cached blocks)."""
    return _cupy().get_default_memory_pool().total_bytes()


def memory_stats() -> dict:
    return {"allocated_bytes": memory_allocated(), "reserved_bytes": memory_reserved()}


def empty_cache() -> None:
    """Return cached, unused blocks of the memory pools to the driver (after dropping the
    convolutions' scratch buffers, ember.ops.cuda_conv.scratch)."""
    cp = _cupy()
    from ember.ops import cuda_conv

    cuda_conv.free_scratch()
    cp.get_default_memory_pool().free_all_blocks()
    cp.get_default_pinned_memory_pool().free_all_blocks()

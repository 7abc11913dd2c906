"""Checkpoints in the safetensors layout: atomic writes, strict loading, never pickle.

File layout (https://github.com/huggingface/safetensors, written here with NumPy)::

    8 bytes    N, the header length (unsigned little-endian)
    N bytes    JSON: {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
                      "__metadata__": {"key": "string value", ...}}   (padded with spaces to 8 bytes)
    the rest   the tensors' raw little-endian bytes; offsets are relative to this buffer,
               which the tensors cover exactly, without holes or overlaps

Files written by ``ember.save`` open with ``safetensors.numpy.load_file`` and
``safetensors.torch.load_file``, and ``ember.load`` reads files they wrote.
Loading checks the whole header against the file size before it allocates or reads
any tensor, and reports every kind of damage as one ``FormatError`` naming the file.

A training checkpoint also needs non-tensor state (epoch, optimizer hyper-parameters,
scheduler, RNG): ``save_checkpoint`` stores it as JSON text in ``__metadata__``.
"""
from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from typing import Any

import numpy as np

from ember.backend import asnumpy
from ember.errors import FormatError
from ember.tensor import Tensor

__all__ = [
    "save", "load", "save_checkpoint", "load_checkpoint", "flatten_optimizer_state",
    "unflatten_optimizer_state",
]

_DTYPES = {
    "BOOL": np.dtype("bool"), "U8": np.dtype("<u1"), "I8": np.dtype("<i1"), "I16": np.dtype("<i2"),
    "U16": np.dtype("<u2"), "I32": np.dtype("<i4"), "U32": np.dtype("<u4"), "I64": np.dtype("<i8"),
    "U64": np.dtype("<u8"), "F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in _DTYPES.items()}
_MAX_HEADER = 100_000_000  # the limit the safetensors library itself enforces
_META_KEY = "ember.checkpoint"


# ---- writing ------------------------------------------------------------------------------------
def _flatten(obj: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": t}}`` -> ``{"a.b": t}``; a flat dict comes back unchanged."""
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise TypeError(f"save: keys must be strings, got {key!r}")
        name = prefix + key
        items = _flatten(value, name + ".") if isinstance(value, dict) else {name: value}
        for k, v in items.items():
            if k in flat:
                raise ValueError(f"save: two entries flatten to the same name {k!r}")
            flat[k] = v
    return flat


def _as_array(name: str, value) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.data
    if not hasattr(value, "dtype") or not hasattr(value, "shape"):
        raise TypeError(
            f"save: {name!r} is a {type(value).__name__}, not a tensor; store non-tensor values with "
            "ember.io.save_checkpoint(path, tensors, meta)"
        )
    array = asnumpy(value)  # GPU tensors are copied to the host
    if array.dtype.newbyteorder("=") not in _CODES:
        raise TypeError(f"save: {name!r} has dtype {array.dtype}, which safetensors cannot store")
    # np.asarray keeps 0-d arrays 0-d (np.ascontiguousarray would make them 1-d).
    return np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")


def save(obj: dict, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write a dict of tensors (e.g. ``model.state_dict()``) to ``path`` atomically.

    Nested dicts are flattened with '.' between keys. ``metadata`` (str -> str) goes
    into the header's ``__metadata__``. The file is written to a temporary file in the
    same folder, flushed, fsynced and renamed over ``path``: a crash leaves either
    the old file or the new one, never a mix.
    """
    if not isinstance(obj, dict):
        raise TypeError(f"save: expected a dict of tensors, got {type(obj).__name__}")
    flat = _flatten(obj)
    if "__metadata__" in flat:
        raise ValueError("save: '__metadata__' is reserved by the file format and cannot name a tensor")
    arrays = {name: _as_array(name, value) for name, value in sorted(flat.items())}
    header: dict[str, Any] = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("save: metadata must map strings to strings")
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, a in arrays.items():
        header[name] = {"dtype": _CODES[a.dtype.newbyteorder("=")], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # pad so the data buffer starts 8-byte aligned
    _atomic_write(os.fspath(path), [struct.pack("<Q", len(text)), text, *arrays.values()])


def _atomic_write(path: str, chunks: list) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:  # bytes, or C-contiguous little-endian arrays written as raw bytes
                f.write(chunk if isinstance(chunk, bytes) else chunk.reshape(-1).view(np.uint8))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    try:  # make the rename itself durable (POSIX); not possible on every platform
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# ---- reading ------------------------------------------------------------------------------------
def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _read_header(f, path: str) -> tuple[dict, dict, int, int]:
    """Parse and fully validate the header; returns (entries, metadata, data start, data length)."""
    def bad(problem: str) -> FormatError:
        return FormatError(f"{path}: not a valid safetensors file: {problem}")

    size = os.fstat(f.fileno()).st_size
    if size < 8:
        raise bad(f"file is {size} bytes, too short for the 8-byte header length")
    (n,) = struct.unpack("<Q", f.read(8))
    if n > _MAX_HEADER:
        raise bad(f"header length {n} exceeds the {_MAX_HEADER}-byte limit")
    if n > size - 8:
        raise bad(f"header length {n} runs past the end of the {size}-byte file (truncated?)")
    try:
        header = json.loads(f.read(n).decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise bad(f"header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise bad(f"header is a JSON {type(header).__name__}, expected an object")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise bad("__metadata__ must map strings to strings")
    data_len = size - 8 - n
    spans = []
    for name, e in header.items():
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"entry {name!r} must have exactly the keys dtype, shape, data_offsets")
        dtype, shape, offsets = e["dtype"], e["shape"], e["data_offsets"]
        if dtype not in _DTYPES:
            raise bad(f"tensor {name!r} has unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise bad(f"tensor {name!r} has invalid shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(type(o) is int for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
            raise bad(f"tensor {name!r} has invalid data_offsets {offsets!r}")
        if offsets[1] > data_len:
            raise bad(f"tensor {name!r} ends at byte {offsets[1]} of a {data_len}-byte data buffer (truncated?)")
        # Python ints cannot overflow, so a huge claimed shape is caught here, not by malloc.
        nbytes = math.prod(shape) * _DTYPES[dtype].itemsize
        if nbytes != offsets[1] - offsets[0]:
            raise bad(f"tensor {name!r} of shape {shape} and dtype {dtype} needs {nbytes} bytes "
                      f"but data_offsets {offsets} span {offsets[1] - offsets[0]}")
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise bad(f"tensor {name!r} starts at byte {begin} but the previous tensor ends at {end} "
                      + ("(overlap)" if begin < end else "(hole)"))
        end = stop
    if end != data_len:
        raise bad(f"tensors cover {end} bytes but the data buffer holds {data_len} (trailing garbage)")
    return header, meta, 8 + n, data_len


def _load(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, str]]:
    path = os.fspath(path)
    with open(path, "rb") as f:
        entries, meta, start, _ = _read_header(f, path)
        out = {}
        for name, e in entries.items():
            begin, stop = e["data_offsets"]
            buf = bytearray(stop - begin)  # a bytearray makes the array writable without a copy
            f.seek(start + begin)
            if f.readinto(buf) != len(buf):
                raise FormatError(f"{path}: not a valid safetensors file: tensor {name!r} is cut short")
            dt = _DTYPES[e["dtype"]]
            array = np.frombuffer(buf, dtype=dt).reshape(e["shape"])
            out[name] = Tensor(array.astype(dt.newbyteorder("="), copy=False))
    return out, meta


def load(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a safetensors file into a flat ``{name: Tensor}`` dict (on the CPU)."""
    return _load(path)[0]


# ---- checkpoints with non-tensor state ----------------------------------------------------------
def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"save_checkpoint: meta holds a {type(value).__name__}, which JSON cannot store")


def save_checkpoint(path: str | os.PathLike, tensors: dict, meta: dict | None = None) -> None:
    """Save tensors plus JSON-serializable ``meta`` (epoch, hyper-parameters, RNG state, ...).

    ``meta`` is stored as JSON text inside ``__metadata__``, so the file stays a plain
    safetensors file and loading never runs code. Tuples come back as lists.
    """
    text = json.dumps({} if meta is None else meta, default=_json_default)
    save(tensors, path, metadata={_META_KEY: text})


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict]:
    """Read what ``save_checkpoint`` wrote: ``(tensors, meta)``."""
    tensors, meta = _load(path)
    try:
        return tensors, json.loads(meta.get(_META_KEY, "{}"))
    except ValueError as e:
        raise FormatError(f"{os.fspath(path)}: checkpoint metadata is not valid JSON ({e})") from None


def flatten_optimizer_state(state_dict: dict, prefix: str = "optimizer") -> tuple[dict[str, Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors (``prefix.state.3.exp_avg``) and JSON-able rest."""
    tensors, state = {}, {}
    for idx, buffers in state_dict["state"].items():
        state[str(idx)] = {}
        for key, value in buffers.items():
            if isinstance(value, Tensor) or hasattr(value, "shape"):
                tensors[f"{prefix}.state.{idx}.{key}"] = value
            else:
                state[str(idx)][key] = value
    return tensors, {"state": state, "param_groups": state_dict["param_groups"]}


def unflatten_optimizer_state(tensors: dict[str, Tensor], meta: dict, prefix: str = "optimizer") -> dict:
    """Inverse of ``flatten_optimizer_state``: a dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict] = {int(idx): dict(v) for idx, v in meta["state"].items()}
    head = prefix + ".state."
    for name, t in tensors.items():
        if name.startswith(head):
            idx, _, key = name[len(head):].partition(".")
            state.setdefault(int(idx), {})[key] = t
    return {"state": state, "param_groups": meta["param_groups"]}

"""Shape ops: broadcasting, views, joining and splitting, padding, indexing.

Most forwards return NumPy views (no copy); their backwards undo the view on the
gradient. ``broadcast_to`` is where every binary op's broadcasting is recorded: its
backward, ``sum_to``, sums the gradient over the broadcast axes.
"""
from __future__ import annotations

import numpy as np

from ember.autograd import Function
from ember.backend import check_same_device, empty_as, is_channels_last, scatter_add, xp_of, zeros_in_layout
from ember.errors import ShapeError
from ember.tensor import Tensor

__all__ = [
    "broadcast_to", "expand", "sum_to", "reshape", "view", "flatten", "unflatten", "squeeze", "unsqueeze",
    "transpose", "permute", "movedim", "cat", "concatenate", "stack", "split", "chunk", "unbind", "pad",
    "getitem", "index_select", "flip", "repeat", "tile", "broadcast_shapes",
]


def broadcast_shapes(*shapes) -> tuple:
    return tuple(np.broadcast_shapes(*shapes))


def _dim(op: str, dim: int, ndim: int) -> int:
    """Normalize a possibly negative axis, with an error naming the op."""
    if not -ndim <= dim < max(ndim, 1):
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor with {ndim} dimensions")
    return dim % max(ndim, 1)


def _view_of(out: Tensor, x: Tensor) -> Tensor:
    """A view shares its base's version counter, so backward sees in-place changes made through either."""
    if getattr(out.data, "base", None) is not None:
        out._vc = x._vc
    return out


def sum_to(g, shape: tuple):
    """Sum array ``g`` down to ``shape`` (the inverse of NumPy broadcasting)."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape) if n == 1 and g.shape[i + lead] != 1)
    out = g.sum(axis=axes, keepdims=True)
    return out.reshape(shape) if lead else out


class BroadcastTo(Function):
    def forward(self, x, shape):
        self.shape = x.shape
        return xp_of(x).broadcast_to(x, shape)

    def backward(self, gy):
        return sum_to(gy, self.shape)


def broadcast_to(x: Tensor, shape) -> Tensor:
    """View ``x`` with NumPy broadcasting to ``shape``; backward sums the copies."""
    shape = tuple(shape)
    if x.shape == shape:
        return x
    try:
        if np.broadcast_shapes(x.shape, shape) != shape:
            raise ValueError
    except ValueError:
        raise ShapeError(f"broadcast_to: shape {x.shape} cannot be broadcast to {shape}") from None
    return _view_of(BroadcastTo.apply(x, shape=shape), x)


def expand(x: Tensor, *shape) -> Tensor:
    """PyTorch's expand: -1 keeps a dimension's size."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    lead = len(shape) - x.ndim
    if lead < 0:
        raise ShapeError(f"expand: target {shape} has fewer dimensions than the tensor {x.shape}")
    full = tuple(x.shape[i - lead] if (n == -1 and i >= lead) else n for i, n in enumerate(shape))
    return broadcast_to(x, full)


class Reshape(Function):
    def forward(self, x, shape):
        self.shape = x.shape
        return x.reshape(shape)

    def backward(self, gy):
        return gy.reshape(self.shape)


def reshape(x: Tensor, *shape) -> Tensor:
    """Same data in a new shape; one entry may be -1."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    shape = tuple(int(n) for n in shape)
    if shape == x.shape:
        return x
    known = int(np.prod([n for n in shape if n != -1])) if shape else 1
    size = x.numel()
    if shape.count(-1) > 1 or (-1 not in shape and known != size) or (
        -1 in shape and (known == 0 or size % known)
    ):
        raise ShapeError(f"reshape: shape {shape} is invalid for a tensor of shape {x.shape} ({size} elements)")
    return _view_of(Reshape.apply(x, shape=shape), x)


view = reshape


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dims start_dim..end_dim into one."""
    if x.ndim == 0:
        return reshape(x, (1,))
    s, e = _dim("flatten", start_dim, x.ndim), _dim("flatten", end_dim, x.ndim)
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    return reshape(x, x.shape[:s] + (-1 if x.numel() else int(np.prod(x.shape[s:e + 1])),) + x.shape[e + 1:])


def unflatten(x: Tensor, dim: int, sizes) -> Tensor:
    d = _dim("unflatten", dim, x.ndim)
    return reshape(x, x.shape[:d] + tuple(sizes) + x.shape[d + 1:])


def squeeze(x: Tensor, dim=None) -> Tensor:
    """Drop size-1 dims (all, or the given ones that have size 1)."""
    if dim is None:
        return reshape(x, tuple(n for n in x.shape if n != 1))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    dims = {_dim("squeeze", d, x.ndim) for d in dims}
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if not (i in dims and n == 1)))


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    """Insert a size-1 dim at ``dim`` (which may be x.ndim)."""
    d = _dim("unsqueeze", dim, x.ndim + 1)
    return reshape(x, x.shape[:d] + (1,) + x.shape[d:])


class Permute(Function):
    def forward(self, x, dims):
        self.inverse = tuple(np.argsort(dims))
        return x.transpose(dims)

    def backward(self, gy):
        return gy.transpose(self.inverse)


def permute(x: Tensor, *dims) -> Tensor:
    """Reorder dimensions (a view)."""
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    dims = tuple(_dim("permute", d, x.ndim) for d in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise ShapeError(f"permute: dims {dims} are not a permutation of {x.ndim} dimensions")
    if dims == tuple(range(x.ndim)):
        return x
    return _view_of(Permute.apply(x, dims=dims), x)


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    """Swap two dimensions (a view)."""
    dims = list(range(x.ndim))
    a, b = _dim("transpose", dim0, x.ndim), _dim("transpose", dim1, x.ndim)
    dims[a], dims[b] = dims[b], dims[a]
    return permute(x, tuple(dims))


def movedim(x: Tensor, source: int, destination: int) -> Tensor:
    dims = list(range(x.ndim))
    s = _dim("movedim", source, x.ndim)
    dims.pop(s)
    dims.insert(_dim("movedim", destination, x.ndim), s)
    return permute(x, tuple(dims))


class Cat(Function):
    def forward(self, *xs, dim):
        self.dim = dim
        self.bounds = np.cumsum([x.shape[dim] for x in xs])[:-1]
        return xp_of(*xs).concatenate(xs, axis=dim)

    def backward(self, gy):
        parts = xp_of(gy).split(gy, self.bounds, axis=self.dim)
        return tuple(p if need else None for p, need in zip(parts, self.needs_input_grad))


def cat(tensors, dim: int = 0) -> Tensor:
    """Join tensors along an existing dimension."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    ref = tensors[0]
    d = _dim("cat", dim, ref.ndim)
    check_same_device("cat", *[t.data for t in tensors])
    for i, t in enumerate(tensors):
        if t.ndim != ref.ndim or t.shape[:d] + t.shape[d + 1:] != ref.shape[:d] + ref.shape[d + 1:]:
            raise ShapeError(
                f"cat: tensor {i} has shape {t.shape} but tensor 0 has shape {ref.shape}; "
                f"all dims except dim {dim} must match"
            )
    dtype = np.result_type(*[t.dtype for t in tensors])
    from ember.ops.elementwise import astype

    tensors = [astype(t, dtype) for t in tensors]
    return Cat.apply(*tensors, dim=d)


concatenate = cat


def stack(tensors, dim: int = 0) -> Tensor:
    """Join same-shaped tensors along a new dimension."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise ShapeError(f"stack: tensor {i} has shape {t.shape} but tensor 0 has shape {tensors[0].shape}")
    d = _dim("stack", dim, tensors[0].ndim + 1)
    return cat([unsqueeze(t, d) for t in tensors], dim=d)


def split(x: Tensor, split_size_or_sections, dim: int = 0) -> list:
    """Split into pieces of a given size (the last may be smaller) or of given sizes."""
    d = _dim("split", dim, x.ndim)
    n = x.shape[d]
    if isinstance(split_size_or_sections, int):
        if split_size_or_sections <= 0:
            raise ValueError(f"split: split_size must be positive, got {split_size_or_sections}")
        sizes = [split_size_or_sections] * (n // split_size_or_sections)
        if n % split_size_or_sections:
            sizes.append(n % split_size_or_sections)
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise ShapeError(f"split: sections {sizes} sum to {sum(sizes)} but dim {dim} has size {n}")
    out, start = [], 0
    for s in sizes:
        index = (slice(None),) * d + (slice(start, start + s),)
        out.append(getitem(x, index))
        start += s
    return out


def chunk(x: Tensor, chunks: int, dim: int = 0) -> list:
    """Split into ``chunks`` pieces of ceil(n / chunks) (PyTorch's rule)."""
    n = x.shape[_dim("chunk", dim, x.ndim)]
    return split(x, max(1, -(-n // chunks)), dim)


def unbind(x: Tensor, dim: int = 0) -> list:
    d = _dim("unbind", dim, x.ndim)
    return [getitem(x, (slice(None),) * d + (i,)) for i in range(x.shape[d])]


class Pad(Function):
    """Constant padding; ``widths`` is NumPy's per-dim ((before, after), ...). The result lies in
    memory in x's axis order (a channels-last x gives a channels-last result, as a ResNet's
    padded shortcut then adds to channels-last activations in one pass): filled, then x copied in."""

    def forward(self, x, widths, value):
        crop = tuple(slice(max(-b, 0), n - max(-a, 0)) for (b, a), n in zip(widths, x.shape))
        inner = tuple(slice(max(b, 0), max(b, 0) + c.stop - c.start) for (b, a), c in zip(widths, crop))
        self.shape, self.crop, self.inner = x.shape, crop, inner
        y = empty_as(x, shape=tuple(s.stop - s.start + max(b, 0) + max(a, 0) for (b, a), s in zip(widths, crop)))
        y.fill(value)
        y[inner] = x[crop]
        return y

    def backward(self, gy):
        gx = empty_as(gy, shape=self.shape)  # in the gradient's memory order
        gx.fill(0)
        gx[self.crop] = gy[self.inner]
        return gx


def pad(x: Tensor, pad, mode: str = "constant", value: float = 0.0) -> Tensor:
    """PyTorch's F.pad: ``pad`` lists (left, right) for the last dim, then the one before...

    Negative widths crop. Modes other than "constant" live in ember.ops.padding.
    """
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ShapeError(f"pad: padding {pad} must have an even length of at most 2 * ndim ({2 * x.ndim})")
    if mode != "constant":
        from ember.ops import padding

        return padding.pad_mode(x, pad, mode)
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    for (b, a), n in zip(widths, x.shape):
        if n + b + a < 0:
            raise ShapeError(f"pad: padding {pad} gives a negative size for input shape {x.shape}")
    return Pad.apply(x, widths=tuple(widths), value=value)


# ---- indexing ------------------------------------------------------------------------------------
def _has_advanced(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(not (isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis) for i in items)


class GetItem(Function):
    def forward(self, x, index):
        self.shape, self.dtype, self.index, self.cl = x.shape, x.dtype, index, is_channels_last(x)
        return x[index]

    def backward(self, gy):
        xp = xp_of(gy)
        gx = zeros_in_layout(xp, self.shape, self.dtype, self.cl)  # in x's memory order
        if _has_advanced(self.index):
            scatter_add(gx, self.index, gy)  # repeated indices must accumulate
        else:
            gx[self.index] = gy  # basic indexing hits each element at most once
        return gx


def _check_index(x: Tensor, index) -> None:
    """Validate integer-array indices before use (CuPy would wrap out-of-range ones)."""
    items = index if isinstance(index, tuple) else (index,)
    dim = 0
    for i in items:
        if i is None:
            continue
        if i is Ellipsis:
            dim = x.ndim - sum(1 for j in items if j is not None and j is not Ellipsis)
            continue
        if hasattr(i, "dtype") and i.dtype.kind in "iu" and i.size and dim < x.ndim:
            n = x.shape[dim]
            lo, hi = int(i.min()), int(i.max())
            if lo < -n or hi >= n:
                raise IndexError(f"getitem: index {hi if hi >= n else lo} is out of bounds for dim {dim} with size {n}")
        dim += i.ndim if (hasattr(i, "dtype") and i.dtype == np.bool_) else 1


def getitem(x: Tensor, index) -> Tensor:
    """``x[index]`` with NumPy semantics; gradients scatter back (repeats accumulate)."""
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, list):
        index = np.asarray(index)
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else (np.asarray(i) if isinstance(i, list) else i) for i in index)
    if _has_advanced(index):
        _check_index(x, index)
    return _view_of(GetItem.apply(x, index=index), x)


def index_select(x: Tensor, dim: int, index) -> Tensor:
    d = _dim("index_select", dim, x.ndim)
    idx = index.data if isinstance(index, Tensor) else np.asarray(index)
    return getitem(x, (slice(None),) * d + (idx,))


class Flip(Function):
    def forward(self, x, dims):
        self.dims = dims
        return xp_of(x).flip(x, dims)

    def backward(self, gy):
        return xp_of(gy).flip(gy, self.dims)


def flip(x: Tensor, dims) -> Tensor:
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    return _view_of(Flip.apply(x, dims=tuple(_dim("flip", d, x.ndim) for d in dims)), x)


def repeat(x: Tensor, *sizes) -> Tensor:
    """PyTorch's repeat (NumPy's tile): as a broadcast of a new axis per dim, then reshape."""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    if len(sizes) < x.ndim:
        raise ShapeError(f"repeat: {len(sizes)} repeat counts for a tensor with {x.ndim} dims")
    x = reshape(x, (1,) * (len(sizes) - x.ndim) + x.shape)
    inter = []
    for n in x.shape:
        inter += [1, n]
    target = []
    for r, n in zip(sizes, x.shape):
        target += [r, n]
    y = broadcast_to(reshape(x, tuple(inter)), tuple(target))
    return reshape(y, tuple(r * n for r, n in zip(sizes, x.shape)))


tile = repeat

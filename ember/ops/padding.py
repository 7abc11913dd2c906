"""Non-constant padding modes for F.pad: "reflect", "replicate" and "circular".

``ember.ops.shape.pad`` handles mode="constant" and sends the other modes here.
Padding is built one dim at a time by concatenating slices of the input:

    reflect     [x2 x1 | x0 x1 x2 x3 | x2 x1]      mirror, edge not repeated (pad < size)
    replicate   [x0 x0 | x0 x1 x2 x3 | x3 x3]      repeat the edge value
    circular    [x2 x3 | x0 x1 x2 x3 | x0 x1]      wrap around (pad <= size)

Backward adds each padded strip's gradient back onto the pixels it was copied from
(slice-adds, no scatter).
"""
from __future__ import annotations

from ember.autograd import Function
from ember.backend import xp_of
from ember.errors import ShapeError
from ember.tensor import Tensor

__all__: list[str] = []  # pad_mode is reached through F.pad(x, pad, mode=...)

MODES = ("reflect", "replicate", "circular")


def _pad_axis(xp, x, axis: int, before: int, after: int, mode: str):
    n = x.shape[axis]

    def take(start, stop, step=1):
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, None if stop < 0 else stop, step)  # stop -1 means "through index 0"
        return x[tuple(index)]

    if mode == "reflect":
        left, right = take(before, 0, -1), take(n - 2, n - 2 - after, -1)
    elif mode == "replicate":
        rep = [1] * x.ndim
        rep[axis] = before
        left = xp.tile(take(0, 1), rep)
        rep[axis] = after
        right = xp.tile(take(n - 1, n), rep)
    else:  # circular
        left, right = take(n - before, n), take(0, after)
    return xp.concatenate([left, x, right], axis=axis)


def _unpad_axis(xp, gy, axis: int, before: int, after: int, mode: str):
    """Gradient of ``_pad_axis``: fold the strips' gradients back onto their sources."""
    n = gy.shape[axis] - before - after

    def at(a, start, stop, step=1):
        index = [slice(None)] * a.ndim
        index[axis] = slice(start, stop, step)
        return tuple(index)

    gx = gy[at(gy, before, before + n)].copy()
    left, right = gy[at(gy, 0, before)], gy[at(gy, before + n, before + n + after)]
    if mode == "reflect":
        # left strip holds x[before], ..., x[1]; right strip holds x[n-2], ..., x[n-1-after]
        gx[at(gx, 1, before + 1)] += xp.flip(left, axis=axis)
        gx[at(gx, n - 1 - after, n - 1)] += xp.flip(right, axis=axis)
    elif mode == "replicate":
        gx[at(gx, 0, 1)] += left.sum(axis=axis, keepdims=True)
        gx[at(gx, n - 1, n)] += right.sum(axis=axis, keepdims=True)
    else:
        gx[at(gx, n - before, n)] += left
        gx[at(gx, 0, after)] += right
    return gx


class PadMode(Function):
    """Pad the trailing dims with a non-constant mode; ``widths`` lists (axis, before, after)."""

    def forward(self, x, *, widths: tuple, mode: str):
        xp = xp_of(x)
        self.widths, self.mode = widths, mode
        for axis, b, a in widths:
            x = _pad_axis(xp, x, axis, b, a, mode)
        return x

    def backward(self, gy):
        xp = xp_of(gy)
        for axis, b, a in reversed(self.widths):
            gy = _unpad_axis(xp, gy, axis, b, a, self.mode)
        return gy


def pad_mode(x: Tensor, pad, mode: str) -> Tensor:
    """F.pad with mode "reflect", "replicate" or "circular".

    Args:
        x: a tensor; as in PyTorch, only the trailing ``len(pad) // 2`` dims are padded.
        pad: (left, right) for the last dim, then (top, bottom) for the one before, ...
            non-negative ints.
        mode: "reflect" (pad < size), "replicate" (any pad, size >= 1) or "circular" (pad <= size).
    """
    if mode not in MODES:
        raise ValueError(f"pad: mode must be 'constant', {', '.join(repr(m) for m in MODES)}; got {mode!r}")
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ShapeError(f"pad: padding {pad} must have an even length of at most 2 * ndim ({2 * x.ndim})")
    widths = []
    for i in range(len(pad) // 2):
        axis, b, a = x.ndim - 1 - i, pad[2 * i], pad[2 * i + 1]
        n = x.shape[axis]
        if b < 0 or a < 0:
            raise ValueError(f"pad: mode {mode!r} needs non-negative padding, got {pad}")
        if mode == "reflect" and (b >= n or a >= n):
            raise ShapeError(
                f"pad: reflect padding ({b}, {a}) must be smaller than the padded dim {axis} of size {n} "
                f"(input {x.shape})"
            )
        if mode == "circular" and (b > n or a > n):
            raise ShapeError(
                f"pad: circular padding ({b}, {a}) must be at most the padded dim {axis} of size {n} "
                f"(input {x.shape})"
            )
        if mode == "replicate" and n == 0 and (a or b):
            raise ShapeError(f"pad: cannot replicate-pad the empty dim {axis} (input {x.shape})")
        if b or a:
            widths.append((axis, b, a))
    if not widths:
        return x
    return PadMode.apply(x, widths=tuple(widths), mode=mode)

"""Spatial transformers: ``affine_grid`` and ``grid_sample`` (Jaderberg et al., 2015, "Spatial
Transformer Networks").

``affine_grid`` maps every output pixel's normalized position ``(x, y, 1)`` through a batch of
affine matrices theta (N, 2, 3); ``grid_sample`` reads the input at the resulting positions.
Coordinates follow PyTorch exactly. A grid entry ``g`` in [-1, 1] (x along W, y along H) lands
on pixel coordinate

* ``align_corners=True``:  ``i = (g + 1) / 2 * (size - 1)``  (-1 and 1 are the corner pixels' centers);
* ``align_corners=False``: ``i = (g + 1) / 2 * size - 0.5``  (-1 and 1 are the corner pixels' outer edges);

then ``padding_mode`` decides what lies outside the image: ``"zeros"`` reads zeros,
``"border"`` clamps ``i`` into [0, size - 1], ``"reflection"`` mirrors ``i`` about the border
(about the corner centers with align_corners, about the outer edges without) and then clamps.
``"bilinear"`` mixes the four neighbours ``floor(i)`` and ``floor(i) + 1`` per axis;
``"nearest"`` reads the pixel at ``i`` rounded half to even (C's ``nearbyint``, as PyTorch).

Gradients:

* w.r.t. the input: every output value was a weighted sum of at most four input pixels, so its
  gradient is scattered back to those pixels with the same weights: one scatter-add per
  neighbour over a flattened array (``ember.backend.scatter_add``: NumPy's ``add.at`` on a 1-D
  array, 1.4-4x faster here than ``bincount`` with weights; CuPy's atomic ``add.at``).
  Each image sits in a frame of zeros two pixels wide and coordinates are clamped into the
  frame, so neighbours outside the image read 0 (and their gradient is dropped) without masks.
* w.r.t. the grid: the derivative of the bilinear weights, e.g. ``dy/dix = (1 - fy) (v_ne - v_nw)
  + fy (v_se - v_sw)`` (summed over channels against the output gradient), times ``di/dg``
  (``(size - 1) / 2`` or ``size / 2``) and the padding mode's factor (0 where border or
  reflection clamps, -1 where reflection mirrors).
* ``nearest`` has a zero grid gradient; ``affine_grid`` is a matrix product, so its gradient
  w.r.t. theta comes from autograd.

At kinks the one-sided derivative PyTorch uses is taken: at an integer coordinate the
derivative of the cell to the right (``floor``), on a clamped border 0 (the border counts as
outside), at a reflection fold the side PyTorch's formula picks (tests/test_grid_sample.py
checks grids exactly on pixels, borders and folds). Which side a grid entry lands on is decided
by the last bit of ``i``: ember rounds each step of ``(g + 1) * s - 0.5``, PyTorch's CPU kernel
computes a fused multiply-add ``g * s + (s - 0.5)`` (its CUDA kernel yet another order), so an
entry that lands on a pixel only up to rounding (an identity ``affine_grid`` gives pixel
centers, up to rounding) may take the other side's derivative there. Non-finite grid entries
are outside the contract (PyTorch crashes on some): they become NaN coordinates, so bilinear
sampling gives NaN and nearest with zeros padding 0.
"""
from __future__ import annotations

import numpy as np

from ember.autograd import Function
from ember.backend import check_same_device, scatter_add, xp_of
from ember.errors import DTypeError, ShapeError
from ember.ops.linalg import matmul
from ember.ops.shape import reshape, transpose
from ember.parallel import run_parts, split, threads_for
from ember.tensor import Tensor

__all__ = ["affine_grid", "grid_sample"]

_MODES = ("bilinear", "nearest")
_PADDING_MODES = ("zeros", "border", "reflection")


# ---- coordinates ----------------------------------------------------------------------------------------
def _clip(i, size: int):
    """Clamp ``i`` into [0, size - 1]; the factor d(clamped)/d(i) is 0 on and beyond the border."""
    xp, hi = xp_of(i), size - 1
    return xp.clip(i, 0, hi), ((i > 0) & (i < hi)).astype(i.dtype)


def _reflect(i, twice_low: int, twice_high: int):
    """Mirror ``i`` back into [twice_low / 2, twice_high / 2] and return d(mirrored)/d(i) (+-1)."""
    xp = xp_of(i)
    if twice_low == twice_high:  # a single pixel with align_corners: everything lands on it
        return xp.zeros_like(i), xp.zeros_like(i)
    low, span = twice_low / 2, (twice_high - twice_low) / 2
    d = i - low
    sign = xp.where(d < 0, -1, 1).astype(i.dtype)
    d = abs(d)
    extra = xp.fmod(d, span)
    odd = xp.floor(d / span) % 2 == 1  # an odd number of flips lands mirrored
    return xp.where(odd, span - extra + low, extra + low), xp.where(odd, -sign, sign)


def _source(g, size: int, align_corners: bool, padding_mode: str):
    """Pixel coordinates (float, the grid's dtype) for normalized grid entries ``g`` along an axis of
    ``size`` pixels, and d(coordinate)/d(g): a number, or an array where the padding mode bends."""
    xp = xp_of(g)
    if align_corners:
        scale = (size - 1) / 2
        i = (g + 1) * g.dtype.type(scale)
    else:
        scale = size / 2
        i = (g + 1) * g.dtype.type(scale) - g.dtype.type(0.5)
    i = xp.where(xp.isfinite(i), i, np.nan)  # non-finite -> NaN: inf - floor(inf), fmod(inf) would warn
    if padding_mode == "zeros":
        return i, scale
    factor = 1
    if padding_mode == "reflection":
        i, factor = _reflect(i, 0, 2 * (size - 1)) if align_corners else _reflect(i, -1, 2 * size - 1)
    i, clip_factor = _clip(i, size)
    return i, clip_factor * factor * g.dtype.type(scale)


_FRAME = 2  # zero pixels around each image: a neighbour pair outside the image lands on zeros


def _framed_index(f, size: int):
    """Integral float coordinates ``f`` as integer positions in the framed axis (offset by the
    frame), clamped so that ``f`` and ``f + 1`` stay in it: anything left of -2 (NaN too) becomes -2,
    anything right of ``size`` becomes ``size``; both neighbours are then frame zeros, as they were.
    (Clamping first also keeps huge or non-finite values away from the integer cast; ``fmax``,
    unlike ``maximum``, returns the number where ``f`` is NaN.)"""
    xp = xp_of(f)
    return (xp.fmin(xp.fmax(f, -_FRAME), size) + _FRAME).astype(np.int64)


def _neighbours(ix, iy, h: int, w: int, mode: str):
    """The input pixels each sample reads, in a framed plane of (H + 4) x (W + 4) pixels: the
    position (N, P) of the first (the nearest pixel, or the top-left of the four), the list of
    (offset of a neighbour from that position, weight (N, P) or None for 1), and, for bilinear,
    the fractions (wx0, wx1, wy0, wy1) that the grid gradient needs."""
    xp = xp_of(ix)
    fw = w + 2 * _FRAME
    if mode == "nearest":
        return _framed_index(xp.rint(iy), h) * fw + _framed_index(xp.rint(ix), w), [(0, None)], None
    x0f, y0f = xp.floor(ix), xp.floor(iy)
    wx1, wy1 = ix - x0f, iy - y0f
    wx0, wy0 = (x0f + 1) - ix, (y0f + 1) - iy  # PyTorch's (x_se - x): exactly its rounding
    nw = _framed_index(y0f, h) * fw + _framed_index(x0f, w)
    corners = [(0, wx0 * wy0), (1, wx1 * wy0), (fw, wx0 * wy1), (fw + 1, wx1 * wy1)]  # nw, ne, sw, se
    return nw, corners, (wx0, wx1, wy0, wy1)


def _flat_index(shape: tuple, pos, images=slice(None)):
    """(n, C, P) int64 for the n ``images`` (a slice of the batch) of an input of ``shape``
    (N, C, H, W): the position in its framed planes (N, C, H + 4, W + 4), flattened, of every
    output value's first neighbour: where its plane starts plus ``pos`` (N, P) within it."""
    n, c, h, w = shape
    plane = (h + 2 * _FRAME) * (w + 2 * _FRAME)
    starts = (xp_of(pos).arange(n * c, dtype=np.int64) * plane).reshape(n, c, 1)
    return starts[images] + pos[images, None, :]


def _gather(flat, idx, corners, out, keep: bool = False) -> list:
    """out[n, c, p] = sum_k w_k[n, p] * flat[idx[n, c, p] + off_k] over ``corners`` [(off_k, w_k)]
    (w_k None: weight 1); returns the gathered values when ``keep`` (else an empty list).

    ``flat[off:]`` is a view that starts ``off`` elements later, so ``flat[off:].take(idx)`` reads
    ``flat[idx + off]``, the neighbour ``off`` to the right (1) or below (W + 4): one index array
    serves all four neighbours."""
    xp, scratch, values = xp_of(flat), None, []
    for k, (off, wk) in enumerate(corners):
        v = flat[off:].take(idx)
        if keep:
            values.append(v)
        if wk is None:  # nearest: one neighbour, weight 1
            out[...] = v
        elif k == 0:
            xp.multiply(v, wk[:, None, :], out=out)
        else:  # multiply into a scratch buffer, not a new array per neighbour (10-20% faster here)
            if not keep:
                scratch = v  # v is not needed again: multiply in place
            elif scratch is None:
                scratch = xp.empty_like(v)
            out += xp.multiply(v, wk[:, None, :], out=scratch)
    return values


# ---- sampling by runs of images, one run per thread ----------------------------------------------------
def _image_runs(n: int, size: int, xp) -> list:
    """The batch cut into runs of images (slices), one per thread that will work on them: as many
    as ember.parallel shares a pass of ``size`` floats among (as it does the convolutions), on the
    CPU; one run otherwise. Each image's planes are separate memory, so the runs never collide."""
    threads = threads_for(size) if xp is np and n > 1 else 1
    return [slice(r[0], r[-1] + 1) for r in split(list(range(n)), min(threads, n))] if n else [slice(0, 0)]


def _per_run(fn, runs: list) -> list:
    """``[fn(k, runs[k]) for every run k]``, the runs on as many threads at once."""
    return run_parts(lambda ks: fn(ks[0], runs[ks[0]]), list(range(len(runs))), len(runs))


def _rows(corners, images):
    """The corners' weights for the ``images`` only."""
    return [(off, None if wk is None else wk[images]) for off, wk in corners]


def _sample(x, pos, corners, runs: list, keep: bool = False):
    """y (N, C, P): x (N, C, H, W) read at ``pos`` and its ``corners`` [(offset, weight)] in framed
    planes, as ``_gather``; each run of images on its own thread frames, indexes and gathers its
    own images. Returns y and, per run, the gathered values when ``keep``."""
    xp = xp_of(x)
    n, c, h, w = x.shape
    xf = xp.zeros((n, c, h + 2 * _FRAME, w + 2 * _FRAME), dtype=x.dtype)
    y = xp.empty((n, c, pos.shape[1]), dtype=x.dtype)

    def run(k, images):
        xf[images, :, _FRAME:-_FRAME, _FRAME:-_FRAME] = x[images]  # (reads below stay in these planes)
        idx = _flat_index(x.shape, pos, images)
        return _gather(xf.reshape(-1), idx, _rows(corners, images), y[images], keep)

    return y, _per_run(run, runs)


def _in_image(pos, corners, h: int, w: int, dtype):
    """(N, P): the weight of each sample that falls inside the (H, W) image, i.e. the sampling of
    an all-ones image. ``pos`` is a position within a plane, so one framed plane of ones serves
    every image: a gather of N * P values, not N * C * P."""
    xp = xp_of(pos)
    ones = xp.zeros((h + 2 * _FRAME, w + 2 * _FRAME), dtype=dtype)
    ones[_FRAME:-_FRAME, _FRAME:-_FRAME] = 1
    out = xp.empty((pos.shape[0], 1, pos.shape[1]), dtype=dtype)
    _gather(ones.reshape(-1), pos[:, None, :], corners, out)
    return out[:, 0]


# ---- the op ---------------------------------------------------------------------------------------------
class GridSample(Function):
    """y[n, c, p] = sum_k w_k[n, p] * x[n, c, pos[n, p] + off_k] over the 1 or 4 neighbours k of sample p.

    The input is copied into framed planes (zeros two pixels wide around each image), so that every
    neighbour has a valid index and the ones outside the image read zero: no masks. One flat index
    per output value (N, C, P) serves all four neighbours (``_gather``). Backward scatters with the
    same index and offset views: one flat 1-D add.at per neighbour (NumPy's fast path; ``bincount``
    with weights is 2x slower here, sorting the indices for ``add.reduceat`` 10x slower). The grid
    gradient needs the four gathered neighbours again: forward keeps them (4x the output's memory)
    when the grid requires a gradient, since gathering them anew costs more than the rest of that
    gradient. Large batches are cut into one run of images per core (``_image_runs``), in forward
    and backward alike: NumPy releases the GIL in each of these passes."""

    def forward(self, x, grid, mode: str, padding_mode: str, align_corners: bool):
        xp = xp_of(x, grid)
        n, c, h, w = x.shape
        ho, wo = grid.shape[1:3]
        ix, self.dx = _source(grid[..., 0].reshape(n, ho * wo), w, align_corners, padding_mode)
        iy, self.dy = _source(grid[..., 1].reshape(n, ho * wo), h, align_corners, padding_mode)
        self.pos, self.corners, self.fracs = _neighbours(ix, iy, h, w, mode)
        self.x_shape, self.grid_shape = x.shape, grid.shape
        keep = self.fracs is not None and bool(self.needs_input_grad) and self.needs_input_grad[1]
        self.runs = _image_runs(n, n * c * ho * wo * len(self.corners), xp)
        y, self.values = _sample(x, self.pos, self.corners, self.runs, keep)
        return y.reshape(n, c, ho, wo)

    def backward(self, gy):
        xp = xp_of(gy)
        n, c, h, w = self.x_shape
        gy = gy.reshape(n, c, self.grid_shape[1] * self.grid_shape[2])
        need_gx, need_gg = self.needs_input_grad[0], self.needs_input_grad[1]
        gxf = xp.zeros((n, c, h + 2 * _FRAME, w + 2 * _FRAME), dtype=gy.dtype) if need_gx else None
        gx = xp.empty(self.x_shape, dtype=gy.dtype) if need_gx else None

        def run(k, images):  # one run of images: their planes of gx, their sums for the grid gradient
            g = gy[images]
            if need_gx:
                idx, t = _flat_index(self.x_shape, self.pos, images).reshape(-1), None
                for off, wk in _rows(self.corners, images):  # the gather's offset views: adds land on idx + off
                    if wk is not None:
                        t = xp.multiply(g, wk[:, None, :], out=t)  # one buffer for the four products
                    scatter_add(gxf.reshape(-1)[off:], idx, (g if wk is None else t).reshape(-1))
                gx[images] = gxf[images, :, _FRAME:-_FRAME, _FRAME:-_FRAME]
            # s_k[n, p] = sum_c gy[n, c, p] * x[n, c, pos + off_k]: one fused multiply-and-sum per neighbour
            return [xp.einsum("ncp,ncp->np", g, v) for v in self.values[k]] if need_gg else []

        sums = _per_run(run, self.runs)
        gg = None
        if need_gg:
            gg = xp.zeros(self.grid_shape, dtype=gy.dtype)
            if self.fracs is not None:  # bilinear; nearest is piecewise constant in the grid
                s_nw, s_ne, s_sw, s_se = (xp.concatenate(s) for s in zip(*sums))  # each (N, P), runs joined
                wx0, wx1, wy0, wy1 = self.fracs
                gix = ((s_ne - s_nw) * wy0 + (s_se - s_sw) * wy1) * self.dx
                giy = ((s_sw - s_nw) * wx0 + (s_se - s_ne) * wx1) * self.dy
                gg[..., 0] = gix.reshape(self.grid_shape[:3])
                gg[..., 1] = giy.reshape(self.grid_shape[:3])
        return gx, gg


def grid_sample(input: Tensor, grid: Tensor, mode: str = "bilinear", padding_mode: str = "zeros",
                align_corners: bool | None = None) -> Tensor:
    """Sample ``input`` (N, C, H, W) at the normalized positions ``grid`` (N, Ho, Wo, 2) -> (N, C, Ho, Wo).

    ``grid[n, i, j] = (x, y)`` in [-1, 1] (x along W, y along H) says where output pixel (i, j)
    reads; ``mode`` is 'bilinear' or 'nearest', ``padding_mode`` 'zeros', 'border' or
    'reflection' (what lies outside the image), ``align_corners`` (default False) whether -1/1
    are the corner pixels' centers or their outer edges. Differentiable w.r.t. input and grid
    ('nearest': the grid gradient is zero). 5-D (volumetric) inputs and 'bicubic' are not
    supported. See the module docstring for the exact conventions.
    """
    op = "grid_sample"
    if mode not in _MODES:
        raise ValueError(f"{op}: mode must be 'bilinear' or 'nearest', got {mode!r}"
                         + (" ('bicubic' is not supported by ember)" if mode == "bicubic" else ""))
    if padding_mode not in _PADDING_MODES:
        raise ValueError(f"{op}: padding_mode must be 'zeros', 'border' or 'reflection', got {padding_mode!r}")
    if input.ndim != 4 or grid.ndim != 4:
        extra = " (5-D volumetric sampling is not supported by ember)" if input.ndim == 5 else ""
        raise ShapeError(f"{op}: expected a 4-D input (N, C, H, W) and a 4-D grid (N, Ho, Wo, 2), got input "
                         f"{input.shape} and grid {grid.shape}{extra}")
    if grid.shape[3] != 2:
        raise ShapeError(f"{op}: grid's last dimension must have size 2 (x, y), got grid {grid.shape}")
    if input.shape[0] != grid.shape[0]:
        raise ShapeError(f"{op}: input and grid must have the same batch size, got input {input.shape} "
                         f"and grid {grid.shape}")
    if 0 in input.shape[2:]:
        raise ShapeError(f"{op}: input must have non-empty spatial dimensions, got input {input.shape}")
    if input.dtype.kind != "f" or grid.dtype != input.dtype:
        raise DTypeError(f"{op}: input and grid must have the same floating point dtype, got input "
                         f"{input.dtype} and grid {grid.dtype}")
    check_same_device(op, input.data, grid.data)
    return GridSample.apply(input, grid, mode=mode, padding_mode=padding_mode, align_corners=bool(align_corners))


# ---- affine grids ---------------------------------------------------------------------------------------
def _linspace(steps: int, align_corners: bool) -> np.ndarray:
    """Normalized pixel positions along an axis: centers of ``steps`` pixels spanning [-1, 1]."""
    if steps <= 1:
        return np.zeros(steps)
    pos = np.linspace(-1.0, 1.0, steps)
    return pos if align_corners else pos * ((steps - 1) / steps)


def affine_grid(theta: Tensor, size, align_corners: bool | None = None) -> Tensor:
    """Sampling grid of a batch of affine maps, for :func:`grid_sample`.

    ``theta`` (N, 2, 3) with ``size = (N, C, H, W)`` gives (N, H, W, 2); ``theta`` (N, 3, 4) with
    ``size = (N, C, D, H, W)`` gives (N, D, H, W, 3). Entry ``[n, i, j]`` is ``theta[n] @ (x_j, y_i, 1)``
    where x_j, y_i are the normalized centers of the output pixels (see ``align_corners`` in
    :func:`grid_sample`). A matrix product with a constant base grid: differentiable w.r.t. theta.
    """
    op = "affine_grid"
    size = tuple(int(s) for s in size)
    if len(size) not in (4, 5):
        raise ShapeError(f"{op}: size must be (N, C, H, W) or (N, C, D, H, W), got {size}")
    if min(size) <= 0:
        raise ValueError(f"{op}: size must be positive, got {size}")
    if theta.dtype.kind != "f":
        raise DTypeError(f"{op}: theta must be a floating point tensor, got {theta.dtype}")
    k = len(size) - 2  # spatial dims
    if theta.shape != (size[0], k, k + 1):
        raise ShapeError(f"{op}: for size {size} theta must have shape {(size[0], k, k + 1)} (N, {k}, {k + 1}), "
                         f"got {theta.shape}")
    spatial = size[2:]
    # base[..., :] = (x, y[, z], 1), x varying fastest (along W)
    axes = np.meshgrid(*[_linspace(s, bool(align_corners)) for s in spatial], indexing="ij")
    base = np.stack(list(axes[::-1]) + [np.ones(spatial)], axis=-1).reshape(-1, k + 1)
    base = Tensor(xp_of(theta.data).asarray(base, dtype=theta.dtype))
    grid = matmul(base, transpose(theta, 1, 2))  # (P, k+1) @ (N, k+1, k) -> (N, P, k)
    return reshape(grid, (size[0],) + spatial + (k,))

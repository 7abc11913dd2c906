"""Rotations and affine maps: ``RandomRotation`` and ``RandomAffine``, as torchvision.

Each sample gets its own matrix: torchvision's inverse affine map (output pixel -> input pixel,
in pixel units about the image centre, optionally about ``center``). Sampling matches
``F.affine_grid`` + ``F.grid_sample(align_corners=False, padding_mode="zeros")`` with the
equivalent normalized matrix: nearest is one gather, bilinear runs grid_sample's sampler
(ember/ops/grid_sample.py) on the pixel coordinates directly. Like torchvision, a ``fill`` is
blended in with the sampled in-bounds weight ``m``: ``m * (sample - fill) + fill`` (bilinear)
or ``fill where m < 0.5`` (nearest); ``fill=None`` is grid_sample's plain zero padding.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np

from ember.backend import xp_of
from ember.ops.grid_sample import _image_runs, _in_image, _neighbours, _sample
from ember.random import Generator, rng_for
from ember.data.augment import (_batch_major, _fill_values, _gather_from, _image, _min_max, _restore, _uniform,
                                _work_dtype)

__all__ = ["RandomRotation", "RandomAffine"]


def inverse_affine_matrix(angle, translate, scale, shear, center=(0.0, 0.0)):
    """torchvision's inverse affine matrices, vectorized: (N, 2, 3) float64, mapping an output pixel
    (x, y) measured from the image centre to the input pixel it samples.

    Args:
        angle: (N,) degrees, clockwise on screen (y points down); RandomRotation passes ``-angle``.
        translate: (N, 2) pixels (tx, ty) applied after rotation.
        scale: (N,) zoom factors.
        shear: (N, 2) degrees (x shear, y shear).
        center: the fixed point, in pixels from the image centre.
    The forward map is ``T C R S SHy SHx C^-1``; this returns its inverse.
    """
    xp = xp_of(angle)
    rot = xp.radians(angle)
    sx, sy = xp.radians(shear[:, 0]), xp.radians(shear[:, 1])
    cx, cy = center
    tx, ty = translate[:, 0], translate[:, 1]
    # rotation times shears, determinant 1: [[a, b], [c, d]]
    a = xp.cos(rot - sy) / xp.cos(sy)
    b = -xp.cos(rot - sy) * xp.tan(sx) / xp.cos(sy) - xp.sin(rot)
    c = xp.sin(rot - sy) / xp.cos(sy)
    d = -xp.sin(rot - sy) * xp.tan(sx) / xp.cos(sy) + xp.cos(rot)
    m00, m01, m10, m11 = d / scale, -b / scale, -c / scale, a / scale
    m02 = m00 * (-cx - tx) + m01 * (-cy - ty) + cx
    m12 = m10 * (-cx - tx) + m11 * (-cy - ty) + cy
    return xp.stack([xp.stack([m00, m01, m02], axis=1), xp.stack([m10, m11, m12], axis=1)], axis=1)


def warp_affine(x, matrix, interpolation: str = "nearest", fill=None):
    """Resample (C, H, W) / (N, C, H, W) through per-sample inverse matrices (N, 2, 3) (or one (2, 3)).

    Output pixel (i, j) reads the input at ``matrix @ (j + 0.5 - W/2, i + 0.5 - H/2, 1)`` (pixel
    units from the centre); bilinear or nearest (ties to even, as grid_sample); outside the
    image counts as zero, then ``fill`` is blended in as torchvision does (module docstring).
    """
    xb, undo = _image("warp_affine", x)
    if interpolation not in ("nearest", "bilinear"):
        raise ValueError(f"warp_affine: interpolation must be 'nearest' or 'bilinear', got {interpolation!r}")
    xp = xp_of(xb)
    n, c, H, W = xb.shape
    dt = _work_dtype(xb)
    m = xp.broadcast_to(xp.asarray(matrix, dtype=dt).reshape(-1, 2, 3), (n, 2, 3))
    xc = xp.arange(W, dtype=dt) + dt.type(0.5 - W / 2)
    yc = xp.arange(H, dtype=dt)[:, None] + dt.type(0.5 - H / 2)
    coef = [m[:, r, k, None, None] for r in range(2) for k in range(3)]
    sx = coef[0] * xc + coef[1] * yc + (coef[2] + dt.type(W / 2 - 0.5))  # (N, H, W) input column
    sy = coef[3] * xc + coef[4] * yc + (coef[5] + dt.type(H / 2 - 0.5))  # input row
    f = _fill_values("warp_affine", fill, c, xp, dt)  # (C, 1, 1) or None
    if interpolation == "nearest":  # a pure gather: no float round trip for uint8
        r, q = xp.rint(sy).astype(np.int64), xp.rint(sx).astype(np.int64)
        inside = (r >= 0) & (r <= H - 1) & (q >= 0) & (q <= W - 1)
        outside = xp.asarray(0 if f is None else _restore(f[:, None], xb.dtype), dtype=xb.dtype)  # (C, 1, 1, 1)
        picked = _gather_from(xb)(xp.clip(r, 0, H - 1), xp.clip(q, 0, W - 1))  # channel-major (C, N, H, W)
        return undo(_batch_major(xp.where(inside, picked, outside)))
    # bilinear: grid_sample's sampler on the pixel coordinates (framed planes, one gather per corner)
    pos, corners, _ = _neighbours(sx.reshape(n, H * W), sy.reshape(n, H * W), H, W, "bilinear")
    out, _ = _sample(xb.astype(dt, copy=False), pos, corners, _image_runs(n, xb.size * len(corners), xp))
    out = out.reshape(xb.shape)
    if f is not None:
        mask = _in_image(pos, corners, H, W, dt).reshape(n, 1, H, W)  # the in-bounds weight m
        out = mask * (out - f) + f
    return undo(_restore(out, xb.dtype))


def _degrees(name: str, arg: str, value) -> tuple:
    """A number d -> (-d, d) (d >= 0); a pair as given."""
    if isinstance(value, numbers.Real):
        if value < 0:
            raise ValueError(f"{name}: {arg} as a single number must be non-negative, got {value!r}")
        return -float(value), float(value)
    return _min_max(name, arg, value)


def _check_interpolation(name: str, interpolation: str) -> str:
    if interpolation not in ("nearest", "bilinear"):
        raise ValueError(f"{name}: interpolation must be 'nearest' or 'bilinear', got {interpolation!r}")
    return interpolation


def _check_fill(name: str, fill):
    if fill is not None and not isinstance(fill, (numbers.Real, tuple, list)):
        raise TypeError(f"{name}: fill must be a number, a sequence of numbers or None, got {fill!r}")
    return fill


def _center(center, H: int, W: int) -> tuple:
    """torchvision's ``center`` (pixels from the top-left corner) -> pixels from the image centre."""
    return (0.0, 0.0) if center is None else (float(center[0]) - W * 0.5, float(center[1]) - H * 0.5)


class RandomRotation:
    """Rotate each sample by ``angle ~ uniform(*degrees)`` degrees, counter-clockwise, about the
    centre (or ``center``, (x, y) in pixels). The output keeps the input size.

    Args:
        degrees: a number d (range (-d, d)) or a (min, max) range.
        interpolation: ``"nearest"`` (torchvision's default) or ``"bilinear"``.
        expand: must be False: per-sample angles would give each sample its own size.
        fill: value for the area outside the rotated image (a number, one per channel, or None).
    """

    def __init__(self, degrees, interpolation: str = "nearest", expand: bool = False, center=None, fill=0,
                 generator: Generator | None = None):
        name = "RandomRotation"
        self.degrees = _degrees(name, "degrees", degrees)
        self.interpolation = _check_interpolation(name, interpolation)
        if expand:
            raise ValueError(f"{name}: expand=True is not supported: on a batch each sample's angle would give "
                             f"it a different output size")
        if center is not None and (not isinstance(center, (tuple, list)) or len(center) != 2):
            raise ValueError(f"{name}: center must be an (x, y) pair, got {center!r}")
        self.center = center
        self.fill = _check_fill(name, fill)
        self.generator = generator

    def get_params(self, x) -> dict:
        """{"angle": (N,) degrees} drawn for the batch (or the sample) ``x``."""
        xb, _ = _image("RandomRotation", x)
        return {"angle": _uniform(rng_for(self.generator, xb), self.degrees[0], self.degrees[1], xb.shape[0])}

    def __call__(self, x):
        xb, undo = _image("RandomRotation", x)
        xp = xp_of(xb)
        angle = self.get_params(xb)["angle"]
        n = xb.shape[0]
        zeros2 = xp.zeros((n, 2))
        m = inverse_affine_matrix(-angle, zeros2, xp.ones(n), zeros2, _center(self.center, *xb.shape[-2:]))
        return undo(warp_affine(xb, m, self.interpolation, self.fill))

    def __repr__(self) -> str:
        return f"RandomRotation(degrees={self.degrees}, interpolation={self.interpolation!r}, fill={self.fill})"


class RandomAffine:
    """Random rotation, translation, scale and shear per sample, keeping the centre fixed.

    Args:
        degrees: rotation range, a number d (-> (-d, d)) or (min, max); clockwise on screen, as
            torchvision's F.affine.
        translate: (a, b): horizontal shift drawn from [-a W, a W] and vertical from [-b H, b H],
            rounded to whole pixels; None for none.
        scale: (min, max) zoom range; None for 1.
        shear: a number s (x shear in (-s, s)), (min, max) for x, or (xmin, xmax, ymin, ymax); degrees.
        interpolation: ``"nearest"`` (torchvision's default) or ``"bilinear"``.
        fill: value outside the image (number, one per channel, or None for plain zero padding).
        center: (x, y) pixel to keep fixed instead of the image centre.
    """

    def __init__(self, degrees, translate: Sequence[float] | None = None, scale: Sequence[float] | None = None,
                 shear=None, interpolation: str = "nearest", fill=0, center=None, generator: Generator | None = None):
        name = "RandomAffine"
        self.degrees = _degrees(name, "degrees", degrees)
        if translate is not None:
            if not isinstance(translate, (tuple, list)) or len(translate) != 2:
                raise TypeError(f"{name}: translate must be an (a, b) pair of fractions, got {translate!r}")
            if not all(0.0 <= t <= 1.0 for t in translate):
                raise ValueError(f"{name}: translate values must be in [0, 1], got {translate!r}")
            translate = (float(translate[0]), float(translate[1]))
        self.translate = translate
        if scale is not None:
            scale = _min_max(name, "scale", scale)
            if scale[0] <= 0:
                raise ValueError(f"{name}: scale values must be positive, got {scale!r}")
        self.scale = scale
        if shear is not None:
            if isinstance(shear, (tuple, list)) and len(shear) == 4:
                shear = _min_max(name, "shear", shear[:2]) + _min_max(name, "shear", shear[2:])
            else:
                shear = _degrees(name, "shear", shear)
        self.shear = shear
        self.interpolation = _check_interpolation(name, interpolation)
        self.fill = _check_fill(name, fill)
        if center is not None and (not isinstance(center, (tuple, list)) or len(center) != 2):
            raise ValueError(f"{name}: center must be an (x, y) pair, got {center!r}")
        self.center = center
        self.generator = generator

    def get_params(self, x) -> dict:
        """Per-sample parameters: angle (N,), translate (N, 2) whole pixels, scale (N,), shear (N, 2)."""
        xb, _ = _image("RandomAffine", x)
        xp = xp_of(xb)
        n, H, W = xb.shape[0], xb.shape[-2], xb.shape[-1]
        rng = rng_for(self.generator, xb)
        angle = _uniform(rng, self.degrees[0], self.degrees[1], n)
        translate = xp.zeros((n, 2))
        if self.translate is not None:
            max_dx, max_dy = self.translate[0] * W, self.translate[1] * H
            translate = xp.stack([xp.rint(_uniform(rng, -max_dx, max_dx, n)),
                                  xp.rint(_uniform(rng, -max_dy, max_dy, n))], axis=1)
        scale = xp.ones(n) if self.scale is None else _uniform(rng, self.scale[0], self.scale[1], n)
        shear = xp.zeros((n, 2))
        if self.shear is not None:
            shx = _uniform(rng, self.shear[0], self.shear[1], n)
            shy = _uniform(rng, self.shear[2], self.shear[3], n) if len(self.shear) == 4 else xp.zeros(n)
            shear = xp.stack([shx, shy], axis=1)
        return {"angle": angle, "translate": translate, "scale": scale, "shear": shear}

    def __call__(self, x):
        xb, undo = _image("RandomAffine", x)
        m = inverse_affine_matrix(**self.get_params(xb), center=_center(self.center, *xb.shape[-2:]))
        return undo(warp_affine(xb, m, self.interpolation, self.fill))

    def __repr__(self) -> str:
        return (f"RandomAffine(degrees={self.degrees}, translate={self.translate}, scale={self.scale}, "
                f"shear={self.shear}, interpolation={self.interpolation!r}, fill={self.fill})")

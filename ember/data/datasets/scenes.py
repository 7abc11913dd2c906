"""Segmentation datasets: images with a per-pixel label map.

* :class:`FashionScenes`: 1-4 Fashion-MNIST items pasted at random positions and scales on
  a black canvas; the label of a pixel is the class of the item covering it (1..10), 0 for
  background. Real images, generated deterministically from a seed.
* :class:`SkyBird`: a tiny synthetic set (a dark bird over a sky with clouds) for demos and tests.
* :class:`SegmentationFolder`: the user's own image + mask PNG pairs, decoded with Pillow.

Every set yields ``(image, mask)``: image float32 (C, H, W) in [0, 1], mask int64 (H, W)
with class indices and ``ignore_index`` (255, as in PASCAL VOC) on pixels that should not
count in the loss or the metrics. Pass ``ignore_index=255`` to ``F.cross_entropy`` and to
:mod:`ember.metrics`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ember.data.dataset import ArrayDataset, Dataset
from ember.data.datasets.idx import FashionMNIST
from ember.data.transforms import ToTensor
from ember.errors import FormatError, ShapeError

__all__ = ["FashionScenes", "SkyBird", "SegmentationFolder", "IGNORE_INDEX"]

IGNORE_INDEX = 255  # fits the uint8 masks; PyTorch's default -100 would not


def _to_int64(y):
    # masks are stored as uint8 (8x smaller than int64); widen only the batch
    return y.astype(np.int64)


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) bilinear resampling matrix (pixel centres aligned, as align_corners=False)."""
    centres = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    centres = np.clip(centres, 0, n_in - 1)
    lo = np.floor(centres).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = centres - lo
    m = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(m, (rows, lo), 1 - frac)  # tiny matrix built once per scale; lo == hi at the clipped edge
    np.add.at(m, (rows, hi), frac)
    return m


class FashionScenes(ArrayDataset):
    """Scenes of 1-4 Fashion-MNIST items with per-pixel labels (background 0, classes 1..10).

    Args:
        root: folder with the Fashion-MNIST IDX files (default: cache, then Debian's package).
        train: take the items from the training split (True) or the test split (False); a set
            never mixes the two, so test scenes hold only test items.
        num_scenes: number of scenes (default 5000 for train, 1000 for test).
        canvas: side of the square canvas in pixels (e.g. 64 or 96).
        seed: generation seed; the same arguments always give the same scenes.
        items: (min, max) items per scene, inclusive.
        scale: (min, max) item side relative to the 28-pixel original.
        threshold: an item pixel with intensity above this (in [0, 1]) is labelled as the item.
        ignore_edges: label the faint rim of an item (intensity in (0.02, threshold]) with
            ``ignore_index`` instead of background, since it is ambiguous.
        noise: standard deviation of Gaussian pixel noise added to the image.
        transform / target_transform: applied per batch (defaults: uint8 NHWC -> float32
            NCHW in [0, 1]; uint8 masks -> int64).

    Attributes: ``data`` uint8 (N, H, W, 1), ``targets`` uint8 (N, H, W), ``boxes`` int
    (M, 6) rows ``(scene, class, top, left, height, width)`` for every placed item (in
    paste order), ``sources`` (M,) their indices in the Fashion-MNIST split, ``classes``.

    Items are pasted in order, later ones on top (occlusion), each fully inside the canvas.
    """

    classes = ["background"] + list(FashionMNIST.classes)
    num_classes = 11
    ignore_index = IGNORE_INDEX

    def __init__(self, root=None, train: bool = True, num_scenes: int | None = None, canvas: int = 64,
                 seed: int = 0, items: tuple = (1, 4), scale: tuple = (0.75, 1.5), threshold: float = 0.2,
                 ignore_edges: bool = True, noise: float = 0.0, transform: Callable | None = None,
                 target_transform: Callable | None = None, download: bool = False):
        num_scenes = (5000 if train else 1000) if num_scenes is None else int(num_scenes)
        lo_n, hi_n = items
        if not 1 <= lo_n <= hi_n:
            raise ValueError(f"FashionScenes: items must be (min, max) with 1 <= min <= max, got {items}")
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"FashionScenes: scale must be (min, max) with 0 < min <= max, got {scale}")
        if round(28 * scale[1]) > canvas:
            raise ShapeError(f"FashionScenes: canvas {canvas} is smaller than the largest item "
                             f"({round(28 * scale[1])} pixels at scale {scale[1]}); use a larger canvas or scale")
        source = FashionMNIST(root=root, train=train, download=download)
        self.train, self.canvas, self.seed = train, canvas, seed
        rng = np.random.Generator(np.random.PCG64(seed))
        counts = rng.integers(lo_n, hi_n + 1, size=num_scenes)
        m = int(counts.sum())
        scene_of = np.repeat(np.arange(num_scenes), counts)
        picks = rng.integers(0, len(source), size=m)
        sizes = np.rint(28 * rng.uniform(scale[0], scale[1], size=m)).astype(np.int64)
        tops = (rng.uniform(size=m) * (canvas - sizes + 1)).astype(np.int64)
        lefts = (rng.uniform(size=m) * (canvas - sizes + 1)).astype(np.int64)
        cls = source.targets[picks]
        images = source.data[picks, :, :, 0].astype(np.float32) / 255.0  # (M, 28, 28)

        img = np.zeros((num_scenes, canvas, canvas), np.float32)
        lab = np.zeros((num_scenes, canvas, canvas), np.uint8)
        faint = 0.02
        # One resampling per distinct item size (a few dozen), batched over all items of that size;
        # pasting is a loop over items, the only per-item work.
        resized = [None] * m
        for s in np.unique(sizes):
            which = np.nonzero(sizes == s)[0]
            r = _resize_matrix(28, int(s)).astype(np.float32)
            out = np.clip(r @ images[which] @ r.T, 0.0, 1.0)  # (k, s, s)
            for j, k in enumerate(which):
                resized[k] = out[j]
        for k in range(m):
            n, s, t, l0 = scene_of[k], sizes[k], tops[k], lefts[k]
            patch = resized[k]
            seen = patch > faint
            region = (n, slice(t, t + s), slice(l0, l0 + s))
            img[region] = np.where(seen, patch, img[region])
            rim = IGNORE_INDEX if ignore_edges else 0
            lab[region] = np.where(patch > threshold, cls[k] + 1, np.where(seen, rim, lab[region]))
        if noise:
            img = np.clip(img + noise * rng.standard_normal(img.shape, dtype=np.float32), 0.0, 1.0)
        self.boxes = np.stack([scene_of, cls, tops, lefts, sizes, sizes], axis=1)
        self.sources = picks  # index of each placed item in the Fashion-MNIST split
        self.threshold, self.ignore_edges = threshold, ignore_edges
        super().__init__(np.rint(img * 255).astype(np.uint8)[..., None], None,
                         transform=transform if transform is not None else ToTensor(),
                         target_transform=target_transform if target_transform is not None else _to_int64)
        self.targets = lab  # set after the base class, which would widen the labels to int64

    def __repr__(self) -> str:
        return (f"FashionScenes(train={self.train}, num_scenes={len(self)}, canvas={self.canvas}, "
                f"seed={self.seed})")


class SkyBird(ArrayDataset):
    """A tiny synthetic segmentation set: a dark bird (label 1) over a sky (label 0) with clouds.

    Each RGB image (3, size, size) has a vertical blue gradient, one or two soft white clouds
    (still sky, label 0: a distractor) and a bird made of an elliptic body and two triangular
    wings at a random position and scale. Drawn for all images at once by broadcasting
    per-image parameters against one pixel grid.
    """

    classes = ["sky", "bird"]
    num_classes = 2
    ignore_index = IGNORE_INDEX

    def __init__(self, n: int = 256, size: int = 32, noise: float = 0.03, seed: int = 0,
                 transform: Callable | None = None):
        if size < 8:
            raise ValueError(f"SkyBird: size must be at least 8 pixels, got {size}")
        rng = np.random.Generator(np.random.PCG64(seed))
        yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size  # in (0, 1)

        def col(v):
            return v.astype(np.float32)[:, None, None]

        r = col(rng.uniform(0.1, 0.18, n))  # body half-length
        cy, cx = col(rng.uniform(0.25, 0.75, n)), col(rng.uniform(0.25, 0.75, n))
        flap = col(rng.uniform(-1.0, 1.0, n))  # wing tips up (-1) or down (+1)
        dy, dx = yy - cy, xx - cx
        body = (dx / r) ** 2 + (dy / (0.45 * r)) ** 2 <= 1.0
        # a wing: the triangle from the body's centre line out to a tip at (+-2.2 r, flap * 1.5 r)
        u = np.abs(dx) / (2.2 * r)  # 0 at the body axis, 1 at the tip
        tip_y = flap * 1.5 * r * u
        wing = (u <= 1.0) & (np.abs(dy - tip_y) <= 0.35 * r * (1.0 - u))
        bird = body | wing
        sky = np.stack([0.35 + 0.3 * yy, 0.55 + 0.25 * yy, 0.95 - 0.1 * yy])[None]  # (1, 3, H, W)
        clouds = np.zeros((n, size, size), np.float32)
        for _ in range(2):  # two cloud blobs per image, some of them faint
            ky, kx = col(rng.uniform(0, 1, n)), col(rng.uniform(0, 1, n))
            kr, ka = col(rng.uniform(0.08, 0.2, n)), col(rng.uniform(0.0, 0.9, n))
            clouds = np.maximum(clouds, ka * np.exp(-((yy - ky) ** 2 + ((xx - kx) / 1.8) ** 2) / (2 * kr ** 2)))
        img = sky + clouds[:, None] * (1.0 - sky)
        bird_rgb = np.array([0.15, 0.12, 0.1], np.float32)[None, :, None, None]
        img = np.where(bird[:, None], bird_rgb, img)
        if noise:
            img = img + noise * rng.standard_normal(img.shape).astype(np.float32)
        img = np.clip(img, 0.0, 1.0).astype(np.float32)
        super().__init__(img, None, transform=transform, target_transform=_to_int64)
        self.targets = bird.astype(np.uint8)


class SegmentationFolder(Dataset):
    """Image + mask pairs from a folder, decoded with Pillow per sample.

    Layout::

        root/images/0001.png   root/masks/0001.png
        root/images/0002.jpg   root/masks/0002.png

    A mask is matched to its image by file stem; it is a single-channel PNG whose pixel
    values are the class indices (mode "L" or a palette "P" image, whose indices are used
    as is, as in PASCAL VOC); 255 is ``ignore_index``.

    Args:
        root: the folder holding ``images/`` and ``masks/`` (names configurable).
        mode: Pillow mode for the images ("RGB" or "L").
        transform: on the image float32 (C, H, W); target_transform: on the mask int64 (H, W);
        joint_transform: on ``(image, mask)`` together, for geometric augmentation.
    """

    ignore_index = IGNORE_INDEX

    def __init__(self, root, images: str = "images", masks: str = "masks", mode: str = "RGB",
                 transform: Callable | None = None, target_transform: Callable | None = None,
                 joint_transform: Callable | None = None):
        self.root = Path(root)
        img_dir, mask_dir = self.root / images, self.root / masks
        for d in (img_dir, mask_dir):
            if not d.is_dir():
                raise FileNotFoundError(f"SegmentationFolder: {d} is not a folder (expected {images}/ and "
                                        f"{masks}/ under {self.root})")
        exts = (".png", ".jpg", ".jpeg")
        image_files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in exts)
        masks_by_stem = {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() == ".png"}
        missing = [p.name for p in image_files if p.stem not in masks_by_stem]
        if missing:
            raise FileNotFoundError(f"SegmentationFolder: no mask PNG in {mask_dir} for {len(missing)} image(s), "
                                    f"e.g. {missing[:3]}")
        if not image_files:
            raise FileNotFoundError(f"SegmentationFolder: no images in {img_dir}")
        self.samples = [(p, masks_by_stem[p.stem]) for p in image_files]
        self.mode = mode
        self.transform, self.target_transform, self.joint_transform = transform, target_transform, joint_transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        from ember.data.datasets.image_folder import pil_loader
        from PIL import Image

        img_path, mask_path = self.samples[index]
        image = ToTensor()(pil_loader(img_path, self.mode))
        with Image.open(mask_path) as m:
            if m.mode not in ("L", "P", "1", "I"):
                raise FormatError(f"SegmentationFolder: mask {mask_path} has mode {m.mode!r}; expected a "
                                  f"single-channel PNG (L or P) of class indices")
            mask = np.asarray(m).astype(np.int64)
        if mask.shape != image.shape[1:]:
            raise ShapeError(f"SegmentationFolder: {img_path.name} is {image.shape[1]}x{image.shape[2]} but its "
                             f"mask {mask_path.name} is {mask.shape[0]}x{mask.shape[1]}")
        if self.joint_transform is not None:
            image, mask = self.joint_transform(image, mask)
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            mask = self.target_transform(mask)
        return image, mask

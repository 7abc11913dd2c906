"""ImageFolder: one subfolder per class, images decoded with Pillow (imported lazily).

    root/cat/001.png, root/cat/002.jpg, root/dog/abc.jpeg ...

Class names are the sorted subfolder names and ``class_to_idx`` maps them to 0..K-1.
Images are decoded per sample (they do not fit in memory in general), so the DataLoader
takes the per-sample path; use ``num_workers`` to decode in threads (Pillow releases the GIL).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from ember.data.dataset import Dataset
from ember.data.transforms import ToTensor
from ember.errors import FormatError

__all__ = ["ImageFolder", "IMG_EXTENSIONS", "pil_loader"]

IMG_EXTENSIONS = (".png", ".jpg", ".jpeg")


def pil_loader(path, mode: str = "RGB") -> np.ndarray:
    """Decode an image file to a uint8 array (H, W, C); broken files and decompression bombs raise FormatError."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as e:  # pillow is an optional extra
        raise ImportError("ImageFolder needs Pillow: pip install 'ember[images]'") from e
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; treat the warning as the error it hints at
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                arr = np.asarray(img.convert(mode))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise FormatError(f"{path}: refused as a possible decompression bomb ({e})") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise FormatError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from e
    return arr if arr.ndim == 3 else arr[:, :, None]


class ImageFolder(Dataset):
    """Images in ``root/<class>/<file>`` (PNG/JPEG), labelled by subfolder.

    Args:
        root: the folder of class subfolders.
        transform: a per-sample transform on uint8 (H, W, C) (default: ToTensor -> float32 (C, H, W)).
        target_transform: a transform on the int label.
        mode: Pillow mode to convert to ("RGB" or "L").

    Attributes: ``classes`` (sorted names), ``class_to_idx``, ``samples`` [(path, idx)], ``targets``.
    """

    def __init__(self, root, transform: Callable | None = None, target_transform: Callable | None = None,
                 mode: str = "RGB"):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"ImageFolder: {self.root} is not a folder")
        self.classes = sorted(d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not self.classes:
            raise FileNotFoundError(f"ImageFolder: {self.root} has no class subfolders")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = [(p, self.class_to_idx[c]) for c in self.classes
                        for p in sorted((self.root / c).rglob("*"))
                        if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS]
        if not self.samples:
            raise FileNotFoundError(f"ImageFolder: no {'/'.join(IMG_EXTENSIONS)} files under {self.root}")
        self.targets = [t for _, t in self.samples]
        self.transform = transform if transform is not None else ToTensor()
        self.target_transform = target_transform
        self.mode = mode
        self.source = "found in root"

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        x = self.transform(pil_loader(path, self.mode))
        if self.target_transform is not None:
            target = self.target_transform(target)
        return x, target

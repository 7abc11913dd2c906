"""Datasets the command line knows by name, loaded as in-memory uint8 image arrays.

Each entry returns ``ImageData``: train and test images (N, C, H, W) uint8, labels
(N,) int64, class names, and the per-channel mean/std used for normalization. The
actual finding / downloading of files is ember.data's job; this module only maps a
name to a dataset class and to its standard preprocessing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ImageData", "load_image_data", "check_dataset_name", "list_datasets", "DATASETS"]


@dataclass
class ImageData:
    """Train/test arrays of one dataset plus what the model and transforms need to know."""

    name: str
    x_train: np.ndarray  # (N, C, H, W) uint8
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    mean: tuple = (0.5,)
    std: tuple = (0.5,)
    source: str = ""  # where the files came from (root, cache, system package, download)
    extra: dict = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def input_size(self) -> int:
        return int(self.x_train.shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _nchw(x) -> np.ndarray:
    from ember.backend import asnumpy

    x = np.asarray(asnumpy(getattr(x, "data", x)))
    if x.ndim == 3:  # (N, H, W) grayscale
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):  # (N, H, W, C)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def _targets(ds) -> np.ndarray:
    from ember.backend import asnumpy

    y = getattr(ds, "targets", None)
    if y is None:
        y = getattr(ds, "labels")
    return np.asarray(asnumpy(getattr(y, "data", y))).astype(np.int64)


def _from_classes(name, cls, root, download, mean, std) -> ImageData:
    train = cls(root=root, train=True, download=download)
    test = cls(root=root, train=False, download=download)
    classes = list(getattr(train, "classes", [str(i) for i in range(int(_targets(train).max()) + 1)]))
    return ImageData(name, _nchw(train.data), _targets(train), _nchw(test.data), _targets(test), classes,
                     mean, std, source=str(getattr(train, "source", "")))


def _fashion_mnist(root, download, **_):
    from ember.data.datasets import FashionMNIST

    return _from_classes("fashion-mnist", FashionMNIST, root, download, (0.2860,), (0.3530,))


def _mnist(root, download, **_):
    from ember.data.datasets import MNIST

    return _from_classes("mnist", MNIST, root, download, (0.1307,), (0.3081,))


def _cifar10(root, download, **_):
    from ember.data.datasets import CIFAR10

    return _from_classes("cifar10", CIFAR10, root, download, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def _synthetic_shapes(root, download, seed: int = 0, n_train: int = 600, n_test: int = 150, size: int = 16,
                      **_):
    """Procedural 1xSIZExSIZE images of circles, squares and triangles (no files): for tests and smoke runs."""
    from ember.data.datasets import Shapes

    train = Shapes(n_train, size=size, seed=seed)
    test = Shapes(n_test, size=size, seed=seed + 10_000)
    to_u8 = lambda a: (np.clip(_nchw(a), 0, 1) * 255).round().astype(np.uint8)  # noqa: E731
    return ImageData("synthetic-shapes", to_u8(train.data), _targets(train), to_u8(test.data), _targets(test),
                     list(Shapes.classes), (0.5,), (0.5,), source="generated in memory")


DATASETS = {
    "fashion-mnist": _fashion_mnist,
    "mnist": _mnist,
    "cifar10": _cifar10,
    "synthetic-shapes": _synthetic_shapes,
}


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def check_dataset_name(name: str) -> str:
    """The registry key for ``name``; raises ValueError listing the valid names when it is unknown."""
    key = name.strip().lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10"}.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(list_datasets())}")
    return key


def load_image_data(name: str, root: str | None = None, download: bool = True, **kw) -> ImageData:
    """Load dataset ``name``; raises ValueError listing the valid names when it is unknown."""
    return DATASETS[check_dataset_name(name)](root, download, **kw)

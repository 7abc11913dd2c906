"""Datasets: indexable collections of samples, with a fast path for whole batches.

A ``Dataset`` answers ``len(ds)`` and ``ds[i]``. Datasets whose samples live in
in-memory arrays also answer ``ds.get_batch(indices)`` (``indices`` a 1-d int64
NumPy array), returning the whole batch as arrays in one fancy-indexing step; the
DataLoader uses it instead of a Python loop over samples. ``Subset`` and
``ConcatDataset`` keep that fast path when the datasets they wrap have it.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from ember.backend import xp_of
from ember.errors import ShapeError
from ember.random import Generator, get_generator
from ember.tensor import Tensor

__all__ = ["Dataset", "TensorDataset", "ArrayDataset", "Subset", "ConcatDataset", "random_split", "has_batch_path"]


class Dataset:
    """Base class: subclasses define ``__len__`` and ``__getitem__`` (and optionally ``get_batch``)."""

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __getitem__(self, index: int):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __add__(self, other: "Dataset") -> "ConcatDataset":
        return ConcatDataset([self, other])


def has_batch_path(dataset) -> bool:
    """True when ``dataset.get_batch(indices)`` exists and can serve whole batches."""
    fn = getattr(dataset, "get_batch", None)
    if fn is None:
        return False
    supports = getattr(dataset, "supports_batch", None)  # wrappers decide from what they wrap
    return bool(supports()) if callable(supports) else True


def _check_indices(name: str, indices: np.ndarray, n: int) -> np.ndarray:
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size and (indices.min() < -n or indices.max() >= n):
        bad = indices[(indices < -n) | (indices >= n)][0]
        raise IndexError(f"{name}: index {int(bad)} is out of range for a dataset of {n} samples")
    return np.where(indices < 0, indices + n, indices)


class TensorDataset(Dataset):
    """Samples are rows of equally long tensors: ``TensorDataset(x, y)[i] == (x[i], y[i])``.

    Args:
        *tensors: ember Tensors or arrays, all with the same first dimension N.
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: needs at least one tensor")
        self.tensors = tuple(t if isinstance(t, Tensor) else Tensor(np.asarray(t)) for t in tensors)
        n = self.tensors[0].shape[0] if self.tensors[0].ndim else None
        for k, t in enumerate(self.tensors):
            if t.ndim == 0 or t.shape[0] != n:
                shapes = ", ".join(str(u.shape) for u in self.tensors)
                raise ShapeError(f"TensorDataset: tensor {k} has shape {t.shape} but all tensors need the same "
                                 f"first dimension (shapes {shapes})")

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __getitem__(self, index: int):
        return tuple(Tensor(t.data[index]) for t in self.tensors)

    def get_batch(self, indices: np.ndarray) -> tuple:
        indices = _check_indices("TensorDataset", indices, len(self))
        out = []
        for t in self.tensors:
            xp = xp_of(t.data)
            out.append(Tensor(t.data[xp.asarray(indices)]))
        return tuple(out)


class ArrayDataset(Dataset):
    """In-memory samples with targets; ``transform`` is applied per batch, not per sample.

    Args:
        data: array (N, ...) of inputs, kept as is (e.g. uint8 images (N, H, W, C)).
        targets: array (N,) of integer labels (stored as int64), or None.
        transform: callable on a batch of inputs ``data[indices]`` (N', ...) -> array.
        target_transform: callable on a batch of targets.

    ``ds[i]`` returns ``(transform(data[i:i+1])[0], int(target))``; ``ds.get_batch(idx)``
    returns ``(transform(data[idx]), targets[idx])`` with one fancy index, so only the
    batch is ever converted to float.
    """

    def __init__(self, data, targets=None, transform: Callable | None = None,
                 target_transform: Callable | None = None):
        self.data = data
        self.targets = None if targets is None else np.asarray(targets).astype(np.int64, copy=False)
        if self.targets is not None and len(self.targets) != len(data):
            raise ShapeError(f"{type(self).__name__}: {len(data)} inputs but {len(self.targets)} targets "
                             f"(data {tuple(data.shape)}, targets {tuple(self.targets.shape)})")
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return len(self.data)

    def get_batch(self, indices: np.ndarray) -> tuple:
        """(inputs (N', ...), targets (N',) int64) for the given indices."""
        indices = _check_indices(type(self).__name__, indices, len(self))
        x = self.data[indices]
        if self.transform is not None:
            x = self.transform(x)
        if self.targets is None:
            return (x,)
        y = self.targets[indices]
        if self.target_transform is not None:
            y = self.target_transform(y)
        return x, y

    def __getitem__(self, index: int):
        batch = self.get_batch(np.array([index]))
        x = batch[0][0]
        if len(batch) == 1:
            return x
        y = batch[1][0]
        return x, (int(y) if np.ndim(y) == 0 else y)


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = _check_indices("Subset", np.asarray(indices, dtype=np.int64), len(dataset))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.dataset[int(self.indices[index])]

    def supports_batch(self) -> bool:
        return has_batch_path(self.dataset)

    def get_batch(self, indices: np.ndarray) -> tuple:
        return self.dataset.get_batch(self.indices[_check_indices("Subset", indices, len(self))])


class ConcatDataset(Dataset):
    """The datasets one after another; ``len`` is the sum of their lengths."""

    def __init__(self, datasets: Sequence):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: needs at least one dataset")
        self.cumulative_sizes = np.cumsum([len(d) for d in self.datasets]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.cumulative_sizes[-1])

    def _locate(self, indices: np.ndarray):
        which = np.searchsorted(self.cumulative_sizes, indices, side="right")
        starts = np.concatenate([[0], self.cumulative_sizes[:-1]])
        return which, indices - starts[which]

    def __getitem__(self, index: int):
        (index,) = _check_indices("ConcatDataset", np.array([index]), len(self))
        which, local = self._locate(np.array([index]))
        return self.datasets[int(which[0])][int(local[0])]

    def supports_batch(self) -> bool:
        return all(has_batch_path(d) for d in self.datasets)

    def get_batch(self, indices: np.ndarray) -> tuple:
        indices = _check_indices("ConcatDataset", indices, len(self))
        which, local = self._locate(indices)
        parts, positions = [], []
        for k in np.unique(which):  # a loop over datasets, not samples
            sel = np.flatnonzero(which == k)
            parts.append(self.datasets[int(k)].get_batch(local[sel]))
            positions.append(sel)
        order = np.argsort(np.concatenate(positions), kind="stable")  # back to the requested order
        out = []
        for field in zip(*parts):
            arrays = [f.data if isinstance(f, Tensor) else f for f in field]
            joined = xp_of(*arrays).concatenate(arrays)[order]
            out.append(Tensor(joined) if isinstance(field[0], Tensor) else joined)
        return tuple(out)


def random_split(dataset, lengths: Sequence[float], generator: Generator | None = None) -> list:
    """Split into non-overlapping ``Subset`` s of the given lengths (or fractions summing to 1).

    Fractions are turned into counts by flooring, and the remainder is given out one at
    a time to the first subsets (as PyTorch does). The permutation comes from ``generator``
    (the default generator when None).
    """
    n = len(dataset)
    lengths = list(lengths)
    if lengths and all(isinstance(x, float) for x in lengths) and math.isclose(sum(lengths), 1.0, abs_tol=1e-6):
        if any(x < 0 for x in lengths):
            raise ValueError(f"random_split: fractions must be non-negative, got {lengths}")
        counts = [int(math.floor(n * f)) for f in lengths]
        for k in range(n - sum(counts)):
            counts[k % len(counts)] += 1
        lengths = counts
    if any(int(x) != x or x < 0 for x in lengths) or sum(lengths) != n:
        raise ValueError(f"random_split: lengths {lengths} must be non-negative integers summing to the "
                         f"dataset length {n}, or fractions summing to 1")
    perm = get_generator(generator).np.permutation(n)
    bounds = np.cumsum([0] + [int(x) for x in lengths])
    return [Subset(dataset, perm[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

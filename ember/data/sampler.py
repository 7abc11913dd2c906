"""Samplers: the order in which a DataLoader visits a dataset's indices, one epoch at a time.

Each has ``__iter__`` (the indices) and ``__len__``; the random ones also have ``draw()``, the
epoch's indices as one NumPy array, drawn from ``generator`` (ember's default generator when
None), which the DataLoader uses to cut batches without a Python loop over samples.
"""
from __future__ import annotations

import numbers
from typing import Iterator, Sequence

import numpy as np

from ember.random import Generator, get_generator
from ember.tensor import Tensor

__all__ = ["SequentialSampler", "RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler"]


class SequentialSampler:
    """Indices 0, 1, ..., len(dataset) - 1."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler:
    """A fresh random permutation every epoch."""

    def __init__(self, data_source, generator: Generator | None = None):
        self.data_source = data_source
        self.generator = generator

    def draw(self) -> np.ndarray:
        return get_generator(self.generator).np.permutation(len(self.data_source))

    def __iter__(self) -> Iterator[int]:
        return iter(self.draw().tolist())

    def __len__(self) -> int:
        return len(self.data_source)


class SubsetRandomSampler:
    """The given ``indices`` in a fresh random order every epoch (e.g. a validation split
    taken from a training set: ``SubsetRandomSampler(range(50000, 60000))``)."""

    def __init__(self, indices: Sequence[int], generator: Generator | None = None):
        self.indices = np.asarray(list(indices), dtype=np.int64)  # (a range, a list, an array, a generator)
        if self.indices.ndim != 1:
            raise ValueError(f"SubsetRandomSampler: indices must be a 1-D sequence, got shape {self.indices.shape}")
        self.generator = generator

    def draw(self) -> np.ndarray:
        return self.indices[get_generator(self.generator).np.permutation(len(self.indices))]

    def __iter__(self) -> Iterator[int]:
        return iter(self.draw().tolist())

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler:
    """``num_samples`` indices drawn with probability proportional to ``weights`` (one per
    sample), with replacement by default: with weights 1 / (its class's count), every class is
    drawn about equally often, a common remedy for an imbalanced dataset."""

    def __init__(self, weights, num_samples: int, replacement: bool = True, generator: Generator | None = None):
        w = np.asarray(weights.numpy() if isinstance(weights, Tensor) else weights, dtype=np.float64)
        if w.ndim != 1 or w.size == 0:
            raise ValueError(f"WeightedRandomSampler: weights must be a non-empty 1-D sequence, got shape {w.shape}")
        if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError("WeightedRandomSampler: weights must be finite, non-negative and not all zero")
        if not isinstance(num_samples, numbers.Integral) or isinstance(num_samples, bool) or num_samples < 1:
            raise ValueError(f"WeightedRandomSampler: num_samples must be a positive integer, got {num_samples!r}")
        if not replacement and num_samples > np.count_nonzero(w):
            raise ValueError(f"WeightedRandomSampler: cannot draw {num_samples} samples without replacement from "
                             f"{np.count_nonzero(w)} with non-zero weight")
        self.weights, self.num_samples, self.replacement = w, int(num_samples), bool(replacement)
        self.generator = generator

    def draw(self) -> np.ndarray:
        rng = get_generator(self.generator).np
        return rng.choice(len(self.weights), size=self.num_samples, replace=self.replacement,
                          p=self.weights / self.weights.sum()).astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self.draw().tolist())

    def __len__(self) -> int:
        return self.num_samples

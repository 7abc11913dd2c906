"""DataLoader: batches of ember Tensors from a Dataset, shuffled reproducibly.

Where the dataset is array-backed (it has ``get_batch(indices)``, see ember.data.dataset)
each batch is one fancy-indexing call plus the batch transform, with no Python loop
over samples. A dataset with PyTorch's ``__getitems__(list_of_indices)`` gets the whole
index list in one call and its samples are collated. Other datasets are read sample by
sample and stacked by ``default_collate``.

``num_workers > 0`` prefetches up to ``2 * num_workers`` batches in a thread pool.
Threads (not processes) suffice because the batch path spends its time in NumPy,
which releases the GIL; batches still arrive in sampler order, and all random numbers
for an epoch's order are drawn before any worker starts. Random transforms draw from
their own generator inside the workers, so with num_workers > 0 their draws can be
interleaved differently from run to run; use num_workers=0 for bit-exact augmentation.
"""
from __future__ import annotations

import numbers
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

import numpy as np

from ember.data.dataset import has_batch_path
from ember.data.sampler import RandomSampler, SequentialSampler
from ember.errors import ShapeError
from ember.random import Generator, get_generator
from ember.tensor import Tensor

__all__ = ["DataLoader", "default_collate"]


def _to_tensor(x) -> Tensor:
    if isinstance(x, Tensor):
        return x
    x = np.asarray(x)
    if x.dtype.kind in "iu" and x.dtype != np.uint8:
        x = x.astype(np.int64)  # labels: int64, as F.cross_entropy expects
    elif x.dtype == np.float64:
        x = x.astype(np.float32)  # float32 by default
    return Tensor(np.ascontiguousarray(x))


def default_collate(samples: list):
    """Stack a list of samples into a batch.

    Arrays and Tensors are stacked along a new first axis; Python ints become an int64
    tensor, floats a float32 one; tuples/lists and dicts are collated field by field.
    """
    first = samples[0]
    if isinstance(first, Tensor):
        arrays = [s.data for s in samples]
        from ember.backend import xp_of

        return Tensor(xp_of(*arrays).stack(arrays))
    if isinstance(first, np.ndarray) or isinstance(first, np.generic):
        shapes = {np.shape(s) for s in samples}
        if len(shapes) > 1:
            raise ShapeError(f"default_collate: samples have different shapes {sorted(shapes)}; resize them "
                             f"to one size (transforms.Resize) or pass a collate_fn")
        return _to_tensor(np.stack(samples))
    if isinstance(first, bool):
        return Tensor(np.array(samples, dtype=np.bool_))
    if isinstance(first, numbers.Integral):
        return Tensor(np.array(samples, dtype=np.int64))
    if isinstance(first, numbers.Real):
        return Tensor(np.array(samples, dtype=np.float32))
    if isinstance(first, dict):
        return {k: default_collate([s[k] for s in samples]) for k in first}
    if isinstance(first, (tuple, list)):
        if any(len(s) != len(first) for s in samples):
            raise ShapeError("default_collate: samples are sequences of different lengths")
        return type(first)(default_collate(list(field)) for field in zip(*samples)) if isinstance(first, tuple) \
            else [default_collate(list(field)) for field in zip(*samples)]
    raise TypeError(f"default_collate: cannot batch samples of type {type(first).__name__}; pass a collate_fn")


class DataLoader:
    """Iterate over ``dataset`` in batches of ember Tensors.

    Args:
        dataset: a Dataset (array-backed ones are batched without a per-sample loop).
        batch_size: samples per batch.
        shuffle: new random order every epoch, drawn from ``generator``.
        drop_last: drop the last incomplete batch.
        sampler: an iterable of indices (overrides ``shuffle``).
        collate_fn: turns a list of samples into a batch (forces the per-sample path).
        generator: ember.Generator for shuffling (default: ember's default generator).
        num_workers: threads prefetching batches (0: in the calling thread).

    Yields what the dataset gives, as Tensors: for image datasets ``(x, y)`` with
    x float32 (N, C, H, W) and y int64 (N,).
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 sampler: Iterable[int] | None = None, collate_fn: Callable | None = None,
                 generator: Generator | None = None, num_workers: int = 0):
        if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(num_workers, numbers.Integral) or num_workers < 0:
            raise ValueError(f"DataLoader: num_workers must be a non-negative integer, got {num_workers!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler and shuffle=True are mutually exclusive")
        get_generator(generator)  # type-check early
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.drop_last = drop_last
        self.collate_fn = collate_fn
        self.generator = generator
        self.num_workers = int(num_workers)
        if sampler is None:
            sampler = RandomSampler(dataset, generator) if shuffle else SequentialSampler(dataset)
        self.sampler = sampler

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _index_batches(self) -> list:
        if hasattr(self.sampler, "draw"):  # ember's random samplers: the epoch's indices as one array
            order = self.sampler.draw()
        elif isinstance(self.sampler, SequentialSampler):
            order = np.arange(len(self.sampler), dtype=np.int64)
        else:
            order = np.fromiter((int(i) for i in self.sampler), dtype=np.int64)
        n_full = len(order) // self.batch_size
        cuts = [order[k * self.batch_size:(k + 1) * self.batch_size] for k in range(n_full)]
        if not self.drop_last and len(order) % self.batch_size:
            cuts.append(order[n_full * self.batch_size:])
        return cuts

    def _fetch(self, indices: np.ndarray):
        if self.collate_fn is None and has_batch_path(self.dataset):
            batch = self.dataset.get_batch(indices)
            return tuple(_to_tensor(b) for b in batch) if isinstance(batch, tuple) else _to_tensor(batch)
        getitems = getattr(self.dataset, "__getitems__", None)  # PyTorch's list-of-samples protocol
        samples = getitems(indices.tolist()) if getitems is not None else [self.dataset[int(i)] for i in indices]
        return (self.collate_fn or default_collate)(samples)

    def __iter__(self) -> Iterator:
        batches = self._index_batches()
        if self.num_workers == 0:
            for idx in batches:
                yield self._fetch(idx)
            return
        depth = 2 * self.num_workers
        with ThreadPoolExecutor(max_workers=self.num_workers, thread_name_prefix="ember-data") as pool:
            pending: deque = deque()
            todo = iter(batches)
            for idx in todo:
                pending.append(pool.submit(self._fetch, idx))
                if len(pending) >= depth:
                    break
            while pending:
                result = pending.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(self._fetch, nxt))
                yield result

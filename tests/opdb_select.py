"""Rows of the op table for picking and ordering along a dimension (ember/ops/select.py): gather,
masked_fill, sort, argsort, topk, cumsum, roll, narrow, t, one_hot. PyTorch is the oracle."""
from __future__ import annotations

import numpy as np
import torch

from ember.ops import select as P
from tests.opdb import OpInfo, Sample, non_contiguous
from tests.opdb_core import _shaped, _u

OPS: list = []


def add_row(name, fn, samples, **kw):
    OPS.append(OpInfo(name, fn, samples, **kw))


def _distinct(rng, *shape):
    """Values with no ties (sorting gradients are defined only where the order is strict)."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.25 - n * 0.1 + rng.uniform(0, 0.05, n)).reshape(shape)


def _gather_samples(rng):
    return [
        Sample((_u(rng, 3, 5), np.array([[0, 4], [2, 2], [1, 3]])), {"dim": 1}, name="labels_repeats"),
        Sample((_u(rng, 4, 3), np.array([[3, 0, 1], [3, 3, 2]])), {"dim": 0}, name="dim0"),
        Sample((_u(rng, 2, 4, 3), rng.integers(0, 4, (2, 6, 2))), {"dim": 1}, name="3d_smaller_index"),
        Sample((_u(rng, 3, 5), np.array([[1], [0], [4]])), {"dim": -1}, name="one_per_row"),
        Sample((non_contiguous(_u(rng, 3, 4)), np.array([[3, 0], [1, 1], [2, 0]])), {"dim": 1}, name="noncontig"),
        Sample((_u(rng, 3, 4), np.zeros((0, 4), dtype=np.int64)), {"dim": 0}, name="empty_index"),
    ]


add_row("gather", lambda x, index, dim: P.gather(x, dim, index), _gather_samples,
        torch_fn=lambda x, index, dim: torch.gather(x, dim, index))


def _mask_samples(rng):
    x = _u(rng, 3, 4)
    return [
        Sample((x, x > 0.3), {"value": -1.5}, name="same_shape"),
        Sample((_u(rng, 3, 4), np.array([True, False, False, True])), {"value": 0.0}, name="bcast_row"),
        Sample((_u(rng, 2, 3), np.array(True)), {"value": 2.0}, name="0d_mask"),
        Sample((non_contiguous(_u(rng, 2, 5)), np.array([[True] * 5, [False] * 5])), {"value": 1.0},
               name="noncontig"),
    ]


add_row("masked_fill", lambda x, mask, value: P.masked_fill(x, mask, value), _mask_samples,
        torch_fn=lambda x, mask, value: x.masked_fill(mask, value))


def _order_samples(kwargs_list):
    def samples(rng):
        out = [Sample((_distinct(rng, *shape),), kw, name=str(i)) for i, (shape, kw) in enumerate(kwargs_list)]
        out.append(Sample((non_contiguous(_distinct(rng, 3, 4)),), kwargs_list[0][1], name="noncontig"))
        return out

    return samples


add_row("sort", lambda x, **kw: P.sort(x, **kw), _order_samples([
    ((3, 5), {}), ((4, 3), {"dim": 0}), ((2, 3, 4), {"dim": 1, "descending": True}), ((6,), {"descending": True}),
    ((0, 3), {}),
]), torch_fn=lambda x, **kw: torch.sort(x, **kw))
add_row("argsort", lambda x, **kw: P.argsort(x, **kw), _order_samples([
    ((3, 5), {}), ((4, 3), {"dim": 0, "descending": True}), ((7,), {}),
]), torch_fn=lambda x, **kw: torch.argsort(x, **kw), grad=False)
add_row("argsort_ties_stable", lambda x, **kw: P.argsort(x, **kw), lambda rng: [
    Sample((np.array([2.0, 1.0, 2.0, 1.0, 3.0, 2.0]),), {}),
    Sample((np.array([2.0, 1.0, 2.0, 1.0, 3.0, 2.0]),), {"descending": True}),
    Sample((np.array([1.0, np.nan, -1.0, np.nan]),), {}, name="nan_last"),
], torch_fn=lambda x, **kw: torch.argsort(x, stable=True, **kw), grad=False)
add_row("topk", lambda x, k, **kw: P.topk(x, k, **kw), _order_samples([
    ((3, 6), {"k": 2}), ((5, 3), {"k": 3, "dim": 0}), ((4, 5), {"k": 2, "largest": False}), ((6,), {"k": 6}),
    ((3, 4), {"k": 0}),
]), torch_fn=lambda x, k, **kw: torch.topk(x, k, **kw))
add_row("cumsum", lambda x, dim: P.cumsum(x, dim), _shaped([
    ((3, 4), {"dim": 1}), ((3, 4), {"dim": 0}), ((2, 3, 4), {"dim": -2}), ((0, 3), {"dim": 1}), ((5,), {"dim": 0}),
]), torch_fn=lambda x, dim: torch.cumsum(x, dim))
add_row("cumsum_int", lambda x, dim: P.cumsum(x, dim), lambda rng: [
    Sample((rng.integers(-5, 5, (3, 4)).astype(np.int32),), {"dim": 1}),
    Sample((np.array([True, False, True, True]),), {"dim": 0}, name="bool"),
], torch_fn=lambda x, dim: torch.cumsum(x, dim), grad=False)
add_row("roll", lambda x, shifts, dims=None: P.roll(x, shifts, dims), _shaped([
    ((3, 4), {"shifts": 1, "dims": 1}), ((3, 4), {"shifts": (-1, 2), "dims": (0, 1)}), ((3, 4), {"shifts": 5}),
    ((2, 3, 4), {"shifts": -7, "dims": -1}),
]), torch_fn=lambda x, shifts, dims=None: torch.roll(x, shifts, dims))
add_row("narrow", lambda x, dim, start, length: P.narrow(x, dim, start, length), _shaped([
    ((5, 4), {"dim": 0, "start": 1, "length": 3}), ((3, 6), {"dim": 1, "start": -4, "length": 2}),
    ((3, 4), {"dim": 1, "start": 4, "length": 0}),
]), torch_fn=lambda x, dim, start, length: torch.narrow(x, dim, start, length))
add_row("t", lambda x: P.t(x), _shaped([((3, 4), {}), ((5,), {}), ((), {})]), torch_fn=lambda x: torch.t(x))
add_row("one_hot", lambda y, **kw: P.one_hot(y, **kw), lambda rng: [
    Sample((np.array([0, 3, 1, 1]),), {}),
    Sample((np.array([[2, 0], [1, 4]]),), {"num_classes": 6}),
    Sample((np.zeros((0,), dtype=np.int64),), {"num_classes": 3}, name="empty"),
], torch_fn=lambda y, **kw: torch.nn.functional.one_hot(y, **kw), grad=False)

"""ember.data samplers: subset and weighted random sampling, reproducible from a generator, through
the DataLoader's batch path."""
import numpy as np
import pytest

import ember
from ember.data import ArrayDataset, DataLoader, RandomSampler, SubsetRandomSampler, WeightedRandomSampler


def _labels_dataset(counts):
    """An imbalanced dataset: counts[c] samples of class c; x holds each sample's index."""
    y = np.repeat(np.arange(len(counts)), counts)
    return ArrayDataset(np.arange(len(y), dtype=np.float32)[:, None], y), y


def test_subset_random_sampler_visits_its_indices_once_per_epoch_reproducibly():
    subset = list(range(50, 80))
    s = SubsetRandomSampler(subset, generator=ember.Generator(3))
    first, second = list(s), list(s)
    assert sorted(first) == sorted(second) == subset and first != second and len(s) == 30
    again = list(SubsetRandomSampler(subset, generator=ember.Generator(3)))
    assert again == first
    ds, _ = _labels_dataset([100])
    seen = np.concatenate([x.numpy()[:, 0] for x, _ in DataLoader(ds, batch_size=8, sampler=s)])
    assert sorted(seen.astype(int).tolist()) == subset


def test_weighted_sampler_balances_an_imbalanced_dataset():
    counts = [900, 90, 10]
    ds, y = _labels_dataset(counts)
    weights = 1.0 / np.asarray(counts)[y]
    sampler = WeightedRandomSampler(weights, num_samples=3000, generator=ember.Generator(0))
    drawn = np.concatenate([yb.numpy() for _, yb in DataLoader(ds, batch_size=256, sampler=sampler)])
    assert len(drawn) == 3000 == len(sampler)
    freq = np.bincount(drawn, minlength=3) / 3000
    np.testing.assert_allclose(freq, 1 / 3, atol=0.05)  # uniform classes (plain shuffling: 0.9 / 0.09 / 0.01)


def test_weighted_sampler_without_replacement_zero_weights_and_errors():
    w = [1.0, 0.0, 2.0, 3.0, 0.0]
    draws = WeightedRandomSampler(w, 3, replacement=False, generator=ember.Generator(1)).draw()
    assert sorted(draws.tolist()) == [0, 2, 3]  # all non-zero-weight samples, each once
    assert 1 not in WeightedRandomSampler(w, 500, generator=ember.Generator(2)).draw()
    with pytest.raises(ValueError, match="cannot draw 4 samples without replacement from 3"):
        WeightedRandomSampler(w, 4, replacement=False)
    with pytest.raises(ValueError, match="non-negative"):
        WeightedRandomSampler([1.0, -1.0], 2)
    with pytest.raises(ValueError, match="not all zero"):
        WeightedRandomSampler([0.0, 0.0], 2)
    with pytest.raises(ValueError, match="num_samples must be a positive integer, got 0"):
        WeightedRandomSampler([1.0], 0)
    with pytest.raises(ValueError, match="1-D"):
        SubsetRandomSampler(np.zeros((2, 2), dtype=int))


def test_random_sampler_draw_is_what_the_loader_uses():
    ds, _ = _labels_dataset([20])
    g1, g2 = ember.Generator(5), ember.Generator(5)
    order = RandomSampler(ds, generator=g1).draw()
    got = np.concatenate([x.numpy()[:, 0] for x, _ in DataLoader(ds, batch_size=6, shuffle=True, generator=g2)])
    np.testing.assert_array_equal(got.astype(int), order)

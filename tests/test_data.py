"""ember.data: Dataset wrappers, DataLoader (batch path, shuffling, workers) and transforms."""
import numpy as np
import pytest
import torch

import ember
from ember.data import (ArrayDataset, ConcatDataset, DataLoader, Dataset, Subset, TensorDataset,
                        default_collate, random_split)
from ember.data import transforms as T
from ember.errors import DTypeError, ShapeError


class Squares(Dataset):
    """A generic (per-item) dataset: sample i is (array [i, i*i], i, {'k': float(i)})."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return np.array([i, i * i], dtype=np.float32), i, {"k": float(i)}


class CountingArrays(ArrayDataset):
    calls = 0

    def __getitem__(self, i):
        CountingArrays.calls += 1
        return super().__getitem__(i)


# ---- datasets -----------------------------------------------------------------------------------
def test_tensor_dataset_and_shape_error():
    x, y = ember.randn(5, 3), ember.arange(5)
    ds = TensorDataset(x, y)
    assert len(ds) == 5
    a, b = ds[2]
    np.testing.assert_array_equal(a.numpy(), x.numpy()[2])
    assert b.item() == 2
    xb, yb = ds.get_batch(np.array([4, 0]))
    np.testing.assert_array_equal(yb.numpy(), [4, 0])
    with pytest.raises(ShapeError, match=r"\(4,\)"):
        TensorDataset(x, ember.arange(4))
    with pytest.raises(IndexError, match="index 5"):
        ds.get_batch(np.array([5]))


def test_subset_concat_keep_batch_path_and_order():
    a = ArrayDataset(np.arange(6, dtype=np.float32)[:, None], np.arange(6))
    b = ArrayDataset(100 + np.arange(4, dtype=np.float32)[:, None], 100 + np.arange(4))
    cat = a + b
    assert isinstance(cat, ConcatDataset) and len(cat) == 10
    assert cat[7][1] == 101 and cat[-1][1] == 103
    x, y = cat.get_batch(np.array([9, 0, 6, 3]))
    np.testing.assert_array_equal(y, [103, 0, 100, 3])
    np.testing.assert_array_equal(x[:, 0], [103, 0, 100, 3])
    sub = Subset(cat, [8, 1])
    np.testing.assert_array_equal(sub.get_batch(np.array([1, 0]))[1], [1, 102])
    assert sub[0][1] == 102


def test_random_split_lengths_fractions_and_seed():
    ds = ArrayDataset(np.zeros((10, 1), np.float32), np.arange(10))
    parts = random_split(ds, [0.7, 0.3], generator=ember.Generator(3))
    assert [len(p) for p in parts] == [7, 3]
    got = np.concatenate([p.indices for p in parts])
    assert sorted(got.tolist()) == list(range(10))
    again = random_split(ds, [7, 3], generator=ember.Generator(3))
    np.testing.assert_array_equal(again[0].indices, parts[0].indices)
    assert [len(p) for p in random_split(ds, [0.5, 0.25, 0.25])] == [6, 2, 2]  # as torch: remainder to the first
    with pytest.raises(ValueError, match="summing"):
        random_split(ds, [3, 3])


# ---- loader -------------------------------------------------------------------------------------
def test_loader_batch_path_no_per_item_calls_and_dtypes():
    CountingArrays.calls = 0
    ds = CountingArrays(np.random.default_rng(0).integers(0, 255, (50, 4, 4, 1), dtype=np.uint8),
                        np.arange(50) % 3, transform=T.ToTensor())
    loader = DataLoader(ds, batch_size=16)
    batches = list(loader)
    assert len(loader) == len(batches) == 4 and CountingArrays.calls == 0
    x, y = batches[0]
    assert isinstance(x, ember.Tensor) and x.dtype == np.float32 and x.shape == (16, 1, 4, 4)
    assert y.dtype == np.int64 and y.shape == (16,)
    np.testing.assert_allclose(x.numpy(), ds.data[:16].transpose(0, 3, 1, 2) / 255.0, rtol=1e-6)
    assert batches[-1][0].shape[0] == 2
    assert len(DataLoader(ds, batch_size=16, drop_last=True)) == 3
    assert len(list(DataLoader(ds, batch_size=16, drop_last=True))) == 3


def test_shuffle_reproducible_and_new_order_each_epoch():
    ds = ArrayDataset(np.arange(40, dtype=np.float32)[:, None], np.arange(40))

    def epoch(loader):
        return np.concatenate([y.numpy() for _, y in loader])

    l1 = DataLoader(ds, batch_size=8, shuffle=True, generator=ember.Generator(7))
    l2 = DataLoader(ds, batch_size=8, shuffle=True, generator=ember.Generator(7))
    e1, e2 = epoch(l1), epoch(l1)
    np.testing.assert_array_equal(e1, epoch(l2))
    assert not np.array_equal(e1, e2)
    assert sorted(e1.tolist()) == list(range(40))
    ember.manual_seed(11)
    d1 = epoch(DataLoader(ds, batch_size=8, shuffle=True))
    ember.manual_seed(11)
    np.testing.assert_array_equal(d1, epoch(DataLoader(ds, batch_size=8, shuffle=True)))


def test_generic_dataset_default_collate_and_sampler():
    loader = DataLoader(Squares(), batch_size=4, sampler=[9, 1, 2, 3, 4])
    (x, i, d), (x2, i2, d2) = list(loader)
    assert x.shape == (4, 2) and x.dtype == np.float32
    np.testing.assert_array_equal(i.numpy(), [9, 1, 2, 3])
    assert i.dtype == np.int64 and d["k"].dtype == np.float32
    assert x2.shape == (1, 2)
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(Squares(), sampler=[0], shuffle=True)
    with pytest.raises(ShapeError, match="different shapes"):
        default_collate([np.zeros(2), np.zeros(3)])
    out = DataLoader(Squares(), batch_size=5, collate_fn=lambda s: len(s))
    assert list(out) == [5, 5]


def test_getitems_protocol_gets_whole_index_list():
    calls = []

    class Many(Squares):
        def __getitems__(self, idx):
            calls.append(list(idx))
            return [self[i] for i in idx]

    (x, i, _), = list(DataLoader(Many(), batch_size=3, sampler=[4, 2, 7]))
    assert calls == [[4, 2, 7]] and i.numpy().tolist() == [4, 2, 7]


def test_num_workers_matches_serial():
    ds = ArrayDataset(np.random.default_rng(1).random((70, 3)).astype(np.float32), np.arange(70))
    serial = list(DataLoader(ds, batch_size=8, shuffle=True, generator=ember.Generator(5)))
    threaded = list(DataLoader(ds, batch_size=8, shuffle=True, generator=ember.Generator(5), num_workers=3))
    assert len(serial) == len(threaded) == 9
    for (a, b), (c, d) in zip(serial, threaded):
        np.testing.assert_array_equal(a.numpy(), c.numpy())
        np.testing.assert_array_equal(b.numpy(), d.numpy())
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(ds, batch_size=0)


# ---- transforms ---------------------------------------------------------------------------------
def test_to_tensor_layouts():
    img = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    one = T.ToTensor()(img)
    assert one.shape == (3, 5, 6) and one.dtype == np.float32
    np.testing.assert_allclose(one, torch.from_numpy(img).permute(2, 0, 1).numpy() / 255.0, rtol=1e-6)
    assert T.ToTensor()(img[:, :, 0]).shape == (1, 5, 6)
    batch = T.ToTensor()(np.stack([img, img]))
    assert batch.shape == (2, 3, 5, 6) and batch.flags.c_contiguous
    with pytest.raises(DTypeError):
        T.ToTensor()(img.astype(np.int32))


def test_normalize_matches_formula_and_checks_channels():
    x = np.random.default_rng(0).random((4, 3, 5, 5)).astype(np.float32)
    m, s = [0.1, 0.2, 0.3], [0.5, 0.25, 2.0]
    got = T.Normalize(m, s)(x)
    want = (torch.from_numpy(x) - torch.tensor(m)[:, None, None]) / torch.tensor(s)[:, None, None]
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(T.Normalize(m, s)(x[0]), want.numpy()[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ShapeError, match="2 channels"):
        T.Normalize(m, s)(x[:, :2])


def test_random_crop_per_sample_offsets_vectorized():
    n = 64
    x = np.arange(n * 2 * 6 * 6, dtype=np.float32).reshape(n, 2, 6, 6)
    out = T.RandomCrop(4, padding=1, generator=ember.Generator(0))(x)
    assert out.shape == (n, 2, 4, 4)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    offsets = set()
    for k in range(n):  # check every sample is a genuine window of its own padded image
        hits = [(i, j) for i in range(5) for j in range(5)
                if np.array_equal(padded[k, :, i:i + 4, j:j + 4], out[k])]
        assert hits, f"sample {k} is not a crop"
        offsets.add(hits[0])
    assert len(offsets) > 5  # offsets differ between samples
    again = T.RandomCrop(4, padding=1, generator=ember.Generator(0))(x)
    np.testing.assert_array_equal(out, again)
    assert T.RandomCrop(4)(x[0]).shape == (2, 4, 4)
    with pytest.raises(ShapeError, match="larger"):
        T.RandomCrop(9)(x)


def test_random_horizontal_flip_per_sample():
    x = np.random.default_rng(0).random((200, 1, 3, 4)).astype(np.float32)
    out = T.RandomHorizontalFlip(0.5, generator=ember.Generator(1))(x)
    flipped = np.all(out == x[..., ::-1], axis=(1, 2, 3))
    same = np.all(out == x, axis=(1, 2, 3))
    assert np.all(flipped | same) and 60 < flipped.sum() < 140
    np.testing.assert_array_equal(T.RandomHorizontalFlip(1.0)(x[0]), x[0, ..., ::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(0.0)(x), x)


def test_center_crop_and_resize_match_torch():
    x = np.random.default_rng(0).random((2, 3, 7, 9)).astype(np.float32)
    np.testing.assert_array_equal(T.CenterCrop(4)(x), x[..., 2:6, 2:6])
    tx = torch.from_numpy(x)
    got = T.Resize((5, 13))(x)
    want = torch.nn.functional.interpolate(tx, size=(5, 13), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)
    got = T.Resize((4, 18), interpolation="nearest")(x)
    want = torch.nn.functional.interpolate(tx, size=(4, 18), mode="nearest")
    np.testing.assert_array_equal(got, want.numpy())
    assert T.Resize(14)(x[0]).shape == (3, 14, 18)  # shorter side to 14, aspect kept


def test_compose_pipeline_in_loader():
    data = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    tf = T.Compose([T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3), T.RandomCrop(6, generator=ember.Generator(0)),
                    T.RandomHorizontalFlip(generator=ember.Generator(0))])
    x, y = next(iter(DataLoader(ArrayDataset(data, np.zeros(20), transform=tf), batch_size=10)))
    assert x.shape == (10, 3, 6, 6) and x.dtype == np.float32
    assert -1.0 <= float(x.numpy().min()) and float(x.numpy().max()) <= 1.0

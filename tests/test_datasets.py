"""Dataset files: strict IDX parsing, file lookup order, CIFAR-10 binary, ImageFolder, synthetic sets."""
import gzip
from pathlib import Path

import numpy as np
import pytest

import ember
from ember.data import DataLoader
from ember.data import transforms as T
from ember.data.datasets import (CIFAR10, MNIST, XOR, Blobs, FashionMNIST, ImageFolder, Shapes, Spirals, cache_dir,
                                 read_idx)
from ember.errors import FormatError
from tests.data_files import cifar_batch_bytes, idx_bytes, make_mnist_split, write_idx

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """No test sees the user's cache or the Debian package unless it asks for them."""
    monkeypatch.setenv("EMBER_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(FashionMNIST, "system_dirs", [])


# ---- IDX ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    a = np.random.default_rng(0).integers(0, 256, (5, 3, 2), dtype=np.uint8)
    p = write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), a)
    np.testing.assert_array_equal(read_idx(p, ndim=3), a)


def test_read_idx_rejects_bad_files(tmp_path):
    good = idx_bytes(np.zeros((4, 3, 3), np.uint8))
    cases = {
        "magic.idx": (b"\x01\x02" + good[2:], "not an IDX file"),
        "dtype.idx": (good[:2] + b"\x0d" + good[3:], "0x0d"),
        "trunc.idx": (good[:-5], r"truncated IDX file: header \(4, 3, 3\) needs 52 bytes, file has 47"),
        "over.idx": (good + b"\x00" * 3, "oversized IDX file.*file has 55"),
        "header.idx": (good[:9], "truncated IDX header"),
    }
    for name, (data, msg) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(FormatError, match=msg) as e:
            read_idx(tmp_path / name, ndim=3)
        assert name in str(e.value)
    write_idx(tmp_path / "rank.idx", np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(FormatError, match="has 3 dimensions, expected 1"):
        read_idx(tmp_path / "rank.idx", ndim=1)


def test_read_idx_gzip_checked_before_allocating(tmp_path):
    # a header claiming 4e9 bytes inside a tiny gzip: refused from the trailer, nothing allocated
    huge = bytes([0, 0, 8, 3]) + (60000).to_bytes(4, "big") + (256).to_bytes(4, "big") * 2 + b"\x00" * 10
    (tmp_path / "huge.gz").write_bytes(gzip.compress(huge))
    with pytest.raises(FormatError, match=r"huge.gz: header \(60000, 256, 256\) needs 3932160016 bytes"):
        read_idx(tmp_path / "huge.gz")
    full = gzip.compress(idx_bytes(np.ones((50, 8, 8), np.uint8)))
    (tmp_path / "cut.gz").write_bytes(full[: len(full) // 2])
    with pytest.raises(FormatError, match="cut.gz"):
        read_idx(tmp_path / "cut.gz")


def test_mnist_count_mismatch_and_label_range(tmp_path):
    make_mnist_split(tmp_path, "train", n=6)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(FormatError, match="has 6 images but .*has 5 labels"):
        MNIST(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 2, 12, 3, 4], np.uint8))
    with pytest.raises(FormatError, match="label 12 at index 3 is out of range"):
        MNIST(tmp_path)


# ---- lookup order and batches -------------------------------------------------------------------
def test_mnist_from_root_plain_and_batches(tmp_path):
    images, labels = make_mnist_split(tmp_path / "m", "t10k", n=10, gz=False)
    ds = MNIST(tmp_path / "m", train=False)
    assert ds.source == "found in root" and len(ds) == 10 and ds.data.dtype == np.uint8
    x, y = ds[3]
    assert x.shape == (1, 4, 4) and x.dtype == np.float32 and y == labels[3]
    np.testing.assert_allclose(x[0], images[3] / 255.0, rtol=1e-6)
    ds.transform = T.Compose([T.ToTensor(), T.Normalize([0.5], [0.25])])
    xb, yb = next(iter(DataLoader(ds, batch_size=4)))
    assert xb.shape == (4, 1, 4, 4) and yb.dtype == np.int64
    np.testing.assert_allclose(xb.numpy()[:, 0], (images[:4] / 255.0 - 0.5) / 0.25, rtol=1e-5, atol=1e-6)


def test_lookup_order_root_cache_system(tmp_path, monkeypatch):
    make_mnist_split(cache_dir("fashion-mnist"), "train", n=5, seed=1)
    ds = FashionMNIST()
    assert ds.source == "found in cache" and len(ds) == 5
    make_mnist_split(tmp_path / "root", "train", n=7)
    assert FashionMNIST(tmp_path / "root").source == "found in root"
    # root without the files falls through to the cache
    assert FashionMNIST(tmp_path / "empty").source == "found in cache"
    # XDG cache when EMBER_DATA is unset
    monkeypatch.delenv("EMBER_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("mnist") == tmp_path / "xdg" / "ember" / "mnist"
    make_mnist_split(tmp_path / "system", "train", n=3)
    monkeypatch.setattr(FashionMNIST, "system_dirs", [(tmp_path / "system", "Debian package dataset-fashion-mnist")])
    assert FashionMNIST().source == "Debian package dataset-fashion-mnist"
    with pytest.raises(FileNotFoundError, match="download=True"):
        MNIST()


@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_debian_copy(monkeypatch):
    monkeypatch.setattr(FashionMNIST, "system_dirs", [(DEBIAN_DIR, "Debian package dataset-fashion-mnist")])
    ds = FashionMNIST(train=False)
    assert ds.source == "Debian package dataset-fashion-mnist"
    assert ds.data.shape == (10000, 28, 28, 1) and np.bincount(ds.targets).tolist() == [1000] * 10


# ---- CIFAR-10 -----------------------------------------------------------------------------------
def test_cifar10_binary(tmp_path, monkeypatch):
    monkeypatch.setattr(CIFAR10, "records_per_file", 3)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    want = []
    for k, name in enumerate(CIFAR10.train_files + CIFAR10.test_files):
        data, images, labels = cifar_batch_bytes(3, seed=k)
        (folder / name).write_bytes(data)
        want.append((images, labels))
    ds = CIFAR10(tmp_path, train=True)
    assert len(ds) == 15 and ds.source == "found in root"
    x, y = ds[4]
    np.testing.assert_allclose(x, want[1][0][1] / 255.0, rtol=1e-6)
    assert y == want[1][1][1]
    test = CIFAR10(folder, train=False)
    xb, yb = next(iter(DataLoader(test, batch_size=3)))
    assert xb.shape == (3, 3, 32, 32) and xb.dtype == np.float32
    np.testing.assert_array_equal(yb.numpy(), want[5][1])
    (folder / "test_batch.bin").write_bytes(data[:-1])
    with pytest.raises(FormatError, match=r"test_batch.bin: CIFAR-10 binary batch has 9218 bytes, expected exactly "
                                          r"9219"):
        CIFAR10(folder, train=False)


def test_cifar10_refuses_pickled_version(tmp_path):
    py = tmp_path / "cifar-10-batches-py"
    py.mkdir()
    (py / "data_batch_1").write_bytes(b"\x80\x04pickle")
    with pytest.raises(FormatError, match="binary version"):
        CIFAR10(tmp_path)


# ---- ImageFolder --------------------------------------------------------------------------------
def test_image_folder(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    arrays = {}
    for cls, ext in [("dog", ".png"), ("cat", ".png"), ("cat", ".jpg")]:
        (tmp_path / cls).mkdir(exist_ok=True)
        a = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
        Image.fromarray(a).save(tmp_path / cls / f"img{ext}")
        arrays[(cls, ext)] = a
    (tmp_path / "cat" / "notes.txt").write_text("ignored")
    ds = ImageFolder(tmp_path)
    assert ds.classes == ["cat", "dog"] and ds.class_to_idx == {"cat": 0, "dog": 1}
    assert len(ds) == 3 and ds.targets == [0, 0, 1]
    x, y = ds[2]
    assert y == 1 and x.shape == (3, 6, 5)
    np.testing.assert_allclose(x, arrays[("dog", ".png")].transpose(2, 0, 1) / 255.0, rtol=1e-6)
    xb, yb = next(iter(DataLoader(ds, batch_size=3, num_workers=2)))
    assert xb.shape == (3, 3, 6, 5) and yb.numpy().tolist() == [0, 0, 1]
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    ds = ImageFolder(tmp_path)
    bad = [str(p) for p, _ in ds.samples].index(str(tmp_path / "dog" / "broken.png"))
    with pytest.raises(FormatError, match="broken.png: cannot decode"):
        ds[bad]


def test_image_folder_decompression_bomb(tmp_path, monkeypatch):
    Image = pytest.importorskip("PIL.Image")
    (tmp_path / "a").mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "a" / "big.png")
    ds = ImageFolder(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 px: Pillow warns (between 1x and 2x)
    with pytest.raises(FormatError, match="big.png: refused as a possible decompression bomb"):
        ds[0]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # over 2x: Pillow raises
    with pytest.raises(FormatError, match="decompression bomb"):
        ds[0]


# ---- synthetic ----------------------------------------------------------------------------------
def test_synthetic_seeded_and_learnable_shapes():
    for cls in (Blobs, Spirals, XOR, Shapes):
        a, b, c = cls(seed=1), cls(seed=1), cls(seed=2)
        np.testing.assert_array_equal(a.data, b.data)
        assert not np.array_equal(a.data, c.data)
        assert a.data.dtype == np.float32 and a.targets.dtype == np.int64
    x = XOR(n=100)
    np.testing.assert_array_equal(x.targets, (x.data[:, 0] * x.data[:, 1] < 0))
    s = Shapes(n=300, size=16, noise=0.0)
    assert s.data.shape == (300, 1, 16, 16) and set(np.unique(s.targets)) == {0, 1, 2}
    area = s.data.sum(axis=(1, 2, 3))
    assert area.min() > 5  # every image holds a visible shape
    # a square fills its bounding box, a triangle about half of it: fill ratio separates them
    rows, cols = s.data[:, 0].any(axis=2).sum(1), s.data[:, 0].any(axis=1).sum(1)
    fill = area / (rows * cols)
    assert fill[s.targets == 1].min() > fill[s.targets == 2].max()
    xb, yb = next(iter(DataLoader(s, batch_size=32, shuffle=True, generator=ember.Generator(0))))
    assert xb.shape == (32, 1, 16, 16) and yb.dtype == np.int64

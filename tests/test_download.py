"""Downloads against a local HTTP server on 127.0.0.1 (never the real internet)."""
import functools
import gzip
import hashlib
import io
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from ember.data.datasets import CIFAR10, MNIST, FashionMNIST, cache_dir, download_file
from ember.data.datasets.files import ChecksumError, DownloadError
from ember.errors import FormatError
from tests.data_files import cifar_batch_bytes, idx_bytes


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/'www' on 127.0.0.1; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(FashionMNIST, "system_dirs", [])


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_download_file_verifies_and_writes_atomically(server, tmp_path):
    www, base = server
    payload = b"ember" * 1000
    (www / "f.bin").write_bytes(payload)
    dest = tmp_path / "out" / "f.bin"
    assert download_file([base + "f.bin"], dest, _sha256(payload)) == dest
    assert dest.read_bytes() == payload
    assert download_file([base + "f.bin"], tmp_path / "md5.bin",
                         "md5:" + hashlib.md5(payload).hexdigest()).read_bytes() == payload
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.bin"]  # no .part leftovers


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    www, base = server
    (www / "f.bin").write_bytes(b"tampered")
    dest = tmp_path / "out" / "f.bin"
    with pytest.raises(ChecksumError, match="f.bin has sha256 .* expected 00") as e:
        download_file([base + "f.bin"], dest, "sha256:" + "00" * 32)
    assert isinstance(e.value, FormatError)
    assert list(dest.parent.iterdir()) == []


def test_mirror_fallback_and_all_mirrors_failing(server, tmp_path):
    www, base = server
    (www / "f.bin").write_bytes(b"abc")
    got = download_file([base + "missing/f.bin", base + "f.bin"], tmp_path / "f.bin", _sha256(b"abc"))
    assert got.read_bytes() == b"abc"
    with pytest.raises(DownloadError, match="404"):
        download_file([base + "nope1", base + "nope2"], tmp_path / "g.bin", _sha256(b"abc"))
    with pytest.raises(ValueError, match="sha256:<hex>"):
        download_file([base + "f.bin"], tmp_path / "h.bin", "crc32:1234")


def _serve_mnist(www, n=9):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 5, 5), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    digests = {}
    for name, arr in [("train-images-idx3-ubyte.gz", images), ("train-labels-idx1-ubyte.gz", labels)]:
        data = gzip.compress(idx_bytes(arr))
        (www / name).write_bytes(data)
        digests[name] = _sha256(data)
    return images, labels, digests


@pytest.mark.parametrize("cls", [MNIST, FashionMNIST])
def test_idx_dataset_download_then_cache(server, monkeypatch, cls):
    www, base = server
    images, labels, digests = _serve_mnist(www)
    monkeypatch.setattr(cls, "mirrors", [base + "dead/", base])
    monkeypatch.setattr(cls, "resources", digests)
    ds = cls(download=True)
    assert ds.source == "downloaded" and len(ds) == 9
    np.testing.assert_array_equal(ds.targets, labels)
    np.testing.assert_array_equal(ds.data[..., 0], images)
    assert (cache_dir(cls.name) / "train-images-idx3-ubyte.gz").is_file()
    assert cls().source == "found in cache"


def test_idx_dataset_download_checksum_mismatch(server, monkeypatch):
    www, base = server
    _, _, digests = _serve_mnist(www)
    digests["train-labels-idx1-ubyte.gz"] = "sha256:" + "ab" * 32
    monkeypatch.setattr(FashionMNIST, "mirrors", [base])
    monkeypatch.setattr(FashionMNIST, "resources", digests)
    with pytest.raises(ChecksumError, match="train-labels-idx1-ubyte.gz"):
        FashionMNIST(download=True)
    assert not (cache_dir("fashion-mnist") / "train-labels-idx1-ubyte.gz").exists()
    with pytest.raises(FileNotFoundError):  # nothing half-valid was left behind for the next run
        FashionMNIST()


def test_cifar10_download_extracts_binary_members(server, monkeypatch):
    www, base = server
    monkeypatch.setattr(CIFAR10, "records_per_file", 2)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for k, name in enumerate(CIFAR10.train_files + CIFAR10.test_files + ["readme.html"]):
            data = cifar_batch_bytes(2, seed=k)[0]
            info = tarfile.TarInfo("cifar-10-batches-bin/" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (www / "cifar.tar.gz").write_bytes(buf.getvalue())
    monkeypatch.setattr(CIFAR10, "url", base + "cifar.tar.gz")
    monkeypatch.setattr(CIFAR10, "digest", _sha256(buf.getvalue()))
    ds = CIFAR10(train=False, download=True)
    assert ds.source == "downloaded" and len(ds) == 2
    _, images, labels = cifar_batch_bytes(2, seed=5)
    np.testing.assert_array_equal(ds.targets, labels)
    np.testing.assert_array_equal(ds.data.transpose(0, 3, 1, 2), images)
    folder = cache_dir(CIFAR10.name)
    assert sorted(p.name for p in folder.iterdir()) == sorted(CIFAR10.train_files + CIFAR10.test_files)
    assert CIFAR10(train=True).source == "found in cache"

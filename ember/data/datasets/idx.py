"""MNIST and Fashion-MNIST, read from IDX files (plain or gzip) with strict checks.

IDX layout (LeCun et al.): a 4-byte magic ``00 00 <type> <ndim>``, ``ndim`` big-endian
uint32 sizes, then the data. Both datasets use type 0x08 (unsigned byte): images are
3-d (N, 28, 28), labels 1-d (N,). The header is checked against the file size before
anything is allocated, so a corrupt header cannot ask for gigabytes.
"""
from __future__ import annotations

import gzip
import logging
import os
import struct
from pathlib import Path

import numpy as np

from ember.data.dataset import ArrayDataset
from ember.data.datasets.files import cache_dir, download_file, find_dataset_files
from ember.data.transforms import ToTensor
from ember.errors import FormatError

__all__ = ["read_idx", "MNIST", "FashionMNIST"]

log = logging.getLogger("ember.data")

# deflate never compresses better than about 1032:1, which bounds a gzip member's content
_MAX_DEFLATE_RATIO = 1032


def _gzip_content_size(path: Path) -> int:
    """The uncompressed size recorded in the gzip trailer (ISIZE, modulo 2**32)."""
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        return struct.unpack("<I", f.read(4))[0]


def _read_fully(f, buf: memoryview) -> int:
    got = 0
    while got < len(buf):
        n = f.readinto(buf[got:])
        if not n:
            break
        got += n
    return got


def read_idx(path, ndim: int | None = None) -> np.ndarray:
    """Read an unsigned-byte IDX file (``.gz`` decompressed on the fly) into a uint8 array.

    Raises FormatError naming the file and the numbers when the magic, the number of
    dimensions or the size does not match the header.
    """
    path = Path(path)
    gz = path.suffix == ".gz"
    size = path.stat().st_size
    try:
        f = gzip.open(path, "rb") if gz else open(path, "rb")
        with f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0:
                raise FormatError(f"{path}: not an IDX file (magic bytes {head.hex() or 'missing'}, "
                                  f"expected 0000 followed by type and rank)")
            dtype_code, rank = head[2], head[3]
            if dtype_code != 0x08:
                raise FormatError(f"{path}: IDX data type 0x{dtype_code:02x} is not supported (expected 0x08, "
                                  f"unsigned byte)")
            if ndim is not None and rank != ndim:
                raise FormatError(f"{path}: IDX file has {rank} dimensions, expected {ndim}")
            dims_raw = f.read(4 * rank)
            if len(dims_raw) != 4 * rank:
                raise FormatError(f"{path}: truncated IDX header ({4 + len(dims_raw)} bytes, need {4 + 4 * rank})")
            dims = struct.unpack(f">{rank}I", dims_raw)
            header = 4 + 4 * rank
            need = header + int(np.prod(dims, dtype=np.int64))
            if gz:
                # check the claim against what the file can hold before allocating for it
                isize = _gzip_content_size(path)
                if need > size * _MAX_DEFLATE_RATIO + header or need % 2**32 != isize:
                    raise FormatError(f"{path}: header {dims} needs {need} bytes but the gzip stream holds "
                                      f"{isize} (mod 2**32) from {size} compressed bytes")
            elif size != need:
                kind = "truncated" if size < need else "oversized"
                raise FormatError(f"{path}: {kind} IDX file: header {dims} needs {need} bytes, file has {size}")
            data = np.empty(dims, dtype=np.uint8)
            got = _read_fully(f, memoryview(data.reshape(-1)))
            if got != data.size or f.read(1):
                raise FormatError(f"{path}: IDX content has {'fewer' if got != data.size else 'more'} bytes than "
                                  f"the header {dims} promises ({data.size})")
            return data
    except (EOFError, gzip.BadGzipFile, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise FormatError(f"{path}: cannot read IDX file: {e}") from e


class MNIST(ArrayDataset):
    """Handwritten digits (LeCun et al. 1998): 60000 train / 10000 test images, 28x28 grayscale.

    Args:
        root: a folder holding the IDX files (plain or .gz); searched first.
        train: the training split (else the test split).
        transform: a batch transform on uint8 NHWC images (default: ToTensor -> float32 NCHW in [0, 1]).
        target_transform: a transform on int64 label batches.
        download: fetch missing files into the cache folder.

    Files are looked up in ``root``, then the cache (see ember.data.datasets.files), then
    ``system_dirs``, then downloaded. ``self.source`` says which route was taken. Images
    stay in memory as uint8 (N, 28, 28, 1); only batches are converted.
    """

    name = "mnist"
    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
               "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine"]
    mirrors = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"]
    # MD5s published with the dataset (the ones torchvision checks). We do not know the
    # SHA-256s of the official .gz files with certainty, so MD5 it is for this integrity check.
    resources = {
        "train-images-idx3-ubyte.gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "md5:d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "md5:9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "md5:ec29112dd5afa0611ce80d1b7f02629c",
    }
    system_dirs: list = []

    def __init__(self, root=None, train: bool = True, transform=None, target_transform=None,
                 download: bool = False):
        self.root, self.train = root, train
        split = "train" if train else "t10k"
        names = [f"{split}-images-idx3-ubyte.gz", f"{split}-labels-idx1-ubyte.gz"]
        found = find_dataset_files(self.name, names, root=root, system_dirs=self.system_dirs)
        if found is None:
            if not download:
                raise FileNotFoundError(
                    f"{type(self).__name__}: {' and '.join(names)} not found in root={root!r}, in the cache "
                    f"{cache_dir(self.name)}, or in {[str(d) for d, _ in self.system_dirs]}; pass download=True "
                    f"or set EMBER_DATA")
            folder = cache_dir(self.name)
            for n in names:
                download_file([m + n for m in self.mirrors], folder / n, self.resources[n])
            found = ({n: folder / n for n in names}, "downloaded")
        paths, self.source = found
        images = read_idx(paths[names[0]], ndim=3)
        labels = read_idx(paths[names[1]], ndim=1)
        if len(images) != len(labels):
            raise FormatError(f"{type(self).__name__}: {paths[names[0]]} has {len(images)} images but "
                              f"{paths[names[1]]} has {len(labels)} labels")
        if labels.size and int(labels.max()) >= len(self.classes):
            at = int(np.argmax(labels >= len(self.classes)))
            raise FormatError(f"{paths[names[1]]}: label {int(labels[at])} at index {at} is out of range "
                              f"(expected 0..{len(self.classes) - 1})")
        self.paths = paths
        log.info("%s (%s): %s", type(self).__name__, split, self.source)
        super().__init__(images[..., None], labels, transform=transform if transform is not None else ToTensor(),
                         target_transform=target_transform)

    @property
    def class_to_idx(self) -> dict:
        return {c: i for i, c in enumerate(self.classes)}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={'train' if self.train else 'test'}, n={len(self)}, "
                f"source={self.source!r})")


class FashionMNIST(MNIST):
    """Zalando's Fashion-MNIST (Xiao et al. 2017): MNIST's format, ten clothing classes.

    Besides ``root`` and the cache, the files are found where Debian's package
    ``dataset-fashion-mnist`` installs them.
    """

    name = "fashion-mnist"
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    mirrors = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
               "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"]
    # MD5s published by Zalando Research for the official .gz files. (Debian's copies hold the
    # same images but were re-gzipped, so their bytes and hence any digest of the .gz differ;
    # a digest of a Debian copy could not check an official download.)
    resources = {
        "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
    }
    system_dirs = [("/usr/share/datasets/fashion-mnist", "Debian package dataset-fashion-mnist")]

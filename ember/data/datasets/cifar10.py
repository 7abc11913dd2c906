"""CIFAR-10 (Krizhevsky 2009) from its binary version: no pickle is ever loaded.

Each of data_batch_1..5.bin and test_batch.bin holds 10000 records of 3073 bytes: one
label byte, then 1024 red, 1024 green and 1024 blue bytes of a 32x32 image (row-major).
File sizes are checked exactly before reading. The pickled "python version" is refused,
because unpickling a downloaded file can run arbitrary code.
"""
from __future__ import annotations

import logging
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from ember.data.dataset import ArrayDataset
from ember.data.datasets.files import cache_dir, download_file, find_dataset_files
from ember.data.transforms import ToTensor
from ember.errors import FormatError

__all__ = ["CIFAR10"]

log = logging.getLogger("ember.data")
_RECORD = 1 + 3 * 32 * 32


class CIFAR10(ArrayDataset):
    """CIFAR-10: 50000 train / 10000 test colour images, 32x32, ten classes.

    Args:
        root: a folder holding the .bin files (or a ``cifar-10-batches-bin`` folder inside it).
        train: data_batch_1..5 (else test_batch).
        transform: a batch transform on uint8 NHWC images (default: ToTensor -> float32 NCHW in [0, 1]).
        target_transform: a transform on int64 label batches.
        download: fetch and unpack the official binary archive into the cache when missing.
    """

    name = "cifar-10-batches-bin"
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    # MD5 published on the dataset's page for the binary archive.
    digest = "md5:c32a1d4ab5d03f1284b67883e8d87530"
    records_per_file = 10000
    train_files = [f"data_batch_{i}.bin" for i in range(1, 6)]
    test_files = ["test_batch.bin"]

    def __init__(self, root=None, train: bool = True, transform=None, target_transform=None,
                 download: bool = False):
        self.root, self.train = root, train
        names = self.train_files if train else self.test_files
        found = find_dataset_files(self.name, names, root=root, allow_gz=False)
        if found is None:
            self._refuse_pickled(root)
            if not download:
                raise FileNotFoundError(
                    f"CIFAR10: {', '.join(names)} not found in root={root!r} (or its {self.name} folder) or in "
                    f"the cache {cache_dir(self.name)}; get the binary version from {self.url} or pass download=True")
            self._download()
            found = ({n: cache_dir(self.name) / n for n in names}, "downloaded")
        paths, self.source = found
        parts = [self._read(paths[n]) for n in names]
        labels = np.concatenate([p[:, 0] for p in parts])
        # (N, 3, 32, 32) as stored; keep a free NHWC view so ToTensor's layout rule applies
        images = np.concatenate([p[:, 1:] for p in parts]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        if labels.size and int(labels.max()) >= len(self.classes):
            at = int(np.argmax(labels >= len(self.classes)))
            raise FormatError(f"CIFAR10: label {int(labels[at])} at record {at} is out of range (0..9) in "
                              f"{[str(paths[n]) for n in names]}")
        self.paths = paths
        log.info("CIFAR10 (%s): %s", "train" if train else "test", self.source)
        super().__init__(images, labels, transform=transform if transform is not None else ToTensor(),
                         target_transform=target_transform)

    def _read(self, path: Path) -> np.ndarray:
        expected = self.records_per_file * _RECORD
        size = path.stat().st_size
        if size != expected:
            raise FormatError(f"{path}: CIFAR-10 binary batch has {size} bytes, expected exactly {expected} "
                              f"({self.records_per_file} records of {_RECORD} bytes)")
        return np.fromfile(path, dtype=np.uint8).reshape(self.records_per_file, _RECORD)

    def _refuse_pickled(self, root) -> None:
        if root is None:
            return
        root = Path(root)
        for folder in (root, root / "cifar-10-batches-py"):
            if (folder / "data_batch_1").is_file() or (folder / "test_batch").is_file():
                raise FormatError(f"CIFAR10: {folder} holds the pickled python version, which ember does not load "
                                  f"(unpickling can run code); use the binary version {self.url}")

    def _download(self) -> None:
        dest = cache_dir(self.name)
        dest.mkdir(parents=True, exist_ok=True)
        archive = dest / "cifar-10-binary.tar.gz"
        download_file([self.url], archive, self.digest)
        wanted = set(self.train_files + self.test_files)
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                # take regular files by basename only: paths inside the archive are never trusted
                base = os.path.basename(member.name)
                if not member.isfile() or base not in wanted:
                    continue
                fd, tmp = tempfile.mkstemp(prefix=base + ".", suffix=".part", dir=dest)
                with os.fdopen(fd, "wb") as out, tar.extractfile(member) as src:
                    for chunk in iter(lambda: src.read(1 << 20), b""):
                        out.write(chunk)
                os.replace(tmp, dest / base)
                wanted.discard(base)
        archive.unlink()
        if wanted:
            raise FormatError(f"CIFAR10: {archive.name} lacks {sorted(wanted)}")

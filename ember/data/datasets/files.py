"""Where dataset files are found, and how missing ones are downloaded safely.

Search order for a dataset's files (the first folder holding all of them wins):
1. ``root`` given by the user ("found in root"),
2. the user's cache folder: ``$EMBER_DATA/<name>`` if set, else ``$XDG_CACHE_HOME/ember/<name>``
   or ``~/.cache/ember/<name>`` ("found in cache"),
3. system folders a dataset names (e.g. Debian's package ``dataset-fashion-mnist``),
4. a download into the cache folder, when the user passed ``download=True`` ("downloaded").

Downloads go to a temporary file in the destination folder, are checked against a
digest, and only then renamed into place (``os.replace`` is atomic), so an interrupted
or corrupted download never leaves a file that looks valid.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Sequence

from ember.errors import FormatError

__all__ = ["cache_dir", "find_dataset_files", "download_file", "file_digest", "ChecksumError", "DownloadError"]

log = logging.getLogger("ember.data")


class ChecksumError(FormatError):
    """A downloaded file's digest differs from the expected one."""


class DownloadError(OSError):
    """No mirror could deliver a file."""


def cache_dir(name: str) -> Path:
    """The cache folder for dataset ``name`` (not created here)."""
    if os.environ.get("EMBER_DATA"):
        return Path(os.environ["EMBER_DATA"]).expanduser() / name
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ember" / name


def _present(folder: Path, filename: str, allow_gz: bool) -> Path | None:
    """The file in ``folder`` as given, or its ``.gz`` / un-gzipped twin when allowed."""
    candidates = [filename]
    if allow_gz:
        candidates.append(filename[:-3] if filename.endswith(".gz") else filename + ".gz")
    for c in candidates:
        p = folder / c
        if p.is_file():
            return p
    return None


def find_dataset_files(name: str, filenames: Sequence[str], root=None, system_dirs: Sequence = (),
                       allow_gz: bool = True) -> tuple[dict, str] | None:
    """Look for all of ``filenames`` (plain or .gz) in root, the cache, then ``system_dirs``.

    Returns ({filename: path}, source) where source is "found in root", "found in cache"
    or the description attached to a system folder (``system_dirs`` holds (folder, description)
    pairs); None when no folder has them all.
    """
    places = []
    if root is not None:
        root = Path(root).expanduser()
        places += [(root, "found in root"), (root / name, "found in root")]
    places.append((cache_dir(name), "found in cache"))
    places += [(Path(d), desc) for d, desc in system_dirs]
    for folder, source in places:
        found = {f: _present(folder, f, allow_gz) for f in filenames}
        if all(p is not None for p in found.values()):
            return found, source
    return None


def file_digest(path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _parse_digest(digest: str) -> tuple[str, str]:
    algo, sep, value = digest.partition(":")
    if not sep or algo not in ("sha256", "md5"):
        raise ValueError(f"digest must look like 'sha256:<hex>' or 'md5:<hex>', got {digest!r}")
    return algo, value.lower()


def download_file(urls: Sequence[str], dest, digest: str, timeout: float = 60.0) -> Path:
    """Fetch ``dest`` from the first working URL, verify ``digest`` ("sha256:<hex>" or "md5:<hex>"), write atomically.

    Raises ChecksumError (a FormatError) when the content does not match, DownloadError
    when no URL answers. Nothing is left at ``dest`` unless the digest matched.
    """
    algo, expected = _parse_digest(digest)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
        try:
            h = hashlib.new(algo)
            log.info("downloading %s", url)
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            got = h.hexdigest()
            if got != expected:
                raise ChecksumError(f"download: {url} has {algo} {got}, expected {expected}; the file was "
                                    f"discarded (corrupted transfer or a changed mirror)")
            os.replace(tmp, dest)
            return dest
        except ChecksumError:
            raise
        except OSError as e:  # URLError, HTTPError and socket errors are OSErrors
            errors.append(f"{url}: {e}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DownloadError(f"download: could not fetch {dest.name} from any mirror:\n  " + "\n  ".join(errors))

"""ember.memory: the allocator setting the CLI and the benchmarks use."""
from __future__ import annotations

import platform
import sys

import numpy as np

from ember.memory import keep_freed_memory


def test_keep_freed_memory_takes_effect_with_glibc_and_arrays_still_work():
    ok = keep_freed_memory()
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert ok is glibc  # glibc accepts the settings; elsewhere the call reports that it did nothing
    a = np.full((1024, 1024), 3, np.float32)  # 4 MiB: from the heap now; freed, then its memory reused
    del a
    b = np.zeros((1024, 1024), np.float32)
    assert not b.any()

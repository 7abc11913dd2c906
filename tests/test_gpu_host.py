"""bench/gpu_host.py: a ResNet-20 training step down every GPU code path, on the CPU.

The script runs ember's GPU branches with the emulated CuPy of tests/cuda_emulator.py and every
kernel a counting no-op (no compiler needed), in a subprocess (it replaces ember's array module).
So CI, which has no GPU, still walks the GPU step's Python end to end, and the counts guard the
routes that keep that step's host work small.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_host_counts_a_resnet20_steps_cupy_calls():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gpu_host.py"), "--steps", "1", "--where", "5"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    counts = {key.strip(): int(n) for n, key in re.findall(r"^\s+(\d+)\s+(\S.*)$", out.stdout, re.M)}
    # every ReLU (and each block's residual sum) inside the batch norm before it (models.resnet.bn_relu)
    assert counts["raw ember_bn_forward_float"] == counts["raw ember_bn_sums_g_relu_float"] == 19
    assert "raw ember_relu_fwd_float" not in counts and "raw ember_relu_bwd_float" not in counts
    assert counts["cublas gemm"] == 56  # three per convolution, two for the first (no input gradient)
    raw = sum(n for k, n in counts.items() if k.startswith("raw "))
    assert raw <= 145  # 4 per batch norm, 2 gathers and a scatter per convolution, 9 gradient sums
    # CuPy arrays made (each ~2-6 us of host time in a step): no views for cuBLAS operands
    # (cuda_gemm.Mat), one scratch buffer for lowered rows, batch norm's sums and statistics in one array
    # and arrays in a memory order made as one strided array, not an array and a transposed view
    assert counts["arrays made (allocations + views)"] <= 230
    assert counts["raw ember_add_float"] >= 9  # the two gradients summed at every block's input
    assert "cupy.pad" not in counts and counts.get("ufunc add", 0) <= 1
    assert sum(n for key, n in counts.items() if key.startswith("ufunc")) <= 10
    assert counts["(raw launches' scalar arguments)"] <= 300  # sizes and flags compiled into the kernels
    syncs = {key: n for key, n in counts.items() if key.startswith("read back")}
    assert syncs == {"read back to the host (float): a sync": 1}  # cross entropy's label check, nothing else
    assert re.search(r"host floor .*: \d+\.\d+ ms/step", out.stdout)


_OVERHEAD_DRY_RUN = """
import sys
sys.path[:0] = [{root!r}, {bench!r}]
import gpu_host
gpu_host.install()  # the emulated CuPy, every kernel and cuBLAS call a no-op
from ember import backend
sys.modules["cupy"] = backend._cupy
import gpu_overhead
gpu_overhead.per_call_us = lambda fn, sync, calls=0, rounds=0: (fn(), fn(), 0.0)[2]
rows = gpu_overhead.conv_rows(lambda: None) + gpu_overhead.ember_rows(lambda: None)
print(len(rows), "rows")
"""


def test_gpu_overhead_calls_the_gpu_routes_as_they_are():
    """bench/gpu_overhead.py calls cuda_conv's and cuda_gemm's functions directly: walk its ember rows
    down the no-op GPU paths, so that a changed signature fails here, not on a scarce GPU run."""
    code = _OVERHEAD_DRY_RUN.format(root=ROOT, bench=os.path.join(ROOT, "bench"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-2]) >= 15

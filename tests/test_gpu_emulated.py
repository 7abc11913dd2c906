"""ember's GPU code, run on the CPU by tests/cuda_emulator.py, in CI (which has no GPU).

The emulator sends every op down its GPU branch, compiles each CuPy kernel body of ember with
g++ as a loop over its index, and runs cuBLAS's GEMMs with NumPy on the raw addresses. So CI
checks every GPU kernel's index arithmetic, every GPU route's dispatch and every op's forward and
gradients on those routes against the same references as on the CPU; what it cannot check (NVRTC,
launch configuration, atomics, speed) needs a GPU: bench/gpu_check.py. Each run is a pytest of its
own in a subprocess, since the emulator replaces ember's array module for the whole process.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the emulator compiles kernels with g++")


def _pytest(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.cuda_emulator",
                           *args], capture_output=True, text=True, timeout=900, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def _summary(out: subprocess.CompletedProcess) -> str:
    return (out.stdout[-3000:] + out.stderr[-1000:]).strip()


def test_gpu_kernels_and_routes_match_numpy_and_the_cpu_under_the_emulator():
    """tests/test_gpu_routes.py, test_gpu_norm.py, test_gpu.py, test_gpu_select.py and test_gpu_augment.py
    (gpu-marked), the device-semantics tests skipped: each kernel against the NumPy it replaces, each route
    and training step against the CPU paths (tests/gpu_compare.py switches the GPU branch off for the CPU
    side). Checked: a batch-norm backward reading the wrong sum fails 14 of them."""
    out = _pytest("tests/test_gpu_routes.py", "tests/test_gpu_norm.py", "tests/test_gpu.py", "tests/test_gpu_select.py",
                  "tests/test_gpu_augment.py",
                  env={"EMBER_EMULATE_GPU_TESTS": "1"})
    assert out.returncode == 0, _summary(out)
    assert " passed" in out.stdout and " failed" not in out.stdout


def test_every_op_and_model_on_its_gpu_branch_under_the_emulator():
    """The op table (forward vs float64 reference, float64 gradcheck, PyTorch as oracle) and the
    convolution, norm, activation, loss, pooling, optimizer, layout, autograd, indexing and model tests, every
    op on its GPU branch: a wrong index in
    a kernel fails here (checked: a batch-norm backward reading the wrong sum fails 8+ op tests)."""
    out = _pytest("tests/test_ops.py", "tests/test_conv.py", "tests/test_norm.py", "tests/test_models.py",
                  "tests/test_activation_loss.py", "tests/test_pool.py", "tests/test_optim.py",
                  "tests/test_channels_last.py", "tests/test_autograd.py", "tests/test_dropout_upsample.py",
                  "tests/test_select.py", "tests/test_grad_api.py", "tests/test_gradient_flow.py", "-k", "not gpu")
    assert out.returncode == 0, _summary(out)
    assert " passed" in out.stdout and " failed" not in out.stdout

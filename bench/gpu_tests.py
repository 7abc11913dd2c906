"""The GPU test suite as bench/gpu_check.py runs it: ``pytest -m gpu`` in a subprocess, spread over
pytest-xdist workers where that is installed, cut off at a deadline, summarized in one line."""
from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _partial_counts(out: str) -> str:
    """Pass/fail counts from pytest -q progress lines (for a run cut off by the timeout)."""
    marks = "".join(ln.split("[")[0].strip() for ln in out.splitlines()
                    if ln.strip() and set(ln.split("[")[0].strip()) <= set(".FEsxX"))
    return f"{marks.count('.')} passed, {marks.count('F')} failed, {marks.count('E')} errors, " \
           f"{marks.count('s')} skipped before the cut"


def run_tests(paths: list, timeout: float, log, workers: int = 1) -> str:
    """Run the gpu-marked tests in ``paths``; returns pytest's summary line (or why it did not finish)."""
    # no:benchmark: pytest-benchmark, where installed, refuses to load beside xdist
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rfE", "--tb=short", "-p", "no:cacheprovider",
           "-p", "no:benchmark",
           *[os.path.join(ROOT, p) for p in paths]]
    if workers > 1:  # pytest-xdist: CuPy's kernel compiles (NVRTC, on the CPU) and the tests spread over cores
        cmd[3:3] = ["-n", str(workers)]
    print("$", " ".join(cmd[1:]), flush=True)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        out = proc.stdout + proc.stderr
        lines = [ln for ln in out.splitlines() if ln.strip()]
        summary = f"{lines[-1] if lines else '(no output)'} [exit {proc.returncode}]"
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ""
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        summary = f"TIMED OUT after {timeout:.0f} s: {_partial_counts(out)}"
    log.write(f"$ {' '.join(cmd[1:])}\n{out}\n")
    failed = [ln for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    for ln in failed[:30]:
        print(ln)
    if len(failed) > 30:
        print(f"... {len(failed) - 30} more in the log")
    print(f"  -> {summary}", flush=True)
    return summary

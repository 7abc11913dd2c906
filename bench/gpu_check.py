"""The one GPU check: the GPU test suite, then ember vs PyTorch+cuDNN timings on the same GPU.

Run once on a machine with an NVIDIA GPU, CuPy and a CUDA build of PyTorch (it installs
nothing)::

    python bench/gpu_check.py                 # tests + timings, table -> gpu_results.txt
    python bench/gpu_check.py --skip-tests    # timings only
    python bench/gpu_check.py --out my.txt    # another results file ($OUT/gpu_results.txt too, if $OUT is set)

1. ``python -m pytest -m gpu -q`` in subprocesses (bench/gpu_tests.py): first tests/test_gpu.py,
   test_gpu_routes.py, test_gpu_norm.py, test_gpu_select.py and test_gpu_augment.py (kernels vs NumPy, the
   conv/batch-norm/optimizer GPU routes vs the CPU, index checks, sorting, hooks and autograd.grad on the GPU,
   the augmentations vs the CPU,
   devices, checkpoints, label checks, training steps) and test_io.py's GPU test,
   then tests/test_ops.py (every op of tests/opdb.py on CPU vs GPU, forward and
   gradients); together capped at ``--test-timeout`` s. The full log goes to gpu_tests.log.
2. Timings, ember and PyTorch interleaved on the same GPU, float32, TF32 off in PyTorch
   so both do full-precision math; ``cudnn.benchmark`` on for PyTorch (its best case):

   W2  LeNet-5 training step, batch 128 (1x28x28)
   W3  ResNet-20 training step, batch 128 (3x32x32)               target <= 2.0x PyTorch
   W4  conv2d 64->64 3x3 pad 1 on 64x64x32x32, forward + backward  target <= 2.5x PyTorch
   E   one Fashion-MNIST epoch of ResNet-20 (1x28x28, batch 128, data held on the GPU)

Each timing loop is capped in steps and seconds and the whole script keeps to a
deadline (``--budget``, default 450 s), so it ends in under 8 minutes; rows that no
longer fit are reported as skipped. The table (ms per step and ember/PyTorch ratios)
is printed last.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, HERE):  # run from a checkout without installing ember; torch_models lives here
    if p not in sys.path:
        sys.path.insert(0, p)

import numpy as np  # noqa: E402
from gpu_profile import host_profile, kernel_profile  # noqa: E402
from gpu_tests import run_tests  # noqa: E402

T0 = time.perf_counter()


def elapsed() -> float:
    return time.perf_counter() - T0


# ---- 2. timings ------------------------------------------------------------------------------------
def timed_round(fn, sync, steps: int, cap_s: float) -> float:
    """Mean ms per call of ``fn`` over up to ``steps`` calls or ``cap_s`` seconds (at least one call)."""
    sync()
    t0 = time.perf_counter()
    n = 0
    while n < steps and (n == 0 or time.perf_counter() - t0 < cap_s):
        fn()
        n += 1
        if n % 8 == 0:  # keep the host from racing far ahead of the GPU between cap checks
            sync()
    sync()
    return 1e3 * (time.perf_counter() - t0) / n


def compare(name: str, ember_fn, torch_fn, esync, tsync, steps: int, cap_s: float, warmup: int = 3,
            rounds: int = 5) -> tuple[float, float]:
    """Median over interleaved rounds of mean ms/step for ember and PyTorch (five rounds: lent
    machines' hosts vary from round to round by 10-15%, and a host-bound step follows them)."""
    for _ in range(warmup):
        ember_fn()
        torch_fn()
    esync()
    tsync()
    e, t = [], []
    for _ in range(rounds):  # interleaved, so that a busy moment on the machine hits both alike
        t.append(timed_round(torch_fn, tsync, steps, cap_s))
        e.append(timed_round(ember_fn, esync, steps, cap_s))
    print(f"  {name}: ember {statistics.median(e):.2f} ms, torch {statistics.median(t):.2f} ms "
          f"(rounds: ember {[round(v, 2) for v in e]}, torch {[round(v, 2) for v in t]})", flush=True)
    return statistics.median(e), statistics.median(t)


def build_pair(name: str, shape: tuple):
    """An ember model on the GPU and its PyTorch twin with the same weights, plus SGD for each."""
    import torch

    import ember
    from ember.models import get_model
    from torch_models import get_torch_model

    ember.manual_seed(0)
    em = get_model(name, num_classes=10, in_channels=shape[1], input_size=shape[2])
    tm = get_torch_model(name, num_classes=10, in_channels=shape[1], input_size=shape[2])
    tm.load_state_dict({k: torch.from_numpy(np.array(v.data)) for k, v in em.state_dict().items()})
    em.to("cuda")
    tm.cuda()
    em.train()
    tm.train()
    eopt = ember.optim.SGD(em.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    topt = torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    return em, tm, eopt, topt


def step_fns(em, tm, eopt, topt):
    import torch

    import ember
    F = ember.nn.functional

    def ember_step(x, y):
        loss = F.cross_entropy(em(x), y)
        eopt.zero_grad()
        loss.backward()
        eopt.step()
        return loss

    def torch_step(x, y):
        loss = torch.nn.functional.cross_entropy(tm(x), y)
        topt.zero_grad()
        loss.backward()
        topt.step()
        return loss

    return ember_step, torch_step


def train_step_workload(name: str, shape: tuple, steps: int, cap_s: float, esync, tsync):
    import torch

    import ember

    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, 10, shape[0])
    em, tm, eopt, topt = build_pair(name, shape)
    ex, ey = ember.tensor(x, device="cuda"), ember.tensor(y, device="cuda")
    tx, ty = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
    ember_step, torch_step = step_fns(em, tm, eopt, topt)
    return compare(name, lambda: ember_step(ex, ey), lambda: torch_step(tx, ty), esync, tsync, steps, cap_s)


def profile_w3(shape: tuple, esync, tsync) -> list:
    """kernel_profile of ember's and PyTorch's ResNet-20 step."""
    import torch

    import ember

    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, 10, shape[0])
    em, tm, eopt, topt = build_pair("resnet20", shape)
    ember_step, torch_step = step_fns(em, tm, eopt, topt)
    ex, ey = ember.tensor(x, device="cuda"), ember.tensor(y, device="cuda")
    tx, ty = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
    etab, ttab = [], []
    lines = [f"ember W3 kernels: {kernel_profile(lambda: ember_step(ex, ey), esync, table=etab)}",
             f"torch W3 kernels: {kernel_profile(lambda: torch_step(tx, ty), tsync, table=ttab)}"]
    out_dir = os.environ.get("OUT")
    if out_dir:  # the whole tables, and where ember's host time goes
        with open(os.path.join(out_dir, "w3_kernels.txt"), "w") as f:
            f.write("ember ResNet-20 step, per step:\n" + "\n".join(etab) + "\n\ntorch:\n" + "\n".join(ttab) + "\n")
        host_profile(lambda: ember_step(ex, ey), esync, os.path.join(out_dir, "w3_host_profile.txt"))
    return lines


def step_breakdown(shape: tuple, esync, reps: int = 10) -> str:
    """Where ember's ResNet-20 step goes: forward, backward and optimizer ms (synchronized)."""
    import ember

    rng = np.random.default_rng(0)
    em, _, eopt, _ = build_pair("resnet20", shape)
    x = ember.tensor(rng.standard_normal(shape).astype(np.float32), device="cuda")
    y = ember.tensor(rng.integers(0, 10, shape[0]), device="cuda")
    parts = {"forward": [], "backward": [], "optimizer": []}
    for i in range(reps + 2):
        esync()
        t0 = time.perf_counter()
        loss = ember.nn.functional.cross_entropy(em(x), y)
        esync()
        t1 = time.perf_counter()
        eopt.zero_grad()
        loss.backward()
        esync()
        t2 = time.perf_counter()
        eopt.step()
        esync()
        t3 = time.perf_counter()
        if i >= 2:
            for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
                parts[k].append(1e3 * v)
    return ", ".join(f"{k} {statistics.median(v):.2f} ms" for k, v in parts.items())


def conv_workload(steps: int, cap_s: float, esync, tsync):
    import torch

    import ember

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 64, 32, 32)).astype(np.float32)
    w = (rng.standard_normal((64, 64, 3, 3)) * 0.05).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    gy = rng.standard_normal((64, 64, 32, 32)).astype(np.float32)
    ex, ew, eb = (ember.tensor(a, device="cuda", requires_grad=True) for a in (x, w, b))
    egy = ember.tensor(gy, device="cuda")
    tx, tw, tb = (torch.from_numpy(a).cuda().requires_grad_() for a in (x, w, b))
    tgy = torch.from_numpy(gy).cuda()

    def ember_fn():
        for t in (ex, ew, eb):
            t.grad = None
        ember.nn.functional.conv2d(ex, ew, eb, padding=1).backward(gradient=egy)

    def torch_fn():
        torch.autograd.grad(torch.nn.functional.conv2d(tx, tw, tb, padding=1), (tx, tw, tb), tgy)

    ember_fn()
    # correctness guard: a timing of wrong results is worthless. Both float32 results are measured
    # against PyTorch in float64: error relative to the largest magnitude of each result.
    d64 = [torch.from_numpy(a).cuda().double().requires_grad_() for a in (x, w, b)]
    ref = torch.autograd.grad(torch.nn.functional.conv2d(*d64, padding=1), d64, tgy.double())
    tg = torch.autograd.grad(torch.nn.functional.conv2d(tx, tw, tb, padding=1), (tx, tw, tb), tgy)
    errs = []
    for name, a, t, r in zip(("gx", "gw", "gb"), (ex, ew, eb), tg, ref):
        r = r.cpu().numpy()
        scale = np.abs(r).max()
        e_err = np.abs(a.grad.cpu().data - r).max() / scale
        t_err = np.abs(t.cpu().numpy() - r).max() / scale
        errs.append(f"{name} ember {e_err:.1e} torch {t_err:.1e}")
        if e_err > 1e-4:
            raise AssertionError(f"W4 {name}: ember's error {e_err:.2e} (torch's {t_err:.2e}) of max |{name}|")
    print("  W4 errors vs float64: " + ", ".join(errs), flush=True)
    return compare("W4 conv", ember_fn, torch_fn, esync, tsync, steps, cap_s)


def load_fashion():
    """Fashion-MNIST training images (N, 1, 28, 28) float32 normalized and labels, or None with a reason."""
    from ember.data.datasets import FashionMNIST

    try:
        ds = FashionMNIST(train=True)
    except (FileNotFoundError, OSError) as e:
        return None, f"Fashion-MNIST not found ({str(e).splitlines()[0][:120]})"
    x = ds.data.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    x = (x - 0.2860) / 0.3530
    return (x, ds.targets), ""


def epoch_workload(cap_s: float, esync, tsync):
    """One ResNet-20 epoch over Fashion-MNIST, data resident on the GPU, batches by a shuffled index."""
    import torch

    import ember

    data, why = load_fashion()
    if data is None:
        return None, None, why
    x, y = data
    N, B = len(x), 128
    em, tm, eopt, topt = build_pair("resnet20", (B, 1, 28, 28))
    ember_step, torch_step = step_fns(em, tm, eopt, topt)
    ex, ey = ember.tensor(x, device="cuda"), ember.tensor(y, device="cuda")
    tx, ty = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
    perm = np.random.default_rng(0).permutation(N)
    batches = [perm[i:i + B] for i in range(0, N - B + 1, B)]  # drop the last partial batch
    eperm = [ember.tensor(idx, device="cuda") for idx in batches]
    tperm = [torch.from_numpy(idx).cuda() for idx in batches]
    notes = []
    res = []
    for label, run, sync in (
        ("torch", lambda i: torch_step(tx[tperm[i]], ty[tperm[i]]), tsync),
        ("ember", lambda i: ember_step(ex[eperm[i]], ey[eperm[i]]), esync),
    ):
        run(0)  # warm-up (kernel compilation, cuDNN autotuning)
        sync()
        t0 = time.perf_counter()
        n = 0
        for i in range(len(batches)):
            run(i)
            n += 1
            if n % 16 == 0:
                sync()
                if time.perf_counter() - t0 > cap_s:
                    break
        sync()
        dt = time.perf_counter() - t0
        full = dt * len(batches) / n
        if n < len(batches):
            notes.append(f"{label}: {n}/{len(batches)} steps in {dt:.1f} s, epoch extrapolated")
        res.append(1e3 * full)
        print(f"  epoch {label}: {full:.1f} s for {len(batches)} steps ({1e3 * dt / n:.2f} ms/step)", flush=True)
    tms, ems = res
    return ems, tms, "; ".join(notes)


# ---- main ------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_results.txt", help="results table file (default gpu_results.txt)")
    ap.add_argument("--skip-tests", action="store_true", help="timings only")
    ap.add_argument("--test-timeout", type=float, default=270, help="seconds for the test suites (default 270)")
    ap.add_argument("--budget", type=float, default=450, help="whole-script deadline in seconds (default 450)")
    ap.add_argument("--workers", type=int, default=8,
                    help="pytest-xdist processes for the tests, where it is installed (default 8)")
    ap.add_argument("--only", default="W2,W3,W4,E", help="comma-separated rows to time (default W2,W3,W4,E)")
    args = ap.parse_args()
    out_dir = os.environ.get("OUT")
    log_path = os.path.join(out_dir or os.path.dirname(os.path.abspath(args.out)), "gpu_tests.log")

    import ember

    header = []
    if not ember.cuda.is_available():
        print("ember.cuda.is_available() is False: needs CuPy and an NVIDIA GPU; nothing to check here.")
        return 2
    import cupy
    import torch

    if not torch.cuda.is_available():
        print("torch.cuda.is_available() is False: the timings need a CUDA build of PyTorch.")
        return 2
    header.append(f"GPU: {ember.cuda.get_device_name(0)} | CuPy {cupy.__version__} | CUDA runtime "
                  f"{cupy.cuda.runtime.runtimeGetVersion()} | torch {torch.__version__} (cuDNN "
                  f"{torch.backends.cudnn.version()}) | numpy {np.__version__}")
    print(header[0], flush=True)
    t_tests = elapsed()

    try:
        import xdist  # noqa: F401
        workers = max(1, min(args.workers, os.cpu_count() or 1))
    except ImportError:
        workers = 1
    if args.skip_tests:
        header.append("GPU tests: skipped (--skip-tests)")
    else:
        # Two runs, the short one first, so a slow first compile of CuPy's kernels cannot hide it.
        with open(log_path, "w") as log:
            suites = (("tests/test_gpu*.py + test_io.py",
                       ["tests/test_gpu.py", "tests/test_gpu_routes.py", "tests/test_gpu_norm.py",
                        "tests/test_gpu_select.py", "tests/test_gpu_augment.py", "tests/test_io.py"], 0.35),
                      ("every opdb op, CPU vs GPU (test_ops.py)", ["tests/test_ops.py"], 1.0))
            for label, paths, share in suites:
                limit = min(share * args.test_timeout, args.test_timeout - (elapsed() - t_tests))
                header.append(f"GPU tests, {label}: {run_tests(paths, max(limit, 10), log, workers)}")
        header.append(f"(full pytest output: {log_path})")

    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False  # full fp32, like ember's cuBLAS calls
    torch.backends.cuda.matmul.allow_tf32 = False
    esync, tsync = ember.cuda.synchronize, torch.cuda.synchronize
    deadline = args.budget

    # launch overhead of this machine: one tiny CuPy kernel
    a = cupy.zeros(1, dtype=cupy.float32)
    for _ in range(100):
        a += 1
    esync()
    t0 = time.perf_counter()
    for _ in range(2000):
        a += 1
    esync()
    header.append(f"one small CuPy kernel launch: {1e6 * (time.perf_counter() - t0) / 2000:.1f} us")

    rows = []  # (name, ember ms, torch ms, target, note)
    plan = [
        ("W2 LeNet-5 train step, 128x1x28x28", None, 25,
         lambda: train_step_workload("lenet5", (128, 1, 28, 28), 40, 4.0, esync, tsync)),
        ("W3 ResNet-20 train step, 128x3x32x32", 2.0, 30,
         lambda: train_step_workload("resnet20", (128, 3, 32, 32), 20, 6.0, esync, tsync)),
        ("W4 conv2d 64->64 3x3, 64x64x32x32 fwd+bwd", 2.5, 20, lambda: conv_workload(20, 4.0, esync, tsync)),
    ]
    only = set(args.only.upper().split(","))
    for name, target, need_s, fn in plan:
        if name.split()[0] not in only:
            continue
        if elapsed() + need_s > deadline:
            rows.append((name, None, None, target, "skipped: time budget used up"))
            continue
        try:
            e, t = fn()
            rows.append((name, e, t, target, ""))
        except Exception as exc:  # report and go on: one broken row must not hide the others
            rows.append((name, None, None, target, f"ERROR {type(exc).__name__}: {str(exc).splitlines()[0][:150]}"))
            print(f"  {name}: {rows[-1][-1]}", flush=True)
    if "W3" in only and elapsed() + 15 < deadline:
        try:
            header.append("ember W3 step breakdown: " + step_breakdown((128, 3, 32, 32), esync))
        except Exception as exc:
            header.append(f"ember W3 step breakdown: ERROR {type(exc).__name__}: {exc}")
    if "W3" in only and elapsed() + 20 < deadline:
        try:
            header.extend(profile_w3((128, 3, 32, 32), esync, tsync))
        except Exception as exc:
            header.append(f"W3 kernel profile: ERROR {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        print("\n".join(header[-2:]), flush=True)
    left = deadline - elapsed() - 10
    name = "E  Fashion-MNIST ResNet-20 epoch (ms/epoch)"
    if "E" not in only:
        pass
    elif left < 20:
        rows.append((name, None, None, None, "skipped: time budget used up"))
    else:
        try:
            e, t, note = epoch_workload(min(120.0, left / 2), esync, tsync)
            rows.append((name, e, t, None, note))
        except Exception as exc:
            rows.append((name, None, None, None, f"ERROR {type(exc).__name__}: {str(exc).splitlines()[0][:150]}"))

    lines = header + ["", f"{'workload':<46}{'ember ms':>12}{'torch ms':>12}{'ratio':>8}{'target':>8}  verdict"]
    for name, e, t, target, note in rows:
        tgt = "" if target is None else f"{target:.1f}x"
        if e is None:
            lines.append(f"{name:<46}{'-':>12}{'-':>12}{'-':>8}{tgt:>8}  {note}")
            continue
        r = e / t
        verdict = "" if target is None else ("ok" if r <= target else "SLOWER than target")
        sep = "; " if verdict and note else ""
        lines.append(f"{name:<46}{e:>12.2f}{t:>12.2f}{r:>7.2f}x{tgt:>8}  {verdict}{sep}{note}")
    lines.append(f"(total wall time {elapsed():.0f} s; TF32 off in PyTorch, cudnn.benchmark on; "
                 "ms are medians of interleaved rounds)")
    text = "\n".join(lines) + "\n"
    paths = [args.out] + ([os.path.join(out_dir, "gpu_results.txt")] if out_dir else [])
    for p in paths:
        with open(p, "w") as f:
            f.write(text)
    print("\n" + text + "written to " + ", ".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())

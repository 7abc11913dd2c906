"""What one call costs the host on a GPU: CuPy's building blocks and ember's layers.

A ResNet-20 step on a fast GPU waits on the host (bench/gpu_check.py's kernel profile), so
the question is what each call costs in Python and CuPy before its kernel is queued. Every
figure below is the mean wall time of many calls on tiny arrays, synchronized once at the end,
so that the GPU work is negligible and the host's share is what is measured::

    python bench/gpu_overhead.py            # a table of us per call, printed and written to $OUT

Rows: CuPy primitives (a ufunc, ElementwiseKernel with broadcast and with raw arguments,
RawKernel, ReductionKernel, empty, matmul, views, a transposing copy), then ember's layers
forward and forward + backward, then a whole ResNet-20 training step at batch 2 (all host) and
128, ember and PyTorch.
"""
from __future__ import annotations

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, HERE):
    if p not in sys.path:
        sys.path.insert(0, p)

import numpy as np  # noqa: E402


def per_call_us(fn, sync, calls: int = 400, rounds: int = 3) -> float:
    """Least over rounds of the mean wall time per call, in us (the GPU synchronized once per round)."""
    fn()
    sync()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        best = min(best, (time.perf_counter() - t0) / calls * 1e6)
    return best


def cupy_rows(sync) -> list:
    import cupy as cp

    x = cp.ones(1024, dtype=cp.float32)
    y = cp.ones(1024, dtype=cp.float32)
    out = cp.empty_like(x)
    ew = cp.ElementwiseKernel("T a, T b", "T c", "c = a * b + T(1);", "bench_ew")
    ew_raw = cp.ElementwiseKernel("raw T a, raw T b, int32 n", "T c", "c = a[i] * b[i % n];", "bench_ew_raw")
    raw = cp.RawKernel(r"""extern "C" __global__ void bench_raw(const float* a, const float* b, float* c, int n) {
        int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) c[i] = a[i] * b[i] + 1.0f; }""", "bench_raw")
    raw16 = cp.RawKernel(r"""extern "C" __global__ void bench_raw16(const float* a, const float* b, float* c, int n,
        int k0, int k1, int k2, int k3, int k4, int k5, int k6, int k7, double f0, double f1, double f2, double f3,
        double f4, double f5, double f6) {
        int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) c[i] = a[i] * b[i] + (float)(k0 + f0); }""",
                         "bench_raw16")
    scalars16 = (np.int32(1024), *[np.int32(k) for k in range(8)], *[np.float64(k) for k in range(7)])
    red = cp.ReductionKernel("T x", "T y", "x", "a + b", "y = a", "0", "bench_sum")
    w = cp.ones((16, 16, 3, 3), dtype=cp.float32)
    a2, b2 = cp.ones((256, 144), dtype=cp.float32), cp.ones((144, 16), dtype=cp.float32)
    o2 = cp.empty((256, 16), dtype=cp.float32)
    a3 = cp.ones((1, 256, 144), dtype=cp.float32)
    bt = cp.ascontiguousarray(b2.T)  # (16, 144): b2's values stored transposed
    a32, o32 = cp.ones((2, 256, 144), dtype=cp.float32), cp.empty((2, 256, 16), dtype=cp.float32)
    from ember.ops.cuda_gemm import gemm
    ptrs = np.arange(64, dtype=np.uint64)
    dptrs = cp.empty(64, dtype=cp.uint64)
    n = np.int32(1024)
    cl_bytes, cl_strides = 128 * 16 * 32 * 32 * 4, (16 * 32 * 32 * 4, 4, 32 * 16 * 4, 16 * 4)
    rows = [
        ("cupy: x * y (ufunc)", lambda: x * y),
        ("cupy: ElementwiseKernel, 2 broadcast inputs", lambda: ew(x, y, out)),
        ("cupy: ElementwiseKernel, raw inputs + int", lambda: ew_raw(x, y, 1024, out)),
        ("cupy: ElementwiseKernel, raw inputs + np.int32", lambda: ew_raw(x, y, n, out)),
        ("cupy: RawKernel launch", lambda: raw((4,), (256,), (x, y, out, n))),
        ("cupy: RawKernel launch, 16 scalar arguments", lambda: raw16((4,), (256,), (x, y, out, *scalars16))),
        ("cupy: ReductionKernel over axis 0", lambda: red(x.reshape(4, 256), axis=0)),
        ("cupy: x.sum()", lambda: x.sum()),
        ("cupy: empty((128,16,32,32))", lambda: cp.empty((128, 16, 32, 32), dtype=cp.float32)),
        ("cupy: empty_like", lambda: cp.empty_like(x)),
        # a channels-last array as backend.empty_as makes it, and as one strided array (for the next change)
        ("cupy: empty((128,32,32,16)).transpose(0,3,1,2)",
         lambda: cp.empty((128, 32, 32, 16), dtype=cp.float32).transpose(0, 3, 1, 2)),
        ("cupy: ndarray(memptr=cuda.alloc, strides) same array",
         lambda: cp.ndarray((128, 16, 32, 32), cp.float32, memptr=cp.cuda.alloc(cl_bytes), strides=cl_strides)),
        ("cupy: zeros(1024)", lambda: cp.zeros(1024, dtype=cp.float32)),
        ("cupy: matmul 2-D out=", lambda: cp.matmul(a2, b2, out=o2)),
        ("cupy: matmul 2-D, transposed view operand", lambda: a2 @ b2.T.copy().T),
        ("cupy: matmul 3-D batched (1 batch)", lambda: cp.matmul(a3, b2)),
        ("ember: cuda_gemm.gemm, same 2-D product", lambda: gemm(a2, b2, o2)),
        ("ember: cuda_gemm.gemm, b read transposed", lambda: gemm(a2, bt.T, o2)),
        ("ember: cuda_gemm.gemm, 3-D batch of 2", lambda: gemm(a32, b2[None], o32)),
        ("cupy: reshape + transpose views", lambda: w.reshape(16, -1).T),
        ("cupy: ascontiguousarray(w.transpose)", lambda: cp.ascontiguousarray(w.transpose(2, 3, 1, 0))),
        ("cupy: x.copy()", lambda: x.copy()),
        ("cupy: 64 pointers host -> device", lambda: dptrs.set(ptrs)),
        ("cupy: x[...] = 0 (fill)", lambda: out.fill(0)),
    ]
    return [(name, per_call_us(fn, sync)) for name, fn in rows]


def ember_rows(sync) -> list:
    import ember
    import ember.nn as nn
    F = nn.functional

    def fwd_bwd(module, shape):
        x = ember.randn(*shape, device="cuda", requires_grad=True)
        module.to("cuda")

        def run():
            module(x).sum().backward()
        return run

    def fwd(module, shape):
        x = ember.randn(*shape, device="cuda")
        module.to("cuda")
        return lambda: module(x)

    out = []
    s = (2, 16, 8, 8)
    conv, bn, relu = nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
    a = ember.randn(*s, device="cuda", requires_grad=True)
    b = ember.randn(*s, device="cuda", requires_grad=True)
    out += [
        ("ember: Conv2d 16->16 3x3 forward", per_call_us(fwd(conv, s), sync, 200)),
        ("ember: BatchNorm2d forward (train)", per_call_us(fwd(bn, s), sync, 200)),
        ("ember: ReLU forward", per_call_us(fwd(relu, s), sync, 200)),
        ("ember: a + b forward", per_call_us(lambda: a + b, sync, 200)),
        ("ember: x.sum().backward() alone", per_call_us(lambda: a.sum().backward(), sync, 200)),
        ("ember: Conv2d forward + backward (+ sum)", per_call_us(fwd_bwd(conv, s), sync, 100)),
        ("ember: BatchNorm2d forward + backward (+ sum)", per_call_us(fwd_bwd(bn, s), sync, 100)),
        ("ember: ReLU forward + backward (+ sum)", per_call_us(fwd_bwd(relu, s), sync, 100)),
    ]
    xb = ember.randn(*s, device="cuda", requires_grad=True)
    out.append(("ember: relu(bn(x) + b) as one op, fwd + bwd (+ sum)",  # a ResNet block's end (bn_relu)
                per_call_us(lambda: bn(xb, add=b, relu=True).sum().backward(), sync, 100)))
    with ember.no_grad():
        out.append(("ember: Conv2d forward, no_grad", per_call_us(fwd(conv, s), sync, 200)))
    logits = ember.randn(2, 10, device="cuda", requires_grad=True)
    labels = ember.tensor(np.array([1, 2]), device="cuda")
    out.append(("ember: cross_entropy fwd + bwd", per_call_us(lambda: F.cross_entropy(logits, labels).backward(),
                                                              sync, 100)))
    return out


def conv_rows(sync) -> list:
    """The pieces of a small convolution's GPU route, each alone, and a cProfile of forward + backward."""
    import cProfile
    import io
    import pstats

    import cupy as cp

    import ember
    from ember.ops import cuda_conv as CC
    from ember.ops.cuda_gemm import Mat, gemm_mats
    from ember.ops.im2col import make_geometry

    x = cp.ones((2, 16, 8, 8), dtype=cp.float32)
    w = cp.ones((16, 16, 3, 3), dtype=cp.float32)
    gy = cp.ones((2, 8, 8, 16), dtype=cp.float32).transpose(0, 3, 1, 2)  # channels-last, as between layers
    g, pads = make_geometry(8, 8, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)), (1, 1, 1, 1)
    rows = CC.im2row(x, g, 1, pads)
    gw = cp.empty_like(w)
    out = [
        ("conv piece: im2row", per_call_us(lambda: CC.im2row(x, g, 1, pads), sync)),
        ("conv piece: gemm_mats (weight-grad shapes)",  # gy^T (16, 128) @ rows (128, 144) -> gw (16, 144)
         per_call_us(lambda: gemm_mats(Mat(gy, 16, 128, ld=16, t=True), Mat(rows, 128, 144, ld=144),
                                       Mat(gw, 16, 144, ld=144)), sync)),
        ("conv piece: cuda_conv.forward", per_call_us(lambda: CC.forward(x, w, None, g, 1, pads), sync)),
        ("conv piece: cuda_conv.weight_grad", per_call_us(lambda: CC.weight_grad(x, gy, g, 1, pads, w.shape), sync)),
        ("conv piece: cuda_conv.data_grad", per_call_us(lambda: CC.data_grad(gy, w, g, 1, pads, x.shape, True), sync)),
    ]
    xt = ember.Tensor(x, requires_grad=True)
    wt = ember.Tensor(w, requires_grad=True)
    gyt = ember.Tensor(gy)

    def fwd_bwd():
        xt.grad = wt.grad = None
        ember.nn.functional.conv2d(xt, wt, padding=1).backward(gradient=gyt)

    out.append(("conv: F.conv2d forward + backward, gy given", per_call_us(fwd_bwd, sync)))
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(200):
        fwd_bwd()
    sync()
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(30)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "conv_profile.txt"), "w") as f:
            f.write(text.getvalue())
    return out


def step_rows(esync, tsync) -> list:
    from gpu_check import build_pair, step_fns

    import ember
    out = []
    for batch in (2, 128):
        shape = (batch, 3, 32, 32)
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape).astype(np.float32)
        y = rng.integers(0, 10, batch)
        em, tm, eopt, topt = build_pair("resnet20", shape)
        ember_step, torch_step = step_fns(em, tm, eopt, topt)
        import torch
        ex, ey = ember.tensor(x, device="cuda"), ember.tensor(y, device="cuda")
        tx, ty = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
        for _ in range(3):
            ember_step(ex, ey)
            torch_step(tx, ty)
        out.append((f"ember: ResNet-20 step, batch {batch}", per_call_us(lambda: ember_step(ex, ey), esync, 20)))
        out.append((f"torch: ResNet-20 step, batch {batch}", per_call_us(lambda: torch_step(tx, ty), tsync, 20)))
    return out


def main() -> None:
    import cupy as cp

    sync = cp.cuda.Device().synchronize
    rows = []
    parts = [lambda: cupy_rows(sync), lambda: ember_rows(sync), lambda: conv_rows(sync)]
    try:
        import torch
        parts.append(lambda: step_rows(sync, torch.cuda.synchronize))
    except ImportError:
        pass
    for part in parts:  # each part's rows printed as soon as they are measured
        try:
            new = part()
        except Exception as exc:  # report and go on
            new = [(f"ERROR {type(exc).__name__}: {str(exc).splitlines()[0][:80]}", float("nan"))]
        for name, us in new:
            print(f"{name:52s} {us:9.1f} us", flush=True)
        rows += new
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gpu_overhead.txt"), "w") as f:
            f.write("\n".join(f"{name:52s} {us:9.1f} us" for name, us in rows) + "\n")


if __name__ == "__main__":
    main()

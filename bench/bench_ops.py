"""The toolkit's newer ops side by side with PyTorch (CPU): losses, norms, lookups, pools, resampling.

Run:  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_ops.py [--repeat N] [--only NAME,...]

Each row times one op's forward + backward (forward only where marked) on the same float32
inputs in both libraries, the two alternating step by step (bench/common.py), and prints the
medians and the ratio ember / torch (below 1: ember is faster). Both run with 2 threads.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import blas_report, interleaved_medians, setup_threads  # noqa: E402  (also puts the checkout on sys.path)

import torch  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

import ember  # noqa: E402
import ember.nn.functional as F  # noqa: E402
from ember.data import transforms as T  # noqa: E402


def _pair(arrays: dict, grad: tuple) -> tuple:
    """The same arrays as ember and torch tensors; those named in ``grad`` require grad."""
    e = {k: ember.Tensor(v, requires_grad=k in grad) for k, v in arrays.items()}
    t = {k: torch.from_numpy(v).requires_grad_(k in grad) for k, v in arrays.items()}
    return e, t


def _steps(e: dict, t: dict, ember_fn, torch_fn, backward: bool = True) -> dict:
    """Step functions of both libraries: forward, and backward of the output's sum."""
    def run(tensors, fn):
        def step():
            for v in tensors.values():
                v.grad = None
            y = fn(**tensors)
            if backward:
                y.sum().backward()
        return step
    return {"ember": run(e, ember_fn), "torch": run(t, torch_fn)}


def cases(rng: np.random.Generator) -> dict:
    f32 = np.float32
    out = {}

    def add(name, arrays, grad, ember_fn, torch_fn, backward=True):
        out[name] = lambda: _steps(*_pair(arrays, grad), ember_fn, torch_fn, backward)

    x = rng.standard_normal((4096, 1024)).astype(f32)
    add("rms_norm (4096, 1024)", {"x": x, "w": np.ones(1024, f32)}, ("x", "w"),
        lambda x, w: F.rms_norm(x, (1024,), w), lambda x, w: TF.rms_norm(x, (1024,), w))
    idx = rng.integers(0, 10000, (35, 32))
    add("embedding 10000x128, 1120 rows", {"w": rng.standard_normal((10000, 128)).astype(f32), "i": idx}, ("w",),
        lambda w, i: F.embedding(i, w), lambda w, i: TF.embedding(i, w))
    add("bilinear (256,64)x(256,64)->32",
        {"a": rng.standard_normal((256, 64)).astype(f32), "b": rng.standard_normal((256, 64)).astype(f32),
         "w": rng.standard_normal((32, 64, 64)).astype(f32)}, ("a", "b", "w"),
        lambda a, b, w: F.bilinear(a, b, w), lambda a, b, w: TF.bilinear(a, b, w))
    logits, labels = rng.standard_normal((512, 100)).astype(f32), rng.integers(0, 100, 512)
    add("multi_margin_loss (512, 100)", {"x": logits, "y": labels}, ("x",),
        lambda x, y: F.multi_margin_loss(x, y), lambda x, y: TF.multi_margin_loss(x, y))
    emb = {k: rng.standard_normal((512, 128)).astype(f32) for k in ("a", "p", "n")}
    add("triplet_margin_loss (512, 128)", emb, ("a", "p", "n"),
        lambda a, p, n: F.triplet_margin_loss(a, p, n), lambda a, p, n: TF.triplet_margin_loss(a, p, n))
    img = rng.standard_normal((32, 64, 32, 32)).astype(f32)
    samples = rng.random((32, 64, 2)).astype(f32)
    add("fractional_max_pool2d k2 -> 22", {"x": img, "s": samples}, ("x",),
        lambda x, s: F.fractional_max_pool2d(x, 2, output_size=22, _random_samples=s),
        lambda x, s: TF.fractional_max_pool2d(x, 2, output_size=22, _random_samples=s))
    seq = rng.standard_normal((64, 32, 1000)).astype(f32)
    add("adaptive_max_pool1d 1000 -> 37", {"x": seq}, ("x",),
        lambda x: F.adaptive_max_pool1d(x, 37), lambda x: TF.adaptive_max_pool1d(x, 37))
    small = rng.standard_normal((32, 16, 32, 32)).astype(f32)
    add("interpolate bicubic x2", {"x": small}, ("x",),
        lambda x: F.interpolate(x, scale_factor=2, mode="bicubic"),
        lambda x: TF.interpolate(x, scale_factor=2, mode="bicubic"))
    add("interpolate area 32 -> 12", {"x": small}, ("x",),
        lambda x: F.interpolate(x, size=12, mode="area"), lambda x: TF.interpolate(x, size=12, mode="area"))
    grid = rng.uniform(-1.1, 1.1, (16, 64, 64, 2)).astype(f32)
    add("grid_sample bilinear (16,16,64,64)", {"x": rng.standard_normal((16, 16, 64, 64)).astype(f32), "g": grid},
        ("x", "g"), lambda x, g: F.grid_sample(x, g, align_corners=False),
        lambda x, g: TF.grid_sample(x, g, align_corners=False))

    # an augmentation, forward only: ember's RandomAffine against the same warp by affine_grid + grid_sample
    batch = rng.random((128, 3, 32, 32)).astype(f32)
    aff = T.RandomAffine((15, 15), scale=(1.1, 1.1), interpolation="bilinear", fill=None)
    theta = torch.tensor(np.tile(np.array([[0.9, -0.2, 0.0], [0.2, 0.9, 0.0]], f32), (128, 1, 1)))

    def affine_steps():
        xt = torch.from_numpy(batch)
        return {"ember": lambda: aff(batch),
                "torch": lambda: TF.grid_sample(xt, TF.affine_grid(theta, xt.shape, align_corners=False),
                                                align_corners=False)}
    out["RandomAffine bilinear 128x3x32x32 (fwd)"] = affine_steps
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--only", default="", help="comma-separated substrings of row names")
    args = ap.parse_args(argv)
    print(setup_threads(2))
    print(blas_report())
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    print(f"{'op (forward + backward)':42s} {'ember ms':>9s} {'torch ms':>9s} {'ratio':>6s}")
    for name, make in cases(np.random.default_rng(0)).items():
        if wanted and not any(w in name for w in wanted):
            continue
        ms = interleaved_medians(make(), args.repeat, warmup=2)
        print(f"{name:42s} {ms['ember']:9.2f} {ms['torch']:9.2f} {ms['ember'] / ms['torch']:6.2f}", flush=True)


if __name__ == "__main__":
    main()

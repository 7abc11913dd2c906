"""The host's share of a GPU training step, measured on a machine without a GPU.

A ResNet-20 step on a fast GPU waits on the host (bench/gpu_check.py): on ember's Python and
on the CuPy calls it makes, each of which costs microseconds before its kernel is queued. This
script runs ember's GPU code paths on the CPU with tests/cuda_emulator.py, every kernel launch
and cuBLAS call replaced by a no-op that only counts, at batch 2 (NumPy's own work on such tiny
arrays is small), and reports per training step:

- ember's host floor: the step's wall time with no kernel work at all, i.e. ember's Python plus
  NumPy's views, allocations and tiny ufuncs in place of CuPy's;
- what it asks of CuPy: raw launches and ElementwiseKernels by name, cuBLAS calls, ufuncs
  (each one CuPy kernel launch), ``x[...] = y`` copies, and arrays made (allocations and views);
- read-backs to the host (each a sync with the GPU);
- an estimate of CuPy's host time for those calls, from per-call costs bench/gpu_overhead.py
  measured on an H200 host (``COST_US``; hosts differ ~2x, so compare counts between versions
  of ember, and take the estimate as an order of magnitude)::

    python bench/gpu_host.py               # ResNet-20, batch 2 (--model lenet5: LeNet-5)
    python bench/gpu_host.py --profile 25  # and cProfile's 25 costliest functions
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import os
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

# host cost per call in us, from bench/gpu_overhead.py's microbenchmarks on the H200 host of
# docs/gpu.md's last run: RawKernel, ElementwiseKernel, ufunc, cuBLAS call through cuda_gemm, an
# array object (empty() 2.4 us, a view ~0.75 us), x[...] = y, a value read back (a sync, and the wait for
# the GPU to get there: more on a busy GPU). Inside a real step, cProfile on that
# host saw each 2-4x dearer (a raw launch ~24 us, sgemm ~36 us, empty ~6 us, a view ~2 us).
COST_US = {"raw": 5.2, "elementwise": 6.5, "ufunc": 8.9, "cublas": 18.0, "array": 1.5, "setitem": 8.0, "sync": 15.0}

COUNTS: collections.Counter = collections.Counter()
_ACTIVE = [False]


@contextlib.contextmanager
def _paused():
    was, _ACTIVE[0] = _ACTIVE[0], False
    try:
        yield
    finally:
        _ACTIVE[0] = was


def _count(key: str) -> None:
    if _ACTIVE[0]:
        COUNTS[key] += 1


WHERE: collections.Counter = collections.Counter()  # arrays made, by ember function (--where)


def _ember_caller() -> str:
    """'module.function' of the innermost ember frame on the stack."""
    f = sys._getframe(2)
    while f is not None and os.sep + "ember" + os.sep not in f.f_code.co_filename:
        f = f.f_back
    if f is None:
        return "?"
    return f"{os.path.basename(f.f_code.co_filename)[:-3]}.{f.f_code.co_name}:{f.f_lineno}"


class Counted(np.ndarray):
    """A NumPy array standing for a CuPy array: counts the arrays made (a CuPy ndarray object
    each: allocations and views), the ufuncs called on it and its slice assignments."""

    def __array_finalize__(self, obj):
        _count("arrays made (allocations + views)")
        if _ACTIVE[0] and WHERE:
            WHERE[_ember_caller()] += 1

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        _count(f"ufunc {ufunc.__name__}" + ("" if method == "__call__" else f".{method}"))
        plain = [a.view(np.ndarray) if isinstance(a, Counted) else a for a in inputs]
        if out is not None:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, Counted) else o for o in out)
        with _paused():
            res = getattr(ufunc, method)(*plain, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return res.view(Counted) if isinstance(res, np.ndarray) else res

    def _read_back(self, how: str):
        _count(f"read back to the host ({how}): a sync")

    def __bool__(self):
        self._read_back("bool")
        return bool(self.view(np.ndarray))

    def __int__(self):
        self._read_back("int")
        return int(self.view(np.ndarray))

    def __float__(self):
        self._read_back("float")
        return float(self.view(np.ndarray))

    def item(self, *args):
        self._read_back("item")
        return self.view(np.ndarray).item(*args)

    def __getitem__(self, key):  # an element is a 0-d array, as in CuPy (reading it is a sync)
        res = np.ndarray.__getitem__(self, key)
        return np.asarray(res).view(Counted) if isinstance(res, np.generic) else res

    def fill(self, value):
        _count("x.fill(v) (fill kernel)")
        np.ndarray.fill(self.view(np.ndarray), value)

    def __setitem__(self, key, value):
        _count("x[...] = y (copy kernel)")
        with _paused():
            np.ndarray.__setitem__(self.view(np.ndarray), key, value)


def install():
    """The emulated CuPy with every kernel and cuBLAS call a counting no-op."""
    import tests.cuda_emulator as E

    E.install()
    from ember import backend

    backend.cupy_available = lambda: True

    def elementwise(self, *args, size=None):
        _count(f"elementwise {self.name}")

    def raw_init(self, code, name):
        self.name = name

    def raw_call(self, grid, block, args):
        _count(f"raw {self.name}")
        if _ACTIVE[0]:  # CuPy converts each argument on the host (a scalar into a C value object)
            COUNTS["(raw launches' scalar arguments)"] += sum(not isinstance(a, np.ndarray) for a in args)

    def blas(self, *args):
        _count("cublas gemm")

    E.ElementwiseKernel.__call__ = elementwise
    E.RawKernel.__init__, E.RawKernel.__call__ = raw_init, raw_call
    E._Cublas._gemm = E._Cublas._batched = blas


def count_arrays():
    """From now on the emulated CuPy's functions return Counted arrays and count their calls."""
    from ember import backend

    fake = backend._cupy
    numpy_attr = fake.__getattr__

    def attr(name):
        fn = numpy_attr(name)
        if not callable(fn) or isinstance(fn, (type, np.ufunc)):
            return fn

        def call(*args, **kwargs):
            _count(f"cupy.{name}")
            if _ACTIVE[0] and WHERE:
                WHERE[f"cupy.{name} from " + _ember_caller()] += 1
            res = fn(*args, **kwargs)
            if isinstance(res, np.ndarray) and not isinstance(res, Counted):
                with _paused():
                    res = res.view(Counted)
                _count("arrays made (allocations + views)")
            return res
        return call
    fake.__getattr__ = attr
    meta = type(fake.ndarray)  # cupy.ndarray(shape, dtype, memptr=, strides=): an allocation too
    make = meta.__call__

    def counted_ndarray(cls, *args, **kwargs):
        _count("cupy.ndarray")
        if _ACTIVE[0] and WHERE:
            WHERE["cupy.ndarray from " + _ember_caller()] += 1
        with _paused():
            res = make(cls, *args, **kwargs).view(Counted)
        _count("arrays made (allocations + views)")
        return res
    meta.__call__ = counted_ndarray


SHAPES = {"resnet20": (3, 32, 32), "lenet5": (1, 28, 28)}  # bench/gpu_check.py's W3 and W2 inputs


def build(batch: int, counted: bool, name: str = "resnet20"):
    import ember
    from ember.models import get_model

    ember.manual_seed(0)
    C, H, W = SHAPES[name]
    model = get_model(name, num_classes=10, in_channels=C, input_size=H).to("cuda")
    model.train()
    plain = list(model.parameters()) + list(model.buffers())
    opt = ember.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    x = ember.tensor(rng.standard_normal((batch, C, H, W)).astype(np.float32), device="cuda")
    y = ember.tensor(rng.integers(0, 10, batch), device="cuda")
    for t in plain + [x, y] if counted else []:
        t.data = t.data.view(Counted)
    F = ember.nn.functional

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(SHAPES), default="resnet20")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--where", type=int, default=0, metavar="N",
                    help="list the N ember lines that make the most arrays (cupy.<function> calls and views)")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="print cProfile's N costliest functions")
    args = ap.parse_args()
    install()
    warnings.simplefilter("ignore")  # the no-op kernels leave garbage in their outputs
    np.seterr(all="ignore")
    step = build(args.batch, counted=False, name=args.model)
    for _ in range(3):
        step()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        best = min(best, (time.perf_counter() - t0) / args.steps * 1e3)
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(lambda: [step() for _ in range(20)])
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)
    count_arrays()
    counted = build(args.batch, counted=True, name=args.model)
    counted()
    if args.where:
        WHERE["?"] = 0  # non-empty: on
    _ACTIVE[0] = True
    counted()
    _ACTIVE[0] = False
    kinds = collections.Counter()
    for key, n in COUNTS.items():
        kind = key.split()[0]
        if not kind.startswith(("cupy.", "(")):  # cupy.<function> calls: their arrays are counted as arrays made
            kinds[{"x[...]": "setitem", "x.fill(v)": "setitem", "arrays": "array", "read": "sync"}.get(kind, kind)] += n
    estimate = sum(COST_US[k] * n for k, n in kinds.items()) / 1e3
    print(f"{args.model} training step, batch {args.batch}, GPU code paths with no-op kernels (per step):")
    for key, n in sorted(COUNTS.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {n:5d}  {key}")
    print("  calls by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    for key, n in WHERE.most_common(args.where):
        print(f"  {n:5d}  {key if key.startswith('cupy.') else 'views and ufunc results from ' + key}")
    print(f"ember host floor (Python + NumPy stand-ins, no kernels): {best:.2f} ms/step")
    print(f"CuPy's host time for these calls, estimated from COST_US: {estimate:.1f} ms/step")

if __name__ == "__main__":
    main()

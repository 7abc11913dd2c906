"""Per-op checks driven by the op table (tests/opdb.py), for every row of every family.

For each (row, sample): (1) float32 forward against the float64 NumPy reference or
PyTorch in float64; (2) float64 gradcheck by central differences; (3) gradients
against PyTorch autograd with a random upstream gradient; (4) CPU/GPU parity when
CuPy and a GPU are present. Test ids are ``<row name>-<sample index>[-<sample name>]``.
"""
from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.backend import asnumpy, cupy_available, to_device
from ember.diagnostics.gradcheck import gradcheck
from tests.opdb import all_ops, non_contiguous

torch = pytest.importorskip("torch")


def _cases(need=None):
    cases = []
    for op in all_ops():
        if need is not None and not need(op):
            continue
        try:
            samples = op.samples(np.random.default_rng(0))
        except Exception as e:  # a broken row fails its own test instead of the whole module's collection
            cases.append(pytest.param(op, e, id=f"{op.name}-samples"))
            continue
        for i, s in enumerate(samples):
            tag = f"{op.name}-{i}" + (f"-{s.name}" if s.name else "")
            cases.append(pytest.param(op, s, id=tag))
    return cases


@pytest.fixture(autouse=True)
def _raise_broken_samples(request):
    sample = getattr(request.node, "callspec", None) and request.node.callspec.params.get("sample")
    if isinstance(sample, Exception):
        raise sample


def _is_float(a) -> bool:
    return isinstance(a, (np.ndarray, np.generic)) and np.asarray(a).dtype.kind == "f"


def _cast(a: np.ndarray, dtype) -> np.ndarray:
    """``a`` in ``dtype``, keeping a non-contiguous layout non-contiguous (that is what such samples test)."""
    out = np.asarray(a).astype(dtype)
    return non_contiguous(out) if out.ndim and not a.flags.c_contiguous else out


def _ember_inputs(sample, dtype, grad: bool, device=None):
    """Sample inputs as ember tensors: float arrays in ``dtype`` (requiring grad unless listed in no_grad)."""
    out = []
    for i, a in enumerate(sample.inputs):
        if isinstance(a, (np.ndarray, np.generic)):
            arr = _cast(np.asarray(a), dtype) if _is_float(a) else np.asarray(a)
            if device is not None:
                arr = to_device(arr, device)
            t = ember.Tensor(arr)
            t.requires_grad = grad and _is_float(a) and i not in sample.no_grad
            out.append(t)
        else:
            out.append(a)
    return out


def _torch_inputs(sample):
    out = []
    for i, a in enumerate(sample.inputs):
        if isinstance(a, (np.ndarray, np.generic)):
            t = torch.from_numpy(np.array(a, order="C"))  # (ascontiguousarray would make 0-d 1-d)
            if _is_float(a):
                t = t.double().requires_grad_(i not in sample.no_grad)
            out.append(t)
        else:
            out.append(a)
    return out


def _outputs(y) -> list:
    return list(y) if isinstance(y, (tuple, list)) else [y]


def _to_np(y) -> np.ndarray:
    if isinstance(y, ember.Tensor):
        return asnumpy(y.data)
    if torch.is_tensor(y):
        return y.detach().numpy()
    return np.asarray(y)


def _reference(op, sample) -> list:
    if op.torch_fn is not None:
        return [_to_np(y) for y in _outputs(op.torch_fn(*_torch_inputs(sample), **sample.kwargs))]
    if op.ref is not None:
        args = [np.asarray(a, dtype=np.float64) if _is_float(a) else a for a in sample.inputs]
        return [np.asarray(y) for y in _outputs(op.ref(*args, **sample.kwargs))]
    pytest.skip(f"{op.name}: no reference")


@pytest.mark.parametrize("op,sample", _cases())
def test_forward(op, sample):
    with ember.no_grad():
        got = _outputs(op.fn(*_ember_inputs(sample, np.float32, grad=False), **sample.kwargs))
    want = _reference(op, sample)
    assert len(got) == len(want), f"{op.name}: {len(got)} outputs, reference has {len(want)}"
    for k, (g, w) in enumerate(zip(got, want)):
        g = _to_np(g)
        assert g.shape == w.shape, f"{op.name} output {k}: shape {g.shape}, reference {w.shape}"
        if w.dtype.kind == "f" and any(_is_float(a) for a in sample.inputs):
            assert g.dtype == np.float32, f"{op.name} output {k}: float32 inputs gave {g.dtype}"
        if w.dtype.kind in "biu" and g.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w, err_msg=f"{op.name} output {k}")
        else:
            np.testing.assert_allclose(g, w, rtol=op.fwd_rtol, atol=op.fwd_atol, err_msg=f"{op.name} output {k}")


def _checkable(sample) -> bool:
    return any(_is_float(a) and i not in sample.no_grad for i, a in enumerate(sample.inputs))


@pytest.mark.parametrize("op,sample", _cases(lambda op: op.grad))
def test_gradcheck(op, sample):
    if not _checkable(sample):
        pytest.skip("no input requires grad")
    inputs = _ember_inputs(sample, np.float64, grad=True)
    gradcheck(lambda *ts: op.fn(*ts, **sample.kwargs), inputs, atol=op.grad_atol, rtol=op.grad_rtol,
              mode=op.gradcheck_mode)


def _seeds(outs, rng) -> list:
    return [rng.standard_normal(_to_np(y).shape) if _to_np(y).dtype.kind == "f" else None for y in outs]


@pytest.mark.parametrize("op,sample", _cases(lambda op: op.grad and op.torch_fn is not None))
def test_grad_vs_torch(op, sample):
    if not _checkable(sample):
        pytest.skip("no input requires grad")
    rng = np.random.default_rng(1)
    xs = _ember_inputs(sample, np.float64, grad=True)
    ys = _outputs(op.fn(*xs, **sample.kwargs))
    seeds = _seeds(ys, rng)
    pairs = [(y, g) for y, g in zip(ys, seeds) if g is not None and y.requires_grad]
    if len(pairs) == 1:
        pairs[0][0].backward(gradient=ember.Tensor(pairs[0][1]))
    elif pairs:
        ember.sum(ember.stack([(y * ember.Tensor(g)).sum() for y, g in pairs])).backward()
    ts = _torch_inputs(sample)
    touts = _outputs(op.torch_fn(*ts, **sample.kwargs))
    tl = sum(((y * torch.from_numpy(g)).sum() for y, g in zip(touts, seeds) if g is not None and y.requires_grad),
             torch.zeros((), dtype=torch.float64))
    if tl.requires_grad:
        tl.backward()
    for i, (x, t) in enumerate(zip(xs, ts)):
        if not isinstance(x, ember.Tensor) or not x.requires_grad:
            continue
        want = t.grad.numpy() if t.grad is not None else np.zeros(t.shape)
        got = x.grad.data if x.grad is not None else np.zeros(x.shape)
        assert got.shape == want.shape, f"{op.name}: grad of input {i} has shape {got.shape}, torch {want.shape}"
        assert got.dtype == np.float64, f"{op.name}: grad of input {i} has dtype {got.dtype}"
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8, err_msg=f"{op.name}: grad of input {i}")


@pytest.mark.gpu
@pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("op,sample", _cases(lambda op: op.gpu))
def test_gpu_parity(op, sample):
    grad = op.grad and _checkable(sample)
    results = []
    for device in ("cpu", "cuda"):
        xs = _ember_inputs(sample, np.float64, grad=grad, device=device)
        ys = _outputs(op.fn(*xs, **sample.kwargs))
        pairs = [(y, g) for y, g in zip(ys, _seeds(ys, np.random.default_rng(1)))
                 if g is not None and y.requires_grad]
        for y, g in pairs:
            y.backward(gradient=ember.Tensor(to_device(g, device)), retain_graph=True)
        assert all(y.device == ember.device(device) for y in ys if isinstance(y, ember.Tensor))
        grads = [x.grad for x in xs if isinstance(x, ember.Tensor) and x.requires_grad]
        results.append(([_to_np(y) for y in ys], [None if g is None else asnumpy(g.data) for g in grads]))
    (cpu_y, cpu_g), (gpu_y, gpu_g) = results
    for a, b in zip(cpu_y, gpu_y):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
    for a, b in zip(cpu_g, gpu_g):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)

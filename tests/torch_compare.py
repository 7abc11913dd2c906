"""An ember op against its PyTorch twin on the same float32 inputs: the forward and every gradient.

Used by the convolution tests; PyTorch is imported by the caller (``pytest.importorskip``).
"""
from __future__ import annotations

import numpy as np

import ember


def rel_err(a, b) -> float:
    """Largest absolute difference relative to the largest magnitude of the reference ``b``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def run_both(fn, tfn, arrays, **kw):
    """Forward + backward with one random upstream gradient in ember and torch (float32).
    Returns (ember output, torch output, ember inputs, torch inputs)."""
    import torch

    es = [ember.Tensor(a.astype(np.float32), requires_grad=True) for a in arrays]
    ts = [torch.tensor(a.astype(np.float32), requires_grad=True) for a in arrays]
    ye, yt = fn(*es, **kw), tfn(*ts, **kw)
    g = np.random.default_rng(5).standard_normal(yt.shape).astype(np.float32)
    ye.backward(ember.Tensor(g))
    yt.backward(torch.tensor(g))
    return ye, yt, es, ts


def assert_matches(fn, tfn, arrays, label="", fwd: float = 1e-4, grad: float = 1e-3, **kw) -> None:
    """The forward within ``fwd`` and each input's gradient within ``grad`` (``rel_err``) of torch's."""
    ye, yt, es, ts = run_both(fn, tfn, arrays, **kw)
    assert ye.shape == tuple(yt.shape) and ye.dtype == np.float32, (label, ye.shape, tuple(yt.shape), ye.dtype)
    assert rel_err(ye.data, yt.detach().numpy()) <= fwd, (label, "forward")
    for i, (e, t) in enumerate(zip(es, ts)):
        assert rel_err(e.grad.data, t.grad.numpy()) <= grad, (label, f"gradient of input {i}")

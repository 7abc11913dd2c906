"""Optimizer state moves between ember and PyTorch: a state dict saved by one resumes in the other.

Tensors cross as NumPy arrays (``.numpy()`` one way, ``torch.from_numpy`` the other), as weights do.
"""
import numpy as np
import pytest
import torch

import ember
from ember import optim

SHAPES = [(4, 3), (3,)]
CASES = [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01)),
    ("Adadelta", dict(lr=0.5)),
    ("Adamax", dict(lr=0.01)),
    ("NAdam", dict(lr=0.01)),
    ("RAdam", dict(lr=0.01)),
]


def _grads(t: int) -> list:
    rng = np.random.default_rng(t)
    return [rng.standard_normal(s) for s in SHAPES]


def _steps(opt, params, start: int, stop: int, torch_side: bool) -> None:
    for t in range(start, stop):
        for p, g in zip(params, _grads(t)):
            x = p.detach().numpy() if torch_side else p.data
            g = g + np.sin(x)  # depends on the parameters, so any drift compounds
            p.grad = torch.from_numpy(g) if torch_side else ember.Tensor(g)
        opt.step()


def _to_numpy(sd: dict) -> dict:
    state = {i: {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in s.items()}
             for i, s in sd["state"].items()}
    return {"state": state, "param_groups": sd["param_groups"]}


def _to_torch(sd: dict) -> dict:
    # torch.tensor copies: from_numpy would let both optimizers update one buffer
    state = {i: {k: (torch.tensor(float(v)) if k == "step" or isinstance(v, float) else torch.tensor(v.numpy()))
                 for k, v in s.items()} for i, s in sd["state"].items()}
    return {"state": state, "param_groups": sd["param_groups"]}


@pytest.fixture(autouse=True)
def _torch_float64():
    """PyTorch keeps NAdam's mu_product in its default dtype: float64 here, as ember's Python float."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _params(seed: int = 0):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s) for s in SHAPES]
    return ([ember.Tensor(a.copy(), requires_grad=True) for a in arrays],
            [torch.tensor(a.copy(), requires_grad=True) for a in arrays])


@pytest.mark.parametrize("name,kw", CASES, ids=[c[0] for c in CASES])
def test_torch_state_resumes_in_ember(name, kw):
    ours, theirs = _params()
    ref = getattr(torch.optim, name)(theirs, **kw)
    _steps(ref, theirs, 0, 8, torch_side=True)  # 8 steps: RAdam's rectified branch starts at 6
    for a, b in zip(ours, theirs):
        a.data[...] = b.detach().numpy()
    opt = getattr(optim, name)(ours, **kw)
    opt.load_state_dict(_to_numpy(ref.state_dict()))
    _steps(ref, theirs, 8, 16, torch_side=True)
    _steps(opt, ours, 8, 16, torch_side=False)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.data, b.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,kw", CASES, ids=[c[0] for c in CASES])
def test_ember_state_resumes_in_torch(name, kw):
    ours, theirs = _params()
    opt = getattr(optim, name)(ours, **kw)
    _steps(opt, ours, 0, 8, torch_side=False)
    with torch.no_grad():
        for a, b in zip(ours, theirs):
            b.copy_(torch.from_numpy(a.data))
    ref = getattr(torch.optim, name)(theirs, **kw)
    ref.load_state_dict(_to_torch(opt.state_dict()))
    _steps(ref, theirs, 8, 16, torch_side=True)
    _steps(opt, ours, 8, 16, torch_side=False)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.data, b.detach().numpy(), rtol=1e-10, atol=1e-12)

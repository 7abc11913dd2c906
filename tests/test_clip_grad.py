"""ember.nn.utils: gradient clipping and parameter vectors, compared with torch.nn.utils."""
import numpy as np
import pytest
import torch

import ember
from ember.errors import ShapeError
from ember.nn.utils import clip_grad_norm_, clip_grad_value_, parameters_to_vector, vector_to_parameters


def _pair(scale=1.0, dtype=np.float32):
    rng = np.random.default_rng(1)
    shapes = [(4, 3), (3,), (2, 2, 2)]
    grads = [(scale * rng.standard_normal(s)).astype(dtype) for s in shapes]
    ours = [ember.Tensor(np.zeros(s, dtype), requires_grad=True) for s in shapes]
    theirs = [torch.zeros(s, dtype=torch.float32 if dtype == np.float32 else torch.float64, requires_grad=True)
              for s in shapes]
    for o, t, g in zip(ours, theirs, grads):
        o.grad, t.grad = ember.Tensor(g.copy()), torch.from_numpy(g.copy())
    ours.append(ember.Tensor(np.zeros(2, dtype), requires_grad=True))  # no grad: ignored
    theirs.append(torch.zeros(2, requires_grad=True))
    return ours, theirs


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    ours, theirs = _pair()
    total = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    ref = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert isinstance(total, ember.Tensor) and total.ndim == 0
    assert float(total) == pytest.approx(float(ref), rel=1e-6)
    for o, t in zip(ours[:3], theirs[:3]):
        np.testing.assert_allclose(o.grad.data, t.grad.numpy(), rtol=1e-6, atol=1e-7)
    if max_norm == 0.5:
        joint = np.concatenate([o.grad.data.ravel() for o in ours[:3]])
        assert np.linalg.norm(joint, ord=norm_type) == pytest.approx(0.5, rel=1e-4)
    assert ours[3].grad is None


def test_clip_grad_norm_single_tensor_and_no_grads():
    p = ember.Tensor(np.zeros(3, np.float64), requires_grad=True)
    assert float(clip_grad_norm_(p, 1.0)) == 0.0
    p.grad = ember.Tensor(np.array([3.0, 4.0, 0.0]))
    v = p.grad._version
    assert float(clip_grad_norm_(p, 1.0)) == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad.data, [0.6, 0.8, 0.0], rtol=1e-5)
    assert p.grad._version == v + 1


def test_clip_grad_norm_nonfinite():
    ours, _ = _pair()
    ours[0].grad.data[0, 0] = np.inf
    with pytest.raises(RuntimeError, match="total norm .* inf"):
        clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)
    total = clip_grad_norm_(ours, 1.0)  # without the check: torch's behaviour (grads become nan/0)
    assert np.isinf(float(total))


def test_clip_grad_value_matches_torch():
    ours, theirs = _pair(scale=3.0)
    clip_grad_value_(ours, 1.5)
    torch.nn.utils.clip_grad_value_(theirs, 1.5)
    for o, t in zip(ours[:3], theirs[:3]):
        np.testing.assert_array_equal(o.grad.data, t.grad.numpy())
    assert max(np.abs(o.grad.data).max() for o in ours[:3]) == 1.5


def test_parameter_vector_round_trip():
    rng = np.random.default_rng(0)
    ps = [ember.Tensor(rng.standard_normal(s), requires_grad=True) for s in [(2, 3), (4,)]]
    vec = parameters_to_vector(ps)
    ref = torch.nn.utils.parameters_to_vector([torch.from_numpy(p.data) for p in ps])
    np.testing.assert_array_equal(vec.data, ref.numpy())
    (vec * vec).sum().backward()  # differentiable, like torch's
    np.testing.assert_allclose(ps[0].grad.data, 2 * ps[0].data)
    new = ember.Tensor(np.arange(10, dtype=np.float64))
    with ember.no_grad():
        vector_to_parameters(new, ps)
    np.testing.assert_array_equal(ps[0].data, np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(ps[1].data, [6.0, 7.0, 8.0, 9.0])
    with pytest.raises(ShapeError, match="9 elements but the parameters hold 10"):
        vector_to_parameters(ember.Tensor(np.zeros(9)), ps)

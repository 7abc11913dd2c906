"""Activation and loss layers and options beyond the op table: weights, ignore_index, label smoothing,
pos_weight, label validation, and stability at extreme inputs (warnings are errors)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import ember
import ember.nn as nn
import ember.nn.functional as F
from ember.errors import DTypeError, ShapeError


def _t(a, grad=False):
    return ember.tensor(np.asarray(a), requires_grad=grad)


def _compare_grads(e_fn, t_fn, arrays, grad_mask, rtol=1e-6, atol=1e-8):
    """Run both in float64 and compare the output and the gradient of every input in grad_mask."""
    es = [_t(a, g) for a, g in zip(arrays, grad_mask)]
    ts = [torch.tensor(a, requires_grad=g) for a, g in zip(arrays, grad_mask)]
    ey, ty = e_fn(*es), t_fn(*ts)
    np.testing.assert_allclose(ey.detach().numpy(), ty.detach().numpy(), rtol=rtol, atol=atol)
    g = np.random.default_rng(3).standard_normal(ty.shape)
    ey.backward(ember.tensor(g))
    ty.backward(torch.tensor(g))
    for e, t, m in zip(es, ts, grad_mask):
        if m:
            np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), rtol=rtol, atol=atol)


# ---- cross entropy options ---------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.25])
@pytest.mark.parametrize("shape", [(6, 5), (2, 5, 3, 2)])
def test_cross_entropy_weight_ignore_smoothing(reduction, smoothing, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    t = rng.integers(0, 5, (shape[0],) + shape[2:])
    t.flat[[0, 3]] = 7  # custom ignore_index
    w = rng.uniform(0.2, 2.0, 5)
    kw = dict(ignore_index=7, reduction=reduction, label_smoothing=smoothing)
    _compare_grads(lambda a, b: F.cross_entropy(a, _t(t), weight=b, **kw),
                   lambda a, b: TF.cross_entropy(a, torch.tensor(t), weight=b, **kw), [x, w], [True, False])


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_probabilities_with_weight(smoothing):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 2))
    p = rng.dirichlet(np.ones(3), (4, 2)).transpose(0, 2, 1)
    w = rng.uniform(0.5, 2, 3)
    _compare_grads(lambda a, b: F.cross_entropy(a, b, weight=_t(w), label_smoothing=smoothing),
                   lambda a, b: TF.cross_entropy(a, b, weight=torch.tensor(w), label_smoothing=smoothing),
                   [x, p], [True, True])


def test_cross_entropy_all_ignored_is_nan_without_warning():
    y = F.cross_entropy(ember.randn(3, 4), _t(np.full(3, -100)))
    assert math.isnan(y.item())
    assert math.isnan(TF.cross_entropy(torch.randn(3, 4), torch.full((3,), -100)).item())


def test_cross_entropy_extreme_logits():
    y = F.cross_entropy(ember.tensor([[1e8, 1e8]]), _t([0]))
    assert abs(y.item() - math.log(2)) < 1e-6
    x = ember.tensor([[1e4, -1e4, 0.0], [-1e30, 1e30, 3.0]], requires_grad=True)
    y = F.cross_entropy(x, _t([1, 0]), label_smoothing=0.1)
    y.backward()
    assert np.isfinite(x.grad.numpy()).all()
    want = TF.cross_entropy(torch.tensor(x.detach().numpy()), torch.tensor([1, 0]), label_smoothing=0.1)
    np.testing.assert_allclose(y.item(), want.item(), rtol=1e-6)


def test_cross_entropy_label_validation():
    x = ember.randn(4, 3)
    with pytest.raises(IndexError, match=r"cross_entropy: target value 3 at index \(2,\).*3 classes"):
        F.cross_entropy(x, _t([0, 1, 3, 1]))
    with pytest.raises(IndexError, match="value -1"):
        F.cross_entropy(x, _t([0, -1, 2, 1]))
    with pytest.raises(ShapeError, match=r"target has shape \(3,\).*\(4,\)"):
        F.cross_entropy(x, _t([0, 1, 2]))
    with pytest.raises(ShapeError, match="probabilities"):
        F.cross_entropy(x, ember.zeros(4))
    with pytest.raises(DTypeError, match="integer"):
        F.cross_entropy(x, _t(np.array([True, False, True, True])))
    with pytest.raises(ShapeError, match="weight"):
        F.cross_entropy(x, _t([0, 1, 2, 1]), weight=ember.ones(4))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(x, _t([0, 1, 2, 1]), reduction="avg")
    with pytest.raises(IndexError, match="nll_loss"):
        F.nll_loss(x, _t([0, 1, 5, 1]))
    F.cross_entropy(x, _t([0, -100, 2, 1]))  # ignore_index is allowed


def test_cross_entropy_is_one_fused_node():
    x = ember.randn(4, 3, requires_grad=True)
    y = F.cross_entropy(x, _t([0, 1, 2, 1]))
    assert type(y.grad_fn).__name__ == "CrossEntropy" and y.grad_fn.next == (x,)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_nll_weighted_matches_torch(reduction):
    rng = np.random.default_rng(2)
    x = np.log(rng.dirichlet(np.ones(4), 6))
    t = rng.integers(0, 4, 6)
    t[1] = -100
    w = rng.uniform(0.1, 3, 4)
    _compare_grads(lambda a: F.nll_loss(a, _t(t), weight=_t(w), reduction=reduction),
                   lambda a: TF.nll_loss(a, torch.tensor(t), weight=torch.tensor(w), reduction=reduction), [x], [True])


# ---- binary losses -----------------------------------------------------------------------------------
def test_bce_with_logits_weight_and_pos_weight():
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((5, 3)) * 4, rng.random((5, 3))
    w, pw = rng.uniform(0.5, 2, (5, 1)), rng.uniform(0.5, 3, 3)
    for red in ("mean", "sum", "none"):
        _compare_grads(lambda a, b: F.binary_cross_entropy_with_logits(a, b, _t(w), red, _t(pw)),
                       lambda a, b: TF.binary_cross_entropy_with_logits(a, b, torch.tensor(w), reduction=red,
                                                                        pos_weight=torch.tensor(pw)),
                       [x, t], [True, True])


def test_bce_weight_and_clamp():
    rng = np.random.default_rng(4)
    x, t, w = rng.uniform(0.05, 0.95, (4, 3)), rng.random((4, 3)), rng.uniform(0.5, 2, 3)
    _compare_grads(lambda a: F.binary_cross_entropy(a, _t(t), weight=_t(w)),
                   lambda a: TF.binary_cross_entropy(a, torch.tensor(t), weight=torch.tensor(w)), [x], [True])
    # probabilities of exactly 0 and 1: log clamped at -100, like PyTorch, no warnings
    x = np.array([0.0, 1.0, 0.0, 1.0])
    t = np.array([1.0, 0.0, 0.0, 1.0])
    _compare_grads(lambda a: F.binary_cross_entropy(a, _t(t), reduction="none"),
                   lambda a: TF.binary_cross_entropy(a, torch.tensor(t), reduction="none"), [x], [True])
    with pytest.raises(ValueError, match=r"binary_cross_entropy: input must hold probabilities"):
        F.binary_cross_entropy(ember.tensor([1.5]), ember.tensor([1.0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_stable_at_extreme_inputs(dtype):
    big = np.array([-1e4, -100.0, 0.0, 100.0, 1e4], dtype=dtype)
    t = np.array([1.0, 0.0, 1.0, 1.0, 0.0], dtype=dtype)
    x = ember.tensor(big, requires_grad=True)
    y = F.binary_cross_entropy_with_logits(x, ember.tensor(t), reduction="none")
    want = TF.binary_cross_entropy_with_logits(torch.tensor(big), torch.tensor(t), reduction="none").numpy()
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-6, atol=1e-30)  # float32 subnormals differ
    y.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()
    logits = ember.tensor(np.array([[1e4, -1e4], [-1e4, 1e4]], dtype=dtype), requires_grad=True)
    loss = F.cross_entropy(logits, _t([1, 1]))
    loss.backward()
    np.testing.assert_allclose(loss.item(), 1e4, rtol=1e-6)
    assert np.isfinite(logits.grad.numpy()).all()


# ---- regression losses -------------------------------------------------------------------------------
def test_regression_loss_shape_mismatch_is_an_error():
    with pytest.raises(ShapeError, match=r"mse_loss: input has shape \(4, 1\) but target has shape \(4,\)"):
        F.mse_loss(ember.zeros(4, 1), ember.zeros(4))
    with pytest.raises(ValueError, match="reduction"):
        F.l1_loss(ember.zeros(2), ember.zeros(2), reduction="mena")


def test_smooth_l1_beta_zero_is_l1():
    x, t = ember.tensor([0.5, -2.0, 3.0]), ember.tensor([0.0, 0.0, 0.0])
    assert F.smooth_l1_loss(x, t, beta=0.0).item() == pytest.approx(F.l1_loss(x, t).item())


def test_kl_div_zero_target_and_batchmean():
    q = np.log(np.array([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]]))
    p = np.array([[0.0, 0.5, 0.5], [0.1, 0.0, 0.9]])
    for red in ("batchmean", "sum", "none", "mean"):
        got = F.kl_div(ember.tensor(q), ember.tensor(p), reduction=red).numpy()
        if red == "mean":  # torch warns that 'mean' is not the true KL; compare against its formula
            want = TF.kl_div(torch.tensor(q), torch.tensor(p), reduction="none").numpy().mean()
        else:
            want = TF.kl_div(torch.tensor(q), torch.tensor(p), reduction=red).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-12)


# ---- activations -------------------------------------------------------------------------------------
ACTIVATIONS = [
    (nn.Sigmoid(), torch.nn.Sigmoid()), (nn.Tanh(), torch.nn.Tanh()), (nn.ReLU(), torch.nn.ReLU()),
    (nn.LeakyReLU(0.1), torch.nn.LeakyReLU(0.1)), (nn.ELU(0.5), torch.nn.ELU(0.5)), (nn.SELU(), torch.nn.SELU()),
    (nn.GELU(), torch.nn.GELU()), (nn.GELU("tanh"), torch.nn.GELU("tanh")), (nn.SiLU(), torch.nn.SiLU()),
    (nn.Softplus(), torch.nn.Softplus()), (nn.Softplus(2.0, 10.0), torch.nn.Softplus(2.0, 10.0)),
    (nn.Mish(), torch.nn.Mish()), (nn.Hardtanh(), torch.nn.Hardtanh()), (nn.ReLU6(), torch.nn.ReLU6()),
    (nn.LogSigmoid(), torch.nn.LogSigmoid()), (nn.Softmax(dim=1), torch.nn.Softmax(dim=1)),
    (nn.LogSoftmax(dim=1), torch.nn.LogSoftmax(dim=1)), (nn.Hardswish(), torch.nn.Hardswish()),
    (nn.Softsign(), torch.nn.Softsign()), (nn.CELU(2.0), torch.nn.CELU(2.0)),
]


@pytest.mark.parametrize("pair", ACTIVATIONS, ids=lambda p: repr(p[0]))
def test_activation_layers_match_torch_including_extremes(pair):
    layer, tlayer = pair
    x = np.array([[-1000.0, -30.0, -5.0, -0.7, 0.3, 2.0, 25.0, 1000.0]] * 2, dtype=np.float32)
    e = ember.tensor(x, requires_grad=True)
    t = torch.tensor(x, requires_grad=True)
    y, ty = layer(e), tlayer(t)
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    g = np.linspace(-1, 1, x.size).reshape(x.shape).astype(np.float32)
    y.backward(ember.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert repr(layer) == repr(tlayer)


def test_prelu_layer_learns_per_channel_slope():
    layer, tlayer = nn.PReLU(3), torch.nn.PReLU(3)
    assert list(layer.state_dict()) == list(tlayer.state_dict()) == ["weight"]
    assert repr(layer) == repr(tlayer)
    x = np.random.default_rng(0).standard_normal((4, 3, 5)).astype(np.float32)
    y, ty = layer(ember.tensor(x)), tlayer(torch.tensor(x))
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-6)
    y.sum().backward()
    ty.sum().backward()
    np.testing.assert_allclose(layer.weight.grad.numpy(), tlayer.weight.grad.numpy(), rtol=1e-5)
    with pytest.raises(ShapeError, match="prelu"):
        layer(ember.randn(4, 2, 5))


def test_softmax_default_dim_and_softmin():
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_allclose(nn.Softmax()(ember.tensor(x)).numpy(), TF.softmax(torch.tensor(x), 1).numpy(),
                               rtol=1e-6)
    np.testing.assert_allclose(nn.Softmin(dim=0)(ember.tensor(x)).numpy(), TF.softmin(torch.tensor(x), 0).numpy(),
                               rtol=1e-6)


def test_loss_layers_repr_and_buffers():
    w = ember.tensor([1.0, 2.0, 3.0])
    ce = nn.CrossEntropyLoss(weight=w, label_smoothing=0.1)
    assert list(ce.state_dict()) == list(torch.nn.CrossEntropyLoss(weight=torch.ones(3)).state_dict())
    x, t = ember.randn(4, 3), _t([0, 1, 2, 0])
    assert ce(x, t).item() == pytest.approx(F.cross_entropy(x, t, weight=w, label_smoothing=0.1).item())
    bl = nn.BCEWithLogitsLoss(pos_weight=ember.tensor([2.0]))
    assert list(bl.state_dict()) == list(torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0])).state_dict())
    for layer, args in [(nn.MSELoss(), ()), (nn.L1Loss(reduction="sum"), ()), (nn.SmoothL1Loss(beta=0.5), ()),
                        (nn.HuberLoss(delta=2.0), ()), (nn.BCELoss(), ()), (nn.NLLLoss(), ()), (nn.KLDivLoss(), ())]:
        assert repr(layer) == type(layer).__name__ + "()"
    with pytest.raises(ValueError):
        nn.MSELoss(reduction="avg")
    a, b = ember.randn(3, 2), ember.randn(3, 2)
    assert nn.HuberLoss(delta=2.0)(a, b).item() == pytest.approx(
        TF.huber_loss(torch.tensor(a.numpy()), torch.tensor(b.numpy()), delta=2.0).item(), rel=1e-6)


# ---- relu against a row of zeros (ember.ops.activation._relu_rows) ------------------------------------
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "sliced"])
def test_relu_large_inputs_match_maximum_in_every_layout(layout):
    """ReLU on arrays of 4096+ elements runs against a row of zeros when dense (also channels-last, and
    with a tail shorter than the row); a non-dense view takes the plain path. Same values, same
    gradient, the output in the input's memory order; nan stays nan and -inf gives 0."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 7, 17, 19)).astype(np.float32)  # 6783 elements: one row and a tail
    x.reshape(-1)[[5, 4100, 6782]] = [np.nan, -np.inf, np.inf]
    if layout == "channels_last":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    elif layout == "sliced":
        x = np.concatenate([x, x], axis=3)[..., ::2]
    from ember.ops.activation import _relu_rows

    assert _relu_rows(x, np.empty_like(x)) == (layout != "sliced")
    t = ember.tensor(x, requires_grad=True)
    y = F.relu(t)
    expect = np.where(x > 0, x, np.where(np.isnan(x), np.nan, 0)).astype(np.float32)
    np.testing.assert_array_equal(y.data, expect)
    assert y.data.strides == np.empty_like(x).strides
    g = rng.standard_normal(x.shape).astype(np.float32)
    y.backward(ember.tensor(g))
    np.testing.assert_array_equal(t.grad.data, np.where(x > 0, g, 0))

"""Rows of the op table (see tests/opdb.py): the activations of ember/ops/activation_more.py, channel_shuffle,
rms_norm, and the padding layers (as functions of their input).

Samples keep away from the kinks (the threshold, +-lambd, 0 for rrelu) so central
differences see a smooth function. rrelu's random training mode is tested in
tests/test_layers_more.py; here it runs with lower == upper, which makes it deterministic.
"""
import numpy as np
import torch
import torch.nn as tnn
import torch.nn.functional as TF

import ember.nn as nn
import ember.nn.functional as F
from tests.opdb import OpInfo, Sample, non_contiguous


def _off(rng, shape, kinks=(0.0,), gap=0.1, scale=2.0):
    """Uniform values in [-scale, scale] at least ``gap`` away from every kink."""
    n = int(np.prod(shape))
    v = rng.uniform(-scale, scale, 4 * n + 16)
    for k in kinks:
        v = v[np.abs(v - k) >= gap]
    return v[:n].reshape(shape)


def _unary(kinks=(0.0,), scale=2.0):
    def samples(rng):
        r = lambda shape: _off(rng, shape, kinks, scale=scale)  # noqa: E731
        return [
            Sample((r((3, 4)),)),
            Sample((r((2, 3, 2, 2)),), name="4d"),
            Sample((np.asarray(r(())),), name="0d"),
            Sample((np.zeros((0, 3)),), name="empty"),
            Sample((non_contiguous(r((3, 4))),), name="noncontig"),
        ]

    return samples


def _with(samples, **kwargs):
    return lambda rng: [Sample(s.inputs, {**s.kwargs, **kwargs}, s.no_grad, s.name) for s in samples(rng)]


def _row(name, fn, tfn, samples, **kw):
    return OpInfo(name, fn, samples, torch_fn=tfn, **kw)


def _glu_samples(rng):
    r = rng.standard_normal
    return [
        Sample((r((3, 4)),)),
        Sample((r((2, 6, 3)),), {"dim": 1}, name="dim1"),
        Sample((r((4, 3)),), {"dim": 0}, name="dim0"),
        Sample((r((2, 2, 2)),), {"dim": -3}, name="neg_dim"),
        Sample((non_contiguous(r((3, 6))),), name="noncontig"),
        Sample((np.zeros((0, 4)),), name="empty"),
    ]


def _softmin_samples(rng):
    r = rng.standard_normal
    return [
        Sample((r((3, 4)),), {"dim": 1}),
        Sample((r((3, 4)) * 20,), {"dim": 0}, name="large"),
        Sample((r((2, 3, 4)),), {"dim": -1}, name="3d"),
        Sample((np.asarray(r(())),), {"dim": 0}, name="0d"),
        Sample((non_contiguous(r((3, 4))),), {"dim": 1}, name="noncontig"),
    ]


def _shuffle_samples(rng):
    r = rng.standard_normal
    return [
        Sample((r((2, 6, 3, 3)),), {"groups": 3}),
        Sample((r((2, 6, 3, 3)),), {"groups": 2}, name="g2"),
        Sample((r((1, 4, 5)),), {"groups": 2}, name="3d"),
        Sample((r((2, 6, 2, 1, 2)),), {"groups": 6}, name="5d_all"),
        Sample((r((2, 4, 2)),), {"groups": 1}, name="g1"),
        Sample((non_contiguous(r((2, 4, 3, 2))),), {"groups": 2}, name="noncontig"),
        Sample((np.zeros((0, 4, 2, 2)),), {"groups": 2}, name="empty"),
    ]


def _rms(x, w=None, shape=(4,), eps=None):
    return F.rms_norm(x, shape, w, eps)


def _trms(x, w=None, shape=(4,), eps=None):
    return TF.rms_norm(x, list(shape), w, eps)


def _rms_samples(rng):
    r = rng.standard_normal
    return [
        Sample((r((3, 4)), r(4))),
        Sample((r((2, 3, 4)),), name="no_weight"),
        Sample((r((2, 3, 4)), r((3, 4))), {"shape": (3, 4), "eps": 1e-3}, name="2d_shape"),
        Sample((r((5,)) * 1e-3, r(5)), {"shape": (5,), "eps": 1e-6}, name="small_eps"),
        Sample((r(4), r(4)), name="1d"),
        Sample((non_contiguous(r((3, 4))), r(4)), name="noncontig"),
        Sample((np.zeros((0, 4)), r(4)), name="empty"),
    ]


def _pad_row(name, make, samples):
    """A padding layer (as in ember and torch.nn, built by ``make``) as a function of its input."""
    return OpInfo(name, lambda x: make(nn)(x), samples, torch_fn=lambda x: make(tnn)(x))


def _images(*shapes):
    return lambda rng: [Sample((rng.standard_normal(s),), name="x".join(map(str, s))) for s in shapes]


OPS: list = [
    _row("threshold", F.threshold, TF.threshold, _with(_unary((0.3,)), threshold=0.3, value=-2.0)),
    _row("hardshrink", F.hardshrink, TF.hardshrink, _unary((-0.5, 0.5))),
    _row("hardshrink_lambd", F.hardshrink, TF.hardshrink, _with(_unary((-1.0, 1.0), 3.0), lambd=1.0)),
    _row("softshrink", F.softshrink, TF.softshrink, _unary((-0.5, 0.5))),
    _row("softshrink_lambd", F.softshrink, TF.softshrink, _with(_unary((-1.0, 1.0), 3.0), lambd=1.0)),
    _row("softshrink_zero", F.softshrink, TF.softshrink, _with(_unary(), lambd=0.0)),
    _row("tanhshrink", F.tanhshrink, TF.tanhshrink, _unary((), 4.0)),
    _row("rrelu_eval", F.rrelu, TF.rrelu, _unary()),
    _row("rrelu_eval_bounds", F.rrelu, TF.rrelu, _with(_unary(), lower=0.05, upper=0.6)),
    _row("rrelu_train_fixed_slope", F.rrelu, TF.rrelu, _with(_unary(), lower=0.2, upper=0.2, training=True)),
    _row("glu", F.glu, TF.glu, _glu_samples),
    _row("softmin", F.softmin, TF.softmin, _softmin_samples),
    _row("channel_shuffle", F.channel_shuffle, TF.channel_shuffle, _shuffle_samples),
    _row("rms_norm", _rms, _trms, _rms_samples),
    OpInfo("Softmax2d", lambda x: nn.Softmax2d()(x), _images((2, 3, 2, 2), (3, 4, 2)),
           torch_fn=lambda x: tnn.Softmax2d()(x)),
    _pad_row("ZeroPad1d", lambda m: m.ZeroPad1d((2, 1)), _images((2, 3, 4), (3, 4), (4,))),
    _pad_row("ZeroPad2d", lambda m: m.ZeroPad2d((1, 0, 2, 1)), _images((2, 3, 4, 3), (3, 4))),
    _pad_row("ZeroPad2d_crop", lambda m: m.ZeroPad2d((-1, 2, 1, -2)), _images((2, 3, 4, 3))),
    _pad_row("ZeroPad3d", lambda m: m.ZeroPad3d(1), _images((1, 2, 2, 3, 2))),
    _pad_row("ConstantPad1d", lambda m: m.ConstantPad1d(2, 3.5), _images((2, 3, 4), (5,))),
    _pad_row("ConstantPad2d", lambda m: m.ConstantPad2d((1, 2, 0, 3), -1.0), _images((2, 3, 4, 3), (1, 2, 2, 2, 2))),
    _pad_row("ConstantPad3d", lambda m: m.ConstantPad3d((1, 0, 0, 1, 2, 0), 0.5), _images((2, 2, 3, 2))),
    _pad_row("ReflectionPad1d", lambda m: m.ReflectionPad1d((3, 1)), _images((2, 3, 5), (3, 4))),
    _pad_row("ReflectionPad2d", lambda m: m.ReflectionPad2d((1, 2, 2, 0)), _images((2, 3, 4, 3), (3, 3, 4))),
    _pad_row("ReflectionPad2d_crop", lambda m: m.ReflectionPad2d((-1, 3, 2, -1)), _images((2, 2, 4, 4))),
    _pad_row("ReflectionPad3d", lambda m: m.ReflectionPad3d(1), _images((1, 2, 2, 3, 3), (2, 3, 2, 2))),
    _pad_row("ReplicationPad1d", lambda m: m.ReplicationPad1d((4, 1)), _images((2, 3, 2), (3, 4))),
    _pad_row("ReplicationPad2d", lambda m: m.ReplicationPad2d((1, 2, 3, 0)), _images((2, 3, 4, 3), (3, 1, 2))),
    _pad_row("ReplicationPad2d_crop", lambda m: m.ReplicationPad2d((-1, 2, 1, -2)), _images((2, 2, 4, 4))),
    _pad_row("ReplicationPad3d", lambda m: m.ReplicationPad3d((1, 0, 2, 1, 0, 1)), _images((1, 2, 2, 3, 2))),
    _pad_row("CircularPad1d", lambda m: m.CircularPad1d((2, 3)), _images((2, 3, 4), (3, 3))),
    _pad_row("CircularPad2d", lambda m: m.CircularPad2d((1, 2, 3, 0)), _images((2, 3, 4, 3), (3, 3, 4))),
    _pad_row("CircularPad2d_crop", lambda m: m.CircularPad2d((-1, 2, 2, -1)), _images((2, 2, 4, 4))),
    _pad_row("CircularPad3d", lambda m: m.CircularPad3d(1), _images((1, 2, 2, 3, 2))),
]

# ---- embedding and bilinear (ember/ops/embedding.py, ember/ops/linalg.py) ---------------------------
# The indices are integer inputs (constant tensors); the weight gets the gradient. A picked padding_idx row and
# scale_grad_by_freq change the gradient on purpose (finite differences disagree, in PyTorch too), so they are
# checked against torch in tests/test_embedding.py. max_norm rescales the weight in place (not a pure
# function, so no gradcheck): forward only, on rows with norms above and below it.
def _emb_samples(rng):
    w = rng.standard_normal((7, 3))
    idx = rng.integers(0, 7, (3, 4))
    idx[0, :3] = 2  # a row picked several times
    return [
        Sample((rng.integers(0, 7, 5), w), name="1d"),
        Sample((idx, w), name="repeats"),
        Sample((rng.integers(0, 7, (2, 3, 2)), w), name="3d"),
        Sample((idx[idx != 5], w), {"padding_idx": -2}, name="padding_unpicked"),
        Sample((np.asarray(4), w), name="0d"),
        Sample((np.zeros((0, 2), dtype=np.int64), w), name="empty"),
        Sample((idx.astype(np.int32), w), name="int32"),
        Sample((idx, non_contiguous(w)), name="noncontig"),
    ]


def _emb_max_norm_samples(rng):
    w = rng.standard_normal((6, 4)) * np.array([[0.2], [3.0], [0.3], [2.0], [4.0], [0.1]])
    idx = np.array([[0, 1, 1], [3, 5, 1]])
    return [
        Sample((idx, w), {"max_norm": 1.0}),
        Sample((idx, w), {"max_norm": 1.5, "norm_type": 1.0}, name="l1"),
        Sample((idx, w), {"max_norm": 0.8, "norm_type": float("inf")}, name="linf"),
        Sample((idx, w), {"max_norm": 1.0, "norm_type": 3.0}, name="l3"),
    ]


def _bilinear_samples(rng):
    r = rng.standard_normal
    w = r((5, 3, 4))
    return [
        Sample((r((2, 3)), r((2, 4)), w, r(5))),
        Sample((r((2, 3)), r((2, 4)), w), name="no_bias"),
        Sample((r((2, 3, 3)), r((2, 3, 4)), w, r(5)), name="3d"),
        Sample((r(3), r(4), w, r(5)), name="1d"),
        Sample((r((1, 1)), r((1, 2)), r((1, 1, 2)), r(1)), name="tiny"),
        Sample((np.zeros((0, 3)), np.zeros((0, 4)), w, r(5)), name="empty"),
        Sample((non_contiguous(r((4, 3))), non_contiguous(r((4, 4))), w, r(5)), name="noncontig"),
    ]


OPS += [
    _row("embedding", F.embedding, TF.embedding, _emb_samples),
    _row("embedding_max_norm", F.embedding, TF.embedding, _emb_max_norm_samples, grad=False),
    _row("bilinear", F.bilinear, TF.bilinear, _bilinear_samples),
]

assert torch is not None  # the oracle; imported here so a missing torch fails loudly

"""Rows of the op table (see tests/opdb.py): activations and losses (ember/ops/activation.py, ember/ops/loss.py).

Samples stay away from kinks (|x| >= 0.1 around 0, and away from clip bounds and
thresholds) so central differences see a smooth function.
"""
import numpy as np
import torch
import torch.nn.functional as TF

import ember.nn.functional as F
from tests.opdb import OpInfo, Sample, non_contiguous


def _away(rng, shape, lo=0.1, hi=2.0):
    """Values with lo <= |x| <= hi and random signs."""
    return rng.uniform(lo, hi, shape) * rng.choice([-1.0, 1.0], shape)


def _unary(rng, scale=2.0, lo=0.1):
    return [
        Sample((_away(rng, (3, 4), lo, scale),)),
        Sample((_away(rng, (2, 3, 2, 2), lo, scale),), name="4d"),
        Sample((np.asarray(_away(rng, (), lo, scale)),), name="0d"),
        Sample((np.zeros((0, 3)),), name="empty"),
        Sample((non_contiguous(_away(rng, (3, 4), lo, scale)),), name="noncontig"),
    ]


def _with(samples, **kwargs):
    return [Sample(s.inputs, {**s.kwargs, **kwargs}, s.no_grad, s.name) for s in samples]


def _row(name, fn, tfn, samples, **kw):
    return OpInfo(name, fn, samples, torch_fn=tfn, **kw)


def _prelu_samples(rng):
    return [
        Sample((_away(rng, (2, 3, 4)), np.array([0.25])), name="shared"),
        Sample((_away(rng, (2, 3, 2, 2)), rng.uniform(0.05, 0.5, 3)), name="per_channel"),
        Sample((_away(rng, (5, 3)), rng.uniform(0.05, 0.5, 3)), name="2d"),
    ]


def _pair(rng, shape=(4, 3), gap=0.1):
    """(input, target) whose differences avoid 0 (l1's kink)."""
    t = rng.standard_normal(shape)
    return t + _away(rng, shape, gap, 2.0), t


def _regression(rng, reductions=("mean", "sum", "none")):
    out = []
    for r in reductions:
        out.append(Sample(_pair(rng), {"reduction": r}, name=r))
    out.append(Sample(_pair(rng, (2, 3, 2)), name="3d"))
    out.append(Sample(_pair(rng, ()), name="0d"))
    return out


def _smooth_samples(key, value):
    def samples(rng):
        x, t = _pair(rng, (4, 5))
        d = x - t
        x = np.where(np.abs(np.abs(d) - value) < 0.05, x + 0.2, x)  # keep off the |d| = beta joint
        return [
            Sample((x, t), {key: value}),
            Sample((x, t), {key: value, "reduction": "none"}, name="none"),
            Sample((x, t), {key: value, "reduction": "sum"}, name="sum"),
        ]

    return samples


def _ce_samples(rng):
    out = []
    for r in ("mean", "sum", "none"):
        out.append(Sample((rng.standard_normal((5, 4)), rng.integers(0, 4, 5)), {"reduction": r}, name=r))
    t = rng.integers(0, 4, 6)
    t[[1, 4]] = -100
    out.append(Sample((rng.standard_normal((6, 4)), t), name="ignore_index"))
    out.append(Sample((rng.standard_normal((5, 4)), rng.integers(0, 4, 5)), {"label_smoothing": 0.1}, name="smooth"))
    out.append(Sample((rng.standard_normal((2, 3, 2, 3)), rng.integers(0, 3, (2, 2, 3))), name="segmentation"))
    out.append(Sample((rng.standard_normal(5), np.asarray(2)), name="unbatched"))
    p = rng.random((4, 3))
    out.append(Sample((rng.standard_normal((4, 3)), p / p.sum(1, keepdims=True)), name="probabilities"))
    out.append(Sample((rng.standard_normal((3, 4)), rng.integers(0, 4, 3)), {"ignore_index": 1, "label_smoothing": 0.3,
                                                                              "reduction": "sum"}, name="mixed"))
    return out


def _nll_samples(rng):
    logp = np.log(rng.dirichlet(np.ones(4), 5))
    t = rng.integers(0, 4, 5)
    t[2] = -100
    return [Sample((logp, t), name="mean"), Sample((logp, t), {"reduction": "none"}, name="none"),
            Sample((rng.standard_normal((2, 3, 4)), rng.integers(0, 3, (2, 4))), {"reduction": "sum"}, name="3d")]


def _bce_samples(rng):
    x = rng.uniform(0.05, 0.95, (4, 3))
    return [Sample((x, rng.random((4, 3)))), Sample((x, (rng.random((4, 3)) > 0.5) * 1.0), {"reduction": "sum"},
                                                    name="hard"),
            Sample((x, rng.random((4, 3))), {"reduction": "none"}, name="none")]


def _bce_logits_samples(rng):
    return [Sample((rng.standard_normal((4, 3)) * 3, rng.random((4, 3)))),
            Sample((rng.standard_normal((2, 5)), (rng.random((2, 5)) > 0.5) * 1.0), {"reduction": "none"},
                   name="hard")]


def _kl_samples(rng):
    q = np.log(rng.dirichlet(np.ones(4), 3))
    p = rng.dirichlet(np.ones(4), 3)
    return [Sample((q, p), {"reduction": "batchmean"}, name="batchmean"), Sample((q, p), {"reduction": "sum"}),
            Sample((q, np.log(p)), {"reduction": "none", "log_target": True}, name="log_target")]


OPS: list = [
    _row("leaky_relu", F.leaky_relu, TF.leaky_relu, lambda r: _with(_unary(r), negative_slope=0.2)),
    _row("prelu", F.prelu, TF.prelu, _prelu_samples),
    _row("elu", F.elu, TF.elu, lambda r: _with(_unary(r), alpha=0.7)),
    _row("selu", F.selu, TF.selu, _unary),
    _row("celu", F.celu, TF.celu, lambda r: _with(_unary(r), alpha=1.5)),
    _row("gelu", F.gelu, TF.gelu, _unary, fwd_atol=2e-6),
    _row("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), lambda x: TF.gelu(x, approximate="tanh"), _unary),
    _row("silu", F.silu, TF.silu, lambda r: _unary(r, 6.0)),
    _row("softplus", F.softplus, TF.softplus, lambda r: _unary(r, 6.0)),
    _row("softplus_beta", F.softplus, TF.softplus, lambda r: _with(_unary(r, 4.0), beta=2.0, threshold=5.0)),
    _row("hardtanh", F.hardtanh, TF.hardtanh, lambda r: _with(_unary(r, 2.0), min_val=-0.5, max_val=1.5)),
    _row("relu6", F.relu6, TF.relu6, lambda r: _unary(r, 5.9)),
    _row("mish", F.mish, TF.mish, lambda r: _unary(r, 5.0)),
    _row("logsigmoid", F.logsigmoid, TF.logsigmoid, lambda r: _unary(r, 8.0)),
    _row("hardsigmoid", F.hardsigmoid, TF.hardsigmoid, lambda r: _unary(r, 2.9)),
    _row("hardswish", F.hardswish, TF.hardswish, lambda r: _unary(r, 2.9)),
    _row("softsign", F.softsign, TF.softsign, _unary),
    _row("mse_loss", F.mse_loss, TF.mse_loss, _regression),
    _row("l1_loss", F.l1_loss, TF.l1_loss, _regression),
    _row("smooth_l1_loss", F.smooth_l1_loss, TF.smooth_l1_loss, _smooth_samples("beta", 0.5)),
    _row("huber_loss", F.huber_loss, TF.huber_loss, _smooth_samples("delta", 0.7)),
    _row("cross_entropy", F.cross_entropy, TF.cross_entropy, _ce_samples),
    _row("nll_loss", F.nll_loss, TF.nll_loss, _nll_samples),
    _row("binary_cross_entropy", F.binary_cross_entropy, TF.binary_cross_entropy, _bce_samples),
    _row("binary_cross_entropy_with_logits", F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits,
         _bce_logits_samples),
    _row("kl_div", F.kl_div, TF.kl_div, _kl_samples),
]

assert torch is not None  # the oracle; imported here so a missing torch fails loudly

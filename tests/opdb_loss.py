"""Rows of the op table (see tests/opdb.py): margin, embedding and likelihood losses and the distance
functions (ember/ops/margin.py, ember/ops/distance.py), with PyTorch as the oracle.

Samples stay off the hinges (margins at least 0.1 away from the kink), off ties of the inf norm
and of the swap minimum, and off poisson's t = 1 switch, so central differences see a smooth
function. Labels and ±1 targets are integer or listed in ``no_grad`` (PyTorch does not
differentiate them).
"""
import numpy as np
import torch
import torch.nn.functional as TF

import ember
import ember.nn.functional as F
from tests.opdb import OpInfo, Sample, non_contiguous
from tests.opdb_nn import _away


def _row(name, fn, tfn, samples, **kw):
    return OpInfo(name, fn, samples, torch_fn=tfn, **kw)


def _off_kinks(z, lo=0.1):
    """Shift entries of z with |z| < lo to ±lo (z is a margin argument; 0 is the hinge)."""
    return np.where(np.abs(z) < lo, np.where(z < 0, -lo, lo), z)


def _rows_off_hinge(x, t, margin):
    """Move each row's target score so that no margin - x[y] + x[i] is within 0.1 of 0."""
    x = x.copy()
    r = np.arange(len(t))
    for _ in range(20):  # the few retries only touch the label column; vectorized per pass
        z = margin - x[r, t][:, None] + x
        z[r, t] = 1.0
        bad = (np.abs(z) < 0.1).any(1)
        if not bad.any():
            return x
        x[r[bad], t[bad]] += 0.37
    raise AssertionError("could not move samples off the hinge")


def _signs(rng, shape):
    return rng.choice([-1.0, 1.0], shape)


def _multi_margin_samples(rng):
    out = []
    for kw, name in [({}, "mean"), ({"reduction": "sum", "p": 2}, "p2"), ({"reduction": "none", "margin": 0.5}, "none"),
                     ({"p": 2, "margin": 2.0}, "p2_margin")]:
        t = rng.integers(0, 4, 6)
        x = _rows_off_hinge(rng.standard_normal((6, 4)), t, kw.get("margin", 1.0))
        out.append(Sample((x, t), kw, name=name))
    t = rng.integers(0, 3, 5)
    x = _rows_off_hinge(rng.standard_normal((5, 3)), t, 1.0)
    out.append(Sample((x, t, rng.uniform(0.5, 2.0, 3)), {"reduction": "none"}, no_grad=(2,), name="weight"))
    out.append(Sample((x[0], np.asarray(t[0])), {"reduction": "none"}, name="unbatched"))
    out.append(Sample((non_contiguous(x), t), {"p": 2}, name="noncontig"))
    return out


def _multi_margin(x, t, w=None, **kw):
    return F.multi_margin_loss(x, t, weight=w, **kw)


def _t_multi_margin(x, t, w=None, **kw):
    return TF.multi_margin_loss(x, t, weight=w, **kw)


def _multilabel_samples(rng):
    N, C = 5, 6
    y = np.full((N, C), -1)
    for i, k in enumerate([2, 0, 3, 1, 6]):  # label lists of different lengths, one empty, one full
        y[i, :k] = rng.permutation(C)[:k]
    y[3, 2] = 4  # junk after the terminating -1 is ignored
    dup = y.copy()
    dup[0, :3] = [1, 1, -1]  # a label listed twice counts twice
    x = rng.standard_normal((N, C))
    for labels in (y, dup):  # nudge label scores whose pairs (j, i) come within 0.1 of the hinge
        listed = np.cumprod(labels >= 0, axis=1).astype(bool)
        for i, j in zip(*np.nonzero(listed)):
            x[i, labels[i, j]] += 0.3 * (np.abs(1 - x[i, labels[i, j]] + x[i]) < 0.1).any()
    return [Sample((x, y), name="mean"), Sample((x, y), {"reduction": "none"}, name="none"),
            Sample((x, dup), {"reduction": "sum"}, name="duplicate"),
            Sample((x[0], y[0]), {"reduction": "none"}, name="unbatched")]


def _multilabel_soft_samples(rng):
    x = rng.standard_normal((4, 5)) * 3
    t = (rng.random((4, 5)) > 0.5) * 1.0
    return [Sample((x, t)), Sample((x, rng.random((4, 5))), {"reduction": "none"}, name="soft"),
            Sample((x, t, rng.uniform(0.5, 2.0, 5)), {"reduction": "sum"}, no_grad=(2,), name="weight"),
            Sample((x[0], t[0]), name="unbatched"),
            Sample((rng.standard_normal((2, 3, 4)), (rng.random((2, 3, 4)) > 0.5) * 1.0), {"reduction": "none"}, name="3d")]


def _mlsm(x, t, w=None, **kw):
    return F.multilabel_soft_margin_loss(x, t, weight=w, **kw)


def _t_mlsm(x, t, w=None, **kw):
    return TF.multilabel_soft_margin_loss(x, t, weight=w, **kw)


def _soft_margin_samples(rng):
    x = _away(rng, (4, 3), 0.1, 4.0)
    return [Sample((x, _signs(rng, (4, 3))), no_grad=(1,)),
            Sample((x, _signs(rng, (4, 3))), {"reduction": "none"}, no_grad=(1,), name="none"),
            Sample((x, _signs(rng, (4, 3)).astype(np.int64)), {"reduction": "sum"}, name="int_labels"),
            Sample((np.asarray(1.5), np.asarray(-1.0)), no_grad=(1,), name="0d")]


def _ranking_samples(rng):
    def trio(shape, margin):
        x1, y = rng.standard_normal(shape), _signs(rng, shape)
        x2 = x1 - y * (margin + _off_kinks(rng.standard_normal(shape)))  # -y (x1 - x2) + margin off 0
        return x1, x2, y
    return [Sample(trio((6,), 0.0)), Sample(trio((6,), 0.5), {"margin": 0.5, "reduction": "none"}, name="margin"),
            Sample(trio((6,), 0.3), {"margin": 0.3, "reduction": "sum"}, name="sum"),
            Sample(trio((), 0.2), {"margin": 0.2}, name="0d")]


def _hinge_samples(rng):
    x = _off_kinks(rng.uniform(-1, 3, (4, 5)) - 1.0) + 1.0  # margin - x away from 0
    y = _signs(rng, (4, 5))
    y[0, 0] = 0.0  # neither label: both terms
    return [Sample((x, y), no_grad=(1,)), Sample((x, y), {"reduction": "none"}, no_grad=(1,), name="none"),
            Sample((x * 2, y.astype(np.int64)), {"margin": 2.0, "reduction": "sum"}, name="margin")]


def _cos_emb_samples(rng):
    a, b = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    y = np.array([1, -1, 1, -1, 0])
    cos = (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))
    b[np.abs(cos - 0.2) < 0.05] *= -1  # off the margin=0.2 hinge (flips the cosine's sign)
    b[np.abs(cos) < 0.05] += 0.5  # and off the margin=0 hinge
    return [Sample((a, b, y)), Sample((a, b, y * 1.0), {"margin": 0.2, "reduction": "none"}, no_grad=(2,), name="m"),
            Sample((a[0], b[0], np.asarray(-1)), {"margin": -0.9}, name="unbatched"),
            Sample((a, b[:1], y), {"reduction": "sum", "margin": -0.5}, name="broadcast")]


def _triplet_samples(rng):
    a, p = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    n = rng.standard_normal((5, 4))
    return [Sample((a, p, n)), Sample((a, p, n), {"swap": True, "reduction": "none"}, name="swap"),
            Sample((a, p, n), {"p": 1.0, "margin": 0.5, "reduction": "sum"}, name="p1"),
            Sample((a, p, n), {"p": 3.0, "eps": 1e-3, "margin": 2.0}, name="p3"),
            Sample((a[0], p[0], n[0]), {"margin": 5.0}, name="unbatched"),
            Sample((a, p[:1], n), {"reduction": "none", "margin": 3.0}, name="broadcast")]


def _gaussian_samples(rng):
    x, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    return [Sample((x, t, rng.uniform(0.2, 2.0, (4, 3)))),
            Sample((x, t, rng.uniform(0.2, 2.0, 4)), {"reduction": "none", "full": True}, name="per_row"),
            Sample((x, t, rng.uniform(0.2, 2.0, (4, 1))), {"reduction": "sum"}, name="keepdim_var"),
            Sample((x, t, rng.uniform(0.2, 2.0, (1, 3))), {"reduction": "none"}, name="per_column"),
            Sample((x, t[:, :1], rng.uniform(0.2, 2.0, (4, 3))), {"reduction": "none"}, name="target_broadcast"),
            Sample((x, t, rng.uniform(0.2, 2.0, (4, 3))), {"eps": 0.5, "reduction": "none"},
                   no_grad=(2,), name="clamped_var")]  # var's gradient ignores the clamp: test_loss_margin.py


def _poisson_samples(rng):
    t = rng.choice([0.0, 2.0, 3.0, 7.0], (4, 3)) + rng.uniform(0.2, 0.8, (4, 3))  # off t = 1 and t = 0
    return [Sample((rng.standard_normal((4, 3)), t)),
            Sample((rng.standard_normal((4, 3)), t), {"full": True, "reduction": "none"}, name="full"),
            Sample((rng.uniform(0.5, 3.0, (4, 3)), t), {"log_input": False, "reduction": "sum"}, name="rate"),
            Sample((rng.uniform(0.5, 3.0, (4, 3)), t), {"log_input": False, "full": True, "eps": 0.1}, name="rate_full")]


def _normalize_samples(rng):
    x = _away(rng, (3, 4), 0.1, 2.0)
    x[0, :2] = [1.7, -1.2]  # one clear max per row for p = inf
    return [Sample((x,)), Sample((x,), {"p": 1.0, "dim": 0}, name="p1"),
            Sample((x,), {"p": float("inf"), "dim": -1}, name="inf"),
            Sample((x,), {"p": 3.0, "dim": 1}, name="p3"),
            Sample((x,), {"eps": 5.0}, name="eps_clamps"),
            Sample((rng.standard_normal((2, 3, 4)),), {"dim": (1, 2)}, name="tuple"),
            Sample((non_contiguous(x),), name="noncontig"), Sample((np.zeros((0, 3)),), name="empty")]


def _norm_samples(rng):
    x = _away(rng, (3, 4), 0.1, 2.0)
    x[0, :2] = [1.7, -1.2]  # one clear max per row for p = inf
    return [Sample((x,)), Sample((x,), {"p": 1.0, "dim": 0}, name="p1"),
            Sample((x,), {"p": float("inf"), "dim": 1}, name="inf"),
            Sample((x,), {"p": 3.0, "dim": (0, 1), "keepdim": True}, name="p3_keepdim"),
            Sample((x,), {"p": "fro"}, name="fro"), Sample((np.float64(1.5),), name="0d"),
            Sample((non_contiguous(x),), {"dim": -1}, name="noncontig"),
            Sample((np.zeros((0, 3)),), {"dim": 1}, name="empty")]


def _cosine_samples(rng):
    a, b = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    return [Sample((a, b)), Sample((a, b[0]), {"dim": -1}, name="broadcast"),
            Sample((rng.standard_normal((2, 1, 3)), rng.standard_normal((4, 3))), {"dim": 2}, name="3d"),
            Sample((a * 1e-9, b), {"eps": 1e-6}, no_grad=(0,), name="clamped"),  # x1's: test_loss_margin.py
            Sample((non_contiguous(a), b), {"dim": 0}, name="noncontig")]


def _pairwise_samples(rng):
    a, b = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    return [Sample((a, b)), Sample((a, b), {"p": 1.0, "keepdim": True}, name="p1"),
            Sample((a, b), {"p": float("inf")}, name="inf"), Sample((a, b), {"p": 0.5, "eps": 0.0}, name="p05"),
            Sample((a, b[0]), {"p": 3.0}, name="broadcast"), Sample((a[0], b[0]), name="1d"),
            Sample((rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))), name="3d")]


def _pdist_samples(rng):
    x = rng.standard_normal((5, 3))
    return [Sample((x,)), Sample((x,), {"p": 1.0}, name="p1"), Sample((x,), {"p": float("inf")}, name="inf"),
            Sample((x,), {"p": 1.5}, name="p15"), Sample((x[:1],), name="one_row")]


OPS: list = [
    _row("multi_margin_loss", _multi_margin, _t_multi_margin, _multi_margin_samples),
    _row("multilabel_margin_loss", F.multilabel_margin_loss, TF.multilabel_margin_loss, _multilabel_samples),
    _row("multilabel_soft_margin_loss", _mlsm, _t_mlsm, _multilabel_soft_samples),
    _row("soft_margin_loss", F.soft_margin_loss, TF.soft_margin_loss, _soft_margin_samples),
    _row("margin_ranking_loss", F.margin_ranking_loss, TF.margin_ranking_loss, _ranking_samples),
    _row("hinge_embedding_loss", F.hinge_embedding_loss, TF.hinge_embedding_loss, _hinge_samples),
    _row("cosine_embedding_loss", F.cosine_embedding_loss, TF.cosine_embedding_loss, _cos_emb_samples),
    _row("triplet_margin_loss", F.triplet_margin_loss, TF.triplet_margin_loss, _triplet_samples),
    _row("gaussian_nll_loss", F.gaussian_nll_loss, TF.gaussian_nll_loss, _gaussian_samples),
    _row("poisson_nll_loss", F.poisson_nll_loss, TF.poisson_nll_loss, _poisson_samples),
    _row("normalize", F.normalize, TF.normalize, _normalize_samples),
    _row("norm", ember.norm, torch.norm, _norm_samples),
    _row("cosine_similarity", F.cosine_similarity, TF.cosine_similarity, _cosine_samples),
    _row("pairwise_distance", F.pairwise_distance, TF.pairwise_distance, _pairwise_samples),
    _row("pdist", F.pdist, TF.pdist, _pdist_samples),
]

assert torch is not None  # the oracle; imported here so a missing torch fails loudly

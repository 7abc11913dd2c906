"""Margin, embedding and likelihood losses with PyTorch's semantics.

Nearly everything here is a plain composition of differentiable ops (DESIGN.md), using the
norms of ember/ops/distance.py (``VectorNorm``: PyTorch's subgradients, no nan at a zero
vector; ``ClampMinDetached``: a clamp the gradient passes through, as PyTorch's in-place clamp
of a variance under no_grad). Labels are checked before any indexing.
"""
from __future__ import annotations

import math

import numpy as np

from ember.backend import check_same_device, xp_of
from ember.errors import DTypeError, ShapeError
from ember.ops.activation import logsigmoid, relu
from ember.ops.distance import ClampMinDetached, _broadcast, _float, _floats, _tensor, pairwise_distance
from ember.ops.elementwise import clamp, exp, log, minimum, sqrt, where
from ember.ops.loss import BCEWithLogits, _class_weight, _elementwise_weight, _reduce
from ember.ops.reduce import sum as _sum
from ember.ops.select import Gather, _check_range
from ember.tensor import Tensor

__all__ = [
    "multi_margin_loss", "multilabel_margin_loss", "multilabel_soft_margin_loss", "soft_margin_loss",
    "margin_ranking_loss", "hinge_embedding_loss", "cosine_embedding_loss", "triplet_margin_loss",
    "gaussian_nll_loss", "poisson_nll_loss",
]


# ---- checks ------------------------------------------------------------------------------------------
def _reduction(op: str, reduction: str) -> None:
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def _target(op: str, input: Tensor, target, grad: bool = True) -> Tensor:
    """``target`` of input's shape as a float tensor. Integer/bool targets (and any target when
    ``grad`` is False: labels, which PyTorch does not differentiate) become constants of input's dtype."""
    _float(op, "input", input)
    _tensor(op, "target", target)
    if target.shape != input.shape:
        raise ShapeError(f"{op}: input has shape {input.shape} but target has shape {target.shape}; they must match")
    check_same_device(op, input.data, target.data)
    if target.dtype.kind not in "biuf":
        raise DTypeError(f"{op}: target must be numeric, got {target.dtype}")
    if target.dtype.kind != "f" or not grad:
        return Tensor(target.data.astype(input.dtype, copy=False))
    return target


def _class_targets(op: str, target, want: tuple, C: int, lo: int):
    """Integer labels of shape ``want`` with values in [lo, C), as a raw int64 array."""
    _tensor(op, "target", target)
    if target.dtype.kind not in "iu":
        raise DTypeError(f"{op}: target must hold integer class indices, got dtype {target.dtype}")
    if target.shape not in want:
        raise ShapeError(f"{op}: target has shape {target.shape} but input needs {' or '.join(map(str, want))}")
    t = target.data.astype(np.int64, copy=False)
    _check_range(op, "target class", t, lo, C)  # before any indexing: CuPy would wrap silently
    return t


# ---- multiclass / multilabel margins -------------------------------------------------------------------
def multi_margin_loss(input: Tensor, target: Tensor, p: int = 1, margin: float = 1.0, weight: Tensor | None = None,
                      reduction: str = "mean") -> Tensor:
    """Multiclass hinge loss: sum_{i != y} w[y] max(0, margin - x[y] + x[i])^p / C per sample.

    The all-pairs multiclass SVM loss of Weston & Watkins (1999) (Crammer & Singer (2001) take the
    max over i instead of the sum). Shapes: input (N, C), (C,) or (); target (N,), () or (1,)
    integer labels in [0, C); weight (C,). "mean" averages over samples (not a weighted mean).
    """
    op = "multi_margin_loss"
    _float(op, "input", input)
    _reduction(op, reduction)
    if p not in (1, 2):
        raise ValueError(f"{op}: p must be 1 or 2, got {p}")
    if input.ndim > 2 or (input.ndim and input.shape[-1] == 0):
        raise ShapeError(f"{op}: input must be (N, C), (C,) or () with C >= 1, got shape {input.shape}")
    x = input if input.ndim == 2 else input.reshape(1, -1)
    N, C = x.shape
    want = ((N,),) if input.ndim == 2 else ((), (1,))
    t = _class_targets(op, target, want, C, 0).reshape(N)
    check_same_device(op, input.data, t)
    w = _class_weight(op, weight, x)
    xp = xp_of(x.data)
    z = x - Gather.apply(x, index=t[:, None], dim=1) + margin  # (N, C): margin - x[y] + x[i]
    h = relu(z)
    if p == 2:
        h = h * h
    keep = (xp.arange(C)[None, :] != t[:, None]).astype(x.dtype)  # drop i == y
    if w is not None:
        keep *= w[t][:, None]
    loss = _sum(h * Tensor(keep), 1) / C
    return _reduce(op, loss.reshape(target.shape) if input.ndim < 2 else loss, reduction)


def multilabel_margin_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """sum over target labels j and non-target classes i of max(0, 1 - (x[j] - x[i])), divided by C.

    A pairwise ranking hinge (cf. Rank-SVM, Elisseeff & Weston, 2001). Shapes: input (N, C), (C,)
    or (); target of input's shape, integer: each row lists its labels and ends at the first -1
    (what follows is ignored, but must still lie in [-1, C)). A label listed twice counts twice.
    Memory is O(N K C) for K the longest label list.
    """
    op = "multilabel_margin_loss"
    _float(op, "input", input)
    _reduction(op, reduction)
    if input.ndim > 2 or (input.ndim and input.shape[-1] == 0):
        raise ShapeError(f"{op}: input must be (N, C), (C,) or () with C >= 1, got shape {input.shape}")
    x = input if input.ndim == 2 else input.reshape(1, -1)
    N, C = x.shape
    y = _class_targets(op, target, (input.shape,), C, -1).reshape(N, C)
    check_same_device(op, input.data, y)
    xp = xp_of(y)
    listed = xp.cumsum((y < 0).astype(np.int32), axis=1) == 0  # True before the first -1
    K = int(listed.sum(1).max()) if N else 0  # the longest label list: only those columns matter
    y, listed = y[:, :K], listed[:, :K]
    is_label = xp.zeros((N, C + 1), dtype=bool)
    is_label[xp.arange(N)[:, None], xp.where(listed, y, C)] = True  # unlisted slots hit column C
    pairs = listed[:, :, None] & ~is_label[:, None, :C]  # (N, K, C): (label j, non-label i)
    xj = Gather.apply(x, index=xp.where(listed, y, 0), dim=1)  # (N, K)
    h = relu(1 - xj.reshape(N, K, 1) + x.reshape(N, 1, C))
    loss = _sum(h * Tensor(pairs.astype(x.dtype)), (1, 2)) / C
    return _reduce(op, loss if input.ndim == 2 else loss.reshape(()), reduction)


def multilabel_soft_margin_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                reduction: str = "mean") -> Tensor:
    """Per-class logistic loss averaged over the classes (the last dim):
    -mean_c w_c (t_c log sigmoid(x_c) + (1 - t_c) log sigmoid(-x_c)). Shapes: input (N, C) or (C,),
    target of input's shape with values in [0, 1]; weight broadcasts to input. Finite for any logit."""
    op = "multilabel_soft_margin_loss"
    _reduction(op, reduction)
    t = _target(op, input, target)
    if input.ndim == 0:
        raise ShapeError(f"{op}: input must have a class dim, got a 0-d tensor")
    w = _elementwise_weight(op, "weight", weight, input)
    loss = BCEWithLogits.apply(input, t, w=w, pw=None)  # the same stable elementwise loss
    return _reduce(op, _sum(loss, -1) / input.shape[-1], reduction)


# ---- binary / pairwise margins ------------------------------------------------------------------------
def soft_margin_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """log(1 + exp(-y x)) for labels y = +-1, computed as -logsigmoid(y x): finite for any x (PyTorch
    overflows to inf beyond |x| ~ 88 in float32). input and target of one shape; target gets no gradient."""
    op = "soft_margin_loss"
    _reduction(op, reduction)
    y = _target(op, input, target, grad=False)
    return _reduce(op, -logsigmoid(input * y), reduction)


def margin_ranking_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0,
                        reduction: str = "mean") -> Tensor:
    """max(0, -y (x1 - x2) + margin): y = 1 asks x1 to rank above x2 by ``margin``, y = -1 below.
    All three must have the same number of dims and broadcast together (shapes (N,) or ())."""
    op = "margin_ranking_loss"
    _reduction(op, reduction)
    _floats(op, input1=input1, input2=input2)
    _tensor(op, "target", target)
    if not input1.ndim == input2.ndim == target.ndim:
        raise ShapeError(f"{op}: input1, input2 and target must have the same number of dims, got input1 "
                         f"{input1.shape}, input2 {input2.shape}, target {target.shape}")
    check_same_device(op, input1.data, input2.data, target.data)
    _broadcast(op, input1=input1, input2=input2, target=target)
    if target.dtype.kind != "f":
        target = Tensor(target.data.astype(input1.dtype))
    return _reduce(op, clamp(-target * (input1 - input2) + margin, min=0), reduction)


def hinge_embedding_loss(input: Tensor, target: Tensor, margin: float = 1.0, reduction: str = "mean") -> Tensor:
    """x where y = 1, max(0, margin - x) where y = -1 (input usually a distance). As in PyTorch, a
    label that is neither gets both terms. input and target of one shape; target gets no gradient."""
    op = "hinge_embedding_loss"
    _reduction(op, reduction)
    y = _target(op, input, target, grad=False).data
    return _reduce(op, where(y != 1, clamp(margin - input, min=0), 0.0) + where(y != -1, input, 0.0), reduction)


def cosine_embedding_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0,
                          reduction: str = "mean") -> Tensor:
    """1 - cos(x1, x2) where y = 1, max(0, cos(x1, x2) - margin) where y = -1, 0 otherwise.

    cos = x1.x2 / sqrt((|x1|^2 + 1e-12)(|x2|^2 + 1e-12)) (PyTorch's epsilon). Shapes: inputs (N, D)
    (broadcasting together) with target (N,), or inputs (D,) with target (); target gets no gradient.
    """
    op = "cosine_embedding_loss"
    _reduction(op, reduction)
    _floats(op, input1=input1, input2=input2)
    _tensor(op, "target", target)
    check_same_device(op, input1.data, target.data)
    shape = _broadcast(op, input1=input1, input2=input2)
    if len(shape) not in (1, 2) or target.shape != shape[:-1]:
        raise ShapeError(f"{op}: needs inputs (N, D) with target (N,) or inputs (D,) with target (), got input1 "
                         f"{input1.shape}, input2 {input2.shape}, target {target.shape}")
    d = len(shape) - 1
    eps = 1e-12
    cos = _sum(input1 * input2, d) / sqrt((_sum(input1 * input1, d) + eps) * (_sum(input2 * input2, d) + eps))
    y = target.data
    return _reduce(op, where(y == 1, 1 - cos, 0.0) + where(y == -1, clamp(cos - margin, min=0), 0.0), reduction)


def triplet_margin_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0, p: float = 2.0,
                        eps: float = 1e-6, swap: bool = False, reduction: str = "mean") -> Tensor:
    """max(0, d(a, p) - d(a, n) + margin) with d = pairwise_distance(., ., p, eps) over the last dim.

    The triplet loss of Schroff et al. (2015, FaceNet); ``swap`` uses min(d(a, n), d(p, n)) as the
    negative distance (Balntas et al., 2016). Shapes: three tensors (N, D) or (D,), broadcasting.
    """
    op = "triplet_margin_loss"
    _reduction(op, reduction)
    if margin <= 0:
        raise ValueError(f"{op}: margin must be greater than 0, got {margin}")
    _floats(op, anchor=anchor, positive=positive, negative=negative)
    if not anchor.ndim == positive.ndim == negative.ndim:
        raise ShapeError(f"{op}: anchor, positive and negative must have the same number of dims, got anchor "
                         f"{anchor.shape}, positive {positive.shape}, negative {negative.shape}")
    _broadcast(op, anchor=anchor, positive=positive, negative=negative)
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_neg = minimum(d_neg, pairwise_distance(positive, negative, p, eps))
    return _reduce(op, clamp(margin + d_pos - d_neg, min=0), reduction)


# ---- likelihoods -----------------------------------------------------------------------------------------
def gaussian_nll_loss(input: Tensor, target: Tensor, var, full: bool = False, eps: float = 1e-6,
                      reduction: str = "mean") -> Tensor:
    """0.5 (log max(var, eps) + (input - target)^2 / max(var, eps)) [+ 0.5 log(2 pi) if ``full``].

    The Gaussian negative log likelihood with a predicted variance (Nix & Weigend, 1994). ``var``
    is a tensor of input's shape, of input's shape without the last dim, or of input's shape with
    one dim of size 1 (the rules of PyTorch), or a non-negative number. As in PyTorch the clamp to
    eps does not mask var's gradient. target broadcasts against input.
    """
    op = "gaussian_nll_loss"
    _reduction(op, reduction)
    _floats(op, input=input, target=target)
    _broadcast(op, input=input, target=target)
    if isinstance(var, (int, float)) and not isinstance(var, bool):
        if var < 0:
            raise ValueError(f"{op}: var must be non-negative, got {var}")
        var = Tensor(xp_of(input.data).full(input.shape, var, dtype=input.dtype))
    _floats(op, input=input, var=var)
    if var.shape != input.shape:
        if var.shape == input.shape[:-1]:
            var = var.reshape(var.shape + (1,))
        elif not (var.ndim == input.ndim and sum(v for i, v in zip(input.shape, var.shape) if i != v) == 1):
            raise ShapeError(f"{op}: var has shape {var.shape} but input has shape {input.shape}; var needs input's "
                             "shape, input's shape without the last dim, or input's shape with one dim of size 1")
    if var.data.size and bool((var.data < 0).any()):
        raise ValueError(f"{op}: var has negative entries (min {float(var.data.min())})")
    v = ClampMinDetached.apply(var, lo=eps)
    d = input - target
    loss = 0.5 * (log(v) + d * d / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(op, loss, reduction)


def poisson_nll_loss(input: Tensor, target: Tensor, log_input: bool = True, full: bool = False, eps: float = 1e-8,
                     reduction: str = "mean") -> Tensor:
    """Poisson negative log likelihood: exp(x) - t x if ``log_input`` (x is the log-rate), else
    x - t log(x + eps). ``full`` adds Stirling's term t log t - t + 0.5 log(2 pi t) where t > 1
    (0 elsewhere; its gradient there is 0, where PyTorch's is nan at t = 0). Same shapes."""
    op = "poisson_nll_loss"
    _reduction(op, reduction)
    t = _target(op, input, target)
    loss = exp(input) - t * input if log_input else input - t * log(input + eps)
    if full:
        big = t.data > 1
        ts = where(big, t, 2.0)  # a safe value where the term is dropped, so no log(0) and no nan gradient
        loss = loss + where(big, ts * log(ts) - ts + 0.5 * log(2 * math.pi * ts), 0.0)
    return _reduce(op, loss, reduction)

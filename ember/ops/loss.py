"""Loss functions with PyTorch's signatures and semantics, finite at extreme inputs.

``cross_entropy`` with class indices is one fused node (log-softmax + NLL, backward
``softmax - onehot``): it runs on every training step. The classification losses
validate their labels before indexing (CuPy would silently wrap a bad index).
"""
from __future__ import annotations

import numpy as np

from ember.autograd import Function
from ember.backend import asnumpy, check_same_device, xp_of
from ember.errors import DTypeError, ShapeError
from ember.ops import cuda_loss
from ember.ops.activation import _sigmoid, _softplus0
from ember.ops.elementwise import abs as _abs
from ember.ops.elementwise import exp, log, where
from ember.ops.reduce import log_softmax
from ember.ops.reduce import mean as _mean
from ember.ops.reduce import sum as _sum
from ember.tensor import Tensor

__all__ = [
    "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "cross_entropy", "nll_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "kl_div",
]


def _reduce(op: str, loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return _mean(loss)
    if reduction == "sum":
        return _sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def _check_pair(op: str, input: Tensor, target: Tensor) -> None:
    """Regression losses: two float tensors of one shape (a silent broadcast is almost always a bug)."""
    for name, t in (("input", input), ("target", target)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be an ember Tensor, got {type(t).__name__}")
    if input.shape != target.shape:
        raise ShapeError(f"{op}: input has shape {input.shape} but target has shape {target.shape}; they must match")
    check_same_device(op, input.data, target.data)
    if input.dtype.kind != "f":
        raise DTypeError(f"{op}: input must be floating point, got {input.dtype}")
    if target.dtype.kind != "f":
        raise DTypeError(f"{op}: target must be floating point, got {target.dtype}")


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean squared error (input - target)^2; input and target of one shape."""
    _check_pair("mse_loss", input, target)
    d = input - target
    return _reduce("mse_loss", d * d, reduction)


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean absolute error |input - target|."""
    _check_pair("l1_loss", input, target)
    return _reduce("l1_loss", _abs(input - target), reduction)


class SmoothL1(Function):
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta; times ``scale`` (huber: scale = beta = delta)."""

    def forward(self, x, t, beta, scale):
        xp = xp_of(x)
        d = x - t
        ad = abs(d)
        self.g = xp.clip(d / beta, -1, 1) * scale  # d loss / d input
        return xp.where(ad < beta, (0.5 / beta) * d * d, ad - 0.5 * beta) * scale

    def backward(self, gy):
        gx = gy * self.g
        return (gx if self.needs_input_grad[0] else None), (-gx if self.needs_input_grad[1] else None)


def smooth_l1_loss(input: Tensor, target: Tensor, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """Quadratic for |input - target| < beta, linear beyond (Girshick, 2015, Fast R-CNN); beta=0 is l1."""
    _check_pair("smooth_l1_loss", input, target)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    if beta == 0:
        return l1_loss(input, target, reduction)
    return _reduce("smooth_l1_loss", SmoothL1.apply(input, target, beta=float(beta), scale=1.0), reduction)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """0.5 d^2 for |d| < delta, else delta * (|d| - 0.5 delta) (Huber, 1964)."""
    _check_pair("huber_loss", input, target)
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    return _reduce("huber_loss", SmoothL1.apply(input, target, beta=float(delta), scale=float(delta)), reduction)


# ---- classification -------------------------------------------------------------------------------
def _class_weight(op: str, weight, input: Tensor):
    """The per-class weight as a raw array of input's dtype (or None)."""
    if weight is None:
        return None
    w = weight.data if isinstance(weight, Tensor) else xp_of(input.data).asarray(weight)
    C = input.shape[1] if input.ndim > 1 else input.shape[0]
    if tuple(w.shape) != (C,):
        raise ShapeError(f"{op}: weight has shape {tuple(w.shape)} but input {input.shape} has {C} classes")
    check_same_device(op, input.data, w)
    return w.astype(input.dtype, copy=False)


def _check_labels(op: str, input: Tensor, target: Tensor, ignore_index: int, values: bool = True) -> None:
    """Class-index targets: integer dtype, input's shape without the class dim, values in [0, C)
    (unless ``values`` is False: then the caller checks them, as cross entropy's GPU kernel does)."""
    if target.dtype.kind not in "iu":
        raise DTypeError(f"{op}: target must hold integer class indices, got dtype {target.dtype}")
    want = () if input.ndim == 1 else (input.shape[0],) + input.shape[2:]
    if target.shape != want:
        raise ShapeError(
            f"{op}: target has shape {target.shape} but input {input.shape} needs class indices of shape {want}"
        )
    check_same_device(op, input.data, target.data)
    if values:
        _check_label_values(op, input.shape[0] if input.ndim == 1 else input.shape[1], target.data, ignore_index)


def _check_label_values(op: str, C: int, t, ignore_index: int) -> None:
    """Raise IndexError, naming the first bad label and its index, unless all labels are in [0, C)."""
    bad = ((t < 0) | (t >= C)) & (t != ignore_index)
    if bad.any():
        where_bad = np.argwhere(asnumpy(bad))
        first = tuple(int(i) for i in where_bad[0])
        value = int(asnumpy(t)[first])
        raise IndexError(
            f"{op}: target value {value} at index {first} is out of range for {C} classes "
            f"(valid: 0..{C - 1}, or ignore_index={ignore_index}); {len(where_bad)} bad label(s) in total"
        )


class _ClassIndexLoss(Function):
    """Shared bookkeeping for NLL and fused cross entropy over (N, C, *) inputs and (N, *) labels.

    Per element i with label y_i (not ignored) and class weights w (1 without weights):
    the loss mixes (1 - eps) * w[y_i] * (-logp[i, y_i]) with (eps / C) * sum_c w_c * (-logp[i, c]);
    "mean" divides the sum by sum_i w[y_i] over non-ignored elements (PyTorch's weighted mean).
    """

    def _setup(self, x, target, weight, ignore_index, eps):
        xp = xp_of(x)
        C = x.shape[1]
        valid = target != ignore_index
        t = xp.where(valid, target, 0)
        wt = (weight[t] if weight is not None else xp.ones(t.shape, dtype=x.dtype)) * valid
        # index of each label's entry: (n, y, d1, d2, ...); every position appears once, so
        # plain fancy-index reads and writes are exact (no scatter-add needed)
        m = t.ndim
        grids = [xp.arange(n).reshape((1,) * k + (n,) + (1,) * (m - 1 - k)) for k, n in enumerate(t.shape)]
        self.idx = (grids[0], t) + tuple(grids[1:])
        self.shape, self.dtype = x.shape, x.dtype
        self.wb = None if weight is None else weight.reshape((1, C) + (1,) * (x.ndim - 2))
        self.valid, self.wt, self.eps, self.C = valid, wt, eps, C

    def _finish(self, loss_el, reduction):
        xp = xp_of(loss_el)
        self.reduction = reduction
        if reduction == "none":
            return loss_el
        if reduction == "sum":
            return xp.asarray(loss_el.sum(), dtype=loss_el.dtype)
        self.denom = self.wt.sum()
        with np.errstate(invalid="ignore", divide="ignore"):  # all ignored: 0/0 = nan, as in PyTorch
            return xp.asarray(loss_el.sum() / self.denom, dtype=loss_el.dtype)

    def _scale(self, gy):
        """Upstream gradient per element: (N, *) for "none", else a 0-d array."""
        if self.reduction == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                return gy / self.denom
        return gy


class CrossEntropy(_ClassIndexLoss):
    """log_softmax + nll in one node; d loss / d x = a * softmax(x) - (1 - eps) w[y] onehot - (eps / C) w."""

    def forward(self, x, target, weight, ignore_index, eps, reduction):
        self.fused = None
        if cuda_loss.applies(x, target, weight):  # GPU: two launches (ember/ops/cuda_loss.py)
            out = cuda_loss.forward(x, target, weight, ignore_index, eps, reduction)
            if out is None:
                _check_label_values("cross_entropy", x.shape[1], target, ignore_index)  # raises
            loss, p, wt, acc = out
            self.fused = (p, target, wt, weight, acc, ignore_index, eps, reduction)
            return loss
        xp = xp_of(x)
        self._setup(x, target, weight, ignore_index, eps)
        z = x - x.max(axis=1, keepdims=True)  # <= 0: exp never overflows; logits like 1e8 stay exact
        e = xp.exp(z)
        s = e.sum(axis=1, keepdims=True)
        e /= s
        self.p = e  # softmax, all that backward needs
        log_s = xp.log(s)[:, 0]
        picked = z[self.idx] - log_s  # log p[i, y_i]
        loss = -(1 - eps) * self.wt * picked
        if eps:
            W = self.wb.sum() if self.wb is not None else self.C
            wsum = (z * self.wb).sum(axis=1) if self.wb is not None else z.sum(axis=1)
            loss = loss - (eps / self.C) * (wsum - W * log_s) * self.valid
        return self._finish(loss.astype(x.dtype, copy=False), reduction)

    def backward(self, gy):
        if self.fused is not None:
            p, target, wt, weight, acc, ignore_index, eps, reduction = self.fused
            return cuda_loss.backward(gy, p, target, wt, weight, acc, ignore_index, eps, reduction)
        eps, C = self.eps, self.C
        scale = self._scale(gy)
        hot = (1 - eps) * self.wt * scale  # weight of the one-hot term per element
        if eps:
            W = self.wb.sum() if self.wb is not None else C
            a = hot + (eps / C) * W * self.valid * scale
        else:
            a = hot
        g = self.p * a[:, None]
        g[self.idx] -= hot
        if eps:
            g -= (eps / C) * (self.wb if self.wb is not None else 1) * (self.valid * scale)[:, None]
        return g.astype(gy.dtype, copy=False)


class NLLLoss(_ClassIndexLoss):
    def forward(self, x, target, weight, ignore_index, reduction):
        self._setup(x, target, weight, ignore_index, 0.0)
        return self._finish((-self.wt * x[self.idx]).astype(x.dtype, copy=False), reduction)

    def backward(self, gy):
        g = xp_of(gy).zeros(self.shape, dtype=gy.dtype)
        g[self.idx] = -self.wt * self._scale(gy)
        return g


def _batched(input: Tensor, target: Tensor):
    """Unbatched (C,) input with a 0-d label becomes (1, C) with (1,)."""
    if input.ndim == 1:
        return input.reshape(1, -1), target.reshape(1)
    return input, target


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross entropy from logits, with PyTorch's semantics.

    Shapes: input (N, C), (N, C, d1, d2, ...) or (C,); target either class indices
    (N,), (N, d1, ...) or () of an integer dtype, or class probabilities of input's
    shape. ``weight`` (C,) rescales classes ("mean" then divides by the summed weights
    of the non-ignored targets); ``ignore_index`` labels contribute nothing;
    ``label_smoothing`` eps mixes the target with the uniform distribution.
    """
    op = "cross_entropy"
    if not isinstance(input, Tensor) or not isinstance(target, Tensor):
        raise TypeError(f"{op}: input and target must be ember Tensors")
    if input.ndim == 0:
        raise ShapeError(f"{op}: input must have a class dim, got a 0-d tensor")
    if input.dtype.kind != "f":
        raise DTypeError(f"{op}: input (logits) must be floating point, got {input.dtype}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    w = _class_weight(op, weight, input)
    if target.dtype.kind == "f":
        return _soft_cross_entropy(input, target, w, reduction, label_smoothing)
    x, t = _batched(input, target)
    # the GPU route checks label values in its kernel (one read back instead of a handful of launches)
    _check_labels(op, input, target, ignore_index, values=not cuda_loss.applies(x.data, t.data, w))
    out = CrossEntropy.apply(x, weight=w, target=t.data, ignore_index=ignore_index, eps=float(label_smoothing),
                             reduction=reduction)
    return out.reshape(()) if input.ndim == 1 and reduction == "none" else out


def _soft_cross_entropy(input, target, w, reduction, eps):
    """-sum_c w_c t_c log softmax(x)_c for probability targets (differentiable in both)."""
    if target.shape != input.shape:
        raise ShapeError(
            f"cross_entropy: float target is read as class probabilities and must have input's shape "
            f"{input.shape}, got {target.shape} (class indices need an integer dtype)"
        )
    check_same_device("cross_entropy", input.data, target.data)
    dim = 0 if input.ndim == 1 else 1
    C = input.shape[dim]
    if eps:
        target = target * (1 - eps) + eps / C
    if w is not None:
        target = target * Tensor(w.reshape((C,) + (1,) * (input.ndim - dim - 1)))
    loss = -_sum(log_softmax(input, dim) * target, dim)
    return _reduce("cross_entropy", loss, reduction)


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log likelihood from log-probabilities: -w[y] * input[i, y], PyTorch's weighted mean.

    Shapes: input (N, C), (N, C, d1, ...) or (C,); target (N,), (N, d1, ...) or () integers.
    """
    op = "nll_loss"
    if input.ndim == 0:
        raise ShapeError(f"{op}: input must have a class dim, got a 0-d tensor")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    w = _class_weight(op, weight, input)
    _check_labels(op, input, target, ignore_index)
    x, t = _batched(input, target)
    out = NLLLoss.apply(x, weight=w, target=t.data, ignore_index=ignore_index, reduction=reduction)
    return out.reshape(()) if input.ndim == 1 and reduction == "none" else out


# ---- binary -----------------------------------------------------------------------------------------
def _elementwise_weight(op: str, name: str, w, like: Tensor):
    if w is None:
        return None
    w = w.data if isinstance(w, Tensor) else xp_of(like.data).asarray(w)
    try:
        np.broadcast_shapes(tuple(w.shape), like.shape)
    except ValueError:
        raise ShapeError(f"{op}: {name} of shape {tuple(w.shape)} does not broadcast to input {like.shape}") from None
    check_same_device(op, like.data, w)
    return w.astype(like.dtype, copy=False)


class BinaryCrossEntropy(Function):
    """-w (t log x + (1 - t) log(1 - x)) with both logs clamped to >= -100 (PyTorch's choice)."""

    def forward(self, x, t, w):
        xp = xp_of(x)
        with np.errstate(divide="ignore"):  # log(0) = -inf is clamped just below
            lx = xp.maximum(xp.log(x), -100)
            l1x = xp.maximum(xp.log(1 - x), -100)
        self.x, self.t, self.w, self.lx, self.l1x = x, t, w, lx, l1x
        loss = -(t * lx + (1 - t) * l1x)
        return loss if w is None else loss * w

    def backward(self, gy):
        xp = xp_of(gy)
        if self.w is not None:
            gy = gy * self.w
        x = self.x
        gx = gy * (x - self.t) / xp.maximum((1 - x) * x, 1e-12) if self.needs_input_grad[0] else None
        gt = gy * (self.l1x - self.lx) if self.needs_input_grad[1] else None
        return gx, gt


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         reduction: str = "mean") -> Tensor:
    """BCE on probabilities in [0, 1] (input and target of one shape; weight broadcasts)."""
    op = "binary_cross_entropy"
    _check_pair(op, input, target)
    x = input.data
    if ((x < 0) | (x > 1)).any():
        raise ValueError(
            f"{op}: input must hold probabilities in [0, 1], got values in [{float(x.min())}, {float(x.max())}]"
            " (use binary_cross_entropy_with_logits for logits)"
        )
    w = _elementwise_weight(op, "weight", weight, input)
    return _reduce(op, BinaryCrossEntropy.apply(input, target, w=w), reduction)


class BCEWithLogits(Function):
    """(1 - t) x + (1 + (pw - 1) t) softplus(-x), weighted; softplus(-x) = -log sigmoid(x) never overflows."""

    def forward(self, x, t, w, pw):
        sp = _softplus0(-x)
        self.x, self.t, self.w, self.pw, self.sp = x, t, w, pw, sp
        lw = 1 if pw is None else 1 + (pw - 1) * t
        loss = (1 - t) * x + lw * sp
        return loss if w is None else loss * w

    def backward(self, gy):
        x, t, pw = self.x, self.t, self.pw
        if self.w is not None:
            gy = gy * self.w
        gx = gt = None
        if self.needs_input_grad[0]:
            s = _sigmoid(x)
            gx = gy * (s - t) if pw is None else gy * ((1 + (pw - 1) * t) * s - pw * t)
        if self.needs_input_grad[1]:
            gt = gy * (-x if pw is None else (pw - 1) * self.sp - x)
        return gx, gt


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     reduction: str = "mean", pos_weight: Tensor | None = None) -> Tensor:
    """sigmoid + BCE in one stable op; ``pos_weight`` (broadcast along the last dim) weights positives."""
    op = "binary_cross_entropy_with_logits"
    _check_pair(op, input, target)
    w = _elementwise_weight(op, "weight", weight, input)
    pw = _elementwise_weight(op, "pos_weight", pos_weight, input)
    return _reduce(op, BCEWithLogits.apply(input, target, w=w, pw=pw), reduction)


def kl_div(input: Tensor, target: Tensor, reduction: str = "mean", log_target: bool = False) -> Tensor:
    """KL(target || q) with ``input`` = log q: target * (log target - input), 0 where target is 0.

    ``reduction="batchmean"`` divides the sum by the batch size (the true KL divergence);
    "mean" divides by the number of elements, as in PyTorch.
    """
    op = "kl_div"
    _check_pair(op, input, target)
    if log_target:
        loss = exp(target) * (target - input)
    else:
        pos = target.data > 0
        safe = where(pos, target, 1.0)  # log(1) = 0 where target is 0: 0 * log 0 := 0
        loss = target * (log(safe) - input)
    if reduction == "batchmean":
        return _sum(loss) / (input.shape[0] if input.ndim else 1)
    return _reduce(op, loss, reduction)

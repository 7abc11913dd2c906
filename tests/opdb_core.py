"""Rows of the op table for the core ops (see tests/opdb.py): elementwise, reduce, linalg, shape, indexing."""
from __future__ import annotations

import numpy as np
import torch

from ember.ops import activation as A
from ember.ops import elementwise as E
from ember.ops import linalg as L
from ember.ops import reduce as R
from ember.ops import shape as S
from tests.opdb import OpInfo, Sample, non_contiguous

OPS: list = []


# ---- sample helpers ---------------------------------------------------------------------------------
def _u(rng, *shape, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, size=shape)


def _pos(rng, *shape):
    return rng.uniform(0.5, 2.0, size=shape)


def _away(rng, *shape, points=(0.0,), gap=0.1):
    """Uniform values at least ``gap`` away from each of ``points`` (kinks of abs, relu, clamp)."""
    x = _u(rng, *shape)
    for p in points:
        near = np.abs(x - p) < gap
        x = np.where(near, p + np.where(x >= p, 1, -1) * (gap + np.abs(x - p)), x)
    return x


def _unary_samples(gen):
    """The standard unary sample set for a value generator gen(rng, *shape)."""

    def samples(rng):
        return [
            Sample((gen(rng, 3, 4),), name="2d"),
            Sample((np.asarray(gen(rng)),), name="0d"),
            Sample((gen(rng, 0, 3),), name="empty"),
            Sample((non_contiguous(gen(rng, 2, 5)),), name="noncontig"),
            Sample((gen(rng, 2, 3, 4),), name="3d"),
        ]

    return samples


def _binary_samples(gen_a, gen_b):
    def samples(rng):
        return [
            Sample((gen_a(rng, 3, 4), gen_b(rng, 3, 4)), name="same"),
            Sample((gen_a(rng, 3, 4), gen_b(rng, 4)), name="bcast_row"),
            Sample((gen_a(rng, 2, 1, 4), gen_b(rng, 3, 1)), name="bcast_both"),
            Sample((np.asarray(gen_a(rng)), gen_b(rng, 3)), name="0d_lhs"),
            Sample((gen_a(rng, 2, 3), np.asarray(gen_b(rng))), name="0d_rhs"),
            Sample((gen_a(rng, 0, 3), gen_b(rng, 3)), name="empty"),
            Sample((non_contiguous(gen_a(rng, 2, 5)), gen_b(rng, 2, 5)), name="noncontig"),
            Sample((gen_a(rng, 3, 4), gen_b(rng, 3, 4)), no_grad=(1,), name="rhs_const"),
        ]

    return samples


def _tidx(index):
    """A NumPy index converted for PyTorch (arrays become tensors)."""
    if isinstance(index, tuple):
        return tuple(_tidx(i) for i in index)
    if isinstance(index, np.ndarray):
        return torch.from_numpy(index)
    return index


def add_row(name, fn, samples, **kw):
    OPS.append(OpInfo(name, fn, samples, **kw))


# ---- elementwise: arithmetic --------------------------------------------------------------------------
add_row("add", lambda a, b: a + b, _binary_samples(_u, _u), torch_fn=lambda a, b: a + b)
add_row("add_alpha", lambda a, b: E.add(a, b, alpha=0.5), _binary_samples(_u, _u),
        torch_fn=lambda a, b: torch.add(a, b, alpha=0.5))
add_row("sub", lambda a, b: a - b, _binary_samples(_u, _u), torch_fn=lambda a, b: a - b)
add_row("mul", lambda a, b: a * b, _binary_samples(_u, _u), torch_fn=lambda a, b: a * b)
add_row("div", lambda a, b: a / b, _binary_samples(_u, lambda r, *s: _away(r, *s, gap=0.5)),
        torch_fn=lambda a, b: a / b)
add_row("pow", lambda a, b: a ** b, _binary_samples(_pos, _u), torch_fn=lambda a, b: a ** b)


def _with_kwargs(base, **kwargs):
    """A sample generator adding ``kwargs`` to every sample of ``base``."""
    return lambda rng: [Sample(s.inputs, {**s.kwargs, **kwargs}, s.no_grad, s.name) for s in base(rng)]


for _p in (2, 3, 0.5, -1.5, 0):
    add_row(f"pow_scalar_{_p}", lambda x, p: x ** p, _with_kwargs(_unary_samples(_pos), p=_p),
            torch_fn=lambda x, p: x ** p)
add_row("rpow_scalar", lambda x: 2.0 ** x, _unary_samples(_u), torch_fn=lambda x: 2.0 ** x)
add_row("rsub_scalar", lambda x: 1.5 - x, _unary_samples(_u), torch_fn=lambda x: 1.5 - x)
add_row("rdiv_scalar", lambda x: 1.5 / x, _unary_samples(lambda r, *s: _away(r, *s, gap=0.5)),
        torch_fn=lambda x: 1.5 / x)
add_row("neg", lambda x: -x, _unary_samples(_u), torch_fn=lambda x: -x)

# ---- elementwise: unary math -----------------------------------------------------------------------------
for _name, _gen in [
    ("abs", _away), ("exp", _u), ("log", _pos), ("log1p", _pos), ("sqrt", _pos), ("sin", _u), ("cos", _u),
    ("tanh", _u), ("sigmoid", _u), ("relu", _away), ("square", _u), ("rsqrt", _pos),
]:
    add_row(_name, getattr(E, _name, None) or getattr(A, _name), _unary_samples(_gen), torch_fn=getattr(torch, _name))
add_row("sigmoid_extreme", A.sigmoid, lambda rng: [Sample((np.array([-800.0, -30.0, 0.0, 30.0, 800.0]),))],
        torch_fn=torch.sigmoid)
add_row("relu_extreme", A.relu, lambda rng: [Sample((np.array([-np.inf, -1.0, 2.0, np.inf]),))],
        torch_fn=torch.relu, grad=False)
add_row("pow_scalar_0_at_zero", lambda x: x ** 0, lambda rng: [Sample((np.array([0.0, 1.5, -2.0]),))],
        torch_fn=lambda x: x ** 0)
add_row("clamp", lambda x, min=None, max=None: E.clamp(x, min, max),
        lambda rng: [
            Sample((_away(rng, 3, 4, points=(-0.5, 0.7)),), {"min": -0.5, "max": 0.7}),
            Sample((_away(rng, 3, 4, points=(-0.5,)),), {"min": -0.5}),
            Sample((_away(rng, 3, 4, points=(0.7,)),), {"max": 0.7}),
            Sample((np.asarray(0.3),), {"min": -0.5, "max": 0.7}),
            Sample((non_contiguous(_away(rng, 2, 5, points=(-0.5, 0.7))),), {"min": -0.5, "max": 0.7}),
        ], torch_fn=lambda x, min=None, max=None: torch.clamp(x, min, max))
add_row("clip_method", lambda x: x.clip(-0.5, 0.7), lambda rng: [Sample((_away(rng, 3, 4, points=(-0.5, 0.7)),))],
        torch_fn=lambda x: x.clip(-0.5, 0.7))


add_row("maximum", E.maximum, _binary_samples(_u, _u), torch_fn=torch.maximum)
add_row("minimum", E.minimum, _binary_samples(_u, _u), torch_fn=torch.minimum)
add_row("maximum_scalar", lambda x: E.maximum(x, 0.25), _unary_samples(lambda r, *s: _away(r, *s, points=(0.25,))),
        torch_fn=lambda x: torch.clamp(x, min=0.25))
add_row("where", lambda c, a, b: E.where(c, a, b),
        lambda rng: [
            Sample((rng.random((3, 4)) > 0.5, _u(rng, 3, 4), _u(rng, 3, 4)), name="same"),
            Sample((rng.random((3, 1)) > 0.5, _u(rng, 4), _u(rng, 3, 4)), name="bcast"),
            Sample((np.asarray(True), _u(rng, 2, 3), np.asarray(_u(rng))), name="0d"),
            Sample((rng.random((0, 3)) > 0.5, _u(rng, 0, 3), _u(rng, 3)), name="empty"),
        ], torch_fn=torch.where)

# ---- comparisons and other no-gradient ops (exact ties included) --------------------------------------
def _ints(rng, *shape):
    return rng.integers(-2, 3, size=shape).astype(np.float64)


for _name, _op in [("eq", "__eq__"), ("ne", "__ne__"), ("lt", "__lt__"), ("le", "__le__"), ("gt", "__gt__"),
                   ("ge", "__ge__")]:
    add_row(_name, (lambda op: lambda a, b: getattr(a, op)(b))(_op), _binary_samples(_ints, _ints),
            torch_fn=(lambda op: lambda a, b: getattr(a, op)(b))(_op), grad=False)
add_row("argmax", lambda x, dim=None, keepdim=False: R.argmax(x, dim, keepdim),
        lambda rng: [Sample((_u(rng, 3, 4),)), Sample((_u(rng, 3, 4),), {"dim": 1}),
                     Sample((_u(rng, 3, 4),), {"dim": 0, "keepdim": True})],
        torch_fn=lambda x, dim=None, keepdim=False: torch.argmax(x, dim, keepdim), grad=False)
add_row("argmin", lambda x, dim=None, keepdim=False: R.argmin(x, dim, keepdim),
        lambda rng: [Sample((_u(rng, 3, 4),)), Sample((_u(rng, 3, 4),), {"dim": -1})],
        torch_fn=lambda x, dim=None, keepdim=False: torch.argmin(x, dim, keepdim), grad=False)

# ---- reductions -----------------------------------------------------------------------------------------
def _reduce_samples(rng, allow_empty=True, allow_none=True):
    out = [
        Sample((_u(rng, 3, 4),), {"dim": 1}, name="dim1"),
        Sample((_u(rng, 3, 4),), {"dim": 0, "keepdim": True}, name="dim0_keep"),
        Sample((_u(rng, 2, 3, 4),), {"dim": -1}, name="dim_neg"),
        Sample((non_contiguous(_u(rng, 3, 5)),), {"dim": 1}, name="noncontig"),
    ]
    if allow_none:
        out += [Sample((_u(rng, 2, 3, 4),), {"dim": (0, 2)}, name="dims"),
                Sample((_u(rng, 3, 4),), {}, name="all"), Sample((np.asarray(_u(rng)),), {}, name="0d")]
    if allow_empty:
        out.append(Sample((_u(rng, 0, 3),), {"dim": 1}, name="empty"))
    return out


add_row("sum", lambda x, **kw: R.sum(x, **kw), _reduce_samples, torch_fn=lambda x, **kw: torch.sum(x, **kw))
add_row("mean", lambda x, **kw: R.mean(x, **kw), _reduce_samples, torch_fn=lambda x, **kw: torch.mean(x, **kw))
for _c in (0, 1):
    add_row(f"var_c{_c}", lambda x, c, **kw: R.var(x, correction=c, **kw),
            (lambda c: lambda rng: [Sample(s.inputs, {**s.kwargs, "c": c}, name=s.name)
                                    for s in _reduce_samples(rng, allow_empty=False) if c == 0 or s.name != "0d"])(_c),
            torch_fn=lambda x, c, **kw: torch.var(x, correction=c, **kw))
    add_row(f"std_c{_c}", lambda x, c, **kw: R.std(x, correction=c, **kw),
            (lambda c: lambda rng: [Sample(s.inputs, {**s.kwargs, "c": c}, name=s.name)
                                    for s in _reduce_samples(rng, allow_empty=False) if s.name != "0d"])(_c),
            torch_fn=lambda x, c, **kw: torch.std(x, correction=c, **kw))
add_row("amax", lambda x, **kw: R.amax(x, **kw), lambda rng: _reduce_samples(rng, allow_empty=False),
        torch_fn=lambda x, **kw: torch.amax(x, **kw))
add_row("amin", lambda x, **kw: R.amin(x, **kw), lambda rng: _reduce_samples(rng, allow_empty=False),
        torch_fn=lambda x, **kw: torch.amin(x, **kw))
add_row("max_all", lambda x: R.max(x), lambda rng: [Sample((_u(rng, 3, 4),)), Sample((np.asarray(_u(rng)),))],
        torch_fn=torch.max)
add_row("max_dim", lambda x, dim, keepdim=False: R.max(x, dim, keepdim),
        lambda rng: [Sample((_u(rng, 3, 4),), {"dim": 1}), Sample((_u(rng, 3, 4),), {"dim": 0, "keepdim": True})],
        torch_fn=lambda x, dim, keepdim=False: tuple(torch.max(x, dim, keepdim)))
add_row("min_dim", lambda x, dim, keepdim=False: R.min(x, dim, keepdim),
        lambda rng: [Sample((_u(rng, 3, 4),), {"dim": -1})],
        torch_fn=lambda x, dim, keepdim=False: tuple(torch.min(x, dim, keepdim)))
add_row("min_all", lambda x: x.min(), lambda rng: [Sample((_u(rng, 2, 5),))], torch_fn=torch.min)
add_row("logsumexp", lambda x, dim, keepdim=False: R.logsumexp(x, dim, keepdim),
        lambda rng: [s for s in _reduce_samples(rng, allow_none=False) if s.name != "empty"]
        + [Sample((_u(rng, 2, 3, 4),), {"dim": (0, 2)}), Sample((100 * _u(rng, 3, 4),), {"dim": 1}, name="large")],
        torch_fn=lambda x, dim, keepdim=False: torch.logsumexp(x, dim, keepdim))
for _name in ("softmax", "log_softmax"):
    add_row(_name, (lambda n: lambda x, dim: getattr(R, n)(x, dim))(_name),
            lambda rng: [Sample((_u(rng, 3, 4),), {"dim": 1}), Sample((_u(rng, 3, 4),), {"dim": 0}),
                         Sample((_u(rng, 2, 3, 4),), {"dim": -2}),
                         Sample((non_contiguous(_u(rng, 3, 5)),), {"dim": -1}),
                         Sample((_u(rng, 0, 4),), {"dim": 1}, name="empty"),
                         Sample((50 * _u(rng, 3, 4),), {"dim": 1}, name="large")],
            torch_fn=(lambda n: lambda x, dim: getattr(torch, n)(x, dim))(_name))
add_row("prod", lambda x, dim=None: R.prod(x, dim), lambda rng: [Sample((_u(rng, 3, 4),), {"dim": 1}),
                                                              Sample((_u(rng, 2, 3),))],
        torch_fn=lambda x, dim=None: torch.prod(x) if dim is None else torch.prod(x, dim))

# ---- linalg ---------------------------------------------------------------------------------------------
add_row("matmul", lambda a, b: a @ b, lambda rng: [
    Sample((_u(rng, 4), _u(rng, 4)), name="1d_1d"),
    Sample((_u(rng, 3), _u(rng, 3, 2)), name="1d_2d"),
    Sample((_u(rng, 2, 3), _u(rng, 3)), name="2d_1d"),
    Sample((_u(rng, 2, 3), _u(rng, 3, 5)), name="2d_2d"),
    Sample((_u(rng, 4, 2, 3), _u(rng, 3, 5)), name="3d_2d"),
    Sample((_u(rng, 2, 3), _u(rng, 4, 3, 5)), name="2d_3d"),
    Sample((_u(rng, 2, 1, 2, 3), _u(rng, 4, 3, 2)), name="bcast_batch"),
    Sample((_u(rng, 3), _u(rng, 2, 3, 4)), name="1d_3d"),
    Sample((_u(rng, 2, 4, 3), _u(rng, 3)), name="3d_1d"),
    Sample((_u(rng, 0, 3), _u(rng, 3, 2)), name="empty"),
    Sample((non_contiguous(_u(rng, 2, 3)), _u(rng, 3, 4).T.copy().T), name="noncontig"),
    Sample((_u(rng, 2, 3), _u(rng, 3, 4)), no_grad=(0,), name="lhs_const"),
], torch_fn=torch.matmul)
add_row("linear", lambda x, w, b=None: L.linear(x, w, b), lambda rng: [
    Sample((_u(rng, 5, 3), _u(rng, 4, 3), _u(rng, 4))), Sample((_u(rng, 2, 5, 3), _u(rng, 4, 3), _u(rng, 4))),
], torch_fn=torch.nn.functional.linear)
_EINSUMS = [  # (equation, operand shapes, name)
    ("ij,jk->ik", [(3, 4), (4, 5)], "matmul"), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)], "batched"),
    ("nchw,c->nhw", [(2, 3, 4, 5), (3,)], "channel_weights"), ("ij->", [(3, 4)], "sum_all"),
    ("ij", [(3, 4)], "implicit_identity"), ("ji", [(3, 4)], "implicit_transpose"),
    ("ij,ij->ij", [(3, 4), (1, 4)], "broadcast_size1"), ("...ij,...jk", [(2, 3, 4), (4, 5)], "ellipsis"),
    ("i,j->ij", [(3,), (4,)], "outer"), ("ij->j", [(3, 4)], "sum_rows"),
    ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)], "attention_scores"), ("i,i,i->", [(4,), (4,), (4,)], "three"),
]
add_row("einsum", lambda *xs, eq: L.einsum(eq, *xs), lambda rng: [
    Sample(tuple(_u(rng, *s) for s in shapes), {"eq": eq}, name=name) for eq, shapes, name in _EINSUMS
] + [Sample((non_contiguous(_u(rng, 3, 4)), _u(rng, 4, 2)), {"eq": "ij,jk->ik"}, name="noncontig"),
     Sample((_u(rng, 3, 4), _u(rng, 4, 2)), {"eq": "ij,jk->ki"}, no_grad=(1,), name="rhs_const")],
        torch_fn=lambda *xs, eq: torch.einsum(eq, *xs))

# ---- shape ops -----------------------------------------------------------------------------------------
def _shaped(specs):
    """Samples for a unary shape op from (shape, kwargs) pairs; also one non-contiguous input."""

    def samples(rng):
        out = [Sample((_u(rng, *shape),), kw, name=str(i)) for i, (shape, kw) in enumerate(specs)]
        shape, kw = specs[0]
        if shape:
            out.append(Sample((non_contiguous(_u(rng, *shape)),), kw, name="noncontig"))
        return out

    return samples


add_row("reshape", lambda x, shape: x.reshape(shape), _shaped([
    ((3, 4), {"shape": (2, -1)}), ((2, 3, 4), {"shape": (4, 6)}), ((), {"shape": (1, 1)}),
    ((0, 3), {"shape": (3, 0)}), ((6,), {"shape": (6,)}),
]), torch_fn=lambda x, shape: x.reshape(shape))
add_row("view", lambda x, shape: x.view(*shape), _shaped([((3, 4), {"shape": (12,)})]),
        ref=lambda x, shape: x.reshape(shape))
add_row("transpose", lambda x, dim0, dim1: x.transpose(dim0, dim1), _shaped([
    ((3, 4), {"dim0": 0, "dim1": 1}), ((2, 3, 4), {"dim0": -1, "dim1": 0}),
]), torch_fn=lambda x, dim0, dim1: x.transpose(dim0, dim1))
add_row("T", lambda x: x.T, _shaped([((3, 4), {}), ((4,), {})]), ref=lambda x: x.T)
add_row("permute", lambda x, dims: x.permute(dims), _shaped([
    ((2, 3, 4), {"dims": (2, 0, 1)}), ((3, 4), {"dims": (1, 0)}), ((0, 2, 3), {"dims": (1, 2, 0)}),
]), torch_fn=lambda x, dims: x.permute(dims))
add_row("flatten", lambda x, **kw: x.flatten(**kw), _shaped([
    ((2, 3, 4), {}), ((2, 3, 4), {"start_dim": 1}), ((2, 3, 4, 5), {"start_dim": 1, "end_dim": 2}), ((), {}),
]), torch_fn=lambda x, **kw: x.flatten(**kw))
add_row("squeeze", lambda x, dim=None: x.squeeze(dim), _shaped([
    ((3, 1, 4), {"dim": 1}), ((1, 3, 1), {}), ((3, 4), {"dim": 0}), ((1,), {}),
]), ref=lambda x, dim=None: np.squeeze(x, dim) if dim is None or x.shape[dim] == 1 else x)
add_row("unsqueeze", lambda x, dim: x.unsqueeze(dim), _shaped([
    ((3, 4), {"dim": 1}), ((3, 4), {"dim": -1}), ((), {"dim": 0}), ((3, 4), {"dim": 2}),
]), torch_fn=lambda x, dim: x.unsqueeze(dim))
add_row("expand", lambda x, shape: x.expand(*shape), _shaped([
    ((3, 1), {"shape": (3, 4)}), ((4,), {"shape": (2, 3, 4)}), ((3, 1), {"shape": (-1, 5)}), ((), {"shape": (2,)}),
]), torch_fn=lambda x, shape: x.expand(*shape))
add_row("broadcast_to", lambda x, shape: S.broadcast_to(x, shape), _shaped([
    ((1, 4), {"shape": (3, 4)}), ((2, 1, 3), {"shape": (2, 5, 3)}),
]), torch_fn=lambda x, shape: torch.broadcast_to(x, shape))
add_row("flip", lambda x, dims: S.flip(x, dims), _shaped([((3, 4), {"dims": 1}), ((2, 3, 4), {"dims": (0, 2)})]),
        torch_fn=lambda x, dims: torch.flip(x, (dims,) if isinstance(dims, int) else dims))
add_row("repeat", lambda x, sizes: x.repeat(*sizes), _shaped([((3, 2), {"sizes": (2, 3)}),
                                                            ((3,), {"sizes": (2, 2)})]),
        torch_fn=lambda x, sizes: x.repeat(*sizes))
add_row("cat", lambda *xs, dim=0: S.cat(xs, dim), lambda rng: [
    Sample((_u(rng, 2, 3), _u(rng, 4, 3)), {"dim": 0}),
    Sample((_u(rng, 2, 3), _u(rng, 2, 1), _u(rng, 2, 2)), {"dim": -1}),
    Sample((_u(rng, 0, 3), _u(rng, 2, 3)), {"dim": 0}, name="empty"),
    Sample((non_contiguous(_u(rng, 2, 3)), _u(rng, 2, 3)), {"dim": 1}, name="noncontig"),
    Sample((_u(rng, 2, 3), _u(rng, 2, 3)), {"dim": 0}, no_grad=(1,), name="one_const"),
], torch_fn=lambda *xs, dim=0: torch.cat(xs, dim))
add_row("stack", lambda *xs, dim=0: S.stack(xs, dim), lambda rng: [
    Sample((_u(rng, 2, 3), _u(rng, 2, 3)), {"dim": 0}),
    Sample((_u(rng, 2, 3), _u(rng, 2, 3), _u(rng, 2, 3)), {"dim": -1}),
    Sample((np.asarray(_u(rng)), np.asarray(_u(rng))), {"dim": 0}, name="0d"),
], torch_fn=lambda *xs, dim=0: torch.stack(xs, dim))
add_row("split", lambda x, size, dim=0: S.split(x, size, dim), _shaped([
    ((5, 3), {"size": 2}), ((3, 6), {"size": [1, 2, 3], "dim": 1}), ((4, 3), {"size": 4}),
]), torch_fn=lambda x, size, dim=0: torch.split(x, size, dim))
add_row("chunk", lambda x, chunks, dim=0: S.chunk(x, chunks, dim), _shaped([
    ((5, 3), {"chunks": 2}), ((3, 6), {"chunks": 3, "dim": 1}), ((3, 7), {"chunks": 4, "dim": -1}),
]), torch_fn=lambda x, chunks, dim=0: torch.chunk(x, chunks, dim))
add_row("unbind", lambda x, dim=0: S.unbind(x, dim), _shaped([((3, 4), {}), ((3, 4), {"dim": 1})]),
        torch_fn=lambda x, dim=0: torch.unbind(x, dim))
add_row("pad", lambda x, pad, value=0.0: S.pad(x, pad, value=value), _shaped([
    ((3, 4), {"pad": (1, 2)}), ((2, 3, 4), {"pad": (1, 0, 2, 1), "value": 1.5}),
    ((3, 4), {"pad": (-1, 2, 1, -1)}), ((0, 4), {"pad": (1, 1)}), ((2, 3, 4), {"pad": (0, 0, 0, 0, 1, 1)}),
]), torch_fn=lambda x, pad, value=0.0: torch.nn.functional.pad(x, pad, value=value))

# ---- indexing -------------------------------------------------------------------------------------------
_INDEXES = [
    ("int", (5, 4), 2), ("neg_int", (5, 4), -1), ("slice", (5, 4), slice(1, 4)),
    ("step", (6, 4), (slice(None), slice(0, 4, 2))), ("neg_slice", (6, 4), (slice(-3, None), 1)),
    ("ellipsis_none", (2, 3, 4), (Ellipsis, None, 1)),
    ("int_array", (5, 4), np.array([0, 2, 2, 4])), ("int_array_2d", (5, 4), (np.array([[0, 1], [4, 4]]), slice(1, 3))),
    ("two_arrays", (5, 4), (np.array([0, 1, 1]), np.array([3, 3, 0]))),
    ("neg_array", (5, 4), np.array([-1, 0, -1])),
    ("bool_mask", (3, 4), "mask"), ("bool_rows", (4, 3), "rows"),
    ("empty_index", (5, 4), np.array([], dtype=np.int64)),
]


def _index_samples(rng):
    out = []
    for name, shape, index in _INDEXES:
        x = _u(rng, *shape)
        if isinstance(index, str):
            index = x > 0 if index == "mask" else np.array([True, False, True, True])
        out.append(Sample((x,), {"index": index}, name=name))
    out.append(Sample((non_contiguous(_u(rng, 4, 5)),), {"index": (np.array([1, 1, 3]), slice(None, None, 2))},
                      name="noncontig"))
    return out


add_row("getitem", lambda x, index: x[index], _index_samples, torch_fn=lambda x, index: x[_tidx(index)])
add_row("getitem_negative_step", lambda x, index: x[index], lambda rng: [
    Sample((_u(rng, 5, 4),), {"index": slice(None, None, -1)}),
    Sample((_u(rng, 5, 4),), {"index": (slice(4, 0, -2), slice(None, None, -3))}),
], ref=lambda x, index: x[index])
add_row("index_select", lambda x, dim, index: S.index_select(x, dim, index), lambda rng: [
    Sample((_u(rng, 4, 3),), {"dim": 0, "index": np.array([3, 0, 3])}),
    Sample((_u(rng, 4, 3),), {"dim": 1, "index": np.array([2, 1])}),
], torch_fn=lambda x, dim, index: torch.index_select(x, dim, torch.from_numpy(index)))

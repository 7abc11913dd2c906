"""Matrix products: matmul (1-D to N-D, batched, broadcast), the fused linear and bilinear layers, and einsum."""
from __future__ import annotations

import numpy as np

from ember.autograd import Function
from ember.backend import check_same_device, xp_of
from ember.errors import DTypeError, ShapeError
from ember.ops.shape import reshape, sum_to
from ember.tensor import Tensor

__all__ = ["matmul", "linear", "bilinear", "dot", "outer", "bmm", "mm", "einsum"]


class MatMul(Function):
    """NumPy matmul semantics: 1-D operands gain and then lose a dim; batch dims broadcast."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, gy):
        xp = xp_of(gy)
        a, b = self.a, self.b
        # Promote 1-D operands to matrices so one formula serves every case.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = gy
        if a.ndim == 1 and b.ndim == 1:  # a dot product: gy is 0-d
            g2 = gy.reshape(1, 1)
        elif a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        elif b.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = g2 @ xp.swapaxes(b2, -1, -2)
            ga = sum_to(ga, a2.shape).reshape(a.shape)
        if self.needs_input_grad[1]:
            if a2.ndim == 2 and g2.ndim == 2:
                gb = a2.T @ g2
            elif a2.ndim > 2 and b2.ndim == 2:
                # (..., n, k) x (k, m): fold the batch into rows for one big GEMM
                gb = a2.reshape(-1, a2.shape[-1]).T @ g2.reshape(-1, g2.shape[-1])
            else:
                gb = sum_to(xp.swapaxes(a2, -1, -2) @ g2, b2.shape)
            gb = gb.reshape(b.shape)
        return ga, gb


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product with NumPy/PyTorch semantics for 1-D to N-D operands."""
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError("matmul: both operands must be Tensors")
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: operands must be at least 1-D, got shapes {a.shape} and {b.shape}")
    check_same_device("matmul", a.data, b.data)
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ShapeError(
            f"matmul: shapes {a.shape} and {b.shape} are not aligned ({k_a} (dim -1 of a) != {k_b} "
            f"(dim {0 if b.ndim == 1 else -2} of b))"
        )
    if a.ndim > 2 or b.ndim > 2:
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ShapeError(f"matmul: batch dims of {a.shape} and {b.shape} cannot be broadcast") from None
    if a.dtype != b.dtype:
        from ember.ops.elementwise import astype

        dtype = np.result_type(a.dtype, b.dtype)
        a, b = astype(a, dtype), astype(b, dtype)
    return MatMul.apply(a, b)


def mm(a: Tensor, b: Tensor) -> Tensor:
    """Product of two matrices (torch.mm): both operands 2-D, no broadcasting."""
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError(f"mm: expected 2-D tensors, got shapes {a.shape} and {b.shape}")
    return matmul(a, b)


def bmm(a: Tensor, b: Tensor) -> Tensor:
    """Batched matrix product (torch.bmm): (B, n, k) @ (B, k, m) -> (B, n, m), no broadcasting."""
    if a.ndim != 3 or b.ndim != 3:
        raise ShapeError(f"bmm: expected 3-D tensors, got shapes {a.shape} and {b.shape}")
    if a.shape[0] != b.shape[0]:
        raise ShapeError(f"bmm: batch sizes differ ({a.shape[0]} != {b.shape[0]}; shapes {a.shape} and {b.shape})")
    return matmul(a, b)


def dot(a: Tensor, b: Tensor) -> Tensor:
    if a.ndim != 1 or b.ndim != 1:
        raise ShapeError(f"dot: expected 1-D tensors, got {a.shape} and {b.shape}")
    return matmul(a, b)


def outer(a: Tensor, b: Tensor) -> Tensor:
    return matmul(reshape(a, (-1, 1)), reshape(b, (1, -1)))


class Linear(Function):
    """y = x @ w.T + b in one node: one GEMM forward, two GEMMs and a sum backward."""

    def forward(self, x, w, b=None):
        self.x, self.w = x, w
        x2 = x.reshape(-1, x.shape[-1])
        y = x2 @ w.T
        if b is not None:
            y += b
        return y.reshape(x.shape[:-1] + (w.shape[0],))

    def backward(self, gy):
        g2 = gy.reshape(-1, gy.shape[-1])
        need = self.needs_input_grad
        gx = (g2 @ self.w).reshape(self.x.shape) if need[0] else None
        gw = g2.T @ self.x.reshape(-1, self.x.shape[-1]) if need[1] else None
        if len(need) == 2:
            return gx, gw
        gb = g2.sum(axis=0) if need[2] else None
        return gx, gw, gb


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Affine map over the last dim: x (..., in) @ weight (out, in).T + bias (out,)."""
    if x.ndim == 0 or x.shape[-1] != weight.shape[-1]:
        raise ShapeError(
            f"linear: input has {x.shape[-1] if x.ndim else 0} features but weight expects {weight.shape[-1]} "
            f"(input {x.shape}, weight {weight.shape})"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ShapeError(f"linear: bias has shape {bias.shape} but weight {weight.shape} needs ({weight.shape[0]},)")
    check_same_device("linear", x.data, weight.data)
    if x.dtype != weight.dtype:
        raise TypeError(f"linear: input dtype {x.dtype} does not match weight dtype {weight.dtype}")
    if bias is None:
        return Linear.apply(x, weight)
    return Linear.apply(x, weight, bias)


class Bilinear(Function):
    """y[b, o] = x1[b] @ w[o] @ x2[b] (+ bias[o]) for x1 (B, I), x2 (B, J), w (O, I, J), as GEMMs.

    Viewing w as an (O*I, J) matrix, x2 @ that.T is t[b, o, i] = sum_j w[o, i, j] x2[b, j], and
    y = t @ x1 per sample. Backward with u[b, o, i] = gy[b, o] x1[b, i] (and v likewise with x2):
    gw = u.T @ x2, gx2 = u @ w, gx1 = v @ w transposed to (O*J, I). Forward + backward run 20-50x
    faster than three-operand einsums, which NumPy evaluates without BLAS."""

    def forward(self, x1, x2, w, b=None):
        self.x1, self.x2, self.w = x1, x2, w
        o, i, j = w.shape
        t = (x2 @ w.reshape(o * i, j).T).reshape(-1, o, i)
        y = (t @ x1[:, :, None])[:, :, 0]
        if b is not None:
            y += b
        return y

    def backward(self, gy):
        x1, x2, w, need = self.x1, self.x2, self.w, self.needs_input_grad
        o, i, j = w.shape
        gx1 = gx2 = gw = None
        if need[1] or need[2]:
            u = (gy[:, :, None] * x1[:, None, :]).reshape(-1, o * i)
            gx2 = u @ w.reshape(o * i, j) if need[1] else None
            gw = (u.T @ x2).reshape(w.shape) if need[2] else None
        if need[0]:
            v = (gy[:, :, None] * x2[:, None, :]).reshape(-1, o * j)
            gx1 = v @ w.transpose(0, 2, 1).reshape(o * j, i)
        if len(need) == 3:
            return gx1, gx2, gw
        return gx1, gx2, gw, (gy.sum(axis=0) if need[3] else None)


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = input1^T A_o input2 + b_o for every output feature o (F.bilinear).

    input1 (*, in1_features) and input2 (*, in2_features) with the same leading dims (no
    broadcasting, as in PyTorch), weight (out_features, in1_features, in2_features), bias
    (out_features,): y (*, out_features).
    """
    x1, x2 = input1, input2
    if weight.ndim != 3:
        raise ShapeError(f"bilinear: weight must be 3-D (out_features, in1_features, in2_features), got {weight.shape}")
    o, i, j = weight.shape
    if x1.ndim == 0 or x1.ndim != x2.ndim:
        raise ShapeError(f"bilinear: input1 and input2 must have the same number of dims (at least 1), got "
                         f"shapes {x1.shape} and {x2.shape}")
    if x1.shape[:-1] != x2.shape[:-1]:
        raise ShapeError(f"bilinear: input1 and input2 must have the same batch dims, got shapes {x1.shape} and "
                         f"{x2.shape}")
    for k, (x, n) in enumerate(((x1, i), (x2, j)), start=1):
        if x.shape[-1] != n:
            raise ShapeError(f"bilinear: input{k} has {x.shape[-1]} features but weight {weight.shape} expects {n}")
    if bias is not None and bias.shape != (o,):
        raise ShapeError(f"bilinear: bias has shape {bias.shape} but weight {weight.shape} needs ({o},)")
    ts = (x1, x2, weight) + ((bias,) if bias is not None else ())
    check_same_device("bilinear", *[t.data for t in ts])
    if len({t.dtype for t in ts}) != 1:
        raise DTypeError("bilinear: all tensors must have the same dtype, got " + ", ".join(
            f"{name} {t.dtype}" for name, t in zip(("input1", "input2", "weight", "bias"), ts)))
    lead = x1.shape[:-1]
    n = int(np.prod(lead))
    y = Bilinear.apply(reshape(x1, (n, i)), reshape(x2, (n, j)), *ts[2:])
    return reshape(y, lead + (o,))


# ---- einsum -----------------------------------------------------------------------------------------
class Einsum(Function):
    """``y = einsum("in_0,in_1,...->out", *operands)`` with single-letter subscripts (the public
    function has spelled out ellipses and the implicit output). The gradient of operand k is the
    einsum of gy with every other operand into operand k's subscripts: each entry of operand k
    multiplies exactly the products it appears in. Letters that only operand k has were summed
    away, so its gradient is constant along them (a broadcast); size-1 dims that broadcast against
    other operands sum back (``sum_to``)."""

    def forward(self, *arrays, ins, out):
        self.arrays, self.ins, self.out = arrays, ins, out
        return xp_of(arrays[0]).einsum(",".join(ins) + "->" + out, *arrays)

    def backward(self, gy):
        xp = xp_of(gy)
        grads = []
        for k, (a, sub) in enumerate(zip(self.arrays, self.ins)):
            if not self.needs_input_grad[k]:
                grads.append(None)
                continue
            others = [(s, b) for j, (s, b) in enumerate(zip(self.ins, self.arrays)) if j != k]
            known = set(self.out).union(*[set(s) for s, _ in others])
            kept = "".join(c for c in sub if c in known)  # letters the gradient can be computed over
            g = xp.einsum(",".join([self.out] + [s for s, _ in others]) + "->" + kept, gy, *[b for _, b in others])
            shape = [g.shape[kept.index(c)] if c in kept else 1 for c in sub]  # (g's axes are in kept's order)
            g = xp.broadcast_to(g.reshape(shape), [max(n, m) for n, m in zip(shape, a.shape)])
            grads.append(sum_to(g, a.shape).astype(a.dtype, copy=False))
        return tuple(grads)


def _einsum_subscripts(equation: str, operands) -> tuple[list, str]:
    """(input subscripts, output subscript) of ``equation`` for these operands, letters only: an
    ellipsis becomes capital letters (right-aligned across operands, as broadcasting aligns dims),
    and a missing output is NumPy's: the ellipsis dims, then the letters used once, sorted."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    ins = lhs.split(",")
    if len(ins) != len(operands):
        raise ShapeError(f"einsum: the equation {equation!r} names {len(ins)} operands but {len(operands)} were given")
    for sub in ins + ([rhs] if arrow else []):
        if any(not "a" <= c <= "z" for c in sub.replace("...", "")):
            raise ShapeError(f"einsum: subscripts must be lowercase letters and '...', got {sub!r} in {equation!r}")
    ell = max((t.ndim - len(s.replace("...", "")) for s, t in zip(ins, operands) if "..." in s), default=0)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:ell]
    spelled = []
    for s, t in zip(ins, operands):
        n_ell = t.ndim - len(s.replace("...", "")) if "..." in s else 0
        spelled.append(s.replace("...", letters[ell - n_ell:]))
        if len(spelled[-1]) != t.ndim:
            raise ShapeError(f"einsum: operand {len(spelled) - 1} has {t.ndim} dims but subscripts {s!r}")
    if arrow:
        out = rhs.replace("...", letters)
    else:
        counts = {c: sum(s.count(c) for s in spelled) for c in set("".join(spelled))}
        out = letters + "".join(sorted(c for c, n in counts.items() if n == 1 and c.islower()))
    return spelled, out


def einsum(equation: str, *operands) -> Tensor:
    """Einstein summation (torch.einsum / numpy.einsum): ``einsum("ij,jk->ik", a, b)`` is ``a @ b``,
    ``einsum("bij,bjk->bik", a, b)`` a batched product, ``einsum("nchw,c->nhw", x, w)`` a weighted
    sum of channels. Subscripts are lowercase letters and ``...``; without ``->`` the output is the
    letters used once, in alphabetical order. A letter repeated within one operand (a diagonal or
    trace) is refused with an error. Gradients flow to every operand."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands or not all(isinstance(t, Tensor) for t in operands):
        raise TypeError("einsum: operands must be Tensors")
    check_same_device("einsum", *[t.data for t in operands])
    ins, out = _einsum_subscripts(equation, operands)
    sizes: dict = {}
    for k, (sub, t) in enumerate(zip(ins, operands)):
        for c, n in zip(sub, t.shape):
            if sub.count(c) > 1:
                raise ShapeError(f"einsum: subscript {c!r} repeats within operand {k} ({equation!r}): diagonals "
                                 "and traces are not supported")
            if n != 1 and sizes.get(c, 1) not in (1, n):  # size-1 dims broadcast, as in PyTorch
                raise ShapeError(f"einsum: subscript {c!r} has size {sizes[c]} in one operand and {n} in operand "
                                 f"{k} ({equation!r}, shapes {[t.shape for t in operands]})")
            if n != 1 or c not in sizes:
                sizes[c] = n
    for c in out:
        if c not in sizes:
            raise ShapeError(f"einsum: output subscript {c!r} appears in no operand ({equation!r})")
        if out.count(c) > 1:
            raise ShapeError(f"einsum: output subscript {c!r} appears twice ({equation!r})")
    dtype = np.result_type(*[t.dtype for t in operands])
    if any(t.dtype != dtype for t in operands):
        from ember.ops.elementwise import astype

        operands = tuple(astype(t, dtype) for t in operands)
    return Einsum.apply(*operands, ins=tuple(ins), out=out)

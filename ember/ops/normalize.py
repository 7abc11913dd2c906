"""The normalization op behind batch_norm, instance_norm, group_norm and layer_norm (ember/ops/norm.py).

All four are one fused op, :class:`Normalize`, on a view of the input chosen so
that statistics are taken over some axes (``axes``) and the affine parameters
broadcast along the others:

    batch_norm     (N, C, L)        stats over (0, 2)   weight (1, C, 1)     (Ioffe & Szegedy, 2015)
    instance_norm  (N, C, L)        stats over (2,)     weight (1, C, 1)     (Ulyanov et al., 2016)
    group_norm     (N, G, C/G, L)   stats over (2, 3)   weight (1, G, C/G, 1) (Wu & He, 2018)
    layer_norm     (M, K)           stats over (1,)     weight (1, K)        (Ba et al., 2016)

Forward: ``xhat = (x - mean) * invstd`` with the biased variance, ``y = xhat * w + b``.
Backward is the closed form, with M the number of elements per statistic and
``gh = g * w``:

    gx = invstd / M * (M * gh - sum(gh) - xhat * sum(gh * xhat))
    gw = sum(g * xhat),  gb = sum(g)      (over the axes the parameters broadcast along)

When ``w`` is constant over the statistic's axes (all but layer_norm) it is folded
into the per-statistic factor, and the two sums double as ``gw`` and ``gb``, so a
training step costs two reductions and a handful of elementwise passes. Sums use
``einsum``, which reduces NCHW over non-contiguous axes much faster than ``sum``.

Batch norm may end in ``relu(y + add)`` (batch_norm's ``add=`` and ``relu=``, which ResNet's
blocks use): the sum and the ReLU happen in the pass that writes y, the output is kept, and
backward first takes the gradient through the ReLU (``g * (y > 0)``, which is also add's
gradient), all inside this one op.
"""
from __future__ import annotations

import math

import numpy as np

from ember.autograd import Function
from ember.backend import empty_as, xp_of
from ember.ops import cuda_kernels, cuda_norm
from ember.ops.activation import _relu_rows
from ember.ops.shape import sum_to
from ember.parallel import for_slices
from ember.tensor import Tensor

_LETTERS = "abcdefgh"


def _sum(xp, axes: tuple, *arrays):
    """Sum of the product of ``arrays`` over ``axes``, keeping reduced dims as size 1."""
    a = arrays[0]
    if xp is not np and len(arrays) <= 2:  # GPU: one reduction kernel (einsum would transpose and copy)
        return cuda_norm.sum_product(axes, *arrays)
    ins = _LETTERS[:a.ndim]
    out = "".join(c for i, c in enumerate(ins) if i not in axes)
    r = xp.einsum(",".join([ins] * len(arrays)) + "->" + out, *arrays)
    return r.reshape([1 if i in axes else n for i, n in enumerate(a.shape)])


def _rows(a, n):
    """Rows n of an operand that broadcasts against the working array: a[n] when it has one row per
    row of the array, itself when it has a single row (per-channel vectors)."""
    return a[n] if a.ndim and a.shape[0] > 1 else a


class _ChannelRows:
    """Batch norm's (N, C, L) view when x lies channels-last in memory ((N, L, C), as convolutions return it).

    The op then runs on the same memory seen as a contiguous (N*L/k, k*C) array: each row
    holds k pixels' worth of channels, ~256 floats. Per-channel vectors are tiled k times to
    broadcast along a row, and sums over rows are folded over the k copies. Long rows keep
    NumPy's inner loops long: broadcasting (1, C) over (N*L, C) runs loops only C long
    (2.4x slower at C=16 than NCHW; tiled rows are 1.4x faster than NCHW).
    """

    def __init__(self, shape: tuple):
        N, self.C, L = shape
        self.k = math.gcd(N * L, max(1, 256 // self.C))

    @staticmethod
    def of(x, axes: tuple):
        """The row view for (N, C, L) x with statistics over (0, 2) in channels-last memory, else None."""
        if axes != (0, 2) or x.ndim != 3 or x.shape[1] == 1 or not x.transpose(0, 2, 1).flags.c_contiguous:
            return None
        return _ChannelRows(x.shape)

    def rows(self, a):
        """(N, C, L) -> (N*L/k, k*C): a view when a is channels-last, else one transposing copy."""
        return a.transpose(0, 2, 1).reshape(-1, self.k * self.C)

    def back(self, a2, shape: tuple):
        """Inverse of ``rows``: an (N, C, L)-shaped view of channels-last memory."""
        N, _, L = shape
        return a2.reshape(N, L, self.C).transpose(0, 2, 1)

    def tile(self, v):
        """A per-channel vector (any shape with C elements) -> (1, k*C)."""
        return xp_of(v).tile(v.reshape(1, self.C), (1, self.k))

    def fold(self, s):
        """Row sums (1, k*C) -> per-channel totals (1, C, 1)."""
        return s.reshape(self.k, self.C).sum(axis=0).reshape(1, self.C, 1)


def _axes_of(shape: tuple, view: tuple, axes: tuple):
    """``axes`` of ``view`` as axes of ``shape`` itself, when view only merges shape's trailing axes
    into its last one (batch norm's (N, C, H*W) of (N, C, H, W)) and that axis is among them
    (or view is shape); else None."""
    m = len(view) - 1
    if tuple(view[:m]) != tuple(shape[:m]):
        return None
    if m not in axes:
        return tuple(axes) if tuple(view) == tuple(shape) else None
    return tuple(a for a in axes if a != m) + tuple(range(m, len(shape)))


class Normalize(Function):
    """y = (x - mean) * invstd [* w] [+ b], statistics over ``axes`` (or given in ``stats``)."""

    def forward(self, x, *params, view: tuple, axes: tuple, eps: float, has_w: bool, has_b: bool, pshape: tuple,
                stats=None, sink=None, running=None, has_add: bool = False, relu: bool = False):
        xp = xp_of(x)
        # Reshaping inside the op (not with recorded reshapes) keeps one graph node per
        # normalization; views keep x's memory order (channels-last from a convolution).
        add = params[-1] if has_add else None  # relu(y + add) when asked (batch_norm's add= and relu=)
        params = params[:-1] if has_add else params
        self.shape, self.param_shapes = x.shape, [p.shape for p in params]
        self.count = math.prod([view[a] for a in axes])
        self.pshape = pshape if (has_w or has_b) else None
        self.has_w, self.has_b, self.view, self.axes = has_w, has_b, view, axes
        self.has_add, self.relu = has_add, relu
        self.y = None  # the output, kept when a ReLU is applied (its backward reads y > 0)
        self.fused = None
        full = _axes_of(x.shape, view, axes) if stats is None and xp is not np else None
        if full is not None:  # GPU batch norm in training: two launches (cuda_norm), on x as it is
            fused = self._fused_batch_norm(x, params[0] if has_w else None, params[-1] if has_b else None,
                                           full, eps, running, add, relu)
            if fused is not None:
                self.fused, y = fused
                self.fused_axes = full
                self.y = y if relu else None
                return y
        x = x.reshape(view)
        if add is not None:  # in the working layout, like x
            add = add.reshape(view)
        params = [p.reshape(pshape) for p in params]
        w = params[0] if has_w else None
        b = params[-1] if has_b else None
        self.cr = _ChannelRows.of(x, axes) if xp is np else None
        if self.cr is not None:  # channels-last batch norm: the same math on long rows
            cr = self.cr
            x, axes = cr.rows(x), (0,)
            add = cr.rows(add) if add is not None else None
            w, b = (cr.tile(p) if p is not None else None for p in (w, b))
        self.xc = None  # x - mean, saved by the elementwise passes below (the fused GPU kernels save xhat)
        # w constant along the statistic's axes (all but layer_norm): it folds into one factor per statistic.
        self.const_w = w is None or all(w.shape[i] == 1 for i in axes)
        if xp is not np and cuda_kernels.fits(x, *params):  # GPU: 2 reductions + 2 fused launches
            if stats is None:
                mean, var = cuda_norm.mean_var(x, axes, self.count)
                _keep_stats(mean, var, sink, running)
            else:
                mean, var = (xp.asarray(s, dtype=x.dtype) for s in stats)
            invstd, xhat, y = cuda_norm.normalize_forward(x, mean, var, eps, w, b)
            if add is not None:
                y += add
            if relu:
                xp.maximum(y, 0, out=y)
        else:
            # Five passes over memory: the sum, x - mean (saved for backward), the sum of its
            # squares, and y = (x - mean) * (invstd * w) + b in two. Saving x - mean rather than
            # xhat lets invstd fold into the per-statistic factors of both passes (one pass fewer
            # each way). The elementwise passes run on runs of rows (axis 0), shared among threads
            # next to shared convolutions (ember.parallel.for_slices); the sums stay whole.
            xc, y, xhat = xp.empty_like(x), xp.empty_like(x), None
            if stats is None:
                mean = self._total(_sum(xp, axes, x)) / x.dtype.type(self.count)  # per statistic
            else:
                mean, var = (xp.asarray(s, dtype=x.dtype) for s in stats)
            centre = self._tile(mean)
            for_slices(lambda n: xp.subtract(x[n], _rows(centre, n), out=xc[n]), len(x), x.size)
            if stats is None:
                var = self._total(_sum(xp, axes, xc, xc)) / x.dtype.type(self.count)
                _keep_stats(mean, var, sink, running)
            invstd = (1 / xp.sqrt(var + x.dtype.type(eps))).astype(x.dtype)
            inv = self._tile(invstd)
            factor = (inv if w is None else inv * w) if self.const_w else inv

            def affine(n):
                xp.multiply(xc[n], _rows(factor, n), out=y[n])
                if not self.const_w:
                    y[n] *= _rows(w, n)
                if b is not None:
                    y[n] += _rows(b, n)
                if add is not None:  # the residual sum and the ReLU while the rows are in cache
                    y[n] += add[n]
                if relu and (xp is not np or not _relu_rows(y[n], y[n])):
                    xp.maximum(y[n], 0, out=y[n])

            for_slices(affine, len(x), x.size)
            self.xc = xc
        self.xhat, self.invstd, self.w, self.axes = xhat, invstd, w, axes
        self.batch_stats = stats is None
        y = self._out(y)
        self.y = y if relu else None
        return y

    def _fused_batch_norm(self, x, w, b, axes: tuple, eps: float, running, add, relu: bool):
        """On a GPU, for statistics per channel (one kept axis; w and b, as given, one value per
        channel; float32/64 running buffers like x): ([x, its layout, w, sums (forward's, zeros for
        backward's, the statistics), whether a backward has run, y when relu], y) from
        cuda_norm.batch_norm_forward; else None. (Plain loops and tests: this runs for every batch norm of a GPU training step, whose
        host time is its cost.)"""
        params = [p for p in (w, b) if p is not None]
        fits = cuda_kernels.fits(x, *params) if add is None else cuda_kernels.fits(x, add, *params)
        lay = cuda_norm._channel_layout(x, axes) if fits else None
        if lay is None:
            return None
        C = x.shape[lay[1]]
        for p in params:
            if p.size != C or self.pshape[lay[1]] != C or not p.flags.c_contiguous:
                return None
        rm, rv, momentum, unbias, counter = running if running is not None else (None, None, 0.0, 1.0, None)
        bufs = [t.data for t in (rm, rv) if t is not None]
        for a in bufs:
            if a.dtype != x.dtype or not a.flags.c_contiguous or a.size != C:
                return None  # the generic path updates them
        if counter is not None and (counter.data.dtype != np.int64 or counter.data.shape not in ((), (1,))):
            return None
        if bufs:
            rm_a = rm.data if rm is not None else xp_of(x).empty(C, x.dtype)
            rv_a = rv.data if rv is not None else xp_of(x).empty(C, x.dtype)
            running = (rm_a, rv_a, momentum, unbias)
        wf = w if w is None or w.ndim == 1 else w.reshape(-1)
        bf = b if b is None or b.ndim == 1 else b.reshape(-1)
        y, sums = cuda_norm.batch_norm_forward(x, lay, wf, bf, eps, running if bufs else None,
                                               None if counter is None else counter.data, add, relu)
        for t in (rm, rv, counter):
            if t is not None:
                t._vc[0] += 1
        return [x, lay, wf, sums, False, y if relu else None], y

    def _fused_backward(self, gy):
        x, lay, w, sums, again, y = self.fused
        self.fused[4] = True  # backward sums into sums' zeros: a second one (retain_graph) zeroes them again
        glay = cuda_norm._channel_layout(gy, self.fused_axes)
        if glay is None:  # neither memory order: one copy
            gy = xp_of(gy).ascontiguousarray(gy)
            glay = cuda_norm._channel_layout(gy, self.fused_axes)
        want_add = self.has_add and self.needs_input_grad[-1]
        gx, gw, gb, gadd = cuda_norm.batch_norm_backward(gy, x, lay, glay, sums, w, again, y, want_add)
        grads = [gx if self.needs_input_grad[0] else None]
        for p, shape in zip([gw] * self.has_w + [gb] * self.has_b, self.param_shapes):
            grads.append(p if p.shape == shape else p.reshape(shape))
        if self.has_add:
            grads.append(gadd)
        return tuple(grads)

    def backward(self, gy):
        if self.fused is not None:
            return self._fused_backward(gy)
        if self.relu:  # through the ReLU first: the gradient of relu(y + add) with respect to y (and add)
            gy = _relu_grad(gy, self.y)
        grads = self._grads(gy)
        if self.has_add:
            grads.append(gy if self.needs_input_grad[-1] else None)
        return tuple(grads)

    def _grads(self, gy) -> list:
        """Gradients of x and the affine parameters from the gradient of y = xhat * w + b."""
        xp = xp_of(gy)
        xc, xhat, w, axes, m, cr = self.xc, self.xhat, self.w, self.axes, gy.dtype.type(self.count), self.cr
        gy = cr.rows(gy.reshape(self.view)) if cr else gy.reshape((xc if xhat is None else xhat).shape)
        const_w = self.const_w  # w folds into the per-statistic factor
        gh = gy if const_w else gy * w
        inv = self._tile(self.invstd)
        scale = inv * w if (const_w and w is not None) else inv
        if xhat is not None and xp is not np:  # GPU (fused kernels saved xhat): both sums in one pass
            t1, t2 = cuda_norm.sums_for_backward(axes, gh, xhat)
        elif xhat is None:  # sum(gh * xhat) = sum(gh * (x - mean)) * invstd, invstd constant per statistic
            t1 = self._total(_sum(xp, axes, gh))  # per statistic (per channel when channels-last)
            t2 = self._total(_sum(xp, axes, gh, xc)) * self.invstd
        else:
            t1, t2 = self._total(_sum(xp, axes, gh)), self._total(_sum(xp, axes, gh, xhat))
        s1, s2 = self._tile(t1), self._tile(t2)
        grads = []
        if self.needs_input_grad[0]:
            gx = xp.empty_like(gy)  # in x's memory order (channels-last stays channels-last)
            if self.batch_stats and xhat is not None and xp is not np and cuda_kernels.fits(gh, xhat):
                cuda_norm.normalize_backward(gh, xhat, s1, s2, scale, self.count, gx)  # GPU: one fused launch
            elif self.batch_stats:  # gx = (gh - s1/m - xhat * s2/m) * scale, with one allocation
                centred, k1, k2 = (xc, s1 / m, inv * s2 / m) if xhat is None else (xhat, s1 / m, s2 / m)

                def part(n):  # runs of rows, shared among threads as in forward
                    xp.multiply(centred[n], _rows(k2, n), out=gx[n])
                    gx[n] += _rows(k1, n)
                    xp.subtract(_rows(gh, n), gx[n], out=gx[n])
                    gx[n] *= _rows(scale, n)

                for_slices(part, len(gx), gx.size)
            else:  # fixed statistics (eval-mode batch norm): only the affine map remains
                xp.multiply(gh, scale, out=gx)
            grads.append(self._out(gx))
        else:
            grads.append(None)
        if self.has_w:
            if const_w:
                gw = sum_to(t2, self.pshape)
            else:  # layer norm: xhat varies along the axes the sum runs over
                gw = sum_to(_sum(xp, self._others(), gy, xc * inv if xhat is None else xhat), self.pshape)
            grads.append(gw.astype(gy.dtype, copy=False).reshape(self.param_shapes[0]))
        if self.has_b:
            gb = sum_to(t1, self.pshape) if const_w else sum_to(_sum(xp, self._others(), gy), self.pshape)
            grads.append(gb.astype(gy.dtype, copy=False).reshape(self.param_shapes[-1]))
        return grads

    def _tile(self, v):
        """A per-statistic array in the working layout: tiled along channel rows, else itself."""
        return self.cr.tile(v) if self.cr else v

    def _total(self, s):
        """Sums over the statistic's axes; with channel rows, folded to per-channel (1, C, 1)."""
        return self.cr.fold(s) if self.cr else s

    def _out(self, a):
        """A working-layout array back to the input's shape."""
        return (self.cr.back(a, self.view) if self.cr else a).reshape(self.shape)

    def _others(self) -> tuple:
        """Axes the parameters broadcast along."""
        return tuple(i for i, n in enumerate(self.pshape) if n == 1)


def _relu_grad(gy, y):
    """``gy * (y > 0)``: the gradient through a ReLU whose output is y, in y's memory order."""
    xp = xp_of(gy)
    if xp is not np and cuda_kernels.fits(gy, y):  # GPU: one launch
        return cuda_kernels.relu_backward(gy, y)
    g = empty_as(y, gy.dtype)
    for_slices(lambda n: xp.multiply(gy[n], y[n] > 0, out=g[n]), len(y), y.size)
    return g


def _keep_stats(mean, var, sink, running) -> None:
    """Hand batch statistics to ``sink`` and move the ``running`` buffers (see ``_normalize``)."""
    if sink is not None:
        sink["mean"], sink["var"] = mean, var
    if running is not None:
        rm, rv, momentum, unbias, counter = running
        if counter is not None:
            counter.data += 1
            counter._vc[0] += 1
        if rm is not None:
            _update(rm, mean, momentum)
        if rv is not None:
            _update(rv, var * var.dtype.type(unbias), momentum)


def _update(buffer: Tensor, value, momentum: float) -> None:
    """running = (1 - momentum) * running + momentum * value, in place (bumps the version)."""
    buf = buffer.data
    if cuda_kernels.fits(buf, value):  # GPU: one fused launch instead of four
        cuda_norm.running_update(buf, value, momentum)
        buffer._vc[0] += 1
        return
    buf *= 1 - momentum
    buf += (momentum * value).reshape(buf.shape).astype(buf.dtype, copy=False)
    buffer._vc[0] += 1

"""The input of a lowered convolution pass, zero-padded a chunk of images at a time (``Padded``),
and lowered along the width straight from the unpadded input for the width-lowered slabs
(``Padded.width_plan``, ``Padded.width_rows``); ``_unpad`` is the inverse of padding a whole array.
Used by the GEMM passes of ember.ops.conv_lowering, which explains when each lowering runs.
"""
from __future__ import annotations

import numpy as np

from ember.backend import xp_of
from ember.ops import cuda_kernels
from ember.ops.im2col import Geometry, zero_pad
from ember.ops.im2row import WidthRows, channels_last, from_nhwc, im2row, pad_nhwc_into


def _scratch(buf, shape, dtype, xp):
    """A view of shape ``shape`` on the front of a reused flat buffer (allocated on first use)."""
    size = int(np.prod(shape))
    if buf is None:
        buf = xp.empty(size, dtype=dtype)
    return buf, buf[:size].reshape(shape)


class Padded:
    """x (N, C, H, W) zero-padded by pads = (t, b, l, r) in a lowering's layout, made one chunk
    of images at a time (``chunk``) rather than all at once.

    Rows read it channels-last, ``shape`` (N, Hp, Wp, C); columns channels-first, (N, C, Hp, Wp).
    Each chunk is padded into a small reused buffer right before its lowering reads it, so the
    padded copy stays in cache instead of making a round trip through memory for the whole
    batch (ResNet-20's padded copies took ~12 ms of a ~230 ms step that way), and backward
    keeps x itself instead of a padded copy. An NCHW x that rows lower is made channels-last
    once here, so that forward and backward do not both transpose it. On a GPU, rows are
    gathered straight from x in either memory order (``lowered_rows``): no padded copy at all.
    """

    def __init__(self, x, pads: tuple, rows: bool):
        self.gather = rows and cuda_kernels.fits(x) and x.ndim == 4 and x.size < 2 ** 31  # int32 strides
        self.x = channels_last(x) if rows and not self.gather else x
        self.pads, self.rows, self.dtype = pads, rows, x.dtype
        N, C, H, W = x.shape
        Hp, Wp = H + pads[0] + pads[1], W + pads[2] + pads[3]
        self.shape = (N, Hp, Wp, C) if rows else (N, C, Hp, Wp)
        self._width = None  # (geometry, its ``width_plan``) of the last call

    def chunk(self, n0: int, n1: int, buf=None):
        """(buf, padded images n0:n1): a view of x when there is nothing to pad, else a copy into
        ``buf``, a reused flat buffer (allocated on first use: make the first chunk the largest)."""
        x = self.x
        if not any(self.pads):
            return buf, (x.transpose(0, 2, 3, 1) if self.rows else x)[n0:n1]
        buf, out = _scratch(buf, (n1 - n0,) + self.shape[1:], self.dtype, xp_of(x))
        if self.rows:
            return buf, pad_nhwc_into(x[n0:n1], self.pads, out)
        return buf, zero_pad(x[n0:n1], self.pads, out=out)

    def lowered_rows(self, n0: int, n1: int, g: Geometry, groups: int, pbuf=None, buf=None):
        """(pbuf, rows (nb*OH*OW, G, KH*KW*C/G) of padded images n0:n1): ``im2row`` of ``chunk``
        (pbuf: ``chunk``'s reused buffer), or on a GPU one gather launch from x
        (``cuda_kernels.im2row``). The rows go into ``buf`` when given (as ``im2row``'s out)."""
        if self.gather:
            return pbuf, cuda_kernels.im2row(self.x[n0:n1], g, groups, self.pads, out=buf)
        pbuf, xc = self.chunk(n0, n1, pbuf)
        return pbuf, im2row(xc, g, groups, out=buf)

    def width_plan(self, g: Geometry):
        """How ``width_rows`` lowers for geometry g: (lowerings, rows, first), or None where padding
        wider than the kernel leaves too many border columns (then full rows are lowered).

        The padded rows are lowered phase by phase of the height's stride (all of them when it is
        1; for stride 2 the even rows, then the odd ones), each by an ``im2row.WidthRows`` of x's
        rows in that phase: ``lowerings`` holds (WidthRows, the phase's first row in the wide
        rows), ``rows`` is how many wide rows an image has, and kernel row kh's slab starts at
        wide row ``first[kh]``. Made on first use (two threads may both make it, the same) and kept
        for backward.
        """
        if self._width is not None and self._width[0] == g:
            return self._width[1]
        x = self.x.transpose(0, 2, 3, 1)
        t, H = self.pads[0], x.shape[1]
        need: dict = {}  # phase -> how many of its rows the slabs read
        for kh in range(g.KH):
            phase, q = divmod(kh * g.dh, g.sh)[::-1]
            need[phase] = max(need.get(phase, 0), q + g.OH)
        lowerings, start, plan = [], {}, None
        rows = 0
        for phase in sorted(need):
            n = need[phase]  # the phase's rows j in [0, n) are padded rows phase + sh*j, x rows phase + sh*j - t
            j0 = min(n, max(0, -(-(t - phase) // g.sh)))
            j1 = max(j0, min(n, (H - 1 + t - phase) // g.sh + 1))
            xs = x[:, phase + g.sh * j0 - t:phase + g.sh * j1 - t:g.sh] if j1 > j0 else x[:, :0]
            lowering = WidthRows(xs, (j0, n - j1) + self.pads[2:], g._replace(KH=1, dh=1, sh=1, OH=n))
            if not lowering.fits:
                break
            lowerings.append((lowering, rows))
            start[phase], rows = rows, rows + n
        else:
            first = [start[(kh * g.dh) % g.sh] + (kh * g.dh) // g.sh for kh in range(g.KH)]
            plan = (lowerings, rows, first)
        self._width = (g, plan)
        return plan

    def width_rows(self, n0: int, n1: int, g: Geometry, buf=None):
        """Rows lowering that copies KH times less: padded images n0:n1 lowered along the width
        only, (nb, rows*OW, KW*C) (one group), into ``buf`` when given, and where each kernel
        row's slab starts (``width_plan``).

        A wide row holds the KW-window of a padded row at one output column, so kernel row kh
        reads the slab ``wide[n, first[kh]*OW : (first[kh] + OH)*OW]``, whose row oh*OW + ow is
        exactly its operand for output (oh, ow): the padded row oh*sh + kh*dh. The rows are
        copied straight from x (``im2row.WidthRows``: no padded copy).
        """
        lowerings, rows, first = self.width_plan(g)
        nb, KW, C = n1 - n0, g.KW, self.shape[3]
        o = _scratch(None if buf is None else buf.reshape(-1), (nb, rows, g.OW, KW, C), self.dtype, xp_of(self.x))[1]
        for lowering, r0 in lowerings:
            lowering.lower_into(n0, n1, o[:, r0:r0 + lowering.Hp])
        return o.reshape(nb, rows * g.OW, KW * C), first


def _unpad(xpad, pads: tuple, rows: bool):
    """Inverse of ``Padded``: the unpadded region of a whole padded array as a contiguous (N, C, H, W) array."""
    if rows:
        return from_nhwc(xpad, pads)
    t, b, l, r = pads
    Hp, Wp = xpad.shape[2:]
    return xp_of(xpad).ascontiguousarray(xpad[:, :, t:Hp - b, l:Wp - r]) if any(pads) else xpad

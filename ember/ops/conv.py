"""Convolutions: conv1d, conv2d, conv_transpose2d (and F.unfold / F.fold from ember.ops.im2col).

How conv2d is lowered to GEMMs (rows or columns, chunks of the batch): see
ember/ops/conv_lowering.py.

conv_transpose2d is the adjoint of conv2d: its forward is conv2d's data gradient
and its backward uses conv2d's forward and weight gradient, so the three GEMM
helpers in ember.ops.conv_lowering serve both ops.
"""
from __future__ import annotations

import numpy as np

from ember.autograd import Function
from ember.backend import check_same_device, is_channels_last
from ember.errors import DTypeError, ShapeError
from ember.ops.conv_lowering import (
    _bias_grad, _data_and_weight_grads, _gemm_data_grad, _gemm_forward, _gemm_weight_grad, _lowered_weight,
    _weight_from_lowered, rows_add_back, rows_pay,
)
from ember.ops import cuda_conv
from ember.ops.conv_padded import Padded, _unpad
from ember.ops.im2col import Geometry, fold, make_geometry, pair, unfold  # noqa: F401  (F.fold/unfold)
from ember.ops.im2row import channels_last
from ember.tensor import Tensor

__all__ = ["conv1d", "conv2d", "conv_transpose2d", "unfold", "fold"]


# ---- conv2d ------------------------------------------------------------------------------------------
class Conv2d(Function):
    """2-D cross-correlation with zero padding, stride, dilation and groups (bias optional)."""

    def forward(self, x, w, b=None, *, g: Geometry, groups: int):
        need = self.needs_input_grad or (False, False, False)
        pads = (g.pt, g.pb, g.pl, g.pr)
        self.g, self.groups, self.pads, self.xshape, self.wshape = g, groups, pads, x.shape, w.shape
        self.gpu = cuda_conv.fits(x, w, b)
        if self.gpu:  # one gather and one cuBLAS call per pass (ember/ops/cuda_conv.py)
            self.x, self.w = (x if need[1] else None), (w if need[0] else None)
            self.x_last = is_channels_last(x)
            return cuda_conv.forward(x, w, b, g, groups, pads)
        rows = rows_pay(x.shape[1] // groups, w.shape[3])
        src = Padded(x, pads, rows)  # padded a chunk at a time by the GEMM passes
        y = _gemm_forward(src, _lowered_weight(w, groups, rows), g, b, rows)  # rows: channels-last memory
        # Save only what backward reads: the input (in its lowering's layout) for gw, w for gx.
        self.src = src if need[1] else None
        self.w = w if need[0] else None
        self.rows = rows
        return y

    def backward(self, gy):
        if self.gpu:
            return self._backward_gpu(gy)
        # Rows read gy channels-last: transpose it once here (a no-op when it already is, as
        # between two convolutions), so that both passes below share the copy. Columns read
        # it as it lies (the data gradient makes its own NCHW copy when it needs one).
        gy = channels_last(gy) if self.rows else gy
        need, g, G = self.needs_input_grad, self.g, self.groups
        gx = gwk = gb = None
        as_conv = self._data_grad_as_conv(gy) if need[0] else None
        if as_conv is not None and need[1] and as_conv[3] == self.rows:
            # Both passes lower their chunk of images in turn on one thread (one parallel region).
            gx, gwk = _data_and_weight_grads(*as_conv[:3], self.src, gy, g, G, self.rows)
        else:
            if need[0]:
                gx = self._data_grad(gy) if as_conv is None else _gemm_forward(*as_conv[:3], None, as_conv[3])
            if need[1]:
                gwk = _gemm_weight_grad(self.src, gy, g, G, self.rows)
        gw = _weight_from_lowered(gwk, self.wshape, self.rows) if gwk is not None else None
        if len(need) > 2 and need[2]:
            gb = _bias_grad(gy)
        return (gx, gw) if len(need) == 2 else (gx, gw, gb)

    def _backward_gpu(self, gy):
        need, g, G, pads = self.needs_input_grad, self.g, self.groups, self.pads
        gy = cuda_conv.gy_channels_last(gy)  # its memory the (N*OH*OW, OC) matrix both passes read
        gx = cuda_conv.data_grad(gy, self.w, g, G, pads, self.xshape, self.x_last) if need[0] else None
        gw = cuda_conv.weight_grad(self.x, gy, g, G, pads, self.wshape) if need[1] else None
        if len(need) == 2:
            return gx, gw
        return gx, gw, cuda_conv.bias_grad(gy) if need[2] else None

    def _data_grad_as_conv(self, gy):
        """With stride 1, gx is itself a stride-1 convolution: gy, zero-padded by d*(K-1) - p,
        correlated with the spatially flipped weight whose in/out channels are swapped. That
        lowers gy (KH*KW*OC/G floats per pixel) instead of adding back a lowered gradient
        (KH*KW*C/G per pixel) with KH*KW slice-adds: ~2x cheaper when C >= OC (bench/bench_conv.py),
        slower for a widening layer. Returns (padded gy, lowered flipped weight, geometry, rows),
        or None where it does not apply (a stride, a widening layer, padding beyond the kernel's reach)."""
        g, G, w = self.g, self.groups, self.w
        OC, Cg, KH, KW = w.shape
        N, C, H, W = self.xshape
        reach = (g.dh * (KH - 1), g.dh * (KH - 1), g.dw * (KW - 1), g.dw * (KW - 1))
        gpad = tuple(r - p for r, p in zip(reach, self.pads))
        if (g.sh, g.sw) != (1, 1) or min(gpad) < 0 or C < OC:
            return None
        rows = rows_pay(OC // G, KW)
        g2 = Geometry(KH, KW, 1, 1, g.dh, g.dw, *gpad, H, W)
        wt = w.reshape(G, OC // G, Cg, KH, KW)[:, :, :, ::-1, ::-1].transpose(0, 2, 1, 3, 4)
        return Padded(gy, gpad, rows), _lowered_weight(wt.reshape(C, OC // G, KH, KW), G, rows), g2, rows

    def _data_grad(self, gy):
        """gx by adding back the lowered gradient (``_gemm_data_grad``), then cropping the padding.
        The add-back takes rows only from 8 channels per group (``rows_add_back``), even where the
        forward lowered rows: then gx comes back NCHW."""
        N, C, H, W = self.xshape
        rows = self.rows and rows_add_back(C // self.groups)
        t, b, l, r = self.pads
        padded = (N, H + t + b, W + l + r, C) if rows else (N, C, H + t + b, W + l + r)
        gxpad = _gemm_data_grad(gy, _lowered_weight(self.w, self.groups, rows), self.g, padded, rows)
        return _unpad(gxpad, self.pads, rows)


def _check_operands(op: str, x: Tensor, w: Tensor, b, nd: int) -> None:
    for name, t in (("input", x), ("weight", w)) + ((("bias", b),) if b is not None else ()):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
    if x.ndim != nd + 2:
        raise ShapeError(f"{op}: expected a {nd + 1}-D (unbatched) or {nd + 2}-D input, got shape {x.shape}")
    if w.ndim != nd + 2:
        raise ShapeError(f"{op}: weight must be {nd + 2}-D, got shape {w.shape}")
    if x.dtype.kind != "f" or x.dtype != w.dtype or (b is not None and b.dtype != x.dtype):
        raise DTypeError(
            f"{op}: input, weight and bias must share one floating dtype, got input {x.dtype}, "
            f"weight {w.dtype}" + (f", bias {b.dtype}" if b is not None else "")
        )
    check_same_device(op, x.data, w.data, *((b.data,) if b is not None else ()))


def _padding4(op: str, padding, k, d, s) -> tuple:
    """(top, bottom, left, right) from an int, a pair, "valid" or "same" (asymmetric if needed)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding != "same":
            raise ValueError(f"{op}: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
        if s != (1, 1):
            raise ValueError(f"{op}: padding='same' needs stride 1, got stride {s}")
        th, tw = d[0] * (k[0] - 1), d[1] * (k[1] - 1)
        return (th // 2, th - th // 2, tw // 2, tw - tw // 2)  # extra pixel at the end, as PyTorch
    ph, pw = pair(op, "padding", padding, minimum=0)
    return (ph, ph, pw, pw)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """2-D convolution (cross-correlation, as in PyTorch).

    Args:
        input: (N, C, H, W), or (C, H, W) unbatched.
        weight: (OC, C/groups, KH, KW).
        bias: (OC,) or None.
        stride, dilation: int or (h, w).
        padding: int, (h, w), "valid" or "same" (zeros; other modes: ember.ops.padding.pad_mode first).
        groups: C and OC must be divisible by it; groups == C is a depthwise convolution.

    Returns:
        (N, OC, OH, OW) with OH = floor((H + 2*ph - dh*(KH-1) - 1) / sh) + 1 (same for W).
    """
    if isinstance(input, Tensor) and input.ndim == 3:
        return conv2d(input.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    _check_operands("conv2d", input, weight, bias, 2)
    g = _conv2d_geometry(input, weight, bias, stride, padding, dilation, groups)
    inputs = (input, weight) if bias is None else (input, weight, bias)
    return Conv2d.apply(*inputs, g=g, groups=groups)


_GEOMETRIES: dict = {}  # conv2d's checked geometries, by shapes and arguments


def _conv2d_geometry(input, weight, bias, stride, padding, dilation, groups) -> Geometry:
    """The checked geometry of a conv2d call. A layer asks the same every step, so each is
    worked out once per shapes and arguments and then looked up (the checks and the geometry
    cost ~10 us of host time per call, which a GPU step that waits on its host feels)."""
    key = (input.shape, weight.shape, bias is None or bias.shape, stride, padding, dilation, groups)
    try:
        return _GEOMETRIES[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable argument (a list): checked every call
        key = None
    k, s, d = weight.shape[2:], pair("conv2d", "stride", stride), pair("conv2d", "dilation", dilation)
    _check_channels("conv2d", input, weight, bias, groups, in_dim=1, out_channels=weight.shape[0])
    p = _padding4("conv2d", padding, k, d, s)
    g = make_geometry(input.shape[2], input.shape[3], k, s, d, p)
    _check_extent("conv2d", input, weight, p, k, d, g)
    if key is not None and len(_GEOMETRIES) < 4096:
        _GEOMETRIES[key] = g
    return g


def _check_channels(op: str, x: Tensor, w: Tensor, b, groups, in_dim: int, out_channels: int) -> None:
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    C = x.shape[1]
    expects = w.shape[in_dim] * groups if in_dim == 1 else w.shape[0]
    if C != expects:
        per = f" ({w.shape[in_dim]} per group x {groups} groups)" if groups > 1 and in_dim == 1 else ""
        raise ShapeError(
            f"{op}: input has {C} channels but weight expects {expects}{per} "
            f"(input {x.shape}, weight {w.shape})"
        )
    if C % groups or out_channels % groups:
        raise ShapeError(
            f"{op}: groups={groups} must divide both the input channels ({C}) and output channels "
            f"({out_channels}) (weight {w.shape})"
        )
    if b is not None and b.shape != (out_channels,):
        raise ShapeError(f"{op}: bias must have shape ({out_channels},), got {b.shape} (weight {w.shape})")


def _check_extent(op, x, w, p, k, d, g) -> None:
    if g.OH < 1 or g.OW < 1:
        extent = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
        padded = (x.shape[2] + p[0] + p[1], x.shape[3] + p[2] + p[3])
        raise ShapeError(
            f"{op}: input spatial size {x.shape[2:]} (padded {padded}) is smaller than the kernel's "
            f"extent {extent} (input {x.shape}, weight {w.shape}, dilation {d})"
        )


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """1-D convolution: input (N, C, L) or (C, L), weight (OC, C/groups, K) -> (N, OC, OL).

    Runs as conv2d on a height-1 image, so it shares conv2d's code and speed.
    """
    if isinstance(input, Tensor) and input.ndim == 2:
        return conv1d(input.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    _check_operands("conv1d", input, weight, bias, 1)
    _check_channels("conv1d", input, weight, bias, groups, in_dim=1, out_channels=weight.shape[0])
    s, d = _single("conv1d", "stride", stride), _single("conv1d", "dilation", dilation)
    if isinstance(padding, str):
        p = padding
        if padding == "same" and s != 1:
            raise ValueError(f"conv1d: padding='same' needs stride 1, got stride {s}")
    else:
        p = (0, _single("conv1d", "padding", padding, minimum=0))
    extent, padded = d * (weight.shape[2] - 1) + 1, input.shape[2] + (0 if isinstance(p, str) else 2 * p[1])
    if padded < extent and p != "same":
        raise ShapeError(
            f"conv1d: input length {input.shape[2]} (padded {padded}) is smaller than the kernel's extent "
            f"{extent} (input {input.shape}, weight {weight.shape}, dilation {d})"
        )
    y = conv2d(input.unsqueeze(2), weight.unsqueeze(2), bias, (1, s), p, (1, d), groups)
    return y.squeeze(2)


def _single(op: str, name: str, v, minimum: int = 1) -> int:
    if isinstance(v, (tuple, list)) and len(v) == 1:
        v = v[0]
    if not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{op}: {name} must be an int >= {minimum}, got {v!r}")
    return int(v)


# ---- conv_transpose2d ----------------------------------------------------------------------------------
class ConvTranspose2d(Function):
    """The adjoint of conv2d ("deconvolution"): scatter each input pixel through the kernel.

    With w (C, OC/G, KH, KW) seen as a conv2d weight from the OC-channel output back to
    the C-channel input, conv_transpose2d's forward is exactly conv2d's data gradient,
    its data gradient is conv2d's forward, and its weight gradient is conv2d's weight
    gradient with the roles of input and output swapped.
    """

    def forward(self, x, w, b=None, *, g: Geometry, groups: int, full: tuple, crop: tuple):
        N, C = x.shape[:2]
        OC = w.shape[1] * groups
        rows = rows_add_back(OC // groups)  # w is the conv2d weight from the full output (OC channels) back to x
        wk = _lowered_weight(w, groups, rows)
        yfull = _gemm_data_grad(x, wk, g, (N,) + (full + (OC,) if rows else (OC,) + full), rows)
        (ph, pw) = crop
        y = _unpad(yfull, (ph, ph, pw, pw), rows)
        if b is not None:
            y += b.reshape(1, OC, 1, 1)
        need = self.needs_input_grad or (False, False, False)
        self.x = x if need[1] else None
        self.w = w if need[0] else None
        self.g, self.groups, self.full, self.crop, self.wshape = g, groups, full, crop, w.shape
        return y

    def backward(self, gy):
        need, g, G, (ph, pw) = self.needs_input_grad, self.g, self.groups, self.crop
        (Hf, Wf), (OH, OW) = self.full, gy.shape[2:]
        rows = rows_pay(gy.shape[1] // G, self.wshape[3])
        gfull = Padded(gy, (ph, Hf - OH - ph, pw, Wf - OW - pw), rows)  # the cropped border had no gradient
        gx = gw = gb = None
        if need[0]:
            gx = _gemm_forward(gfull, _lowered_weight(self.w, G, rows), g, None, rows)
        if need[1]:
            gwk = _gemm_weight_grad(gfull, self.x, g, G, rows)
            gw = _weight_from_lowered(gwk, self.wshape, rows)
        if len(need) > 2 and need[2]:
            gb = _bias_grad(gy)
        return (gx, gw) if len(need) == 2 else (gx, gw, gb)


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """Transposed 2-D convolution (PyTorch's argument order).

    Args:
        input: (N, C, H, W) or (C, H, W).
        weight: (C, OC/groups, KH, KW) (note: in-channels first).
        padding: int or pair; crops that many pixels from each side of the full output
            (so it undoes a conv2d with the same padding).
        output_padding: extra rows/cols added on the bottom/right (must be < stride or < dilation).

    Returns:
        (N, OC, OH, OW), OH = (H-1)*sh - 2*ph + dh*(KH-1) + oph + 1.
    """
    if isinstance(input, Tensor) and input.ndim == 3:
        return conv_transpose2d(input.unsqueeze(0), weight, bias, stride, padding, output_padding, groups,
                                dilation).squeeze(0)
    op = "conv_transpose2d"
    _check_operands(op, input, weight, bias, 2)
    _check_channels(op, input, weight, bias, groups, in_dim=0, out_channels=weight.shape[1] * groups)
    s, d = pair(op, "stride", stride), pair(op, "dilation", dilation)
    p, op_ = pair(op, "padding", padding, minimum=0), pair(op, "output_padding", output_padding, minimum=0)
    for i in range(2):
        if op_[i] >= s[i] and op_[i] >= d[i]:
            raise ValueError(f"{op}: output_padding {op_} must be smaller than stride {s} or dilation {d}")
    H, W = input.shape[2:]
    k = weight.shape[2:]
    full = tuple((n - 1) * s[i] + d[i] * (k[i] - 1) + 1 + op_[i] for i, n in enumerate((H, W)))
    if full[0] - 2 * p[0] < 1 or full[1] - 2 * p[1] < 1:
        raise ShapeError(f"{op}: padding {p} removes the whole output (uncropped size {full}, input {input.shape})")
    g = Geometry(k[0], k[1], s[0], s[1], d[0], d[1], 0, 0, 0, 0, H, W)
    inputs = (input, weight) if bias is None else (input, weight, bias)
    return ConvTranspose2d.apply(*inputs, g=g, groups=groups, full=full, crop=p)

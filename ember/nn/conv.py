"""Convolution layers: Conv1d, Conv2d, ConvTranspose2d, LocallyConnected2d, Unfold, Fold.

Parameter names, shapes, defaults and initialization follow PyTorch, so a torch
state dict loads unchanged: Conv weight (out, in/groups, *kernel), ConvTranspose
weight (in, out/groups, *kernel), bias (out,), all drawn by ``init.default_init_``
(kaiming_uniform_(a=sqrt(5)) and U(+-1/sqrt(fan_in)) for the bias).
"""
from __future__ import annotations

import math

import numpy as np

from ember.backend import asnumpy
from ember.nn import init
from ember.nn.module import Module, Parameter
from ember.ops.conv import _padding4, conv1d, conv2d, conv_transpose2d
from ember.ops.im2col import fold, make_geometry, pair, unfold
from ember.ops.linalg import matmul
from ember.ops.padding import pad_mode
from ember.ops.shape import permute, reshape
from ember.tensor import Tensor

__all__ = ["Conv1d", "Conv2d", "ConvTranspose2d", "LocallyConnected2d", "Unfold", "Fold"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _ntuple(op: str, name: str, v, n: int, minimum: int = 1) -> tuple:
    if n == 2:
        return pair(op, name, v, minimum)
    t = tuple(v) if isinstance(v, (tuple, list)) else (v,)
    if len(t) != 1 or not isinstance(t[0], (int, np.integer)) or t[0] < minimum:
        raise ValueError(f"{op}: {name} must be an int >= {minimum}, got {v!r}")
    return (int(t[0]),)


class _ConvNd(Module):
    """Shared constructor and checks of Conv1d/Conv2d/ConvTranspose2d."""

    _nd = 2
    _transposed = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", output_padding=0,
                 device=None, dtype=None, generator=None):
        super().__init__()
        op, nd = type(self).__name__, self._nd
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{op}: {name} must be a positive int, got {v!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{op}: groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"{op}: padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = _ntuple(op, "kernel_size", kernel_size, nd)
        self.stride = _ntuple(op, "stride", stride, nd)
        self.dilation = _ntuple(op, "dilation", dilation, nd)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{op}: padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"{op}: padding='same' needs stride 1, got stride {self.stride}")
            self.padding = padding
        else:
            self.padding = _ntuple(op, "padding", padding, nd, minimum=0)
        self.output_padding = _ntuple(op, "output_padding", output_padding, nd, minimum=0)
        self.padding_mode = padding_mode
        dtype = np.dtype(dtype or np.float32)
        if self._transposed:
            shape = (self.in_channels, self.out_channels // groups) + self.kernel_size
        else:
            shape = (self.out_channels, self.in_channels // groups) + self.kernel_size
        self.weight = Parameter(np.empty(shape, dtype=dtype))
        if bias:
            self.bias = Parameter(np.empty((self.out_channels,), dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters(generator=generator)
        if device is not None:
            self.to(device)

    def reset_parameters(self, generator=None) -> None:
        init.default_init_(self.weight, self.bias, generator=generator)

    def _pad4(self) -> tuple:
        """(top, bottom, left, right) padding of a 2-D (or height-1) input."""
        k, d, s = self.kernel_size, self.dilation, self.stride
        if self._nd == 1:
            k, d, s = (1,) + k, (1,) + d, (1,) + s
        padding = self.padding if isinstance(self.padding, str) else (
            (0,) + self.padding if self._nd == 1 else self.padding)
        return _padding4(type(self).__name__, padding, k, d, s)

    def _mode_pad(self, x: Tensor) -> Tensor:
        """Pad with padding_mode (the conv itself then runs unpadded), as PyTorch does."""
        t, b, l, r = self._pad4()
        pad = (l, r) if self._nd == 1 else (l, r, t, b)
        return pad_mode(x, pad, self.padding_mode)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        zero = (0,) * self._nd
        if self.padding != zero:
            s += f", padding={self.padding!r}" if isinstance(self.padding, str) else f", padding={self.padding}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.output_padding != zero:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s


class Conv2d(_ConvNd):
    """2-D convolution layer: (N, C_in, H, W) -> (N, C_out, OH, OW) (or unbatched (C, H, W)).

    Args follow torch.nn.Conv2d: kernel_size, stride, padding (int, pair, "same", "valid"),
    dilation, groups (groups == in_channels: depthwise), bias, padding_mode ("zeros",
    "reflect", "replicate", "circular").
    weight: (out_channels, in_channels/groups, KH, KW); bias: (out_channels,).
    """

    _nd = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None,
                 generator=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device=device, dtype=dtype, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        if self.padding_mode != "zeros":
            return conv2d(self._mode_pad(x), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Conv1d(_ConvNd):
    """1-D convolution layer: (N, C_in, L) -> (N, C_out, OL); weight (out, in/groups, K)."""

    _nd = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None,
                 generator=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device=device, dtype=dtype, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        s, d = self.stride[0], self.dilation[0]
        if self.padding_mode != "zeros":
            return conv1d(self._mode_pad(x), self.weight, self.bias, s, 0, d, self.groups)
        p = self.padding if isinstance(self.padding, str) else self.padding[0]
        return conv1d(x, self.weight, self.bias, s, p, d, self.groups)


class ConvTranspose2d(_ConvNd):
    """Transposed 2-D convolution: (N, C_in, H, W) -> (N, C_out, OH, OW).

    OH = (H-1)*stride - 2*padding + dilation*(KH-1) + output_padding + 1. Weight
    (in_channels, out_channels/groups, KH, KW). ``forward(x, output_size=None)``: an
    output_size (H, W) (or a full shape) picks the output_padding that reaches it.
    """

    _transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, padding_mode: str = "zeros", device=None,
                 dtype=None, generator=None):
        if padding_mode != "zeros":
            raise ValueError(f"ConvTranspose2d: only padding_mode='zeros' is supported, got {padding_mode!r}")
        if isinstance(padding, str):
            raise ValueError(f"ConvTranspose2d: padding must be an int or a pair, got {padding!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, output_padding, device=device, dtype=dtype, generator=generator)

    def forward(self, x: Tensor, output_size=None) -> Tensor:
        op_ = self.output_padding
        if output_size is not None:
            op_ = self._output_padding(x, output_size)
        return conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, op_, self.groups,
                                self.dilation)

    def _output_padding(self, x: Tensor, output_size) -> tuple:
        size = tuple(int(n) for n in output_size)[-2:]
        out = []
        for i in range(2):
            n = x.shape[-2 + i]
            smallest = (n - 1) * self.stride[i] - 2 * self.padding[i] + self.dilation[i] * (self.kernel_size[i] - 1) + 1
            extra = size[i] - smallest
            if not 0 <= extra < max(self.stride[i], self.dilation[i]):
                raise ValueError(
                    f"ConvTranspose2d: output_size {size} is not reachable from input {x.shape}: dim {i} must lie "
                    f"in [{smallest}, {smallest + max(self.stride[i], self.dilation[i]) - 1}]"
                )
            out.append(extra)
        return tuple(out)


class LocallyConnected2d(Module):
    """Like Conv2d, but every output location has its own filter (no weight sharing).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation: as Conv2d.
        input_size: (H, W) of the inputs it will see (fixes the number of locations).
    Parameters:
        weight: (OH*OW, out_channels, in_channels*KH*KW): row l is the filter of output
            location l = oh*OW + ow, in F.unfold's column order (c, kh, kw).
        bias: (out_channels, OH, OW), one bias per output unit.
    A Conv2d is the special case where all OH*OW filters are equal: see ``from_conv``.
    It has OH*OW times as many weights, which is the point of the comparison.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, input_size, stride=1, padding=0,
                 dilation=1, bias: bool = True, dtype=None, generator=None):
        super().__init__()
        op = "LocallyConnected2d"
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(op, "kernel_size", kernel_size)
        self.input_size = pair(op, "input_size", input_size)
        self.stride, self.dilation = pair(op, "stride", stride), pair(op, "dilation", dilation)
        self.padding = pair(op, "padding", padding, minimum=0)
        p = self.padding
        g = make_geometry(*self.input_size, self.kernel_size, self.stride, self.dilation, (p[0], p[0], p[1], p[1]))
        if g.OH < 1 or g.OW < 1:
            raise ValueError(f"{op}: input_size {self.input_size} is smaller than the kernel's extent")
        self.output_size = (g.OH, g.OW)
        K = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        dtype = np.dtype(dtype or np.float32)
        self.weight = Parameter(np.empty((g.OH * g.OW, self.out_channels, K), dtype=dtype))
        self.bias = Parameter(np.empty((self.out_channels, g.OH, g.OW), dtype=dtype)) if bias else None
        if not bias:
            self.register_parameter("bias", None)
        # Conv2d's default per location: fan_in = in_channels*KH*KW.
        bound = 1 / math.sqrt(K)
        init.uniform_(self.weight, -bound, bound, generator=generator)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels or tuple(x.shape[2:]) != self.input_size:
            raise ValueError(
                f"LocallyConnected2d: expected input (N, {self.in_channels}, {self.input_size[0]}, "
                f"{self.input_size[1]}), got {x.shape}"
            )
        cols = unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # (N, K, L)
        # (L, N, K) @ (L, K, OC): one GEMM per location, each over the whole batch.
        y = matmul(permute(cols, (2, 0, 1)), permute(self.weight, (0, 2, 1)))  # (L, N, OC)
        y = reshape(permute(y, (1, 2, 0)), (x.shape[0], self.out_channels) + self.output_size)
        return y if self.bias is None else y + self.bias

    @classmethod
    def from_conv(cls, conv: Conv2d, input_size) -> "LocallyConnected2d":
        """The locally connected layer computing exactly ``conv`` on inputs of ``input_size``.

        Each location's filter is a copy of the conv's (grouped convs become block-sparse
        dense filters). Only zero padding can be represented.
        """
        if not isinstance(conv, Conv2d) or conv.padding_mode != "zeros":
            raise ValueError("LocallyConnected2d.from_conv: needs a Conv2d with padding_mode='zeros'")
        t, b, l, r = conv._pad4()
        if (t, l) != (b, r):
            raise ValueError(f"LocallyConnected2d.from_conv: asymmetric padding {(t, b, l, r)} is not supported")
        lc = cls(conv.in_channels, conv.out_channels, conv.kernel_size, input_size, conv.stride, (t, l),
                 conv.dilation, bias=conv.bias is not None, dtype=conv.weight.dtype)
        w = conv.weight.data
        G, OC, C = conv.groups, conv.out_channels, conv.in_channels
        dense = np.zeros((OC, C) + conv.kernel_size, dtype=w.dtype)
        for gi in range(G):  # groups only (a handful), not a hot path
            o, c = slice(gi * OC // G, (gi + 1) * OC // G), slice(gi * C // G, (gi + 1) * C // G)
            dense[o, c] = asnumpy(w[o])
        L = lc.output_size[0] * lc.output_size[1]
        lc.weight.data[...] = np.broadcast_to(dense.reshape(1, OC, -1), (L, OC, dense[0].size))
        if conv.bias is not None:
            lc.bias.data[...] = asnumpy(conv.bias.data).reshape(OC, 1, 1)
        return lc

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"input_size={self.input_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, bias={self.bias is not None}")


class Unfold(Module):
    """nn.Unfold: F.unfold as a layer, (N, C, H, W) -> (N, C*KH*KW, L)."""

    def __init__(self, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.kernel_size, self.dilation, self.padding, self.stride = kernel_size, dilation, padding, stride

    def forward(self, x: Tensor) -> Tensor:
        return unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, dilation={self.dilation}, padding={self.padding}, "
                f"stride={self.stride}")


class Fold(Module):
    """nn.Fold: F.fold as a layer, (N, C*KH*KW, L) -> (N, C, *output_size)."""

    def __init__(self, output_size, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.output_size, self.kernel_size = output_size, kernel_size
        self.dilation, self.padding, self.stride = dilation, padding, stride

    def forward(self, x: Tensor) -> Tensor:
        return fold(x, self.output_size, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, kernel_size={self.kernel_size}, dilation={self.dilation}, "
                f"padding={self.padding}, stride={self.stride}")

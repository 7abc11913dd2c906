"""Fully convolutional networks for semantic segmentation: FCN, DilatedNet, UNet.

Each maps an image (N, C_in, H, W) to per-pixel class scores (N, num_classes, H, W) at the
input's resolution, so it trains with ``F.cross_entropy(scores, mask, ignore_index=255)``.

* :class:`FCN` -- Long, Shelhamer & Darrell, "Fully Convolutional Networks for Semantic
  Segmentation", CVPR 2015: a VGG-style encoder, a 1x1 convolutional classifier, and
  upsampling by transposed convolutions (initialised to bilinear interpolation) that add in
  class scores from two shallower pooling stages (the "FCN-8s" skip architecture).
* :class:`DilatedNet` -- Yu & Koltun, "Multi-Scale Context Aggregation by Dilated
  Convolutions", ICLR 2016: no downsampling at all; a context module of 3x3 convolutions
  with dilations 1, 1, 2, 4, 8, 16, 1 grows the receptive field exponentially while keeping
  full resolution.
* :class:`UNet` -- Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for
  Biomedical Image Segmentation", MICCAI 2015: a contracting path, an expanding path with
  2x2 transposed convolutions, and skip connections that concatenate encoder features.
  Unlike the paper we pad the 3x3 convolutions ("same"), so the output keeps the input size.

Sizes: FCN needs H and W divisible by 2**len(channels), UNet by 2**(len(channels) - 1);
a size that is not raises a ShapeError naming the size and the multiple. DilatedNet takes
any size.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

import ember
from ember import nn
from ember.errors import ShapeError
from ember.tensor import Tensor

__all__ = ["FCN", "DilatedNet", "UNet", "SEGMENTATION_MODELS", "register", "bilinear_kernel"]


def _conv_block(cin: int, cout: int, dilation: int = 1, batch_norm: bool = True) -> nn.Sequential:
    """3x3 convolution ("same" padding) -> [BatchNorm] -> ReLU."""
    layers = [nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _double_conv(cin: int, cout: int, batch_norm: bool = True) -> nn.Sequential:
    return nn.Sequential(_conv_block(cin, cout, batch_norm=batch_norm), _conv_block(cout, cout, batch_norm=batch_norm))


def _check_divisible(model: str, x: Tensor, multiple: int, why: str) -> None:
    if x.ndim != 4:
        raise ShapeError(f"{model}: expected input (N, C, H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[2], x.shape[3]
    if h % multiple or w % multiple:
        up = lambda n: -(-n // multiple) * multiple  # noqa: E731
        raise ShapeError(f"{model}: input size {h}x{w} is not divisible by {multiple} ({why}); pad or resize "
                         f"the input to a multiple of {multiple}, e.g. {up(h)}x{up(w)}")


def bilinear_kernel(channels: int, k: int) -> np.ndarray:
    """(channels, channels, k, k) weight that makes a ConvTranspose2d (stride k // 2) upsample bilinearly.

    Channel c maps only to channel c, with the separable tent filter of width k (FCN's
    initialisation of its upsampling layers).
    """
    factor = (k + 1) // 2
    centre = factor - 1 if k % 2 == 1 else factor - 0.5
    t = 1 - np.abs(np.arange(k) - centre) / factor
    w = np.zeros((channels, channels, k, k), np.float32)
    w[np.arange(channels), np.arange(channels)] = np.outer(t, t)
    return w


def _upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    """Learnable x``factor`` upsampling, initialised to bilinear interpolation (exact size factor * H)."""
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    up.weight.data[...] = bilinear_kernel(channels, 2 * factor)
    return up


class FCN(nn.Module):
    """FCN with skip connections from the last two pooling stages before the deepest (FCN-8s style).

    Args:
        num_classes: output classes K (background included).
        in_channels: image channels.
        channels: output channels of each encoder stage; a stage is ``convs_per_stage``
            3x3 conv-BN-ReLU layers and a 2x2 max pooling, so the deepest features have
            stride 2**len(channels).
        head_channels: width of the convolutionalised "fully connected" layers (fc6 as a 3x3
            conv, fc7 as a 1x1 conv) on the deepest features (default 2 * channels[-1]).
        skips: how many shallower pooling outputs add their 1x1 class scores (2 as in FCN-8s,
            1 for FCN-16s, 0 for FCN-32s).
        dropout: dropout on the fc6/fc7 features.

    With five stages and skips=2 this is FCN-8s; the default four stages suit 64x64 inputs
    (deepest stride 16, fused at strides 8 and 4, then a x4 learned upsampling).
    """

    def __init__(self, num_classes: int = 11, in_channels: int = 1, channels: Sequence[int] = (16, 32, 64, 128),
                 convs_per_stage: int = 2, head_channels: int | None = None, skips: int = 2,
                 batch_norm: bool = True, dropout: float = 0.0):
        super().__init__()
        if not 0 <= skips < len(channels):
            raise ValueError(f"FCN: skips must be in [0, {len(channels) - 1}] for {len(channels)} stages, got {skips}")
        self.num_classes, self.skips, self.depth = num_classes, skips, len(channels)
        stages, c = [], in_channels
        for cout in channels:
            convs = [_conv_block(c if i == 0 else cout, cout, batch_norm=batch_norm) for i in range(convs_per_stage)]
            stages.append(nn.Sequential(*convs, nn.MaxPool2d(2)))
            c = cout
        self.stages = nn.ModuleList(stages)
        hc = head_channels or 2 * channels[-1]
        self.head = nn.Sequential(_conv_block(c, hc, batch_norm=batch_norm), nn.Dropout2d(dropout),
                                  nn.Conv2d(hc, hc, 1), nn.ReLU(), nn.Dropout2d(dropout))
        self.score = nn.Conv2d(hc, num_classes, 1)
        # score_pool[i] scores the pooled output of stage depth-2-i (stride 2**(depth-1-i))
        self.score_pool = nn.ModuleList([nn.Conv2d(channels[-2 - i], num_classes, 1) for i in range(skips)])
        self.upscore2 = nn.ModuleList([_upsampler(num_classes, 2) for _ in range(skips)])
        self.final_factor = 2 ** (len(channels) - skips)
        self.upscore_final = _upsampler(num_classes, self.final_factor)
        for s in self.score_pool:  # zero-init the skips, as the paper does, so training starts from the coarse net
            s.weight.data[...] = 0.0
            s.bias.data[...] = 0.0

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_channels, H, W) -> (N, num_classes, H, W); H, W divisible by 2**len(channels)."""
        _check_divisible("FCN", x, 2 ** self.depth, f"it pools {self.depth} times by 2")
        pooled = []
        for stage in self.stages:
            x = stage(x)
            pooled.append(x)
        y = self.score(self.head(x))
        for i in range(self.skips):
            y = self.upscore2[i](y) + self.score_pool[i](pooled[-2 - i])
        return self.upscore_final(y)


class DilatedNet(nn.Module):
    """Full-resolution network: a front-end of 3x3 convs and a dilated context module (Yu & Koltun 2016).

    Args:
        num_classes, in_channels: as for FCN.
        width: channels of every layer.
        front: number of plain 3x3 conv layers before the context module.
        dilations: dilation of each 3x3 layer of the context module; the receptive field
            grows by 2 * d per layer (basic module: 1, 1, 2, 4, 8, 16, 1 -> +66 pixels).

    Every layer has stride 1, so the network is translation equivariant (up to border
    effects) and accepts any input size.
    """

    def __init__(self, num_classes: int = 11, in_channels: int = 1, width: int = 32, front: int = 2,
                 dilations: Sequence[int] = (1, 1, 2, 4, 8, 16, 1), batch_norm: bool = True):
        super().__init__()
        layers, c = [], in_channels
        for _ in range(front):
            layers.append(_conv_block(c, width, batch_norm=batch_norm))
            c = width
        self.front = nn.Sequential(*layers)
        self.context = nn.Sequential(*[_conv_block(c if i == 0 else width, width, dilation=d, batch_norm=batch_norm)
                                       for i, d in enumerate(dilations)])
        self.classifier = nn.Conv2d(width, num_classes, 1)
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_channels, H, W) -> (N, num_classes, H, W), any H, W."""
        if x.ndim != 4:
            raise ShapeError(f"DilatedNet: expected input (N, C, H, W), got shape {tuple(x.shape)}")
        return self.classifier(self.context(self.front(x)))


class UNet(nn.Module):
    """A small U-Net: ``channels`` per level, 2x2 max pooling down, 2x2 transposed convs up.

    Args:
        num_classes, in_channels: as for FCN.
        channels: width per level, from full resolution down to the bottleneck; the input
            must be divisible by 2**(len(channels) - 1).
    """

    def __init__(self, num_classes: int = 11, in_channels: int = 1, channels: Sequence[int] = (16, 32, 64, 128),
                 batch_norm: bool = True):
        super().__init__()
        if len(channels) < 2:
            raise ValueError(f"UNet: channels needs at least 2 levels, got {tuple(channels)}")
        self.down = nn.ModuleList([_double_conv(in_channels, channels[0], batch_norm)] +
                                  [_double_conv(a, b, batch_norm) for a, b in zip(channels[:-1], channels[1:])])
        self.pool = nn.MaxPool2d(2)
        rev = list(channels[::-1])
        self.up = nn.ModuleList([nn.ConvTranspose2d(a, b, 2, stride=2) for a, b in zip(rev[:-1], rev[1:])])
        self.fuse = nn.ModuleList([_double_conv(2 * b, b, batch_norm) for b in rev[1:]])
        self.classifier = nn.Conv2d(channels[0], num_classes, 1)
        self.levels, self.num_classes = len(channels), num_classes

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_channels, H, W) -> (N, num_classes, H, W); H, W divisible by 2**(levels - 1)."""
        _check_divisible("UNet", x, 2 ** (self.levels - 1), f"it pools {self.levels - 1} times by 2")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, fuse in zip(self.up, self.fuse):
            x = fuse(ember.cat([skips.pop(), up(x)], dim=1))
        return self.classifier(x)


SEGMENTATION_MODELS = {"fcn": FCN, "dilated": DilatedNet, "unet": UNet}


def register(register_model) -> None:
    """Add the segmentation models to a model registry: ``register(ember.models.register_model)``."""
    for name, cls in SEGMENTATION_MODELS.items():
        register_model(name, cls)

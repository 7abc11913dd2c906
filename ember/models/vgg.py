"""VGG: stacks of 3x3 convolutions and 2x2 max pooling.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015 (configurations A = VGG-11 and D = VGG-16). Batch norm
variants after Ioffe & Szegedy, ICML 2015. The 224x224 head and all state_dict keys
(``features.N``, ``classifier.N``) follow torchvision's VGG, so its weights load.
"""
from __future__ import annotations

import math
from typing import Sequence

from ember import nn
from ember.tensor import Tensor

__all__ = ["VGG", "make_vgg_features", "CFGS", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn"]

# Output channels of each 3x3 convolution; "M" is a 2x2 max pooling.
CFGS: dict[str, list] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def make_vgg_features(cfg: Sequence, in_channels: int = 3, batch_norm: bool = False,
                      input_size: int = 224) -> tuple[nn.Sequential, int]:
    """The convolutional trunk and the side length of its output for ``input_size`` inputs.

    A pooling that meets an odd side pads by one (28 -> 14 -> 7 -> 4 -> 2 -> 1), so small
    inputs like 28x28 lose no rows to flooring; at 224 or 32 no padding is needed.
    """
    layers: list[nn.Module] = []
    side, c = input_size, in_channels
    for v in cfg:
        if v == "M":
            if side < 2:
                raise ValueError(f"VGG: input_size {input_size} is too small for {cfg.count('M')} poolings")
            pad = side % 2
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, padding=pad) if pad else
                          nn.MaxPool2d(kernel_size=2, stride=2))
            side = (side + 2 * pad - 2) // 2 + 1
        else:
            layers.append(nn.Conv2d(c, int(v), kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(int(v)))
            layers.append(nn.ReLU())
            c = int(v)
    return nn.Sequential(*layers), side


class VGG(nn.Module):
    """VGG network.

    Args:
        cfg: a name in ``CFGS`` ("vgg11", "vgg16") or a list of widths and "M".
        batch_norm: insert BatchNorm2d after every convolution.
        num_classes: classifier outputs.
        in_channels: image channels.
        input_size: image side. At >= 64 the torchvision head is used
            (AdaptiveAvgPool2d(7) -> 4096 -> 4096 -> classes, with dropout); below it a
            small head: the 512x1x1 trunk output -> Dropout -> Linear(512, classes).
        dropout: dropout probability in the classifier.

    Shapes: (N, in_channels, input_size, input_size) -> (N, num_classes).
    """

    def __init__(self, cfg: str | Sequence = "vgg11", batch_norm: bool = False, num_classes: int = 1000,
                 in_channels: int = 3, input_size: int = 224, dropout: float = 0.5, init_weights: bool = True):
        super().__init__()
        if isinstance(cfg, str):
            if cfg not in CFGS:
                raise ValueError(f"VGG: unknown configuration {cfg!r}; valid names: {', '.join(CFGS)}")
            cfg = CFGS[cfg]
        self.features, side = make_vgg_features(cfg, in_channels, batch_norm, input_size)
        width = [v for v in cfg if v != "M"][-1]
        self.small = input_size < 64
        if self.small:
            self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(width * side * side, num_classes))
        else:
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(width * 7 * 7, 4096), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(4096, num_classes),
            )
        if init_weights:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's initialization: He-normal (fan_out) convolutions, N(0, 0.01) linear layers."""
        init = nn.init
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                init.ones_(m.weight)
                init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                if self.small:  # one linear layer: keep PyTorch's default uniform(+-1/sqrt(fan_in))
                    bound = 1 / math.sqrt(m.in_features)
                    init.uniform_(m.weight, -bound, bound)
                else:
                    init.normal_(m.weight, 0, 0.01)
                init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        if not self.small:
            x = self.avgpool(x)
        return self.classifier(x.reshape(x.shape[0], -1))


def _vgg(cfg: str, batch_norm: bool, num_classes: int, in_channels: int, input_size: int, **kw) -> VGG:
    return VGG(cfg, batch_norm, num_classes, in_channels, input_size, **kw)


def vgg11(num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, **kw) -> VGG:
    """VGG-11 (configuration A)."""
    return _vgg("vgg11", False, num_classes, in_channels, input_size, **kw)


def vgg11_bn(num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, **kw) -> VGG:
    """VGG-11 with batch norm."""
    return _vgg("vgg11", True, num_classes, in_channels, input_size, **kw)


def vgg16(num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, **kw) -> VGG:
    """VGG-16 (configuration D)."""
    return _vgg("vgg16", False, num_classes, in_channels, input_size, **kw)


def vgg16_bn(num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, **kw) -> VGG:
    """VGG-16 with batch norm."""
    return _vgg("vgg16", True, num_classes, in_channels, input_size, **kw)

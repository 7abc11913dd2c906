"""Residual networks with basic blocks.

He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
``CifarResNet`` is the 6n+2 family of section 4.2 (16/32/64 channels on 32x32 inputs:
ResNet-20/32/56), with shortcut option A (identity; on a stride-2 block, subsample and
zero-pad the new channels: no parameters) or B (1x1 convolution + batch norm).
``ResNet`` is the ImageNet family (ResNet-18/34) with torchvision's state_dict keys
(conv1, bn1, layer1.0.conv1, ..., layerK.0.downsample.0/1, fc); ``small_input=True``
swaps the 7x7/2 stem and max pooling for a 3x3/1 stem, for 28x28 or 32x32 images.
"""
from __future__ import annotations

from typing import Sequence

from ember import nn
from ember.ops.shape import pad
from ember.tensor import Tensor

__all__ = ["bn_relu", "BasicBlock", "PadShortcut", "CifarResNet", "ResNet", "resnet20", "resnet32", "resnet56",
           "resnet18", "resnet34"]


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class PadShortcut(nn.Module):
    """Option A shortcut: keep every ``stride``-th pixel and zero-pad the extra channels.

    Shapes: (N, cin, H, W) -> (N, cout, ceil(H/stride), ceil(W/stride)). No parameters.
    """

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.cin, self.cout, self.stride = cin, cout, stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        extra = self.cout - self.cin
        # Split the new channels evenly before and after, as the common CIFAR reference does.
        return pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2)) if extra else x

    def extra_repr(self) -> str:
        return f"{self.cin}, {self.cout}, stride={self.stride}"


def bn_relu(bn: nn.Module, relu: nn.Module, x: Tensor, add: Tensor | None = None) -> Tensor:
    """``relu(bn(x) [+ add])``, as one op when that gives the same result (``F.batch_norm``'s
    ``add=``/``relu=``: the sum and the ReLU in the pass that writes the output, and fewer kernel
    launches on a GPU). It does when ``bn`` and ``relu`` are ember's own BatchNorm2d and ReLU and
    no forward hook watches either; a layer swapped for another (say a LeakyReLU, to see what
    happens) or a hook (activation statistics, summaries) makes each layer run on its own."""
    if type(bn) is nn.BatchNorm2d and type(relu) is nn.ReLU and not (
            bn._forward_hooks or bn._forward_pre_hooks or relu._forward_hooks or relu._forward_pre_hooks):
        return bn(x, add=add, relu=True)
    y = bn(x)
    return relu(y if add is None else y + add)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    ``downsample`` is the shortcut when shapes change (None for identity).
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = bn_relu(self.bn1, self.relu, self.conv1(x))  # relu(bn1(conv1(x)))
        return bn_relu(self.bn2, self.relu, self.conv2(out), add=identity)  # relu(bn2(conv2(out)) + identity)


def _shortcut(option: str, cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    if option == "A":
        return PadShortcut(cin, cout, stride)
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(cout))


def _init_resnet(model: nn.Module, zero_init_residual: bool) -> None:
    """He-normal (fan_out) convolutions, BN to (1, 0), as torchvision does."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:  # Goyal et al. 2017: each block starts as the identity
        for m in model.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images (He et al. 2016, sec. 4.2).

    Args:
        depth: 6n+2 (20, 32, 44, 56, 110).
        num_classes, in_channels: output classes and image channels.
        shortcut: "A" (parameter-free, the paper's CIFAR choice) or "B" (1x1 projection).
        widths: channels of the three stages.

    Shapes: (N, in_channels, H, W) -> (N, num_classes); works for 28x28 and 32x32.
    Keys: conv1, bn1, layer{1,2,3}.K.{conv1,bn1,conv2,bn2}[, downsample.{0,1}], fc.
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A",
                 widths: Sequence[int] = (16, 32, 64), zero_init_residual: bool = False):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CifarResNet: depth must be 6n+2 (20, 32, 56, ...), got {depth}")
        shortcut = shortcut.upper()
        if shortcut not in ("A", "B"):
            raise ValueError(f"CifarResNet: shortcut must be 'A' or 'B', got {shortcut!r}")
        n = (depth - 2) // 6
        self.conv1 = conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        cin = widths[0]
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(cin, w, stride, _shortcut(shortcut, cin, w, stride)))
                cin = w
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, num_classes)
        self.num_stages = len(widths)
        _init_resnet(self, zero_init_residual)

    def forward(self, x: Tensor) -> Tensor:
        x = bn_relu(self.bn1, self.relu, self.conv1(x))  # relu(bn1(conv1(x)))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(x.mean(dim=(2, 3)))  # global average pooling


class ResNet(nn.Module):
    """ImageNet-style ResNet with basic blocks (ResNet-18: [2,2,2,2], ResNet-34: [3,4,6,3]).

    Args:
        layers: blocks per stage.
        num_classes, in_channels: output classes and image channels.
        small_input: 3x3 stride-1 stem and no max pooling (for 28x28 / 32x32 images);
            the keys stay torchvision's, only conv1's kernel shape changes.

    Shapes: (N, in_channels, H, W) -> (N, num_classes).
    """

    def __init__(self, layers: Sequence[int] = (2, 2, 2, 2), num_classes: int = 1000, in_channels: int = 3,
                 small_input: bool = False, zero_init_residual: bool = False):
        super().__init__()
        self.small_input = small_input
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        cin = 64
        for i, (w, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(cin, w, stride, _shortcut("B", cin, w, stride)))
                cin = w
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(512, num_classes)
        _init_resnet(self, zero_init_residual)

    def forward(self, x: Tensor) -> Tensor:
        x = bn_relu(self.bn1, self.relu, self.conv1(x))  # relu(bn1(conv1(x)))
        if not self.small_input:
            x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(dim=(2, 3)))  # torchvision's AdaptiveAvgPool2d((1, 1)) + flatten


def resnet20(num_classes: int = 10, in_channels: int = 3, shortcut: str = "A", **kw) -> CifarResNet:
    """ResNet-20 (0.27M parameters with option A)."""
    kw.pop("input_size", None)
    return CifarResNet(20, num_classes, in_channels, shortcut, **kw)


def resnet32(num_classes: int = 10, in_channels: int = 3, shortcut: str = "A", **kw) -> CifarResNet:
    """ResNet-32 (0.46M parameters with option A)."""
    kw.pop("input_size", None)
    return CifarResNet(32, num_classes, in_channels, shortcut, **kw)


def resnet56(num_classes: int = 10, in_channels: int = 3, shortcut: str = "A", **kw) -> CifarResNet:
    """ResNet-56 (0.85M parameters with option A)."""
    kw.pop("input_size", None)
    return CifarResNet(56, num_classes, in_channels, shortcut, **kw)


def resnet18(num_classes: int = 1000, in_channels: int = 3, small_input: bool | None = None,
             input_size: int = 224, **kw) -> ResNet:
    """ResNet-18; ``small_input`` defaults to True for inputs under 64 pixels."""
    small = input_size < 64 if small_input is None else small_input
    return ResNet((2, 2, 2, 2), num_classes, in_channels, small, **kw)


def resnet34(num_classes: int = 1000, in_channels: int = 3, small_input: bool | None = None,
             input_size: int = 224, **kw) -> ResNet:
    """ResNet-34; ``small_input`` defaults to True for inputs under 64 pixels."""
    small = input_size < 64 if small_input is None else small_input
    return ResNet((3, 4, 6, 3), num_classes, in_channels, small, **kw)

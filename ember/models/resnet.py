"""Residual networks: basic blocks, bottleneck blocks, ResNeXt and wide ResNets.

He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
``CifarResNet`` is the 6n+2 family of section 4.2 (16/32/64 channels on 32x32 inputs:
ResNet-20/32/56), with shortcut option A (identity; on a stride-2 block, subsample and
zero-pad the new channels: no parameters) or B (1x1 convolution + batch norm).
``ResNet`` is the ImageNet family with torchvision's state_dict keys (conv1, bn1,
layer1.0.conv1, ..., layerK.0.downsample.0/1, fc): ResNet-18/34 with ``BasicBlock``,
ResNet-50/101/152 with ``Bottleneck`` (stride on the 3x3 convolution, torchvision's
"v1.5"), ResNeXt (Xie et al., "Aggregated Residual Transformations for Deep Neural
Networks", CVPR 2017: grouped 3x3 convolutions) and wide ResNets (Zagoruyko & Komodakis,
"Wide Residual Networks", BMVC 2016: a wider 3x3 inside each bottleneck).
``small_input=True`` swaps the 7x7/2 stem and max pooling for a 3x3/1 stem, for 28x28 or
32x32 images.
"""
from __future__ import annotations

from typing import Sequence

from ember import nn
from ember.ops.shape import pad
from ember.tensor import Tensor

__all__ = ["bn_relu", "BasicBlock", "Bottleneck", "PadShortcut", "CifarResNet", "ResNet", "resnet20", "resnet32",
           "resnet56", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
           "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2"]


def conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, bias=False)


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

    ``downsample`` is the shortcut when shapes change (None for identity). ``groups`` and
    ``base_width`` exist so ``ResNet`` can build either block alike; only 1 and 64 are valid.
    Shapes: (N, inplanes, H, W) -> (N, planes, ceil(H/stride), ceil(W/stride)).
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(f"BasicBlock: supports only groups=1 and base_width (width_per_group)=64, got "
                             f"groups={groups}, base_width={base_width}; ResNeXt and wide ResNets use Bottleneck")
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


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), each with batch norm, plus a shortcut:
    ``relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))``.

    The stride sits on the 3x3 convolution (torchvision's "ResNet v1.5"; the paper strided the
    first 1x1). The 3x3 runs on ``width = planes * base_width / 64 * groups`` channels in
    ``groups`` groups: (1, 64) is ResNet-50's block, (32, 4) ResNeXt-50 32x4d's, (1, 128) the
    wide ResNet's.
    Shapes: (N, inplanes, H, W) -> (N, 4 * planes, ceil(H/stride), ceil(W/stride)).
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64):
        super().__init__()
        if groups < 1 or base_width < 1:
            raise ValueError(f"Bottleneck: groups and base_width (width_per_group) must be >= 1, got "
                             f"groups={groups}, base_width={base_width}")
        if (planes * base_width) % 64:
            raise ValueError(f"Bottleneck: planes * base_width / 64 (the channels per group of the 3x3 "
                             f"convolution) must be a whole number, got planes={planes}, base_width={base_width} "
                             f"-> {planes * base_width / 64:g}")
        width = planes * base_width // 64 * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = bn_relu(self.bn1, self.relu, self.conv1(x))
        out = bn_relu(self.bn2, self.relu, self.conv2(out))
        return bn_relu(self.bn3, self.relu, self.conv3(out), add=identity)  # relu(bn3(conv3(out)) + identity)


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
            elif isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)


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
    """ImageNet-style ResNet, torchvision's layout and argument order.

    ``ResNet(BasicBlock, [2, 2, 2, 2])`` is ResNet-18, ``ResNet(Bottleneck, [3, 4, 6, 3])``
    ResNet-50; ``groups`` / ``width_per_group`` make ResNeXt (32, 4) and wide ResNets (1, 128).

    Args:
        block: ``BasicBlock`` or ``Bottleneck`` (the class).
        layers: blocks per stage (four stages of 64, 128, 256, 512 planes).
        num_classes: output classes.
        zero_init_residual: start each block's last batch-norm scale at 0 (each block then starts
            as relu(shortcut(x)); Goyal et al. 2017).
        groups, width_per_group: the bottleneck's 3x3 convolution (Bottleneck only).
        in_channels: image channels (keyword).
        small_input: 3x3 stride-1 stem and no max pooling (for 28x28 / 32x32 images);
            the keys stay torchvision's, only conv1's kernel shape changes (keyword).

    A block class takes (inplanes, planes, stride, downsample, groups, base_width) and has an
    ``expansion`` (output channels / planes), as torchvision's blocks do.

    Shapes: (N, in_channels, H, W) -> (N, num_classes).
    """

    def __init__(self, block: type = BasicBlock, layers: Sequence[int] = (2, 2, 2, 2), num_classes: int = 1000,
                 zero_init_residual: bool = False, groups: int = 1, width_per_group: int = 64, *,
                 in_channels: int = 3, small_input: bool = False):
        super().__init__()
        if not (isinstance(block, type) and issubclass(block, nn.Module) and isinstance(
                getattr(block, "expansion", None), int)):
            raise TypeError(f"ResNet: block must be a block class such as BasicBlock or Bottleneck, got {block!r} "
                            f"(the blocks per stage go in layers=, as in torchvision: ResNet(Bottleneck, [3, 4, 6, 3]))")
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"ResNet: layers must be 4 positive block counts, got {tuple(layers)}")
        self.small_input = small_input
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        cin = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            cout = planes * block.expansion
            for j in range(int(n)):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(cin, planes, stride, _shortcut("B", cin, cout, stride), groups, width_per_group))
                cin = cout
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, num_classes)
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


def _imagenet_resnet(block: type, layers: tuple, num_classes: int, in_channels: int, small_input: bool | None,
                     input_size: int, **kw) -> ResNet:
    small = input_size < 64 if small_input is None else small_input
    return ResNet(block, layers, num_classes, in_channels=in_channels, small_input=small, **kw)


# The ImageNet builders: ``small_input`` defaults to True for inputs under 64 pixels (``input_size``).
# Parameter counts are for 1000 classes and equal torchvision's.
def resnet18(num_classes: int = 1000, in_channels: int = 3, small_input: bool | None = None,
             input_size: int = 224, **kw) -> ResNet:
    """ResNet-18 (11,689,512 parameters)."""
    return _imagenet_resnet(BasicBlock, (2, 2, 2, 2), num_classes, in_channels, small_input, input_size, **kw)


def resnet34(num_classes: int = 1000, in_channels: int = 3, small_input: bool | None = None,
             input_size: int = 224, **kw) -> ResNet:
    """ResNet-34 (21,797,672 parameters)."""
    return _imagenet_resnet(BasicBlock, (3, 4, 6, 3), num_classes, in_channels, small_input, input_size, **kw)


def resnet50(num_classes: int = 1000, in_channels: int = 3, small_input: bool | None = None,
             input_size: int = 224, **kw) -> ResNet:
    """ResNet-50 (25,557,032 parameters)."""
    return _imagenet_resnet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels, small_input, input_size, **kw)


def resnet101(num_classes: int = 1000, in_channels: int = 3, small_input: bool | None = None,
              input_size: int = 224, **kw) -> ResNet:
    """ResNet-101 (44,549,160 parameters)."""
    return _imagenet_resnet(Bottleneck, (3, 4, 23, 3), num_classes, in_channels, small_input, input_size, **kw)


def resnet152(num_classes: int = 1000, in_channels: int = 3, small_input: bool | None = None,
              input_size: int = 224, **kw) -> ResNet:
    """ResNet-152 (60,192,808 parameters)."""
    return _imagenet_resnet(Bottleneck, (3, 8, 36, 3), num_classes, in_channels, small_input, input_size, **kw)


def resnext50_32x4d(num_classes: int = 1000, in_channels: int = 3, small_input: bool | None = None,
                    input_size: int = 224, **kw) -> ResNet:
    """ResNeXt-50 32x4d: 32 groups of 4 channels in the first stage's 3x3 (25,028,904 parameters)."""
    return _imagenet_resnet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels, small_input, input_size,
                            groups=32, width_per_group=4, **kw)


def resnext101_32x8d(num_classes: int = 1000, in_channels: int = 3, small_input: bool | None = None,
                     input_size: int = 224, **kw) -> ResNet:
    """ResNeXt-101 32x8d (88,791,336 parameters)."""
    return _imagenet_resnet(Bottleneck, (3, 4, 23, 3), num_classes, in_channels, small_input, input_size,
                            groups=32, width_per_group=8, **kw)


def wide_resnet50_2(num_classes: int = 1000, in_channels: int = 3, small_input: bool | None = None,
                    input_size: int = 224, **kw) -> ResNet:
    """Wide ResNet-50-2: each bottleneck's 3x3 twice as wide (68,883,240 parameters)."""
    return _imagenet_resnet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels, small_input, input_size,
                            width_per_group=128, **kw)


def wide_resnet101_2(num_classes: int = 1000, in_channels: int = 3, small_input: bool | None = None,
                     input_size: int = 224, **kw) -> ResNet:
    """Wide ResNet-101-2 (126,886,696 parameters)."""
    return _imagenet_resnet(Bottleneck, (3, 4, 23, 3), num_classes, in_channels, small_input, input_size,
                            width_per_group=128, **kw)

"""MobileNetV2: inverted residuals with linear bottlenecks.

Sandler, Howard, Zhu, Zhmoginov & Chen, "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", CVPR 2018. Each block expands its input with a 1x1 convolution (factor t),
filters it with a depthwise 3x3 convolution (one filter per channel), and projects it
back with a 1x1 convolution that has no nonlinearity (the linear bottleneck); blocks that
keep the shape add their input. Activations are ReLU6. The state_dict keys follow
torchvision's MobileNetV2 (``features.0.0`` stem conv, ``features.N.conv.M...`` blocks,
``features.18.0`` last 1x1 conv, ``classifier.1`` linear), so its weights load.
"""
from __future__ import annotations

from typing import Sequence

from ember import nn
from ember.tensor import Tensor

__all__ = ["MobileNetV2", "InvertedResidual", "make_divisible", "mobilenet_v2"]

# Table 2 of the paper: expansion t, output channels c, repeats n, first stride s.
V2_SETTING: list[list[int]] = [
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
]


def make_divisible(v: float, divisor: int = 8) -> int:
    """``v`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``), never more
    than 10% below ``v``: the channel rounding of the paper's reference implementation."""
    rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * v else rounded


def conv_bn_relu6(cin: int, cout: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Convolution (no bias, "same" padding), batch norm, ReLU6: torchvision's Conv2dNormActivation keys (0, 1)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(),
    )


class InvertedResidual(nn.Module):
    """Expand (1x1, t * inp channels), depthwise 3x3 (stride), project (1x1, linear) + input when shapes agree.

    Keys: ``conv.0`` expansion (absent when t == 1), then the depthwise conv-BN-ReLU6, the
    projection conv and its batch norm, numbered on in one Sequential as torchvision does.
    Shapes: (N, inp, H, W) -> (N, oup, ceil(H/stride), ceil(W/stride)).
    """

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: float):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride must be 1 or 2, got {stride}")
        hidden = round(inp * expand_ratio)
        self.stride = stride
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(inp, hidden, kernel_size=1))
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),  # depthwise
            nn.Conv2d(hidden, oup, 1, bias=False),  # linear bottleneck: no ReLU after the projection
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (3,504,872 parameters at width 1.0 and 1000 classes, torchvision's count).

    Args:
        num_classes: output classes.
        width_mult: multiplies every layer's channels (rounded with ``make_divisible``);
            the last 1x1 convolution keeps at least 1280 channels.
        inverted_residual_setting: rows [t, c, n, s] (default: the paper's Table 2).
        round_nearest: channels are rounded to multiples of this.
        dropout: dropout probability before the classifier (keyword).
        in_channels: image channels (keyword).
        small_input: for 28x28 / 32x32 images (keyword): the stem convolution and the first
            block with stride 2 (the 24-channel stage in the default setting) use stride 1, so
            the network downsamples 8x instead of 32x (32x32 -> 4x4, 28x28 -> 4x4 at the end).
            The keys and parameter count do not change.

    Shapes: (N, in_channels, H, W) -> (N, num_classes).
    """

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0,
                 inverted_residual_setting: Sequence[Sequence[int]] | None = None, round_nearest: int = 8, *,
                 dropout: float = 0.2, in_channels: int = 3, small_input: bool = False):
        super().__init__()
        if not width_mult > 0:
            raise ValueError(f"MobileNetV2: width_mult must be > 0, got {width_mult}")
        if int(round_nearest) < 1:
            raise ValueError(f"MobileNetV2: round_nearest must be a positive int, got {round_nearest}")
        if not 0 <= dropout < 1:
            raise ValueError(f"MobileNetV2: dropout must be in [0, 1), got {dropout}")
        setting = V2_SETTING if inverted_residual_setting is None else [list(r) for r in inverted_residual_setting]
        if not setting or any(len(r) != 4 for r in setting):
            raise ValueError(f"MobileNetV2: inverted_residual_setting must be non-empty rows [t, c, n, s], "
                             f"got {inverted_residual_setting!r}")
        self.small_input = small_input
        if small_input:  # one stride-2 row fewer: the first one runs at stride 1
            first = next((i for i, r in enumerate(setting) if r[3] > 1), None)
            if first is not None:
                setting = [r if i != first else [r[0], r[1], r[2], 1] for i, r in enumerate(setting)]
        cin = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [conv_bn_relu6(in_channels, cin, stride=1 if small_input else 2)]
        for t, c, n, s in setting:
            cout = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(conv_bn_relu6(cin, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's: He-normal (fan_out) convolutions, BN to (1, 0), linear N(0, 0.01) with zero bias."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        return self.classifier(x.mean(dim=(2, 3)))  # global average pooling + flatten


def mobilenet_v2(num_classes: int = 1000, in_channels: int = 3, small_input: bool | None = None,
                 input_size: int = 224, **kw) -> MobileNetV2:
    """MobileNetV2; ``small_input`` defaults to True for inputs under 64 pixels (``input_size``)."""
    small = input_size < 64 if small_input is None else small_input
    return MobileNetV2(num_classes, in_channels=in_channels, small_input=small, **kw)

"""LeNet-5.

LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11), 1998. The 1x28x28 layout pads the first 5x5
convolution by 2, which reproduces the paper's 32x32 input geometry:
conv5(pad 2) 6x28x28 -> pool 6x14x14 -> conv5 16x10x10 -> pool 16x5x5 -> 120 -> 84 -> classes.
The default is the modern variant (ReLU + max pooling); ``activation="tanh",
pool="avg"`` gives the classic one (without the paper's sparse C3 connection table).
"""
from __future__ import annotations

from ember import nn
from ember.models.mlp import make_activation
from ember.tensor import Tensor

__all__ = ["LeNet5", "lenet5", "lenet5_classic"]


class LeNet5(nn.Module):
    """LeNet-5 for ``in_channels x input_size x input_size`` images.

    Args:
        in_channels: image channels (1 for MNIST/Fashion-MNIST, 3 for CIFAR-10).
        num_classes: outputs of the last layer.
        input_size: image height = width (28 or 32 typically).
        activation: ``"relu"`` (default) or ``"tanh"`` (classic).
        pool: ``"max"`` (default) or ``"avg"`` (classic subsampling).
        channels: output channels of the two convolutions; (6, 16) is LeNet-5, wider pairs
            such as (32, 64) give the "2 conv + pooling" networks of the Fashion-MNIST benchmark.

    Shapes: (N, in_channels, H, W) -> (N, num_classes).
    Keys: ``features.{0,3}`` (convolutions), ``classifier.{0,2,4}`` (linear layers).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28,
                 activation: str = "relu", pool: str = "max", channels: tuple = (6, 16)):
        super().__init__()
        if pool not in ("max", "avg"):
            raise ValueError(f"LeNet5: pool must be 'max' or 'avg', got {pool!r}")
        side = (input_size + 4 - 4) // 2  # conv5 pad2 keeps the size, pool halves it
        side = (side - 4) // 2  # conv5 without padding, then pool
        if side < 1:
            raise ValueError(f"LeNet5: input_size {input_size} is too small (needs >= 12)")
        if len(channels) != 2 or min(channels) < 1:
            raise ValueError(f"LeNet5: channels must be two positive ints, got {channels!r}")
        c1, c2 = (int(c) for c in channels)
        Pool = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2), make_activation(activation), Pool(2),
            nn.Conv2d(c1, c2, 5), make_activation(activation), Pool(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(c2 * side * side, 120), make_activation(activation),
            nn.Linear(120, 84), make_activation(activation),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        return self.classifier(x.reshape(x.shape[0], -1))


def lenet5(num_classes: int = 10, in_channels: int = 1, input_size: int = 28, activation: str = "relu",
           pool: str = "max", channels: tuple = (6, 16)) -> LeNet5:
    """Modern LeNet-5 (ReLU + max pooling)."""
    return LeNet5(in_channels, num_classes, input_size, activation, pool, tuple(channels))


def lenet5_classic(num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> LeNet5:
    """Classic LeNet-5 (tanh + average pooling)."""
    return LeNet5(in_channels, num_classes, input_size, activation="tanh", pool="avg")

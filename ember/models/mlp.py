"""Multi-layer perceptron: Linear -> [norm] -> activation -> [dropout], repeated.

Rumelhart, Hinton & Williams, "Learning representations by back-propagating
errors", Nature 323, 1986.
"""
from __future__ import annotations

from typing import Sequence

from ember import nn
from ember.tensor import Tensor

__all__ = ["MLP", "mlp", "make_activation"]

_ACTIVATIONS = {
    "relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "gelu": "GELU", "leaky_relu": "LeakyReLU",
    "elu": "ELU", "silu": "SiLU",
}


def make_activation(name: str) -> nn.Module:
    """An activation module by its lowercase name (``"relu"``, ``"tanh"``, ...)."""
    cls_name = _ACTIVATIONS.get(name.lower())
    if cls_name is None or not hasattr(nn, cls_name):
        valid = ", ".join(k for k, v in _ACTIVATIONS.items() if hasattr(nn, v))
        raise ValueError(f"activation: unknown activation {name!r}; valid names: {valid}")
    return getattr(nn, cls_name)()


class MLP(nn.Module):
    """A fully connected network.

    Args:
        sizes: layer widths from input to output, e.g. ``[784, 512, 256, 10]``.
        activation: name of the hidden activation (``"relu"``, ``"tanh"``, ``"sigmoid"``, ...).
        dropout: dropout probability after each hidden activation (0 disables it).
        norm: ``None``, ``"batch"`` (BatchNorm1d) or ``"layer"`` (LayerNorm) before each activation.

    Shapes: input (N, *) is flattened to (N, sizes[0]); output (N, sizes[-1]).
    Keys: ``layers.K.weight`` / ``layers.K.bias`` for the K-th module of the stack
    (same as ``nn.Sequential`` in PyTorch built in the same order).
    """

    def __init__(self, sizes: Sequence[int], activation: str = "relu", dropout: float = 0.0,
                 norm: str | None = None):
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise ValueError(f"MLP: sizes needs at least two positive widths, got {sizes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLP: dropout must be in [0, 1), got {dropout}")
        if norm not in (None, "none", "batch", "layer"):
            raise ValueError(f"MLP: norm must be None, 'batch' or 'layer', got {norm!r}")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == len(sizes) - 2
            layers.append(nn.Linear(a, b))
            if last:
                break
            if norm == "batch":
                layers.append(nn.BatchNorm1d(b))
            elif norm == "layer":
                layers.append(nn.LayerNorm(b))
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        self.sizes = sizes
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x.reshape(x.shape[0], -1))


def mlp(num_classes: int = 10, in_channels: int = 1, input_size: int = 28, hidden: Sequence[int] = (512, 256),
        activation: str = "relu", dropout: float = 0.2, norm: str | None = None) -> MLP:
    """An MLP for ``in_channels x input_size x input_size`` images (default 784-512-256-10)."""
    sizes = [in_channels * input_size * input_size, *hidden, num_classes]
    return MLP(sizes, activation=activation, dropout=dropout, norm=norm)

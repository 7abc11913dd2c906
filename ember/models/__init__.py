"""The model zoo: classic networks with PyTorch's layer names.

``get_model(name, **kw)`` builds a model by name; ``list_models()`` lists the names.
Each family lives in its own file (perceptron, mlp, lenet, vgg, resnet, mobilenet); the
state_dict keys match the usual PyTorch definitions (torchvision's for VGG, the ImageNet
ResNets, ResNeXts and wide ResNets, and MobileNetV2) so weights move between the two.
"""
from __future__ import annotations

from typing import Callable

from ember.models.perceptron import Perceptron
from ember.models.mlp import MLP, mlp
from ember.models.lenet import LeNet5, lenet5, lenet5_classic
from ember.models.vgg import VGG, vgg11, vgg11_bn, vgg16, vgg16_bn
from ember.models.resnet import (
    BasicBlock, Bottleneck, CifarResNet, ResNet, resnet18, resnet20, resnet32, resnet34, resnet56, resnet50,
    resnet101, resnet152, resnext50_32x4d, resnext101_32x8d, wide_resnet50_2, wide_resnet101_2,
)
from ember.models.mobilenet import InvertedResidual, MobileNetV2, mobilenet_v2

__all__ = [
    "get_model", "list_models", "register_model", "Perceptron", "MLP", "LeNet5", "VGG", "ResNet", "CifarResNet",
    "BasicBlock", "mlp", "lenet5", "lenet5_classic", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "resnet18",
    "resnet34", "resnet20", "resnet32", "resnet56", "Bottleneck", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2", "MobileNetV2", "InvertedResidual",
    "mobilenet_v2",
]

_REGISTRY: dict[str, Callable] = {
    "perceptron": Perceptron,
    "mlp": mlp,
    "lenet5": lenet5,
    "lenet5-classic": lenet5_classic,
    "vgg11": vgg11,
    "vgg11_bn": vgg11_bn,
    "vgg16": vgg16,
    "vgg16_bn": vgg16_bn,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet56": resnet56,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet152": resnet152,
    "resnext50_32x4d": resnext50_32x4d,
    "resnext101_32x8d": resnext101_32x8d,
    "wide_resnet50_2": wide_resnet50_2,
    "wide_resnet101_2": wide_resnet101_2,
    "mobilenet_v2": mobilenet_v2,
}


def register_model(name: str, builder: Callable) -> None:
    """Add ``builder`` (a class or function returning a Module) under ``name``."""
    _REGISTRY[name] = builder


# Segmentation models (fcn, dilated, unet): per-pixel scores (N, K, H, W); see ember/models/segmentation.py.
from ember.models.segmentation import FCN, DilatedNet, UNet, register as _register_segmentation  # noqa: E402

_register_segmentation(register_model)
__all__ += ["FCN", "DilatedNet", "UNet"]


def list_models() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_REGISTRY)


def _canonical(name: str) -> str:
    # Accept "LeNet5", "vgg11-bn", "vgg11_bn" alike.
    key = name.strip().lower()
    if key in _REGISTRY:
        return key
    alt = key.replace("-", "_")
    if alt in _REGISTRY:
        return alt
    alt = key.replace("_", "-")
    if alt in _REGISTRY:
        return alt
    raise ValueError(f"get_model: unknown model {name!r}; valid names: {', '.join(list_models())}")


def get_model(name: str, **kwargs):
    """Build a registered model: ``get_model("resnet20", num_classes=10, in_channels=1)``.

    Raises ValueError listing the valid names when ``name`` is unknown.
    """
    return _REGISTRY[_canonical(name)](**kwargs)

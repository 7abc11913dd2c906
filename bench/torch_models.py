"""PyTorch twins of ember's zoo models, for the benchmarks and the results comparison.

Same layers, order and state_dict keys as ember.models.LeNet5 and ember.models.CifarResNet,
so ``load_state_dict`` moves weights between the two. Imported only by bench scripts.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class LeNet5(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28, channels=(6, 16)):
        super().__init__()
        side = ((input_size // 2) - 4) // 2
        c1, c2 = channels
        self.features = nn.Sequential(nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Linear(c2 * side * side, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                                        nn.Linear(84, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class MLP(nn.Module):
    """Twin of ember.models.mlp with ReLU, dropout and no normalization: keys layers.0, layers.3, ..."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28, hidden=(512, 256),
                 dropout: float = 0.2):
        super().__init__()
        sizes = [in_channels * input_size * input_size, *hidden, num_classes]
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers += [nn.ReLU()] + ([nn.Dropout(dropout)] if dropout > 0 else [])
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(torch.flatten(x, 1))


class PadShortcut(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.extra, self.stride = cout - cin, stride

    def forward(self, x):
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + idt)


class CifarResNet(nn.Module):
    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A"):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        c = 16
        for i, w in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                s = 2 if i > 0 and j == 0 else 1
                down = None
                if s != 1 or c != w:
                    down = PadShortcut(c, w, s) if shortcut == "A" else nn.Sequential(
                        nn.Conv2d(c, w, 1, s, bias=False), nn.BatchNorm2d(w))
                blocks.append(BasicBlock(c, w, s, down))
                c = w
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean(dim=(2, 3)))


def get_torch_model(name: str, **kw) -> nn.Module:
    """The PyTorch twin of ``ember.models.get_model(name, **kw)`` for mlp, lenet5 and resnet20/32/56."""
    kw = dict(kw)
    if name == "lenet5":
        return LeNet5(kw.get("in_channels", 1), kw.get("num_classes", 10), kw.get("input_size", 28),
                      tuple(kw.get("channels", (6, 16))))
    if name == "mlp":
        return MLP(kw.get("in_channels", 1), kw.get("num_classes", 10), kw.get("input_size", 28),
                   tuple(kw.get("hidden", (512, 256))), kw.get("dropout", 0.2))
    if name in ("resnet20", "resnet32", "resnet56"):
        return CifarResNet(int(name[6:]), kw.get("num_classes", 10), kw.get("in_channels", 3), kw.get("shortcut", "A"))
    raise ValueError(f"no PyTorch twin for {name!r}; available: mlp, lenet5, resnet20, resnet32, resnet56")

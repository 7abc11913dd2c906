"""Theoretical receptive fields against hand-computed values; effective fields on known cases."""
import numpy as np
import pytest

import ember
from ember import nn
from ember.diagnostics import effective_receptive_field, receptive_fields


def _by_name(model, shape):
    return {name: f for name, _, f in receptive_fields(model, shape)}


def test_dilated_stack_matches_yu_koltun():
    # 3x3 convs with dilation 1, 2, 4 (padding = dilation keeps the size): the effective
    # kernels are 3, 5, 9, so the field grows 1 -> 3 -> 3+4=7 -> 7+8=15 (Yu & Koltun 2016).
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, dilation=1), nn.ReLU(),
        nn.Conv2d(2, 2, 3, padding=2, dilation=2), nn.ReLU(),
        nn.Conv2d(2, 2, 3, padding=4, dilation=4),
    )
    rows = receptive_fields(net, (1, 1, 20, 20))
    got = [(name, f.rf, f.jump) for name, _, f in rows]
    assert got == [("0", (3, 3), (1, 1)), ("1", (3, 3), (1, 1)), ("2", (7, 7), (1, 1)), ("3", (7, 7), (1, 1)),
                   ("4", (15, 15), (1, 1))]


def test_vgg16_hand_computed():
    # VGG-16: blocks of 3x3/s1/p1 convs, each adding 2*jump, then 2x2/s2 pools adding 1*jump
    # and doubling the jump:
    #   block1: 1 -> 3 -> 5, pool -> 6 (jump 2)
    #   block2: 6 + 4 + 4 = 14, pool -> 16 (jump 4)
    #   block3: 16 + 3*8 = 40, pool -> 44 (jump 8)
    #   block4: 44 + 3*16 = 92, pool -> 100 (jump 16)
    #   block5: 100 + 3*32 = 196, pool -> 212 (jump 32)
    model = ember.models.get_model("vgg16", num_classes=10, input_size=32)
    rows = [(n, t, f) for n, t, f in receptive_fields(model, (1, 3, 32, 32)) if t == "MaxPool2d"]
    assert [f.rf[0] for _, _, f in rows] == [6, 16, 44, 100, 212]
    assert [f.jump[0] for _, _, f in rows] == [2, 4, 8, 16, 32]
    convs = [f.rf[0] for _, t, f in receptive_fields(model, (1, 3, 32, 32)) if t == "Conv2d"]
    assert convs == [3, 5, 10, 14, 24, 32, 40, 60, 76, 92, 132, 164, 196]


def test_resnet18_hand_computed():
    # conv1 7x7/s2: rf 7, jump 2; maxpool 3x3/s2: 7 + 2*2 = 11, jump 4.
    # layer1 (4 convs 3x3, jump 4): 11 + 4*8 = 43.
    # layer2: strided conv 43 + 2*4 = 51 (jump 8), then 3 convs + 16 each: 99.
    # layer3: 99 + 2*8 = 115 (jump 16), + 3*32: 211.  layer4: 211 + 2*16 = 243 (jump 32), + 3*64: 435.
    # The 1x1 downsample shortcuts have smaller fields; the sum takes the larger branch.
    model = ember.models.get_model("resnet18", num_classes=10, small_input=False)
    f = _by_name(model, (1, 3, 64, 64))
    assert f["conv1"].rf == (7, 7) and f["conv1"].jump == (2, 2)
    assert f["maxpool"].rf == (11, 11) and f["maxpool"].jump == (4, 4)
    assert f["layer1.1.conv2"].rf == (43, 43)
    assert f["layer2.0.conv1"].rf == (51, 51) and f["layer2.0.conv1"].jump == (8, 8)
    assert f["layer2.0.downsample.0"].rf == (43, 43)
    assert f["layer2.1.conv2"].rf == (99, 99)
    assert f["layer3.1.conv2"].rf == (211, 211)
    assert f["layer4.1.conv2"].rf == (435, 435) and f["layer4.1.conv2"].jump == (32, 32)
    assert f["fc"].global_


def test_residual_branch_takes_larger_field():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 1, 3, padding=1)
            self.b = nn.Conv2d(1, 1, 5, padding=2)
            self.after = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            return self.after(ember.relu(self.a(x) + self.b(x) * 0.5))

    f = _by_name(Block(), (1, 1, 12, 12))
    assert f["after"].rf == (5, 5)


def test_erf_of_single_conv_is_kernel_support():
    conv = nn.Conv2d(2, 3, 3)
    e = effective_receptive_field(conv, (2, 9, 9), n=4)
    # output 7x7, centre unit (3, 3) sees input rows/cols 3..5
    expected = np.zeros((9, 9), bool)
    expected[3:6, 3:6] = True
    assert e.center == (3, 3)
    np.testing.assert_array_equal(e.support, expected)
    assert e.theoretical == (3, 3, 5, 5)
    assert abs(e.heatmap.sum() - 1) < 1e-9
    assert 0 < e.fraction <= 1


def test_erf_of_deep_stack_is_smaller_than_theoretical():
    # Luo et al. 2016: the effective field is Gaussian-like and covers a fraction of the
    # theoretical one; with 8 stacked 3x3 convs (theoretical 17x17) 95% of the mass sits
    # in well under all 289 pixels.
    layers = []
    for i in range(8):
        layers += [nn.Conv2d(1 if i == 0 else 4, 4, 3, padding=1)]
    net = nn.Sequential(*layers)
    e = effective_receptive_field(net, (1, 25, 25), n=8)
    assert e.field.rf == (17, 17)
    t, l, b, r = e.theoretical
    assert (b - t + 1, r - l + 1) == (17, 17)
    assert not e.support[: t].any() and not e.support[b + 1:].any()  # nothing outside the theoretical field
    assert e.fraction < 0.9


def test_erf_rejects_unknown_layer():
    with pytest.raises(ValueError, match="no leaf module named"):
        effective_receptive_field(nn.Conv2d(1, 1, 3), (1, 5, 5), layer="nope")


def test_functional_flatten_makes_linear_global():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(2 * 4 * 4, 3)

        def forward(self, x):
            return self.fc(self.conv(x).reshape(x.shape[0], -1))

    f = _by_name(Net(), (1, 1, 6, 6))
    # the conv sees 3x3; a unit of fc sees every conv output: 3 + (4 - 1) * 1 = 6 pixels
    assert f["conv"].rf == (3, 3) and f["fc"].global_ and f["fc"].rf == (6, 6)


def test_mlp_has_no_spatial_field():
    rows = receptive_fields(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), (2, 4))
    assert [f.text() for _, _, f in rows] == ["-", "-"]

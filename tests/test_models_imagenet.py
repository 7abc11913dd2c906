"""The ImageNet-family zoo: bottleneck ResNets, ResNeXt, wide ResNets and MobileNetV2 against PyTorch.

The PyTorch references are written here (torchvision is not a dependency) with torchvision's
layer order and names, so ember's state_dict loads into them with ``strict=True``. Networks
are built small (10 classes, 16-64 pixel inputs, one block per stage) except where only a
parameter count or the keys are checked; the PyTorch twins of the big ones are built on the
meta device (no memory).
"""
import numpy as np
import pytest

import ember
from ember.models import BasicBlock, Bottleneck, MobileNetV2, ResNet, get_model, list_models
from ember.models.mobilenet import make_divisible
from tests.test_models import check_same_as_torch, img, n_params, randomize_bn_stats

torch = pytest.importorskip("torch")
tnn = torch.nn
tF = torch.nn.functional


# ---- PyTorch reference definitions -------------------------------------------------------------------
class TBottleneck(tnn.Module):  # torchvision.models.resnet.Bottleneck ("v1.5": stride on the 3x3)
    expansion = 4

    def __init__(self, cin, planes, stride, downsample, groups=1, base_width=64):
        super().__init__()
        width = int(planes * base_width / 64) * groups
        self.conv1 = tnn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(width)
        self.conv2 = tnn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = tnn.BatchNorm2d(width)
        self.conv3 = tnn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = tnn.BatchNorm2d(planes * 4)
        self.relu = tnn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


class TResNet(tnn.Module):  # torchvision.models.ResNet with bottleneck blocks (+ ember's small_input stem)
    def __init__(self, layers, classes=1000, groups=1, width_per_group=64, cin=3, small=False):
        super().__init__()
        if small:
            self.conv1 = tnn.Conv2d(cin, 64, 3, 1, 1, bias=False)
            self.maxpool = tnn.Identity()
        else:
            self.conv1 = tnn.Conv2d(cin, 64, 7, 2, 3, bias=False)
            self.maxpool = tnn.MaxPool2d(3, 2, 1)
        self.bn1 = tnn.BatchNorm2d(64)
        self.relu = tnn.ReLU(inplace=True)
        c = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                s = 2 if i > 0 and j == 0 else 1
                down = None
                if s != 1 or c != planes * 4:
                    down = tnn.Sequential(tnn.Conv2d(c, planes * 4, 1, s, bias=False), tnn.BatchNorm2d(planes * 4))
                blocks.append(TBottleneck(c, planes, s, down, groups, width_per_group))
                c = planes * 4
            setattr(self, f"layer{i + 1}", tnn.Sequential(*blocks))
        self.fc = tnn.Linear(c, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(tF.adaptive_avg_pool2d(x, 1), 1))


def t_round8(v, d=8):  # the reference implementation's channel rounding
    r = max(d, int(v + d / 2) // d * d)
    return r + d if r < 0.9 * v else r


def t_cbr(cin, cout, k=3, s=1, groups=1):  # torchvision's Conv2dNormActivation with ReLU6
    return tnn.Sequential(tnn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=groups, bias=False),
                          tnn.BatchNorm2d(cout), tnn.ReLU6(inplace=True))


class TInvertedResidual(tnn.Module):  # torchvision.models.mobilenetv2.InvertedResidual
    def __init__(self, inp, oup, stride, t):
        super().__init__()
        hidden = round(inp * t)
        self.res = stride == 1 and inp == oup
        layers = [t_cbr(inp, hidden, 1)] if t != 1 else []
        layers += [t_cbr(hidden, hidden, 3, stride, hidden), tnn.Conv2d(hidden, oup, 1, bias=False),
                   tnn.BatchNorm2d(oup)]
        self.conv = tnn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.res else self.conv(x)


class TMobileNetV2(tnn.Module):  # torchvision.models.MobileNetV2 (+ ember's small_input strides)
    ROWS = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]

    def __init__(self, classes=1000, width_mult=1.0, cin=3, small=False, dropout=0.2):
        super().__init__()
        c = t_round8(32 * width_mult)
        last = t_round8(1280 * max(1.0, width_mult))
        feats = [t_cbr(cin, c, 3, 1 if small else 2)]
        for k, (t, ch, n, s) in enumerate(self.ROWS):
            s = 1 if small and k == 1 else s
            out = t_round8(ch * width_mult)
            for i in range(n):
                feats.append(TInvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        feats.append(t_cbr(c, last, 1))
        self.features = tnn.Sequential(*feats)
        self.classifier = tnn.Sequential(tnn.Dropout(dropout), tnn.Linear(last, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(tF.adaptive_avg_pool2d(self.features(x), 1), 1))


# ---- helpers -----------------------------------------------------------------------------------------
def load_into_torch(model, tmodel):
    ours = {k: torch.from_numpy(np.asarray(v.data).copy()) for k, v in model.state_dict().items()}
    assert list(ours) == list(tmodel.state_dict())
    tmodel.load_state_dict(ours, strict=True)


def check_train_mode_as_torch(model, tmodel, x, tol=1e-3):
    """Training mode: the output with batch statistics, then the running statistics both updated."""
    load_into_torch(model, tmodel)
    model.train()
    tmodel.train()
    y = model(ember.tensor(x)).detach().numpy()
    with torch.no_grad():
        ty = tmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, ty, rtol=tol, atol=tol)
    theirs = tmodel.state_dict()
    for k, b in model.named_buffers():
        np.testing.assert_allclose(np.asarray(b.data), theirs[k].numpy(), rtol=tol, atol=tol, err_msg=k)


def check_gradients_as_torch(model, tmodel, x, y):
    """float64: the cross-entropy loss and every parameter's gradient as PyTorch's."""
    load_into_torch(model, tmodel)
    model.double().train()
    tmodel.double().train()
    x = x.astype(np.float64)
    loss = ember.nn.functional.cross_entropy(model(ember.tensor(x)), ember.tensor(y))
    loss.backward()
    tloss = tF.cross_entropy(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
    tloss.backward()
    np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-10)
    tgrads = {k: p.grad.numpy() for k, p in tmodel.named_parameters()}
    assert len(tgrads) == len(list(model.parameters()))
    for k, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tgrads[k], rtol=1e-7, atol=1e-11, err_msg=k)


# (name, layers, groups, width_per_group, torchvision's parameter count at 1000 classes)
RESNETS = [
    ("resnet50", (3, 4, 6, 3), 1, 64, 25_557_032),
    ("resnet101", (3, 4, 23, 3), 1, 64, 44_549_160),
    ("resnet152", (3, 8, 36, 3), 1, 64, 60_192_808),
    ("resnext50_32x4d", (3, 4, 6, 3), 32, 4, 25_028_904),
    ("resnext101_32x8d", (3, 4, 23, 3), 32, 8, 88_791_336),
    ("wide_resnet50_2", (3, 4, 6, 3), 1, 128, 68_883_240),
    ("wide_resnet101_2", (3, 4, 23, 3), 1, 128, 126_886_696),
]


# ---- ResNet family -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,layers,groups,wpg,count", RESNETS, ids=[r[0] for r in RESNETS])
def test_resnet_family_counts_and_keys_equal_torchvision(name, layers, groups, wpg, count):
    m = get_model(name)
    assert n_params(m) == count
    with torch.device("meta"):  # the twin's keys and count without allocating its weights
        t = TResNet(layers, 1000, groups, wpg)
    assert list(m.state_dict()) == list(t.state_dict())
    assert n_params(t) == count
    assert m.fc.weight.shape == (1000, 2048) and not m.small_input
    with ember.no_grad():
        assert m.eval()(ember.randn(1, 3, 32, 32)).shape == (1, 1000)


@pytest.mark.parametrize("name", ["resnet50", "resnext50_32x4d"])  # the wide net: the next test
def test_resnet50_family_outputs_equal_torch_eval_and_train(name):
    layers, groups, wpg = next(r[1:4] for r in RESNETS if r[0] == name)
    m = get_model(name, num_classes=10, input_size=64)
    t = TResNet(layers, 10, groups, wpg)
    randomize_bn_stats(m)
    x = img(2, 3, 64)
    check_same_as_torch(m, t, x, atol=1e-3)  # eval: running statistics
    check_train_mode_as_torch(m, t, x)


@pytest.mark.parametrize("small,groups,wpg,conv2", [(True, 4, 16, (64, 16, 3, 3)), (False, 1, 128, (128, 128, 3, 3))],
                         ids=["grouped-small-input", "wide"])
def test_small_bottleneck_net_eval_train_and_small_input(small, groups, wpg, conv2):
    m = ResNet(Bottleneck, [1, 1, 1, 1], 10, groups=groups, width_per_group=wpg, in_channels=1, small_input=small)
    t = TResNet([1, 1, 1, 1], 10, groups, wpg, cin=1, small=small)
    assert m.conv1.weight.shape == ((64, 1, 3, 3) if small else (64, 1, 7, 7))
    assert m.layer1[0].conv2.weight.shape == conv2  # 4 groups of 16, or one group twice ResNet-50's 64
    randomize_bn_stats(m)
    x = img(3, 1, 32 if small else 48)
    check_same_as_torch(m, t, x)
    check_train_mode_as_torch(m, t, x)


def test_small_bottleneck_net_gradients_equal_torch():
    m = ResNet(Bottleneck, [1, 1, 1, 1], 10, groups=2, width_per_group=32, small_input=True)
    t = TResNet([1, 1, 1, 1], 10, 2, 32, small=True)
    check_gradients_as_torch(m, t, img(4, 3, 16), np.array([1, 3, 0, 7]))


def test_zero_init_residual_zeroes_the_last_bn_of_each_block():
    m = ResNet(Bottleneck, [1, 2, 1, 1], 10, zero_init_residual=True, small_input=True)
    blocks = [b for b in m.modules() if isinstance(b, Bottleneck)]
    assert len(blocks) == 5
    assert all((np.asarray(b.bn3.weight.data) == 0).all() and (np.asarray(b.bn2.weight.data) == 1).all()
               for b in blocks)
    basic = get_model("resnet18", zero_init_residual=True, input_size=32)
    assert all((np.asarray(b.bn2.weight.data) == 0).all() for b in basic.modules() if isinstance(b, BasicBlock))
    # Each block starts as the identity, so in eval mode the trunk passes a block's input straight on.
    b = m.layer2[1].eval()  # no downsample: relu(0 + x) = x for x >= 0
    x = ember.tensor(np.abs(img(2, 512, 4)))
    with ember.no_grad():
        np.testing.assert_allclose(b(x).numpy(), x.numpy(), rtol=1e-6)


def test_builders_keep_small_input_and_input_size_behaviour():
    m = get_model("resnext50_32x4d", num_classes=10, in_channels=1, input_size=28)
    assert m.small_input and m.conv1.weight.shape == (64, 1, 3, 3)
    assert not hasattr(m, "maxpool")
    assert m(ember.randn(2, 1, 28, 28)).shape == (2, 10)
    assert not get_model("resnet50", num_classes=10, input_size=64).small_input
    assert get_model("resnet50", num_classes=10, small_input=True, input_size=224).small_input


def test_bad_resnet_arguments_give_clear_errors():
    with pytest.raises(ValueError, match="BasicBlock: supports only groups=1 .*groups=32"):
        ResNet(BasicBlock, [2, 2, 2, 2], groups=32, width_per_group=4)
    with pytest.raises(ValueError, match="BasicBlock: .*base_width=128"):
        BasicBlock(64, 64, base_width=128)
    with pytest.raises(ValueError, match="Bottleneck: planes \\* base_width / 64 .*planes=8, base_width=4 -> 0.5"):
        Bottleneck(64, 8, base_width=4)
    with pytest.raises(ValueError, match="Bottleneck: planes \\* base_width / 64 .*planes=16, base_width=10 -> 2.5"):
        Bottleneck(64, 16, groups=2, base_width=10)
    with pytest.raises(ValueError, match="groups and base_width .* groups=0"):
        Bottleneck(64, 64, groups=0)
    with pytest.raises(TypeError, match="ResNet: block must be a block class .*got \\(2, 2, 2, 2\\)"):
        ResNet((2, 2, 2, 2), 10)  # the pre-torchvision argument order is refused, not misread
    with pytest.raises(ValueError, match="ResNet: layers must be 4 positive .*\\(3, 4, 6\\)"):
        ResNet(Bottleneck, [3, 4, 6])
    with pytest.raises(TypeError, match="groups"):
        get_model("resnext50_32x4d", groups=8)  # the name fixes the groups


# ---- MobileNetV2 -------------------------------------------------------------------------------------
def test_make_divisible_rounds_as_the_reference_implementation():
    assert make_divisible(32) == 32 and make_divisible(1280 * 1.4) == 1792 and make_divisible(160 * 0.5) == 80
    assert make_divisible(32 * 0.35) == 16  # 11.2 rounds to 8, more than 10% down: one step up
    assert make_divisible(24 * 0.75) == 24 and make_divisible(3) == 8  # never below the divisor


@pytest.mark.parametrize("width", [0.35, 0.5, 0.75, 1.0, 1.4])
def test_mobilenet_v2_counts_and_keys_equal_torchvision(width):
    m = get_model("mobilenet_v2", width_mult=width)
    with torch.device("meta"):
        t = TMobileNetV2(1000, width)
    assert list(m.state_dict()) == list(t.state_dict())
    assert n_params(m) == n_params(t)
    if width == 1.0:
        assert n_params(m) == 3_504_872  # torchvision's published count
        keys = list(m.state_dict())
        assert keys[:2] == ["features.0.0.weight", "features.0.1.weight"]
        assert "features.1.conv.0.0.weight" in keys and "features.1.conv.2.running_var" in keys  # t = 1: no expansion
        assert "features.2.conv.0.0.weight" in keys and "features.2.conv.3.weight" in keys  # expand, dw, project, bn
        assert "features.18.0.weight" in keys and keys[-2:] == ["classifier.1.weight", "classifier.1.bias"]
        assert m.features[2].conv[1][0].weight.shape == (96, 1, 3, 3)  # depthwise: one filter per channel


@pytest.mark.parametrize("width,small,size", [(1.0, True, 32), (0.5, True, 28), (0.75, False, 64)])
def test_mobilenet_v2_outputs_equal_torch_eval_and_train(width, small, size):
    m = get_model("mobilenet_v2", num_classes=10, width_mult=width, input_size=size, dropout=0.0)
    assert m.small_input == small
    t = TMobileNetV2(10, width, small=small, dropout=0.0)
    randomize_bn_stats(m)
    x = img(3, 3, size)
    check_same_as_torch(m, t, x)
    check_train_mode_as_torch(m, t, x)


def test_mobilenet_v2_gradients_equal_torch():
    m = MobileNetV2(10, width_mult=0.25, in_channels=1, small_input=True)
    t = TMobileNetV2(10, 0.25, cin=1, small=True)
    m.classifier[0].p = t.classifier[0].p = 0.0  # dropout would draw different masks
    check_gradients_as_torch(m, t, img(4, 1, 16), np.array([2, 9, 0, 5]))


def test_mobilenet_v2_small_input_strides_and_dropout():
    small = get_model("mobilenet_v2", num_classes=10, input_size=32)
    big = get_model("mobilenet_v2", num_classes=10, input_size=224)
    assert small.features[0][0].stride == (1, 1) and big.features[0][0].stride == (2, 2)
    assert small.features[2].stride == 1 and big.features[2].stride == 2  # the first stride-2 block
    assert small.features[4].stride == 2  # later stages keep theirs
    with ember.no_grad():
        assert small.eval()(ember.randn(2, 3, 32, 32)).shape == (2, 10)
        feats = small.features(ember.randn(1, 3, 32, 32))
    assert feats.shape == (1, 1280, 4, 4)  # 8x downsampling
    assert small.classifier[0].p == 0.2 and isinstance(small.classifier[0], ember.nn.Dropout)


def test_bad_mobilenet_arguments_give_clear_errors():
    with pytest.raises(ValueError, match="MobileNetV2: width_mult must be > 0, got 0"):
        MobileNetV2(width_mult=0)
    with pytest.raises(ValueError, match="MobileNetV2: inverted_residual_setting .*rows \\[t, c, n, s\\]"):
        MobileNetV2(inverted_residual_setting=[[6, 24, 2]])
    with pytest.raises(ValueError, match="MobileNetV2: dropout must be in \\[0, 1\\), got 1.5"):
        MobileNetV2(dropout=1.5)
    with pytest.raises(ValueError, match="InvertedResidual: stride must be 1 or 2, got 3"):
        MobileNetV2(inverted_residual_setting=[[6, 24, 1, 3]])


def test_mobilenet_v2_overfits_random_32px_data():
    ember.manual_seed(0)
    m = get_model("mobilenet_v2", num_classes=4, width_mult=0.5, input_size=32, dropout=0.0)
    assert m.small_input
    rng = np.random.default_rng(0)
    x = ember.tensor(rng.standard_normal((8, 3, 32, 32)).astype(np.float32))
    y = ember.tensor(np.arange(8) % 4)
    opt = ember.optim.Adam(m.parameters(), lr=3e-3)
    m.train()
    losses = []
    for _ in range(25):
        loss = ember.nn.functional.cross_entropy(m(x), y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.3 * losses[0], losses


# ---- registry and CLI --------------------------------------------------------------------------------
NEW = [r[0] for r in RESNETS] + ["mobilenet_v2"]


def test_registry_lists_and_builds_the_new_names():
    names = list_models()
    assert set(NEW) <= set(names)
    for name in ("resnet50", "mobilenet_v2"):  # every name is built in the count tests above
        m = get_model(name, num_classes=10, in_channels=1, input_size=16)
        assert m.small_input, name
        with ember.no_grad():
            assert m.eval()(ember.randn(1, 1, 16, 16)).shape == (1, 10), name
    assert type(get_model("MobileNet-V2", num_classes=3)).__name__ == "MobileNetV2"


def test_cli_trains_and_evaluates_mobilenet_v2(tmp_path, capsys):
    from ember.cli import main

    out = tmp_path / "run"
    rc = main(["train", "--data", "synthetic-shapes", "--model", "mobilenet_v2", "--model-arg", "width_mult=0.25",
               "--batch-size", "16", "--val-split", "16", "--limit-train", "32", "--epochs", "1", "--no-progress",
               "--eval-batch-size", "64", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "mobilenet_v2" in capsys.readouterr().out
    assert (out / "last.safetensors").exists()
    assert main(["eval", "--checkpoint", str(out / "last.safetensors")]) == 0  # rebuilt from the metadata

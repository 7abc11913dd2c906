"""Model zoo: shapes, parameter counts, torch-equivalence of keys and outputs, overfitting, perceptron vs XOR.

The PyTorch references are written here (torchvision is not a dependency): same layer
order and names as torchvision's VGG/ResNet and the usual LeNet-5 / CIFAR ResNet.
"""
import numpy as np
import pytest

import ember
from ember import nn
from ember.models import get_model, list_models

torch = pytest.importorskip("torch")
tnn = torch.nn
tF = torch.nn.functional


# ---- PyTorch reference definitions -------------------------------------------------------------------
class TLeNet5(tnn.Module):
    def __init__(self, cin=1, classes=10, side=5, act=tnn.ReLU, pool=tnn.MaxPool2d):
        super().__init__()
        self.features = tnn.Sequential(tnn.Conv2d(cin, 6, 5, padding=2), act(), pool(2),
                                       tnn.Conv2d(6, 16, 5), act(), pool(2))
        self.classifier = tnn.Sequential(tnn.Linear(16 * side * side, 120), act(), tnn.Linear(120, 84), act(),
                                         tnn.Linear(84, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def t_vgg_features(cfg, cin, bn, size):
    layers = []
    for v in cfg:
        if v == "M":
            layers.append(tnn.MaxPool2d(2, 2, padding=size % 2))
            size = (size + 2 * (size % 2) - 2) // 2 + 1
        else:
            layers += [tnn.Conv2d(cin, v, 3, padding=1)] + ([tnn.BatchNorm2d(v)] if bn else []) + [tnn.ReLU(True)]
            cin = v
    return tnn.Sequential(*layers)


class TVGG(tnn.Module):  # torchvision.models.VGG, plus the small head for 28/32-pixel inputs
    def __init__(self, cfg, bn, classes, cin, size):
        super().__init__()
        self.features = t_vgg_features(cfg, cin, bn, size)
        self.small = size < 64
        if self.small:
            self.classifier = tnn.Sequential(tnn.Dropout(0.5), tnn.Linear(512, classes))
        else:
            self.avgpool = tnn.AdaptiveAvgPool2d((7, 7))
            self.classifier = tnn.Sequential(tnn.Linear(512 * 7 * 7, 4096), tnn.ReLU(True), tnn.Dropout(),
                                             tnn.Linear(4096, 4096), tnn.ReLU(True), tnn.Dropout(),
                                             tnn.Linear(4096, classes))

    def forward(self, x):
        x = self.features(x)
        if not self.small:
            x = self.avgpool(x)
        return self.classifier(torch.flatten(x, 1))


class TBlock(tnn.Module):  # torchvision.models.resnet.BasicBlock
    def __init__(self, cin, cout, stride, downsample):
        super().__init__()
        self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(cout)
        self.relu = tnn.ReLU(inplace=True)
        self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(cout)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + idt)


class TPad(tnn.Module):  # option A shortcut
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.extra, self.stride = cout - cin, stride

    def forward(self, x):
        x = x[:, :, ::self.stride, ::self.stride]
        return tF.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


def t_shortcut(opt, cin, cout, stride):
    if stride == 1 and cin == cout:
        return None
    if opt == "A":
        return TPad(cin, cout, stride)
    return tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))


class TResNet(tnn.Module):
    """CIFAR ResNet-(6n+2) when ``widths`` has 3 entries, torchvision ResNet-18/34 otherwise."""

    def __init__(self, blocks, widths, cin, classes, opt="B", stem="cifar"):
        super().__init__()
        w0 = widths[0]
        if stem == "imagenet":
            self.conv1 = tnn.Conv2d(cin, 64, 7, 2, 3, bias=False)
            self.maxpool = tnn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = tnn.Conv2d(cin, w0, 3, 1, 1, bias=False)
            self.maxpool = tnn.Identity()
        self.bn1 = tnn.BatchNorm2d(w0)
        self.relu = tnn.ReLU(inplace=True)
        c = w0
        for i, (w, n) in enumerate(zip(widths, blocks)):
            layers = []
            for j in range(n):
                s = 2 if i > 0 and j == 0 else 1
                layers.append(TBlock(c, w, s, t_shortcut(opt, c, w, s)))
                c = w
            setattr(self, f"layer{i + 1}", tnn.Sequential(*layers))
        self.n = len(widths)
        self.fc = tnn.Linear(c, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.n):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(tF.adaptive_avg_pool2d(x, 1), 1))


# ---- helpers -----------------------------------------------------------------------------------------
def n_params(m):
    return sum(p.numel() for p in m.parameters())


def randomize_bn_stats(model, seed=0):
    """Non-trivial running statistics, so eval mode really tests them."""
    rng = np.random.default_rng(seed)
    for name, b in model.named_buffers():
        if name.endswith("running_mean"):
            b.data[...] = rng.normal(0, 0.1, b.shape).astype(b.dtype)
        elif name.endswith("running_var"):
            b.data[...] = rng.uniform(0.5, 1.5, b.shape).astype(b.dtype)


def check_same_as_torch(model, tmodel, x, atol=1e-4):
    ours = {k: np.asarray(v.data) for k, v in model.state_dict().items()}
    theirs = tmodel.state_dict()
    assert list(ours) == list(theirs), set(ours) ^ set(theirs)
    assert n_params(model) == n_params(tmodel)
    tmodel.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ours.items()}, strict=True)
    model.eval()
    tmodel.eval()
    with ember.no_grad():
        y = model(ember.tensor(x)).numpy()
    with torch.no_grad():
        ty = tmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, ty, rtol=1e-3, atol=atol)


def img(n, c, s, seed=0):
    return np.random.default_rng(seed).standard_normal((n, c, s, s)).astype(np.float32)


# ---- tests -------------------------------------------------------------------------------------------
def test_registry_lists_and_rejects_unknown_names():
    names = list_models()
    for n in ("mlp", "lenet5", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "resnet20", "resnet32", "resnet56",
              "resnet18", "resnet34", "perceptron"):
        assert n in names
    with pytest.raises(ValueError, match="valid names: .*lenet5"):
        get_model("lenet7")
    assert type(get_model("LeNet5")).__name__ == "LeNet5"
    assert type(get_model("vgg11-bn", input_size=28, in_channels=1, num_classes=10)).__name__ == "VGG"


@pytest.mark.parametrize("classic", [False, True])
def test_lenet5_matches_torch(classic):
    m = get_model("lenet5-classic" if classic else "lenet5")
    t = TLeNet5(act=tnn.Tanh if classic else tnn.ReLU, pool=tnn.AvgPool2d if classic else tnn.MaxPool2d)
    assert n_params(m) == 61706  # the classic count for 1x28x28, 10 classes (with padding 2)
    check_same_as_torch(m, t, img(4, 1, 28))
    assert get_model("lenet5", in_channels=3, input_size=32)(ember.randn(2, 3, 32, 32)).shape == (2, 10)


def test_mlp_matches_torch_and_options():
    m = get_model("mlp", hidden=(32, 16), dropout=0.1, norm="batch")
    t = tnn.Sequential(tnn.Linear(784, 32), tnn.BatchNorm1d(32), tnn.ReLU(), tnn.Dropout(0.1),
                       tnn.Linear(32, 16), tnn.BatchNorm1d(16), tnn.ReLU(), tnn.Dropout(0.1), tnn.Linear(16, 10))
    tw = tnn.Module()
    tw.layers = t
    tw.forward = lambda x: t(torch.flatten(x, 1))
    randomize_bn_stats(m)
    check_same_as_torch(m, tw, img(3, 1, 28))
    assert n_params(get_model("mlp")) == 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10
    with pytest.raises(ValueError, match="valid names"):
        ember.models.MLP([4, 5, 3], activation="swishy")
    with pytest.raises(ValueError, match="sizes"):
        ember.models.MLP([4])


@pytest.mark.parametrize("name,bn", [("vgg11", False), ("vgg11_bn", True)])
@pytest.mark.parametrize("cin,size", [(1, 28), (3, 32)])
def test_vgg_small_matches_torch(name, bn, cin, size):
    from ember.models.vgg import CFGS

    m = get_model(name, num_classes=10, in_channels=cin, input_size=size)
    t = TVGG(CFGS["vgg11"], bn, 10, cin, size)
    randomize_bn_stats(m)
    check_same_as_torch(m, t, img(2, cin, size))


def vgg_count(cfg, bn, classes=1000, cin=3):
    """torchvision VGG's parameter count, from the configuration."""
    c, total = cin, 0
    for v in cfg:
        if v != "M":
            total += c * v * 9 + v + (2 * v if bn else 0)
            c = v
    return total + 25088 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * classes + classes


def test_vgg_imagenet_head_keys_count_and_output():
    # The torchvision head at a small input (64 px, so the trunk gives 2x2 -> AdaptiveAvgPool2d(7)).
    # One build of the 4096-wide head (~0.5 GB) is enough: vgg16 differs only in the trunk.
    from ember.models.vgg import CFGS

    m = get_model("vgg11_bn", num_classes=10, input_size=64)
    t = TVGG(CFGS["vgg11"], True, 10, 3, 64)
    keys = list(m.state_dict())
    assert "classifier.6.weight" in keys and "features.1.running_mean" in keys
    assert n_params(m) == vgg_count(CFGS["vgg11"], True, classes=10)
    randomize_bn_stats(m)
    check_same_as_torch(m, t, img(1, 3, 64), atol=1e-3)


def test_vgg_parameter_counts_match_torchvision():
    # torchvision's published totals (1000 classes, 224x224)
    from ember.models.vgg import CFGS

    assert vgg_count(CFGS["vgg11"], False) == 132_863_336 and vgg_count(CFGS["vgg11"], True) == 132_868_840
    assert vgg_count(CFGS["vgg16"], False) == 138_357_544 and vgg_count(CFGS["vgg16"], True) == 138_365_992


@pytest.mark.parametrize("opt", ["A", "B"])
def test_resnet20_matches_torch(opt):
    m = get_model("resnet20", shortcut=opt, in_channels=1)
    t = TResNet([3, 3, 3], [16, 32, 64], 1, 10, opt)
    randomize_bn_stats(m)
    check_same_as_torch(m, t, img(2, 1, 28))
    if opt == "A":
        assert n_params(get_model("resnet20")) == 269_722  # He et al.: 0.27M


@pytest.mark.parametrize("opt", ["A", "B"])
def test_resnet20_training_step_matches_torch(opt):
    """Training mode (batch statistics; each block's last batch norm, residual sum and ReLU as one
    op, ember.models.resnet.bn_relu): the loss and every parameter's gradient as PyTorch's."""
    m = get_model("resnet20", shortcut=opt, in_channels=1)
    t = TResNet([3, 3, 3], [16, 32, 64], 1, 10, opt)
    t.load_state_dict({k: torch.from_numpy(np.asarray(v.data).copy()) for k, v in m.state_dict().items()})
    m.double()
    t.double()
    x = img(4, 1, 12).astype(np.float64)
    y = np.array([1, 3, 0, 7])
    loss = ember.nn.functional.cross_entropy(m(ember.tensor(x)), ember.tensor(y))
    loss.backward()
    tloss = tF.cross_entropy(t(torch.from_numpy(x)), torch.from_numpy(y))
    tloss.backward()
    np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-10)
    tgrads = {k: p.grad.numpy() for k, p in t.named_parameters()}
    for k, p in m.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tgrads[k], rtol=1e-7, atol=1e-10, err_msg=k)
    for k, b in m.named_buffers():  # running statistics moved alike
        np.testing.assert_allclose(np.asarray(b.data), t.state_dict()[k].numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=k)


def test_resnet_block_fuses_only_unwatched_standard_layers():
    """bn_relu runs relu(bn(x) + identity) as one op unless a hook watches the ReLU or a batch norm
    (the hook then sees exactly its layer's output) or a layer was swapped for another."""
    from ember.ops.normalize import Normalize

    block = ember.models.BasicBlock(4, 4)
    x = ember.tensor(img(2, 4, 5))
    out = block(x)
    assert isinstance(out.grad_fn, Normalize)  # one op: batch norm, residual sum and ReLU
    seen = []
    handle = block.relu.register_forward_hook(lambda mod, args, y: seen.append(y.detach().numpy().copy()))
    out2 = block(x)
    handle.remove()
    assert len(seen) == 2 and not isinstance(out2.grad_fn, Normalize)
    np.testing.assert_allclose(seen[1], out.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out2.detach().numpy(), out.detach().numpy(), rtol=1e-6, atol=1e-6)
    pre = []
    handle = block.bn2.register_forward_hook(lambda mod, args, y: pre.append(y.detach().numpy().copy()))
    block(x)
    handle.remove()
    assert (pre[0] < 0).any()  # bn2's own output, before the sum and the ReLU
    block.relu = nn.LeakyReLU(0.5)  # a researcher's change is honoured
    leaky = block(x).detach().numpy()
    assert (leaky < 0).any()


def test_cifar_resnet_depths():
    assert n_params(get_model("resnet32")) == 464_154
    assert n_params(get_model("resnet56")) == 853_018
    with pytest.raises(ValueError, match="6n\\+2"):
        ember.models.CifarResNet(21)


def test_resnet18_matches_torchvision_layout():
    m = get_model("resnet18", num_classes=10, input_size=64)  # ImageNet stem at 64 px: cheap but complete
    assert not m.small_input
    t = TResNet([2, 2, 2, 2], [64, 128, 256, 512], 3, 10, "B", stem="imagenet")
    randomize_bn_stats(m)
    check_same_as_torch(m, t, img(1, 3, 64), atol=1e-3)
    assert n_params(get_model("resnet18")) == 11_689_512  # torchvision's total (1000 classes)
    assert "layer2.0.downsample.1.running_var" in m.state_dict()


def test_resnet34_count_and_small_input():
    assert n_params(get_model("resnet34")) == 21_797_672
    m = get_model("resnet18", num_classes=10, in_channels=1, input_size=28)
    assert m.small_input and m.conv1.weight.shape == (64, 1, 3, 3)
    assert m(ember.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("name", ["mlp", "lenet5", "resnet20", "vgg_bn"])
def test_overfits_one_small_batch(name):
    ember.manual_seed(0)
    if name == "vgg_bn":  # a slim VGG keeps the test fast; same code path as vgg11_bn
        m = ember.models.VGG([8, "M", 16, "M", 32, "M", 32, "M"], batch_norm=True, num_classes=4, in_channels=1,
                             input_size=16, dropout=0.0)
    else:
        m = get_model(name, num_classes=4, in_channels=1, input_size=16)
    rng = np.random.default_rng(0)
    x = ember.tensor(rng.standard_normal((8, 1, 16, 16)).astype(np.float32))
    y = ember.tensor(np.arange(8) % 4)
    opt = ember.optim.Adam(m.parameters(), lr=3e-3)
    m.train()
    for _ in range(80):
        loss = nn.functional.cross_entropy(m(x), y)
        if loss.item() < 0.05:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05, f"{name}: loss {loss.item()} after 80 steps on one batch"
    m.eval()
    with ember.no_grad():
        assert (m(x).numpy().argmax(1) == y.numpy()).all()


def xor_data():
    return np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64), np.array([0, 1, 1, 0])


def test_perceptron_learns_and_but_not_xor():
    x, _ = xor_data()
    p = get_model("perceptron", in_features=2)
    hist = p.fit(x, np.array([0, 0, 0, 1]), epochs=50)
    assert hist[-1] == 0 and (p.predict(x) == [0, 0, 0, 1]).all()  # AND is linearly separable
    p = ember.models.Perceptron(2)
    x, y = xor_data()
    hist = p.fit(x, y, epochs=200)
    assert len(hist) == 200 and min(hist) > 0  # never a mistake-free pass
    assert (p.predict(x) == y).mean() <= 0.75  # a line gets at most 3 of the 4 XOR points right


def test_two_layer_mlp_learns_xor_by_backprop():
    ember.manual_seed(0)
    x, y = xor_data()
    m = ember.models.MLP([2, 8, 2], activation="tanh")
    opt = ember.optim.SGD(m.parameters(), lr=0.5, momentum=0.9)
    xt, yt = ember.tensor(x.astype(np.float32)), ember.tensor(y)
    for _ in range(300):
        loss = nn.functional.cross_entropy(m(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with ember.no_grad():
        assert (m(xt).numpy().argmax(1) == y).all()


def test_lenet5_channels_widen_the_two_convolutions():
    from ember.models import get_model

    m = get_model("lenet5", channels=(16, 32))
    assert m.features[0].weight.shape == (16, 1, 5, 5)
    assert m.features[3].weight.shape == (32, 16, 5, 5)
    assert m.classifier[0].weight.shape == (120, 32 * 5 * 5)
    assert m(ember.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="channels"):
        get_model("lenet5", channels=(6,))

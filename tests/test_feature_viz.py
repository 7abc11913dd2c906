"""Feature visualization (activation maximization, class models, top dataset examples) and guided
backpropagation, against closed forms, brute force and PyTorch."""
import numpy as np
import pytest

import ember
from ember import nn
from ember.backend import cupy_available
from ember.data import DataLoader, TensorDataset
from ember.diagnostics import feature_viz as FV
from ember.errors import GraphError, ShapeError
from ember.models.resnet import CifarResNet
from ember.ops.normalize import Normalize

torch = pytest.importorskip("torch")


def _x(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _cnn(seed=0, hw=8):
    ember.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * hw * hw // 4, 5))


def _torch_cnn():
    return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(6 * 4 * 4, 5))


def _copy(em, tm, dtype):
    tm.load_state_dict({k: torch.tensor(np.asarray(v.detach().numpy())) for k, v in em.state_dict().items()})
    if dtype == np.float64:
        em.double()
        tm.double()
    return em, tm


def _final(fv, model, layer, x):
    """The activation the result reports, recomputed independently from the layer's output."""
    return FV._run_to("t", layer, model, dict(model.named_modules())[layer], ember.Tensor(x)).data


# ---- maximize_activation / class_model ---------------------------------------------------------------
def test_linear_unit_converges_to_the_closed_form_optimum():
    """max_x w . x + b - wd ||x||^2 has the optimum x* = w / (2 wd); three units in one batch."""
    ember.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).double()
    w = model[1].weight.detach().numpy()
    for wd in (0.5, 0.05):
        # x_{t+1} - x* = (1 - 2 lr wd)(x_t - x*): lr = 0.25 / wd halves the distance every step
        r = FV.maximize_activation(model, "1", [0, 2, 1], (1, 4, 4), steps=400, lr=0.25 / wd, weight_decay=wd,
                                   blur_every=0, jitter=0)
        x = r.images.reshape(3, 16)
        want = w[[0, 2, 1]] / (2 * wd)
        cos = (x * want).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(want, axis=1)
        np.testing.assert_allclose(cos, 1.0, atol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(x, axis=1), np.linalg.norm(want, axis=1), rtol=1e-9)
        np.testing.assert_allclose(r.activations, (want * want).sum(1) * 2 * wd + model[1].bias.detach().numpy()[[0, 2, 1]],
                                   rtol=1e-9)
        np.testing.assert_array_equal(r.units, [0, 2, 1])
        assert r.trace.shape == (400, 3) and (np.diff(r.trace, axis=0) >= -1e-12).all()  # no jitter: monotone
    # feature vectors (D,): jitter and blur do not apply, the optimum is the same
    r = FV.maximize_activation(nn.Sequential(model[1]), "0", 1, (16,), steps=400, lr=0.5, weight_decay=0.5)
    np.testing.assert_allclose(r.images[0], w[1], rtol=1e-9, atol=1e-12)


def test_clip_keeps_the_pixel_range_and_the_optimum_moves_to_the_box_corner():
    ember.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).double()
    r = FV.maximize_activation(model, "1", None, (1, 4, 4), steps=200, lr=0.5, weight_decay=1e-4, blur_every=0,
                               jitter=0, clip=(-0.1, 0.1))
    assert r.images.shape == (2, 1, 4, 4) and np.abs(r.images).max() <= 0.1
    np.testing.assert_allclose(r.images.reshape(2, 16), 0.1 * np.sign(model[1].weight.detach().numpy()))


@pytest.mark.parametrize("objective,kw,lift", [("center", {"lr": 30.0, "jitter": 0}, 5.0),
                                               ("mean", {"lr": 100.0, "jitter": 1}, 0.25)])
def test_a_conv_channel_gets_excited(objective, kw, lift):
    """Plain gradient ascent on 16x16 images, blur on; channel 0's mean is best with every ReLU below it
    off (its bias), so channels 1..5."""
    model = _cnn(3, hw=16)
    r = FV.maximize_activation(model, "3", [1, 2, 3, 4, 5], (2, 16, 16), steps=150, init="noise",
                               generator=ember.Generator(0), objective=objective, **kw)
    assert r.images.shape == (5, 2, 16, 16) and r.trace.shape == (150, 5) and r.images.dtype == np.float32
    assert (r.activations - r.trace[0] > lift).all() and (r.activations > 2 * np.abs(r.trace[0])).all(), \
        (r.trace[0], r.activations)
    rising = np.diff(r.trace.reshape(10, 15, 5).mean(axis=1), axis=0) > 0  # monotone-ish: blur makes dips
    assert rising.mean() > 0.8, rising
    out = _final(r, model, "3", r.images)  # the reported activation is the objective at the final image
    rows, ch = np.arange(5), np.arange(1, 6)
    want = out[rows, ch].mean(axis=(1, 2)) if objective == "mean" else out[rows, ch, 4, 4]
    np.testing.assert_allclose(r.activations, want, rtol=1e-5)


def test_a_batch_of_channels_equals_each_channel_alone():
    model = _cnn(4).double()
    kw = dict(steps=40, lr=1.0, jitter=2, blur_every=3, blur_sigma=0.7, init="noise", clip=(-3, 3))
    both = FV.maximize_activation(model, model[3], [5, 0, 2], (2, 8, 8), generator=ember.Generator(7), **kw)
    for i, c in enumerate([5, 0, 2]):
        one = FV.maximize_activation(model, "3", c, (2, 8, 8), generator=ember.Generator(7), **kw)
        np.testing.assert_allclose(one.images[0], both.images[i], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(one.trace[:, 0], both.trace[:, i], rtol=1e-10, atol=1e-12)
    again = FV.maximize_activation(model, "3", [5, 0, 2], (2, 8, 8), generator=ember.Generator(7), **kw)
    np.testing.assert_array_equal(again.images, both.images)  # reproducible with a seeded generator
    other = FV.maximize_activation(model, "3", [5, 0, 2], (2, 8, 8), generator=ember.Generator(8), **kw)
    assert not np.allclose(other.images, both.images)


def test_blur_is_a_normalized_gaussian():
    x = np.zeros((1, 1, 9, 9))
    x[0, 0, 4, 4] = 1.0
    y = FV._blur(x, 1.0)[0, 0]
    assert abs(y.sum() - 1) < 1e-12 and y[4, 4] == y.max()
    g = np.exp(-np.arange(-3, 4) ** 2 / 2)
    np.testing.assert_allclose(y[1:8, 1:8], np.outer(g, g) / g.sum() ** 2, rtol=1e-12)
    np.testing.assert_allclose(FV._blur(np.ones((2, 3, 5, 6)), 0.5), 1.0)  # edge padding keeps constants


def test_class_model_raises_the_chosen_logits():
    model = _cnn(5, hw=16)
    r = FV.class_model(model, [4, 1], (2, 16, 16), steps=100, lr=20.0, init="noise", generator=ember.Generator(1))
    assert r.layer == "logits" and list(r.units) == [4, 1]
    with ember.no_grad():
        logits = model(ember.Tensor(r.images)).numpy()
    np.testing.assert_allclose(r.activations, logits[[0, 1], [4, 1]], rtol=1e-5)
    assert (logits.argmax(1) == [4, 1]).all() and (r.activations > r.trace[0] + 0.2).all()
    one = FV.class_model(model, 3, (2, 16, 16), steps=5)
    assert one.images.shape == (1, 2, 16, 16)


def test_resnet_layers_and_hooks_removed():
    ember.manual_seed(6)
    model = CifarResNet(8, 5, 3, "B", widths=(4, 8, 8))
    r = FV.maximize_activation(model, "layer2.0.relu", [1, 6], (3, 8, 8), steps=30, lr=1.0, init="noise",
                               generator=ember.Generator(0))
    assert (r.activations > r.trace[0]).all()
    assert not any(m._forward_hooks for m in model.modules())


# ---- dataset_examples ------------------------------------------------------------------------------
def _brute(model, layer, x, channel, objective):
    y = FV._run_to("t", layer, model, dict(model.named_modules())[layer], ember.Tensor(x)).data[:, channel]
    m = y.reshape(len(y), -1)
    s = {"max": m.max(1), "mean": m.mean(1), "center": y[:, y.shape[1] // 2, y.shape[2] // 2] if y.ndim == 3
         else m[:, 0]}[objective]
    return s, np.argsort(-s.astype(np.float64), kind="stable")


class MapStyle:
    """A dataset by protocol only (no ember base class): __len__ and __getitem__ giving (x, y)."""

    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], 0


@pytest.mark.parametrize("objective", ["max", "mean", "center"])
def test_dataset_examples_are_the_true_top_k(objective):
    model = _cnn(7)
    x = _x(203, 2, 8, 8, dtype=np.float32)
    s, order = _brute(model, "3", x, 4, objective)
    y = np.arange(203)
    for data in (ember.Tensor(x), x, (ember.Tensor(x), ember.Tensor(y)), TensorDataset(ember.Tensor(x), ember.Tensor(y)),
                 DataLoader(TensorDataset(ember.Tensor(x), ember.Tensor(y)), batch_size=17), MapStyle(x)):
        t = FV.dataset_examples(model, "3", data, 4, k=7, objective=objective, batch_size=32)
        np.testing.assert_array_equal(t.indices, order[:7])
        np.testing.assert_allclose(t.activations, s[order[:7]], rtol=1e-6)
        np.testing.assert_array_equal(t.inputs, x[order[:7]])
    with ember.no_grad():
        maps = model[:4](ember.Tensor(x[order[:7]])).numpy()[:, 4]
    peak = np.stack(np.unravel_index(maps.reshape(7, -1).argmax(1), (4, 4)), 1)
    np.testing.assert_array_equal(t.positions, peak)
    units = FV.dataset_examples(model, "6", x, 2, k=3)  # a Linear output: one unit, no position
    np.testing.assert_array_equal(units.positions, -1)
    np.testing.assert_array_equal(units.indices, _brute(model, "6", x, 2, "max")[1][:3])


def test_dataset_examples_ties_keep_the_earlier_input():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 1))
    x = np.repeat(_x(5, 4, dtype=np.float32), 3, axis=0)  # each input three times
    t = FV.dataset_examples(model, "1", x, 0, k=4, batch_size=2)
    best = int(np.argmax(model(ember.Tensor(x[::3])).detach().numpy()[:, 0])) * 3
    assert list(t.indices[:3]) == [best, best + 1, best + 2]


# ---- guided backprop -------------------------------------------------------------------------------
def _torch_guided(tm, x, cls):
    """PyTorch guided backprop: a full backward hook on every ReLU clamps the gradient it passes back."""
    hs = [m.register_full_backward_hook(lambda m, gi, go: (gi[0].clamp(min=0),))
          for m in tm.modules() if isinstance(m, torch.nn.ReLU)]
    xt = torch.tensor(x, requires_grad=True)
    tm(xt)[torch.arange(len(x)), torch.as_tensor(cls)].sum().backward()
    for h in hs:
        h.remove()
    return xt.grad.numpy()


class TBlock(torch.nn.Module):
    def __init__(self, cin, c, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(c)
        self.relu1, self.relu2 = torch.nn.ReLU(), torch.nn.ReLU()  # one per use: full backward hooks
        self.conv2 = torch.nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(c)
        self.downsample = None if cin == c and stride == 1 else torch.nn.Sequential(
            torch.nn.Conv2d(cin, c, 1, stride, bias=False), torch.nn.BatchNorm2d(c))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        return self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))) + idt)


class TResNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1, self.relu = torch.nn.Conv2d(3, 4, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(4), \
            torch.nn.ReLU()
        self.layer1 = torch.nn.Sequential(TBlock(4, 4, 1))
        self.layer2 = torch.nn.Sequential(TBlock(4, 8, 2))
        self.layer3 = torch.nn.Sequential(TBlock(8, 8, 2))
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x))))))
        return self.fc(x.mean(dim=(2, 3)))


def _resnets(dtype):
    ember.manual_seed(8)
    em = CifarResNet(8, 5, 3, "B", widths=(4, 8, 8))
    rng = np.random.default_rng(8)
    for m in em.modules():  # eval-mode batch norm with non-trivial statistics and affine parameters
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.data = (0.3 * rng.standard_normal(c)).astype(np.float32)
            m.running_var.data = rng.uniform(0.5, 2.0, c).astype(np.float32)
            m.weight.data = rng.uniform(0.5, 1.5, c).astype(np.float32)
            m.bias.data = (0.3 * rng.standard_normal(c)).astype(np.float32)
    return _copy(em, TResNet().eval(), dtype)


def _fused_count(model, x):
    out = model(ember.Tensor(x, requires_grad=True))
    stack, seen, n = [out.grad_fn], set(), 0
    while stack:
        fn = stack.pop()
        if fn is None or isinstance(fn, ember.Tensor) or id(fn) in seen:
            continue
        seen.add(id(fn))
        n += type(fn) is Normalize and fn.relu
        stack.extend(getattr(fn, "next", ()))
    return n


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("net", ["cnn", "resnet"])
def test_guided_backprop_equals_pytorch(net, dtype, tol):
    em, tm = _copy(_cnn(9), _torch_cnn(), dtype) if net == "cnn" else _resnets(dtype)
    x = _x(4, em[0].in_channels if net == "cnn" else 3, 8, 8, seed=3, dtype=dtype)
    if net == "resnet":
        em.eval()
        assert _fused_count(em, x) == 7  # without hooks, every bn + relu of the ResNet runs as one op ...
    for target in (None, [0, 4, 2, 1]):
        r = FV.guided_backprop(em, ember.Tensor(x), target=target)
        with torch.no_grad():
            pred = tm(torch.tensor(x)).argmax(1).numpy()
        cls = pred if target is None else np.array(target)
        np.testing.assert_array_equal(r.target, cls)
        g = _torch_guided(tm, x, cls)
        assert r.attributions.dtype == dtype and r.method == "guided_backprop"
        np.testing.assert_allclose(r.attributions, g, rtol=tol, atol=tol * np.abs(g).max())
        np.testing.assert_allclose(r.map, np.abs(g).max(axis=1), rtol=tol, atol=tol * np.abs(g).max())
        plain = FV._backward(*FV._forward("t", em, x), cls)  # guided differs from the plain gradient
        assert not np.allclose(plain, g, atol=1e-3 * np.abs(g).max())
    if net == "resnet":
        assert _fused_count(em, x) == 7  # ... and it does again afterwards (the hooks are gone)


class Functional(nn.Module):
    """ReLUs called as functions, not modules."""

    def __init__(self, fused=False):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Linear(4, 3)
        self.fused = fused

    def forward(self, x):
        h = self.bn(self.conv(x), relu=True) if self.fused else nn.functional.relu(self.bn(self.conv(x)))
        return self.fc(nn.functional.relu(h - 0.1).mean(dim=(2, 3)))


def test_guided_backprop_through_functional_relus_and_fused_ones_refused():
    ember.manual_seed(10)
    em = Functional().double().eval()
    x = _x(3, 2, 6, 6)
    conv, bn, fc = torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 3)
    tm = torch.nn.ModuleDict({"conv": conv, "bn": bn, "fc": fc}).double().eval()
    tm.load_state_dict({k: torch.tensor(v.detach().numpy()) for k, v in em.state_dict().items()})
    xt = torch.tensor(x, requires_grad=True)
    h = torch.relu(bn(conv(xt)))
    h.register_hook(lambda g: g.clamp(min=0))
    h2 = torch.relu(h - 0.1)
    h2.register_hook(lambda g: g.clamp(min=0))
    fc(h2.mean(dim=(2, 3)))[:, 1].sum().backward()
    r = FV.guided_backprop(em, ember.Tensor(x), target=1)
    np.testing.assert_allclose(r.attributions, xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    with pytest.raises(GraphError, match=r"guided_backprop: the model applies a ReLU fused into batch norm"):
        FV.guided_backprop(Functional(fused=True).eval(), ember.Tensor(x.astype(np.float32)))


# ---- state left as it was, errors, plots ------------------------------------------------------------
def test_grads_untouched_and_modes_restored():
    ember.manual_seed(11)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.5),
                          nn.Flatten(), nn.Linear(3 * 6 * 6, 4))
    model.train()
    model[1].eval()
    for p in model.parameters():
        p.grad = ember.Tensor(np.full(p.shape, 7.0, np.float32))
    mean = model[1].running_mean.numpy().copy()
    x = _x(20, 1, 8, 8, dtype=np.float32)
    a = FV.maximize_activation(model, "2", None, (1, 8, 8), steps=5, init="noise", generator=ember.Generator(0))
    b = FV.maximize_activation(model, "2", None, (1, 8, 8), steps=5, init="noise", generator=ember.Generator(0))
    np.testing.assert_array_equal(a.images, b.images)  # eval mode: no dropout masks
    FV.class_model(model, 2, (1, 8, 8), steps=3)
    FV.dataset_examples(model, "1", x, 1)
    g1, g2 = FV.guided_backprop(model, ember.Tensor(x[:2])), FV.guided_backprop(model, ember.Tensor(x[:2]))
    np.testing.assert_array_equal(g1.attributions, g2.attributions)
    assert [m.training for m in model.modules()] == [True, True, False, True, True, True, True]
    assert all((p.grad.numpy() == 7.0).all() for p in model.parameters())
    np.testing.assert_array_equal(model[1].running_mean.numpy(), mean)
    assert not any(m._forward_hooks for m in model.modules())


def test_errors_name_the_function_and_the_argument():
    model = _cnn(12)
    mx = FV.maximize_activation
    with pytest.raises(ValueError, match=r"maximize_activation: no module named 'conv9' in the model; valid "
                                         r"layers: \['0', '1', '2', '3', '4', '5', '6'\]"):
        mx(model, "conv9", 0, (2, 8, 8))
    with pytest.raises(ValueError, match=r"dataset_examples: no module named 'x'"):
        FV.dataset_examples(model, "x", _x(2, 2, 8, 8, dtype=np.float32), 0)
    with pytest.raises(ValueError, match=r"maximize_activation: channel 6 is out of range for 3, which has 6 "
                                         r"channels \(valid: 0..5\)"):
        mx(model, "3", [0, 6], (2, 8, 8))
    with pytest.raises(ValueError, match="maximize_activation: input_shape must be"):
        mx(model, "3", 0)
    with pytest.raises(ValueError, match="maximize_activation: channel must be an int"):
        mx(model, "3", 1.5, (2, 8, 8))
    for kw, msg in [({"steps": 0}, "steps must be a positive int"), ({"lr": 0}, "lr must be a number > 0"),
                    ({"weight_decay": -1}, "weight_decay must be a number >= 0"),
                    ({"jitter": -1}, "jitter must be an int >= 0"), ({"blur_every": 1.5}, "blur_every must be"),
                    ({"clip": (1, 0)}, "clip must be None or a pair"), ({"init": "ones"}, "init must be"),
                    ({"objective": "max"}, "objective must be 'mean' or 'center'"), ({"k": 0}, "k must be")]:
        with pytest.raises(ValueError, match=f"maximize_activation: {msg}"):
            mx(model, "3", None if "k" in kw else 0, (2, 8, 8), **kw)
    with pytest.raises(ShapeError, match=r"maximize_activation: 2 must give a batch \(N, C, \.\.\.\) for N=1 "
                                         r"inputs, got \(6, 4, 4\)"):
        mx(nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.MaxPool2d(2), Squeeze()), "2", 0, (2, 8, 8))
    with pytest.raises(ShapeError, match=r"conv2d: input has 3 channels"):
        mx(model, "3", 0, (3, 8, 8))
    with pytest.raises(ValueError, match="class_model: channel 5 is out of range for logits"):
        FV.class_model(model, 5, (2, 8, 8))
    with pytest.raises(ValueError, match="dataset_examples: channel must be one int"):
        FV.dataset_examples(model, "3", _x(2, 2, 8, 8, dtype=np.float32), [0, 1])
    with pytest.raises(ValueError, match="dataset_examples: objective must be"):
        FV.dataset_examples(model, "3", _x(2, 2, 8, 8, dtype=np.float32), 0, objective="median")
    with pytest.raises(ValueError, match="dataset_examples: data holds no inputs"):
        FV.dataset_examples(model, "3", [], 0)
    with pytest.raises(ValueError, match="guided_backprop: target 5 is out of range"):
        FV.guided_backprop(model, ember.Tensor(_x(2, 2, 8, 8, dtype=np.float32)), target=5)
    with pytest.raises(ShapeError, match="guided_backprop: x must be a batch"):
        FV.guided_backprop(model, _x(8))


class Squeeze(nn.Module):
    def forward(self, x):
        return x[0]  # drops the batch axis: not a batch any more


def test_plots_write_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    model = _cnn(13)
    r = FV.maximize_activation(model, "3", None, (2, 8, 8), k=5, steps=3)
    fig = r.plot(tmp_path / "units.png")
    assert (tmp_path / "units.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(fig.axes) == 5
    assert fig.axes[2].get_title().startswith("unit 2: ")
    rgb = FV.class_model(CifarResNet(8, 5, 3, "B", widths=(4, 8, 8)), [0, 1], (3, 8, 8), steps=2).plot()
    assert rgb.axes[1].get_title().startswith("class 1: ")
    t = FV.dataset_examples(model, "3", _x(30, 2, 8, 8, dtype=np.float32), 1, k=4)
    fig = t.plot(tmp_path / "top.png")
    assert (tmp_path / "top.png").stat().st_size > 1000 and len(fig.axes) == 4
    assert fig.axes[0].get_title() == f"#{t.indices[0]}: {t.activations[0]:.3g}"


@pytest.mark.gpu
@pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")
def test_runs_on_the_gpu_and_agrees_with_the_cpu():
    model = _cnn(14)
    kw = dict(steps=20, lr=1.0, init="noise")
    cpu = FV.maximize_activation(model, "3", [0, 3], (2, 8, 8), generator=ember.Generator(0), **kw)
    x = _x(40, 2, 8, 8, dtype=np.float32)
    top, gb = FV.dataset_examples(model, "3", x, 2), FV.guided_backprop(model, ember.Tensor(x[:3]))
    model.to("cuda")
    gpu = FV.maximize_activation(model, "3", [0, 3], (2, 8, 8), generator=ember.Generator(0), **kw)
    np.testing.assert_allclose(gpu.images, cpu.images, rtol=1e-3, atol=1e-4 * np.abs(cpu.images).max())
    np.testing.assert_array_equal(FV.dataset_examples(model, "3", ember.Tensor(x).to("cuda"), 2).indices,
                                  top.indices)
    g = FV.guided_backprop(model, ember.Tensor(x[:3]).to("cuda"))
    assert isinstance(g.attributions, np.ndarray)
    np.testing.assert_allclose(g.attributions, gb.attributions, rtol=1e-4, atol=1e-5 * np.abs(gb.attributions).max())

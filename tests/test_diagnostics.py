"""Activation statistics, update ratios, model gradient checks, summaries and pictures on known cases."""
import json

import numpy as np
import pytest

import ember
from ember import nn
from ember.autograd import Function
from ember.diagnostics import UpdateRatioTracker, activation_stats, gradcheck_model, summarize
from ember.diagnostics import visualize as viz
from ember.errors import ShapeError


def _x(*shape, seed=0):
    return ember.Tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _set(p, arr):
    p.data[...] = np.asarray(arr, dtype=p.data.dtype)


def test_forced_dead_layer_is_reported_dead():
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU())
    _set(net[0].bias, [-100, -100, -100, 0, 0])  # three units can never fire on N(0,1) inputs
    _set(net[0].weight, np.full((5, 6), 0.1))
    batches = [_x(32, 6, seed=s) for s in range(3)]  # a "loader" of three batches
    (s,) = activation_stats(net, batches)
    assert s.name == "1" and s.images == 96
    assert s.dead == pytest.approx(3 / 5)
    assert list(s.dead_units) == [0, 1, 2]
    assert s.level == "bad" and "60% of units never fire on 96 images" in s.verdict


def test_unit_active_on_one_image_is_not_dead():
    net = nn.Sequential(nn.Linear(1, 1), nn.ReLU())
    _set(net[0].weight, [[1.0]])
    _set(net[0].bias, [0.0])
    xs = [ember.Tensor(np.full((4, 1), -1.0, np.float32)), ember.Tensor(np.array([[-1], [-1], [2], [-1]], np.float32))]
    (s,) = activation_stats(net, xs)
    assert s.dead == 0.0 and s.sparsity == pytest.approx(7 / 8)


def test_copied_units_correlate_one():
    net = nn.Sequential(nn.Linear(4, 2), nn.Tanh())
    w = np.random.default_rng(1).standard_normal(4) * 0.3
    _set(net[0].weight, [w, w])
    _set(net[0].bias, [0.1, 0.1])
    (s,) = activation_stats(net, _x(50, 4))
    assert s.mean_abs_corr == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(s.corr, 1.0, atol=1e-9)
    assert s.level == "bad" and "correlate strongly" in s.verdict


def test_conv_channels_copied_and_independent():
    conv = nn.Conv2d(1, 3, 3)
    w = np.random.default_rng(2).standard_normal((1, 3, 3))
    _set(conv.weight, [w, w, np.random.default_rng(3).standard_normal((1, 3, 3))])
    _set(conv.bias, [0, 0, 0])
    net = nn.Sequential(conv, nn.ReLU())
    for spatial in ("mean", "flatten"):
        (s,) = activation_stats(net, _x(40, 1, 8, 8), spatial=spatial)
        assert s.unit_word == "channels" and s.units == 3
        assert s.corr[0, 1] == pytest.approx(1.0, abs=1e-9)
        assert abs(s.corr[0, 2]) < 0.99


def test_saturated_and_constant_units():
    net = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid())
    _set(net[0].weight, [[200, 0, 0], [0, 200, 0], [0, 0, 0], [0.1, 0.2, 0.3]])
    _set(net[0].bias, [0, 0, 1, 0])
    (s,) = activation_stats(net, _x(200, 3))
    assert s.dead is None
    assert s.saturated == pytest.approx(0.5)  # units 0 and 1 sit at 0 or 1 almost always
    assert s.constant == pytest.approx(0.25)  # unit 2 is sigmoid(1) for every input
    assert "saturated" in s.verdict and "ignore the input" in s.verdict


def test_healthy_layer_verdict_ok():
    ember.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 16), nn.ReLU())
    (s,) = activation_stats(net, _x(256, 20))
    assert s.level == "ok" and "healthy" in s.verdict
    assert 0.2 < s.sparsity < 0.8


def test_default_layers_and_report_string():
    model = ember.models.get_model("lenet5")
    rep = activation_stats(model, _x(8, 1, 28, 28))
    assert len(rep) >= 3 and all(s.type in ("ReLU", "Tanh", "Sigmoid") or s.units > 0 for s in rep)
    text = str(rep)
    assert "dead" in text and all(s.verdict in text for s in rep)


def test_update_ratio_matches_sgd_step():
    net = nn.Linear(3, 2)
    opt = ember.optim.SGD(net.parameters(), lr=0.1)
    tracker = UpdateRatioTracker(net)
    loss = (net(_x(5, 3)) ** 2).sum()
    loss.backward()
    w0 = net.weight.data.copy()
    g = net.weight.grad.data.copy()
    with tracker:
        opt.step()
    assert tracker.history["weight"][0] == pytest.approx(0.1 * np.linalg.norm(g) / np.linalg.norm(w0), rel=1e-5)
    assert "weight" in str(tracker)


class _WrongScale(Function):
    """x * w whose backward for w is off by a factor 2 (a planted bug)."""

    def forward(self, x, w):
        self.x, self.w = x, w
        return x * w

    def backward(self, gy):
        return gy * self.w, 2 * (gy * self.x).sum(axis=0)


class _Buggy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.scale = nn.Parameter(ember.ones(3).data)

    def forward(self, x):
        return _WrongScale.apply(self.lin(x), self.scale)


def test_gradcheck_model_finds_planted_bug():
    rep = gradcheck_model(_Buggy(), _x(4, 3), _x(4, 3), loss="mse")
    by = {e.name: e for e in rep.entries}
    assert by["lin.weight"].passed and by["lin.bias"].passed
    assert not by["scale"].passed and by["scale"].max_rel_err > 0.3
    assert "scale" in str(rep)


def test_gradcheck_model_lenet5_leaves_model_untouched():
    model = ember.models.get_model("lenet5")
    before = {k: v.data.copy() for k, v in model.state_dict().items()}
    x = _x(2, 1, 28, 28)
    rep = gradcheck_model(model, x, ember.tensor(np.array([3, 7])), nn.CrossEntropyLoss())
    assert rep.passed, str(rep)
    assert {e.name for e in rep.entries} == {n for n, _ in model.named_parameters()}
    for k, v in model.state_dict().items():
        assert v.dtype == np.float32
        np.testing.assert_array_equal(v.data, before[k])


def test_gradcheck_model_resnet20_batchnorm_train_and_dropout():
    model = ember.models.get_model("resnet20")
    model.train()
    rep = gradcheck_model(model, _x(2, 3, 8, 8), ember.tensor(np.array([1, 2])), "cross_entropy",
                          n_directions=1)
    assert rep.passed, str(rep)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
    assert gradcheck_model(net, _x(5, 4), ember.tensor(np.array([0, 1, 2, 0, 1])), "cross_entropy").passed


def test_summary_resnet20_table():
    model = ember.models.get_model("resnet20")
    s = summarize(model, (3, 32, 32))
    assert sum(r.params for r in s) == s.total == sum(p.numel() for p in model.parameters())
    # By hand (option A shortcuts have no parameters; each BN has 2 per channel):
    # conv1 3*16*9 + bn 32; stage 1: 6 x (16*16*9 + 32); stage 2: 16*32*9 + 64 then 5 x (32*32*9 + 64);
    # stage 3: 32*64*9 + 128 then 5 x (64*64*9 + 128); fc 64*10 + 10.
    hand = (432 + 32) + 6 * (2304 + 32) + (4608 + 64) + 5 * (9216 + 64) + (18432 + 128) + 5 * (36864 + 128) + 650
    assert s.total == hand == 269722
    first = s[0]
    assert first.out_shape == (1, 16, 32, 32) and first.rf == "3"
    text = str(s)
    assert "RF" in text and "269,722" in text


def test_cli_summary(capsys):
    from ember.cli import main

    assert main(["summary", "--model", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert "output shape" in out and "Conv2d" in out and "RF" in out


def test_cam_decomposes_logits():
    # With global average pooling then one Linear: logit_c = mean_xy CAM_c(x, y) + b_c.
    model = ember.models.get_model("resnet20")
    x = _x(3, 3, 16, 16)
    cams, cls = viz.class_activation_map(model, x)
    model.eval()
    with ember.no_grad():
        logits = model(x).numpy()
    assert cams.shape == (3, 4, 4)
    np.testing.assert_array_equal(cls, logits.argmax(1))
    b = model.fc.bias.data[cls]
    np.testing.assert_allclose(cams.mean(axis=(1, 2)) + b, logits[np.arange(3), cls], rtol=1e-4, atol=1e-4)


def test_grad_cam_is_relu_cam_over_the_pooled_area_and_works_without_pooling():
    """At the features a global average pool reads, Grad-CAM's weights are W[c] / (h * w), so its
    map is ReLU(CAM) / (h * w) exactly (Selvaraju et al. 2017, section 3.1)."""
    model = ember.models.get_model("resnet20")
    x = _x(3, 3, 16, 16)
    cams, cls = viz.class_activation_map(model, x)
    maps, cls2 = viz.grad_cam(model, x)
    np.testing.assert_array_equal(cls, cls2)
    np.testing.assert_allclose(maps, np.maximum(cams, 0) / 16, rtol=1e-5, atol=1e-7)
    maps7, cls7 = viz.grad_cam(model, x, target=7)
    assert (cls7 == 7).all() and not np.allclose(maps7, maps)
    lenet = ember.models.get_model("lenet5")  # flatten + Linear head: no CAM, Grad-CAM still works
    with pytest.raises(ShapeError):
        viz.class_activation_map(lenet, _x(2, 1, 28, 28))
    m2, _ = viz.grad_cam(lenet, _x(2, 1, 28, 28))
    m1, _ = viz.grad_cam(lenet, _x(2, 1, 28, 28), layer="features.0")
    assert m2.shape == (2, 5, 5) and m1.shape == (2, 28, 28) and (m2 >= 0).all()
    assert all(p.grad is None for p in lenet.parameters())
    with pytest.raises(ValueError, match="grad_cam: no leaf module named 'nope'"):
        viz.grad_cam(lenet, _x(1, 1, 28, 28), layer="nope")


def test_pictures_are_pngs(tmp_path):
    model = ember.models.get_model("lenet5")
    x = _x(4, 1, 28, 28)
    conv_name = next(n for n, m in model.named_modules() if type(m).__name__ == "Conv2d")
    viz.plot_filters(model, tmp_path / "f.png")
    viz.plot_feature_maps(model, x, conv_name, tmp_path / "m.png")
    rep = activation_stats(model, x)
    viz.plot_activation_histograms(rep, tmp_path / "h.png")
    viz.plot_correlation(rep[0], tmp_path / "c.png")
    with open(tmp_path / "metrics.jsonl", "w") as fh:
        for e in range(1, 4):
            fh.write(json.dumps({"type": "step", "epoch": e, "step": 1, "loss": 1.0 / e}) + "\n")
            fh.write(json.dumps({"type": "epoch", "epoch": e, "train_loss": 1.0 / e, "train_acc": 0.5 + e / 10,
                                 "val_loss": 1.1 / e, "val_acc": 0.45 + e / 10}) + "\n")
    assert len(viz.read_metrics(tmp_path)) == 3  # epoch records only
    viz.plot_training_curves(tmp_path, tmp_path / "t.png")
    for name in "fmhct":
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


# The perceptron learns by its own rule (Perceptron.fit), not by gradients.
# The ImageNet-size bottleneck ResNets take minutes of finite differences even at 16 px; their
# float64 gradients are checked against PyTorch's on a small bottleneck net in test_models_imagenet.py.
BIG = {"resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2",
       "wide_resnet101_2"}
ZOO = [name for name in ember.models.list_models() if name != "perceptron" and name not in BIG]


@pytest.mark.parametrize("name", ZOO)
def test_gradcheck_model_every_zoo_model(name):
    """Every zoo model's parameter gradients agree with finite differences (float64, small inputs)."""
    shape, kw, rtol = (2, 1, 28, 28), {}, 1e-3
    if name.startswith("vgg"):
        kw = dict(in_channels=1, input_size=28)
    elif name in ("resnet18", "resnet34"):
        # At 32x32 their layer4 sees 1x1 maps, so its batch norm normalizes over just 2 values and
        # the loss is badly conditioned (directional derivatives ~1e4): finite differences keep
        # fewer digits there.
        shape, kw, rtol = (2, 3, 32, 32), dict(in_channels=3), 1e-2
    elif name in ("resnet20", "resnet32", "resnet56"):
        shape, kw = (2, 1, 8, 8), dict(in_channels=1)
    elif name == "mobilenet_v2":
        shape, kw = (2, 1, 16, 16), dict(in_channels=1, input_size=16, width_mult=0.25)
    elif name in ("fcn", "unet", "dilated"):
        shape, kw = (2, 1, 32, 32), dict(in_channels=1, num_classes=3)
    ember.manual_seed(0)
    model = ember.models.get_model(name, **kw)
    x = ember.randn(*shape)
    with ember.no_grad():
        out = model(x)
    target = ember.tensor(np.arange(int(np.prod(out.shape[:1] + out.shape[2:]))).reshape(out.shape[:1] + out.shape[2:])
                          % out.shape[1])
    # eps=1e-7: with 1e-6 a step can cross a ReLU kink or a max-pool near-tie in the deep nets
    # (UNet, VGG-16), and finite differences then disagree with the (correct) one-sided gradient.
    report = gradcheck_model(model, x, target, "cross_entropy", n_directions=1, max_full=4, eps=1e-7,
                             rtol=rtol)
    assert report.passed, str(report)

"""The HTML report renders: every section present, every image an embedded PNG."""
import base64
import json
import re

import numpy as np
import pytest

import ember
from ember.diagnostics import build_report

IMG = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]*)">')


def _images(text):
    found = IMG.findall(text)
    assert text.count("<img") == len(found)  # every <img> is an embedded PNG
    for alt, data in found:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n", alt
    return [alt for alt, _ in found]


def test_report_resnet20_with_run(tmp_path):
    model = ember.models.get_model("resnet20")
    rng = np.random.default_rng(0)
    batches = [ember.Tensor(rng.standard_normal((8, 3, 16, 16)).astype(np.float32)) for _ in range(2)]
    with open(tmp_path / "metrics.jsonl", "w") as fh:
        for e in (1, 2):
            fh.write(json.dumps({"type": "epoch", "epoch": e, "train_loss": 2.0 / e, "train_acc": 0.3 * e}) + "\n")
    out = tmp_path / "report.html"
    text = build_report(model, batches, out, run=tmp_path, title="resnet20 test")
    assert out.read_text() == text
    for section in ("Layers", "Hidden activations", "First-layer filters", "Feature maps",
                    "Effective receptive fields", "Class activation maps", "Training curves",
                    "What the network looks at: input attributions"):
        assert f"<h2>{section}" in text, section
    alts = _images(text)
    assert {"first-layer filters", "effective receptive fields", "class activation maps", "training curves",
            "input attributions"} <= set(alts)
    assert "layer3.2.conv2" in text and "269,722" in text  # layer table and parameter count


def test_cli_inspect_on_synthetic_data(tmp_path):
    from ember.cli import main

    out = tmp_path / "r.html"
    assert main(["inspect", "--model", "lenet5", "--data", "synthetic-shapes", "--batches", "1",
                 "--batch-size", "16", "--out", str(out)]) == 0
    text = out.read_text()
    assert "lenet5 on synthetic-shapes" in text
    assert "training curves" not in _images(text)
    assert "never fire" in text or "healthy" in text
    assert "<h2>Gradient flow" in text and "features.0" in text  # the data carries labels


def test_report_gradient_flow_only_with_labels(tmp_path):
    model = ember.models.get_model("lenet5")
    rng = np.random.default_rng(1)
    x = ember.Tensor(rng.standard_normal((8, 1, 28, 28)).astype(np.float32))
    y = ember.tensor(rng.integers(0, 10, 8))
    assert "<h2>Gradient flow" not in build_report(model, x)
    text = build_report(model, [(x, y)])
    assert "<h2>Gradient flow" in text and "no vanishing or exploding" in text
    assert all(p.grad is None for p in model.parameters())


SECTION = "<h2>What the network looks at: input attributions</h2>"
CARD = re.compile(r"<table><tr><th>image (\d+)</th><th></th></tr>(.*?)</table>")
ROW = re.compile(r"<tr><td>([^<]*)</td><td class=num>([^<]*)</td></tr>")


def _cards(text):
    """The attribution section's per-image tables as {image number: {row label: cell}}."""
    return {int(i): dict(ROW.findall(body)) for i, body in CARD.findall(text)}


def _shapes(n=8, size=16):
    from ember.data.datasets import Shapes

    ds = Shapes(n, size=size, seed=3)
    return ember.Tensor((ds.data - 0.5) / 0.5), ember.tensor(ds.targets)


def test_report_attributions_lenet5(tmp_path):
    from ember.diagnostics import integrated_gradients

    model = ember.models.get_model("lenet5")
    rng = np.random.default_rng(2)
    x = ember.Tensor(rng.standard_normal((8, 1, 28, 28)).astype(np.float32))
    y = ember.tensor(rng.integers(0, 10, 8))
    text = build_report(model, [(x, y)], class_names=[f"digit{i}" for i in range(10)])
    assert SECTION in text and text.index(SECTION) > text.index("<h2>Class activation maps")
    assert "input attributions" in _images(text)
    for cite in ("Simonyan", "Smilkov", "Sundararajan", "Zeiler", "Adebayo"):
        assert cite in text, cite
    cards = _cards(text)
    assert sorted(cards) == [1, 2, 3]  # the default: the first three images
    logits = model.eval()(x[:3]).data.astype(np.float64)
    model.train()
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    zero = model.eval()(ember.zeros(1, 1, 28, 28)).data[0].astype(np.float64)
    model.train()
    ig = integrated_gradients(model, x[:3], steps=32)  # the report's setting
    for i, card in cards.items():
        c = int(logits[i - 1].argmax())
        assert card["predicted class"] == f"digit{c}"
        assert card["probability"] == f"{probs[i - 1, c]:.3f}"
        assert card["logit F(x)"] == f"{logits[i - 1, c]:.3g}"
        delta = logits[i - 1, c] - zero[c]
        assert card["IG: F(x) - F(0)"] == f"{delta:.3g}"
        assert card["IG: completeness gap"].startswith(f"{ig.gap[i - 1]:.2g} (")
        for m in ("saliency", "SmoothGrad", "integrated gradients", "occlusion"):
            share = card[f"centre: {m}"]
            assert share.endswith("%") and 0 <= int(share[:-1]) <= 100, (m, share)
    assert model.training and all(p.grad is None for p in model.parameters())


def test_report_attributions_tiny_resnet_on_shapes():
    from ember.models import CifarResNet

    ember.manual_seed(0)
    model = CifarResNet(8, num_classes=3, in_channels=1, widths=(4, 8, 8))
    x, y = _shapes()
    state = ember.random.default_generator.get_state()["bit_generator"]
    text = build_report(model, [(x, y)], class_names=["circle", "square", "triangle"], attribution_images=2)
    assert ember.random.default_generator.get_state()["bit_generator"] == state  # SmoothGrad's own generator
    assert SECTION in text and "8x8 window" not in text and "4x4 window (stride 2)" in text  # window = H / 4
    alts = _images(text)
    assert {"class activation maps", "input attributions"} <= set(alts)
    cards = _cards(text)
    assert sorted(cards) == [1, 2]
    assert all(card["predicted class"] in ("circle", "square", "triangle") for card in cards.values())


def test_report_attributions_skipped_for_segmentation():
    from ember.models import FCN

    model = FCN(num_classes=3, in_channels=1, channels=(4, 8, 8))
    x, _ = _shapes(4)
    text = build_report(model, x, erf_layers=1)
    assert SECTION in text and "Skipped" in text and "returns (3, 16, 16) per image (a segmentation" in text
    alts = _images(text)  # the other pictures still render
    assert "input attributions" not in alts and "first-layer filters" in alts
    assert not _cards(text)


def test_report_attributions_off():
    model = ember.models.get_model("lenet5", input_size=16, num_classes=3)
    x, _ = _shapes(4)
    text = build_report(model, x, attribution_images=0)
    assert "input attributions" not in text and "<h2>Class activation maps" in text
    _images(text)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="build_report: attribution_images"):
            build_report(model, x, attribution_images=bad)


def test_cli_inspect_no_attributions(tmp_path):
    from ember.cli import main

    out = tmp_path / "r.html"
    argv = ["inspect", "--model", "lenet5", "--data", "synthetic-shapes", "--batches", "1", "--batch-size", "8",
            "--out", str(out)]
    assert main(argv + ["--no-attributions"]) == 0
    text = out.read_text()
    assert "input attributions" not in text and "<h2>Gradient flow" in text
    assert main(argv) == 0
    text = out.read_text()
    assert SECTION in text and "input attributions" in _images(text)
    assert {card["predicted class"] for card in _cards(text).values()} <= {"circle", "square", "triangle"}


def test_centre_share():
    from ember.diagnostics.report import _centre_share

    maps = np.zeros((4, 8, 8))
    maps[0, 2:6, 2:6] = -1.0  # all of the mass in the central box, negative values count by size
    maps[1] = 1.0  # uniform: the box's share of the pixels
    maps[2, 0, 0] = 5.0  # all in a corner
    got = _centre_share(maps)
    assert np.allclose(got[:3], [1.0, 0.25, 0.0]) and np.isnan(got[3])  # an all-zero map has no share


def test_report_attributions_skipped_for_feature_vectors():
    model = ember.nn.Sequential(ember.nn.Linear(5, 8), ember.nn.ReLU(), ember.nn.Linear(8, 3))
    x = ember.Tensor(np.random.default_rng(4).standard_normal((16, 5)).astype(np.float32))
    text = build_report(model, x)
    assert SECTION in text and "Skipped: the inputs are (5,) per sample, not images" in text
    assert "input attributions" not in _images(text)

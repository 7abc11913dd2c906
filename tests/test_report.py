"""The HTML report renders: every section present, every image an embedded PNG."""
import base64
import json
import re

import numpy as np

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
                    "Effective receptive fields", "Class activation maps", "Training curves"):
        assert f"<h2>{section}" in text, section
    alts = _images(text)
    assert {"first-layer filters", "effective receptive fields", "class activation maps", "training curves"} <= set(alts)
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

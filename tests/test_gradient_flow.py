"""ember.diagnostics.gradient_flow: the gradient at every layer, against PyTorch, and its verdicts
(vanishing through sigmoids, steady with ReLU + batch norm, exploding with oversized weights)."""
from __future__ import annotations

import numpy as np
import pytest

import ember
from ember import nn
from ember.diagnostics import gradient_flow

torch = pytest.importorskip("torch")


def _mlp(act, depth: int, width: int = 32, bn: bool = False):
    layers = [nn.Flatten()]
    for _ in range(depth):
        layers += [nn.Linear(width, width)] + ([nn.BatchNorm1d(width)] if bn else []) + [act()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def _batch(n=16, width=32, seed=0):
    rng = np.random.default_rng(seed)
    return ember.tensor(rng.standard_normal((n, width)).astype(np.float32)), ember.tensor(rng.integers(0, 10, n))


def test_gradient_rms_and_parameter_norms_match_torch():
    ember.manual_seed(1)
    model = _mlp(nn.Tanh, 3, width=8)
    x, y = _batch(6, 8)
    report = gradient_flow(model, x, y)
    tm = torch.nn.Sequential(torch.nn.Flatten(), *[m for _ in range(3) for m in (torch.nn.Linear(8, 8), torch.nn.Tanh())],
                             torch.nn.Linear(8, 10))
    tm.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in model.state_dict().items()})
    outs = {}
    h = torch.from_numpy(x.numpy())
    for name, m in tm.named_children():
        h = m(h)
        if isinstance(m, torch.nn.Linear):
            h.retain_grad()
            outs[name] = (h, m)
    torch.nn.functional.cross_entropy(h, torch.from_numpy(y.numpy())).backward()
    assert [s.name for s in report] == list(outs) == ["1", "3", "5", "7"]
    for s in report:
        out, m = outs[s.name]
        g = out.grad.double()
        np.testing.assert_allclose(s.grad_norm, float((g.pow(2).sum() / g.shape[0]).sqrt()), rtol=1e-4)
        want = float(torch.sqrt(m.weight.grad.double().pow(2).sum() + m.bias.grad.double().pow(2).sum()))
        np.testing.assert_allclose(s.param_grad_norm, want, rtol=1e-4)
        assert s.type == "Linear" and s.zeros == 0.0


def test_deep_sigmoid_net_vanishes_and_relu_batchnorm_net_does_not():
    ember.manual_seed(0)
    x, y = _batch()
    bad = gradient_flow(_mlp(nn.Sigmoid, 8), x, y)
    assert bad[0].grad_norm < 1e-3 * bad[-1].grad_norm  # geometric decay, layer by layer
    assert all(a.grad_norm < b.grad_norm for a, b in zip(bad, bad[1:]))
    assert any(level == "bad" and "vanishing" in text for level, text in bad.verdicts)
    good = gradient_flow(_mlp(nn.ReLU, 8, bn=True), x, y)
    assert [level for level, _ in good.verdicts] == ["ok"]
    assert "no vanishing or exploding" in str(good) and "[bad]" not in str(good)


def test_oversized_weights_explode():
    ember.manual_seed(0)
    model = _mlp(nn.Identity, 6)
    with ember.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(8.0)
    report = gradient_flow(model, *_batch())
    assert any(level == "bad" and "exploding" in text for level, text in report.verdicts)


def test_dead_relus_block_the_gradient():
    ember.manual_seed(0)
    model = _mlp(nn.ReLU, 2)
    with ember.no_grad():
        model[3].bias.fill_(-100.0)  # the second hidden layer never fires
    report = gradient_flow(model, *_batch(), layers=["1", "3"])
    assert report[1].zeros == 1.0
    assert any(level == "bad" and "3 (Linear): 100%" in text for level, text in report.verdicts)


def test_model_is_left_as_it_was():
    ember.manual_seed(0)
    model = _mlp(nn.ReLU, 3, bn=True)
    model.train()
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    report = gradient_flow(model, *_batch(), layers=["2", "5"])
    assert [s.name for s in report] == ["2", "5"] and report[0].type == "BatchNorm1d"
    after = model.state_dict()
    for k, v in before.items():  # running statistics (and everything else) restored
        np.testing.assert_array_equal(after[k].numpy(), v, err_msg=k)
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())


def test_resnet20_report_and_errors():
    from ember.models import get_model

    ember.manual_seed(0)
    model = get_model("resnet20", num_classes=10)
    report = gradient_flow(model, ember.randn(4, 3, 32, 32), ember.randint(0, 10, (4,)))
    assert len(report) == 19 + 19 + 1  # every conv, batch norm and the classifier
    assert report[0].name == "conv1" and report[-1].name == "fc"
    assert all(np.isfinite(s.grad_norm) and s.grad_norm > 0 for s in report)
    assert [level for level, _ in report.verdicts] == ["ok"]  # batch norm and shortcuts keep the gradient's size
    with pytest.raises(ValueError, match="gradient_flow: no module named"):
        gradient_flow(model, ember.randn(1, 3, 32, 32), ember.tensor([0]), layers=["nope"])
    with pytest.raises(ValueError, match="gradient_flow: loss must be a callable"):
        gradient_flow(model, ember.randn(1, 3, 32, 32), ember.tensor([0]), loss="hinge")

"""The learning-rate range test (ember.diagnostics.lr_find) and ``ember lr-find``.

The lr schedule, the bias-corrected smoothing and the early stop against hand computations;
the model and optimizer restored bit for bit (also after an exception mid-sweep); and a
suggestion that trains better than 100x and 1e-4x of it on a real small problem.
"""
import copy
import math

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember import Tensor, nn, optim
from ember.cli import main
from ember.data import DataLoader
from ember.data.datasets import Blobs
from ember.diagnostics import LRFindResult, lr_find
from ember.errors import DeviceError, ShapeError


def blobs(n=256, seed=0):
    return Blobs(n=n, centers=4, dim=10, std=1.5, seed=seed)


def mlp(seed=0):
    ember.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 4))


def loader(ds=None, seed=0, batch_size=32):
    return DataLoader(ds if ds is not None else blobs(), batch_size=batch_size, shuffle=True,
                      generator=ember.Generator(seed))


def scripted(values):
    """A loss callable whose i-th call returns values[i] (through the graph, so backward runs)."""
    it = iter(values)

    def fn(out, y):
        return (out * 0.0).sum() + next(it)
    return fn


def sweep(loss, num_iter, **kw):
    model = mlp()
    return lr_find(model, optim.SGD(model.parameters(), lr=0.1), loader(), loss, num_iter=num_iter, **kw)


# ---- schedule, smoothing, early stop -------------------------------------------------------------
@pytest.mark.parametrize("mode", ["exp", "linear"])
def test_lr_sequence_is_exact_and_every_group_uses_it(mode):
    model = mlp()
    opt = optim.SGD([{"params": model[0].parameters(), "lr": 0.5}, {"params": model[2].parameters()}],
                    lr=0.1, momentum=0.9)
    used = []

    def loss(out, y):
        used.append([g["lr"] for g in opt.param_groups])
        return F.cross_entropy(out, y)

    n, a, b = 9, 1e-6, 1e-2
    res = lr_find(model, opt, loader(), loss, start_lr=a, end_lr=b, num_iter=n, mode=mode, smooth=0.0)
    i = np.arange(n)
    expected = a * (b / a) ** (i / (n - 1)) if mode == "exp" else a + (b - a) * i / (n - 1)
    assert len(res.lrs) == n and res.diverged_at is None
    assert res.lrs[0] == a and res.lrs[-1] == b  # the end points exactly
    np.testing.assert_allclose(res.lrs, expected, rtol=1e-13, atol=0)
    steps = np.diff(np.log(res.lrs)) if mode == "exp" else np.diff(res.lrs)
    np.testing.assert_allclose(steps, steps[0], rtol=1e-9)  # even spacing in log(lr) or in lr
    assert used == [[lr, lr] for lr in res.lrs]  # the lr each step ran with is the one recorded
    # PyTorch's schedulers walk the same sequences: ExponentialLR from a with gamma = (b / a) ** (1 / (n - 1)),
    # LinearLR from a / b to 1 of b over n - 1 steps
    torch = pytest.importorskip("torch")
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=a if mode == "exp" else b)
    sched = (torch.optim.lr_scheduler.ExponentialLR(topt, gamma=(b / a) ** (1 / (n - 1))) if mode == "exp" else
             torch.optim.lr_scheduler.LinearLR(topt, start_factor=a / b, end_factor=1.0, total_iters=n - 1))
    ref = []
    for _ in range(n):
        ref.append(topt.param_groups[0]["lr"])
        topt.step()
        sched.step()
    np.testing.assert_allclose(res.lrs, ref, rtol=1e-12, atol=0)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.1]


def test_smoothing_is_the_bias_corrected_moving_average():
    res = sweep(scripted([4.0, 2.0, 1.0, 3.0]), 4, smooth=0.5)
    assert res.losses == [4.0, 2.0, 1.0, 3.0]
    # by hand: avg = 2, 2, 1.5, 2.25; divided by 1 - 0.5**k = 1/2, 3/4, 7/8, 15/16
    assert res.smoothed == pytest.approx([4.0, 8 / 3, 12 / 7, 2.4], rel=1e-15, abs=0)

    raw = np.random.default_rng(0).uniform(1, 2, 30).astype(np.float32).astype(np.float64)
    res = sweep(scripted(raw.tolist()), 30)  # the default smooth=0.98
    avg, want = 0.0, []
    for k, v in enumerate(raw, start=1):
        avg = 0.98 * avg + 0.02 * v
        want.append(avg / (1 - 0.98 ** k))
    np.testing.assert_array_equal(res.losses, raw)
    np.testing.assert_allclose(res.smoothed, want, rtol=1e-13)


def test_stops_when_the_smoothed_loss_exceeds_threshold_times_its_best():
    plan = np.geomspace(1e-7, 10, 8).tolist()
    res = sweep(scripted([2.0, 1.0, 1.0, 4.5, 6.0, 1.0, 1.0, 1.0]), 8, smooth=0.0, diverge_threshold=5)
    assert res.losses == [2.0, 1.0, 1.0, 4.5, 6.0]  # 4.5 < 5 * 1 goes on; 6 > 5 * 1 stops, recorded
    assert res.lrs == plan[:5] and res.diverged_at == plan[4]
    res = sweep(scripted([2.0, 1.0, 1.0, 4.5, 6.0, 1.0]), 6, smooth=0.0, diverge_threshold=8)
    assert len(res.lrs) == 6 and res.diverged_at is None
    res = sweep(scripted([-1.0, -2.0, -1.5, 4.0]), 4, smooth=0.0)  # no ratio test below zero
    assert len(res.lrs) == 4 and res.diverged_at is None


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_stops_at_a_non_finite_loss(bad):
    res = sweep(scripted([1.0, 1.0, bad, 1.0, 1.0]), 5, smooth=0.9)
    assert len(res.losses) == 3 and not math.isfinite(res.losses[-1])
    assert res.diverged_at == res.lrs[-1] == np.geomspace(1e-7, 10, 5)[2]
    assert math.isfinite(res.min_loss_lr) and "diverged" in str(res)


def test_real_divergence_stops_early_without_warnings():
    model = mlp()
    res = lr_find(model, optim.SGD(model.parameters(), lr=0.1), loader(), start_lr=1e-4, end_lr=1e6, num_iter=100)
    assert res.diverged_at is not None and len(res.lrs) < 100
    assert res.diverged_at == res.lrs[-1] and res.lrs[-1] < 1e6
    assert min(res.smoothed) < res.smoothed[0]  # it learned before blowing up


def test_the_loader_is_cycled():
    batches = list(loader(batch_size=128))  # 2 batches
    assert len(batches) == 2

    class Counting:
        epochs = 0

        def __iter__(self):
            Counting.epochs += 1
            return iter(batches)

    model = mlp()
    res = lr_find(model, optim.SGD(model.parameters(), lr=0.1), Counting(), start_lr=1e-5, end_lr=1e-3, num_iter=7)
    assert len(res.lrs) == 7 and Counting.epochs == 4


# ---- the model and optimizer are left as they were -------------------------------------------------
class Counter(nn.Module):
    """Counts its calls in a buffer kept out of the state dict."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", ember.zeros(1), persistent=False)

    def forward(self, x):
        self.calls.data += 1
        return x


def bn_model():
    ember.manual_seed(1)
    return nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 4),
                         Counter())


def make_optimizer(kind, model):
    if kind == "sgd":
        return optim.SGD([{"params": list(model[0].parameters()) + list(model[1].parameters()), "lr": 0.03},
                          {"params": model[4].parameters(), "lr": 0.01}], lr=0.02, momentum=0.9, nesterov=True,
                         weight_decay=1e-3)
    return optim.Adam(model.parameters(), lr=1e-3, betas=(0.8, 0.99), weight_decay=1e-4)


def snapshot(model, opt):
    return {"model": {k: v.data.copy() for k, v in model.state_dict().items()},
            "buffers": {k: v.data.copy() for k, v in model.named_buffers()},
            "grads": [None if p.grad is None else p.grad.data.copy() for p in model.parameters()],
            "modes": [m.training for m in model.modules()],
            "optim": copy.deepcopy(opt.state_dict())}


def assert_same(a, b, path="state"):
    """Equal bit for bit: same keys, types, dtypes and values."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for k, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{k}]")
    elif isinstance(a, Tensor):
        assert_same(a.data, b.data, path)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        np.testing.assert_array_equal(a, b, err_msg=path)
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


def trained_setup(kind):
    """A model with batch norm and dropout, mixed train/eval modes, optimizer state and gradients."""
    model, data = bn_model(), loader()
    opt = make_optimizer(kind, model)
    for k, (x, y) in enumerate(data):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        if k == 2:
            break  # the last gradients stay in .grad, without a step
        opt.step()
    model[3].eval()  # modes are restored per module, not just the top-level flag
    return model, opt, data


def one_step(model, opt, x, y):
    ember.manual_seed(123)  # the same dropout mask for both copies
    opt.step()  # with the gradients that were there before the sweep
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    return [p.data.copy() for p in model.parameters()]


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("fail", [False, True])
def test_model_and_optimizer_are_restored_bit_for_bit(kind, fail):
    model, opt, data = trained_setup(kind)
    untouched_model, untouched_opt = copy.deepcopy((model, opt))
    before = snapshot(model, opt)
    groups, params = list(opt.param_groups), [list(g["params"]) for g in opt.param_groups]
    calls = []

    def loss(out, y):
        calls.append(1)
        if fail and len(calls) == 6:
            raise RuntimeError("boom in the loss")
        return F.cross_entropy(out, y)

    if fail:
        with pytest.raises(RuntimeError, match="boom"):
            lr_find(model, opt, data, loss, start_lr=1e-4, end_lr=10, num_iter=20)
    else:
        res = lr_find(model, opt, data, loss, start_lr=1e-4, end_lr=10, num_iter=20)
        assert len(res.lrs) >= 10
    assert len(calls) == (6 if fail else len(res.lrs))
    assert_same(before, snapshot(model, opt))
    assert all(g is h for g, h in zip(opt.param_groups, groups))  # the same group dicts, refilled
    assert [list(g["params"]) for g in opt.param_groups] == params
    assert model.training and not model[3].training and model[1].training
    assert opt.param_groups[0]["params"][0] is model[0].weight
    # and training goes on exactly as it would have without the sweep
    x, y = next(iter(loader(seed=5)))
    for p, q in zip(one_step(model, opt, x, y), one_step(untouched_model, untouched_opt, x, y)):
        np.testing.assert_array_equal(p, q)


def test_bad_arguments_name_the_argument_and_leave_the_model_alone():
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)
    w = model[0].weight.data.copy()
    for kw, word in [({"start_lr": 0.0}, "start_lr"), ({"end_lr": 1e-8}, "end_lr"), ({"num_iter": 1}, "num_iter"),
                     ({"mode": "cosine"}, "mode"), ({"smooth": 1.0}, "smooth"),
                     ({"diverge_threshold": 1.0}, "diverge_threshold"), ({"loss_fn": "hinge"}, "loss")]:
        with pytest.raises(ValueError, match=f"lr_find: {word}"):
            lr_find(model, opt, loader(), **kw)
    with pytest.raises(ValueError, match="no batches"):
        lr_find(model, opt, [])
    with pytest.raises(DeviceError, match="cpu.*cuda"):
        lr_find(model, opt, loader(), device="cuda")
    with pytest.raises(TypeError, match=r"\(input, target\) pairs"):
        lr_find(model, opt, [(Tensor(np.zeros((2, 10), np.float32)),)])
    with pytest.raises(TypeError, match="must return a Tensor, got float"):
        lr_find(model, opt, loader(), lambda out, y: 1.0)
    with pytest.raises(ShapeError, match="one-element"):
        lr_find(model, opt, loader(), lambda out, y: out.sum(dim=1))
    np.testing.assert_array_equal(model[0].weight.data, w)
    assert opt.param_groups[0]["lr"] == 0.1


# ---- the suggestion --------------------------------------------------------------------------------
def test_suggestion_is_the_steepest_descent_before_the_minimum():
    lrs = np.geomspace(1e-6, 100, 81).tolist()
    t = np.log10(lrs)
    smoothed = 2.0 - np.tanh(2 * (t + 2))  # falls fastest at lr = 1e-2
    smoothed = smoothed + np.where(t > 0, 300 * t ** 2 * np.exp(-4 * t), 0.0)  # blow-up past 1, then a decay
    res = LRFindResult(lrs, smoothed.tolist(), smoothed.tolist(), num_iter=81)
    assert res.suggestion == pytest.approx(1e-2, rel=1e-9)  # not in the (steeper) decay after the bump
    assert res.min_loss_lr == pytest.approx(1.0, rel=1e-9)
    rising = LRFindResult(lrs, np.linspace(1, 2, 81).tolist(), np.linspace(1, 2, 81).tolist(), num_iter=81)
    assert rising.suggestion is None and "no suggestion" in str(rising)


def full_loss(model, ds):
    with ember.no_grad(), np.errstate(all="ignore"):
        v = float(F.cross_entropy(model(Tensor(ds.data)), Tensor(ds.targets)).item())
    return v if math.isfinite(v) else math.inf


def train(ds, lr, momentum, steps=60):
    model = mlp(seed=3)
    opt = optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    batches, epoch = iter(()), 0
    with np.errstate(all="ignore"):  # 100x the suggestion overflows
        for _ in range(steps):
            try:
                x, y = next(batches)
            except StopIteration:
                batches, epoch = iter(loader(ds, seed=100 + epoch)), epoch + 1
                x, y = next(batches)
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return full_loss(model, ds)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_suggestion_trains_better_than_100x_and_1e4x_smaller(momentum):
    ds = blobs(512, seed=2)
    model = mlp(seed=3)
    res = lr_find(model, optim.SGD(model.parameters(), lr=0.1, momentum=momentum), loader(ds),
                  start_lr=1e-5, end_lr=100, num_iter=100)
    assert res.suggestion is not None and res.diverged_at is not None
    assert 1e-5 < res.suggestion < res.min_loss_lr < res.diverged_at
    start = full_loss(mlp(seed=3), ds)
    good, big, small = (train(ds, res.suggestion * f, momentum) for f in (1.0, 100.0, 1e-4))
    assert good < 0.3 * start  # it really trains
    assert good < big and good < small, (res.suggestion, good, big, small)


# ---- summary, plot, command line -------------------------------------------------------------------
def test_summary_and_plot(tmp_path):
    model = mlp()
    res = lr_find(model, optim.SGD(model.parameters(), lr=0.1), loader(), start_lr=1e-5, end_lr=1e3, num_iter=60)
    text = str(res)
    assert f"suggested lr {res.suggestion:.2e}" in text and "of 100" not in text and "of 60 steps" in text
    rows = res.table(rows=5).splitlines()
    assert rows[0].split() == ["step", "lr", "loss", "smoothed"] and len(rows) == 7
    pytest.importorskip("matplotlib")
    fig = res.plot(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 1000
    assert fig.axes[0].get_xscale() == "log"


CLI = ["lr-find", "--data", "synthetic-shapes", "--model", "mlp", "--model-arg", "hidden=[32]", "--batch-size", "32",
       "--val-split", "100", "--limit-train", "96", "--num-iter", "30", "--start-lr", "1e-4"]


def test_cli_prints_the_sweep_and_writes_the_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "lr.png"
    assert main([*CLI, "--plot", str(png), "--rows", "6"]) == 0
    out = capsys.readouterr().out
    assert "model: mlp" in out and "LR range test (exp, 30 of 30 steps" in out and "suggested lr" in out
    assert out.count("e-0") >= 6 and f"wrote {png}" in out
    assert png.stat().st_size > 1000


def test_cli_errors(capsys):
    assert main([*CLI, "--start-lr", "0"]) == 2
    assert "start_lr" in capsys.readouterr().err
    assert main([*CLI, "--model", "lenet7"]) == 2
    assert "lenet7" in capsys.readouterr().err

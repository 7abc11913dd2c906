"""ember.diagnostics.landscape: linear interpolation (Goodfellow et al. 2015) and filter-normalized loss
surfaces (Li et al. 2018), against closed forms on a model whose loss is an exact quadratic in its
parameters, against PyTorch on a small CNN (including recomputed batch norm statistics), and checks
that the model is left exactly as it was."""
from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember import nn
from ember.backend import cupy_available
from ember.data import DataLoader, TensorDataset
from ember.diagnostics import interpolate, loss_surface, random_directions
from ember.errors import ShapeError

torch = pytest.importorskip("torch")

ALPHAS = np.linspace(-0.5, 1.5, 41)


# ---- a model whose loss is an exact quadratic in its parameters -------------------------------------
def _regression(seed=0, n=48):
    rng = np.random.default_rng(seed)
    model = nn.Linear(5, 3, dtype=np.float64)
    x, y = rng.standard_normal((n, 5)), rng.standard_normal((n, 3))
    sa = {"weight": rng.standard_normal((3, 5)), "bias": rng.standard_normal(3)}
    sb = {"weight": rng.standard_normal((3, 5)), "bias": rng.standard_normal(3)}
    return model, x, y, sa, sb


def _residual(x, y, w, b):
    return x @ w.T + b - y


def test_interpolation_is_the_closed_form_parabola():
    model, x, y, sa, sb = _regression()
    r0 = _residual(x, y, sa["weight"], sa["bias"])
    r1 = x @ (sb["weight"] - sa["weight"]).T + (sb["bias"] - sa["bias"])  # d residual / d alpha
    c0, c1, c2 = (r0 ** 2).mean(), 2 * (r0 * r1).mean(), (r1 ** 2).mean()
    want = c0 + c1 * ALPHAS + c2 * ALPHAS ** 2
    res = interpolate(model, sa, sb, (ember.tensor(x), ember.tensor(y)), "mse")
    np.testing.assert_allclose(res.alphas, ALPHAS)
    np.testing.assert_allclose(res.losses, want, rtol=1e-12)
    assert res.accuracies is None  # float targets: no accuracy
    assert res.curvature() == pytest.approx(2 * c2, rel=1e-9)  # a parabola's second derivative, exactly
    a_min = -c1 / (2 * c2)
    if -0.5 < a_min < 1.5:
        assert abs(res.minimum()[0] - a_min) <= 0.05 / 2 + 1e-12
    # the basin within 2x the minimum from the closed form: c(a) = 2 c(a*) where c(a) is the parabola
    lo, hi = res.basin()
    c_min = c0 - c1 ** 2 / (4 * c2)
    half = np.sqrt(c_min / c2)  # c2 (a - a*)^2 = c_min
    if -0.5 < a_min - half and a_min + half < 1.5:
        assert lo == pytest.approx(a_min - half, abs=2e-3) and hi == pytest.approx(a_min + half, abs=2e-3)
    # a loader of equal batches gives the same (batch-size-weighted) mean
    loader = DataLoader(TensorDataset(x, y), batch_size=12)
    res2 = interpolate(model, sa, sb, loader, "mse", alphas=[0.0, 0.3, 1.0], n_batches=None)
    np.testing.assert_allclose(res2.losses, c0 + c1 * res2.alphas + c2 * res2.alphas ** 2, rtol=1e-12)
    # only the first n_batches are read
    part = interpolate(model, sa, sb, loader, "mse", alphas=[0.0], n_batches=1)
    first = (_residual(x[:12], y[:12], sa["weight"], sa["bias"]) ** 2).mean()
    assert part.losses[0] == pytest.approx(first, rel=1e-12)


def test_surface_is_the_closed_form_quadratic_and_not_transposed():
    model, x, y, sa, _ = _regression(1)
    model.load_state_dict(sa)
    dirs = random_directions(model, 2, ember.Generator(3))
    r = _residual(x, y, sa["weight"], sa["bias"])
    s1, s2 = (x @ d["weight"].T + d["bias"] for d in dirs)
    res = loss_surface(model, (ember.tensor(x), ember.tensor(y)), "mse", dirs, span=((-1, 2), (-0.5, 0.5)),
                       resolution=(7, 5))
    assert res.losses.shape == (7, 5) and res.betas.shape == (5,)
    a, b = res.alphas[:, None, None, None], res.betas[None, :, None, None]
    want = ((r + a * s1 + b * s2) ** 2).mean(axis=(2, 3))
    np.testing.assert_allclose(res.losses, want, rtol=1e-12)
    # one direction: a 1-D curve through the model
    one = loss_surface(model, (ember.tensor(x), ember.tensor(y)), "mse", dirs[0], resolution=9)
    np.testing.assert_allclose(one.losses, ((r + one.alphas[:, None, None] * s1) ** 2).mean(axis=(1, 2)), rtol=1e-12)
    assert one.loss_at(0.0) == pytest.approx((r ** 2).mean(), rel=1e-13)


# ---- a small CNN with batch norm -----------------------------------------------------------------------
def _cnn(dtype=np.float32):
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, dtype=dtype), nn.BatchNorm2d(4, dtype=dtype), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(4 * 4 * 4, 3, dtype=dtype))


def _torch_cnn():
    t = torch.nn
    return t.Sequential(t.Conv2d(1, 4, 3, padding=1), t.BatchNorm2d(4), t.ReLU(), t.MaxPool2d(2), t.Flatten(),
                        t.Dropout(0.5), t.Linear(4 * 4 * 4, 3)).double()


def _data(n=96, seed=0, dtype=np.float32):
    """Three classes told apart by where a bright blob sits (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 1, 8, 8)) * 0.5
    for k, (r, c) in enumerate([(1, 1), (1, 5), (5, 3)]):
        x[y == k, 0, r:r + 2, c:c + 2] += 0.7
    return x.astype(dtype), y


def _snapshot(model):
    return ({k: v.numpy().copy() for k, v in model.state_dict().items()},
            [(t, t.data, t._vc[0]) for t in list(model.parameters()) + list(model.buffers())],
            [m.training for m in model.modules()], [getattr(m, "momentum", None) for m in model.modules()],
            [(p.grad, None if p.grad is None else p.grad.numpy().copy()) for p in model.parameters()])


def _assert_same(model, snap):
    state, arrays, modes, momenta, grads = snap
    for k, v in model.state_dict().items():
        assert v.numpy().dtype == state[k].dtype and np.array_equal(v.numpy(), state[k]), k
        assert v.numpy().tobytes() == state[k].tobytes(), k  # bit for bit (signed zeros, NaN payloads)
    for t, data, version in arrays:
        assert t.data is data and t._vc[0] == version  # the very arrays, untouched
    assert [m.training for m in model.modules()] == modes
    assert [getattr(m, "momentum", None) for m in model.modules()] == momenta
    for p, (g, values) in zip(model.parameters(), grads):  # gradients neither dropped nor touched
        assert p.grad is g and (g is None or np.array_equal(g.numpy(), values))


def _train(model, x, y, steps=30, lr=0.05):
    opt = ember.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for i in range(steps):
        sl = slice((i * 32) % len(x), (i * 32) % len(x) + 32)
        opt.zero_grad()
        F.cross_entropy(model(ember.tensor(x[sl])), ember.tensor(y[sl])).backward()
        opt.step()


def _torch_loss(state, x, y, bn_batches=None):
    tm = _torch_cnn()
    tm.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.int64 if k.endswith("tracked") else np.float64))
                        for k, v in state.items()})
    if bn_batches is not None:  # PyTorch's own recipe for fresh BN statistics (no dropout layer fires: eval first)
        tm.eval()
        tm[1].train()
        tm[1].reset_running_stats()
        tm[1].momentum = None
        with torch.no_grad():
            for xb in bn_batches:
                tm(torch.from_numpy(xb))
    tm.eval()
    with torch.no_grad():
        out = tm(torch.from_numpy(x.astype(np.float64)))
        return float(torch.nn.functional.cross_entropy(out, torch.from_numpy(y))), \
            float((out.argmax(1) == torch.from_numpy(y)).double().mean())


def test_init_to_trained_matches_torch_and_falls():
    x, y = _data()
    model = _cnn()
    init = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    _train(model, x, y)
    trained = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    model.train()
    snap = _snapshot(model)
    res = interpolate(model, init, model, (ember.tensor(x), ember.tensor(y)), alphas=np.linspace(-0.5, 1.5, 9))
    _assert_same(model, snap)
    assert np.isfinite(res.losses).all()  # blended variances past the ends are clipped at 0, not NaN
    assert res.loss_at(1.0) < 0.5 * res.loss_at(0.0)  # training lowered the loss along the line
    assert res.accuracies[res.alphas.tolist().index(1.0)] > 0.9
    for i, a in enumerate(res.alphas):  # PyTorch on the blended float64 state, every floating tensor blended
        st = {k: (init[k] if k.endswith("tracked") else (1 - a) * init[k].astype(np.float64) + a * trained[k])
              for k in init}
        st["1.running_var"] = np.maximum(st["1.running_var"], 0)  # a blended variance is clipped at 0
        want_loss, want_acc = _torch_loss(st, x, y)
        assert res.losses[i] == pytest.approx(want_loss, rel=2e-5, abs=1e-6)
        assert res.accuracies[i] == pytest.approx(want_acc)
    text = str(res)
    assert "alpha = 0:" in text and "alpha = 1:" in text and "d2L/dalpha2" in text and "barrier" in text


def test_ends_reproduce_direct_losses_exactly():
    x, y = _data(40, 1)
    model = _cnn()
    sa = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    _train(model, x, y, steps=5)
    sb = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    direct = []
    for st in (sa, sb):
        m = _cnn()
        m.load_state_dict(st)
        m.eval()
        with ember.no_grad():
            direct.append(float(F.cross_entropy(m(ember.tensor(x)), ember.tensor(y)).item()))
    res = interpolate(model, sa, sb, (ember.tensor(x), ember.tensor(y)))
    assert res.loss_at(0.0) == direct[0] and res.loss_at(1.0) == direct[1]


def test_recomputed_bn_matches_torch_update_bn_recipe():
    x, y = _data(64, 2)
    model = _cnn(np.float64)
    init = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    _train(model, x.astype(np.float64), y, steps=10)
    trained = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    xb = [x[:16].astype(np.float64), x[16:32].astype(np.float64)]
    bn_data = [(ember.tensor(b), ember.tensor(y[:16])) for b in xb]
    snap = _snapshot(model)
    res = interpolate(model, init, trained, (ember.tensor(x.astype(np.float64)), ember.tensor(y)),
                      alphas=[0.0, 0.5, 1.0], bn="recompute", bn_data=bn_data, bn_batches=2)
    _assert_same(model, snap)
    for i, a in enumerate(res.alphas):
        st = {k: (init[k] if "running" in k or k.endswith("tracked") else (1 - a) * init[k] + a * trained[k])
              for k in init}
        assert res.losses[i] == pytest.approx(_torch_loss(st, x, y, xb)[0], rel=1e-10)
    # interpolated statistics differ from recomputed ones in the middle of the line
    plain = interpolate(model, init, trained, (ember.tensor(x.astype(np.float64)), ember.tensor(y)), alphas=[0.5])
    assert abs(plain.losses[0] - res.losses[1]) > 1e-6


# ---- directions ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-6), (np.float64, 1e-13)])
def test_filter_normalization_norms_and_bias_bn_zero(dtype, rtol):
    model = _cnn(dtype)
    x, y = _data(32)
    _train(model, x.astype(dtype), y, steps=2)
    params = dict(model.named_parameters())
    for d in random_directions(model, 2, ember.Generator(0)):
        assert set(d) == set(params)
        for name, p in params.items():
            w = p.data
            assert d[name].shape == w.shape and d[name].dtype == w.dtype
            if w.ndim <= 1:
                assert not d[name].any(), name  # biases and BN parameters stay put
            else:  # conv (O, I, KH, KW) and linear (O, I): every filter gets its weight filter's norm
                got = np.linalg.norm(d[name].reshape(len(w), -1).astype(np.float64), axis=1)
                np.testing.assert_allclose(got, np.linalg.norm(w.reshape(len(w), -1), axis=1), rtol=rtol)
    full = random_directions(model, 1, ember.Generator(0), ignore_biasbn=False)[0]
    plain = random_directions(model, 1, ember.Generator(0))[0]
    for name, p in params.items():
        if p.ndim <= 1:  # included: one filter with the parameter's norm
            assert np.linalg.norm(full[name]) == pytest.approx(np.linalg.norm(p.data), rel=rtol)
        else:  # same draws either way
            np.testing.assert_array_equal(full[name], plain[name])
    layer = random_directions(model, 1, ember.Generator(0), normalization="layer")[0]
    assert np.linalg.norm(layer["0.weight"]) == pytest.approx(np.linalg.norm(params["0.weight"].data), rel=rtol)
    model[0].weight.data[1] = 0  # a dead filter gets no direction
    d = random_directions(model, 1, ember.Generator(0))[0]
    assert not d["0.weight"][1].any() and d["0.weight"][0].any()


def test_seeded_directions_and_surfaces_are_deterministic():
    x, y = _data(32, 3)
    model = _cnn()
    d1, d2 = (random_directions(model, 2, ember.Generator(7)) for _ in range(2))
    for a, b in zip(d1, d2):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(d1[0]["0.weight"], random_directions(model, 1, ember.Generator(8))[0]["0.weight"])
    batch = (ember.tensor(x), ember.tensor(y))
    s1, s2 = (loss_surface(model, batch, generator=ember.Generator(7), resolution=3) for _ in range(2))
    np.testing.assert_array_equal(s1.losses, s2.losses)
    s3 = loss_surface(model, batch, directions=d1, resolution=3)
    np.testing.assert_array_equal(s1.losses, s3.losses)


def test_surface_grid_shape_centre_and_restore():
    x, y = _data(32, 4)
    model = _cnn()
    _train(model, x, y, steps=4)
    model.train()
    model[6].eval()  # mixed modes must come back as they were
    snap = _snapshot(model)
    res = loss_surface(model, (ember.tensor(x), ember.tensor(y)), resolution=5, generator=ember.Generator(0))
    _assert_same(model, snap)
    assert res.losses.shape == (5, 5) and res.accuracies.shape == (5, 5)
    model.eval()
    with ember.no_grad():
        direct = float(F.cross_entropy(model(ember.tensor(x)), ember.tensor(y)).item())
    assert res.loss_at(0.0, 0.0) == direct and res.losses[2, 2] == direct
    # a corner against PyTorch at theta + alpha * d1 + beta * d2 (buffers as they are)
    d1, d2 = random_directions(model, 2, ember.Generator(0))
    a, b = res.alphas[0], res.betas[-1]
    st = {k: v.numpy().astype(np.float64) + (a * d1[k] + b * d2[k] if k in d1 else 0)
          for k, v in model.state_dict().items()}
    assert res.losses[0, -1] == pytest.approx(_torch_loss(st, x, y)[0], rel=2e-5)
    assert np.all(res.losses >= res.minimum()[-1])
    text = str(res)
    assert "5 x 5 grid" in text and "centre (the model)" in text and "along d2" in text


def test_model_restored_after_an_exception_mid_way():
    x, y = _data(32, 5)
    model = _cnn()
    _train(model, x, y, steps=3)
    model.train()
    snap = _snapshot(model)
    calls = []

    def bad_loss(out, target):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return F.cross_entropy(out, target)

    batch = (ember.tensor(x), ember.tensor(y))
    with pytest.raises(RuntimeError, match="boom"):
        interpolate(model, _cnn(), model, batch, bad_loss)
    _assert_same(model, snap)
    calls.clear()
    with pytest.raises(RuntimeError, match="boom"):
        interpolate(model, _cnn(), model, batch, bad_loss, bn="recompute")
    _assert_same(model, snap)
    calls.clear()
    with pytest.raises(RuntimeError, match="boom"):
        loss_surface(model, batch, bad_loss)
    _assert_same(model, snap)


def test_bad_arguments_name_the_problem():
    model, x, y, sa, sb = _regression()
    batch = (ember.tensor(x), ember.tensor(y))
    with pytest.raises(KeyError, match="missing keys \\[.bias.\\]"):
        interpolate(model, {"weight": sa["weight"]}, sb, batch, "mse")
    with pytest.raises(ShapeError, match=r"state_b\['weight'\] has shape \(5, 3\) but the model's is \(3, 5\)"):
        interpolate(model, sa, {**sb, "weight": sb["weight"].T}, batch, "mse")
    with pytest.raises(ValueError, match=r"need bn 'interpolate' or 'recompute' \(got 'keep'\)"):
        interpolate(model, sa, sb, batch, "mse", bn="keep")
    with pytest.raises(ValueError, match="need n 1 or 2 .got 3."):
        random_directions(model, 3)
    with pytest.raises(KeyError, match=r"names \[.nope.\], not parameters"):
        loss_surface(model, batch, "mse", {"nope": np.zeros(3)})
    with pytest.raises(ShapeError, match="direction 0\\['bias'\\] has shape \\(4,\\)"):
        loss_surface(model, batch, "mse", {"bias": np.zeros(4)})
    with pytest.raises(ValueError, match="lo < hi"):
        loss_surface(model, batch, "mse", span=(1, -1))
    with pytest.raises(ShapeError, match="the loss must be a scalar"):
        interpolate(model, sa, sb, batch, lambda o, t: F.mse_loss(o, t, reduction="none"))


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    x, y = _data(32, 6)
    model = _cnn()
    batch = (ember.tensor(x), ember.tensor(y))
    line = interpolate(model, _cnn(), model, batch, alphas=np.linspace(0, 1, 5))
    plane = loss_surface(model, batch, resolution=4, generator=ember.Generator(1))
    for res, name in ((line, "line.png"), (plane, "plane.png")):
        fig = res.plot(tmp_path / name, log=name == "plane.png")
        assert fig.axes and (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.gpu
@pytest.mark.device
@pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")
def test_gpu_landscape_matches_cpu():
    x, y = _data(32, 7)
    model = _cnn()
    _train(model, x, y, steps=3)
    init = _cnn()
    batch = (ember.tensor(x), ember.tensor(y))  # on the CPU: moved to the model's device
    cpu_line = interpolate(model, init, model, batch, alphas=[0.0, 0.5, 1.0])
    cpu_dirs = random_directions(model, 2, ember.Generator(0))
    cpu_plane = loss_surface(model, batch, directions=cpu_dirs, resolution=3)
    model.to("cuda")
    snap = _snapshot(model)
    gpu_line = interpolate(model, init, model, batch, alphas=[0.0, 0.5, 1.0])
    gpu_plane = loss_surface(model, batch, directions=cpu_dirs, resolution=3)
    gpu_dirs = random_directions(model, 1, ember.Generator(0))[0]
    _assert_same(model, snap)
    assert type(gpu_dirs["0.weight"]).__module__.startswith("cupy")
    np.testing.assert_allclose(gpu_line.losses, cpu_line.losses, rtol=1e-4)
    np.testing.assert_allclose(gpu_plane.losses, cpu_plane.losses, rtol=1e-4)

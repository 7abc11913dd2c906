"""Input attribution (saliency, SmoothGrad, integrated gradients, occlusion) against PyTorch and slow loops."""
import numpy as np
import pytest

import ember
from ember import nn
from ember.backend import cupy_available
from ember.diagnostics import attribution as A
from ember.errors import ShapeError

torch = pytest.importorskip("torch")

METHODS = [A.saliency, A.smoothgrad, A.integrated_gradients, A.occlusion]


def _x(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _twins(dtype=np.float64, seed=0):
    """The same small ReLU CNN in ember and in PyTorch (weights copied through state_dict)."""
    ember.manual_seed(seed)
    em = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 5))
    tm = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                             torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                             torch.nn.Linear(6 * 4 * 4, 5))
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in em.state_dict().items()})
    if dtype == np.float64:
        em.double()
        tm.double()
    return em, tm


def _torch_grad(tm, x: np.ndarray, cls) -> np.ndarray:
    """d out[i, cls[i]] / d x[i] from PyTorch."""
    xt = torch.tensor(x, requires_grad=True)
    out = tm(xt)
    out[torch.arange(len(x)), torch.as_tensor(np.asarray(cls))].sum().backward()
    return xt.grad.numpy()


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_saliency_is_the_input_gradient_of_pytorch_and_of_autograd_grad(dtype, tol):
    em, tm = _twins(dtype)
    x = _x(3, 2, 8, 8, dtype=dtype)
    with torch.no_grad():
        pred = tm(torch.tensor(x)).argmax(1).numpy()
    for target, cls in [(None, pred), (2, [2, 2, 2]), ([4, 0, 1], [4, 0, 1])]:
        s = A.saliency(em, ember.Tensor(x), target=target)
        np.testing.assert_array_equal(s.target, cls)
        g = _torch_grad(tm, x, cls)
        assert s.attributions.dtype == dtype
        np.testing.assert_allclose(s.attributions, g, rtol=tol, atol=tol * np.abs(g).max())
        np.testing.assert_allclose(s.map, np.abs(g).max(axis=1), rtol=tol, atol=tol * np.abs(g).max())
    xe = ember.Tensor(x[1:2], requires_grad=True)
    (ge,) = ember.autograd.grad(em(xe)[0, 4], xe)
    np.testing.assert_array_equal(A.saliency(em, ember.Tensor(x[1:2]), target=4).attributions, ge.numpy())
    signed = A.saliency(em, ember.Tensor(x), abs=False)  # keeps the sign of the largest-magnitude gradient
    np.testing.assert_array_equal(np.abs(signed.map), A.saliency(em, ember.Tensor(x)).map)
    assert (signed.map < 0).any() and (signed.map > 0).any()


def test_saliency_of_an_mlp_on_feature_vectors():
    ember.manual_seed(1)
    em = nn.Sequential(nn.Linear(7, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    tm = torch.nn.Sequential(torch.nn.Linear(7, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in em.state_dict().items()})
    x = _x(4, 7)
    s = A.saliency(em, ember.Tensor(x), target=[0, 1, 2, 0])
    g = _torch_grad(tm, x, [0, 1, 2, 0])
    np.testing.assert_allclose(s.attributions, g, rtol=1e-12)
    np.testing.assert_allclose(s.map, np.abs(g), rtol=1e-12)


def _path(method, steps):
    if method == "riemann_trapezoid":
        w = np.full(steps, 1 / (steps - 1))
        w[0] = w[-1] = 0.5 / (steps - 1)
        return np.linspace(0, 1, steps), w
    t, w = np.polynomial.legendre.leggauss(steps)
    return (t + 1) / 2, w / 2


@pytest.mark.parametrize("method", ["riemann_trapezoid", "gauss_legendre"])
def test_integrated_gradients_equal_pytorch_on_the_same_path(method):
    em, tm = _twins()
    x, b = _x(3, 2, 8, 8), 0.3 * _x(2, 8, 8, seed=1)  # a per-image baseline broadcast over the batch
    r = A.integrated_gradients(em, ember.Tensor(x), target=[1, 3, 0], baseline=b, steps=12, method=method,
                               batch_size=5)  # batches that cut through images
    alphas, w = _path(method, 12)
    acc = sum(wk * _torch_grad(tm, b + a * (x - b), [1, 3, 0]) for a, wk in zip(alphas, w))
    ref = (x - b) * acc
    np.testing.assert_allclose(r.attributions, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(r.map, ref.sum(axis=1), rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        fx, fb = tm(torch.tensor(x)).numpy(), tm(torch.tensor(np.broadcast_to(b, x.shape).copy())).numpy()
    np.testing.assert_allclose(r.score, fx[[0, 1, 2], [1, 3, 0]], rtol=1e-12)
    np.testing.assert_allclose(r.baseline_score, fb[[0, 1, 2], [1, 3, 0]], rtol=1e-12)
    np.testing.assert_allclose(r.gap, np.abs(ref.sum(axis=(1, 2, 3)) - (r.score - r.baseline_score)), atol=1e-10)


@pytest.mark.parametrize("method,steps", [("riemann_trapezoid", 200), ("gauss_legendre", 64)])
def test_integrated_gradients_completeness_on_a_relu_cnn(method, steps):
    em, _ = _twins(np.float32)
    x = ember.Tensor(_x(4, 2, 8, 8, seed=3, dtype=np.float32))
    r = A.integrated_gradients(em, x, steps=steps, method=method)
    delta = np.abs(r.score - r.baseline_score)
    assert (delta > 1e-3).all()
    assert (r.gap < 0.01 * delta).all(), (r.gap, delta)
    coarse = A.integrated_gradients(em, x, steps=2, method=method)  # a crude quadrature misses by more
    assert coarse.gap.max() > r.gap.max()


def test_integrated_gradients_of_a_linear_model_are_exact():
    """F(x) = w_c . x + b_c: the gradient is w_c everywhere, so IG = (x - baseline) * w_c, gap 0."""
    ember.manual_seed(2)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).double()
    x, b = _x(2, 2, 4, 4), _x(2, 2, 4, 4, seed=5)
    w = lin[1].weight.detach().numpy().reshape(3, 2, 4, 4)
    for method, steps in [("riemann_trapezoid", 2), ("gauss_legendre", 1), ("riemann_trapezoid", 7)]:
        r = A.integrated_gradients(lin, ember.Tensor(x), target=[2, 0], baseline=b, steps=steps, method=method)
        np.testing.assert_allclose(r.attributions, (x - b) * w[[2, 0]], rtol=1e-12, atol=1e-14)
        assert r.gap.max() < 1e-12
    r = A.integrated_gradients(lin, ember.Tensor(x))  # default baseline: zeros
    np.testing.assert_allclose(r.attributions, x * w[r.target], rtol=1e-12, atol=1e-14)


def test_smoothgrad_without_noise_is_saliency_and_equals_pytorch_with_the_same_noise():
    em, tm = _twins()
    x = _x(3, 2, 8, 8)
    s = A.saliency(em, ember.Tensor(x))
    z = A.smoothgrad(em, ember.Tensor(x), noise_level=0.0, n_samples=4, batch_size=5)
    np.testing.assert_allclose(z.attributions, s.attributions, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(z.map, s.map, rtol=1e-12, atol=1e-15)
    r = A.smoothgrad(em, ember.Tensor(x), target=1, n_samples=6, noise_level=0.2,
                     generator=ember.Generator(7), batch_size=4)
    # the same draws (an ember.Generator is NumPy's PCG64; copy j of image i is row i * n_samples + j)
    noise = np.random.Generator(np.random.PCG64(7)).standard_normal((18, 2, 8, 8))
    sigma = 0.2 * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))
    noisy = np.repeat(x, 6, axis=0) + np.repeat(sigma, 6)[:, None, None, None] * noise
    ref = _torch_grad(tm, noisy, [1] * 18).reshape(3, 6, 2, 8, 8).mean(axis=1)
    np.testing.assert_allclose(r.attributions, ref, rtol=1e-10, atol=1e-13)
    assert not np.allclose(r.attributions, A.saliency(em, ember.Tensor(x), target=1).attributions)


def test_smoothgrad_is_reproducible_with_a_seeded_generator():
    em, _ = _twins(np.float32)
    x = ember.Tensor(_x(2, 2, 8, 8, dtype=np.float32))
    a = A.smoothgrad(em, x, n_samples=10, generator=ember.Generator(3), batch_size=6)
    b = A.smoothgrad(em, x, n_samples=10, generator=ember.Generator(3), batch_size=6)
    c = A.smoothgrad(em, x, n_samples=10, generator=ember.Generator(4), batch_size=6)
    d = A.smoothgrad(em, x, n_samples=10, generator=ember.Generator(3), batch_size=20)  # one batch
    np.testing.assert_array_equal(a.attributions, b.attributions)
    np.testing.assert_allclose(a.attributions, d.attributions, rtol=1e-5, atol=1e-7)
    assert not np.allclose(a.attributions, c.attributions)
    ember.manual_seed(11)
    e = A.smoothgrad(em, x, n_samples=3)
    ember.manual_seed(11)
    np.testing.assert_array_equal(A.smoothgrad(em, x, n_samples=3).attributions, e.attributions)


def _occlusion_loop(tm, x, cls, window, stride, fill):
    """Zeiler & Fergus by hand: cover one window at a time, one image at a time."""
    n, _, H, W = x.shape
    (wh, ww), (sh, sw) = window, stride
    prob = lambda a: torch.softmax(tm(torch.tensor(a[None])), dim=1)[0].numpy()  # noqa: E731
    grid = np.zeros((n, (H - wh) // sh + 1, (W - ww) // sw + 1))
    heat, count = np.zeros((n, H, W)), np.zeros((n, H, W))
    with torch.no_grad():
        for i in range(n):
            p0 = prob(x[i])[cls[i]]
            for a in range(grid.shape[1]):
                for b in range(grid.shape[2]):
                    y = x[i].copy()
                    patch = (slice(None), slice(a * sh, a * sh + wh), slice(b * sw, b * sw + ww))
                    y[patch] = fill if fill != "mean" else x[i].mean(axis=(1, 2), keepdims=True)
                    grid[i, a, b] = p0 - prob(y)[cls[i]]
                    heat[i][patch[1:]] += grid[i, a, b]
                    count[i][patch[1:]] += 1
    return grid, np.where(count > 0, heat / np.maximum(count, 1), 0.0)


@pytest.mark.parametrize("window,stride,fill", [(3, 2, 0.0), ((4, 2), (2, 3), "mean"), (8, 8, 0.5)])
def test_occlusion_matches_a_slow_loop(window, stride, fill):
    em, tm = _twins()
    x = _x(2, 2, 8, 8)
    r = A.occlusion(em, ember.Tensor(x), target=[3, 1], window=window, stride=stride, fill=fill, batch_size=5)
    win = window if isinstance(window, tuple) else (window, window)
    st = stride if isinstance(stride, tuple) else (stride, stride)
    grid, heat = _occlusion_loop(tm, x, [3, 1], win, st, fill)
    assert r.attributions.shape == grid.shape and r.map.shape == (2, 8, 8)
    np.testing.assert_allclose(r.attributions, grid, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(r.map, heat, rtol=1e-10, atol=1e-14)


def test_occlusion_of_feature_vectors():
    ember.manual_seed(4)
    em = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    x = _x(3, 10)
    r = A.occlusion(em, ember.Tensor(x), window=3, stride=2, batch_size=4)
    ember.set_grad_enabled(False)
    try:
        p = lambda a: ember.nn.functional.softmax(em(ember.Tensor(a)), dim=1).numpy()  # noqa: E731
        p0 = p(x)[np.arange(3), r.target]
        for k in range(4):
            y = x.copy()
            y[:, 2 * k:2 * k + 3] = 0
            np.testing.assert_allclose(r.attributions[:, k], p0 - p(y)[np.arange(3), r.target], rtol=1e-12)
    finally:
        ember.set_grad_enabled(True)
    assert r.map.shape == (3, 10) and (r.map[:, 9] == 0).all()  # feature 9: no window reaches it


class Crop(nn.Module):
    """A classifier that only looks at rows 2..5, columns 4..7 of its (N, 1, 10, 10) input."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(ember.nn.functional.relu(self.fc1(x[:, :, 2:6, 4:8].reshape(x.shape[0], 16))))


def test_attribution_mass_lies_in_the_region_the_model_sees():
    ember.manual_seed(5)
    model = Crop().double()
    x = ember.Tensor(_x(3, 1, 10, 10) + 1.0)
    inside = np.zeros((10, 10), bool)
    inside[2:6, 4:8] = True
    for r in [A.saliency(model, x), A.smoothgrad(model, x, generator=ember.Generator(0)),
              A.integrated_gradients(model, x, steps=16)]:
        assert (r.map[:, ~inside] == 0).all() and (np.abs(r.map[:, inside]).sum(axis=1) > 0).all(), r.method
    oc = A.occlusion(model, x, window=2, stride=2)  # windows aligned with the region's edges
    assert (oc.attributions[:, [0, 3, 4], :] == 0).all() and (oc.attributions[:, :, [0, 1, 4]] == 0).all()
    mass = np.abs(oc.map)
    np.testing.assert_allclose(mass[:, inside].sum(axis=1) / mass.sum(axis=(1, 2)), 1.0)
    wide = A.occlusion(model, x, window=4, stride=1)  # windows that overlap the region blur it outwards
    assert (wide.map[:, ~inside] != 0).any() and (wide.map[:, :, :1] == 0).all()


def test_grads_untouched_and_modes_restored():
    ember.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.5),
                          nn.Flatten(), nn.Linear(3 * 6 * 6, 4))
    model.train()
    model[1].eval()  # a mixed state must come back as it was
    for p in model.parameters():
        p.grad = ember.Tensor(np.full(p.shape, 7.0, np.float32))
    mean = model[1].running_mean.numpy().copy()
    x = ember.Tensor(_x(2, 1, 8, 8, dtype=np.float32))
    for f in METHODS:
        kw = (lambda: {"generator": ember.Generator(0)}) if f is A.smoothgrad else dict
        a, b = f(model, x, **kw()), f(model, x, **kw())  # eval mode: no dropout masks, so the runs agree
        np.testing.assert_array_equal(a.map, b.map)
    assert [m.training for m in model.modules()] == [True, True, False, True, True, True, True]
    assert all((p.grad.numpy() == 7.0).all() for p in model.parameters())
    np.testing.assert_array_equal(model[1].running_mean.numpy(), mean)


@pytest.mark.parametrize("f", METHODS, ids=lambda f: f.__name__)
def test_target_errors_name_the_method(f):
    em, _ = _twins(np.float32)
    x = ember.Tensor(_x(2, 2, 8, 8, dtype=np.float32))
    name = f.__name__
    with pytest.raises(ValueError, match=rf"{name}: target 5 is out of range for a model with 5 classes"):
        f(em, x, target=5)
    with pytest.raises(ValueError, match=rf"{name}: target -1 is out of range"):
        f(em, x, target=[0, -1])
    with pytest.raises(ShapeError, match=rf"{name}: target has shape \(3,\) but x holds 2 inputs"):
        f(em, x, target=[0, 1, 2])
    with pytest.raises(TypeError, match=rf"{name}: target must be an int"):
        f(em, x, target=1.0)
    with pytest.raises(TypeError, match=rf"{name}: target must be an int"):
        f(em, x, target=True)
    with pytest.raises(ShapeError, match=rf"{name}: x must be a batch"):
        f(em, ember.Tensor(_x(8, dtype=np.float32)))
    with pytest.raises(ShapeError, match=rf"{name}: the model must return \(N, classes\) scores"):
        f(nn.Conv2d(2, 3, 3), x)


def test_argument_errors():
    em, _ = _twins(np.float32)
    x = ember.Tensor(_x(2, 2, 8, 8, dtype=np.float32))
    with pytest.raises(ValueError, match="integrated_gradients: method must be"):
        A.integrated_gradients(em, x, method="simpson")
    with pytest.raises(ValueError, match="needs steps >= 2"):
        A.integrated_gradients(em, x, steps=1)
    with pytest.raises(ShapeError, match=r"baseline of shape \(3, 8, 8\) does not broadcast"):
        A.integrated_gradients(em, x, baseline=np.zeros((3, 8, 8)))
    with pytest.raises(ShapeError, match=r"occlusion: window \(9, 9\) is larger"):
        A.occlusion(em, x, window=9)
    with pytest.raises(ValueError, match="occlusion: fill must be a number or 'mean'"):
        A.occlusion(em, x, fill="median")
    with pytest.raises(ValueError, match="occlusion: stride must be"):
        A.occlusion(em, x, stride=0)
    with pytest.raises(ValueError, match="smoothgrad: noise_level must be >= 0"):
        A.smoothgrad(em, x, noise_level=-0.1)
    with pytest.raises(ValueError, match="smoothgrad: batch_size must be a positive int"):
        A.smoothgrad(em, x, batch_size=0)


def test_plot_attributions_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    em, _ = _twins(np.float32)
    x = ember.Tensor(_x(5, 2, 8, 8, dtype=np.float32))
    fig = A.plot_attributions(em, x, tmp_path / "a.png", class_names=list("abcde"), max_images=3)
    data = (tmp_path / "a.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert len(fig.axes) == 3 * 5 and fig.axes[1].get_title() == "saliency"
    fig = A.plot_attributions(em, x, methods=["occlusion"], target=[0, 1, 2, 3, 4], max_images=2, class_names="abcde")
    assert len(fig.axes) == 4 and fig.axes[2].get_title() == "b"
    with pytest.raises(ValueError, match="plot_attributions: unknown methods"):
        A.plot_attributions(em, x, methods=["lime"])
    with pytest.raises(ShapeError, match="plot_attributions: x must be images"):
        A.plot_attributions(em, ember.Tensor(_x(2, 5)))


@pytest.mark.gpu
@pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")
def test_every_method_runs_on_the_gpu_and_agrees_with_the_cpu():
    em, _ = _twins(np.float32)
    x = ember.Tensor(_x(3, 2, 8, 8, dtype=np.float32))
    cpu = [f(em, x, target=[0, 2, 4]) for f in (A.saliency, A.integrated_gradients, A.occlusion)]
    em.to("cuda")
    gpu = [f(em, x.to("cuda"), target=[0, 2, 4]) for f in (A.saliency, A.integrated_gradients, A.occlusion)]
    for c, g in zip(cpu, gpu):
        assert isinstance(g.map, np.ndarray)
        np.testing.assert_allclose(g.attributions, c.attributions, rtol=1e-4, atol=1e-5 * np.abs(c.attributions).max())
    assert A.smoothgrad(em, x.to("cuda"), generator=ember.Generator(0)).map.shape == (3, 8, 8)

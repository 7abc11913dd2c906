"""grid_sample, affine_grid and the interpolate modes bicubic / area / nearest-exact, against PyTorch.

Forward and both gradients for every mode x padding_mode x align_corners in float32 and float64,
grids inside and far outside [-1, 1], grid entries exactly on pixels, borders and reflection folds,
empty tensors, the errors, and a tiny spatial transformer (Jaderberg et al., 2015) that learns to
undo a shift. The kink-free float64 gradchecks are rows of tests/opdb_spatial.py.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember import nn
from ember.errors import DTypeError, ShapeError

torch = pytest.importorskip("torch")
TF = torch.nn.functional

MODES = ("bilinear", "nearest")
PADDINGS = ("zeros", "border", "reflection")


def _tol(dtype):
    return dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=2e-5)


def _run_both(x, grid, seed_grad, **kw):
    """(ember (y, gx, ggrid), torch (y, gx, ggrid)) for grid_sample(x, grid, **kw) with upstream seed_grad."""
    xe, ge = ember.Tensor(x.copy(), requires_grad=True), ember.Tensor(grid.copy(), requires_grad=True)
    ye = F.grid_sample(xe, ge, **kw)
    xt, gt = torch.from_numpy(x.copy()).requires_grad_(), torch.from_numpy(grid.copy()).requires_grad_()
    yt = TF.grid_sample(xt, gt, **kw)
    g = seed_grad(yt.shape)
    ye.backward(ember.Tensor(g))
    yt.backward(torch.from_numpy(g))
    return (ye.data, xe.grad.data, ge.grad.data), (yt.detach().numpy(), xt.grad.numpy(), gt.grad.numpy())


def _assert_same(got, want, dtype, what=("output", "input grad", "grid grad")):
    for g, w, name in zip(got, want, what):
        assert g.shape == w.shape and g.dtype == dtype, f"{name}: {g.shape} {g.dtype}, torch {w.shape}"
        np.testing.assert_allclose(g, w, err_msg=name, **_tol(dtype))


# ---- grid_sample against PyTorch ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("mode", MODES)
def test_grid_sample_matches_torch(mode, padding_mode, align_corners, dtype, rng):
    x = rng.standard_normal((2, 3, 5, 7)).astype(dtype)
    grid = rng.uniform(-1.8, 1.8, (2, 4, 6, 2)).astype(dtype)  # about a third of it outside the image
    got, want = _run_both(x, grid, lambda s: rng.standard_normal(s).astype(dtype), mode=mode,
                          padding_mode=padding_mode, align_corners=align_corners)
    _assert_same(got, want, dtype)
    if mode == "bilinear":
        assert np.abs(got[2]).max() > 0.1  # the grid gradient was exercised
    else:
        assert not got[2].any()  # nearest: piecewise constant in the grid


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("mode", MODES)
def test_grid_sample_on_pixels_borders_and_folds_matches_torch(mode, padding_mode, align_corners, rng):
    """Grid entries landing exactly on integer and half-integer pixel coordinates, from -2 size to
    3 size: bilinear's kinks, nearest's ties (rounded half to even), the border clamps (gradient 0
    on the border itself) and the reflection folds. The sizes make every entry exact in binary, so
    both libraries see the same coordinate and PyTorch's one-sided derivatives are matched."""
    h, w = (5, 9) if align_corners else (4, 8)  # (size - 1) resp. size a power of two
    pixels = np.arange(-4 * w, 6 * w + 1) / 2

    def grid_entries(i, size):
        return 2 * i / (size - 1) - 1 if align_corners else (2 * i + 1) / size - 1

    gx = grid_entries(pixels, w)
    gy = grid_entries(np.resize(np.arange(-2 * h, 3 * h + 1) / 2, pixels.size), h)
    grid = np.stack([np.stack([gx, gy], -1), np.stack([gx[::-1], gy[::-1]], -1)])[:, None]  # (2, 1, P, 2)
    x = rng.standard_normal((2, 3, h, w))
    got, want = _run_both(x, grid, lambda s: rng.standard_normal(s), mode=mode, padding_mode=padding_mode,
                          align_corners=align_corners)
    _assert_same(got, want, np.float64)


@pytest.mark.parametrize("padding_mode", PADDINGS)
def test_grid_sample_far_outside(padding_mode, rng):
    x = rng.standard_normal((1, 2, 4, 6))
    grid = np.array([[[[1e6, 0.3], [-1e6, -0.2], [0.1, 3e5], [-7.3, 9.1], [2e4, -3e4]]]])
    got, want = _run_both(x, grid, lambda s: rng.standard_normal(s), padding_mode=padding_mode, align_corners=False)
    _assert_same(got, want, np.float64)
    if padding_mode == "zeros":
        assert not got[0].any()


def test_grid_sample_non_finite_grid_in_zeros_mode_like_torch():
    """Outside the contract, but no warning and PyTorch's forward: NaN for bilinear, 0 for nearest."""
    x = np.arange(1.0, 13.0).reshape(1, 1, 3, 4)
    grid = np.array([[[[np.nan, 0.0], [np.inf, 0.0], [-np.inf, 0.5], [0.25, np.nan]]]])
    for mode in MODES:
        got = F.grid_sample(ember.Tensor(x), ember.Tensor(grid), mode=mode, align_corners=False).data
        want = TF.grid_sample(torch.from_numpy(x), torch.from_numpy(grid), mode=mode, align_corners=False).numpy()
        np.testing.assert_array_equal(got, want)
    assert np.isnan(got).sum() == 0 and np.isnan(want).sum() == 0  # nearest
    got = F.grid_sample(ember.Tensor(x), ember.Tensor(grid), padding_mode="reflection", align_corners=True).data
    assert got.shape == (1, 1, 1, 4)


@pytest.mark.parametrize("shape,grid_shape", [((0, 3, 4, 5), (0, 2, 3, 2)), ((2, 0, 4, 5), (2, 2, 3, 2)),
                                              ((2, 3, 4, 5), (2, 0, 3, 2)), ((2, 3, 4, 5), (2, 2, 0, 2))])
def test_grid_sample_empty(shape, grid_shape, rng):
    x, grid = rng.standard_normal(shape), rng.uniform(-1, 1, grid_shape)
    got, want = _run_both(x, grid, lambda s: np.ones(s), align_corners=False)
    _assert_same(got, want, np.float64)
    assert got[0].shape == (shape[0], shape[1]) + grid_shape[1:3]


@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("hw", [(1, 1), (1, 5), (4, 1)])
def test_grid_sample_single_pixel_axes(hw, align_corners, padding_mode, rng):
    x = rng.standard_normal((2, 3) + hw)
    grid = rng.uniform(-1.5, 1.5, (2, 3, 4, 2))
    got, want = _run_both(x, grid, lambda s: rng.standard_normal(s), padding_mode=padding_mode,
                          align_corners=align_corners)
    _assert_same(got, want, np.float64)


def test_grid_sample_only_one_input_requires_grad(rng):
    x, grid = rng.standard_normal((1, 2, 3, 4)), rng.uniform(-1, 1, (1, 2, 2, 2))
    xe, ge = ember.Tensor(x, requires_grad=True), ember.Tensor(grid)
    F.grid_sample(xe, ge, align_corners=True).sum().backward()
    want = torch.from_numpy(x).requires_grad_()
    TF.grid_sample(want, torch.from_numpy(grid), align_corners=True).sum().backward()
    np.testing.assert_allclose(xe.grad.data, want.grad.numpy(), rtol=1e-12)
    ge = ember.Tensor(grid, requires_grad=True)
    F.grid_sample(ember.Tensor(x), ge, align_corners=True).sum().backward()
    assert ge.grad.shape == grid.shape and np.abs(ge.grad.data).max() > 0


@pytest.mark.parametrize("mode,padding_mode",
                         [("bilinear", "zeros"), ("bilinear", "reflection"), ("nearest", "border")])
def test_grid_sample_runs_of_images_on_threads(mode, padding_mode, rng, monkeypatch):
    """Large batches are cut into one run of images per thread (ember.parallel): three runs of a
    batch of 5 give the same output and gradients as one run, and PyTorch's."""
    from ember.ops import grid_sample as gs

    x = rng.standard_normal((5, 3, 6, 7))
    grid = rng.uniform(-1.3, 1.3, (5, 4, 5, 2))
    seed = rng.standard_normal((5, 3, 4, 5))
    kw = dict(mode=mode, padding_mode=padding_mode, align_corners=False)
    one, _ = _run_both(x, grid, lambda s: seed, **kw)
    monkeypatch.setattr(gs, "threads_for", lambda size: 3)
    assert gs._image_runs(5, 1, np) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    three, want = _run_both(x, grid, lambda s: seed, **kw)
    for a, b in zip(three, one):
        np.testing.assert_array_equal(a, b)
    _assert_same(three, want, np.float64)


def test_grid_sample_errors():
    x = ember.Tensor(np.zeros((2, 3, 4, 5), dtype=np.float32))
    g = ember.Tensor(np.zeros((2, 6, 7, 2), dtype=np.float32))
    cases = [
        (lambda: F.grid_sample(ember.Tensor(np.zeros((3, 4, 5), np.float32)), g), ShapeError,
         r"grid_sample: .*\(3, 4, 5\).*\(2, 6, 7, 2\)"),
        (lambda: F.grid_sample(x, ember.Tensor(np.zeros((1, 6, 7, 2), np.float32))), ShapeError,
         r"grid_sample: .*same batch size.*\(2, 3, 4, 5\).*\(1, 6, 7, 2\)"),
        (lambda: F.grid_sample(x, ember.Tensor(np.zeros((2, 6, 7, 3), np.float32))), ShapeError,
         r"grid_sample: grid's last dimension must have size 2.*\(2, 6, 7, 3\)"),
        (lambda: F.grid_sample(ember.Tensor(np.zeros((2, 3, 0, 5), np.float32)), g), ShapeError,
         r"grid_sample: .*non-empty spatial.*\(2, 3, 0, 5\)"),
        (lambda: F.grid_sample(ember.Tensor(np.zeros((2, 3, 4, 5, 6), np.float32)), g), ShapeError,
         r"grid_sample: .*5-D"),
        (lambda: F.grid_sample(x, ember.Tensor(np.zeros((2, 6, 7, 2)))), DTypeError,
         r"grid_sample: .*float32.*float64"),
        (lambda: F.grid_sample(ember.Tensor(np.zeros((2, 3, 4, 5), np.int64)), g), DTypeError,
         r"grid_sample: .*int64.*float32"),
        (lambda: F.grid_sample(x, g, mode="bicubic"), ValueError, r"grid_sample: mode .*'bicubic'"),
        (lambda: F.grid_sample(x, g, padding_mode="wrap"), ValueError, r"grid_sample: padding_mode .*'wrap'"),
    ]
    for fn, exc, match in cases:
        with pytest.raises(exc, match=match):
            fn()


# ---- affine_grid ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [(2, 3, 4, 5), (3, 1, 1, 6), (1, 2, 7, 1), (2, 1, 3, 4, 5), (1, 1, 2, 1, 3)])
def test_affine_grid_matches_torch(size, align_corners, dtype, rng):
    k = len(size) - 2
    theta = rng.standard_normal((size[0], k, k + 1)).astype(dtype)
    te = ember.Tensor(theta.copy(), requires_grad=True)
    tt = torch.from_numpy(theta.copy()).requires_grad_()
    ye = F.affine_grid(te, size, align_corners=align_corners)
    with warnings.catch_warnings():  # PyTorch warns about unit sizes with align_corners=True
        warnings.simplefilter("ignore", UserWarning)
        yt = TF.affine_grid(tt, size, align_corners=align_corners)
    g = rng.standard_normal(yt.shape).astype(dtype)
    ye.backward(ember.Tensor(g))
    yt.backward(torch.from_numpy(g))
    assert ye.shape == tuple(yt.shape) and ye.dtype == dtype and te.grad.dtype == dtype
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ye.data, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(te.grad.data, tt.grad.numpy(), **tol)


def test_affine_grid_identity_hits_pixel_centers():
    grid = F.affine_grid(ember.Tensor(np.array([[[1.0, 0, 0], [0, 1, 0]]])), (1, 1, 3, 4), align_corners=False)
    np.testing.assert_allclose(grid.data[0, 0, :, 0], [-0.75, -0.25, 0.25, 0.75])
    np.testing.assert_allclose(grid.data[0, :, 0, 1], [-2 / 3, 0, 2 / 3])
    x = np.arange(12.0).reshape(1, 1, 3, 4)
    np.testing.assert_allclose(F.grid_sample(ember.Tensor(x), grid, align_corners=False).data, x, atol=1e-12)


def test_affine_grid_errors():
    theta = ember.Tensor(np.zeros((2, 2, 3), dtype=np.float32))
    cases = [
        (lambda: F.affine_grid(theta, (3, 1, 4, 5)), ShapeError, r"affine_grid: .*\(3, 2, 3\).*\(2, 2, 3\)"),
        (lambda: F.affine_grid(theta, (2, 1, 4, 5, 6)), ShapeError, r"affine_grid: .*\(2, 3, 4\).*\(2, 2, 3\)"),
        (lambda: F.affine_grid(theta, (2, 1, 4)), ShapeError, r"affine_grid: size must be .*\(2, 1, 4\)"),
        (lambda: F.affine_grid(theta, (2, 1, 0, 5)), ValueError, r"affine_grid: size must be positive"),
        (lambda: F.affine_grid(ember.Tensor(np.zeros((2, 2, 3), np.int64)), (2, 1, 4, 5)), DTypeError,
         r"affine_grid: theta must be a floating point tensor, got int64"),
    ]
    for fn, exc, match in cases:
        with pytest.raises(exc, match=match):
            fn()


# ---- spatial transformers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("padding_mode", PADDINGS)
def test_transformer_theta_gradient_matches_torch(padding_mode, dtype, rng):
    """affine_grid then grid_sample, the spatial transformer's sampler: gradient w.r.t. theta and input."""
    theta = (np.array([[1.0, 0, 0], [0, 1, 0]]) + 0.3 * rng.standard_normal((3, 2, 3))).astype(dtype)
    x = rng.standard_normal((3, 2, 9, 8)).astype(dtype)
    te, xe = ember.Tensor(theta.copy(), requires_grad=True), ember.Tensor(x.copy(), requires_grad=True)
    tt, xt = torch.from_numpy(theta.copy()).requires_grad_(), torch.from_numpy(x.copy()).requires_grad_()
    ye = F.grid_sample(xe, F.affine_grid(te, (3, 2, 7, 6), align_corners=False), padding_mode=padding_mode,
                       align_corners=False)
    yt = TF.grid_sample(xt, TF.affine_grid(tt, (3, 2, 7, 6), align_corners=False), padding_mode=padding_mode,
                        align_corners=False)
    g = rng.standard_normal(yt.shape).astype(dtype)
    ye.backward(ember.Tensor(g))
    yt.backward(torch.from_numpy(g))
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == np.float64 else dict(rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(ye.data, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(xe.grad.data, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(te.grad.data, tt.grad.numpy(), **tol)


def _blobs(size: int) -> np.ndarray:
    yy, xx = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    return (np.exp(-((xx - 0.2) ** 2 + (yy + 0.1) ** 2) / 0.08)
            + 0.7 * np.exp(-((xx + 0.3) ** 2 + (yy - 0.3) ** 2) / 0.04)).astype(np.float32)


def test_spatial_transformer_learns_to_undo_a_shift():
    """A localization net (Linear-Tanh-Linear, starting at the identity transform as in the paper)
    predicts theta from a translated image; the sampler resamples the image with it, and the loss
    compares the result with the untranslated template. It must learn the translation."""
    rng, size, n = np.random.default_rng(0), 16, 64
    template = _blobs(size)

    def shifted(count):
        t = rng.uniform(-0.3, 0.3, (count, 2)).astype(np.float32)  # normalized units: up to 2.4 pixels
        theta = np.tile(np.array([[1, 0, 0], [0, 1, 0]], np.float32), (count, 1, 1))
        theta[:, :, 2] = -t
        grid = F.affine_grid(ember.Tensor(theta), (count, 1, size, size), align_corners=False)
        base = ember.Tensor(np.broadcast_to(template, (count, 1, size, size)).copy())
        return F.grid_sample(base, grid, padding_mode="border", align_corners=False), t

    class STN(nn.Module):
        def __init__(self):
            super().__init__()
            self.loc = nn.Sequential(nn.Flatten(), nn.Linear(size * size, 32), nn.Tanh(), nn.Linear(32, 6))
            self.loc[-1].weight.data[...] = 0
            self.loc[-1].bias.data[...] = np.array([1, 0, 0, 0, 1, 0], np.float32)

        def forward(self, x):
            theta = self.loc(x).reshape(-1, 2, 3)
            grid = F.affine_grid(theta, x.shape, align_corners=False)
            return F.grid_sample(x, grid, padding_mode="border", align_corners=False), theta

    model = STN()
    opt = ember.optim.Adam(model.parameters(), lr=3e-3)
    target = ember.Tensor(np.broadcast_to(template, (n, 1, size, size)).copy())
    losses = []
    for _ in range(150):
        x, _ = shifted(n)
        y, _ = model(x)
        loss = F.mse_loss(y, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    x, t = shifted(256)
    with ember.no_grad():
        y, theta = model(x)
    target = ember.Tensor(np.broadcast_to(template, (256, 1, size, size)).copy())
    before, after = F.mse_loss(x, target).item(), F.mse_loss(y, target).item()
    assert after < 0.1 * before, (before, after)
    assert np.mean(losses[-10:]) < 0.1 * losses[0]
    learned = theta.data[:, :, 2]  # sampling at p + t undoes x(p) = template(p - t)
    assert np.abs(learned - t).mean() < 0.1 * np.abs(t).mean()
    assert min(np.corrcoef(learned[:, i], t[:, i])[0, 1] for i in range(2)) > 0.99


# ---- interpolate: bicubic, area, nearest-exact ------------------------------------------------------------
_SPECS = [dict(size=(7, 9)), dict(size=(3, 2)), dict(size=(1, 1)), dict(scale_factor=2.0), dict(scale_factor=1.3),
          dict(scale_factor=(2.5, 0.7)), dict(scale_factor=(1.9, 2.1)), dict(scale_factor=(0.6, 1.7)),
          dict(scale_factor=1.7, recompute_scale_factor=True),
          dict(scale_factor=(2.1, 1.05), recompute_scale_factor=False)]


def _interp_both(x, kw, rng):
    xe, xt = ember.Tensor(x.copy(), requires_grad=True), torch.from_numpy(x.copy()).requires_grad_()
    ye, yt = F.interpolate(xe, **kw), TF.interpolate(xt, **kw)
    g = rng.standard_normal(yt.shape).astype(x.dtype)
    ye.backward(ember.Tensor(g))
    yt.backward(torch.from_numpy(g))
    return (ye.data, xe.grad.data), (yt.detach().numpy(), xt.grad.numpy())


def _torch_backward_skips_a_scale(mode: str, shape_in: tuple, shape_out: tuple, kw: dict) -> bool:
    """PyTorch's backward copies where its forward follows the scale factor: bicubic when every size
    stays, 1-D nearest when the size stays or doubles. ember's backward is the transposed forward."""
    if kw.get("scale_factor") is None or kw.get("recompute_scale_factor"):
        return False
    if mode == "bicubic":
        return shape_in == shape_out
    return mode == "nearest" and len(shape_in) == 1 and shape_out[0] in (shape_in[0], 2 * shape_in[0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode,align_corners", [("bicubic", None), ("bicubic", False), ("bicubic", True),
                                                ("area", None), ("nearest-exact", None), ("nearest", None),
                                                ("bilinear", False)])
def test_interpolate_modes_match_torch(mode, align_corners, dtype, rng):
    checked = 0
    for hw in [(5, 7), (4, 4), (1, 3), (8, 3), (1, 1)]:
        for spec in _SPECS:
            kw = dict(spec, mode=mode, align_corners=align_corners)
            out = [int(np.floor(n * s)) for n, s in zip(hw, np.broadcast_to(spec.get("scale_factor", 1.0), 2))]
            if "scale_factor" in spec and min(out) == 0:
                continue  # PyTorch refuses an empty output (except with 'area'); so does ember
            x = rng.standard_normal((2, 3) + hw).astype(dtype)
            (ye, gxe), (yt, gxt) = _interp_both(x, kw, rng)
            tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=2e-5)
            np.testing.assert_allclose(ye, yt, err_msg=f"{kw} {hw}", **tol)
            assert ye.dtype == dtype and gxe.dtype == dtype
            if not _torch_backward_skips_a_scale(mode, hw, ye.shape[2:], kw):
                np.testing.assert_allclose(gxe, gxt, err_msg=f"grad {kw} {hw}", **tol)
                checked += 1
    assert checked >= 40


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact", "area", "linear"])
def test_interpolate_1d_modes_match_torch(mode, rng):
    for n in (1, 3, 5, 7, 12):
        for spec in [dict(size=7), dict(size=n), dict(scale_factor=1.3), dict(scale_factor=2.1),
                     dict(scale_factor=0.5), dict(scale_factor=2.5, recompute_scale_factor=True)]:
            if "scale_factor" in spec and int(n * spec["scale_factor"]) == 0:
                continue
            x = rng.standard_normal((2, 3, n))
            (ye, gxe), (yt, gxt) = _interp_both(x, dict(spec, mode=mode), rng)
            np.testing.assert_allclose(ye, yt, rtol=1e-10, atol=1e-12, err_msg=f"{spec} {n}")
            if not _torch_backward_skips_a_scale(mode, (n,), ye.shape[2:], spec):
                np.testing.assert_allclose(gxe, gxt, rtol=1e-10, atol=1e-12, err_msg=f"grad {spec} {n}")


@pytest.mark.parametrize("shape,kw", [((2, 3, 3, 1), dict(scale_factor=1.3, mode="bicubic")),
                                      ((2, 3, 3), dict(scale_factor=1.3, mode="nearest")),
                                      ((2, 3, 4), dict(scale_factor=2.1, mode="nearest")),
                                      ((2, 3, 5, 6), dict(size=(8, 3), mode="bicubic", align_corners=True))])
def test_interpolate_backward_is_the_transposed_forward(shape, kw, rng):
    """<interpolate(x), g> == <x, grad>: exact adjointness, also where PyTorch's backward copies but its
    forward (which ember matches) does not."""
    x = rng.standard_normal(shape)
    xe = ember.Tensor(x, requires_grad=True)
    y = F.interpolate(xe, **kw)
    np.testing.assert_allclose(y.data, TF.interpolate(torch.from_numpy(x), **kw).numpy(), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    y.backward(ember.Tensor(g))
    np.testing.assert_allclose((y.data * g).sum(), (x * xe.grad.data).sum(), rtol=1e-12)


@pytest.mark.parametrize("kw", [dict(scale_factor=2, mode="bicubic"), dict(size=(11, 13), mode="bicubic",
                                                                              align_corners=True),
                                dict(size=(5, 7), mode="area"), dict(scale_factor=0.5, mode="area"),
                                dict(scale_factor=1.7, mode="nearest-exact")])
def test_upsample_layer_new_modes(kw, rng):
    x = rng.standard_normal((2, 3, 12, 10)).astype(np.float32)
    em, tm = nn.Upsample(**kw), torch.nn.Upsample(**kw)
    assert repr(em) == repr(tm)
    xe, xt = ember.Tensor(x.copy(), requires_grad=True), torch.from_numpy(x.copy()).requires_grad_()
    ye, yt = em(xe), tm(xt)
    np.testing.assert_allclose(ye.data, yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    g = rng.standard_normal(ye.shape).astype(np.float32)
    ye.backward(ember.Tensor(g))
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(xe.grad.data, xt.grad.numpy(), rtol=1e-4, atol=2e-5)


def test_interpolate_empty_batch_new_modes():
    for mode in ("bicubic", "area", "nearest-exact"):
        x = np.zeros((0, 2, 5, 7), dtype=np.float32)
        y = F.interpolate(ember.Tensor(x), size=(3, 4), mode=mode)
        assert y.shape == tuple(TF.interpolate(torch.from_numpy(x), size=(3, 4), mode=mode).shape)


def test_interpolate_new_mode_errors():
    x = ember.Tensor(np.zeros((1, 2, 5, 7), dtype=np.float32))
    x1 = ember.Tensor(np.zeros((1, 2, 5), dtype=np.float32))
    cases = [
        (lambda: F.interpolate(x, size=(3, 4), mode="bicubic", antialias=True), r"interpolate: antialias=True"),
        (lambda: F.interpolate(x, size=(3, 4), recompute_scale_factor=True),
         r"interpolate: recompute_scale_factor is not meaningful with an explicit size"),
        (lambda: F.interpolate(x, size=(3, 4), mode="area", align_corners=False),
         r"interpolate: align_corners can only be set .*'area'"),
        (lambda: F.interpolate(x, size=(3, 4), mode="nearest-exact", align_corners=True),
         r"interpolate: align_corners .*'nearest-exact'"),
        (lambda: F.interpolate(x1, size=3, mode="bicubic"), r"interpolate: mode 'bicubic' is not supported for 3-d"),
        (lambda: F.interpolate(x, size=(3, 4), mode="trilinear"), r"interpolate: mode 'trilinear'"),
        (lambda: F.interpolate(ember.Tensor(np.zeros((1, 2, 0, 7), np.float32)), size=(3, 4), mode="area"),
         r"interpolate: .*non-empty spatial.*\(1, 2, 0, 7\)"),
        (lambda: F.interpolate(x, scale_factor=(2, 2, 2), mode="bicubic"), r"interpolate: scale_factor"),
    ]
    for fn, match in cases:
        with pytest.raises(ValueError, match=match):
            fn()

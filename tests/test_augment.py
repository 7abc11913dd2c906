"""ember.data augmentations (augment, regions, color, affine, mixing) against PyTorch and torchvision's formulas."""
import colorsys
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as tF

import ember
import ember.nn.functional as F
from ember.data import transforms as T
from ember.errors import DTypeError, ShapeError


def _imgs(n=4, c=3, h=9, w=11, seed=0, dtype=np.float64):
    x = np.random.default_rng(seed).random((n, c, h, w))
    return (x * 255).astype(np.uint8) if dtype == np.uint8 else x.astype(dtype)


def _g(seed=0):
    return ember.Generator(seed)


def _raises(*cases):  # (call, exception class, message pattern) each
    for call, err, msg in cases:
        with pytest.raises(err, match=msg):
            call()


RANDOM = [  # (factory taking a generator, float-only?)
    (lambda g: T.RandomVerticalFlip(0.5, generator=g), False),
    (lambda g: T.RandomResizedCrop((6, 5), generator=g), False),
    (lambda g: T.RandomResizedCrop(5, interpolation="nearest", generator=g), False),
    (lambda g: T.RandomApply([T.GaussianBlur(3, generator=g)], p=0.5, generator=g), False),
    (lambda g: T.RandomChoice([T.RandomVerticalFlip(1.0), T.Grayscale(3)], generator=g), False),
    (lambda g: T.GaussianBlur((3, 5), sigma=(0.3, 2.0), generator=g), False),
    (lambda g: T.RandomErasing(0.9, generator=g), False),
    (lambda g: T.RandomErasing(0.9, value="random", generator=g), True),
    (lambda g: T.RandomGrayscale(0.5, generator=g), False),
    (lambda g: T.ColorJitter(0.5, 0.5, 0.5, 0.2, generator=g), False),
    (lambda g: T.RandomRotation(40, generator=g), False),
    (lambda g: T.RandomAffine(30, (0.2, 0.1), (0.7, 1.3), (-10, 10, -5, 5), "bilinear", generator=g), False),
]


@pytest.mark.parametrize("make,float_only", RANDOM, ids=[str(k) for k in range(len(RANDOM))])
def test_seeded_batch_vs_sample_dtype_and_independence(make, float_only):
    for dtype in (np.float32,) if float_only else (np.float32, np.uint8):
        x = _imgs(dtype=dtype)
        out = make(_g(3))(x)
        assert out.dtype == dtype and out.shape[:2] == x.shape[:2]
        np.testing.assert_array_equal(out, make(_g(3))(x))  # same seed, same result
        np.testing.assert_array_equal(make(_g(4))(x[:1])[0], make(_g(4))(x[0]))  # a sample = a batch of one
    same = np.repeat(_imgs(1, seed=1), 32, axis=0)  # identical images: samples must not share one draw
    outs = make(_g(5))(same)
    assert len({o.tobytes() for o in outs}) > 1


def test_vertical_flip():
    x = _imgs(200, 1, 3, 4)
    out = T.RandomVerticalFlip(0.5, generator=_g(1))(x)
    flipped, same = (np.all(out == x[:, :, ::-1], axis=(1, 2, 3)), np.all(out == x, axis=(1, 2, 3)))
    assert np.all(flipped | same) and 60 < flipped.sum() < 140
    np.testing.assert_array_equal(T.RandomVerticalFlip(1.0)(x[0]), x[0, :, ::-1])
    np.testing.assert_array_equal(T.RandomVerticalFlip(0.0)(x), x)
    with pytest.raises(ValueError, match="p must"):
        T.RandomVerticalFlip(1.5)


def test_pad_matches_torch_and_torchvision_examples():
    x = _imgs(2, 3, 5, 6)
    tx = torch.from_numpy(x)
    for mode, tmode in (("constant", "constant"), ("edge", "replicate"), ("reflect", "reflect")):
        got = T.Pad((1, 2, 3, 4), padding_mode=mode)(x)  # (left, top, right, bottom)
        np.testing.assert_array_equal(got, tF.pad(tx, (1, 3, 2, 4), mode=tmode).numpy())
    row = np.array([[[1.0, 2, 3, 4]]])
    np.testing.assert_array_equal(T.Pad((2, 0), padding_mode="reflect")(row)[0, 0], [3, 2, 1, 2, 3, 4, 3, 2])
    np.testing.assert_array_equal(T.Pad((2, 0), padding_mode="symmetric")(row)[0, 0], [2, 1, 1, 2, 3, 4, 4, 3])
    got = T.Pad(2, fill=(0.1, 0.2, 0.3))(x[0])
    assert got.shape == (3, 9, 10)
    np.testing.assert_array_equal(got[:, 2:7, 2:8], x[0])
    np.testing.assert_allclose(got[:, 0, 0], [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(T.Pad((1, -1))(x), np.pad(x[..., 1:-1, :], ((0, 0), (0, 0), (0, 0), (1, 1))))
    u = T.Pad(1, fill=7)(_imgs(dtype=np.uint8))
    assert u.dtype == np.uint8 and u[0, 0, 0, 0] == 7
    _raises((lambda: T.Pad(1, padding_mode="wrap"), ValueError, "padding_mode"),
            (lambda: T.Pad((1, 2, 3)), ValueError, "1, 2 or 4"),
            (lambda: T.Pad(5, padding_mode="reflect")(x), ShapeError, "too large"),
            (lambda: T.Pad(1, fill=(0, 1))(x), ShapeError, "2 values but the input has 3 channels"))


def test_random_resized_crop_boxes_and_resize_match_torch():
    x = _imgs(64, 2, 20, 30)
    top, left, h, w = T.RandomResizedCrop((7, 9), scale=(0.2, 0.9), ratio=(0.5, 2.0), generator=_g(0)).get_params(x)
    assert np.all((h > 0) & (w > 0) & (top >= 0) & (left >= 0) & (top + h <= 20) & (left + w <= 30))
    area, aspect = h * w / 600.0, w / h
    assert np.all((area > 0.15) & (area < 0.98) & (aspect > 0.4) & (aspect < 2.3))  # rounding slack
    assert len(set(zip(top, left, h, w))) > 50
    for mode in ("bilinear", "nearest"):
        out = T.RandomResizedCrop((7, 9), scale=(0.2, 0.9), ratio=(0.5, 2.0), interpolation=mode, generator=_g(0))(x)
        for k in range(len(x)):
            crop = torch.from_numpy(x[k:k + 1, :, top[k]:top[k] + h[k], left[k]:left[k] + w[k]])
            kw = {} if mode == "nearest" else {"align_corners": False}
            want = tF.interpolate(crop, size=(7, 9), mode=mode, **kw)[0].numpy()
            np.testing.assert_allclose(out[k], want, rtol=1e-12, atol=1e-12)
    u = (x * 255).astype(np.uint8)
    got = T.RandomResizedCrop((7, 9), scale=(0.2, 0.9), ratio=(0.5, 2.0), generator=_g(0))(u)
    ref = T.RandomResizedCrop((7, 9), scale=(0.2, 0.9), ratio=(0.5, 2.0), generator=_g(0))(u.astype(np.float32))
    np.testing.assert_array_equal(got, np.clip(np.rint(ref), 0, 255))


def test_random_resized_crop_fallbacks_and_errors():
    x = _imgs(3, 1, 10, 20)
    # no try can fit an area of 2-3 times the image: torchvision's central crop clipped to ratio
    top, left, h, w = T.RandomResizedCrop(4, scale=(2.0, 3.0), ratio=(0.75, 1.25)).get_params(x)
    np.testing.assert_array_equal(np.stack([top, left, h, w]), [[0] * 3, [4] * 3, [10] * 3, [12] * 3])  # round(12.5)
    top, left, h, w = T.RandomResizedCrop(4, scale=(2.0, 3.0), ratio=(2.5, 3.0)).get_params(x)
    np.testing.assert_array_equal(np.stack([top, left, h, w]), [[1] * 3, [0] * 3, [8] * 3, [20] * 3])
    out = T.RandomResizedCrop((10, 20), scale=(2.0, 3.0), ratio=(1.0, 3.0))(x)  # whole image, same size
    np.testing.assert_allclose(out, x, atol=1e-12)
    _raises((lambda: T.RandomResizedCrop(4, scale=(0.9, 0.1)), ValueError, r"scale must be of the form \(min, max\)"),
            (lambda: T.RandomResizedCrop(4, interpolation="bicubic"), ValueError, "interpolation"),
            (lambda: T.RandomResizedCrop(4)(x.astype(np.int32)), DTypeError, "uint8 or floating"))


def test_random_apply_and_choice():
    x = _imgs(300, 1, 3, 4)
    out = T.RandomApply([T.RandomVerticalFlip(1.0), T.RandomHorizontalFlip(1.0)], p=0.3, generator=_g(0))(x)
    turned = np.all(out == x[..., ::-1, ::-1], axis=(1, 2, 3))
    assert np.all(turned | np.all(out == x, axis=(1, 2, 3))) and 60 < turned.sum() < 120
    np.testing.assert_array_equal(T.RandomApply([T.RandomVerticalFlip(1.0)], p=1.0)(x), x[:, :, ::-1])
    np.testing.assert_array_equal(T.RandomApply([T.RandomVerticalFlip(1.0)], p=0.0)(x), x)
    with pytest.raises(ShapeError, match="keep each sample's shape"):
        T.RandomApply([T.CenterCrop(2)], p=1.0)(x)
    choice = T.RandomChoice([T.RandomVerticalFlip(1.0), T.RandomHorizontalFlip(1.0)], p=[3, 1], generator=_g(1))
    out = choice(x)
    v, hz = np.all(out == x[:, :, ::-1], axis=(1, 2, 3)), np.all(out == x[..., ::-1], axis=(1, 2, 3))
    assert np.all(v ^ hz) and 190 < v.sum() < 260
    twice = T.RandomChoice([T.Lambda(lambda a: a * 2), T.Lambda(lambda a: a)], p=[1, 0])
    np.testing.assert_array_equal(twice(x), 2 * x)
    with pytest.raises(ValueError, match="p has 1 values but there are 2"):
        T.RandomChoice([T.Lambda(abs), T.Lambda(abs)], p=[1])


# ---- colour: torchvision's formulas, written with torch ops ---------------------------------------------
def _tv_gray(img):
    r, g, b = img.unbind(dim=-3)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(-3)


def _tv_blend(img, other, ratio):
    out = img.mul(ratio).add_(other, alpha=1.0 - ratio).clamp_(0, 1.0 if img.is_floating_point() else 255)
    return out if img.is_floating_point() else out.to(img.dtype)


def _tv_grey_for_blend(img):
    g = _tv_gray(img)
    return g if img.is_floating_point() else g.floor_()


def _tv_hue(img, f):  # colorsys per pixel as the independent oracle
    fp = img.is_floating_point()
    a = img.double().numpy() / (1 if fp else 255.0)
    hsv = np.vectorize(colorsys.rgb_to_hsv)(a[0], a[1], a[2])
    rgb = np.stack(np.vectorize(colorsys.hsv_to_rgb)((hsv[0] + f) % 1.0, hsv[1], hsv[2]))
    return torch.from_numpy(rgb if fp else (rgb * 255.999).astype(np.uint8))


_TV_OPS = [lambda im, f: _tv_blend(im, torch.zeros(()), f),
           lambda im, f: _tv_blend(im, _tv_grey_for_blend(im).mean(dim=(-3, -2, -1), keepdim=True), f),
           lambda im, f: _tv_blend(im, _tv_grey_for_blend(im), f), _tv_hue]


def test_grayscale_luma_weights_match_torchvision_formula():
    for dtype in (np.float32, np.uint8):
        x = _imgs(3, 3, 5, 6, dtype=dtype)
        want = _tv_gray(torch.from_numpy(x)).to(torch.from_numpy(x).dtype).numpy()
        got = T.Grayscale()(x)
        assert got.shape == (3, 1, 5, 6) and got.dtype == dtype
        np.testing.assert_allclose(got.astype(np.float64), want, rtol=1e-6, atol=1e-6)
        three = T.Grayscale(3)(x[0])
        assert three.shape == (3, 5, 6) and np.all(three == three[:1])
    np.testing.assert_array_equal(T.Grayscale()(np.full((3, 2, 2), 255, np.uint8)), 254)  # 0.9999 * 255, truncated
    np.testing.assert_array_equal(T.Grayscale(3)(x[:, :1]), np.repeat(x[:, :1], 3, axis=1))
    out = T.RandomGrayscale(0.5, generator=_g(0))(_imgs(100))
    grey = np.all(out == out[:, :1], axis=(1, 2, 3))
    assert 30 < grey.sum() < 70
    np.testing.assert_array_equal(T.RandomGrayscale(1.0)(x[0]), T.Grayscale(3)(x[0]))
    with pytest.raises(ValueError, match="num_output_channels"):
        T.Grayscale(2)
    with pytest.raises(ShapeError, match="1 or 3"):
        T.Grayscale()(_imgs(c=4))


@pytest.mark.parametrize("dtype", [np.float64, np.uint8])
def test_color_jitter_per_sample_order_and_factors_match_torchvision(dtype):
    x = _imgs(40, 3, 4, 5, dtype=dtype)
    kw = dict(brightness=0.6, contrast=(0.2, 1.8), saturation=0.7, hue=0.0 if dtype == np.uint8 else 0.3)
    order, factors = T.ColorJitter(**kw, generator=_g(2)).get_params(x)
    out = T.ColorJitter(**kw, generator=_g(2))(x)
    assert len({tuple(o) for o in order}) > 8  # per-sample orders
    want = x.copy()
    for k in range(len(x)):
        w = torch.from_numpy(x[k])
        for j in order[k]:
            if factors[j] is not None:
                w = _TV_OPS[j](w, float(factors[j][k]))
        want[k] = w.numpy()
    if dtype == np.uint8:  # torch's fused multiply-adds round differently: rare off-by-one truncations
        assert np.abs(out.astype(int) - want).max() <= 1 and np.mean(out != want) < 0.003
    else:
        np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)


def test_color_jitter_fixed_factors_identity_and_errors():
    x = _imgs(5)
    np.testing.assert_array_equal(T.ColorJitter()(x), x)
    np.testing.assert_allclose(T.ColorJitter(brightness=(1, 1), contrast=(1, 1), saturation=(1, 1))(x), x)
    np.testing.assert_allclose(T.ColorJitter(brightness=(0.5, 0.5))(x), 0.5 * x)
    np.testing.assert_allclose(T.ColorJitter(saturation=(0, 0))(x), np.repeat(T.Grayscale()(x), 3, axis=1))
    u = _imgs(2, 3, 4, 5, dtype=np.uint8)
    got = T.ColorJitter(hue=(0.25, 0.25))(u)
    for k in range(2):
        assert np.abs(got[k].astype(int) - _tv_hue(torch.from_numpy(u[k]), 0.25).numpy()).max() <= 1
    np.testing.assert_array_equal(T.ColorJitter(saturation=0.5, hue=0.4)(x[:, :1]), x[:, :1])  # one channel
    # order matters when values clip: 2x brightness then grey vs grey then 2x; both orders must occur
    same = np.repeat(_imgs(1, seed=3), 16, axis=0)
    out = T.ColorJitter(brightness=(2, 2), saturation=(0, 0), generator=_g(0))(same)
    b_first = np.repeat(T.Grayscale()(np.clip(2 * same[:1], 0, 1)), 3, axis=1)
    s_first = np.clip(2 * np.repeat(T.Grayscale()(same[:1]), 3, axis=1), 0, 1)
    first = np.all(np.isclose(out, b_first), axis=(1, 2, 3))
    assert np.all(first | np.all(np.isclose(out, s_first), axis=(1, 2, 3))) and 0 < first.sum() < 16
    _raises((lambda: T.ColorJitter(brightness=-1), ValueError, "brightness as a single number must be non-negative"),
            (lambda: T.ColorJitter(hue=0.6), ValueError, "hue must be"), (lambda: T.ColorJitter(contrast=(2, 1)),
            ValueError, "contrast must be"), (lambda: T.ColorJitter(saturation="a"), TypeError, "saturation must be"),
            (lambda: T.ColorJitter(0.5)(_imgs(c=2)), ShapeError, "1 or 3"))


def test_gaussian_blur_matches_conv2d_per_sample_sigma():
    x = _imgs(6, 2, 9, 12)
    kw = dict(kernel_size=(3, 7), sigma=(0.2, 3.0))  # (kx, ky): 3 wide, 7 tall
    sig = T.GaussianBlur(**kw, generator=_g(1)).get_params(x)
    out = T.GaussianBlur(**kw, generator=_g(1))(x)
    assert np.ptp(sig) > 0.5
    for k in range(len(x)):
        def g1(n):
            t = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
            w = torch.exp(-0.5 * (t / float(sig[k])) ** 2)
            return w / w.sum()
        ker = torch.outer(g1(7), g1(3)).expand(2, 1, 7, 3)
        padded = tF.pad(torch.from_numpy(x[k:k + 1]), (1, 1, 3, 3), mode="reflect")
        np.testing.assert_allclose(out[k], tF.conv2d(padded, ker, groups=2)[0].numpy(), rtol=1e-12, atol=1e-13)
    u = (x * 255).astype(np.uint8)
    ref = T.GaussianBlur(5, 1.5)(u.astype(np.float32))
    np.testing.assert_array_equal(T.GaussianBlur(5, 1.5)(u), np.rint(ref))
    _raises((lambda: T.GaussianBlur(4), ValueError, "odd and positive"),
            (lambda: T.GaussianBlur(3, sigma=0), ValueError, "sigma"),
            (lambda: T.GaussianBlur(21)(x), ShapeError, "reflect padding"))


# ---- rotations and affine maps vs affine_grid + grid_sample -----------------------------------------------
def _tv_matrix(center, angle, translate, scale, shear):  # torchvision's inverse matrix, scalar Python
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [v / scale for v in (d, -b, 0.0, -c, a, 0.0)]
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty) + cx
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty) + cy
    return m


def _torch_warp(img, m, mode, fill):
    c, H, W = img.shape
    theta = torch.tensor([[m[0], m[1] * H / W, m[2] * 2 / W], [m[3] * W / H, m[4], m[5] * 2 / H]], dtype=torch.float64)
    grid = tF.affine_grid(theta[None], [1, c + 1, H, W], align_corners=False)
    src = torch.cat([torch.from_numpy(img), torch.ones(1, H, W, dtype=torch.float64)])[None]
    out = tF.grid_sample(src, grid, mode=mode, padding_mode="zeros", align_corners=False)[0]
    out, mask = out[:c], out[c:]
    if fill is None:
        return out.numpy()
    f = torch.tensor(fill, dtype=torch.float64).reshape(-1, 1, 1)
    return (torch.where(mask < 0.5, f, out) if mode == "nearest" else mask * (out - f) + f).numpy()


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("fill", [0, (0.2, 0.5, 0.9), None])
def test_random_affine_matches_grid_sample(mode, fill):
    x = _imgs(8, 3, 10, 13)
    kw = dict(degrees=40, translate=(0.2, 0.3), scale=(0.6, 1.4), shear=(-15, 15, -10, 10), interpolation=mode,
              fill=fill, center=(4, 3))
    p = T.RandomAffine(**kw, generator=_g(0)).get_params(x)
    out = T.RandomAffine(**kw, generator=_g(0))(x)
    assert np.all(p["translate"] == np.rint(p["translate"])) and np.all(np.abs(p["translate"]) <= 3)
    for k in range(len(x)):
        m = _tv_matrix((4 - 6.5, 3 - 5.0), p["angle"][k], p["translate"][k], p["scale"][k], p["shear"][k])
        np.testing.assert_allclose(out[k], _torch_warp(x[k], m, mode, fill), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_random_rotation_matches_grid_sample_and_rot90(mode):
    x = _imgs(6, 2, 8, 11)
    p = T.RandomRotation((-60, 60), mode, fill=0.5, generator=_g(1)).get_params(x)
    out = T.RandomRotation((-60, 60), mode, fill=0.5, generator=_g(1))(x)
    for k in range(len(x)):  # RandomRotation is F.rotate: the affine matrix of -angle
        want = _torch_warp(x[k], _tv_matrix((0, 0), -p["angle"][k], (0, 0), 1.0, (0, 0)), mode, [0.5])
        np.testing.assert_allclose(out[k], want, rtol=1e-10, atol=1e-10)
    sq = _imgs(3, 2, 7, 7)
    np.testing.assert_allclose(T.RandomRotation((90, 90), mode)(sq), np.rot90(sq, 1, axes=(2, 3)), atol=1e-12)
    np.testing.assert_allclose(T.RandomAffine((90, 90), interpolation=mode)(sq), np.rot90(sq, -1, axes=(2, 3)),
                               atol=1e-12)  # F.affine's angle is clockwise
    np.testing.assert_allclose(T.RandomRotation(0, mode)(x), x, atol=1e-12)
    np.testing.assert_allclose(T.RandomAffine(0, scale=(1, 1), interpolation=mode)(x[0]), x[0], atol=1e-12)
    u = (x * 255).astype(np.uint8)
    ref = T.RandomRotation(30, mode, generator=_g(2))(u.astype(np.float32))
    np.testing.assert_array_equal(T.RandomRotation(30, mode, generator=_g(2))(u), np.rint(ref))


def test_bilinear_affine_warp_by_runs_of_images_on_threads(monkeypatch):
    """Cut into runs of images on threads (as grid_sample's sampler is for large batches), the
    bilinear warp gives exactly the one-run result, with fill blended in."""
    from ember.ops import grid_sample as gs

    x = _imgs(7, 3, 9, 11, dtype=np.float32)
    kw = dict(degrees=30, translate=(0.2, 0.1), scale=(0.8, 1.2), interpolation="bilinear", fill=(0.1, 0.5, 0.9))
    one = T.RandomAffine(**kw, generator=_g(3))(x)
    monkeypatch.setattr(gs, "threads_for", lambda size: 2)
    assert len(gs._image_runs(7, 1, np)) == 2
    two = T.RandomAffine(**kw, generator=_g(3))(x)
    np.testing.assert_array_equal(two, one)
    assert np.isclose(two, 0.9).any() and not np.isclose(two, 0.9).all()  # fill shows where the warp left the image


def test_affine_translation_shifts_whole_pixels_and_errors():
    x = _imgs(16, 1, 6, 8)
    p = T.RandomAffine(0, translate=(0.3, 0.4), generator=_g(0)).get_params(x)
    out = T.RandomAffine(0, translate=(0.3, 0.4), fill=-1.0, generator=_g(0))(x)
    for k in range(len(x)):
        tx, ty = (int(v) for v in p["translate"][k])
        want = np.full_like(x[k], -1.0)
        want[:, max(ty, 0):6 + min(ty, 0), max(tx, 0):8 + min(tx, 0)] = \
            x[k][:, max(-ty, 0):6 - max(ty, 0), max(-tx, 0):8 - max(tx, 0)]
        np.testing.assert_array_equal(out[k], want)
    _raises((lambda: T.RandomRotation(10, expand=True), ValueError, "expand=True"),
            (lambda: T.RandomAffine(0, translate=(0.5, 1.5)), ValueError, "translate values"),
            (lambda: T.RandomAffine(0, scale=(0, 1)), ValueError, "scale values must be positive"),
            (lambda: T.RandomRotation(-5), ValueError, "degrees"),
            (lambda: T.RandomRotation(5, fill=(0, 1))(_imgs()), ShapeError, "fill has 2 values"))


# ---- erasing ---------------------------------------------------------------------------------------------
def test_random_erasing_rectangles():
    x = _imgs(64, 3, 12, 16) + 1.0  # erased value 0 cannot occur otherwise
    top, left, h, w = T.RandomErasing(1.0, generator=_g(0)).get_params(x)
    out = T.RandomErasing(1.0, generator=_g(0))(x)
    for k in range(len(x)):
        box = np.zeros((12, 16), bool)
        box[top[k]:top[k] + h[k], left[k]:left[k] + w[k]] = True
        np.testing.assert_array_equal(out[k] == 0, np.broadcast_to(box, (3, 12, 16)))
        np.testing.assert_array_equal(out[k][:, ~box], x[k][:, ~box])
    ok = h > 0
    assert ok.sum() > 50 and np.all((h < 12) & (w < 16))
    assert np.all(h[ok] * w[ok] / 192 < 0.4) and np.all((h[ok] / w[ok] > 0.2) & (h[ok] / w[ok] < 4.5))
    np.testing.assert_array_equal(T.RandomErasing(0.0)(x), x)
    np.testing.assert_array_equal(T.RandomErasing(1.0, scale=(1, 1), ratio=(1, 1))(x[:, :, :, :12]),
                                  x[:, :, :, :12])  # no 12x12 square fits strictly inside 12x12
    cut = T.RandomErasing(1.0, scale=(0.25, 0.25), ratio=(1, 1), value=(1, 2, 3))(x[:, :, :, :12])  # cutout 6x6
    assert np.all((cut == np.array([1, 2, 3.0])[:, None, None]).sum(axis=(2, 3)) == 36)
    noisy = T.RandomErasing(1.0, value="random", generator=_g(0))(x)
    assert np.all((noisy != x) == (out == 0)) and noisy.min() < 0
    y = x.copy()
    assert T.RandomErasing(1.0, inplace=True, generator=_g(0))(y) is y
    np.testing.assert_array_equal(y, out)
    u = T.RandomErasing(1.0, value=9)(_imgs(dtype=np.uint8))
    assert u.dtype == np.uint8 and (u == 9).any()
    _raises((lambda: T.RandomErasing(value="random")(_imgs(dtype=np.uint8)), DTypeError, "'random'"),
            (lambda: T.RandomErasing(scale=(0.1, 1.5)), ValueError, "scale must lie"),
            (lambda: T.RandomErasing(value="noise"), ValueError, "'random'"))


# ---- MixUp / CutMix ----------------------------------------------------------------------------------------
def test_mixup_blends_batch_and_labels():
    x, y = _imgs(6, 3, 4, 4).astype(np.float32), np.array([0, 1, 2, 3, 4, 0])
    lam = float(ember.Generator(7).np.beta(0.4, 0.4))
    xm, ym = T.MixUp(alpha=0.4, num_classes=5, generator=_g(7))(x, y)
    np.testing.assert_allclose(xm, lam * x + (1 - lam) * np.roll(x, 1, axis=0), rtol=1e-6)
    eye = np.eye(5, dtype=np.float32)
    np.testing.assert_allclose(ym, lam * eye[y] + (1 - lam) * eye[np.roll(y, 1)], rtol=1e-6)
    assert ym.dtype == np.float32 and np.allclose(ym.sum(1), 1)
    xt, yt = T.MixUp(alpha=0.4, num_classes=5, generator=_g(7))(ember.Tensor(x), ember.Tensor(y))
    assert isinstance(xt, ember.Tensor) and np.allclose(yt.numpy(), ym)
    _, again = T.MixUp(alpha=0.4, generator=_g(7))(x, eye[y])  # labels already (N, K)
    np.testing.assert_allclose(again, ym)
    m = T.MixUp(alpha=1.0, num_classes=5)
    _raises((lambda: m(x, y[:5]), ShapeError, "batch of 6"), (lambda: m(x, y + 1), ValueError, r"in \[0, 5\)"),
            (lambda: m(x[0], y), ShapeError, r"\(N, C, H, W\)"),
            (lambda: m(x.astype(np.uint8), y), DTypeError, "float"),
            (lambda: m(x, y.astype(np.float32)), DTypeError, "integer"),
            (lambda: T.MixUp()(x, y), ValueError, "num_classes is needed"),
            (lambda: T.MixUp(alpha=0.0), ValueError, "alpha"))


def test_cutmix_pastes_box_and_corrects_lambda():
    x, y = _imgs(5, 2, 10, 12, dtype=np.uint8), np.array([0, 1, 2, 1, 0])
    (x1, y1, x2, y2), lam = T.CutMix(alpha=1.0, num_classes=3, generator=_g(3)).get_params(10, 12)
    xm, ym = T.CutMix(alpha=1.0, num_classes=3, generator=_g(3))(x, y)
    assert 0 < (x2 - x1) * (y2 - y1) < 120 and lam == 1 - (x2 - x1) * (y2 - y1) / 120
    want = x.copy()
    want[..., y1:y2, x1:x2] = np.roll(x, 1, axis=0)[..., y1:y2, x1:x2]
    np.testing.assert_array_equal(xm, want)
    eye = np.eye(3)
    np.testing.assert_allclose(ym, lam * eye[y] + (1 - lam) * eye[np.roll(y, 1)], rtol=1e-6)
    for s in range(50):  # the box is truncated and clipped, so the corrected lambda only grows
        raw = ember.Generator(s).np.beta(1.0, 1.0)
        (x1, y1, x2, y2), lam = T.CutMix(alpha=1.0, num_classes=3, generator=_g(s)).get_params(10, 12)
        rw, rh = int(0.5 * math.sqrt(1 - raw) * 12), int(0.5 * math.sqrt(1 - raw) * 10)
        assert raw - 1e-12 <= lam <= 1 and (x2 - x1) <= 2 * rw and (y2 - y1) <= 2 * rh
        if x1 > 0 and y1 > 0 and x2 < 12 and y2 < 10:  # not clipped
            assert lam == 1 - 4 * rw * rh / 120


def test_probability_targets_match_torch_and_mixed_batches_train():
    logits = np.random.default_rng(0).standard_normal((6, 5))
    _, soft = T.MixUp(alpha=0.5, num_classes=5, generator=_g(0))(np.zeros((6, 1, 2, 2)), np.arange(6) % 5)
    a = ember.Tensor(logits, requires_grad=True)
    loss = F.cross_entropy(a, ember.Tensor(soft))
    loss.backward()
    ta = torch.tensor(logits, requires_grad=True)
    tl = tF.cross_entropy(ta, torch.from_numpy(soft))
    tl.backward()
    np.testing.assert_allclose(loss.item(), tl.item(), rtol=1e-12)
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 48)
    x = (rng.standard_normal((48, 1, 6, 6)) * 0.3 + y[:, None, None, None]).astype(np.float32)
    for mix in (T.MixUp(alpha=0.4, num_classes=3, generator=_g(1)),
                T.CutMix(alpha=1.0, num_classes=3, generator=_g(1))):
        ember.manual_seed(0)
        model = ember.nn.Sequential(ember.nn.Flatten(), ember.nn.Linear(36, 3))
        opt = ember.optim.SGD(model.parameters(), lr=0.1)
        clean = [F.cross_entropy(model(ember.Tensor(x)), ember.Tensor(y)).item()]
        losses = []
        for _ in range(60):
            xm, ym = mix(ember.Tensor(x), ember.Tensor(y))
            loss = F.cross_entropy(model(xm), ym)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        clean.append(F.cross_entropy(model(ember.Tensor(x)), ember.Tensor(y)).item())
        assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10]), (type(mix).__name__, losses)
        assert clean[1] < 0.5 * clean[0], (type(mix).__name__, clean)  # and it learned the clean task

"""Rows of the op table for pooling, normalization, dropout and resizing (see tests/opdb.py).

Inputs are small float arrays with odd sizes, padding, ceil_mode, dilation and batch 1;
random normal values keep max-pool windows free of ties (finite differences cannot
see through a tie). PyTorch is the reference for forward and gradients.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as TF

import ember
import ember.nn.functional as F
from tests.opdb import OpInfo, Sample, non_contiguous

OPS: list = []


def add_row(name, fn, samples, **kw):
    OPS.append(OpInfo(name, fn, samples, **kw))


def _n(rng, *shape):
    return rng.standard_normal(shape)


def _kw_samples(shape_kws, extra=()):
    """One sample per (input shape, kwargs) pair."""

    def samples(rng):
        out = [Sample((_n(rng, *shape),), kw, name=name) for name, shape, kw in shape_kws]
        return out + [s(rng) for s in extra]

    return samples


def _same(ember_fn, torch_fn, **fixed):
    """A row's (fn, torch_fn) pair calling both libraries with the same keyword arguments."""
    return (lambda x, **kw: ember_fn(x, **fixed, **kw)), (lambda x, **kw: torch_fn(x, **fixed, **kw))


# ---- pooling ------------------------------------------------------------------------------------------
_MAX = [
    ("k2", (2, 3, 8, 8), dict(kernel_size=2)),
    ("k3s2p1_odd", (1, 2, 7, 9), dict(kernel_size=3, stride=2, padding=1)),
    ("ceil", (2, 2, 7, 6), dict(kernel_size=3, stride=2, ceil_mode=True)),
    ("ceil_pad", (1, 2, 6, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("dilation", (1, 2, 9, 8), dict(kernel_size=(2, 3), stride=(1, 2), dilation=2, padding=1)),
    ("overlap_s1", (2, 1, 5, 5), dict(kernel_size=3, stride=1)),
    ("global", (2, 2, 5, 5), dict(kernel_size=5)),
    ("unbatched", (2, 5, 6), dict(kernel_size=2, stride=1)),
]
fn, tfn = _same(F.max_pool2d, TF.max_pool2d)
add_row("max_pool2d", fn, _kw_samples(_MAX, [lambda rng: Sample((non_contiguous(_n(rng, 1, 2, 6, 6)),),
                                                                dict(kernel_size=2), name="noncontig")]),
        torch_fn=tfn)
add_row("max_pool2d_indices", lambda x, **kw: F.max_pool2d(x, return_indices=True, **kw),
        _kw_samples(_MAX[:5]), torch_fn=lambda x, **kw: TF.max_pool2d(x, return_indices=True, **kw))

_AVG = [
    ("k2", (2, 3, 8, 8), dict(kernel_size=2)),
    ("k3s2p1_odd", (1, 2, 7, 9), dict(kernel_size=3, stride=2, padding=1)),
    ("ceil_pad", (1, 2, 6, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("no_pad_count", (2, 2, 7, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ("divisor", (1, 2, 6, 5), dict(kernel_size=(2, 3), stride=(1, 2), divisor_override=4)),
    ("global", (2, 2, 6, 6), dict(kernel_size=6)),
]
fn, tfn = _same(F.avg_pool2d, TF.avg_pool2d)
add_row("avg_pool2d", fn, _kw_samples(_AVG), torch_fn=tfn)

_ONE_D = [("k3s2p1_ceil", (2, 3, 11), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
          ("k2", (1, 2, 8), dict(kernel_size=2)), ("unbatched", (2, 9), dict(kernel_size=3, stride=1))]
fn, tfn = _same(F.max_pool1d, TF.max_pool1d)
add_row("max_pool1d", fn, _kw_samples(_ONE_D), torch_fn=tfn)
fn, tfn = _same(F.avg_pool1d, TF.avg_pool1d)
add_row("avg_pool1d", fn, _kw_samples(_ONE_D), torch_fn=tfn)

_ADAPT = [("global", (2, 3, 5, 5), dict(output_size=1)), ("divides", (1, 2, 8, 6), dict(output_size=(4, 3))),
          ("uneven", (2, 2, 7, 9), dict(output_size=(3, 4))), ("grow", (1, 2, 3, 4), dict(output_size=(5, 6))),
          ("keep_w", (1, 2, 7, 5), dict(output_size=(3, None)))]
fn, tfn = _same(F.adaptive_avg_pool2d, TF.adaptive_avg_pool2d)
add_row("adaptive_avg_pool2d", fn, _kw_samples(_ADAPT), torch_fn=tfn)
fn, tfn = _same(F.adaptive_max_pool2d, TF.adaptive_max_pool2d, return_indices=True)
add_row("adaptive_max_pool2d", fn, _kw_samples(_ADAPT), torch_fn=tfn)


def _unpool_samples(rng):
    out = []
    for name, shape, kw, size in [("k2", (2, 2, 6, 8), dict(kernel_size=2), None),
                                  ("odd_size", (1, 2, 7, 7), dict(kernel_size=2), (7, 7))]:
        # (Overlapping pooling windows can repeat an index; unpooling then keeps one of the copies
        # and finite differences see only that one, so the samples use disjoint windows.)
        x = torch.from_numpy(_n(rng, *shape))
        y, idx = TF.max_pool2d(x, return_indices=True, **kw)
        out.append(Sample((y.numpy(), idx.numpy()), dict(kw, output_size=size), name=name))
    return out


add_row("max_unpool2d", lambda x, i, **kw: F.max_unpool2d(x, i, **kw), _unpool_samples,
        torch_fn=lambda x, i, **kw: TF.max_unpool2d(x, i, **kw))


def _pos_samples(rng):
    return [Sample((rng.uniform(0.5, 2.0, (2, 2, 7, 6)),), dict(kernel_size=3, stride=2), name="k3s2"),
            Sample((rng.uniform(0.5, 2.0, (1, 2, 6, 7)),), dict(kernel_size=2, ceil_mode=True), name="ceil")]


add_row("lp_pool2d", lambda x, **kw: F.lp_pool2d(x, 2, **kw), _pos_samples,
        torch_fn=lambda x, **kw: TF.lp_pool2d(x, 2, **kw))
add_row("lp_pool2d_p3", lambda x, **kw: F.lp_pool2d(x, 3.0, **kw), _pos_samples,
        torch_fn=lambda x, **kw: TF.lp_pool2d(x, 3.0, **kw))


def _maxout_ref(x, pieces):
    return x.reshape(x.shape[0], x.shape[1] // pieces, pieces, *x.shape[2:]).max(axis=2)


add_row("maxout", lambda x, **kw: F.maxout(x, **kw),
        _kw_samples([("conv", (2, 6, 3, 4), dict(pieces=3)), ("linear", (3, 8), dict(pieces=2))]),
        ref=_maxout_ref)


def _channel_ref(x, kernel_size, stride=None, mode="max"):
    s = stride or kernel_size
    idx = np.arange(0, x.shape[1] - kernel_size + 1, s)
    win = np.stack([x[:, i:i + kernel_size] for i in idx], axis=1)
    return win.max(axis=2) if mode == "max" else win.mean(axis=2)


add_row("channel_pool", lambda x, **kw: F.channel_pool(x, **kw),
        _kw_samples([("max", (2, 6, 3, 3), dict(kernel_size=2)),
                     ("mean", (2, 6, 3, 3), dict(kernel_size=3, mode="mean")),
                     ("overlap", (1, 7, 4), dict(kernel_size=3, stride=2)),
                     ("overlap_mean", (1, 7, 2, 2), dict(kernel_size=3, stride=1, mode="mean"))]),
        ref=_channel_ref)


# ---- normalization ------------------------------------------------------------------------------------
def _affine_samples(shapes, channels_of, noaffine=True):
    def samples(rng):
        out = []
        for name, shape in shapes:
            c = channels_of(shape)
            out.append(Sample((_n(rng, *shape), rng.uniform(0.5, 1.5, c), _n(rng, *np.atleast_1d(c))), name=name))
        if noaffine:
            out.append(Sample((_n(rng, *shapes[0][1]), None, None), name="no_affine"))
        return out

    return samples


_BN_SHAPES = [("4d", (4, 3, 5, 3)), ("2d", (5, 4)), ("3d_odd", (3, 2, 7)), ("batch1", (1, 3, 3, 3))]
add_row("batch_norm_train", lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
        _affine_samples(_BN_SHAPES, lambda s: s[1]),
        torch_fn=lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True))


def _bn_eval(lib, tensor):
    rm, rv = np.linspace(-0.5, 0.5, 3), np.linspace(0.5, 2.0, 3)
    return lambda x, w, b: lib.batch_norm(x, tensor(rm), tensor(rv), w, b, training=False)


add_row("batch_norm_eval", _bn_eval(F, ember.Tensor), _affine_samples([("4d", (2, 3, 4, 3)), ("3d", (3, 3, 5))],
                                                                       lambda s: s[1]),
        torch_fn=_bn_eval(TF, torch.from_numpy))
def _bn_add_relu_samples(rng):
    out = []
    for name, shape in [("4d", (4, 3, 5, 3)), ("2d", (6, 4)), ("3d", (3, 2, 7))]:
        c = shape[1]
        out.append(Sample((_n(rng, *shape), rng.uniform(0.5, 1.5, c), _n(rng, c), _n(rng, *shape)), name=name))
    return out


def _bn_add_relu(lib, tensor, training, relu=True):
    rm, rv = np.linspace(-0.5, 0.5, 4), np.linspace(0.5, 2.0, 4)

    def fn(x, w, b, r):
        c = x.shape[1]
        stats = (tensor(rm[:c].copy()), tensor(rv[:c].copy())) if not training else (None, None)
        if lib is F:
            return F.batch_norm(x, *stats, w, b, training=training, add=r, relu=relu)
        y = TF.batch_norm(x, *stats, w, b, training=training) + r
        return TF.relu(y) if relu else y

    return fn


# ember's batch_norm(..., add=r, relu=True): relu(batch_norm(x) + r) as one op (ResNet's blocks)
add_row("batch_norm_add_relu_train", _bn_add_relu(F, ember.Tensor, True), _bn_add_relu_samples,
        torch_fn=_bn_add_relu(TF, torch.from_numpy, True))
add_row("batch_norm_add_train", _bn_add_relu(F, ember.Tensor, True, relu=False), _bn_add_relu_samples,
        torch_fn=_bn_add_relu(TF, torch.from_numpy, True, relu=False))
add_row("batch_norm_add_relu_eval", _bn_add_relu(F, ember.Tensor, False), _bn_add_relu_samples,
        torch_fn=_bn_add_relu(TF, torch.from_numpy, False))
add_row("batch_norm_relu_train", lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True, relu=True),
        _affine_samples(_BN_SHAPES, lambda s: s[1]),
        torch_fn=lambda x, w, b: TF.relu(TF.batch_norm(x, None, None, w, b, training=True)))
add_row("instance_norm", lambda x, w, b: F.instance_norm(x, weight=w, bias=b),
        _affine_samples([("4d", (2, 3, 4, 5)), ("3d", (1, 2, 7))], lambda s: s[1]),
        torch_fn=lambda x, w, b: TF.instance_norm(x, weight=w, bias=b))
add_row("group_norm", lambda x, w, b: F.group_norm(x, 2, w, b),
        _affine_samples([("4d", (2, 6, 3, 3)), ("3d", (1, 4, 5)), ("2d", (3, 4))], lambda s: s[1]),
        torch_fn=lambda x, w, b: TF.group_norm(x, 2, w, b))
add_row("layer_norm", lambda x, w, b: F.layer_norm(x, (3, 5), w, b),
        _affine_samples([("3d", (4, 3, 5)), ("4d", (2, 1, 3, 5))], lambda s: s[-2:]),
        torch_fn=lambda x, w, b: TF.layer_norm(x, (3, 5), w, b))
add_row("layer_norm_1d", lambda x, w: F.layer_norm(x, 7, w, eps=1e-3),
        lambda rng: [Sample((_n(rng, 4, 7), rng.uniform(0.5, 1.5, 7)), name="weight_only")],
        torch_fn=lambda x, w: TF.layer_norm(x, (7,), w, eps=1e-3))
add_row("local_response_norm", lambda x, **kw: F.local_response_norm(x, **kw),
        _kw_samples([("odd", (2, 5, 3, 3), dict(size=3, alpha=0.1)),
                     ("even", (1, 6, 4), dict(size=4, alpha=0.2, k=2.0))]),
        torch_fn=lambda x, **kw: TF.local_response_norm(x, **kw))


# ---- dropout: a fixed generator makes the mask the same in every call (gradcheck needs that) ---------
# gpu=False: CuPy's generator draws other masks than NumPy's; tests/test_gpu.py checks GPU dropout.
add_row("dropout", lambda x: F.dropout(x, 0.3, generator=ember.Generator(5)),
        lambda rng: [Sample((_n(rng, 4, 6),)), Sample((_n(rng, 2, 3, 4),))], gpu=False)
add_row("dropout2d", lambda x: F.dropout2d(x, 0.5, generator=ember.Generator(5)),
        lambda rng: [Sample((_n(rng, 3, 4, 3, 3),)), Sample((_n(rng, 4, 2, 2),), name="unbatched")], gpu=False)
add_row("dropout_eval", lambda x: F.dropout(x, 0.3, training=False), lambda rng: [Sample((_n(rng, 4, 6),))],
        torch_fn=lambda x: TF.dropout(x, 0.3, training=False))


# ---- resizing -----------------------------------------------------------------------------------------
_RESIZE = [
    ("nearest_size", (2, 2, 4, 5), dict(size=(7, 9), mode="nearest")),
    ("nearest_scale", (1, 2, 3, 4), dict(scale_factor=2, mode="nearest")),
    ("nearest_down", (1, 2, 7, 8), dict(size=(3, 5), mode="nearest")),
    ("bilinear", (2, 2, 4, 5), dict(size=(7, 9), mode="bilinear", align_corners=False)),
    ("bilinear_ac", (1, 2, 4, 5), dict(scale_factor=1.5, mode="bilinear", align_corners=True)),
    ("bilinear_down", (1, 2, 9, 7), dict(size=(4, 3), mode="bilinear")),
    ("bilinear_scale_frac", (1, 1, 5, 6), dict(scale_factor=(1.7, 2.3), mode="bilinear")),
    ("linear_1d", (2, 3, 5), dict(size=8, mode="linear")),
    ("nearest_1d", (2, 3, 5), dict(scale_factor=3, mode="nearest")),
]
fn, tfn = _same(F.interpolate, TF.interpolate)
add_row("interpolate", fn, _kw_samples(_RESIZE), torch_fn=tfn)
fn, tfn = _same(F.pixel_shuffle, TF.pixel_shuffle)
add_row("pixel_shuffle", fn, _kw_samples([("r2", (2, 8, 3, 5), dict(upscale_factor=2)),
                                          ("unbatched_r3", (9, 2, 2), dict(upscale_factor=3))]), torch_fn=tfn)
fn, tfn = _same(F.pixel_unshuffle, TF.pixel_unshuffle)
add_row("pixel_unshuffle", fn, _kw_samples([("r2", (2, 2, 6, 4), dict(downscale_factor=2))]), torch_fn=tfn)


# ---- more pooling: the 1-D adaptive/Lp/unpooling pools and fractional max pooling --------------------------
_ADAPT_1D = [("global", (2, 3, 7), dict(output_size=1)), ("divides", (1, 2, 12), dict(output_size=4)),
             ("uneven", (2, 2, 11), dict(output_size=4)), ("grow", (1, 2, 4), dict(output_size=7)),
             ("unbatched", (3, 10), dict(output_size=(3,)))]
fn, tfn = _same(F.adaptive_avg_pool1d, TF.adaptive_avg_pool1d)
add_row("adaptive_avg_pool1d", fn, _kw_samples(_ADAPT_1D), torch_fn=tfn)
fn, tfn = _same(F.adaptive_max_pool1d, TF.adaptive_max_pool1d, return_indices=True)
add_row("adaptive_max_pool1d", fn, _kw_samples(_ADAPT_1D), torch_fn=tfn)


def _pos_samples_1d(rng):
    return [Sample((rng.uniform(0.5, 2.0, (2, 3, 11)),), dict(kernel_size=3, stride=2), name="k3s2"),
            Sample((rng.uniform(0.5, 2.0, (2, 9)),), dict(kernel_size=2, ceil_mode=True), name="unbatched_ceil")]


add_row("lp_pool1d", lambda x, **kw: F.lp_pool1d(x, 2, **kw), _pos_samples_1d,
        torch_fn=lambda x, **kw: TF.lp_pool1d(x, 2, **kw))
add_row("lp_pool1d_inf", lambda x, **kw: F.lp_pool1d(x, float("inf"), **kw),
        _kw_samples([("k3s2", (2, 3, 11), dict(kernel_size=3, stride=2))]),
        torch_fn=lambda x, **kw: TF.lp_pool1d(x, float("inf"), **kw))


def _unpool1d_samples(rng):
    out = []
    for name, shape, kw, size in [("k2", (2, 3, 8), dict(kernel_size=2), None),
                                  ("k3s3_size", (1, 2, 10), dict(kernel_size=3, stride=3), (11,)),
                                  ("unbatched", (2, 9), dict(kernel_size=3), None)]:
        x = torch.from_numpy(_n(rng, *shape))  # disjoint windows (see _unpool_samples)
        y, idx = TF.max_pool1d(x, return_indices=True, **kw)
        out.append(Sample((y.numpy(), idx.numpy()), dict(kw, output_size=size), name=name))
    return out


add_row("max_unpool1d", lambda x, i, **kw: F.max_unpool1d(x, i, **kw), _unpool1d_samples,
        torch_fn=lambda x, i, **kw: TF.max_unpool1d(x, i, **kw))


def _fractional_samples(rng):
    """Input and (N, C, 2) samples in [0, 1); the samples are a no-grad input so they follow the
    input's dtype (PyTorch requires that, and computes the windows in it)."""
    out = []
    for name, shape, kw in [("k2", (2, 3, 11, 9), dict(kernel_size=2, output_size=(7, 5))),
                            ("k3_overlap", (1, 2, 13, 12), dict(kernel_size=3, output_size=(8, 9))),
                            ("ratio", (2, 2, 10, 9), dict(kernel_size=(2, 3), output_ratio=(0.6, 0.5))),
                            ("unbatched", (2, 9, 8), dict(kernel_size=2, output_size=(5, 6)))]:
        n = 1 if len(shape) == 3 else shape[0]
        out.append(Sample((_n(rng, *shape), rng.uniform(0.05, 0.95, (n, shape[-3], 2))), kw, no_grad=(1,),
                          name=name))
    return out


add_row("fractional_max_pool2d", lambda x, u, **kw: F.fractional_max_pool2d(x, return_indices=True,
                                                                            _random_samples=u, **kw),
        _fractional_samples,
        torch_fn=lambda x, u, **kw: TF.fractional_max_pool2d(x, return_indices=True, _random_samples=u, **kw))


# ---- spatial transformers: grid_sample and affine_grid; the other interpolate modes ------------------------
def _pixels_to_grid(i, size: int, align_corners: bool):
    """Normalized grid entries that land on pixel coordinates ``i`` along an axis of ``size`` pixels."""
    if align_corners:
        return 2 * i / (size - 1) - 1 if size > 1 else np.zeros_like(i)
    return (2 * i + 1) / size - 1


def _kink_free_grid(rng, n: int, ho: int, wo: int, h: int, w: int, align_corners: bool):
    """(n, ho, wo, 2) grid whose pixel coordinates are k/2 + u, u in [0.1, 0.4], for k from -2 size to
    3 size: inside and far outside the image, 0.1 away from integers (bilinear's kinks, border clamps)
    and half-integers (nearest's jumps). Reflection folds at multiples of 0.5 as well, so the reflected
    coordinates keep that distance too."""
    def coords(size):
        return rng.integers(-4 * size, 6 * size, (n, ho, wo)) / 2 + rng.uniform(0.1, 0.4, (n, ho, wo))

    return np.stack([_pixels_to_grid(coords(w), w, align_corners), _pixels_to_grid(coords(h), h, align_corners)],
                    axis=-1)


def _grid_sample_samples(rng):
    out = []
    for mode in ("bilinear", "nearest"):
        for padding_mode in ("zeros", "border", "reflection"):
            for ac in (False, True):
                kw = dict(mode=mode, padding_mode=padding_mode, align_corners=ac)
                out.append(Sample((_n(rng, 2, 3, 5, 6), _kink_free_grid(rng, 2, 4, 3, 5, 6, ac)), kw,
                                  name=f"{mode}_{padding_mode}_{'ac' if ac else 'noac'}"))
    kw = dict(mode="bilinear", padding_mode="reflection", align_corners=False)
    out.append(Sample((_n(rng, 1, 2, 1, 4), _kink_free_grid(rng, 1, 3, 5, 1, 4, False)), kw, name="one_row"))
    out.append(Sample((non_contiguous(_n(rng, 1, 2, 4, 3)), _kink_free_grid(rng, 1, 2, 6, 4, 3, True)),
                      dict(kw, padding_mode="border", align_corners=True), name="noncontig"))
    return out


add_row("grid_sample", lambda x, g, **kw: F.grid_sample(x, g, **kw), _grid_sample_samples,
        torch_fn=lambda x, g, **kw: TF.grid_sample(x, g, **kw))


def _affine_grid_samples(rng):
    return [Sample((_n(rng, 2, 2, 3),), dict(size=(2, 3, 4, 5), align_corners=False), name="2d"),
            Sample((_n(rng, 2, 2, 3),), dict(size=(2, 1, 3, 6), align_corners=True), name="2d_ac"),
            Sample((_n(rng, 1, 2, 3),), dict(size=(1, 1, 1, 4), align_corners=False), name="one_row"),
            Sample((_n(rng, 2, 3, 4),), dict(size=(2, 1, 2, 3, 4), align_corners=False), name="3d"),
            Sample((_n(rng, 1, 3, 4),), dict(size=(1, 2, 3, 2, 4), align_corners=True), name="3d_ac")]


add_row("affine_grid", lambda t, **kw: F.affine_grid(t, **kw), _affine_grid_samples,
        torch_fn=lambda t, **kw: TF.affine_grid(t, **kw))

# (PyTorch's bicubic backward copies when both sizes stay even if a scale factor says otherwise, unlike
# its forward; no sample here keeps both sizes with a scale factor.)
_RESIZE_MODES = [
    ("bicubic", (2, 2, 4, 5), dict(size=(7, 9), mode="bicubic")),
    ("bicubic_ac", (1, 2, 4, 5), dict(scale_factor=1.5, mode="bicubic", align_corners=True)),
    ("bicubic_down", (1, 2, 9, 7), dict(size=(4, 3), mode="bicubic", align_corners=False)),
    ("bicubic_scale_frac", (1, 1, 5, 6), dict(scale_factor=(1.7, 2.3), mode="bicubic")),
    ("bicubic_recompute", (1, 2, 5, 6), dict(scale_factor=(1.7, 0.6), mode="bicubic", recompute_scale_factor=True)),
    ("bicubic_tiny", (1, 2, 1, 2), dict(size=(3, 5), mode="bicubic")),
    ("area_down", (2, 2, 7, 9), dict(size=(3, 4), mode="area")),
    ("area_tiles", (1, 2, 8, 6), dict(scale_factor=0.5, mode="area")),
    ("area_up", (1, 2, 3, 4), dict(scale_factor=(1.7, 2.0), mode="area")),
    ("area_1d", (2, 3, 11), dict(size=4, mode="area")),
    ("nearest_exact", (2, 2, 4, 5), dict(size=(7, 9), mode="nearest-exact")),
    ("nearest_exact_down", (1, 2, 9, 7), dict(scale_factor=(0.45, 0.7), mode="nearest-exact")),
    ("nearest_exact_1d", (2, 3, 5), dict(scale_factor=2.3, mode="nearest-exact")),
    ("bilinear_keep_w", (1, 2, 4, 7), dict(scale_factor=(2.0, 1.1), mode="bilinear")),
    ("nearest_keep_w", (1, 2, 4, 7), dict(scale_factor=(1.5, 1.1), mode="nearest")),
]
fn, tfn = _same(F.interpolate, TF.interpolate)
add_row("interpolate_modes", fn, _kw_samples(_RESIZE_MODES), torch_fn=tfn)

"""GPU tests: devices, mixing errors, checkpoints across devices, label checks, every CuPy kernel, training.

All tests here are marked ``gpu`` and skip cleanly without CuPy and a CUDA GPU
(``python -m pytest -m gpu tests/`` runs them together with the per-op CPU/GPU
parity test of tests/test_ops.py). Kernel tests compare each wrapper in
ember/ops/cuda_kernels.py with the plain NumPy its docstring names, on the CPU.
"""
import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember import backend
from ember.backend import asnumpy, cupy_available
from ember.errors import DeviceError
from ember.models import get_model
from ember.ops import cuda_kernels as K
from ember.ops import cuda_norm as CN
from ember.ops import im2col as I
from tests.gpu_compare import on

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")]


def _dev(a):
    """A NumPy array on the GPU."""
    return backend._cupy.asarray(a)


def _host(a):
    return asnumpy(a)


RNG = np.random.default_rng(0)


# ---- devices -------------------------------------------------------------------------------------
@pytest.mark.device
def test_device_names_moves_and_factories():
    assert ember.device("cuda") == "cuda:0" and str(ember.device("cuda:0")) == "cuda:0"
    x = ember.randn(3, 4)
    g = x.to("cuda")
    assert g.device == "cuda:0" and g.device.type == "cuda"
    assert x.cuda().device == "cuda:0" and g.cpu().device == "cpu"
    assert isinstance(g.cpu().data, np.ndarray)
    np.testing.assert_array_equal(g.cpu().data, x.data)
    assert g.to("cuda") is g or g.to("cuda").data is g.data  # no copy when already there
    for t in (ember.zeros(2, 3, device="cuda"), ember.ones(2, device="cuda"), ember.randn(4, device="cuda"),
              ember.arange(5, device="cuda"), ember.tensor([1.0, 2.0], device="cuda")):
        assert t.device == "cuda:0", t
    assert "cuda:0" in repr(g)


@pytest.mark.device
def test_cuda_module_helpers():
    assert ember.cuda.is_available() and ember.cuda.device_count() >= 1
    assert isinstance(ember.cuda.get_device_name(0), str)
    before = ember.cuda.memory_allocated()
    big = ember.zeros(1024, 1024, device="cuda")
    ember.cuda.synchronize()
    assert ember.cuda.memory_allocated() >= before + 4 * 1024 * 1024
    stats = ember.cuda.memory_stats()
    assert stats["reserved_bytes"] >= stats["allocated_bytes"] > 0
    del big
    F.conv2d(ember.zeros(2, 3, 8, 8, device="cuda"), ember.zeros(4, 3, 3, 3, device="cuda"))  # fills a scratch buffer
    from ember.ops import cuda_conv

    assert cuda_conv._SCRATCH
    ember.cuda.empty_cache()
    assert ember.cuda.memory_reserved() <= stats["reserved_bytes"] and not cuda_conv._SCRATCH


@pytest.mark.device
def test_module_to_moves_parameters_and_buffers():
    m = get_model("resnet20", num_classes=10)
    m.to("cuda")
    for name, t in list(m.state_dict().items()):
        assert t.device == "cuda:0", name
    y = m(ember.randn(2, 3, 32, 32, device="cuda"))
    assert y.device == "cuda:0" and y.shape == (2, 10)
    m.to("cpu")
    assert all(t.device == "cpu" for t in m.state_dict().values())


@pytest.mark.parametrize("call", [
    lambda a, b: a + b,
    lambda a, b: a @ b,
    lambda a, b: ember.cat([a, b]),
    lambda a, b: F.conv2d(a.reshape(1, 1, 4, 4), b.reshape(1, 1, 4, 4)),
])
@pytest.mark.device
def test_mixing_devices_names_both(call):
    a, b = ember.randn(4, 4), ember.randn(4, 4).to("cuda")
    with pytest.raises(DeviceError) as e:
        call(a, b)
    assert "cpu" in str(e.value) and "cuda:0" in str(e.value)


@pytest.mark.device
def test_mixing_devices_in_loss_names_both():
    x = ember.randn(4, 3).to("cuda")
    with pytest.raises(DeviceError, match="cross_entropy.*(cpu.*cuda:0|cuda:0.*cpu)"):
        F.cross_entropy(x, ember.tensor([0, 1, 2, 0]))


@pytest.mark.device
def test_checkpoint_gpu_to_cpu_and_back(tmp_path):
    ember.manual_seed(0)
    m = get_model("lenet5", num_classes=10).to("cuda")
    path = tmp_path / "m.safetensors"
    ember.save(m.state_dict(), path)
    sd = ember.load(path)
    assert all(t.device == "cpu" for t in sd.values())
    cpu = get_model("lenet5", num_classes=10)
    cpu.load_state_dict(sd)
    x = ember.randn(2, 1, 28, 28)
    m.eval()
    cpu.eval()
    np.testing.assert_allclose(cpu(x).data, m(x.to("cuda")).cpu().data, rtol=1e-4, atol=1e-5)
    back = get_model("lenet5", num_classes=10).to("cuda")
    back.load_state_dict(ember.load(path))
    assert all(t.device == "cuda:0" for t in back.state_dict().values())
    np.testing.assert_array_equal(back.state_dict()["features.0.weight"].cpu().data,
                                  m.state_dict()["features.0.weight"].cpu().data)


# ---- indices and labels are validated on the GPU too (CuPy would wrap them silently) ------------------
def test_labels_out_of_range_raise_on_gpu():
    x = ember.randn(4, 10, device="cuda")
    for bad in ([0, 1, 10, 2], [0, -3, 1, 2]):
        t = ember.tensor(bad, device="cuda")
        with pytest.raises(IndexError, match="out of range for 10 classes"):
            F.cross_entropy(x, t)
        with pytest.raises(IndexError, match="out of range"):
            F.nll_loss(F.log_softmax(x, 1), t)
    # ignore_index is allowed
    F.cross_entropy(x, ember.tensor([0, -100, 1, 2], device="cuda"))


def test_fancy_index_out_of_range_raises_on_gpu():
    x = ember.randn(5, 3, device="cuda")
    with pytest.raises(IndexError, match="out of bounds"):
        x[ember.tensor([0, 5], device="cuda")]
    with pytest.raises(IndexError, match="out of bounds"):
        x[ember.tensor([-6], device="cuda")]
    with pytest.raises(IndexError):
        F.max_unpool2d(ember.randn(1, 1, 2, 2, device="cuda"), ember.tensor([[[[0, 1], [2, 99]]]], device="cuda"), 2)


# ---- kernels against their NumPy reference --------------------------------------------------------
POOLS = [  # (shape, kernel, stride, padding, dilation)
    ((2, 3, 8, 8), (2, 2), (2, 2), (0, 0), (1, 1)),
    ((2, 3, 9, 7), (3, 3), (2, 2), (1, 1), (1, 1)),  # overlapping windows, padding
    ((1, 2, 10, 11), (3, 2), (1, 2), (1, 0), (2, 1)),  # dilation, stride < extent
    ((2, 1, 5, 5), (5, 5), (5, 5), (0, 0), (1, 1)),  # global
]


def _maxpool_reference(x, k, s, p, d):
    """Windows by loops over kernel offsets; first maximum in row-major order."""
    N, C, H, W = x.shape
    xpad = np.full((N, C, H + 2 * p[0] + k[0] * d[0], W + 2 * p[1] + k[1] * d[1]), -np.inf)
    xpad[:, :, p[0]:p[0] + H, p[1]:p[1] + W] = x
    OH = (H + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    OW = (W + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    rows = [slice(i * d[0], i * d[0] + s[0] * (OH - 1) + 1, s[0]) for i in range(k[0])]
    cols = [slice(j * d[1], j * d[1] + s[1] * (OW - 1) + 1, s[1]) for j in range(k[1])]
    vals = np.stack([xpad[:, :, r, c] for r in rows for c in cols], axis=-1)
    o = vals.argmax(-1)
    oh = np.arange(OH)[:, None] * s[0] - p[0]
    ow = np.arange(OW)[None, :] * s[1] - p[1]
    arg = (oh + (o // k[1]) * d[0]) * W + (ow + (o % k[1]) * d[1])
    return vals.max(-1), arg, OH, OW


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,k,s,p,d", POOLS)
def test_maxpool_kernels_match_numpy(shape, k, s, p, d, dtype):
    x = RNG.standard_normal(shape).astype(dtype)
    x[..., 0, :2] = 1.5  # ties: the first maximum must win
    y_ref, arg_ref, OH, OW = _maxpool_reference(x, k, s, p, d)
    y, arg = K.maxpool2d_forward(_dev(x), k, s, p, d, OH, OW)
    np.testing.assert_array_equal(_host(y), y_ref.astype(dtype))
    np.testing.assert_array_equal(_host(arg), arg_ref)
    gy = RNG.standard_normal(y_ref.shape).astype(dtype)
    gx_ref = np.zeros(shape, dtype).reshape(shape[0] * shape[1], -1)
    np.add.at(gx_ref, (np.arange(gx_ref.shape[0])[:, None], arg_ref.reshape(gx_ref.shape[0], -1)),
              gy.reshape(gx_ref.shape[0], -1))
    gx = K.maxpool2d_backward(_dev(gy), arg, shape)
    np.testing.assert_allclose(_host(gx), gx_ref.reshape(shape), rtol=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("H,W,k,s,d,pad", [
    (6, 7, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    (9, 8, (3, 2), (2, 3), (1, 1), (0, 1, 2, 0)),
    (10, 10, (3, 3), (1, 2), (2, 1), (2, 2, 1, 1)),
    (4, 4, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),
])
def test_col2im_kernel_matches_numpy(H, W, k, s, d, pad, dtype):
    g = I.make_geometry(H, W, k, s, d, pad)
    N, C = 2, 3
    col = RNG.standard_normal((N, C * k[0] * k[1], g.OH * g.OW)).astype(dtype)
    shape = (N, C, H + pad[0] + pad[1], W + pad[2] + pad[3])
    start = RNG.standard_normal(shape).astype(dtype)  # col2im adds into what is there
    want = I.col2im(col, g, start.copy())
    got = K.col2im(_dev(col), g, _dev(start))
    np.testing.assert_allclose(_host(got), want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


def _row2im_reference(rows, g, out, G):
    """Channels-last adjoint of window copying, by loops over kernel offsets."""
    N, C = out.shape[0], out.shape[3]
    rows7 = rows.reshape(N, g.OH, g.OW, G, g.KH, g.KW, C // G)
    for kh in range(g.KH):
        for kw in range(g.KW):
            h, w = kh * g.dh, kw * g.dw
            view = out[:, h:h + g.sh * (g.OH - 1) + 1:g.sh, w:w + g.sw * (g.OW - 1) + 1:g.sw]
            view += rows7[:, :, :, :, kh, kw].reshape(view.shape)
    return out


@pytest.mark.parametrize("H,W,k,s,d,pad,G", [
    (6, 7, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1),
    (9, 8, (3, 2), (2, 3), (1, 1), (0, 1, 2, 0), 2),
    (10, 10, (3, 3), (2, 2), (2, 1), (1, 1, 1, 1), 3),
])
def test_row2im_kernel_matches_numpy(H, W, k, s, d, pad, G):
    g = I.make_geometry(H, W, k, s, d, pad)
    N, C = 2, 6
    rows = RNG.standard_normal((N * g.OH * g.OW, G, k[0] * k[1] * C // G))
    start = RNG.standard_normal((N, H + pad[0] + pad[1], W + pad[2] + pad[3], C))
    want = _row2im_reference(rows, g, start.copy(), G)
    got = K.row2im(_dev(rows), g, _dev(start))
    np.testing.assert_allclose(_host(got), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("H,W,k,s,d,pad,G", [
    (6, 7, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1),
    (9, 8, (3, 2), (2, 3), (1, 1), (0, 1, 2, 0), 2),
    (10, 10, (3, 3), (2, 2), (2, 1), (1, 1, 1, 1), 3),
])
def test_im2row_kernel_matches_numpy(H, W, k, s, d, pad, G, channels_last):
    from ember.ops.im2row import im2row, pad_nhwc_into

    g = I.make_geometry(H, W, k, s, d, pad)
    x = RNG.standard_normal((2, 6, H, W))
    xpad = pad_nhwc_into(x, pad, np.empty((2, H + pad[0] + pad[1], W + pad[2] + pad[3], 6)))
    want = im2row(xpad, g, G)
    xd = _channels_last_dev(x) if channels_last else _dev(x)
    np.testing.assert_array_equal(_host(K.im2row(xd, g, G, pad)), want)
    np.testing.assert_array_equal(_host(K.im2row(xd[1:], g, G, pad)), want[len(want) // 2:])  # a run of images


@pytest.mark.parametrize("axes,view", [((0, 2), (4, 3, 10)), ((1,), (6, 7)), ((2, 3), (2, 2, 3, 5))])
def test_norm_kernels_match_numpy(axes, view):
    x = RNG.standard_normal(view) * 3 + 1
    g = RNG.standard_normal(view)
    pshape = [1 if i in axes else n for i, n in enumerate(view)]
    w, b = RNG.standard_normal(pshape), RNG.standard_normal(pshape)
    m = int(np.prod([view[a] for a in axes]))
    np.testing.assert_allclose(_host(CN.sum_product(axes, _dev(g), _dev(x))), (g * x).sum(axes, keepdims=True))
    np.testing.assert_allclose(_host(CN.sum_product(axes, _dev(g))), g.sum(axes, keepdims=True))
    mean, var = CN.mean_var(_dev(x), axes, m)
    np.testing.assert_allclose(_host(mean), x.mean(axes, keepdims=True))
    np.testing.assert_allclose(_host(var), x.var(axes, keepdims=True))
    invstd, xhat, y = CN.normalize_forward(_dev(x), mean, var, 1e-5, _dev(w), _dev(b))
    inv_ref = 1 / np.sqrt(x.var(axes, keepdims=True) + 1e-5)
    xhat_ref = (x - x.mean(axes, keepdims=True)) * inv_ref
    np.testing.assert_allclose(_host(invstd), inv_ref)
    np.testing.assert_allclose(_host(xhat), xhat_ref)
    np.testing.assert_allclose(_host(y), xhat_ref * w + b)
    _, _, y0 = CN.normalize_forward(_dev(x), mean, var, 1e-5)  # no affine parameters
    np.testing.assert_allclose(_host(y0), xhat_ref)
    s1, s2 = g.sum(axes, keepdims=True), (g * xhat_ref).sum(axes, keepdims=True)
    out = _dev(np.empty(view))
    CN.normalize_backward(_dev(g), _dev(xhat_ref), _dev(s1), _dev(s2), _dev(inv_ref * w), m, out)
    np.testing.assert_allclose(_host(out), (g - s1 / m - xhat_ref * s2 / m) * inv_ref * w, rtol=1e-10, atol=1e-12)


def _channels_last_dev(a):
    """A (N, C, H, W) NumPy array on the GPU, laid out (N, H, W, C) in memory."""
    return _dev(np.ascontiguousarray(a.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("x_cl,g_cl", [(False, False), (True, True), (True, False), (False, True)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_channel_sums_match_numpy_in_both_memory_orders(x_cl, g_cl, dtype):
    # regression: CuPy's own reduction to a few channels ran ~0.45 ms per batch-norm sum on an H200
    x = (RNG.standard_normal((8, 5, 9, 7)) * 3 + 1).astype(dtype)
    g = RNG.standard_normal(x.shape).astype(dtype)
    xd = _channels_last_dev(x) if x_cl else _dev(x)
    gd = _channels_last_dev(g) if g_cl else _dev(g)
    axes, tol = (0, 2, 3), (1e-12 if dtype == np.float64 else 2e-5)
    assert CN._channel_layout(xd, axes)[3] == (1 if x_cl else 63)
    mean, var = CN.mean_var(xd, axes, 8 * 9 * 7)
    np.testing.assert_allclose(_host(mean), x.mean(axes, keepdims=True), rtol=tol, atol=tol)
    np.testing.assert_allclose(_host(var), x.var(axes, keepdims=True), rtol=tol, atol=tol)
    s1, s2 = CN.sums_for_backward(axes, gd, xd)
    np.testing.assert_allclose(_host(s1), g.sum(axes, keepdims=True), rtol=tol, atol=10 * tol)
    np.testing.assert_allclose(_host(s2), (g * x).sum(axes, keepdims=True), rtol=tol, atol=10 * tol)
    np.testing.assert_allclose(_host(CN.sum_product(axes, gd, xd)), (g * x).sum(axes, keepdims=True),
                               rtol=tol, atol=10 * tol)
    assert CN._channel_layout(xd[:, :, 1:], axes) is None  # neither order: CuPy's reductions
    np.testing.assert_allclose(_host(CN.mean_var(xd[:, :, 1:], axes, 8 * 8 * 7)[1]),
                               x[:, :, 1:].var(axes, keepdims=True), rtol=tol, atol=tol)


def test_running_update_kernel_matches_numpy():
    buf, value = RNG.standard_normal(5), RNG.standard_normal((1, 5, 1))
    got = _dev(buf.copy())  # a copy: under tests/cuda_emulator.py _dev aliases
    CN.running_update(got, _dev(value), 0.1)
    np.testing.assert_allclose(_host(got), 0.9 * buf + 0.1 * value.reshape(5), rtol=1e-12)


def test_relu_kernel_matches_numpy():
    x = np.array([-2.0, -0.0, 0.0, 1e-30, 3.0, np.nan, -np.inf, np.inf], dtype=np.float32)
    y = K.relu_forward(_dev(x))
    np.testing.assert_array_equal(_host(y), np.maximum(x, 0))
    g = np.arange(1, 9, dtype=np.float32)
    np.testing.assert_array_equal(_host(K.relu_backward(_dev(g), y)), g * (x > 0))


def test_add_kernel_matches_numpy_in_either_memory_order():
    """cuda_kernels.add_same_order: one launch for same-shaped arrays in one memory order (the
    sum keeps it); None for arrays that lie differently (then CuPy's add)."""
    a = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    b = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    for last in (False, True):
        da, db = (_dev(np.ascontiguousarray(v.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2) if last else _dev(v)
                  for v in (a, b))
        y = K.add_same_order(da, db)
        np.testing.assert_array_equal(_host(y), a + b)
        assert backend.is_channels_last(y) == last
    mixed = _dev(np.ascontiguousarray(b.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    assert K.add_same_order(_dev(a), mixed) is None
    assert K.add_same_order(_dev(a), _dev(b.astype(np.float64))) is None


# ---- ops through the GPU dispatch, float32 -------------------------------------------------------
def test_max_pool_and_batch_norm_float32_on_gpu_match_cpu():
    x = RNG.standard_normal((4, 3, 9, 9)).astype(np.float32)
    outs = {}
    for device in ("cpu", "cuda"):
        with on(device):
            t = ember.tensor(x, device=device, requires_grad=True)
            w = ember.tensor(np.linspace(0.5, 1.5, 3, dtype=np.float32), device=device, requires_grad=True)
            b = ember.tensor(np.linspace(-1, 1, 3, dtype=np.float32), device=device, requires_grad=True)
            rm, rv = ember.zeros(3, device=device), ember.ones(3, device=device)
            y, idx = F.max_pool2d(F.batch_norm(t, rm, rv, w, b, training=True), 3, 2, 1, return_indices=True)
            (F.relu(y) * ember.tensor(np.cos(np.arange(y.numel())).reshape(y.shape).astype(np.float32),
                                      device=device)).sum().backward()
            outs[device] = [asnumpy(a) for a in (y.data, idx.data, t.grad.data, w.grad.data, b.grad.data, rm.data,
                                                 rv.data)]
    for name, a, b in zip(["y", "indices", "gx", "gw", "gb", "running_mean", "running_var"], outs["cpu"], outs["cuda"]):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.device
def test_dropout_on_gpu_keeps_the_right_fraction_and_gradient():
    x = ember.ones(200, 500, device="cuda", requires_grad=True)
    y = F.dropout(x, 0.3, generator=ember.Generator(7))
    assert y.device == "cuda:0"
    kept = _host(y.data) != 0
    assert abs(kept.mean() - 0.7) < 0.01  # 100000 draws: the standard deviation is 0.0015
    np.testing.assert_allclose(_host(y.data)[kept], 1 / 0.7, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(_host(x.grad.data), kept / 0.7, rtol=1e-6)
    again = F.dropout(x, 0.3, generator=ember.Generator(7))
    np.testing.assert_array_equal(_host(again.data), _host(y.data))  # same seed, same mask


# ---- training steps match the CPU ----------------------------------------------------------------
@pytest.mark.parametrize("name,shape", [("lenet5", (16, 1, 28, 28)), ("resnet20", (8, 3, 32, 32))])
def test_training_steps_match_cpu(name, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, 10, shape[0])
    runs = {}
    for device in ("cpu", "cuda"):
        ember.manual_seed(0)
        with on(device):
            m = get_model(name, num_classes=10, in_channels=shape[1], input_size=shape[2]).to(device)
            opt = ember.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
            xs, ys = ember.tensor(x, device=device), ember.tensor(y, device=device)
            losses = []
            for _ in range(3):
                loss = F.cross_entropy(m(xs), ys)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.item()))
            runs[device] = losses, {k: asnumpy(v.data) for k, v in m.state_dict().items()}
    np.testing.assert_allclose(runs["cuda"][0], runs["cpu"][0], rtol=1e-3)
    for k, v in runs["cpu"][1].items():
        np.testing.assert_allclose(runs["cuda"][1][k], v, rtol=1e-2, atol=1e-3, err_msg=k)


@pytest.mark.device
def test_cli_trains_on_cuda(tmp_path):
    from ember.cli import main

    args = ["train", "--data", "synthetic-shapes", "--batch-size", "32", "--val-split", "100", "--limit-train", "96",
            "--no-progress", "--eval-batch-size", "64", "--model", "lenet5", "--epochs", "1",
            "--device", "cuda", "--out", str(tmp_path / "run")]
    assert main(args) == 0
    assert (tmp_path / "run" / "last.safetensors").exists()

"""GPU tests of the GPU routes: conv2d's (ember/ops/cuda_conv.py, ember/ops/cuda_gemm.py), the
optimizers' multi-tensor updates (ember/optim/cuda_step.py) and cross entropy's (batch norm's:
tests/test_gpu_norm.py).

Each kernel wrapper against the NumPy its docstring names, and each route on the GPU against
the CPU: conv2d in every geometry it handles (groups, strides, dilation, asymmetric padding,
bias, both memory orders of the input and of the incoming gradient), optimizers over parameters
of two dtypes whose gradients come and go. Marked ``gpu``: they skip without CuPy and a CUDA GPU
(tests/cuda_emulator.py runs them on the CPU).
"""
import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember import backend
from ember.backend import asnumpy, cupy_available
from ember.ops import cuda_conv as CC
from ember.ops import cuda_gemm
from ember.ops import im2col as I
from tests.gpu_compare import channels_last_dev as _channels_last_dev
from tests.gpu_compare import dev as _dev
from tests.gpu_compare import on

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")]

RNG = np.random.default_rng(1)


# ---- gemm ------------------------------------------------------------------------------------------
# (base shapes, views of them): a @ b -> out, each view applied alike to host and device arrays
GEMMS = [
    (((7, 5), (5, 3), (7, 3)), lambda a, b, o: (a, b, o)),                       # plain
    (((5, 7), (3, 5), (7, 3)), lambda a, b, o: (a.T, b.T, o)),                   # both stored transposed
    (((7, 4, 5), (5, 3), (7, 3)), lambda a, b, o: (a[:, 1], b, o)),              # rows spaced 4*5 apart
    (((11, 2, 6), (2, 4, 6), (11, 2, 4)),                                        # conv forward
     lambda a, b, o: (a.transpose(1, 0, 2), b.transpose(0, 2, 1), o.transpose(1, 0, 2))),
    (((11, 2, 4), (11, 2, 6), (2, 4, 6)),                                        # conv weight gradient
     lambda a, b, o: (a.transpose(1, 2, 0), b.transpose(1, 0, 2), o)),
    (((1, 7, 5), (3, 5, 2), (3, 7, 2)), lambda a, b, o: (a, b, o)),              # a broadcast batch
    (((1, 5), (5, 1), (1, 1)), lambda a, b, o: (a, b, o)),                       # a dot product
]


@pytest.mark.parametrize("beta", [0.0, 1.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes,views", GEMMS)
def test_gemm_matches_numpy_on_strided_views(shapes, views, dtype, beta, monkeypatch):
    def no_fallback(*args):
        raise AssertionError("gemm fell back to cupy.matmul on views cuBLAS can read")

    monkeypatch.setattr(cuda_gemm, "_fallback", no_fallback)
    host = [RNG.standard_normal(s).astype(dtype) for s in shapes]
    a, b, out = views(*host)
    want = a @ b + beta * out
    dev = [_dev(h) for h in host]
    cuda_gemm.gemm(*views(*dev), beta=beta)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(asnumpy(views(*dev)[2]), want, rtol=tol, atol=tol)


def test_gemm_reads_transposed_and_sliced_views_without_copies(monkeypatch):
    def no_fallback(*args):
        raise AssertionError("fell back")

    monkeypatch.setattr(cuda_gemm, "_fallback", no_fallback)
    a, b = RNG.standard_normal((9, 4, 6)), RNG.standard_normal((3, 6))
    da, db = _dev(a), _dev(b)
    out = _dev(np.zeros((3, 9)))
    cuda_gemm.gemm(db, da[:, 2].T, out)  # (3, 6) @ (6, 9): a column-strided, transposed operand
    np.testing.assert_allclose(asnumpy(out), b @ a[:, 2].T, rtol=1e-12)
    y = _dev(np.zeros((9, 2, 3)))
    cuda_gemm.gemm(da[:, 2], db.T, y[:, 1])  # out rows spaced 6 apart
    np.testing.assert_allclose(asnumpy(y[:, 1]), a[:, 2] @ b.T, rtol=1e-12)
    assert not asnumpy(y[:, 0]).any()


def test_gemm_falls_back_and_checks_shapes():
    a, b = RNG.standard_normal((4, 5)), RNG.standard_normal((5, 3))
    out = _dev(np.zeros((3, 4))).T  # out stored transposed: cuBLAS cannot write it; matmul can
    cuda_gemm.gemm(_dev(a), _dev(b), out)
    np.testing.assert_allclose(asnumpy(out), a @ b, rtol=1e-12)
    with pytest.raises(ValueError, match="do not chain"):
        cuda_gemm.gemm(_dev(a), _dev(a), _dev(np.zeros((4, 5))))


def _mat_view(host, m, g):
    """Group g's matrix of Mat m, as a NumPy view of the host array it names (``Mat``'s definition)."""
    flat = host.reshape(-1)[m.offset + g * m.step:]
    item = host.itemsize
    return np.lib.stride_tricks.as_strided(flat, (m.rows, m.cols), (item, m.ld * item) if m.t else (m.ld * item, item))


@pytest.mark.parametrize("beta", [0.0, 1.0])
@pytest.mark.parametrize("groups", [1, 3])
def test_gemm_mats_matches_numpy_on_the_matrices_it_names(groups, beta):
    """The three products of a grouped convolution (cuda_conv), each matrix named inside its array."""
    from ember.ops.cuda_gemm import Mat

    P, G, Kg, OCg = 10, groups, 4, 5
    rows, w = RNG.standard_normal((P, G, Kg)), RNG.standard_normal((G, OCg, Kg))
    y = RNG.standard_normal((2, P, G * OCg))  # its second image: an offset
    cases = [  # a, b, out
        (Mat(rows, P, Kg, G * Kg, Kg), Mat(w, Kg, OCg, Kg, OCg * Kg, t=True), Mat(y, P, OCg, G * OCg, OCg, offset=P * G * OCg)),
        (Mat(y, OCg, P, G * OCg, OCg, t=True), Mat(rows, P, Kg, G * Kg, Kg), Mat(w, OCg, Kg, Kg, OCg * Kg)),
        (Mat(y, P, OCg, G * OCg, OCg), Mat(w, OCg, Kg, Kg, OCg * Kg), Mat(rows, P, Kg, G * Kg, Kg)),
    ]
    for a, b, out in cases:
        host = {id(h): h.copy() for h in (rows, w, y)}
        want = host[id(out.array)]
        for g in range(G):
            ref = _mat_view(host[id(a.array)], a, g) @ _mat_view(host[id(b.array)], b, g)
            _mat_view(want, out, g)[...] = ref + beta * _mat_view(want, out, g)
        dev = {id(h): _dev(h.copy()) for h in (rows, w, y)}
        on = [m._replace(array=dev[id(m.array)]) for m in (a, b, out)]
        cuda_gemm.gemm_mats(*on, groups=G, beta=beta)
        np.testing.assert_allclose(asnumpy(on[2].array), want, rtol=1e-12, atol=1e-12)


def test_gemm_mats_refuses_matrices_outside_their_array():
    from ember.ops.cuda_gemm import Mat

    a, b, out = (_dev(np.zeros(s)) for s in ((4, 3), (3, 5), (4, 5)))
    with pytest.raises(ValueError, match="out's matrices .* do not fit in its 20 elements"):
        cuda_gemm.gemm_mats(Mat(a, 4, 3, 3), Mat(b, 3, 5, 5), Mat(out, 4, 5, 5, offset=1))
    with pytest.raises(ValueError, match="b's matrices"):
        cuda_gemm.gemm_mats(Mat(a, 2, 3, 3), Mat(b, 3, 5, 5, step=5), Mat(out, 2, 5, 5, step=10), groups=2)
    with pytest.raises(ValueError, match="do not chain"):
        cuda_gemm.gemm_mats(Mat(a, 4, 3, 3), Mat(out, 4, 5, 5), Mat(out, 4, 5, 5))
    with pytest.raises(ValueError, match="leading dimension 2"):
        cuda_gemm.gemm_mats(Mat(a, 4, 3, 2), Mat(b, 3, 5, 5), Mat(out, 4, 5, 5))
    with pytest.raises(TypeError, match="b is float32"):
        cuda_gemm.gemm_mats(Mat(a, 4, 3, 3), Mat(b.astype(np.float32), 3, 5, 5), Mat(out, 4, 5, 5))


# ---- lowering kernels ------------------------------------------------------------------------------
GEOMETRIES = [  # H, W, kernel, stride, dilation, (t, b, l, r) padding, groups
    (6, 7, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1),
    (9, 8, (3, 2), (2, 3), (1, 1), (0, 1, 2, 0), 2),
    (10, 10, (3, 3), (2, 2), (2, 1), (1, 1, 1, 1), 3),
    (5, 5, (1, 1), (2, 2), (1, 1), (0, 0, 0, 0), 1),
]


def _rows_reference(x, g, pads, G):
    """Rows (N*OH*OW, G, C/G*KH*KW) in (c, kh, kw) order, from F.unfold's columns."""
    N, C = x.shape[:2]
    cols = I.im2col(I.zero_pad(x, pads), g)  # (N, C*KH*KW, OH*OW), K in (c, kh, kw) order
    return cols.transpose(0, 2, 1).reshape(N * g.OH * g.OW, G, -1)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("H,W,k,s,d,pads,G", GEOMETRIES)
def test_conv_rows_kernel_matches_numpy(H, W, k, s, d, pads, G, channels_last):
    g = I.make_geometry(H, W, k, s, d, pads)
    x = RNG.standard_normal((3, 6, H, W))
    want = _rows_reference(x, g, pads, G)
    xd = _channels_last_dev(x) if channels_last else _dev(x)
    np.testing.assert_array_equal(asnumpy(CC.im2row(xd, g, G, pads)), want.reshape(-1))  # returned flat
    np.testing.assert_array_equal(asnumpy(CC.im2row(xd[1:], g, G, pads)), want[len(want) // 3:].reshape(-1))
    wide = np.concatenate([x, x[..., ::-1]], axis=3)
    g2 = I.make_geometry(H, W, k, s, d, pads)
    strided = _dev(wide)[:, :, :, ::2]  # (3, 6, H, W) in neither memory order: copied first
    np.testing.assert_array_equal(asnumpy(CC.im2row(strided, g2, G, pads)),
                                  _rows_reference(wide[:, :, :, ::2], g2, pads, G).reshape(-1))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("H,W,k,s,d,pads,G", GEOMETRIES)
def test_conv_row2im_kernel_is_the_adjoint_of_im2row(H, W, k, s, d, pads, G, channels_last):
    g = I.make_geometry(H, W, k, s, d, pads)
    N, C = 2, 6
    rows = RNG.standard_normal((N * g.OH * g.OW, G, C // G * k[0] * k[1]))
    # the adjoint by its definition: <im2row(x), rows> = <x, row2im(rows)> for every x, so
    # row2im(rows) is the gradient of sum(im2row(x) * rows), by columns and col2im
    cols = rows.reshape(N, g.OH * g.OW, C * k[0] * k[1]).transpose(0, 2, 1)
    padded = np.zeros((N, C, H + pads[0] + pads[1], W + pads[2] + pads[3]))
    full = I.col2im(np.ascontiguousarray(cols), g, padded)
    want = full[:, :, pads[0]:pads[0] + H, pads[2]:pads[2] + W]
    gx = (_channels_last_dev(np.zeros((N, C, H, W))) if channels_last else _dev(np.zeros((N, C, H, W))))
    CC.row2im(_dev(rows), g, G, pads, gx)
    assert backend.is_channels_last(gx) == channels_last or C == 1
    np.testing.assert_allclose(asnumpy(gx), want, rtol=1e-12, atol=1e-12)


# ---- conv2d on the GPU route vs the CPU ------------------------------------------------------------
CONVS = [  # input shape, weight shape, stride, padding, dilation, groups, bias
    ((4, 8, 9, 9), (16, 8, 3, 3), 1, 1, 1, 1, False),
    ((3, 6, 10, 11), (9, 2, 3, 2), (2, 1), (1, 0), 1, 3, True),
    ((2, 4, 12, 12), (4, 4, 3, 3), 2, 2, 2, 1, True),
    ((2, 8, 7, 7), (8, 1, 3, 3), 1, 1, 1, 8, False),  # depthwise
    ((5, 3, 8, 8), (6, 3, 1, 1), 2, 0, 1, 1, True),
]


@pytest.mark.parametrize("x_last,gy_last", [(False, False), (True, True), (True, False), (False, True)])
@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups,bias", CONVS)
def test_conv2d_gpu_route_matches_cpu(xs, ws, stride, padding, dilation, groups, bias, x_last, gy_last):
    x, w = RNG.standard_normal(xs), RNG.standard_normal(ws)
    b = RNG.standard_normal(ws[0]) if bias else None
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    with on("cpu"):
        cx, cw = ember.tensor(x, requires_grad=True), ember.tensor(w, requires_grad=True)
        cb = ember.tensor(b, requires_grad=True) if bias else None
        y = F.conv2d(cx, cw, cb, **kw)
        gy = RNG.standard_normal(y.shape)
        y.backward(gradient=ember.tensor(gy))

    gx_, gw_ = (_channels_last_dev(x) if x_last else _dev(x)), _dev(w)
    dx, dw = ember.Tensor(gx_, requires_grad=True), ember.Tensor(gw_, requires_grad=True)
    db = ember.Tensor(_dev(b), requires_grad=True) if bias else None
    dy = F.conv2d(dx, dw, db, **kw)
    assert backend.is_channels_last(dy.data) or dy.shape[1] == 1
    dy.backward(gradient=ember.Tensor(_channels_last_dev(gy) if gy_last else _dev(gy)))
    np.testing.assert_allclose(asnumpy(dy.data), y.data, rtol=1e-10, atol=1e-10)
    assert backend.is_channels_last(dx.grad.data) == x_last or xs[1] == 1
    for dev, cpu in ((dx, cx), (dw, cw)) + (((db, cb),) if bias else ()):
        np.testing.assert_allclose(asnumpy(dev.grad.data), cpu.grad.data, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("groups,x_last", [(1, False), (2, True)])
def test_conv2d_gpu_route_lowers_in_chunks(monkeypatch, groups, x_last):
    """A batch whose rows exceed the budget runs chunk by chunk, with the same results."""
    x = RNG.standard_normal((5, 4, 6, 6)).astype(np.float32)
    w = RNG.standard_normal((8, 4 // groups, 3, 3)).astype(np.float32)
    gy = RNG.standard_normal((5, 8, 6, 6)).astype(np.float32)
    results = []
    for budget in (CC._BUDGET, 2 * 36 * 36):  # the second: two images per chunk
        monkeypatch.setattr(CC, "_BUDGET", budget)
        dx = ember.Tensor(_channels_last_dev(x) if x_last else _dev(x), requires_grad=True)
        dw = ember.Tensor(_dev(w), requires_grad=True)
        y = F.conv2d(dx, dw, padding=1, groups=groups)
        y.backward(gradient=ember.Tensor(_dev(gy)))
        assert backend.is_channels_last(dx.grad.data) == x_last
        results.append([asnumpy(a) for a in (y.data, dx.grad.data, dw.grad.data)])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_conv2d_gpu_route_shares_one_scratch_buffer():
    """Every pass lowers into one buffer per thread, stream, device and dtype, grown to the
    largest rows asked for; results do not depend on what an earlier, larger pass left there."""
    CC.free_scratch()
    x, w = RNG.standard_normal((2, 3, 9, 9)), RNG.standard_normal((4, 3, 3, 3))
    big = ember.Tensor(_dev(RNG.standard_normal((3, 5, 12, 12))))
    F.conv2d(big, ember.Tensor(_dev(RNG.standard_normal((2, 5, 3, 3)))), padding=1)
    (buf,) = CC._SCRATCH.values()
    assert buf.size == 3 * 12 * 12 * 5 * 9
    dx, dw = ember.Tensor(_dev(x), requires_grad=True), ember.Tensor(_dev(w), requires_grad=True)
    y = F.conv2d(dx, dw, padding=1)
    y.sum().backward()
    assert list(CC._SCRATCH.values()) == [buf]  # reused, not reallocated
    with on("cpu"):
        cx, cw = ember.tensor(x, requires_grad=True), ember.tensor(w, requires_grad=True)
        F.conv2d(cx, cw, padding=1).sum().backward()
        cy = F.conv2d(cx, cw, padding=1)
    for dev, cpu in ((y, cy), (dx.grad, cx.grad), (dw.grad, cw.grad)):
        np.testing.assert_allclose(asnumpy(dev.data), cpu.data, rtol=1e-10, atol=1e-10)
    F.conv2d(ember.Tensor(_dev(x.astype(np.float32))), ember.Tensor(_dev(w.astype(np.float32))))
    assert len(CC._SCRATCH) == 2  # float32 gets its own
    CC.free_scratch()
    assert not CC._SCRATCH


def test_lowering_refuses_a_buffer_too_small():
    g = I.make_geometry(6, 6, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1))
    x = _dev(RNG.standard_normal((2, 3, 6, 6)))
    with pytest.raises(ValueError, match="at least 1944 elements"):
        CC.im2row(x, g, 1, (1, 1, 1, 1), _dev(np.zeros(100)))
    from ember.ops import cuda_kernels

    with pytest.raises(ValueError, match="out must be contiguous"):  # not a copy written in vain
        cuda_kernels.im2row(x, g, 1, (1, 1, 1, 1), out=_dev(np.zeros((1944, 2)))[:, 0])


# ---- multi-tensor optimizer updates ----------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda ps: ember.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-3),
    lambda ps: ember.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    lambda ps: ember.optim.Adam(ps, lr=0.01, weight_decay=0.1),
    lambda ps: ember.optim.RMSprop(ps, lr=0.01),
], ids=["momentum", "nesterov", "adam", "rmsprop"])
def test_multi_tensor_updates_with_two_dtypes_and_gradients_that_come_and_go(make):
    """Per-tensor state (a first momentum step, Adam's step counts) in one launch per dtype."""
    rng = np.random.default_rng(5)
    shapes = [((3, 4), np.float64), ((5,), np.float32), ((2, 2, 2), np.float64), ((7,), np.float32)]
    init = [rng.standard_normal(s).astype(dt) for s, dt in shapes]
    grads = [[rng.standard_normal(s).astype(dt) for s, dt in shapes] for _ in range(4)]
    have = [[True, True, False, True], [True, False, True, True], [True, True, True, False], [True] * 4]
    results = []
    for device in ("cpu", "cuda"):
        with on(device):
            params = [ember.tensor(a, device=device, requires_grad=True) for a in init]
            opt = make(params)
            for gs, hs in zip(grads, have):
                for p, g, h in zip(params, gs, hs):
                    p.grad = ember.tensor(g, device=device) if h else None
                opt.step()
            results.append([asnumpy(p.data) for p in params])
    for (a, b), (_, dt) in zip(zip(*results), shapes):
        tol = 1e-12 if dt == np.float64 else 1e-6
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol)


# ---- cross entropy ---------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted,eps,ignore", [(False, 0.0, -100), (True, 0.0, 2), (True, 0.2, -100),
                                                 (False, 0.1, 1)])
def test_cross_entropy_gpu_route_matches_cpu(weighted, eps, ignore, reduction, monkeypatch):
    from ember.ops import cuda_loss

    calls = []
    real = cuda_loss.forward
    monkeypatch.setattr(cuda_loss, "forward", lambda *a: calls.append(1) or real(*a))
    x = RNG.standard_normal((9, 5)) * 3
    x[0, 2] = 40.0  # a large logit: the softmax stays exact
    y = np.array([0, 1, 2, 3, 4, 2, 1, 0, 2])
    w = np.linspace(0.5, 1.5, 5)
    gy = RNG.standard_normal(9) if reduction == "none" else np.array(1.7)
    results = []
    for device in ("cpu", "cuda"):
        move = _dev if device == "cuda" else (lambda a: a)
        with on(device):
            xt = ember.Tensor(move(x), requires_grad=True)
            loss = F.cross_entropy(xt, ember.Tensor(move(y)), weight=ember.Tensor(move(w)) if weighted else None,
                                   ignore_index=ignore, label_smoothing=eps, reduction=reduction)
            loss.backward(gradient=ember.Tensor(move(gy)))
            results.append([asnumpy(loss.data), asnumpy(xt.grad.data)])
    assert calls, "the GPU route was not taken"
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


def test_cross_entropy_gpu_route_names_a_bad_label():
    x = ember.Tensor(_dev(RNG.standard_normal((4, 3)).astype(np.float32)), requires_grad=True)
    with pytest.raises(IndexError, match=r"target value 7 at index \(2,\) is out of range for 3 classes"):
        F.cross_entropy(x, ember.Tensor(_dev(np.array([0, 1, 7, -1]))))
    all_ignored = F.cross_entropy(x, ember.Tensor(_dev(np.array([-100] * 4))))  # 0 / 0, as in PyTorch
    assert np.isnan(float(asnumpy(all_ignored.data)))


# ---- every optimizer, GPU vs CPU (the fused multi-tensor kernels, and the generic xp code) ----------
def _run_optimizer(make, steps: int, device: str):
    """Parameters after ``steps`` updates with fixed gradients, as float64 NumPy arrays."""
    rng = np.random.default_rng(3)
    with on(device):
        params = [ember.tensor(rng.standard_normal(s), requires_grad=True) for s in ((5, 4), (7,))]
        grads = [[rng.standard_normal(p.shape) for p in params] for _ in range(steps)]
        params = [ember.tensor(p.data, device=device, requires_grad=True) for p in params]
        opt = make(params)
        for gs in grads:
            for p, g in zip(params, gs):
                p.grad = ember.tensor(g, device=device)
            opt.step()
        return [asnumpy(p.data) for p in params]


@pytest.mark.parametrize("make", [
    lambda ps: ember.optim.SGD(ps, lr=0.1),
    lambda ps: ember.optim.SGD(ps, lr=0.1, weight_decay=0.01, maximize=True),
    lambda ps: ember.optim.SGD(ps, lr=0.1, momentum=0.9),
    lambda ps: ember.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.3, weight_decay=1e-3),
    lambda ps: ember.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda ps: ember.optim.Adam(ps, lr=0.01),
    lambda ps: ember.optim.Adam(ps, lr=0.01, weight_decay=0.1, maximize=True),
    lambda ps: ember.optim.Adam(ps, lr=0.01, amsgrad=True),  # the generic path on the GPU
    lambda ps: ember.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
    lambda ps: ember.optim.RMSprop(ps, lr=0.01, weight_decay=0.01),
    lambda ps: ember.optim.RMSprop(ps, lr=0.01, momentum=0.9, centered=True),
    lambda ps: ember.optim.Adagrad(ps, lr=0.1, lr_decay=0.01, weight_decay=0.01),  # the generic path on the GPU
], ids=["sgd", "sgd-wd-max", "momentum", "momentum-damp", "nesterov", "adam", "adam-l2-max", "amsgrad", "adamw",
        "rmsprop", "rmsprop-centered", "adagrad"])
def test_fused_optimizer_steps_match_cpu(make):
    cpu = _run_optimizer(make, 4, "cpu")
    gpu = _run_optimizer(make, 4, "cuda")
    for a, b in zip(cpu, gpu):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [
    lambda ps: ember.optim.Adadelta(ps, lr=0.5, weight_decay=0.01, maximize=True),
    lambda ps: ember.optim.Adamax(ps, lr=0.01, weight_decay=0.01),
    lambda ps: ember.optim.NAdam(ps, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
    lambda ps: ember.optim.RAdam(ps, lr=0.01, weight_decay=0.1),  # 8 steps: rectified from step 6
], ids=["adadelta", "adamax", "nadam", "radam"])
def test_generic_optimizer_steps_match_cpu(make):
    cpu = _run_optimizer(make, 8, "cpu")
    gpu = _run_optimizer(make, 8, "cuda")
    for a, b in zip(cpu, gpu):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)

"""nn.Embedding / F.embedding, nn.Bilinear / F.bilinear and the alpha dropouts against PyTorch.

Embedding: forward and weight gradient (repeated indices, padding_idx, scale_grad_by_freq), the
in-place max_norm renormalization of the weight, from_pretrained, init and errors. Bilinear: the
forward and all four gradients. Alpha dropout: the self-normalizing statistics, the two output values
and the gradient against PyTorch's, eval identity and the channel-wise variant.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ember
import ember.nn.functional as F
from ember import nn
from ember.errors import DTypeError, GraphError, ShapeError


def _pair(tm, em, dtype):
    """Give ember module ``em`` torch module ``tm``'s parameters in ``dtype``."""
    tm.to(torch.float64 if dtype == np.float64 else torch.float32)
    em = em.double() if dtype == np.float64 else em
    em.load_state_dict({k: ember.Tensor(v.detach().numpy().copy()) for k, v in tm.state_dict().items()})
    return tm, em


def _tol(dtype):
    return dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)


# ---- embedding ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [
    {}, {"padding_idx": 3}, {"padding_idx": -1}, {"scale_grad_by_freq": True},
    {"scale_grad_by_freq": True, "padding_idx": 0},
])
def test_embedding_forward_and_weight_grad_match_torch(kw, dtype, rng):
    tm, em = _pair(torch.nn.Embedding(10, 6, **kw), nn.Embedding(10, 6, **kw), dtype)
    idx = rng.integers(0, 10, (4, 7))
    idx[0, :4] = 3  # a row picked five times (and the padding row in two of the cases)
    idx[1, -1] = 9
    g = rng.standard_normal((4, 7, 6))
    ye, yt = em(ember.tensor(idx)), tm(torch.from_numpy(idx))
    np.testing.assert_allclose(ye.data, yt.detach().numpy(), **_tol(dtype))
    ye.backward(ember.Tensor(g.astype(dtype)))
    yt.backward(torch.from_numpy(g).to(yt.dtype))
    assert em.weight.grad.dtype == dtype
    np.testing.assert_allclose(em.weight.grad.data, tm.weight.grad.numpy(), **_tol(dtype))
    if "padding_idx" in kw:
        assert np.all(em.weight.grad.data[em.padding_idx] == 0)


def test_embedding_grad_sums_repeats_on_a_large_batch(rng):
    # 20000 lookups into 500 rows: every row is hit many times; the sort + reduceat sum against np.add.at
    w = ember.Tensor(rng.standard_normal((500, 16)), requires_grad=True)
    idx = rng.integers(0, 500, (40, 500))
    g = rng.standard_normal((40, 500, 16))
    F.embedding(ember.tensor(idx), w).backward(ember.Tensor(g))
    want = np.zeros((500, 16))
    np.add.at(want, idx.reshape(-1), g.reshape(-1, 16))
    np.testing.assert_allclose(w.grad.data, want, rtol=1e-12, atol=1e-12)
    w.grad = None
    F.embedding(ember.tensor(idx), w, scale_grad_by_freq=True).backward(ember.Tensor(g))
    counts = np.bincount(idx.reshape(-1), minlength=500)
    np.testing.assert_allclose(w.grad.data, want / np.maximum(counts, 1)[:, None], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("idx_dtype", [np.int64, np.int32])
@pytest.mark.parametrize("kw", [{}, {"padding_idx": 5}, {"scale_grad_by_freq": True}])
def test_embedding_grad_of_few_lookups_into_a_large_table_matches_torch(kw, idx_dtype, rng):
    # 240 lookups into 1000 rows (2 * lookups <= rows): each picked row's first gradient is written,
    # only the repeats are added (ember/ops/embedding.py's _sum_rows)
    tm, em = _pair(torch.nn.Embedding(1000, 8, **kw), nn.Embedding(1000, 8, **kw), np.float32)
    idx = rng.integers(0, 1000, (6, 40))
    idx[0, :5] = 5  # picked five times (the padding row in one case)
    idx[3, ::7] = 999  # six times, far apart
    g = rng.standard_normal((6, 40, 8)).astype(np.float32)
    em(ember.tensor(idx.astype(idx_dtype))).backward(ember.Tensor(g))
    tm(torch.from_numpy(idx)).backward(torch.from_numpy(g))
    np.testing.assert_allclose(em.weight.grad.data, tm.weight.grad.numpy(), **_tol(np.float32))
    assert np.count_nonzero(em.weight.grad.data.any(axis=1)) == len(np.unique(idx)) - ("padding_idx" in kw)


def test_embedding_shapes_dtypes_and_nonleaf_weight(rng):
    w = ember.Tensor(rng.standard_normal((5, 3)).astype(np.float32), requires_grad=True)
    assert F.embedding(ember.tensor(np.int32(2)), w).shape == (3,)
    assert F.embedding(ember.tensor(np.array([1, 4], dtype=np.int32)), w).dtype == np.float32
    assert F.embedding(ember.tensor(np.zeros((0, 4), dtype=np.int64)), w).shape == (0, 4, 3)
    y = F.embedding(ember.tensor([[1, 1], [0, 4]]), w * 2)  # a computed weight: the gradient flows through
    y.sum().backward()
    np.testing.assert_array_equal(w.grad.data[:, 0], [2, 4, 0, 0, 2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
def test_embedding_max_norm_renormalizes_the_weight_like_torch(norm_type, dtype, rng):
    w0 = rng.standard_normal((8, 5))
    w0 *= (np.array([0.5, 2.0, 0.3, 3.0, 1.5, 0.7, 2.5, 1.2]) / np.linalg.norm(w0, ord=norm_type, axis=1))[:, None]
    idx = np.array([[0, 1, 1, 2], [7, 2, 5, 0]])
    tm = torch.nn.Embedding.from_pretrained(torch.from_numpy(w0.copy()), freeze=False, max_norm=0.9,
                                            norm_type=norm_type)
    em = nn.Embedding.from_pretrained(ember.Tensor(w0.astype(dtype)), freeze=False, max_norm=0.9,
                                      norm_type=norm_type)
    version = em.weight._version
    ye, yt = em(ember.tensor(idx)), tm(torch.from_numpy(idx))
    tol = _tol(dtype) if dtype == np.float64 else dict(rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(em.weight.data, tm.weight.detach().numpy(), **tol)
    np.testing.assert_allclose(ye.data, yt.detach().numpy(), **tol)
    norms = np.linalg.norm(w0, ord=norm_type, axis=1)
    picked = np.isin(np.arange(8), idx)
    assert np.any(picked & (norms > 0.9)) and np.any(picked & (norms <= 0.9))  # both kinds of picked row
    np.testing.assert_array_equal(em.weight.data[~picked], w0.astype(dtype)[~picked])  # rows not looked up: untouched
    assert np.all(np.linalg.norm(ye.data.astype(np.float64), ord=norm_type, axis=-1) <= 0.9 + 1e-6)
    assert em.weight._version == version + 1  # autograd sees the in-place change
    g = rng.standard_normal(ye.shape)
    ye.backward(ember.Tensor(g.astype(dtype)))
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(em.weight.grad.data, tm.weight.grad.numpy(), **_tol(dtype))
    em(ember.tensor(idx))  # every picked row is within max_norm now: nothing is written
    assert em.weight._version == version + 1


def test_embedding_max_norm_refuses_a_computed_weight():
    w = ember.Tensor(np.full((3, 2), 5.0), requires_grad=True)
    with pytest.raises(GraphError, match="embedding: max_norm"):
        F.embedding(ember.tensor([0]), w * 1, max_norm=1.0)


def test_embedding_init_repr_and_state_dict():
    e = nn.Embedding(4000, 50, padding_idx=7, generator=ember.Generator(1))
    w = e.weight.data
    assert w.dtype == np.float32 and e.weight.requires_grad
    assert np.all(w[7] == 0)
    rest = np.delete(w, 7, axis=0)
    assert abs(rest.mean()) < 0.01 and abs(rest.std() - 1) < 0.01  # N(0, 1) as PyTorch (200k draws)
    assert list(e.state_dict()) == list(torch.nn.Embedding(3, 2).state_dict()) == ["weight"]
    for args, kw in [((5, 3), {}), ((5, 3), {"padding_idx": -1}),
                     ((5, 3), {"max_norm": 2, "norm_type": 1.0, "scale_grad_by_freq": True}),
                     ((5, 3), {"max_norm": 1.0, "norm_type": 2.0})]:
        assert repr(nn.Embedding(*args, **kw)) == repr(torch.nn.Embedding(*args, **kw))
    assert nn.Embedding(3, 2, dtype=np.float64).weight.dtype == np.float64


def test_embedding_from_pretrained_and_weight_argument():
    pre = ember.Tensor(np.arange(12, dtype=np.float32).reshape(4, 3))
    e = nn.Embedding.from_pretrained(pre, padding_idx=1)
    assert not e.weight.requires_grad and e.weight.data is pre.data  # frozen, shared not copied
    assert (e.num_embeddings, e.embedding_dim, e.padding_idx) == (4, 3, 1)
    np.testing.assert_array_equal(e.weight.data[1], [3, 4, 5])  # the given padding row stays (as PyTorch)
    np.testing.assert_array_equal(e(ember.tensor([2, 1])).numpy(), [[6, 7, 8], [3, 4, 5]])
    trained = nn.Embedding.from_pretrained(pre, freeze=False)
    assert trained.weight.requires_grad
    trained(ember.tensor([0, 0, 3])).sum().backward()
    np.testing.assert_array_equal(trained.weight.grad.data[:, 0], [2, 0, 0, 1])
    with pytest.raises(ShapeError, match="from_pretrained: embeddings must be 2-D"):
        nn.Embedding.from_pretrained(ember.Tensor(np.zeros(4, dtype=np.float32)))
    with pytest.raises(ShapeError, match=r"_weight has shape \(4, 3\) but .* need \(5, 3\)"):
        nn.Embedding(5, 3, _weight=pre)


def test_embedding_errors():
    w = ember.Tensor(np.zeros((5, 3), dtype=np.float32), requires_grad=True)
    with pytest.raises(DTypeError, match="embedding: input .* int64 or int32 .* float32"):
        F.embedding(ember.Tensor(np.array([0.0, 1.0], dtype=np.float32)), w)
    with pytest.raises(DTypeError, match="int16"):
        F.embedding(ember.tensor(np.array([0, 1], dtype=np.int16)), w)
    with pytest.raises(IndexError, match=r"embedding: index 5 is out of range \[0, 5\).*\(5, 3\)"):
        F.embedding(ember.tensor([0, 5]), w)
    with pytest.raises(IndexError, match=r"embedding: index -1 is out of range"):
        F.embedding(ember.tensor([[0, -1]]), w)
    with pytest.raises(ShapeError, match="embedding: weight must be a 2-D"):
        F.embedding(ember.tensor([0]), ember.Tensor(np.zeros(5, dtype=np.float32)))
    for bad in (5, -6):
        with pytest.raises(ValueError, match=f"padding_idx {bad} must be within num_embeddings 5"):
            F.embedding(ember.tensor([0]), w, padding_idx=bad)
        with pytest.raises(ValueError, match=f"padding_idx {bad} must be within num_embeddings 5"):
            nn.Embedding(5, 3, padding_idx=bad)
    with pytest.raises(NotImplementedError, match="embedding: sparse=True"):
        F.embedding(ember.tensor([0]), w, sparse=True)
    with pytest.raises(NotImplementedError, match="Embedding: sparse=True"):
        nn.Embedding(5, 3, sparse=True)


# ---- bilinear -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lead,bias", [((6,), True), ((2, 5), True), ((), True), ((6,), False)])
def test_bilinear_matches_torch(lead, bias, dtype, rng):
    tm, em = _pair(torch.nn.Bilinear(4, 3, 5, bias=bias), nn.Bilinear(4, 3, 5, bias=bias), dtype)
    x1, x2 = rng.standard_normal(lead + (4,)), rng.standard_normal(lead + (3,))
    e1, e2 = (ember.Tensor(a.astype(dtype), requires_grad=True) for a in (x1, x2))
    t1, t2 = (torch.tensor(a, dtype=tm.weight.dtype, requires_grad=True) for a in (x1, x2))
    ye, yt = em(e1, e2), tm(t1, t2)
    assert ye.shape == tuple(yt.shape) == lead + (5,) and ye.dtype == dtype
    np.testing.assert_allclose(ye.data, yt.detach().numpy(), **_tol(dtype))
    g = rng.standard_normal(ye.shape)
    ye.backward(ember.Tensor(g.astype(dtype)))
    yt.backward(torch.from_numpy(g).to(yt.dtype))
    for e, t in [(e1, t1), (e2, t2), (em.weight, tm.weight)] + ([(em.bias, tm.bias)] if bias else []):
        assert e.grad.dtype == dtype
        np.testing.assert_allclose(e.grad.data, t.grad.numpy(), **_tol(dtype))


def test_bilinear_init_repr_and_state_dict():
    m = nn.Bilinear(25, 7, 300, generator=ember.Generator(2))
    assert m.weight.shape == (300, 25, 7) and m.bias.shape == (300,)
    bound = 1 / 5  # 1 / sqrt(in1_features), as PyTorch
    assert 0.98 * bound < np.abs(m.weight.data).max() <= bound
    assert abs(m.weight.data.std() - bound / np.sqrt(3)) < 0.002  # U(-b, b) has std b / sqrt(3)
    assert np.abs(m.bias.data).max() <= bound and m.bias.data.std() > 0.5 * bound / np.sqrt(3)
    assert list(m.state_dict()) == list(torch.nn.Bilinear(2, 3, 4).state_dict())
    for kw in ({}, {"bias": False}):
        assert repr(nn.Bilinear(3, 4, 5, **kw)) == repr(torch.nn.Bilinear(3, 4, 5, **kw))
    assert nn.Bilinear(3, 4, 5, bias=False).bias is None
    with pytest.raises(ValueError, match=r"in1_features must be > 0, but got \(in1_features=0\)"):
        nn.Bilinear(0, 4, 5)


def test_bilinear_errors(rng):
    def t(*shape, dtype=np.float32):
        return ember.Tensor(rng.standard_normal(shape).astype(dtype))

    w = t(5, 3, 4)
    with pytest.raises(ShapeError, match=r"bilinear: input1 has 4 features but weight \(5, 3, 4\) expects 3"):
        F.bilinear(t(2, 4), t(2, 4), w)
    with pytest.raises(ShapeError, match="bilinear: input2 has 5 features .* expects 4"):
        F.bilinear(t(2, 3), t(2, 5), w)
    with pytest.raises(ShapeError, match=r"same batch dims, got shapes \(1, 3\) and \(2, 4\)"):
        F.bilinear(t(1, 3), t(2, 4), w)
    with pytest.raises(ShapeError, match="same number of dims"):
        F.bilinear(t(2, 6, 3), t(6, 4), w)
    with pytest.raises(ShapeError, match="bilinear: weight must be 3-D"):
        F.bilinear(t(2, 3), t(2, 4), t(5, 12))
    with pytest.raises(ShapeError, match=r"bilinear: bias has shape \(4,\) .* needs \(5,\)"):
        F.bilinear(t(2, 3), t(2, 4), w, t(4))
    with pytest.raises(DTypeError, match="input1 float64, input2 float32"):
        F.bilinear(t(2, 3, dtype=np.float64), t(2, 4), w)


# ---- alpha dropout ------------------------------------------------------------------------------------
def _selu_normalized(rng, shape):
    """SELU of a standard normal: mean 0 and variance 1 (SELU's fixed point), as in a self-normalizing net."""
    return F.selu(ember.Tensor(rng.standard_normal(shape).astype(np.float32)))


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5])
def test_alpha_dropout_keeps_mean_zero_and_variance_one(p, rng):
    x = _selu_normalized(rng, (1000, 1000))
    assert abs(x.data.mean()) < 0.01 and abs(x.data.var() - 1) < 0.01
    y = F.alpha_dropout(x, p, training=True, generator=ember.Generator(3)).data
    dropped = y == y.min()
    assert abs(dropped.mean() - p) < 0.005  # a million draws
    assert abs(y.mean()) < 0.01 and abs(y.var() - 1) < 0.01
    z = F.feature_alpha_dropout(_selu_normalized(rng, (400, 250, 10)), p, training=True).data
    assert abs(z.mean()) < 0.02 and abs(z.var() - 1) < 0.02


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_alpha_dropout_values_and_gradient_match_torch(p):
    ones = np.ones((200, 500), dtype=np.float32)
    t = torch.from_numpy(ones.copy()).requires_grad_()
    yt = torch.nn.functional.alpha_dropout(t, p, True)
    yt.sum().backward()
    x = ember.Tensor(ones, requires_grad=True)
    y = nn.AlphaDropout(p, generator=ember.Generator(1))(x)
    y.sum().backward()
    values = np.unique(y.data)
    np.testing.assert_allclose(values, np.unique(yt.detach().numpy()), rtol=1e-6)  # [dropped, kept]
    np.testing.assert_allclose(np.unique(x.grad.data), np.unique(t.grad.numpy()), rtol=1e-6)  # [0, a]
    kept = y.data == values[1]
    np.testing.assert_array_equal(x.grad.data == 0, ~kept)  # the gradient is the mask: a where kept
    assert abs(1 - kept.mean() - p) < 0.01


def test_feature_alpha_dropout_drops_whole_channels():
    x = ember.Tensor(np.ones((16, 32, 4, 5), dtype=np.float32), requires_grad=True)
    y = nn.FeatureAlphaDropout(0.5, generator=ember.Generator(4))(x)
    planes = y.data.reshape(16, 32, 20)
    assert np.all(planes.min(axis=2) == planes.max(axis=2))  # one draw per (sample, channel)
    assert len(np.unique(planes)) == 2
    y.sum().backward()
    grads = x.grad.data.reshape(16, 32, 20)
    assert set(np.unique(grads)) == {0.0, float(np.float32(grads.max()))}
    np.testing.assert_array_equal(grads[..., 0] == 0, planes[..., 0] == planes.min())
    flat = F.feature_alpha_dropout(ember.Tensor(np.ones((50, 40), dtype=np.float32)), 0.5, True).data
    assert 0.3 < (flat == flat.min()).mean(axis=0).mean() < 0.7 and len(np.unique(flat[:, 0])) == 2  # (N, C): per entry
    with pytest.raises(ShapeError, match="feature_alpha_dropout: .* at least 2 dims"):
        F.feature_alpha_dropout(ember.Tensor(np.ones(5, dtype=np.float32)), 0.5, True)


def test_alpha_dropout_eval_identity_edges_generator_and_errors():
    x = ember.Tensor(np.random.default_rng(0).standard_normal((8, 6)).astype(np.float32), requires_grad=True)
    m = nn.AlphaDropout(0.3)
    m.eval()
    assert m(x) is x and F.alpha_dropout(x, 0.3) is x  # F's default is training=False, as PyTorch
    assert F.feature_alpha_dropout(x, 0.3) is x and F.alpha_dropout(x, 0.0, True) is x
    y = F.alpha_dropout(x, 1.0, True)  # PyTorch: all zeros
    y.sum().backward()
    assert np.all(y.data == 0) and np.all(x.grad.data == 0)
    a = F.alpha_dropout(x, 0.4, True, generator=ember.Generator(9)).data
    np.testing.assert_array_equal(a, F.alpha_dropout(x, 0.4, True, generator=ember.Generator(9)).data)
    assert not np.array_equal(a, F.alpha_dropout(x, 0.4, True, generator=ember.Generator(10)).data)
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            F.alpha_dropout(x, p, True)
        with pytest.raises(ValueError, match="between 0 and 1"):
            nn.FeatureAlphaDropout(p)
    with pytest.raises(TypeError, match="alpha_dropout: expected a floating point input"):
        F.alpha_dropout(ember.tensor([1, 2]), 0.5, True)
    for cls in ("AlphaDropout", "FeatureAlphaDropout"):
        assert repr(getattr(nn, cls)(0.2)) == repr(getattr(torch.nn, cls)(0.2))

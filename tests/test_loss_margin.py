"""Margin/embedding/likelihood losses and distances (ember/ops/margin.py, ember/ops/distance.py,
ember/nn/loss.py) against PyTorch: module forms, reductions, error messages, extreme inputs, PyTorch's subgradients, labels and weights.
(Per-op forward/gradcheck/gradient rows are in tests/opdb_loss.py.)"""
from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F
from ember.errors import DTypeError, ShapeError

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _pair(*arrays, grad=True):
    """The same arrays as ember tensors and as torch tensors (float ones requiring grad)."""
    es, ts = [], []
    for a in arrays:
        a = np.asarray(a)
        f = grad and a.dtype.kind == "f"
        es.append(ember.Tensor(a.copy(), requires_grad=f))
        ts.append(torch.tensor(a.copy(), requires_grad=f))
    return es, ts


def _check(e_out, t_out, es, ts, rtol=1e-6, atol=1e-9, seed=0):
    """Forward values equal, and gradients of sum(out * g) for a random g."""
    np.testing.assert_allclose(e_out.data, t_out.detach().numpy(), rtol=rtol, atol=atol)
    assert e_out.dtype == np.dtype(str(t_out.dtype).replace("torch.", ""))
    g = np.random.default_rng(seed).standard_normal(e_out.shape)
    (e_out * ember.Tensor(g.astype(e_out.dtype))).sum().backward()
    (t_out * torch.tensor(g, dtype=t_out.dtype)).sum().backward()
    for e, t in zip(es, ts):
        if t.requires_grad:
            want = t.grad.numpy() if t.grad is not None else np.zeros(t.shape)
            got = e.grad.data if e.grad is not None else np.zeros(e.shape)
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


R = np.random.default_rng(7)
X, T3 = R.standard_normal((6, 3)), R.integers(0, 3, 6)
LBL = np.array([[2, 0, -1], [1, -1, 2], [-1, 0, 0], [0, 1, 2], [1, 1, -1], [2, -1, -1]])
SIGNS = R.choice([-1.0, 1.0], (6, 3))
A, B, C = R.standard_normal((6, 4)), R.standard_normal((6, 4)), R.standard_normal((6, 4))
Y6 = R.choice([-1, 1], 6)

MODULES = [  # (id, ember module, torch module, inputs)
    ("MultiMarginLoss", nn.MultiMarginLoss(), torch.nn.MultiMarginLoss(), (X, T3)),
    ("MultiMarginLoss_p2w", nn.MultiMarginLoss(p=2, margin=0.5, weight=ember.tensor([1.0, 2.0, 0.5]).double()),
     torch.nn.MultiMarginLoss(p=2, margin=0.5, weight=torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)), (X, T3)),
    ("MultiLabelMarginLoss", nn.MultiLabelMarginLoss(reduction="none"),
     torch.nn.MultiLabelMarginLoss(reduction="none"), (X, LBL)),
    ("MultiLabelSoftMarginLoss", nn.MultiLabelSoftMarginLoss(weight=ember.tensor([0.5, 1.0, 2.0]).double()),
     torch.nn.MultiLabelSoftMarginLoss(weight=torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)),
     (X, (SIGNS > 0) * 1.0)),
    ("SoftMarginLoss", nn.SoftMarginLoss(reduction="sum"), torch.nn.SoftMarginLoss(reduction="sum"),
     (X, SIGNS.astype(np.int64))),
    ("MarginRankingLoss", nn.MarginRankingLoss(margin=0.3), torch.nn.MarginRankingLoss(margin=0.3),
     (A[:, 0], B[:, 0], Y6 * 1.0)),
    ("HingeEmbeddingLoss", nn.HingeEmbeddingLoss(margin=2.0, reduction="none"),
     torch.nn.HingeEmbeddingLoss(margin=2.0, reduction="none"), (np.abs(X) * 1.7, SIGNS.astype(np.int64))),
    ("CosineEmbeddingLoss", nn.CosineEmbeddingLoss(margin=0.1), torch.nn.CosineEmbeddingLoss(margin=0.1),
     (A, B, Y6)),
    ("TripletMarginLoss", nn.TripletMarginLoss(margin=2.0, swap=True), torch.nn.TripletMarginLoss(margin=2.0, swap=True),
     (A, B, C)),
    ("GaussianNLLLoss", nn.GaussianNLLLoss(full=True, reduction="sum"),
     torch.nn.GaussianNLLLoss(full=True, reduction="sum"), (A, B, np.abs(C[:, 0]) + 0.1)),
    ("PoissonNLLLoss", nn.PoissonNLLLoss(full=True), torch.nn.PoissonNLLLoss(full=True), (X, np.abs(X) * 3)),
    ("PoissonNLLLoss_rate", nn.PoissonNLLLoss(log_input=False, eps=1e-3, reduction="none"),
     torch.nn.PoissonNLLLoss(log_input=False, eps=1e-3, reduction="none"), (np.abs(X) + 0.1, np.abs(X) * 3)),
    ("CosineSimilarity", nn.CosineSimilarity(dim=0), torch.nn.CosineSimilarity(dim=0), (A, B)),
    ("PairwiseDistance", nn.PairwiseDistance(p=1.0, keepdim=True), torch.nn.PairwiseDistance(p=1.0, keepdim=True),
     (A, B)),
]


@pytest.mark.parametrize("em,tm,inputs", [m[1:] for m in MODULES], ids=[m[0] for m in MODULES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_module_matches_torch(em, tm, inputs, dtype):
    inputs = [a.astype(dtype) if a.dtype.kind == "f" else a for a in inputs]
    if dtype == np.float32:
        em, tm = em.to(ember.float32) if hasattr(em, "weight") else em, tm.float()
    es, ts = _pair(*inputs)
    tol = dict(rtol=1e-6, atol=1e-9) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)
    _check(em(*es), tm(*ts), es, ts, **tol)


def test_weight_is_a_buffer_with_torchs_key():
    w = ember.tensor([1.0, 2.0, 3.0])
    for e, t in ((nn.MultiMarginLoss(weight=w), torch.nn.MultiMarginLoss(weight=torch.ones(3))),
                 (nn.MultiLabelSoftMarginLoss(weight=w), torch.nn.MultiLabelSoftMarginLoss(weight=torch.ones(3)))):
        assert list(e.state_dict()) == list(t.state_dict()) == ["weight"]
    assert list(nn.MultiMarginLoss().state_dict()) == []
    with pytest.raises(ValueError, match="MultiMarginLoss: p must be 1 or 2, got 3"):
        nn.MultiMarginLoss(p=3)
    with pytest.raises(ValueError, match="TripletMarginLoss: margin must be greater than 0"):
        nn.TripletMarginLoss(margin=0.0)


# ---- reductions ----------------------------------------------------------------------------------------
CALLS = {  # name -> (ember fn, torch fn, inputs)
    "multi_margin_loss": (F.multi_margin_loss, TF.multi_margin_loss, (X, T3)),
    "multilabel_margin_loss": (F.multilabel_margin_loss, TF.multilabel_margin_loss, (X, LBL)),
    "multilabel_soft_margin_loss": (F.multilabel_soft_margin_loss, TF.multilabel_soft_margin_loss, (X, SIGNS > 0)),
    "soft_margin_loss": (F.soft_margin_loss, TF.soft_margin_loss, (X, SIGNS)),
    "margin_ranking_loss": (F.margin_ranking_loss, TF.margin_ranking_loss, (A[:, 0], B[:, 0], Y6)),
    "hinge_embedding_loss": (F.hinge_embedding_loss, TF.hinge_embedding_loss, (X, SIGNS)),
    "cosine_embedding_loss": (F.cosine_embedding_loss, TF.cosine_embedding_loss, (A, B, Y6)),
    "triplet_margin_loss": (F.triplet_margin_loss, TF.triplet_margin_loss, (A, B, C)),
    "gaussian_nll_loss": (F.gaussian_nll_loss, TF.gaussian_nll_loss, (A, B, np.abs(C) + 0.1)),
    "poisson_nll_loss": (F.poisson_nll_loss, TF.poisson_nll_loss, (X, np.abs(X))),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_reductions_and_bad_reduction(name):
    fn, tfn, inputs = CALLS[name]
    inputs = [a * 1.0 if a.dtype == bool else a for a in inputs]
    for r in ("mean", "sum", "none"):
        es, ts = _pair(*inputs, grad=False)
        np.testing.assert_allclose(fn(*es, reduction=r).data, tfn(*ts, reduction=r).numpy(), rtol=1e-6, atol=1e-9)
    es, _ = _pair(*inputs, grad=False)
    with pytest.raises(ValueError, match=f"{name}: reduction must be 'none', 'mean' or 'sum', got 'batchmean'"):
        fn(*es, reduction="batchmean")


# ---- error messages ------------------------------------------------------------------------------------
def _t(a):
    return ember.Tensor(np.asarray(a))


@pytest.mark.parametrize("call,exc,msg", [
    (lambda: F.multi_margin_loss(_t(X), _t([0, 1, 3, 0, 0, 0])), IndexError,
     r"multi_margin_loss: target class 3 is out of range \[0, 3\)"),
    (lambda: F.multi_margin_loss(_t(X), _t([0, -1, 2, 0, 0, 0])), IndexError,
     r"multi_margin_loss: target class -1 is out of range \[0, 3\)"),
    (lambda: F.multi_margin_loss(_t(X), _t([0, 1])), ShapeError,
     r"multi_margin_loss: target has shape \(2,\) but input needs \(6,\)"),
    (lambda: F.multi_margin_loss(_t(X), _t(T3 * 1.0)), DTypeError, "multi_margin_loss: target must hold integer"),
    (lambda: F.multi_margin_loss(_t(X), _t(T3), p=3), ValueError, "multi_margin_loss: p must be 1 or 2, got 3"),
    (lambda: F.multi_margin_loss(_t(X), _t(T3), weight=_t([1.0, 2.0])), ShapeError,
     r"multi_margin_loss: weight has shape \(2,\) but input \(6, 3\) has 3 classes"),
    (lambda: F.multi_margin_loss(_t(np.zeros((2, 3, 4))), _t([0, 1])), ShapeError,
     r"multi_margin_loss: input must be \(N, C\), \(C,\) or \(\) with C >= 1, got shape \(2, 3, 4\)"),
    (lambda: F.multi_margin_loss(_t(np.zeros((2, 0))), _t([0, 0])), ShapeError, "with C >= 1"),
    (lambda: F.multilabel_margin_loss(_t(X), _t(np.where(LBL == 2, 3, LBL))), IndexError,
     r"multilabel_margin_loss: target class 3 is out of range \[-1, 3\)"),
    (lambda: F.multilabel_margin_loss(_t(X), _t(np.where(LBL == -1, -2, LBL))), IndexError,
     r"target class -2 is out of range \[-1, 3\)"),
    (lambda: F.multilabel_margin_loss(_t(X), _t(LBL[:, :2])), ShapeError,
     r"multilabel_margin_loss: target has shape \(6, 2\) but input needs \(6, 3\)"),
    (lambda: F.multilabel_soft_margin_loss(_t(X), _t(X[:, :2])), ShapeError,
     r"multilabel_soft_margin_loss: input has shape \(6, 3\) but target has shape \(6, 2\)"),
    (lambda: F.multilabel_soft_margin_loss(_t(X), _t(X), weight=_t([1.0, 2.0])), ShapeError,
     r"multilabel_soft_margin_loss: weight of shape \(2,\) does not broadcast to input \(6, 3\)"),
    (lambda: F.soft_margin_loss(_t(X), _t(SIGNS[0])), ShapeError,
     r"soft_margin_loss: input has shape \(6, 3\) but target has shape \(3,\)"),
    (lambda: F.soft_margin_loss(_t(T3), _t(T3)), DTypeError, "soft_margin_loss: input must be floating point"),
    (lambda: F.hinge_embedding_loss(_t(X), SIGNS), TypeError, "hinge_embedding_loss: target must be an ember Tensor"),
    (lambda: F.margin_ranking_loss(_t(A[:, 0]), _t(B[:, 0]), _t(Y6[None])), ShapeError,
     r"margin_ranking_loss: input1, input2 and target must have the same number of dims, got input1 \(6,\), "
     r"input2 \(6,\), target \(1, 6\)"),
    (lambda: F.margin_ranking_loss(_t(A[:, 0]), _t(B[:4, 0]), _t(Y6)), ShapeError,
     r"margin_ranking_loss: shapes do not broadcast together \(input1 \(6,\), input2 \(4,\), target \(6,\)\)"),
    (lambda: F.cosine_embedding_loss(_t(A), _t(B), _t(Y6[:4])), ShapeError,
     r"cosine_embedding_loss: needs inputs \(N, D\) with target \(N,\) or inputs \(D,\) with target \(\), "
     r"got input1 \(6, 4\), input2 \(6, 4\), target \(4,\)"),
    (lambda: F.cosine_embedding_loss(_t(A), _t(B[:, :3]), _t(Y6)), ShapeError,
     r"cosine_embedding_loss: shapes do not broadcast together \(input1 \(6, 4\), input2 \(6, 3\)\)"),
    (lambda: F.triplet_margin_loss(_t(A), _t(B), _t(C[0])), ShapeError,
     r"triplet_margin_loss: anchor, positive and negative must have the same number of dims, got anchor \(6, 4\)"),
    (lambda: F.triplet_margin_loss(_t(A), _t(B), _t(C), margin=-1.0), ValueError,
     "triplet_margin_loss: margin must be greater than 0, got -1.0"),
    (lambda: F.gaussian_nll_loss(_t(A), _t(B), _t(np.ones(4))), ShapeError,
     r"gaussian_nll_loss: var has shape \(4,\) but input has shape \(6, 4\)"),
    (lambda: F.gaussian_nll_loss(_t(A), _t(B), _t(np.ones((1, 1)))), ShapeError, "var has shape"),
    (lambda: F.gaussian_nll_loss(_t(A), _t(B), _t(-np.ones((6, 4)))), ValueError,
     r"gaussian_nll_loss: var has negative entries \(min -1.0\)"),
    (lambda: F.gaussian_nll_loss(_t(A), _t(B), -0.5), ValueError, "gaussian_nll_loss: var must be non-negative"),
    (lambda: F.gaussian_nll_loss(_t(A), _t(B[:, :3]), 1.0), ShapeError,
     r"gaussian_nll_loss: shapes do not broadcast together \(input \(6, 4\), target \(6, 3\)\)"),
    (lambda: F.poisson_nll_loss(_t(A), _t(B[0])), ShapeError,
     r"poisson_nll_loss: input has shape \(6, 4\) but target has shape \(4,\)"),
    (lambda: F.pdist(_t(A[0])), ShapeError, r"pdist: input must be 2-D \(N, M\), got shape \(4,\)"),
    (lambda: F.pdist(_t(A), p=-1.0), ValueError, "pdist: p must be non-negative, got -1.0"),
    (lambda: F.pairwise_distance(_t(A), _t(B[:, :3])), ShapeError,
     r"pairwise_distance: shapes do not broadcast together \(x1 \(6, 4\), x2 \(6, 3\)\)"),
    (lambda: F.pairwise_distance(_t(np.zeros((2, 0))), _t(np.zeros((2, 0))), p=float("inf")), ValueError,
     "pairwise_distance: the p=inf norm of an empty vector is undefined"),
    (lambda: F.cosine_similarity(_t(A), _t(B), dim=2), IndexError,
     "cosine_similarity: dim 2 is out of range for a tensor with 2 dimensions"),
    (lambda: F.normalize(_t(A[0])), IndexError, "normalize: dim 1 is out of range for a tensor with 1 dimensions"),
])
def test_errors_name_op_argument_and_both_sides(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


def test_torch_rejects_the_same_inputs():
    """The inputs refused above are refused by PyTorch too (a few representative ones)."""
    with pytest.raises(RuntimeError, match="target out of range"):
        TF.multi_margin_loss(torch.tensor(X), torch.tensor([0, 1, 3, 0, 0, 0]))
    with pytest.raises(RuntimeError, match="out of range"):
        TF.multilabel_margin_loss(torch.tensor(X), torch.tensor(np.where(LBL == -1, -2, LBL)))
    with pytest.raises(ValueError, match="var is of incorrect size"):
        TF.gaussian_nll_loss(torch.tensor(A), torch.tensor(B), torch.ones(1, 1, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="non-negative p"):
        TF.pdist(torch.tensor(A), p=-1.0)


# ---- extreme inputs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_soft_margins_are_finite_at_extreme_logits(dtype):
    x = ember.tensor(np.array([-1e4, -100.0, 100.0, 1e4], dtype=dtype), requires_grad=True)
    y = ember.tensor(np.array([1.0, 1.0, 1.0, -1.0], dtype=dtype))
    loss = F.soft_margin_loss(x, y, reduction="none")
    np.testing.assert_allclose(loss.data, [1e4, 100.0, 0.0, 1e4], rtol=1e-6, atol=1e-30)
    loss.sum().backward()
    np.testing.assert_allclose(x.grad.data, [-1.0, -1.0, -np.exp(-100.0), 1.0], rtol=1e-6, atol=1e-30)
    with np.errstate(over="ignore"):  # PyTorch's own formula log1p(exp(-yx)) overflows here
        assert torch.isinf(TF.soft_margin_loss(torch.tensor(x.data), torch.tensor(y.data), reduction="none")[0])
    x.grad = None
    m = F.multilabel_soft_margin_loss(x.reshape(1, 4), ember.tensor(np.array([[0, 1, 1, 0]], dtype=dtype)))
    np.testing.assert_allclose(m.data, (0 + 100 + 0 + 1e4) / 4, rtol=1e-6)
    m.backward()
    assert np.isfinite(x.grad.data).all()


def test_poisson_full_is_finite_at_zero_counts():
    x, t = ember.tensor([0.3, -0.2, 1.0], requires_grad=True), ember.tensor([0.0, 1.0, 5.0], requires_grad=True)
    loss = F.poisson_nll_loss(x, t, full=True, reduction="sum")
    tx, tt = torch.tensor([0.3, -0.2, 1.0], requires_grad=True), torch.tensor([0.0, 1.0, 5.0], requires_grad=True)
    want = TF.poisson_nll_loss(tx, tt, full=True, reduction="sum")
    np.testing.assert_allclose(loss.data, want.item(), rtol=1e-6)
    loss.backward()
    want.backward()
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy(), rtol=1e-6)
    assert torch.isnan(tt.grad[0])  # PyTorch: 0 * log(0) in the dropped Stirling term
    assert t.grad.data[0] == -x.data[0]  # ember: only -t x's gradient; the dropped term has none
    np.testing.assert_allclose(t.grad.data[1:], tt.grad.numpy()[1:], rtol=1e-6)


def test_gaussian_clamped_variance_gradient_is_pytorchs():
    """var below eps is clamped in value only; its gradient is taken at the clamped value, unmasked."""
    var = np.array([[0.0, 1e-9, 0.5], [2.0, 1e-7, 3.0]])
    es, ts = _pair(np.ones((2, 3)), np.zeros((2, 3)), var)
    _check(F.gaussian_nll_loss(*es, reduction="none"), TF.gaussian_nll_loss(*ts, reduction="none"), es, ts, rtol=1e-9)
    es, ts = _pair(A, B, np.abs(C) + 0.1)
    _check(F.gaussian_nll_loss(*es, eps=0.8), TF.gaussian_nll_loss(*ts, eps=0.8), es, ts)
    e, t = F.gaussian_nll_loss(_t(A), _t(B), 0.7, full=True), TF.gaussian_nll_loss(torch.tensor(A), torch.tensor(B), 0.7,
                                                                                    full=True)
    np.testing.assert_allclose(e.data, t.item(), rtol=1e-12)
    np.testing.assert_allclose(F.gaussian_nll_loss(_t(A), _t(B), 1).data, F.gaussian_nll_loss(_t(A), _t(B), 1.0).data)


def test_cosine_similarity_clamped_norms_and_zero_vectors():
    x1 = np.array([[1e-5, 2e-5, 0.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    x2 = np.array([[3e-5, 1e-5, 1e-5], [1e-9, 0.0, 0.0], [1.0, 1.0, 1.0]])
    for eps in (1e-8, 1e-3):
        es, ts = _pair(x1, x2)
        _check(F.cosine_similarity(*es, eps=eps), TF.cosine_similarity(*ts, eps=eps), es, ts, rtol=1e-9)
    es, ts = _pair(np.zeros((1, 3)), B[:1, :3])
    _check(F.cosine_embedding_loss(*es, ember.tensor([1])), TF.cosine_embedding_loss(*ts, torch.tensor([1])), es, ts)


def test_normalize_zero_vectors_and_eps():
    es, ts = _pair(np.array([[0.0, 0.0, 0.0], [3.0, -4.0, 0.0], [1e-13, 0.0, 0.0]]))
    _check(F.normalize(*es), TF.normalize(*ts), es, ts, rtol=1e-9)
    assert np.isfinite(es[0].grad.data).all()


@pytest.mark.parametrize("p", [0.5, 1.0, 1.5, 2.0, 3.0, float("inf"), -1.0, 0.0])
def test_norm_subgradients_match_torch(p):
    """Vectors with zero entries, ties for the inf norm, and an all-zero row (norm 0)."""
    x = np.array([[1.0, -2.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0], [0.5, -0.5, 0.25, 0.0]])
    es, ts = _pair(x)
    e = F.pairwise_distance(es[0], ember.tensor(np.zeros(4)), p=p, eps=0.0)
    _check(e, torch.linalg.vector_norm(ts[0], p, dim=-1), es, ts, rtol=1e-9)
    es, ts = _pair(x[[0, 2]])
    _check(F.normalize(es[0], p=p), TF.normalize(ts[0], p=p), es, ts, rtol=1e-9)


@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, float("inf")])
def test_norm_of_a_zero_vector_has_a_zero_gradient(p):
    """Regression: ember.norm was sqrt(sum(x * x)), whose gradient at 0 is inf * 0 = nan (with a warning)."""
    x = np.array([[0.0, 0.0, 0.0], [3.0, -4.0, 0.0]])
    es, ts = _pair(x)
    _check(ember.norm(es[0], p, dim=1), torch.norm(ts[0], p, dim=1), es, ts, rtol=1e-12)
    assert np.array_equal(es[0].grad.data[0], np.zeros(3))


def test_norm_rejects_a_matrix_norm_name():
    with pytest.raises(ValueError, match="norm: p must be a number, inf or 'fro', got 'nuc'"):
        ember.norm(ember.randn(3, 3), "nuc")


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 0.5, float("inf"), 0.0])
def test_pdist_duplicate_rows_and_ties(p):
    """A zero distance has a zero gradient; pdist gives each inf-norm tie the full sign (no split)."""
    x = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [2.0, 3.0, 3.0], [0.0, 5.0, 1.0]])
    es, ts = _pair(x)
    _check(F.pdist(es[0], p=p), TF.pdist(ts[0], p=p), es, ts, rtol=1e-9)


def test_pdist_and_pairwise_distance_shapes():
    for n, m in ((0, 3), (1, 3), (3, 0)):
        e, t = F.pdist(_t(np.ones((n, m)))), TF.pdist(torch.ones(n, m, dtype=torch.float64))
        assert e.shape == tuple(t.shape)
        np.testing.assert_array_equal(e.data, t.numpy())
    for s1, s2, kw in (((4, 1, 3), (5, 3), {}), ((3,), (3,), {"keepdim": True}), ((), (), {}), ((2, 0), (2, 0), {})):
        a, b = np.ones(s1), np.zeros(s2)
        e = F.pairwise_distance(_t(a), _t(b), **kw)
        t = TF.pairwise_distance(torch.tensor(a), torch.tensor(b), **kw)
        assert e.shape == tuple(t.shape)
        np.testing.assert_allclose(e.data, t.numpy(), rtol=1e-12)
    e = F.cosine_similarity(_t(np.ones((2, 1, 3))), _t(np.ones((4, 3))))
    assert e.shape == tuple(TF.cosine_similarity(torch.ones(2, 1, 3), torch.ones(4, 3)).shape) == (2, 3)


# ---- labels and weights ----------------------------------------------------------------------------------
def test_multi_margin_weight_and_unbatched_shapes():
    w = np.array([0.2, 3.0, 1.0])
    for r in ("mean", "sum", "none"):  # "mean" is a plain mean, not divided by the summed weights
        es, ts = _pair(X, T3, w, grad=False)
        np.testing.assert_allclose(F.multi_margin_loss(es[0], es[1], weight=es[2], reduction=r).data,
                                   TF.multi_margin_loss(ts[0], ts[1], weight=ts[2], reduction=r).numpy(), rtol=1e-12)
    for x, t in ((X[0], np.asarray(1)), (X[0], np.array([2])), (np.asarray(0.5), np.asarray(0))):
        e = F.multi_margin_loss(_t(x), _t(t), reduction="none")
        want = TF.multi_margin_loss(torch.tensor(x), torch.tensor(t), reduction="none")
        assert e.shape == tuple(want.shape)
        np.testing.assert_allclose(e.data, want.numpy(), rtol=1e-12)
    e = F.multi_margin_loss(_t(X), _t(T3.astype(np.int32)))  # any integer dtype
    np.testing.assert_allclose(e.data, TF.multi_margin_loss(torch.tensor(X), torch.tensor(T3)).item(), rtol=1e-12)


def test_multilabel_margin_label_lists():
    """Empty and full label lists, junk after the first -1, duplicates, and the 1-d and 0-d forms."""
    y = np.array([[-1, 2, 0], [0, 1, 2], [2, -1, 1], [1, 1, -1], [0, 2, -1], [2, 0, 1]])
    es, ts = _pair(X, y)
    _check(F.multilabel_margin_loss(*es, reduction="none"), TF.multilabel_margin_loss(*ts, reduction="none"), es, ts)
    assert es[0].grad is not None
    for x, t in ((X[2], y[2]), (np.asarray(0.5), np.asarray(0)), (np.asarray(0.5), np.asarray(-1))):
        e = F.multilabel_margin_loss(_t(x), _t(t), reduction="none")
        want = TF.multilabel_margin_loss(torch.tensor(x), torch.tensor(t), reduction="none")
        assert e.shape == tuple(want.shape)
        np.testing.assert_allclose(e.data, want.numpy(), rtol=1e-12)


def test_label_targets_get_no_gradient_float_targets_do():
    x = ember.tensor(X, requires_grad=True)
    for fn in (F.soft_margin_loss, F.hinge_embedding_loss):
        y = ember.tensor(SIGNS, requires_grad=True)
        fn(x, y).backward()
        assert y.grad is None
    es, ts = _pair(X, np.abs(X))  # poisson's target is a count and is differentiable, as in PyTorch
    _check(F.poisson_nll_loss(*es), TF.poisson_nll_loss(*ts), es, ts)
    es, ts = _pair(A[:, 0], B[:, 0], Y6 * 0.7)
    _check(F.margin_ranking_loss(*es), TF.margin_ranking_loss(*ts), es, ts)


def test_hinge_embedding_label_zero_takes_both_terms():
    x, y = np.array([0.5, 0.5, 0.5, 2.0]), np.array([1.0, -1.0, 0.0, -1.0])
    e = F.hinge_embedding_loss(_t(x), _t(y), reduction="none")
    np.testing.assert_allclose(e.data, [0.5, 0.5, 1.0, 0.0])
    np.testing.assert_allclose(e.data, TF.hinge_embedding_loss(torch.tensor(x), torch.tensor(y), reduction="none"))


def test_multiclass_svm_trains_a_linear_classifier():
    """The course use: a linear multiclass SVM on separable blobs reaches zero hinge loss."""
    rng = np.random.default_rng(0)
    centers = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    labels = rng.integers(0, 3, 60)
    x = ember.tensor((centers[labels] + 0.3 * rng.standard_normal((60, 2))).astype(np.float32))
    t = ember.tensor(labels)
    model, loss_fn = nn.Linear(2, 3), nn.MultiMarginLoss()
    opt = ember.optim.SGD(model.parameters(), lr=0.5)
    first = None
    for _ in range(100):
        opt.zero_grad()
        loss = loss_fn(model(x), t)
        first = first if first is not None else float(loss.data)
        loss.backward()
        opt.step()
    assert first > 0.1 and float(loss.data) < 1e-3
    assert (model(x).data.argmax(1) == labels).all()

"""Picking and ordering along a dimension (ember/ops/select.py) beyond the op table: bad input to
gather/sort/topk/one_hot and friends (and to mm, bmm and einsum), (values, indices) results, and the idioms they serve (top-5
accuracy, cross entropy by gather). Values and gradients are checked in tests/opdb_select.py."""
from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.errors import DTypeError, ShapeError

torch = pytest.importorskip("torch")


# ---- bad input names the op, the argument and both sides ---------------------------------------------
@pytest.mark.parametrize("call, err, words", [
    (lambda x: x.gather(1, ember.tensor([[0.0]])), DTypeError, ["gather", "integer", "float"]),
    (lambda x: x.gather(1, ember.tensor([0, 1])), ShapeError, ["gather", "1 dims", "(3, 4)"]),
    (lambda x: x.gather(1, ember.tensor([[0]] * 4)), ShapeError, ["gather", "size 4", "size 3", "dim 0"]),
    (lambda x: x.gather(1, ember.tensor([[4]])), IndexError, ["gather", "index 4", "[0, 4)", "dim 1"]),
    (lambda x: x.gather(1, ember.tensor([[-1]])), IndexError, ["gather", "-1"]),
    (lambda x: x.gather(2, ember.tensor([[0]])), Exception, ["gather", "dim"]),
    (lambda x: x.masked_fill(ember.tensor([1, 0, 1, 0]), 0.0), DTypeError, ["masked_fill", "bool", "int64"]),
    (lambda x: x.masked_fill(ember.ones(2, 3, 4).bool(), 0.0), ShapeError, ["masked_fill", "(2, 3, 4)", "(3, 4)"]),
    (lambda x: x.masked_fill(x > 0, ember.ones(2)), ShapeError, ["masked_fill", "0-d"]),
    (lambda x: x.topk(5), ValueError, ["topk", "[0, 4]", "5"]),
    (lambda x: x.topk(-1), ValueError, ["topk", "-1"]),
    (lambda x: x.narrow(1, 3, 2), IndexError, ["narrow", "start 3", "length 2", "size 4"]),
    (lambda x: x.roll((1, 2), (0,)), ValueError, ["roll", "2 shifts", "1 dims"]),
    (lambda x: x.roll((1, 2)), ValueError, ["roll", "one int"]),
    (lambda x: x[None].t(), ShapeError, ["t", "(1, 3, 4)"]),
    (lambda x: ember.bmm(x, x), ShapeError, ["bmm", "3-D", "(3, 4)"]),
    (lambda x: ember.bmm(x.reshape(1, 3, 4), ember.ones(2, 4, 3)), ShapeError, ["bmm", "1 != 2"]),
    (lambda x: x.mm(x.reshape(3, 4, 1)), ShapeError, ["mm", "2-D", "(3, 4, 1)"]),
    (lambda x: ember.einsum("ii->i", ember.ones(3, 3)), ShapeError, ["einsum", "'i' repeats", "operand 0"]),
    (lambda x: ember.einsum("ij,jk", x, x), ShapeError, ["einsum", "'j'", "size 4", "3", "[(3, 4), (3, 4)]"]),
    (lambda x: ember.einsum("ij,jk", x), ShapeError, ["einsum", "2 operands", "1 were given"]),
    (lambda x: ember.einsum("iJ", x), ShapeError, ["einsum", "lowercase", "'iJ'"]),
    (lambda x: ember.einsum("ij->ik", x), ShapeError, ["einsum", "'k'", "no operand"]),
    (lambda x: ember.einsum("ijk", x), ShapeError, ["einsum", "2 dims", "'ijk'"]),
])
def test_bad_input_is_named(call, err, words):
    x = ember.randn(3, 4)
    with pytest.raises(err) as e:
        call(x)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_one_hot_matches_torch_and_checks_labels():
    y = np.array([[1, 0], [3, 2]])
    np.testing.assert_array_equal(F.one_hot(ember.tensor(y), 5).numpy(),
                                  torch.nn.functional.one_hot(torch.from_numpy(y), 5).numpy())
    assert F.one_hot(ember.tensor(y)).shape == (2, 2, 4) and F.one_hot(ember.tensor(y)).dtype == np.int64
    with pytest.raises(IndexError, match=r"one_hot: label 3 is out of range \[0, 3\)"):
        F.one_hot(ember.tensor(y), 3)
    with pytest.raises(IndexError, match="one_hot: label -1"):
        F.one_hot(ember.tensor([0, -1]))
    with pytest.raises(DTypeError, match="one_hot: index must be an integer tensor"):
        F.one_hot(ember.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="empty"):
        F.one_hot(ember.tensor(np.zeros(0, dtype=np.int64)))


def test_values_indices_are_named_and_unpack():
    x = ember.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]])
    for res in (x.max(1), x.min(1), x.sort(1), x.topk(2)):
        v, i = res
        assert v is res.values and i is res.indices and i.dtype == np.int64
    np.testing.assert_array_equal(x.topk(2).indices.numpy(), [[0, 2], [1, 2]])
    np.testing.assert_array_equal(x.sort(1, descending=True).values.numpy(), [[3, 2, 1], [5, 4, 0]])


def test_top5_accuracy_idiom():
    logits = ember.tensor(np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32))
    y = ember.tensor(np.random.default_rng(1).integers(0, 10, 64))
    hit = (logits.topk(5).indices == y[:, None]).any(1)
    want = (torch.from_numpy(logits.numpy()).topk(5).indices == torch.from_numpy(y.numpy())[:, None]).any(1)
    np.testing.assert_array_equal(hit.numpy(), want.numpy())


def test_manual_cross_entropy_by_gather_matches_f_cross_entropy():
    rng = np.random.default_rng(2)
    z = ember.tensor(rng.standard_normal((8, 5)), requires_grad=True)
    y = ember.tensor(rng.integers(0, 5, 8))
    loss = -z.log_softmax(1).gather(1, y[:, None]).mean()
    loss.backward()
    z2 = ember.tensor(z.detach().numpy(), requires_grad=True)
    ref = F.cross_entropy(z2, y)
    ref.backward()
    np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-12)
    np.testing.assert_allclose(z.grad.numpy(), z2.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_cumsum_of_ints_is_int64_like_torch():
    a = np.array([[1, 2], [3, 4]], dtype=np.int32)
    got = ember.cumsum(ember.tensor(a), 0)
    assert got.dtype == torch.cumsum(torch.from_numpy(a), 0).numpy().dtype == np.int64

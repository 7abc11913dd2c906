"""ember.parallel: large copies split across threads give exactly the serial result."""
import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember import parallel


@pytest.fixture
def threads(monkeypatch):
    """Force the threaded path on small arrays, with an odd thread count (uneven slabs)."""
    old = parallel.get_num_threads()
    monkeypatch.setattr(parallel, "MIN_ELEMENTS", 1)
    parallel.set_num_threads(3)
    yield 3
    parallel.set_num_threads(old)


def test_assign_and_add_into_match_numpy(threads):
    rng = np.random.default_rng(0)
    src = rng.standard_normal((7, 5, 6, 4)).astype(np.float32)
    out = np.empty((7, 4, 5, 6), np.float32)
    parallel.assign(out, src.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(out, src.transpose(0, 3, 1, 2))
    acc = np.ones((7, 4, 5, 6), np.float32)
    parallel.add_into(acc[:, :, ::2], out[:, :, ::2])  # strided destination view
    expected = np.ones((7, 4, 5, 6), np.float32)
    expected[:, :, ::2] += out[:, :, ::2]
    np.testing.assert_array_equal(acc, expected)


def test_split_cuts_the_first_axis_long_enough(threads):
    seen = []

    def record(dst, src):
        seen.append(dst.shape)
        dst[...] = src

    src = np.arange(2 * 9 * 4, dtype=np.float64).reshape(2, 9, 4)
    out = np.zeros_like(src)
    parallel.split(record, out, src)  # batch of 2 < 3 threads: split the 9 rows instead
    np.testing.assert_array_equal(out, src)
    assert sorted(s[1] for s in seen) == [3, 3, 3] and all(s[0] == 2 for s in seen)


def test_split_falls_back_for_mismatched_shapes_and_reraises(threads):
    out = np.zeros((6, 4))
    parallel.split(lambda d, s: d.__setitem__(Ellipsis, s), out, np.ones(4))  # broadcast: serial path
    assert out.sum() == 24

    def boom(dst, src):
        if dst.shape[0] and dst[0, 0] == 0 and src[0, 0] > 3:
            raise RuntimeError("worker failed")

    with pytest.raises(RuntimeError, match="worker failed"):
        parallel.split(boom, np.zeros((6, 4)), np.arange(24.0).reshape(6, 4))


def test_set_num_threads_validates():
    for bad in (0, -2, 1.5, "2", True):
        with pytest.raises(ValueError, match="set_num_threads"):
            parallel.set_num_threads(bad)


def test_env_variable_sets_the_default(monkeypatch):
    monkeypatch.setenv("EMBER_NUM_THREADS", "5")
    assert parallel._default_threads() == 5
    monkeypatch.setenv("EMBER_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="EMBER_NUM_THREADS"):
        parallel._default_threads()


@pytest.mark.parametrize("cin,stride,groups", [(16, 1, 1), (16, 2, 1), (2, 1, 1), (16, 1, 4)])
def test_conv2d_threaded_equals_serial(cin, stride, groups):
    """Forward and all gradients of conv2d are bitwise equal with 1 and with 3 copy threads."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, cin, 11, 9)).astype(np.float32)
    w = rng.standard_normal((8, cin // groups, 3, 3)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)

    def run():
        xt, wt, bt = (ember.tensor(a, requires_grad=True) for a in (x, w, b))
        y = F.conv2d(xt, wt, bt, stride=stride, padding=1, groups=groups)
        (y * y).sum().backward()
        return [y.data, xt.grad.data, wt.grad.data, bt.grad.data]

    old, old_min = parallel.get_num_threads(), parallel.MIN_ELEMENTS
    try:
        parallel.set_num_threads(1)
        serial = run()
        parallel.MIN_ELEMENTS = 1
        parallel.set_num_threads(3)
        threaded = run()
    finally:
        parallel.MIN_ELEMENTS = old_min
        parallel.set_num_threads(old)
    for a, c in zip(serial, threaded):
        np.testing.assert_array_equal(a, c)

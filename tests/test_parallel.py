"""ember.parallel: CPU convolution chunks shared among threads, BLAS at one thread meanwhile."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember import parallel
from ember.ops import conv_lowering

torch = pytest.importorskip("torch")


def test_split_keeps_order_and_balances():
    items = list(range(10))
    parts = parallel.split(items, 3)
    assert parts == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert parallel.split(items, 1) == [items]
    assert sum(parallel.split(items, 4), []) == items


def _blas_threads():
    return [c.get_num_threads() for c in parallel._blas_controllers()]


def test_run_parts_runs_parts_on_threads_in_order_and_restores_blas():
    before = _blas_threads()
    seen = []

    def work(part):
        seen.append((threading.current_thread().name, _blas_threads()))
        return sum(part)

    assert parallel.run_parts(work, list(range(10)), 2) == [sum(range(5)), sum(range(5, 10))]
    assert _blas_threads() == before
    if parallel._blas_controllers():  # with threadpoolctl: the caller and a worker, BLAS on one thread
        names = {name for name, _ in seen}
        caller = threading.current_thread().name
        assert caller in names and len(names) == 2 and all(n.startswith("ember-chunks") for n in names - {caller})
        assert all(all(n == 1 for n in counts) for _, counts in seen)


def test_run_parts_propagates_errors_and_stays_usable():
    before = _blas_threads()

    def work(part):
        if 3 in part:
            raise ValueError("part with 3")
        return len(part)

    with pytest.raises(ValueError, match="part with 3"):
        parallel.run_parts(work, list(range(6)), 2)
    assert _blas_threads() == before
    assert parallel.run_parts(len, list(range(6)), 2) == [3, 3]  # the region lock was released


def test_threads_for_shares_every_pass_after_the_first_big_one(monkeypatch):
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    monkeypatch.setattr(parallel, "SHARE_FROM", 100)
    monkeypatch.delitem(parallel._state, "sharing", raising=False)
    assert parallel.threads_for(10) == 1
    assert parallel.threads_for(100) == 2
    assert parallel.threads_for(10) == 2  # a small pass next to shared ones shares too


def test_helpers_keep_nothing_of_a_finished_region():
    """A helper thread drops its part's closure once the part is done: the region's arrays (a
    convolution's output) must not stay alive, nor count as referenced (the engine then copies a
    gradient it could have kept: tests/test_autograd.py)."""
    import weakref

    def region():  # like a convolution pass: a closure over the array it writes
        out = np.zeros(1000)

        def work(part):
            out[part[0]:part[-1] + 1] = 1

        return out, work

    out, work = region()
    alive = weakref.ref(out)
    parallel.run_parts(work, list(range(4)), 2)
    del out, work
    assert alive() is None


def test_run_parts_runs_in_turn_while_another_region_is_active():
    names = []
    with parallel._region:  # as if another thread were inside a parallel region
        parallel.run_parts(lambda p: names.append(threading.current_thread().name), [1, 2, 3, 4], 2)
    assert names == [threading.current_thread().name] * 2


@pytest.mark.parametrize("rows", [True, False], ids=["rows", "columns"])
def test_parallel_chunks_give_the_sequential_results(rows, monkeypatch):
    """Force sharing on small convolutions (every lowering: rows, slabs, columns, wide grid, the three
    passes) and compare with the sequential run: forward equal, gradients equal up to summation order."""
    from ember.ops import conv

    rng = np.random.default_rng(0)
    monkeypatch.setattr(conv, "rows_pay", lambda cin_per_group, KW=1: rows)
    monkeypatch.setattr(conv_lowering.batch_chunk, "__defaults__", (4000,))  # several chunks per pass
    monkeypatch.setattr(parallel, "SHARE_FROM", 0)
    monkeypatch.delitem(parallel._state, "sharing", raising=False)
    cases = [((7, 8, 12, 12), (16, 8, 3, 3), dict(padding=1)),          # rows with slabs / wide columns
             ((6, 16, 9, 9), (32, 16, 3, 3), dict(padding=1, stride=2)),  # full rows / plain columns, col2im
             ((5, 16, 20, 20), (8, 16, 3, 3), dict(padding=1))]           # data gradient as a convolution
    for xs, ws, kw in cases:
        x, w = rng.standard_normal(xs).astype(np.float32), (rng.standard_normal(ws) * 0.1).astype(np.float32)
        b = rng.standard_normal(ws[0]).astype(np.float32)
        results = []
        for threads in (1, 3):
            monkeypatch.setattr(parallel, "workers", lambda t=threads: t)
            ts = [ember.Tensor(a, requires_grad=True) for a in (x, w, b)]
            y = F.conv2d(*ts, **kw)
            y.backward(ember.Tensor(np.cos(np.arange(y.numel(), dtype=np.float32)).reshape(y.shape)))
            results.append([y.data] + [t.grad.data for t in ts])
        np.testing.assert_array_equal(results[0][0], results[1][0])
        for seq, par in zip(results[0][1:], results[1][1:]):
            np.testing.assert_allclose(par, seq, rtol=1e-5, atol=1e-5)


def test_to_nhwc_shared_among_threads_matches_one_copy(monkeypatch, rng):
    """The padded channels-last copy that precedes a convolution is cut into runs of images per thread."""
    from ember.ops.im2row import channels_last, to_nhwc

    monkeypatch.setattr(parallel, "workers", lambda: 3)
    monkeypatch.setattr(parallel, "SHARE_FROM", 0)
    for shape in ((5, 64, 32, 32), (4, 3, 7, 9), (1, 8, 5, 5)):
        x = rng.standard_normal(shape).astype(np.float32)
        for pads in ((0, 0, 0, 0), (1, 2, 0, 3)):
            t, b, l, r = pads
            ref = np.pad(x.transpose(0, 2, 3, 1), ((0, 0), (t, b), (l, r), (0, 0)))
            np.testing.assert_array_equal(to_nhwc(x, pads), ref)
            np.testing.assert_array_equal(to_nhwc(channels_last(x), pads), ref)


def test_relu_and_batch_norm_shared_by_rows_match_one_pass(monkeypatch, rng):
    """ReLU's and batch norm's elementwise passes and the sums of same-shaped arrays (residual sums,
    gradients accumulated in backward) run on runs of rows once convolutions share: same values, and
    a sum with a channels-last operand stays channels-last."""
    from ember.backend import is_channels_last, xp_of
    from ember.ops.im2row import channels_last

    if xp_of(np.zeros(1)) is not np:
        pytest.skip("arrays take the GPU branch here (tests.cuda_emulator): fused kernels, no row passes")
    x = rng.standard_normal((6, 8, 5, 5)).astype(np.float32)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    results, shared = [], []
    real_run_parts = parallel.run_parts
    monkeypatch.setattr(parallel, "run_parts", lambda work, items, threads: (
        shared.append(threads), real_run_parts(work, items, threads))[1])
    for sharing in (False, True):
        monkeypatch.setattr(parallel, "workers", lambda: 3)
        monkeypatch.setattr(parallel, "SLICE_FROM", 0)
        if sharing:
            monkeypatch.setitem(parallel._state, "sharing", True)
        else:
            monkeypatch.delitem(parallel._state, "sharing", raising=False)
        out = []
        for data in (x, channels_last(x)):
            t = ember.Tensor(data, requires_grad=True)
            w, b = ember.Tensor(np.linspace(0.5, 2, 8, dtype=np.float32), requires_grad=True), ember.Tensor(
                np.linspace(-1, 1, 8, dtype=np.float32), requires_grad=True)
            y = F.relu(F.batch_norm(t, None, None, w, b, training=True)) + t  # t's gradient: a sum of two
            z = y + ember.Tensor(x)  # an NCHW operand: the sum takes the channels-last one's order
            assert is_channels_last(z.data) == is_channels_last(data)
            z.backward(ember.Tensor(gy))
            out += [z.data, t.grad.data, w.grad.data, b.grad.data]
        results.append(out)
    assert shared.count(3) >= 9  # relu fwd/bwd, batch norm's passes and the sums, each cut in three
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_one_blas_thread_blocks_from_two_threads_restore_the_count():
    """BLAS's thread count is process-wide: overlapping blocks from two threads must leave it as it was."""
    before = _blas_threads()
    inside, done = threading.Barrier(2), threading.Barrier(2)
    seen = []

    def user(first: bool):
        with parallel.one_blas_thread():
            inside.wait()  # both blocks open at once
            seen.append(_blas_threads())
            if first:
                done.wait()  # the first to leave waits until the other is about to leave too
        if not first:
            done.wait()

    threads = [threading.Thread(target=user, args=(i == 0,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _blas_threads() == before
    if parallel._blas_controllers():
        assert all(all(n == 1 for n in counts) for counts in seen), seen
        assert parallel.workers() == min(before)


def test_run_parts_waits_for_the_other_parts_when_the_first_raises():
    finished = []

    def work(part):
        if part[0] == 0:
            raise RuntimeError("first part")
        threading.Event().wait(0.05)  # still running when the first part has already failed
        finished.append(part)
        return part

    with pytest.raises(RuntimeError, match="first part"):
        parallel.run_parts(work, [0, 1], 2)
    if parallel._blas_controllers():
        assert finished == [[1]]  # the region ended only after the worker's part

"""ember.diagnostics.gradcheck: passes correct gradients, catches wrong ones, reports clearly."""
from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.autograd import Function
from ember.diagnostics import GradcheckReport, gradcheck
from ember.diagnostics.gradcheck import GradcheckError, check_tensors


class WrongSquare(Function):
    """x**2 with a backward that is off by a factor of 2 (the classic missing-factor bug)."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, gy):
        return gy * self.x


class WrongOnOneElement(Function):
    def forward(self, x):
        return x * 3

    def backward(self, gy):
        g = gy * 3
        g.reshape(-1)[-1] += 0.05  # one element wrong
        return g


def test_passes_for_correct_gradients_and_reports():
    x = ember.randn(3, 4, requires_grad=True)
    w = ember.randn(4, 2, requires_grad=True)
    report = gradcheck(lambda a, b: (a @ b).tanh(), (x, w))
    assert isinstance(report, GradcheckReport) and report.passed and bool(report)
    assert [e.name for e in report.entries] == ["input 0", "input 1"]
    assert [e.checked for e in report.entries] == [12, 8]
    assert report.max_abs_err < 1e-8
    text = str(report)
    assert "passed" in text and "max abs err" in text and "(3, 4)" in text


def test_inputs_are_float64_copies():
    x = ember.randn(3, requires_grad=True)
    before = x.data.copy()
    seen = []
    gradcheck(lambda a: seen.append(a.dtype) or a.sin(), x)
    assert seen[0] == np.float64
    np.testing.assert_array_equal(x.data, before)  # the caller's tensor is untouched
    assert x.grad is None and x.dtype == np.float32


def test_fails_with_report_on_wrong_gradient():
    x = ember.randn(2, 3, requires_grad=True)
    with pytest.raises(GradcheckError) as info:
        gradcheck(WrongSquare.apply, x)
    assert isinstance(info.value, AssertionError)
    report = info.value.report
    assert not report.passed and report.max_rel_err > 0.3
    assert "FAILED" in str(info.value) and "numeric" in str(info.value)


def test_catches_a_single_wrong_element():
    x = ember.randn(4, 5, requires_grad=True)
    report = gradcheck(WrongOnOneElement.apply, x, raise_exception=False)
    assert not report.passed
    assert "(3, 4)" in report.entries[0].worst


def test_directional_mode_catches_wrong_gradient_and_passes_correct():
    x = ember.randn(50, 40, requires_grad=True)
    report = gradcheck(lambda a: (a * a).sum(1).sqrt(), x, mode="directional")
    assert report.passed and report.entries[0].checked == 4 and report.mode == "directional"
    with pytest.raises(GradcheckError):
        gradcheck(WrongSquare.apply, x, mode="directional", n_directions=2)


def test_non_scalar_and_tuple_outputs():
    x = ember.randn(3, 4, requires_grad=True)
    assert gradcheck(lambda a: a.split(2, dim=1), x).passed
    assert gradcheck(lambda a: a.max(dim=1), x).passed  # (values, int indices): indices are ignored


def test_params_are_checked_and_restored():
    w = ember.randn(4, 3, requires_grad=True)
    b = ember.randn(4, requires_grad=True)
    b.grad = ember.ones(4)
    w_data = w.data
    x = ember.randn(5, 3, requires_grad=False)
    report = gradcheck(lambda inp: (inp @ w.T + b).tanh(), x, params=[w, b], names=["weight", "bias"])
    assert [e.name for e in report.entries] == ["weight", "bias"]
    assert w.data is w_data and w.dtype == np.float32 and b.grad.numpy().tolist() == [1.0] * 4
    # A wrong backward that only affects a parameter is caught.
    with pytest.raises(GradcheckError, match="param 0"):
        gradcheck(lambda inp: WrongSquare.apply(w) * inp.sum(), x, params=[w])


def test_inputs_not_requiring_grad_are_constants():
    x = ember.randn(3, requires_grad=True)
    c = ember.randn(3)
    report = gradcheck(lambda a, k, n: a * k * n, (x, c, 2.0))
    assert len(report.entries) == 1


def test_nothing_to_check_and_bad_mode():
    with pytest.raises(ValueError, match="nothing to check"):
        gradcheck(lambda a: a * 2, ember.randn(3))
    with pytest.raises(ValueError, match="mode"):
        gradcheck(lambda a: a * 2, ember.randn(3, requires_grad=True), mode="fast")


def test_nan_gradient_fails():
    class NanGrad(Function):
        def forward(self, x):
            return x * 1

        def backward(self, gy):
            return gy * np.nan

    with pytest.raises(GradcheckError):
        gradcheck(NanGrad.apply, ember.randn(2, requires_grad=True))


def test_check_tensors_building_block():
    # The layer gradcheck_model builds on: a closure over float64 leaves.
    a = ember.randn(3, dtype=ember.float64, requires_grad=True)
    report = check_tensors(lambda: (a.exp() * a).sum(), [a], ["a"])
    assert report.passed and report.entries[0].name == "a"

"""Metrics and verdicts against values computed by hand."""

import numpy as np
import pytest

from harness.compare import judge, metrics
from harness.scenario import OutputSpec, Tolerance


def test_metrics_by_hand():
    reference = np.array([1.0, -2.0, 0.0, 4.0])
    target = np.array([1.1, -2.0, 0.001, 3.0])
    m = metrics(target, reference)
    assert m["max_abs"] == pytest.approx(1.0)
    assert m["mean_abs"] == pytest.approx((0.1 + 0 + 0.001 + 1.0) / 4)
    # |0.001 - 0| / max(|0|, 1e-6) = 1000: the floor keeps it finite.
    assert m["max_rel"] == pytest.approx(1000.0)
    cosine = np.dot(target, reference) / (np.linalg.norm(target) * np.linalg.norm(reference))
    assert m["cosine"] == pytest.approx(cosine)
    assert m["argmax_agreement"] is None


def test_argmax_agreement_over_class_axis():
    # samples x batch x classes x positions: 2 classes, 4 pixels, one flip.
    reference = np.array([[[[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]]])
    target = reference.copy()
    target[0, 0, 0, 3] = 2.0  # pixel 3 now says class 0
    m = metrics(target, reference, kind="class_logits", class_axis=1)
    assert m["argmax_agreement"] == pytest.approx(0.75)


def test_identical_outputs_are_perfect():
    x = np.random.default_rng(0).normal(size=(2, 1, 5, 3, 3))
    m = metrics(x, x, kind="class_logits")
    assert m["max_abs"] == 0 and m["cosine"] == pytest.approx(1.0) and m["argmax_agreement"] == 1.0


def test_verdict_lists_every_broken_limit():
    reference = np.zeros((1, 1, 3, 2, 2)); reference[:, :, 0] = 1.0
    target = reference.copy(); target[0, 0, 1, 0, 0] = 5.0
    spec = OutputSpec(kind="class_logits", tolerance=Tolerance(max_abs=0.1, min_argmax_agreement=0.9))
    verdict = judge("logits", target, reference, spec)
    assert not verdict.passed
    assert any("max_abs 5 > 0.1" in r for r in verdict.reasons)
    assert any("argmax_agreement 75.0000% < 90.0000%" in r for r in verdict.reasons)
    assert judge("logits", reference, reference, spec).passed


def test_shape_mismatch_and_nan_fail_with_reason():
    spec = OutputSpec()
    assert "shape" in judge("y", np.zeros((1, 2)), np.zeros((1, 3)), spec).reasons[0]
    assert "NaN" in judge("y", np.array([np.nan, 1.0]), np.zeros(2), spec).reasons[0]

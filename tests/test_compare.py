"""Metrics and verdicts against values computed by hand."""

import numpy as np
import pytest

from harness.analysis.compare import judge, metrics, per_class_iou
from harness.config.scenario import OutputSpec, Tolerance

LOGITS = OutputSpec(kind="class_logits", class_axis=1)


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
    assert "argmax_agreement" not in m
    errors = np.array([0.1, 0.0, 0.001, 1.0])
    assert m["median_abs"] == pytest.approx(np.median(errors))
    assert m["p99_abs"] == pytest.approx(np.quantile(errors, 0.99))
    assert m["snr_db"] == pytest.approx(10 * np.log10(np.sum(reference ** 2) / np.sum(errors ** 2)))
    mse = np.mean(errors ** 2)
    assert m["psnr_db"] == pytest.approx(10 * np.log10(6.0 ** 2 / mse))  # range: 4 - (-2)
    assert m["required_atol"] == pytest.approx(1.0)
    assert m["nan_count"] == 0 and m["inf_count"] == 0


def test_required_atol_at_an_rtol_and_the_elementwise_verdict():
    reference = np.array([10.0, 1.0])
    target = np.array([10.5, 1.2])  # errors 0.5 and 0.2
    spec = OutputSpec(tolerance=Tolerance(atol=0.15, rtol=0.05))
    m = metrics(target, reference, spec)
    assert m["required_atol"] == pytest.approx(max(0.5 - 0.5, 0.2 - 0.05))  # 0.15
    assert judge("y", target, reference, spec).passed
    tighter = OutputSpec(tolerance=Tolerance(atol=0.1, rtol=0.05))
    verdict = judge("y", target, reference, tighter)
    assert not verdict.passed and "needs atol 0.15" in verdict.reasons[0]


def test_flips_split_into_benign_and_hard_by_the_reference_margin():
    # 1 sample, batch 1, 3 classes, 4 pixels. Reference margins: 0.05, 2.0, 0.01, 3.0.
    reference = np.array([[[[1.00, 3.0, 0.50, 4.0],
                            [0.95, 1.0, 0.49, 1.0],
                            [0.00, 0.0, 0.00, 0.0]]]])
    target = reference.copy()
    target[0, 0, 1, 0] = 1.10  # pixel 0: near-tie tipped -> benign
    target[0, 0, 1, 1] = 5.00  # pixel 1: confident label changed -> hard
    m = metrics(target, reference, OutputSpec(kind="class_logits", benign_margin=0.1))
    assert m["argmax_agreement"] == pytest.approx(0.5)
    assert m["benign_flips"] == pytest.approx(0.25) and m["hard_flips"] == pytest.approx(0.25)
    # Labels: reference [0,0,0,0], target [1,1,0,0]: IoU(0) = 2/4, IoU(1) = 0/2.
    assert m["miou"] == pytest.approx((0.5 + 0.0) / 2)
    assert per_class_iou(target, reference, 1) == {0: 0.5, 1: 0.0}
    # The record files them by the class's index as JSON keeps it, a live record the same as a stored one.
    assert judge("logits", target, reference, OutputSpec(kind="class_logits")).per_class_iou == {"0": 0.5, "1": 0.0}
    strict = OutputSpec(kind="class_logits", tolerance=Tolerance(max_hard_flips=0.0))
    assert "hard_flips 25.000% > 0.000%" in judge("logits", target, reference, strict).reasons


def test_probability_map_mask_iou():
    reference = np.array([0.1, 0.4, 0.6, 0.9])
    target = np.array([0.1, 0.2, 0.6, 0.95])  # masks at 0.3: [0,1,1,1] vs [0,0,1,1]
    m = metrics(target, reference, OutputSpec(kind="probability_map", threshold=0.3))
    assert m["miou"] == pytest.approx(2 / 3)


def test_argmax_agreement_over_class_axis():
    # samples x batch x classes x positions: 2 classes, 4 pixels, one flip.
    reference = np.array([[[[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]]])
    target = reference.copy()
    target[0, 0, 0, 3] = 2.0  # pixel 3 now says class 0
    m = metrics(target, reference, LOGITS)
    assert m["argmax_agreement"] == pytest.approx(0.75)


def test_identical_outputs_are_perfect():
    x = np.random.default_rng(0).normal(size=(2, 1, 5, 3, 3))
    m = metrics(x, x, LOGITS)
    assert m["max_abs"] == 0 and m["cosine"] == pytest.approx(1.0) and m["argmax_agreement"] == 1.0
    assert m["snr_db"] == float("inf") and m["psnr_db"] == float("inf") and m["miou"] == 1.0
    assert m["hard_flips"] == 0.0 and m["benign_flips"] == 0.0


def test_verdict_lists_every_broken_limit():
    reference = np.zeros((1, 1, 3, 2, 2)); reference[:, :, 0] = 1.0
    target = reference.copy(); target[0, 0, 1, 0, 0] = 5.0
    spec = OutputSpec(kind="class_logits", tolerance=Tolerance(max_abs=0.1, min_argmax_agreement=0.9))
    assert judge("logits", reference, reference, spec).passed
    verdict = judge("logits", target, reference, spec)
    assert not verdict.passed
    assert any("max_abs 5 > 0.1" in r for r in verdict.reasons)
    assert any("argmax_agreement 75.000% < 90.000%" in r for r in verdict.reasons)
    assert verdict.reasons[0].startswith("argmax_agreement")  # what users act on comes first
    assert judge("logits", reference, reference, spec).passed


def test_shape_mismatch_and_nan_fail_with_reason():
    spec = OutputSpec()
    assert "shape" in judge("y", np.zeros((1, 2)), np.zeros((1, 3)), spec).reasons[0]
    verdict = judge("y", np.array([np.nan, np.inf, 1.0]), np.zeros(3), spec)
    assert not verdict.passed and "1 NaN and 1 Inf" in verdict.reasons[0]


def test_mask_changes_are_counted_and_placed_at_the_edges_or_away_from_them():
    reference = np.zeros((1, 1, 1, 8, 8))
    reference[..., 2:5, 2:5] = 0.9  # a 3x3 mask
    spec = OutputSpec(kind="probability_map", threshold=0.5)
    grown = reference.copy()
    grown[..., 5, 2:5] = 0.6  # a row added along its edge
    m = metrics(grown, reference, spec)
    assert (m["mask_changed"], m["mask_added"], m["mask_removed"], m["mask_size"], m["mask_area"]) == (3, 3, 0, 9, 64)
    assert m["mask_changed_at_edge"] == 3 and m["miou"] == pytest.approx(9 / 12)
    blob = reference.copy()
    blob[..., 7, 7] = 0.8  # a pixel far from it
    blob[..., 3, 3] = 0.1  # a hole in its middle
    m = metrics(blob, reference, spec)
    assert (m["mask_changed"], m["mask_added"], m["mask_removed"], m["mask_changed_at_edge"]) == (2, 1, 1, 0)
    # NHWC maps ([1, H, W, 1]) have their rows and columns on other axes: the same edges.
    nhwc = metrics(np.moveaxis(grown, 2, -1), np.moveaxis(reference, 2, -1), spec)
    assert nhwc["mask_changed_at_edge"] == 3


def test_a_mask_empty_on_both_sides_is_not_100_percent_and_is_judged_by_its_distance_to_the_threshold():
    """PP-OCR's detector on an image without text: every probability under 1e-6 against 0.3. IoU is 0/0 there;
    such samples are judged by whether a difference could put a pixel in the mask."""
    rng = np.random.default_rng(0)
    empty = rng.random((1, 1, 1, 16, 16)) * 1e-6
    spec = OutputSpec(kind="probability_map", threshold=0.3, tolerance=Tolerance(min_miou=0.999))
    noisy = empty * rng.uniform(0.5, 1.5, size=empty.shape)  # an SNR of ~15 dB, and nothing near 0.3
    result = judge("p", noisy, empty, spec)
    assert result.passed and result.metrics["miou"] is None and result.metrics["mask_empty_samples"] == 1
    assert result.metrics["mask_empty_snr_db"] < 20 and result.metrics["mask_empty_margin"] < 1e-5
    (note,) = result.notes
    assert "1 of 1 sample(s) empty on both sides" in note and "IoU cannot judge" in note
    garbage = np.full_like(empty, -4.3e37)  # an overflow that stays under the threshold: still an empty mask
    result = judge("p", garbage, empty, spec)
    assert not result.passed and result.metrics["mask_empty_margin"] > 1e37
    assert result.reasons[0].startswith("mask_empty_margin 1.43e+38 > 1")
    assert "put pixels in the mask" in result.reasons[0]
    # A second sample with a mask: IoU judges that one, the empty one is judged as above.
    page = np.concatenate([empty, np.where(rng.random(empty.shape) > 0.5, 0.9, 0.0)])
    result = judge("p", page, page, spec)
    assert result.passed and result.metrics["miou"] == 1.0 and result.metrics["mask_empty_samples"] == 1
    assert "1 of 2 sample(s)" in result.notes[0]

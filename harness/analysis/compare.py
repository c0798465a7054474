"""Comparing one set of outputs with a reference's: metrics, then a verdict with its reasons.

Metrics (float64, over every element of every sample that is finite on both
sides), at least what the best comparators give (Polygraphy's error statistics,
Qualcomm AI Hub's PSNR):
- abs error |target - reference|: max_abs, mean_abs, median_abs, p99_abs;
- rel error |target - reference| / max(|reference|, REL_FLOOR) (the floor keeps
  near-zero references from turning noise into infinity): max_rel, mean_rel,
  median_rel, p99_rel;
- cosine: cosine similarity of the flattened outputs (ignores a common scale);
- snr_db: 10 log10(sum reference^2 / sum error^2); psnr_db: 10 log10(range^2 / mse)
  with the reference's peak-to-peak range (inf when identical);
- nan_count, inf_count: of the target. Any fails the output on its own, and
  `nonfinite` (analysis/nonfinite.py) says where they are and what the
  reference has there; the statistics above leave those positions out, so they
  still say how far the rest of the output is;
- required_atol: the smallest atol that passes the elementwise check at the
  scenario's rtol (Polygraphy's "minimum required tolerance").
class_logits outputs add, along the class axis:
- argmax_agreement: share of positions with the same top class;
- miou: mean over classes present in either label map of their IoU;
- benign_flips / hard_flips: shares of positions whose label changed where the
  reference's top-1 minus top-2 margin is below / above `benign_margin`: a
  benign flip is a near-tie tipped by a tiny error, a hard flip a confident
  label that changed.
probability_map outputs add miou: the IoU of the two masks at `threshold`, over
the samples whose masks are not both empty (None when every one is); what
changed (mask_changed, mask_added, mask_removed against x86's mask_size of
mask_area elements; mask_changed_at_edge: those next to the edge of x86's mask);
and for samples whose masks are empty on both sides, which IoU cannot judge,
mask_empty_samples, both sides' largest value there (mask_empty_peak,
mask_empty_target_peak), their snr_db (mask_empty_snr_db) and
mask_empty_margin: the largest |target - reference| over the reference's
distance to the threshold there (judge() fails it above 1: that difference
alone could put a pixel in the mask).
decision outputs (a score turned into yes/no at `threshold`, e.g. speech per frame)
add decision_agreement and decision_flips: the share and the count of elements
whose decision differs.
Integer outputs (token ids, class indices) are compared exactly: `mismatches`
counts the elements that differ, and any is a failure.
For a stream, `series` keeps, per step, the max abs error and, for an output
with one value per step, both sides' values; error_growth is the median error
of the last third of the steps over that of the first third.
"""

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core.results import TargetResult
from ..config.scenario import LOWER_LIMITS, UPPER_LIMITS, OutputSpec, Scenario
from ..record.numbers import ACTED_ON, format_metric
from ..record.run import Comparison, LimitFailure, OutputComparison, ParityRecord, Series, stacked_axis
from ..record.run_folder import decode_error_file
from .decoded import judge_decoded
from .nonfinite import find_nonfinite

REL_FLOOR = 1e-6


def metrics(target: np.ndarray, reference: np.ndarray, spec: OutputSpec = OutputSpec()) -> dict:
    """The comparison metrics of two same-shaped arrays; see the module docstring."""
    a = np.asarray(target, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    result: Dict[str, Optional[float]] = {"nan_count": int(np.isnan(a).sum()), "inf_count": int(np.isinf(a).sum())}
    # NaN/Inf are counted (and judged) on their own; the statistics describe the positions finite on both sides.
    both = np.isfinite(a) & np.isfinite(b)
    labelled = np.where(np.isfinite(a), a, 0.0)  # labels and masks as before: a NaN/Inf element counts as 0
    a, b_all, b = np.where(both, a, 0.0), b, np.where(both, b, 0.0)
    error = np.abs(a - b)[both].ravel()
    relative = error / np.maximum(np.abs(b[both]).ravel(), REL_FLOOR)
    if error.size == 0:
        if a.size:  # nothing finite on both sides: no statistic is true
            return result
        return {**result, "max_abs": 0.0, "cosine": 1.0}
    for name, values in (("abs", error), ("rel", relative)):
        result[f"max_{name}"] = float(values.max())
        result[f"mean_{name}"] = float(values.mean())
        result[f"median_{name}"] = float(np.median(values))
        result[f"p99_{name}"] = float(np.quantile(values, 0.99))
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    result["cosine"] = float(np.dot(a.ravel(), b.ravel()) / norm) if norm > 0 else float(not a.any() and not b.any())
    signal, noise = float(np.sum(b * b)), float(np.sum(error * error))
    result["snr_db"] = _db(signal, noise)
    peak = float(b[both].max() - b[both].min())
    result["psnr_db"] = _db(peak * peak, noise / error.size)
    rtol = spec.tolerance.rtol or 0.0
    result["required_atol"] = float(max(0.0, (error - rtol * np.abs(b[both]).ravel()).max()))
    if spec.kind == "class_logits":
        result.update(label_metrics(labelled, b_all, spec.class_axis, spec.benign_margin))
    elif spec.kind == "probability_map":
        result.update(mask_metrics(labelled, b_all, spec.threshold))
    elif spec.kind == "decision":
        flipped = (labelled > spec.threshold) != (b_all > spec.threshold)
        result["decision_flips"] = int(flipped.sum())
        result["decision_agreement"] = float(1.0 - flipped.mean())
    if is_integer(target) or is_integer(reference):
        result["mismatches"] = int(np.count_nonzero(labelled != b_all))
    return result


def is_integer(array: np.ndarray) -> bool:
    return np.asarray(array).dtype.kind in "iub"


def step_series(target: np.ndarray, reference: np.ndarray, spec: OutputSpec) -> Series:
    """Per step (axis 0): the max abs error, both sides' values when a step has one, the flipped decisions."""
    a = np.asarray(target, dtype=np.float64).reshape(len(target), -1)
    b = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    error = np.abs(np.where(np.isfinite(a), a, np.inf) - b)
    series = Series([float(v) for v in error.max(axis=1)])
    if a.shape[1] == 1:
        series.target = [float(v) for v in a[:, 0]]
        series.reference = [float(v) for v in b[:, 0]]
    if spec.kind == "decision":
        flipped = ((a > spec.threshold) != (b > spec.threshold)).any(axis=1)
        series.flipped = [int(step) for step in np.flatnonzero(flipped)]
    return series


def error_growth(max_abs: List[float]) -> Optional[float]:
    """Median error of the last third of the steps over the first third's (None with fewer than 3 steps).

    Both medians are floored at 1e-9 and at a thousandth of the largest error, so identical outputs give
    1.0 and a first third of exact zeros does not turn float noise into a huge factor.
    """
    finite = [value for value in max_abs if np.isfinite(value)]
    if len(max_abs) < 3 or len(finite) < len(max_abs):
        return None if len(max_abs) < 3 else float("inf")
    third = len(max_abs) // 3
    floor = max(1e-9, 1e-3 * max(finite))
    first = max(float(np.median(max_abs[:third])), floor)
    last = max(float(np.median(max_abs[-third:])), floor)
    return last / first


def _db(signal: float, noise: float) -> float:
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return float(10.0 * np.log10(signal / noise))


def label_metrics(target: np.ndarray, reference: np.ndarray, class_axis: int, benign_margin: float) -> dict:
    axis = stacked_axis(class_axis)
    labels_t = np.argmax(target, axis=axis)
    labels_r = np.argmax(reference, axis=axis)
    top2 = -np.partition(-reference, 1, axis=axis)
    margin = np.take(top2, 0, axis=axis) - np.take(top2, 1, axis=axis)
    flipped = labels_t != labels_r
    classes = np.union1d(np.unique(labels_t), np.unique(labels_r))
    ious = [float(np.sum((labels_t == c) & (labels_r == c)) / np.sum((labels_t == c) | (labels_r == c)))
            for c in classes]
    return {
        "argmax_agreement": float(1.0 - flipped.mean()),
        "miou": float(np.mean(ious)) if ious else 1.0,
        "benign_flips": float((flipped & (margin < benign_margin)).mean()),
        "hard_flips": float((flipped & (margin >= benign_margin)).mean()),
    }


def per_class_iou(target: np.ndarray, reference: np.ndarray, class_axis: int) -> Dict[int, float]:
    """IoU of each class present in either label map (for reports that want the detail)."""
    axis = stacked_axis(class_axis)
    labels_t, labels_r = np.argmax(target, axis=axis), np.argmax(reference, axis=axis)
    return {int(c): float(np.sum((labels_t == c) & (labels_r == c)) / np.sum((labels_t == c) | (labels_r == c)))
            for c in np.union1d(np.unique(labels_t), np.unique(labels_r))}


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def mask_metrics(target: np.ndarray, reference: np.ndarray, threshold: float) -> dict:
    """A probability map's masks at threshold (samples on axis 0): IoU where there is a mask, what changed and
    where, and the samples whose masks are empty on both sides (IoU cannot judge those: 0/0)."""
    ta, rb = target > threshold, reference > threshold
    empty = ~(ta | rb).reshape(len(ta), -1).any(axis=1)
    judged = ~empty
    changed = ta != rb
    result: Dict[str, Optional[float]] = {
        "miou": mask_iou(ta[judged], rb[judged]) if judged.any() else None,
        "mask_changed": int(changed.sum()), "mask_added": int((ta & ~rb).sum()),
        "mask_removed": int((~ta & rb).sum()), "mask_size": int(rb.sum()), "mask_area": int(rb.size),
        "mask_changed_at_edge": int((changed & mask_edges(rb)).sum()),
        "mask_empty_samples": int(empty.sum())}
    if empty.any():
        a, b = target[empty], reference[empty]
        result["mask_empty_snr_db"] = _db(float(np.sum(b * b)), float(np.sum((a - b) ** 2)))
        result["mask_empty_peak"], result["mask_empty_target_peak"] = float(b.max()), float(a.max())
        distance = threshold - b  # >= 0: no value of an empty mask is above the threshold
        error = np.abs(a - b)
        ratio = np.divide(error, distance, out=np.where(error > 0, np.inf, 0.0), where=distance > 0)
        result["mask_empty_margin"] = float(ratio.max())
    return result


def mask_edges(mask: np.ndarray) -> np.ndarray:
    """The elements of a mask (samples on axis 0) next to its edge: on either side of a change between
    neighbours along the last two axes longer than 1 (the map's rows and columns, NCHW or NHWC)."""
    edges = np.zeros_like(mask)
    axes = [axis for axis in range(1, mask.ndim) if mask.shape[axis] > 1][-2:]
    for axis in axes:
        before = [slice(None)] * mask.ndim
        after = [slice(None)] * mask.ndim
        before[axis], after[axis] = slice(0, -1), slice(1, None)
        step = mask[tuple(before)] != mask[tuple(after)]
        edges[tuple(before)] |= step
        edges[tuple(after)] |= step
    return edges


def argmax_agreement(target: np.ndarray, reference: np.ndarray, class_axis: int) -> float:
    """Fraction of positions with the same top class. class_axis counts in one sample's shape."""
    axis = stacked_axis(class_axis)
    return float((np.argmax(target, axis=axis) == np.argmax(reference, axis=axis)).mean())


def judge(name: str, target: np.ndarray, reference: np.ndarray, spec: OutputSpec,
          stream: bool = False, reference_name: str = "the reference",
          sample_names: Sequence[str] = ()) -> OutputComparison:
    """One output against the reference's: its metrics, and every limit it broke (NaN/Inf first, then what users
    act on, then the elementwise statistics). sample_names name the samples in the NaN/Inf reason."""
    if target.shape != reference.shape:
        return OutputComparison(name, False, failures=[LimitFailure.check(
            "shape", f"shape {list(target.shape)} differs from the reference's {list(reference.shape)}")])
    rank = target.ndim - 1  # samples are stacked on axis 0
    if spec.kind == "class_logits" and not -rank <= spec.class_axis < rank:
        # Checked before the run when the model file declares the rank; this is the run-time net.
        return OutputComparison(name, False, failures=[LimitFailure.check(
            "class_axis", f"class_axis {spec.class_axis} is not an axis of this output (shape "
            f"{list(target.shape[1:])}): set outputs.{name}.class_axis in the scenario")])
    values = metrics(target, reference, spec)
    nonfinite = find_nonfinite(target, reference, sample_names)
    series = step_series(target, reference, spec) if stream and target.ndim >= 1 and len(target) else None
    if series is not None:
        values["error_growth"] = error_growth(series.max_abs)
    if "mismatches" in values:
        # Integers (token ids, class indices) are right or wrong: no tolerance applies.
        failures = [LimitFailure("mismatches", float(values["mismatches"]), 0.0, ">",
                                 f"{values['mismatches']} of {target.size} integer values differ (integers are "
                                 "compared exactly)")] if values["mismatches"] else []
        return OutputComparison(name, not failures, values, failures, series=series)
    limits = spec.tolerance
    first, failures = [], []
    if nonfinite is not None:
        # A NaN/Inf is never within tolerance, on either side: what the user reads first.
        first.append(LimitFailure.check("nonfinite", nonfinite.reason(reference_name)))
    for metric in UPPER_LIMITS:
        limit, value = getattr(limits, metric), values.get(metric)
        if limit is not None and value is not None and value > limit:
            failures.append(LimitFailure(metric, value, limit, ">"))
    for field_name, metric in LOWER_LIMITS.items():
        limit, value = getattr(limits, field_name), values.get(metric)
        if limit is not None and value is not None and value < limit:
            failures.append(LimitFailure(metric, value, limit, "<"))
    if limits.max_hard_flips is not None and values.get("hard_flips", 0.0) > limits.max_hard_flips:
        failures.append(LimitFailure("hard_flips", values["hard_flips"], limits.max_hard_flips, ">"))
    if limits.atol is not None or limits.rtol is not None:
        if values["required_atol"] > (limits.atol or 0.0):
            failures.append(LimitFailure("required_atol", values["required_atol"], limits.atol or 0.0, ">",
                                         f"elementwise |a-b| <= {limits.atol or 0:g} + {limits.rtol or 0:g}*|ref| "
                                         f"fails: needs atol {values['required_atol']:.3g}"))
    notes = []
    if values.get("mask_empty_samples"):
        passed, text = empty_mask_verdict(values, spec, len(target))
        if passed:
            notes.append(text)
        else:
            failures.append(LimitFailure("mask_empty_margin", values["mask_empty_margin"], 1.0, ">", text))
    # What users act on (labels, masks, flips) before the elementwise statistics; NaN/Inf before everything.
    failures.sort(key=lambda failure: 0 if failure.metric in ACTED_ON else 1)
    failures = first + failures
    per_class = per_class_iou(target, reference, spec.class_axis) if spec.kind == "class_logits" else {}
    return OutputComparison(name, not failures, values, failures, notes, {str(c): v for c, v in per_class.items()},
                            series, nonfinite)


def empty_mask_verdict(values: dict, spec: OutputSpec, samples: int) -> Tuple[bool, str]:
    """(passed, what it rests on) for the samples whose masks are empty on both sides.

    IoU is 0/0 there, so it says nothing (it used to say "100.000%"). What the
    two maps can still disagree on is how near the threshold they come: the
    samples fail when some difference is larger than the reference's own
    distance to the threshold (mask_empty_margin > 1), a difference that alone
    could put a pixel in the mask (a board's garbage, an overflow). The tensor
    kind's SNR floor cannot judge them: on PP-OCR's detector over a page
    without text (values up to 1.2e-6 against 0.3, a sigmoid saturated at
    float32's floor) MNN on x86 against ONNX Runtime, a faithful conversion,
    gave 9.4 dB, and FP16 on an A76 12.7 dB; the snr_db is kept for the record.
    """
    count, margin = values["mask_empty_samples"], values.get("mask_empty_margin") or 0.0
    snr = values.get("mask_empty_snr_db")
    where = (f"{count} of {samples} sample(s) empty on both sides (no value above the threshold {spec.threshold:g}: "
             f"the largest are {values.get('mask_empty_target_peak', 0.0):.2g}, and "
             f"{values.get('mask_empty_peak', 0.0):.2g} on the reference), which IoU cannot judge")
    if margin > 1.0:
        return False, (f"mask_empty_margin {margin:.3g} > 1: where the mask is empty the values differ by more than "
                       f"their distance to the threshold, enough to put pixels in the mask ({where})")
    shown = "inf dB" if snr is None or math.isinf(snr) else format_metric(snr, "snr_db", "text")
    return True, (f"mask {where}; there every difference stays under the values' distance to the threshold "
                  f"(at most {margin:.2g} of it; snr_db {shown})")


def compare_target(scenario: Scenario, target: TargetResult, reference: TargetResult,
                   output_names: List[str], sample_names: Sequence[str] = ()) -> Comparison:
    """Every output of output_names; for a stream, step by step too; then every decoded output. sample_names:
    the inputs' samples by name (a stream's are its steps)."""
    comparison = Comparison(reference=reference.target)
    if not reference.ok:
        comparison.error = f"the reference {reference.target} failed: {reference.error}"
        return comparison
    if not target.ok:
        comparison.error = target.error or target.status
        return comparison
    for name in output_names:
        if name not in target.outputs or name not in reference.outputs:
            comparison.outputs[name] = OutputComparison(name, False, failures=[LimitFailure.check("output",
                                                                                                  "output missing")])
            continue
        stream = scenario.stream is not None
        names = [f"step {step}" for step in range(len(target.outputs[name]))] if stream else sample_names
        comparison.outputs[name] = judge(name, target.outputs[name], reference.outputs[name],
                                         scenario.output_spec(name), stream=stream, reference_name=reference.target,
                                         sample_names=names)
    for result in judge_decoded(scenario, target.outputs, reference.outputs, target.target, reference.target,
                                list(comparison.outputs.values()), list(sample_names)):
        if result.traceback and result.record is not None:
            result.record.traceback = decode_error_file(target.target, result.name)
        comparison.outputs[result.name] = OutputComparison(result.name, result.passed, result.metrics,
                                                           result.failures, notes=result.notes,
                                                           decoded=result.record, traceback=result.traceback)
    return comparison


def compare_preprocessing(backend: Optional[str], board: np.ndarray, host: np.ndarray, std: tuple, layout: str,
                          max_abs: float) -> ParityRecord:
    """The board's own preprocessing against the host's tensors (the same images, the same spec)."""
    if board.shape != host.shape:
        return ParityRecord(False, backend, error=f"shape {list(board.shape)} differs from the host's "
                            f"{list(host.shape)}: the resize size differs")
    values = metrics(board, host)
    channel_axis = -3 if layout == "NCHW" else -1
    # A normalized unit is std/scale gray levels; the worst channel says how many levels apart they are.
    levels = values["max_abs"] * max(std) * 255.0
    hint = ""
    if values["max_abs"] > max_abs:
        swapped = np.flip(host, axis=channel_axis)
        straight = np.mean([_correlation(np.take(board, c, channel_axis), np.take(host, c, channel_axis))
                            for c in range(3)])
        crossed = np.mean([_correlation(np.take(board, c, channel_axis), np.take(swapped, c, channel_axis))
                           for c in range(3)])
        if crossed > straight + 0.01:
            hint = "the channel order is swapped (BGR against RGB)"
        else:
            hint = (f"values differ by up to ~{levels:.0f} gray levels at the same size: the resize "
                    "interpolation or its rounding differs")
    values["gray_levels"] = levels
    return ParityRecord(values["max_abs"] <= max_abs, backend, values, hint)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])

"""Comparing one target's outputs with the reference's: metrics, then a verdict with its reasons.

Metrics (all computed in float64 over every element of every sample):
- max_abs, mean_abs: of |target - reference|;
- max_rel: max of |target - reference| / max(|reference|, REL_FLOOR), so
  that near-zero reference values do not turn noise into infinity;
- cosine: cosine similarity of the two flattened outputs (1.0 is identical
  direction; it ignores a common scale);
- argmax_agreement (class_logits outputs only): the fraction of positions
  (pixels) whose top class is the same on both sides, taken along the
  scenario's class axis. The number a user of a segmentation model sees.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from .results import TargetResult
from .scenario import OutputSpec, Scenario

REL_FLOOR = 1e-6


@dataclass
class OutputComparison:
    output: str
    passed: bool
    metrics: Dict[str, Optional[float]] = field(default_factory=dict)
    reasons: List[str] = field(default_factory=list)
    """Why it failed (empty when it passed)."""


@dataclass
class TargetComparison:
    """One target against the reference, output by output."""

    target: str
    reference: str
    outputs: List[OutputComparison] = field(default_factory=list)
    error: Optional[str] = None
    """Set when there was nothing to compare (the target or the reference failed)."""

    @property
    def passed(self) -> bool:
        return self.error is None and all(output.passed for output in self.outputs)

    def __bool__(self) -> bool:
        return self.passed


def metrics(target: np.ndarray, reference: np.ndarray, kind: str = "tensor", class_axis: int = 1) -> dict:
    """The comparison metrics of two same-shaped arrays; see the module docstring."""
    a = np.asarray(target, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    difference = np.abs(a - b)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    if norm > 0:
        cosine = float(np.dot(a.ravel(), b.ravel()) / norm)
    else:
        cosine = 1.0 if not a.any() and not b.any() else 0.0
    result = {
        "max_abs": float(difference.max()) if difference.size else 0.0,
        "mean_abs": float(difference.mean()) if difference.size else 0.0,
        "max_rel": float((difference / np.maximum(np.abs(b), REL_FLOOR)).max()) if difference.size else 0.0,
        "cosine": cosine,
        "argmax_agreement": None,
    }
    if kind == "class_logits":
        result["argmax_agreement"] = argmax_agreement(a, b, class_axis)
    return result


def argmax_agreement(target: np.ndarray, reference: np.ndarray, class_axis: int) -> float:
    """Fraction of positions with the same top class. class_axis counts in one sample's shape."""
    axis = class_axis + 1 if class_axis >= 0 else class_axis  # samples are stacked on axis 0
    same = np.argmax(target, axis=axis) == np.argmax(reference, axis=axis)
    return float(same.mean())


def judge(name: str, target: np.ndarray, reference: np.ndarray, spec: OutputSpec) -> OutputComparison:
    if target.shape != reference.shape:
        return OutputComparison(name, False, reasons=[
            f"shape {list(target.shape)} differs from the reference's {list(reference.shape)}"])
    finite = np.isfinite(target)
    if not finite.all():
        count = int(finite.size - np.count_nonzero(finite))
        return OutputComparison(name, False, reasons=[f"{count} NaN/Inf values"])
    values = metrics(target, reference, spec.kind, spec.class_axis)
    limits = spec.tolerance
    reasons = []
    for metric, limit, is_upper in (("max_abs", limits.max_abs, True), ("mean_abs", limits.mean_abs, True),
                                    ("max_rel", limits.max_rel, True), ("cosine", limits.min_cosine, False),
                                    ("argmax_agreement", limits.min_argmax_agreement, False)):
        value = values.get(metric)
        if limit is None or value is None:
            continue
        if is_upper and value > limit:
            reasons.append(f"{metric} {value:.3g} > {limit:g}")
        elif not is_upper and value < limit:
            shown = f"{value:.4%}" if metric == "argmax_agreement" else f"{value:.6f}"
            wanted = f"{limit:.4%}" if metric == "argmax_agreement" else f"{limit:g}"
            reasons.append(f"{metric} {shown} < {wanted}")
    return OutputComparison(name, not reasons, values, reasons)


def compare_target(scenario: Scenario, target: TargetResult, reference: TargetResult,
                   output_names: List[str]) -> TargetComparison:
    comparison = TargetComparison(target=target.target, reference=reference.target)
    if not reference.ok:
        comparison.error = f"the reference {reference.target} failed: {reference.error}"
        return comparison
    if not target.ok:
        comparison.error = target.error or target.status
        return comparison
    for name in output_names:
        if name not in target.outputs or name not in reference.outputs:
            comparison.outputs.append(OutputComparison(name, False, reasons=["output missing"]))
            continue
        comparison.outputs.append(judge(name, target.outputs[name], reference.outputs[name],
                                        scenario.output_spec(name)))
    return comparison

"""How the harness names and shows its numbers: the one home of the metric format, of which metrics are the ones
users act on, and of the sentence a broken limit reads as.

The terminal report, junit.xml, report.html, the matrix, the history and the dashboard show every metric with
format_metric, and the comparison, the likely causes and every view pick "the metric users act on" from the
tables here, so that no two of them can show a number differently or weigh a failure otherwise.
"""

import math
from typing import Optional

from ..core.board_files import human_size  # noqa: F401 (a byte count in words, as every message says it)

PERCENT_METRICS = ("argmax_agreement", "miou", "benign_flips", "hard_flips", "decision_agreement",
                   "decoded_agreement", "matched_fraction", "exact_match", "cer", "top1_agreement", "topk_overlap",
                   "pck")
"""Fractions every view shows as percentages."""

KIND_LABEL_METRIC = {"class_logits": "argmax_agreement", "probability_map": "miou", "decision": "decision_agreement",
                     "detections": "decoded_agreement", "ctc_text": "decoded_agreement",
                     "class_scores": "decoded_agreement", "keypoints": "decoded_agreement"}
"""The metric users act on, per output kind: labels that agree, masks that overlap, decisions that hold, and
for a decoded output the share of what the application sees that stays the same (boxes matched, texts read
exactly, top classes, points within PCK)."""
LABEL_METRICS = ("argmax_agreement", "miou", "decision_agreement", "decoded_agreement")
"""The label metrics, in the order a record without output kinds (an old one) is searched for one."""
LABEL_NAMES = {"argmax_agreement": "argmax agreement", "miou": "mask IoU", "decision_agreement": "decision agreement",
               "decoded_agreement": "decoded agreement"}
ACTED_ON = ("argmax_agreement", "miou", "hard_flips", "decision_agreement")
"""The limits on what users act on (labels, masks, decisions, confident flips) rather than on the elementwise
statistics: a comparison names them first, and the likely causes explain an output that broke only these."""


def format_metric(value: Optional[float], metric: str = "e", style: str = "cell") -> str:
    """A metric as every view shows it: the one number format of the harness.

    metric is a metric's name (or "percent", "cosine", "e"); style "cell" is
    the fixed-width form of tables, "text" the short form of sentences
    ("max_abs 0.0782 > 0.001").
    """
    if value is None:
        return "–"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if metric in PERCENT_METRICS or metric == "percent":
        return f"{value:.3%}"
    if metric == "cosine" or metric == "min_cosine":
        return f"{value:.6f}"
    if metric.endswith("_db"):
        return f"{value:.1f} dB"
    if metric.endswith("_count") or metric in ("decision_flips", "mismatches"):
        return f"{value:.0f}"
    return f"{value:.2e}" if style == "cell" else f"{value:.3g}"


def limit_texts(metric: str, value: float, direction: str, limit: float):
    """(value, limit) of a broken limit as every view shows them: the value in the metric's short form, an upper
    limit on an error statistic as the scenario writes it, a fraction or a floor in the metric's own format."""
    shown_limit = (f"{limit:g}" if direction == ">" and metric not in PERCENT_METRICS
                   else format_metric(limit, metric, "text"))
    return format_metric(value, metric, "text"), shown_limit


def limit_sentence(metric: str, value: float, direction: str, limit: float) -> str:
    """"max_abs 0.0782 > 0.001", "argmax_agreement 99.219% < 99.900%": a broken limit in words."""
    shown_value, shown_limit = limit_texts(metric, value, direction, limit)
    return f"{metric} {shown_value} {direction} {shown_limit}"


def step_errors_text(errors) -> str:
    """"8.0e-08 .. 1.2e-05, worst at step 26": a stream's max abs error per step, its range and its worst step.

    Steps count from 0, as the flipped decisions do. A step whose error is not a number (a NaN on either side)
    counts as infinite.
    """
    if not errors:
        return "no steps"
    ranked = [math.inf if value is None or math.isnan(value) else value for value in errors]
    least, worst = (pick(range(len(ranked)), key=ranked.__getitem__) for pick in (min, max))
    shown = [f"{ranked[step]:.1e}" for step in (least, worst)]
    return f"{shown[0]} .. {shown[1]}, worst at step {worst}"


def shape_text(shape) -> str:
    """"[1, 3, ?, ?]": a tensor's shape as every view shows it, ? for a dimension the model leaves open; "?" when
    the model does not declare the rank."""
    if shape is None:
        return "?"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def counts_short(nan: int, inf: int) -> str:
    """A matrix cell's few characters: "9 Inf", "3 NaN 9 Inf"; "" when there are none."""
    return " ".join(f"{n} {what}" for n, what in ((nan, "NaN"), (inf, "Inf")) if n)

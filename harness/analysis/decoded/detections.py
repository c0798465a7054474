"""Detections: boxes the application draws, from either side's tensors, matched one to one.

Decoding (per sample): boxes in any common layout (xyxy, cxcywh, or offsets from anchors as MediaPipe's
SSD detectors give them), scores through their activation (the best class's, or a class ids tensor), the
score threshold, then a greedy NMS per class. Both sides' kept boxes are matched one to one by IoU
(Hungarian: scipy's linear_sum_assignment); a pair is the same object from `match_iou` on.

What is not matched is a missed box (the reference has it, the board not) or an extra one. Like a flip of
class_logits, a miss is benign when it sat at the threshold: the object's best score is within
`benign_margin` of the threshold on both sides, so a tiny numeric change tipped it; else it is hard (a
confident box lost, or one that appeared from nowhere).
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from ...config.decoded import DecodedSpec, DetectionSpec, SsdAnchors
from ...record.run import Decoded, LimitFailure
from .base import DecodedResult, DecodeError, MAX_SAMPLES_KEPT, call_user, percent, sample_count, values_of

MAX_CANDIDATES = 100_000
"""Boxes above the threshold that go into NMS per sample (the best first)."""
MISSES_NAMED = 3


@dataclass
class Boxes:
    """One side's boxes of one sample: xyxy, score and class per box."""

    xyxy: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, index) -> "Boxes":
        return Boxes(self.xyxy[index], self.scores[index], self.classes[index])


def ssd_anchors(anchors: SsdAnchors) -> np.ndarray:
    """[N, 4] cx, cy, w, h (w = h = 1, MediaPipe's fixed anchor size), in MediaPipe's order."""
    found, layer = [], 0
    height, width = anchors.input_size
    while layer < len(anchors.strides):
        stride, repeats = anchors.strides[layer], 0
        while layer < len(anchors.strides) and anchors.strides[layer] == stride:
            repeats += anchors.per_layer
            layer += 1
        rows, cols = height // stride, width // stride
        y, x = np.meshgrid((np.arange(rows) + anchors.offset) / rows, (np.arange(cols) + anchors.offset) / cols,
                           indexing="ij")
        centres = np.stack([x.ravel(), y.ravel()], axis=1)
        found.append(np.repeat(centres, repeats, axis=0))
    centres = np.concatenate(found)
    return np.concatenate([centres, np.ones_like(centres)], axis=1)


def anchors_of(params: DetectionSpec) -> np.ndarray:
    if isinstance(params.anchors, SsdAnchors):
        return ssd_anchors(params.anchors)
    array = np.load(params.anchors, allow_pickle=False).astype(np.float64)
    if array.ndim != 2 or array.shape[1] not in (2, 4) or not np.isfinite(array).all():
        raise ValueError(f"{params.anchors.name} holds {list(array.shape)} values: anchors are [N, 2] centres or "
                         "[N, 4] cx, cy, w, h, all finite")
    if array.shape[1] == 2:
        array = np.concatenate([array, np.ones_like(array)], axis=1)
    return array


def to_xyxy(raw: np.ndarray, params: DetectionSpec, anchors: Optional[np.ndarray]) -> np.ndarray:
    if raw.shape[1] < 4:
        raise ValueError(f"boxes have {raw.shape[1]} values each, fewer than 4")
    b = raw[:, :4]
    if params.box_format == "xyxy":
        return b.copy()
    if params.box_format == "anchors":
        if len(anchors) != len(b):
            raise ValueError(f"{len(b)} boxes and {len(anchors)} anchors")
        sx, sy, sw, sh = params.box_scale
        cx = b[:, 0] / sx * anchors[:, 2] + anchors[:, 0]
        cy = b[:, 1] / sy * anchors[:, 3] + anchors[:, 1]
        w, h = b[:, 2] / sw * anchors[:, 2], b[:, 3] / sh * anchors[:, 3]
    else:
        cx, cy, w, h = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def activate(scores: np.ndarray, activation: str) -> np.ndarray:
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-np.clip(scores, -80.0, 80.0)))
    if activation == "softmax":
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    return scores


def candidates(params: DetectionSpec, outputs: Dict[str, np.ndarray], sample: int,
               anchors: Optional[np.ndarray]) -> Boxes:
    """Every box of one sample before the threshold: xyxy, the best class's activated score, the class."""
    raw = values_of(outputs, params.boxes, sample)
    scores = values_of(outputs, params.scores, sample)
    if scores.size == len(raw):
        scores = scores.reshape(len(raw), 1)  # one score per box, with no class axis
    if len(scores) != len(raw):
        raise ValueError(f"{len(raw)} boxes in {params.boxes.output!r} and {len(scores)} scores in "
                         f"{params.scores.output!r}")
    scores = activate(scores, params.score_activation)
    if params.classes is not None:
        classes = values_of(outputs, params.classes, sample).reshape(len(raw), -1)[:, 0].round().astype(np.int64)
        best = scores.max(axis=1)
    else:
        classes = scores.argmax(axis=1)
        best = scores[np.arange(len(scores)), classes]
    return Boxes(to_xyxy(raw, params, anchors), best, classes)


def from_user(value, shown: str) -> Boxes:
    """What a user decoder returns for detections: {"boxes": [N, 4] xyxy, "scores": [N], "classes": [N]} (classes
    optional), or the tuple (boxes, scores[, classes]). Anything else is a clear failure, never a guess."""
    if isinstance(value, dict):
        unknown = set(value) - {"boxes", "scores", "classes"}
        if unknown or "boxes" not in value or "scores" not in value:
            raise TypeError(f"{shown} returned a dict with keys {sorted(map(str, value))}; detections are "
                            "{'boxes': [N, 4] xyxy, 'scores': [N], 'classes': [N] (optional)}")
        parts = (value["boxes"], value["scores"], value.get("classes"))
    elif isinstance(value, (tuple, list)) and len(value) in (2, 3) and not isinstance(value[0], (int, float)):
        parts = (value[0], value[1], value[2] if len(value) == 3 else None)
    else:
        raise TypeError(f"{shown} returned {type(value).__name__}; detections are {{'boxes': [N, 4] xyxy, "
                        "'scores': [N], 'classes': [N]}} or (boxes, scores[, classes])")
    try:
        boxes = np.asarray(parts[0], dtype=np.float64)
        scores = np.asarray(parts[1], dtype=np.float64)
        classes = (np.zeros(len(scores), np.int64) if parts[2] is None
                   else np.asarray(parts[2], dtype=np.float64))
    except (TypeError, ValueError) as error:
        raise TypeError(f"{shown} returned boxes, scores or classes that are not numbers: {error}") from error
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != (len(boxes),) or classes.shape != (len(boxes),):
        raise TypeError(f"{shown} returned boxes {list(boxes.shape)}, scores {list(scores.shape)} and classes "
                        f"{list(classes.shape)}; they must be [N, 4], [N] and [N]")
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all() and np.isfinite(classes).all()):
        raise TypeError(f"{shown} returned NaN or infinite boxes, scores or classes")
    return Boxes(boxes, scores, classes.round().astype(np.int64))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of a (xyxy) with every box of b; 0 where a box has no area."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def keep(boxes: Boxes, params: DetectionSpec) -> Boxes:
    """Above the threshold, then NMS per class (best first), at most max_detections."""
    above = np.flatnonzero(boxes.scores > params.threshold)
    order = above[np.argsort(-boxes.scores[above], kind="stable")][:MAX_CANDIDATES]
    chosen = boxes.take(order)
    if params.nms_iou is None:
        return chosen.take(np.arange(min(len(chosen), params.max_detections)))
    kept: List[int] = []
    suppressed = np.zeros(len(chosen), bool)
    for index in range(len(chosen)):
        if suppressed[index]:
            continue
        kept.append(index)
        if len(kept) == params.max_detections:
            break
        rest = np.arange(index + 1, len(chosen))
        rest = rest[~suppressed[rest] & (chosen.classes[rest] == chosen.classes[index])]
        if len(rest):
            overlap = iou_matrix(chosen.xyxy[index:index + 1], chosen.xyxy[rest])[0]
            suppressed[rest[overlap > params.nms_iou]] = True
    return chosen.take(np.array(kept, dtype=np.int64))


def match(reference: Boxes, target: Boxes, match_iou: float) -> List[Tuple[int, int, float]]:
    """One-to-one pairs (reference index, target index, IoU) of the same class from match_iou on, the pairing
    that overlaps most in all (Hungarian)."""
    if not len(reference) or not len(target):
        return []
    iou = iou_matrix(reference.xyxy, target.xyxy)
    iou[reference.classes[:, None] != target.classes[None, :]] = 0.0
    valid = iou >= match_iou
    cost = np.where(valid, 1.0 - iou, 2.0)  # an invalid pair only where nothing else is left, then dropped
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols) if valid[r, c]]


def best_score(box: np.ndarray, box_class: int, pool: Boxes, match_iou: float) -> Optional[float]:
    """The other side's best score for the same object: its best candidate of that class overlapping the box
    from match_iou on, before the threshold and NMS (None: it has no such box at all)."""
    if not len(pool):
        return None
    overlap = iou_matrix(box[None, :], pool.xyxy)[0]
    same = (overlap >= match_iou) & (pool.classes == box_class)
    return float(pool.scores[same].max()) if same.any() else None


def near(score: Optional[float], params: DetectionSpec) -> bool:
    return score is not None and abs(score - params.threshold) <= params.benign_margin


def _box(boxes: Boxes, index: int) -> list:
    return [round(float(v), 5) for v in boxes.xyxy[index]] + [round(float(boxes.scores[index]), 5),
                                                              int(boxes.classes[index])]


def judge(spec: DecodedSpec, target: Dict[str, np.ndarray], reference: Dict[str, np.ndarray],
          target_name: str, reference_name: str, sample_names: List[str]) -> DecodedResult:
    params: DetectionSpec = spec.params
    anchors = anchors_of(params) if params.box_format == "anchors" and spec.decoder is None else None
    names = spec.sources or tuple(reference)
    count = sample_count(reference, names) if names else 0
    totals = {"reference": 0, "target": 0, "matched": 0, "missed": 0, "extra": 0, "benign": 0, "hard": 0}
    ious: List[float] = []
    samples, misses = [], []
    for sample in range(count):
        sides = {}
        for side, outputs in ((reference_name, reference), (target_name, target)):
            if spec.decoder is not None:
                shown = f"{spec.decoder.script.name}:{spec.decoder.function}"
                value = call_user(spec, outputs, sample, side)
                try:
                    pool = from_user(value, shown)
                except TypeError as error:
                    raise DecodeError(f"{error} (on {side}, sample {sample})", side) from error
            else:
                try:
                    pool = candidates(params, outputs, sample, anchors)
                except ValueError as error:
                    raise DecodeError(f"{error} (on {side}, sample {sample})", side) from error
            sides[side] = (pool, keep(pool, params))
        (ref_pool, ref_kept), (own_pool, own_kept) = sides[reference_name], sides[target_name]
        pairs = match(ref_kept, own_kept, params.match_iou)
        matched_ref = {r for r, _, _ in pairs}
        matched_own = {t for _, t, _ in pairs}
        unmatched = []
        for index in range(len(ref_kept)):
            if index not in matched_ref:
                other = best_score(ref_kept.xyxy[index], int(ref_kept.classes[index]), own_pool, params.match_iou)
                unmatched.append(("missed", index, float(ref_kept.scores[index]), other))
        for index in range(len(own_kept)):
            if index not in matched_own:
                other = best_score(own_kept.xyxy[index], int(own_kept.classes[index]), ref_pool, params.match_iou)
                unmatched.append(("extra", index, other, float(own_kept.scores[index])))
        lost = []
        for what, index, ref_score, own_score in unmatched:
            benign = near(ref_score, params) and near(own_score, params)
            totals["benign" if benign else "hard"] += 1
            totals[what] += 1
            item = {"what": what, "index": index, "reference_score": ref_score, "target_score": own_score,
                    "benign": benign}
            lost.append(item)
            misses.append((sample, item))
        totals["reference"] += len(ref_kept)
        totals["target"] += len(own_kept)
        totals["matched"] += len(pairs)
        ious += [iou for _, _, iou in pairs]
        if sample < MAX_SAMPLES_KEPT:
            samples.append({"sample": sample, "reference": [_box(ref_kept, i) for i in range(len(ref_kept))],
                            "target": [_box(own_kept, i) for i in range(len(own_kept))],
                            "matched": [[r, t, round(iou, 5)] for r, t, iou in pairs], "unmatched": lost})
    judged = totals["matched"] + totals["missed"] + totals["extra"]
    metrics = {"detections_reference": totals["reference"], "detections_target": totals["target"],
               "matched": totals["matched"], "missed": totals["missed"], "extra": totals["extra"],
               "benign_misses": totals["benign"], "hard_misses": totals["hard"],
               "matched_fraction": totals["matched"] / judged if judged else 1.0,
               "min_box_iou": min(ious) if ious else None,
               "mean_box_iou": float(np.mean(ious)) if ious else None}
    metrics["decoded_agreement"] = metrics["matched_fraction"]
    counted = f"{totals['matched']}/{totals['reference']}" + (f" +{totals['extra']}" if totals["extra"] else "")
    label = f"{spec.name} {counted}"
    limits = spec.tolerance
    failures = []
    story = _misses_text(misses, params, reference_name, target_name, sample_names)
    if limits.min_matched is not None and metrics["matched_fraction"] < limits.min_matched:
        failures.append(LimitFailure("matched_fraction", metrics["matched_fraction"], limits.min_matched, "<",
                                     f"{counted}: {_counts(totals)}{story} (matched "
                                     f"{percent(metrics['matched_fraction'])} < {percent(limits.min_matched)})"))
    if limits.max_hard_misses is not None and totals["hard"] > limits.max_hard_misses:
        text = f"{totals['hard']} hard miss(es) > {limits.max_hard_misses:g}"
        failures.append(LimitFailure("hard_misses", float(totals["hard"]), float(limits.max_hard_misses), ">",
                                     f"{counted}: {text}" + ("" if failures else f": {_counts(totals)}{story}")))
    if limits.min_box_iou is not None and ious and min(ious) < limits.min_box_iou:
        failures.append(LimitFailure("min_box_iou", min(ious), limits.min_box_iou, "<", f"{counted}: a matched box "
                                     f"moved: min_box_iou {min(ious):.3f} < {limits.min_box_iou:g}"))
    notes = []
    if not failures and (totals["missed"] or totals["extra"]):
        notes.append(f"{counted}: {_counts(totals)}{story}, within the limits")
    record = Decoded("detections", label, not failures, samples,
                     details={"threshold": params.threshold, "match_iou": params.match_iou,
                              "box_units": params.box_units, "sources": list(names)})
    return DecodedResult(spec.name, not failures, metrics, failures, notes, record)


def _counts(totals: dict) -> str:
    parts = []
    if totals["missed"]:
        parts.append(f"{totals['missed']} missed")
    if totals["extra"]:
        parts.append(f"{totals['extra']} extra")
    kinds = []
    if totals["benign"]:
        kinds.append(f"{totals['benign']} at the threshold (benign)")
    if totals["hard"]:
        kinds.append(f"{totals['hard']} far from it (hard)")
    return (", ".join(parts) or "every box matched") + (f", {' and '.join(kinds)}" if kinds else "")


def _misses_text(misses, params: DetectionSpec, reference_name: str, target_name: str,
                 sample_names: List[str]) -> str:
    """"; sample astronaut: score 0.93 on x86, 0.12 on arm-a76": the first misses, hard ones first."""
    if not misses:
        return ""
    ordered = sorted(misses, key=lambda item: item[1]["benign"])[:MISSES_NAMED]
    shown = []
    for sample, item in ordered:
        def score(value):
            return "no box" if value is None else f"{value:.3g}"
        name = sample_names[sample] if sample < len(sample_names) else f"sample {sample}"
        shown.append(f"{name}: score {score(item['reference_score'])} on {reference_name}, "
                     f"{score(item['target_score'])} on {target_name}")
    more = f", and {len(misses) - len(ordered)} more" if len(misses) > len(ordered) else ""
    return f" (threshold {params.threshold:g}; " + "; ".join(shown) + more + ")"

"""Classes: what a classifier picks, top-1 and top-k, with the margin of what changed.

Per sample (or per position, for a tensor of several score vectors): the reference's and the board's top
class, the overlap of their top k, and the rank the board gives the reference's top class. A changed top
class is benign when the reference's own top-1 minus top-2 margin was below `benign_margin` (a near-tie),
else hard, as for the flips of class_logits. A user decoder may return a vector of scores (judged the same)
or a label (an int or a str: top-1 only).
"""

from typing import Dict, List

import numpy as np

from ...config.decoded import ClassSpec, DecodedSpec
from ...record.run import Decoded, LimitFailure
from .base import DecodedResult, DecodeError, MAX_SAMPLES_KEPT, call_user, percent, sample_count, values_of


def _scores(spec: DecodedSpec, outputs: Dict[str, np.ndarray], sample: int, side: str):
    """[positions, classes] scores, or a list of labels (a user decoder's)."""
    if spec.decoder is None:
        scores = values_of(outputs, spec.params.scores, sample)
        if not np.isfinite(scores).all():
            raise DecodeError(f"{spec.params.scores.output!r} holds NaN or infinite scores on {side}, sample "
                              f"{sample}", side)
        return scores
    value = call_user(spec, outputs, sample, side)
    shown = f"{spec.decoder.script.name}:{spec.decoder.function}"
    if isinstance(value, (str, int, np.integer)) and not isinstance(value, bool):
        return [value.item() if isinstance(value, np.integer) else value]
    try:
        scores = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DecodeError(f"{shown} returned {type(value).__name__} on {side}, sample {sample}; class_scores "
                          "decoders return a label (int or str) or a vector of scores", side) from error
    if scores.ndim != 1 or scores.size < 1 or not np.isfinite(scores).all():
        raise DecodeError(f"{shown} returned scores of shape {list(scores.shape)} on {side}, sample {sample}; "
                          "class_scores decoders return a label or a finite 1-D vector of scores", side)
    return scores[None, :]


def judge(spec: DecodedSpec, target: Dict[str, np.ndarray], reference: Dict[str, np.ndarray],
          target_name: str, reference_name: str, sample_names: List[str]) -> DecodedResult:
    params: ClassSpec = spec.params
    names = spec.sources or tuple(reference)
    count = sample_count(reference, names)
    positions = agree = benign = hard = 0
    overlaps, worst_rank, samples, changed = [], 1, [], []

    def label_of(index):
        return params.labels[index] if isinstance(index, (int, np.integer)) and 0 <= index < len(params.labels) \
            else index

    for sample in range(count):
        ref = _scores(spec, reference, sample, reference_name)
        own = _scores(spec, target, sample, target_name)
        if isinstance(ref, list) or isinstance(own, list):
            ref_top = ref[0] if isinstance(ref, list) else int(ref[0].argmax())
            own_top = own[0] if isinstance(own, list) else int(own[0].argmax())
            same = ref_top == own_top
            positions += 1
            agree += same
            hard += not same
            if not same:
                changed.append((sample, label_of(ref_top), label_of(own_top), None))
            if sample < MAX_SAMPLES_KEPT:
                samples.append({"sample": sample, "reference": [label_of(ref_top)], "target": [label_of(own_top)]})
            continue
        if ref.shape != own.shape:
            raise DecodeError(f"scores of shape {list(own.shape)} on {target_name}, {list(ref.shape)} on "
                              f"{reference_name}", target_name)
        k = min(params.top_k, ref.shape[1])
        ref_order = np.argsort(-ref, axis=1, kind="stable")
        own_order = np.argsort(-own, axis=1, kind="stable")
        margin = (np.take_along_axis(ref, ref_order[:, :1], 1)[:, 0]
                  - (np.take_along_axis(ref, ref_order[:, 1:2], 1)[:, 0] if ref.shape[1] > 1 else -np.inf))
        for position in range(len(ref)):
            ref_top, own_top = int(ref_order[position, 0]), int(own_order[position, 0])
            rank = int(np.flatnonzero(own_order[position] == ref_top)[0]) + 1
            worst_rank = max(worst_rank, rank)
            overlaps.append(len(set(ref_order[position, :k]) & set(own_order[position, :k])) / k)
            positions += 1
            if ref_top == own_top:
                agree += 1
                continue
            near = bool(margin[position] < params.benign_margin)
            benign += near
            hard += not near
            changed.append((sample, label_of(ref_top), label_of(own_top), near))
        if sample < MAX_SAMPLES_KEPT:
            samples.append({"sample": sample,
                            "reference": [label_of(int(c)) for c in ref_order[0, :k]],
                            "target": [label_of(int(c)) for c in own_order[0, :k]],
                            "reference_scores": [round(float(ref[0, c]), 5) for c in ref_order[0, :k]],
                            "target_scores": [round(float(own[0, c]), 5) for c in own_order[0, :k]],
                            "margin": round(float(margin[0]), 5) if np.isfinite(margin[0]) else None})
    top1 = agree / positions if positions else 1.0
    metrics = {"positions": positions, "top1_agreement": top1,
               "topk_overlap": float(np.mean(overlaps)) if overlaps else None,
               "worst_rank": worst_rank if overlaps else None,
               "benign_flips": benign / positions if positions else 0.0,
               "hard_flips": hard / positions if positions else 0.0, "decoded_agreement": top1}
    label = f"{spec.name} top-1 {agree}/{positions}"
    counted = label[len(spec.name) + 1:]
    shown = "; ".join(f"{sample_names[s] if s < len(sample_names) else f'sample {s}'}: {r} on {reference_name}, "
                      f"{o} on {target_name}" + ("" if near is None else " (a near-tie)" if near else " (hard)")
                      for s, r, o, near in changed[:2]) + (f"; and {len(changed) - 2} more" if len(changed) > 2
                                                           else "")
    limits = spec.tolerance
    failures = []
    if limits.min_top1_agreement is not None and top1 < limits.min_top1_agreement:
        failures.append(LimitFailure("top1_agreement", top1, limits.min_top1_agreement, "<", f"{counted}: "
                                     f"top1_agreement {percent(top1)} < {percent(limits.min_top1_agreement)} "
                                     f"({shown})"))
    if limits.max_hard_flips is not None and metrics["hard_flips"] > limits.max_hard_flips:
        failures.append(LimitFailure("hard_flips", metrics["hard_flips"], limits.max_hard_flips, ">", f"{counted}: "
                                     f"hard_flips {percent(metrics['hard_flips'])} > {percent(limits.max_hard_flips)}"
                                     + ("" if failures else f" ({shown})")))
    if limits.min_topk_overlap is not None and overlaps and metrics["topk_overlap"] < limits.min_topk_overlap:
        failures.append(LimitFailure("topk_overlap", metrics["topk_overlap"], limits.min_topk_overlap, "<",
                                     f"{counted}: topk_overlap {percent(metrics['topk_overlap'])} < "
                                     f"{percent(limits.min_topk_overlap)} (top {params.top_k})"))
    notes = [f"{counted}: {shown}, within the limits"] if changed and not failures else []
    record = Decoded("class_scores", label, not failures, samples,
                     details={"top_k": params.top_k, "sources": list(names)})
    return DecodedResult(spec.name, not failures, metrics, failures, notes, record)

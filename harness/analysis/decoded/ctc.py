"""Text: greedy CTC decoding of each side's per-frame class scores, and what changed in what was read.

Greedy CTC (what CRNN-style recognizers ship with): the best class per frame, repeats collapsed, blanks
dropped, each class read through the charset. The verdict is the texts: the share of samples read exactly
as the reference reads them, and the character error rate (edits over the reference's characters). A
changed text is a near-tie when every frame whose best class changed had a reference margin (top-1 minus
top-2) below `benign_margin`, as for the flips of class_logits.
"""

from typing import Dict, List, Optional

import numpy as np

from ...config.decoded import CtcSpec, DecodedSpec
from ...record.run import Decoded, LimitFailure
from .base import DecodedResult, DecodeError, MAX_SAMPLES_KEPT, call_user, percent, sample_count, values_of

DIFFERENCES_NAMED = 2


def greedy(scores: np.ndarray, charset, blank: int) -> str:
    """[frames, classes] -> the text: best class per frame, repeats collapsed, blanks dropped."""
    classes = scores.shape[1]
    blank = blank % classes
    best = scores.argmax(axis=1)
    text, previous = [], -1
    for index in best:
        if index != previous and index != blank:
            text.append(charset[index - 1 if index > blank else index])
        previous = index
    return "".join(text)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein: insertions, deletions and substitutions that turn a into b."""
    if len(a) < len(b):
        a, b = b, a
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ca != cb))
    return row[len(b)]


def _text_of(spec: DecodedSpec, outputs: Dict[str, np.ndarray], sample: int, side: str):
    """(text, per-frame scores or None) of one sample of one side."""
    if spec.decoder is not None:
        value = call_user(spec, outputs, sample, side)
        if not isinstance(value, str):
            shown = f"{spec.decoder.script.name}:{spec.decoder.function}"
            raise DecodeError(f"{shown} returned {type(value).__name__} on {side}, sample {sample}; ctc_text "
                              "decoders return the text (a str)", side)
        return value, None
    params: CtcSpec = spec.params
    scores = values_of(outputs, params.logits, sample)
    if scores.shape[1] != len(params.charset) + 1:
        raise DecodeError(f"{params.logits.output!r} scores {scores.shape[1]} classes per frame, and the charset "
                          f"has {len(params.charset)} characters and a blank (on {side})", side)
    if not np.isfinite(scores).all():
        raise DecodeError(f"{params.logits.output!r} holds NaN or infinite scores on {side}, sample {sample}", side)
    return greedy(scores, params.charset, params.blank), scores


def judge(spec: DecodedSpec, target: Dict[str, np.ndarray], reference: Dict[str, np.ndarray],
          target_name: str, reference_name: str, sample_names: List[str]) -> DecodedResult:
    names = spec.sources or tuple(reference)
    count = sample_count(reference, names)
    margin = getattr(spec.params, "benign_margin", 0.1)
    exact, edits, characters, hard = 0, 0, 0, 0
    samples, differing = [], []
    for sample in range(count):
        ref_text, ref_scores = _text_of(spec, reference, sample, reference_name)
        own_text, own_scores = _text_of(spec, target, sample, target_name)
        distance = edit_distance(ref_text, own_text)
        near_tie: Optional[bool] = None
        if distance and ref_scores is not None:
            flipped = ref_scores.argmax(axis=1) != own_scores.argmax(axis=1)
            top2 = -np.sort(-ref_scores, axis=1)[:, :2]
            near_tie = bool(((top2[:, 0] - top2[:, 1])[flipped] < margin).all())
            hard += not near_tie
        exact += distance == 0
        edits += distance
        characters += len(ref_text)
        if distance:
            differing.append((sample, ref_text, own_text, near_tie))
        if sample < MAX_SAMPLES_KEPT:
            samples.append({"sample": sample, "reference": ref_text, "target": own_text, "distance": distance,
                            **({"benign": near_tie} if near_tie is not None else {})})
    cer = edits / characters if characters else (0.0 if not edits else 1.0)
    agreement = exact / count if count else 1.0
    metrics = {"samples_read": count, "exact": exact, "exact_match": agreement, "cer": cer, "char_edits": edits,
               "hard_text_changes": hard if differing and differing[0][3] is not None else None,
               "decoded_agreement": agreement}
    label = f"{spec.name} {exact}/{count} exact, CER {cer:.1%}"
    counted = label[len(spec.name) + 1:]
    shown = "; ".join(f"{sample_names[s] if s < len(sample_names) else f'sample {s}'}: {r!r} on {reference_name}, "
                      f"{o!r} on {target_name}" + ("" if tie is None else " (a near-tie)" if tie else " (hard)")
                      for s, r, o, tie in differing[:DIFFERENCES_NAMED])
    if len(differing) > DIFFERENCES_NAMED:
        shown += f"; and {len(differing) - DIFFERENCES_NAMED} more"
    limits = spec.tolerance
    failures = []
    if limits.min_exact_match is not None and agreement < limits.min_exact_match:
        failures.append(LimitFailure("exact_match", agreement, limits.min_exact_match, "<", f"{counted}: exact_match "
                                     f"{percent(agreement)} < {percent(limits.min_exact_match)} ({shown})"))
    if limits.max_cer is not None and cer > limits.max_cer:
        failures.append(LimitFailure("cer", cer, limits.max_cer, ">", f"{counted}: cer {percent(cer)} > "
                                     f"{percent(limits.max_cer)}" + ("" if failures else f" ({shown})")))
    notes = [f"{counted}: {shown}, within the limits"] if differing and not failures else []
    record = Decoded("ctc_text", label, not failures, samples, details={"sources": list(names)})
    return DecodedResult(spec.name, not failures, metrics, failures, notes, record)

"""Keypoints: where the application puts each point, judged by PCK.

A board's point is correct when it lies within `pck_threshold` of the larger side of the reference points'
bounding box from the reference's point (the Percentage of Correct Keypoints of pose benchmarks, the
reference standing in for the ground truth). A user decoder returns an array of points [K, >=2].
"""

from typing import Dict, List

import numpy as np

from ...config.decoded import DecodedSpec, KeypointSpec
from ...record.run import Decoded, LimitFailure
from .base import DecodedResult, DecodeError, MAX_SAMPLES_KEPT, call_user, percent, sample_count, values_of


def _points(spec: DecodedSpec, outputs: Dict[str, np.ndarray], sample: int, side: str) -> np.ndarray:
    if spec.decoder is None:
        params: KeypointSpec = spec.params
        values = values_of(outputs, params.points, sample).ravel()
        if values.size % params.dims:
            raise DecodeError(f"{params.points.output!r} holds {values.size} values, not a whole number of points "
                              f"of {params.dims}", side)
        points = values.reshape(-1, params.dims)[:, :2]
    else:
        value = call_user(spec, outputs, sample, side)
        shown = f"{spec.decoder.script.name}:{spec.decoder.function}"
        try:
            points = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise DecodeError(f"{shown} returned {type(value).__name__}; keypoints decoders return an array of "
                              "points [K, 2] or more values per point", side) from error
        if points.ndim != 2 or points.shape[1] < 2:
            raise DecodeError(f"{shown} returned {list(points.shape)}; keypoints are [K, 2] (x, y) or more values "
                              "per point", side)
        points = points[:, :2]
    if not np.isfinite(points).all():
        raise DecodeError(f"NaN or infinite points on {side}, sample {sample}", side)
    return points


def judge(spec: DecodedSpec, target: Dict[str, np.ndarray], reference: Dict[str, np.ndarray],
          target_name: str, reference_name: str, sample_names: List[str]) -> DecodedResult:
    threshold = spec.params.pck_threshold
    names = spec.sources or tuple(reference)
    count = sample_count(reference, names)
    correct = total = 0
    worst = 0.0
    samples = []
    for sample in range(count):
        ref = _points(spec, reference, sample, reference_name)
        own = _points(spec, target, sample, target_name)
        if ref.shape != own.shape:
            raise DecodeError(f"{len(own)} points on {target_name}, {len(ref)} on {reference_name}", target_name)
        extent = float(np.ptp(ref, axis=0).max()) if len(ref) else 0.0
        distance = np.linalg.norm(own - ref, axis=1)
        relative = distance / extent if extent > 0 else np.where(distance > 0, np.inf, 0.0)
        correct += int((relative <= threshold).sum())
        total += len(ref)
        worst = max(worst, float(relative.max()) if len(relative) else 0.0)
        if sample < MAX_SAMPLES_KEPT:
            samples.append({"sample": sample, "points": len(ref), "correct": int((relative <= threshold).sum()),
                            "worst": float(relative.max()) if len(relative) else 0.0})
    pck = correct / total if total else 1.0
    metrics = {"points": total, "pck": pck, "worst_point_distance": worst, "decoded_agreement": pck}
    label = f"{spec.name} {correct}/{total} points"
    counted = label[len(spec.name) + 1:]
    failures = []
    if spec.tolerance.min_pck is not None and pck < spec.tolerance.min_pck:
        failures.append(LimitFailure("pck", pck, spec.tolerance.min_pck, "<", f"{counted}: pck {percent(pck)} < "
                                     f"{percent(spec.tolerance.min_pck)} (a point is correct within {threshold:g} of "
                                     f"the reference's extent; the farthest is {worst:.3g} of it)"))
    record = Decoded("keypoints", label, not failures, samples,
                     details={"pck_threshold": threshold, "sources": list(names)})
    return DecodedResult(spec.name, not failures, metrics, failures, [], record)

"""NaN and Inf in an output: how many, in which samples, where, and what the reference has at those places.

A board that makes NaN or Inf ran: its outputs are its answer, and the most
telling one at `precision: low`, where a value beyond FP16's 65,504 becomes
Inf and spreads as NaN. What a user needs to act on it is counted here once,
for every view and for the diagnosis: the counts per sample, the first few
positions (indices within one sample's output), and the largest finite
magnitude the reference has at those positions ("x86 has 7.1e+04 there,
beyond FP16's 65,504"), or that the reference holds NaN/Inf there too (then
the model makes them, not the board).
"""

from typing import Optional, Sequence

import numpy as np

from ..record.run import NonFinite

FP16_MAX = 65504.0
"""The largest finite FP16 value: anything larger becomes Inf when a board computes in FP16."""
FIRST_KEPT = 8
"""Positions kept in the record (the first ones, in sample then C order)."""


def find_nonfinite(target: np.ndarray, reference: np.ndarray,
                   sample_names: Sequence[str] = ()) -> Optional[NonFinite]:
    """The NaN/Inf of target (same shape as reference, samples on axis 0) and where the reference has them
    while target does not; None when neither side holds any."""
    a, b = np.asarray(target), np.asarray(reference)
    if a.dtype.kind != "f" and b.dtype.kind != "f":
        return None
    a64, b64 = a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)
    bad_a, bad_b = ~np.isfinite(a64), ~np.isfinite(b64)
    if not bad_a.any() and not bad_b.any():
        return None
    nan_a = np.isnan(a64)
    found = NonFinite(nan=int(nan_a.sum()), inf=int(bad_a.sum() - nan_a.sum()), size=int(a.size),
                      reference_only=int((bad_b & ~bad_a).sum()))
    if not bad_a.any():
        return found
    per_sample = bad_a.reshape(len(a), -1) if a.ndim else bad_a.reshape(1, 1)
    nan_per_sample = nan_a.reshape(per_sample.shape)
    for sample in np.flatnonzero(per_sample.any(axis=1)):
        nan = int(nan_per_sample[sample].sum())
        found.samples.append({"sample": int(sample), "name": _sample_name(sample_names, int(sample)), "nan": nan,
                              "inf": int(per_sample[sample].sum()) - nan})
    positions = np.argwhere(bad_a)
    for position in positions[:FIRST_KEPT]:
        value = float(a64[tuple(position)])
        there = float(b64[tuple(position)])
        found.first.append({"sample": int(position[0]) if a.ndim else 0,
                            "index": [int(i) for i in position[1:]],
                            "value": "nan" if np.isnan(value) else ("inf" if value > 0 else "-inf"),
                            "reference": there if np.isfinite(there) else None})
    at = b64[bad_a]
    finite_there = np.isfinite(at)
    found.reference_nonfinite = int((~finite_there).sum())
    if finite_there.any():
        found.reference_max = float(np.abs(at[finite_there]).max())
    return found


def _sample_name(names: Sequence[str], sample: int) -> str:
    return str(names[sample]) if sample < len(names) else f"sample {sample}"

"""Verdicts on what the application decodes: boxes found, text read, classes picked, points placed.

judge_decoded() judges every decoded output of a scenario (config/decoded.py) for one side against the other,
each by its kind's module (a registry: detections, ctc_text, class_scores, keypoints), and says, where the
decoded verdict and the raw tensors' verdicts disagree, which one decided and why. The decoded verdict is
what users act on: a tensor that feeds it keeps only the limits the scenario sets itself.
"""

from typing import Callable, Dict, List, Optional

import numpy as np

from ...config.decoded import DecodedSpec
from ...config.scenario import KIND_TOLERANCES, Scenario
from ...record.run import Decoded, LimitFailure
from . import classes, ctc, detections, keypoints
from .base import DecodedResult, DecodeError, failed

JUDGES: Dict[str, Callable[..., DecodedResult]] = {
    "detections": detections.judge, "ctc_text": ctc.judge, "class_scores": classes.judge,
    "keypoints": keypoints.judge}
"""The verdict of each decoded kind: (spec, target outputs, reference outputs, target name, reference name,
sample names) -> DecodedResult."""
MAX_NOTED_TENSORS = 2
"""Tensors below a plain tensor's floor that get a note each; more share one note on the decoded output."""


def judge_one(spec: DecodedSpec, target: Dict[str, np.ndarray], reference: Dict[str, np.ndarray],
              target_name: str, reference_name: str, sample_names: List[str]) -> DecodedResult:
    missing = [name for name in spec.sources if name not in target or name not in reference]
    if missing:
        return DecodedResult(spec.name, False, {}, [LimitFailure.check("output", f"output {', '.join(missing)} "
                                                                         "missing")], [],
                             Decoded(spec.kind, "no output", False))
    try:
        return JUDGES[spec.kind](spec, target, reference, target_name, reference_name, sample_names)
    except DecodeError as error:
        return failed(spec, error, reference_name)
    except (ValueError, OSError) as error:  # the built-in decoder's own inputs (an anchors file) are wrong
        return failed(spec, DecodeError(f"{type(error).__name__}: {error}", reference_name), reference_name)


def judge_decoded(scenario: Scenario, target: Dict[str, np.ndarray], reference: Dict[str, np.ndarray],
                  target_name: str, reference_name: str, raw: list,
                  sample_names: Optional[List[str]] = None) -> List[DecodedResult]:
    """Every decoded output of the scenario, one side against the other; raw is the tensors' comparisons
    (compare.OutputComparison), whose notes say where the decoded verdict decided instead of them."""
    results = [judge_one(spec, target, reference, target_name, reference_name, list(sample_names or []))
               for spec in scenario.decoded.values()]
    for result in results:
        explain(result, scenario.decoded[result.name], raw, scenario)
    return results


def explain(result: DecodedResult, spec: DecodedSpec, raw: list, scenario: Scenario) -> None:
    """Where the decoded verdict and its tensors' verdicts disagree: which decided, and why."""
    fed = [row for row in raw if not spec.sources or row.output in spec.sources]
    if not fed or result.record is None:
        return
    label = result.record.label
    floor = KIND_TOLERANCES["tensor"].min_snr_db
    failing = [row for row in fed if not row.passed]
    if result.passed:
        for row in failing:
            row.notes.append("the limits the scenario sets on this tensor decided "
                             f"({row.failures[0].sentence}); what it "
                             f"decodes to matches ({label}): leave them out to judge it by {spec.name} alone")
        below = [row for row in fed if row.passed and row.metrics.get("snr_db") is not None
                 and row.metrics["snr_db"] < floor and scenario.output_spec(row.output).decoded_by]
        if len(below) > MAX_NOTED_TENSORS:  # one line for them all (PicoDet's heads are 8 tensors)
            snrs = [row.metrics["snr_db"] for row in below]
            result.notes.append(f"{spec.name} decides: the {len(below)} tensors it reads are judged by what they "
                                f"decode to ({label}), not by their own snr_db of {min(snrs):.1f} to "
                                f"{max(snrs):.1f} dB, below a plain tensor's floor of {floor:g} dB")
            return
        for row in below:
            row.notes.append(f"judged by what it decodes to ({label}), which decides: its own snr_db "
                             f"{row.metrics['snr_db']:.1f} dB is below a plain tensor's floor of {floor:g} dB")
    elif not failing:
        unlimited = [row.output for row in fed if not any(
            value is not None for value in vars(scenario.output_spec(row.output).tolerance).values())]
        shown = ", ".join(row.output for row in fed)
        result.notes.append(f"{spec.name} decides, and what the application sees changed: "
                            + (f"{shown} {'is' if len(fed) == 1 else 'are'} judged by it alone"
                               if len(unlimited) == len(fed) else
                               f"{shown} stay within the limits the scenario sets on them"))

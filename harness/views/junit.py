"""junit.xml: the run as JUnit test results, for Jenkins, GitLab and any CI that reads them.

A view of the run's record (RunRecord), so a stored run can be written again
without re-running it. One testcase per scenario x board x output:

    classname "<scenario>.<board>"   name "<output>[<precision>,<threads>,<api>]"

The settings sit in the name so that a future settings matrix (the same
scenario at several precisions) gives distinct, stable test names. An output
outside tolerance is a <failure type="tolerance"> whose message is the broken
limits; a board that ran but broke a requirement (require_same_mnn: its MNN
version) is a <failure type="requirement"> naming both versions; a board whose
own preprocessing (preprocess_parity) differs from the host's is a
<failure type="preprocessing"> in the testcase "(preprocessing)[...]"; a board
whose model did not run, or that could not be used, gives an <error> testcase
per output (so a test keeps its identity from night to night in CI history).
One <testsuite> per compared board, inside one <testsuites>; when the scenario
runs its source model, the conversion check comes first as the suite
"<scenario>.x86 vs onnxruntime".
"""

import math
import xml.etree.ElementTree as ET
from typing import Dict, List

from ..record.outcome import ERROR, UNUSABLE, WHOLE_RUN, Verdict, parity_verdicts, verdicts
from ..record.run import RunRecord


def settings_label(settings: dict) -> str:
    """"normal,1,session" ("normal,1,session,opencl" off the CPU): the part of a testcase name a matrix varies."""
    parts = [str(settings.get(key, "?")) for key in ("precision", "threads", "api")]
    if settings.get("backend", "cpu") != "cpu":
        parts.append(str(settings["backend"]))
    return ",".join(parts)


def case_name(output: str, settings: dict) -> str:
    return f"{output}[{settings_label(settings)}]"


def _metrics_text(metrics: dict) -> str:
    """The metrics a testcase carries: those that are finite numbers (an infinite SNR says nothing more)."""
    return "\n".join(f"{name} = {metrics[name]!r}" for name in sorted(metrics)
                     if metrics[name] is not None and math.isfinite(metrics[name]))


def junit_tree(record: RunRecord) -> ET.ElementTree:
    scenario = record.name
    settings = record.settings
    root = ET.Element("testsuites", name=f"mnn-harness {scenario}")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    by_board: Dict[str, List[Verdict]] = {}
    for verdict in verdicts(record, failing_first=False) + parity_verdicts(record):
        by_board.setdefault(verdict.board, []).append(verdict)
    for board, rows in by_board.items():
        host = rows[0].host  # the conversion runs on x86
        state = record.boards.get(host)
        wall = state.wall_s if state is not None else 0.0
        suite = ET.SubElement(root, "testsuite", name=f"{scenario}.{board}", timestamp=record.started_at,
                              hostname=host)
        properties = ET.SubElement(suite, "properties")
        facts = state.facts if state is not None else {}
        for key, value in (("run_id", record.run_id), ("reference", record.reference),
                           ("board_kind", state.kind if state else None), ("board_status", state.status if state else None),
                           ("board_via", ", ".join(state.via) if state and state.via else None),
                           ("mnn_version", facts.get("mnn_version")), ("machine", facts.get("machine")),
                           *((f"setting.{k}", v) for k, v in sorted(settings.items()))):
            if value is not None:
                ET.SubElement(properties, "property", name=key, value=str(value))
        counts = {"tests": 0, "failures": 0, "errors": 0}
        share = wall / max(len(rows), 1)
        for verdict in rows:
            case = ET.SubElement(suite, "testcase", classname=f"{scenario}.{board}",
                                 name=case_name(verdict.output if verdict.output != WHOLE_RUN else "(outputs)",
                                                settings), time=f"{share:.3f}")
            counts["tests"] += 1
            if verdict.status in (ERROR, UNUSABLE):
                message = verdict.first_reason
                element = ET.SubElement(case, "error", message=message,
                                        type=f"board {state.status if state is not None else 'error'}")
                element.text = message
                counts["errors"] += 1
                continue
            if not verdict.passed:
                message = "; ".join(verdict.reasons)
                if verdict.failure_type == "requirement":
                    message += "; its outputs match within tolerance"
                element = ET.SubElement(case, "failure", message=message, type=verdict.failure_type)
                element.text = message + "\n" + _metrics_text(verdict.metrics)
                counts["failures"] += 1
            out = ET.SubElement(case, "system-out")
            out.text = _metrics_text(verdict.metrics)
        suite.set("tests", str(counts["tests"]))
        suite.set("failures", str(counts["failures"]))
        suite.set("errors", str(counts["errors"]))
        suite.set("skipped", "0")
        suite.set("time", f"{wall:.3f}")
        for key in totals:
            totals[key] += counts[key]
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{record.wall_s:.3f}")
    ET.indent(root)
    return ET.ElementTree(root)


def junit_xml(record: RunRecord) -> bytes:
    """junit.xml as its bytes (record/run_folder.py writes it into the run folder)."""
    return ET.tostring(junit_tree(record).getroot(), encoding="utf-8", xml_declaration=True)

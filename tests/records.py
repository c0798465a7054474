"""Run records made in memory, for the unit tests of the rules that read a record (diagnose, the views).

A record here is what analysis/judge.py makes of a run on x86 and one board, "arm": the boards' facts, the
output specs as the record keeps them, the version checks judged by the same rule, and the comparison the
test gives. The real runs' records are under tests/data/summaries/ and in the emulated tests.
"""

from typing import Dict, Optional

from harness.analysis.judge import output_spec
from harness.analysis.versions import version_checks
from harness.core.results import TargetResult
from harness.config.scenario import OutputSpec
from harness.record.run import BoardRecord, Comparison, InputsRecord, ModelRecord, OutputComparison, RunRecord


def against_x86(*outputs: OutputComparison, **fields) -> Comparison:
    """A board's comparison with x86: the outputs judged (analysis.compare.judge), and any other field."""
    return Comparison("x86", {output.output: output for output in outputs}, **fields)


def board_run(comparison: Comparison, io: str = "copy", precision: str = "normal", board_facts: Optional[dict] = None,
              specs: Optional[Dict[str, OutputSpec]] = None) -> RunRecord:
    """The record of a run on x86 and "arm" (MNN 3.6.1 on both unless board_facts says otherwise) whose board
    compared as given; logits are class_logits unless specs says otherwise."""
    results = {"x86": TargetResult("x86", "local", "ok", facts={"mnn_version": "3.6.1"}),
               "arm": TargetResult("arm", "ssh", "ok", facts={"mnn_version": "3.6.1", "cpu_features": [],
                                                             **(board_facts or {})})}
    specs = {"logits": OutputSpec(kind="class_logits"), **(specs or {})}
    return RunRecord(run_id="r", scenario={"name": "s"}, reference="x86",
                     model=ModelRecord(source=None, mnn_path="m.mnn", mnn_sha256="0",
                                       converter_args=["--useGeluApproximation", "0"]),
                     inputs=InputsRecord(sha256="0"), settings={"precision": precision, "io": io},
                     output_specs={name: output_spec(spec) for name, spec in specs.items()},
                     boards={name: BoardRecord(result.kind, result.status, facts=result.facts)
                             for name, result in results.items()},
                     comparisons={"arm": comparison}, mnn_versions=version_checks(None, results, "x86", []))

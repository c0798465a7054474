"""A run's record in memory (RunReport), its exit code, and the judging of its results.

The executor's results go in; judge() compares every board with the
reference and the reference with the source model, checks the boards' own
preprocessing and their backends, attributes each difference (conversion,
platform, both) and names the classic causes. record/run_folder.py turns the
RunReport into summary.json, which every view reads.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..core.backend import backend_problem
from ..core.inputs import InputSet
from ..config.inventory import BoardSpec
from ..core.model import ModelArtifact
from ..core.npz import load_tensor
from ..core.results import INTERRUPTED, OK, UNUSABLE, TargetResult
from ..config.scenario import Scenario
from .compare import ParityResult, TargetComparison, compare_preprocessing, compare_target
from .diagnose import attributions, diagnose
from .versions import VersionCheck, version_checks, versions_differ

EXIT_PASS, EXIT_COMPARISON_FAILED, EXIT_CONFIG, EXIT_BOARD = 0, 1, 2, 3


@dataclass
class RunReport:
    run_id: str
    run_dir: Path
    scenario: Scenario
    model: ModelArtifact
    inputs: InputSet
    reference: str
    boards: Dict[str, BoardSpec]
    results: Dict[str, TargetResult] = field(default_factory=dict)
    comparisons: Dict[str, TargetComparison] = field(default_factory=dict)
    started_at: str = ""
    wall_s: float = 0.0
    host: dict = field(default_factory=dict)
    source: Optional[TargetResult] = None
    """The source model run by ONNX Runtime on the host, when the scenario asks for it."""
    conversion: Optional[TargetComparison] = None
    """MNN on x86 against the source model: what the conversion changed."""
    attribution: Dict[str, str] = field(default_factory=dict)
    """Board -> where its difference comes from: conversion, platform, both or none."""
    findings: list = field(default_factory=list)
    """diagnose.Finding: the classic causes this run shows."""
    mnn_versions: Dict[str, VersionCheck] = field(default_factory=dict)
    """Board -> its MNN version against the host's, and whether the run shows it matters (versions.py)."""
    raw_outputs: List[str] = field(default_factory=list)
    """Raw output files kept in the run folder (relative paths); the rest were pruned."""
    parity: Dict[str, ParityResult] = field(default_factory=dict)
    """Board -> its own preprocessing against the host's tensors (preprocess_parity)."""
    backend_failures: Dict[str, str] = field(default_factory=dict)
    """Target -> why its backend setting failed (asked OpenCL, ran on the CPU), the reference's included."""
    targets_from: Optional[str] = None
    """Where the boards came from when not the scenario's own list ("--targets farm-a53,tag:fp16"), else None."""
    interrupted: Optional[str] = None
    """The signal that stopped the run ("SIGINT", "SIGTERM"), or None; unfinished boards are "interrupted"."""
    interrupted_exit_code: int = 130

    @property
    def compared_targets(self) -> List[str]:
        return [name for name in self.results if name != self.reference]

    @property
    def interrupted_targets(self) -> List[str]:
        return [name for name, result in self.results.items() if result.status == INTERRUPTED]

    @property
    def unusable(self) -> List[str]:
        return [name for name, result in self.results.items() if result.status == UNUSABLE]

    @property
    def failed(self) -> List[str]:
        """Targets whose outputs did not match, or whose model did not run."""
        return [name for name, comparison in self.comparisons.items()
                if not comparison.passed and self.results[name].status not in (UNUSABLE, INTERRUPTED)]

    @property
    def exit_code(self) -> int:
        """1 if any comparison failed, else 3 if a board could not be used, else 0.

        An accuracy failure outranks a board outage: it is the news the run
        exists to give. The reference failing makes every comparison fail.
        An interrupted run exits 130 (SIGINT) or 143 (SIGTERM), whatever finished.
        """
        if self.interrupted:
            return self.interrupted_exit_code
        if self.results[self.reference].status != OK:
            return EXIT_BOARD if self.results[self.reference].status == UNUSABLE else EXIT_COMPARISON_FAILED
        if self.failed or (self.conversion is not None and not self.conversion.passed) \
                or any(not parity.passed for parity in self.parity.values()) or self.backend_failures:
            return EXIT_COMPARISON_FAILED
        if self.unusable:
            return EXIT_BOARD
        return EXIT_PASS


def check_parity(report: RunReport, scenario: Scenario) -> Dict[str, ParityResult]:
    host = load_tensor(report.inputs.path, report.inputs.input_name)
    parity = {}
    for name, result in report.results.items():
        info = result.facts.get("preprocess") or {}
        if result.preprocessed is None:
            parity[name] = ParityResult(name, info.get("backend"), False,
                                        error=info.get("error") or "the board sent no preprocessed tensors")
            continue
        parity[name] = compare_preprocessing(name, info.get("backend"), result.preprocessed, host,
                                             scenario.preprocess.std, scenario.preprocess.layout,
                                             scenario.parity.max_abs)
    return parity


def mnn_mismatch(result: TargetResult, reference: TargetResult) -> Optional[str]:
    board, host = result.facts.get("mnn_version"), reference.facts.get("mnn_version")
    if versions_differ(board, host):
        return f"MNN {board} on the board, {host} on the host"
    return None


def judge(report: RunReport) -> None:
    """Fill in what the results say: backends that failed, each board's comparison with the reference (and a
    version requirement on top), preprocessing parity, the conversion check, attributions, likely causes."""
    scenario = report.scenario
    reference = report.results[scenario.reference]
    compared = scenario.compared_outputs(list(report.model.outputs))
    for name, result in report.results.items():
        problem = backend_problem(result, scenario.run.allow_fallback, reference=name == scenario.reference)
        if problem:
            report.backend_failures[name] = problem
    for name in report.compared_targets:
        comparison = compare_target(scenario, report.results[name], reference, compared, report.inputs.sample_names)
        mismatch = mnn_mismatch(report.results[name], reference)
        if mismatch and scenario.require_same_mnn and comparison.error is None:
            # The board ran and its numbers are compared as any board's; the requirement fails it on top.
            comparison.failed_requirements.append(f"{mismatch}, and the scenario says require_same_mnn: true")
        if name in report.backend_failures:
            comparison.problems.append(report.backend_failures[name])
        report.comparisons[name] = comparison
    if scenario.parity is not None:
        report.parity = check_parity(report, scenario)
    if report.source is not None:
        report.conversion = compare_target(scenario, reference, report.source, compared, report.inputs.sample_names)
        if scenario.reference in report.backend_failures:
            report.conversion.problems.append(report.backend_failures[scenario.reference])
    report.mnn_versions = version_checks(scenario, report.results, scenario.reference, compared)
    report.attribution = attributions(report)
    report.findings = diagnose(report)

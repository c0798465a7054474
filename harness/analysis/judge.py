"""A run judged: the boards' results in, its record (RunRecord) out.

judge_run() compares every board with the reference and the reference with
the source model, checks the boards' own preprocessing and the settings that
really ran, weighs a board's MNN version against a peer's outputs, attributes
each difference (conversion, platform, both, ...), names the classic causes,
and works out the exit code. What it returns is the record every view reads
and record/run_folder.py keeps as summary.json; only a live record also
carries the run's tensors, for the pictures of report.html.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

from ..core.build.inputs import InputSet
from ..core.build.model import ModelArtifact
from ..config.inventory import BoardSpec
from ..core.npz import load_tensor
from ..core.results import TargetResult
from ..config.scenario import OutputSpec as ScenarioOutputSpec
from ..config.scenario import Scenario
from ..record.backend import setting_failure
from ..record.run import (EXIT_BOARD, EXIT_COMPARISON_FAILED, EXIT_PASS, OK, UNUSABLE, BoardRecord, InputsRecord,
                          ModelRecord, OutputSpec, ParityRecord, PreprocessRecord, RunRecord, RunTensors,
                          SourceRecord, StreamRecord, versions_differ)
from .compare import compare_preprocessing, compare_target
from .diagnose import attributions, diagnose
from .versions import version_checks


@dataclass
class RunSetup:
    """What a run is before any board runs: its scenario, model, inputs and boards, where its folder is."""

    run_id: str
    folder: Path
    scenario: Scenario
    model: ModelArtifact
    inputs: InputSet
    boards: Dict[str, BoardSpec]
    """The boards in the order they run, the reference among them."""
    started_at: str = ""
    host: dict = field(default_factory=dict)
    """This machine: its architecture, Python and the harness's version."""
    targets_from: Optional[str] = None
    """Where the boards came from when not the scenario's own list ("--targets farm-a53,tag:fp16")."""

    @property
    def reference(self) -> str:
        return self.scenario.reference


def judge_run(setup: RunSetup, results: Dict[str, TargetResult], source: Optional[TargetResult] = None,
              interrupted: Optional[str] = None, interrupted_exit_code: int = 130,
              wall_s: float = 0.0) -> RunRecord:
    """The run's record from its boards' results (by board name) and the source model's, judged whole."""
    scenario, reference = setup.scenario, setup.reference
    compared = scenario.compared_outputs(list(setup.model.outputs))
    record = base_record(setup, results, source, interrupted, wall_s)
    ran = results[reference]
    for name, result in results.items():
        problem = setting_failure(result.facts, result.ok, scenario.run.allow_fallback, reference=name == reference)
        if problem:
            record.backend_failures[name] = problem
    for name in record.compared_boards:
        comparison = compare_target(scenario, results[name], ran, compared, setup.inputs.sample_names)
        board, host = results[name].facts.get("mnn_version"), ran.facts.get("mnn_version")
        if versions_differ(board, host) and scenario.require_same_mnn and comparison.error is None:
            # The board ran and its numbers are compared as any board's; the requirement fails it on top.
            comparison.failed_requirements.append(f"MNN {board} on the board, {host} on the host, and the scenario "
                                                  "says require_same_mnn: true")
        if name in record.backend_failures:
            comparison.problems.append(record.backend_failures[name])
        record.comparisons[name] = comparison
    if scenario.parity is not None:
        record.preprocess_parity = check_parity(setup, results)
    if source is not None:
        record.conversion = compare_target(scenario, ran, source, compared, setup.inputs.sample_names)
        if reference in record.backend_failures:
            record.conversion.problems.append(record.backend_failures[reference])
    record.mnn_versions = version_checks(scenario, results, reference, compared)
    record.attribution = attributions(record)
    record.findings = diagnose(record)
    record.exit_code = exit_code(record, interrupted_exit_code)
    return record


def exit_code(record: RunRecord, interrupted_exit_code: int = 130) -> int:
    """1 if any comparison failed, else 3 if a board could not be used, else 0.

    An accuracy failure outranks a board outage: it is the news the run
    exists to give. The reference failing makes every comparison fail.
    An interrupted run exits 130 (SIGINT) or 143 (SIGTERM), whatever finished.
    """
    if record.interrupted:
        return interrupted_exit_code
    reference = record.boards[record.reference]
    if reference.status != OK:
        return EXIT_BOARD if reference.status == UNUSABLE else EXIT_COMPARISON_FAILED
    if record.failed or (record.conversion is not None and not record.conversion.passed) \
            or any(not parity.passed for parity in record.preprocess_parity.values()) or record.backend_failures:
        return EXIT_COMPARISON_FAILED
    if any(board.status == UNUSABLE for board in record.boards.values()):
        return EXIT_BOARD
    return EXIT_PASS


def mark_interrupted(record: RunRecord, signal_name: str, code: int) -> None:
    """Say of a record that the signal stopped its run (the last run a matrix or a night kept)."""
    record.interrupted = signal_name
    record.exit_code = code


def check_parity(setup: RunSetup, results: Dict[str, TargetResult]) -> Dict[str, ParityRecord]:
    host = load_tensor(setup.inputs.path, setup.inputs.input_name)
    scenario = setup.scenario
    parity = {}
    for name, result in results.items():
        info = result.facts.get("preprocess") or {}
        if result.preprocessed is None:
            parity[name] = ParityRecord(False, info.get("backend"),
                                        error=info.get("error") or "the board sent no preprocessed tensors")
            continue
        parity[name] = compare_preprocessing(info.get("backend"), result.preprocessed, host,
                                             scenario.preprocess.std, scenario.preprocess.layout,
                                             scenario.parity.max_abs)
    return parity


# -- what the record says of the run before judging ----------------------------------------------------------


def base_record(setup: RunSetup, results: Dict[str, TargetResult], source: Optional[TargetResult],
                interrupted: Optional[str], wall_s: float) -> RunRecord:
    """The record's facts: scenario, model, inputs, settings, the specs outputs are judged by, the boards."""
    scenario, model, inputs = setup.scenario, setup.model, setup.inputs
    script = getattr(scenario.model, "build_script", None)
    return RunRecord(
        run_id=setup.run_id, scenario={"name": scenario.name, "path": str(scenario.path)},
        model=ModelRecord(source=str(model.source_path) if model.source_path else None, mnn_path=str(model.mnn_path),
                          mnn_sha256=model.mnn_sha256, converted=model.converted,
                          source_format=model.source_format, built_by=Path(script).name if script else None,
                          converter_args=list(model.converter_args), outputs=list(model.outputs),
                          converter_version=model.converter_version,
                          compared=scenario.compared_outputs(list(model.outputs))),
        inputs=InputsRecord(sha256=inputs.sha256, samples=list(inputs.sample_names), shape=list(inputs.shape),
                            count=inputs.count, image_input=inputs.image_input,
                            tensors=[tensor.as_dict() for tensor in inputs.tensors]),
        reference=setup.reference, started_at=setup.started_at, wall_s=wall_s, interrupted=interrupted,
        stream=None if scenario.stream is None else StreamRecord(inputs.count, dict(scenario.stream.carry)),
        settings=scenario.run.as_dict(), mnn_version=scenario.mnn_version,
        allow_fallback=scenario.run.allow_fallback,
        preprocess=None if scenario.preprocess is None else PreprocessRecord(
            **{key: (list(value) if isinstance(value, tuple) else value)
               for key, value in dataclasses.asdict(scenario.preprocess).items()}),
        output_specs={**{name: output_spec(scenario.output_spec(name)) for name in model.outputs},
                      **{name: OutputSpec(**spec.as_dict()) for name, spec in scenario.decoded.items()}},
        targets_from=setup.targets_from, host=dict(setup.host),
        boards={name: board_record(setup, name, result) for name, result in results.items()},
        source=None if source is None else SourceRecord(
            source.status, source.error, source.facts.get("runtime"), list(source.notes),
            str(model.source_path) if model.source_path else None, source.reused_from),
        folder=setup.folder,
        tensors=RunTensors(image=_image(inputs), outputs={
            **{name: result.outputs if result.ok else {} for name, result in results.items()},
            **({source.target: source.outputs} if source is not None and source.ok else {})}))


def output_spec(spec: ScenarioOutputSpec) -> OutputSpec:
    """How the scenario judges a tensor of the model (Scenario.output_spec), as the record keeps it."""
    return OutputSpec(kind=spec.kind, class_axis=spec.class_axis, benign_margin=spec.benign_margin,
                      threshold=spec.threshold, tolerance=dataclasses.asdict(spec.tolerance),
                      given_tolerance=(None if spec.given_tolerance is None
                                       else dataclasses.asdict(spec.given_tolerance)),
                      decoded_by=list(spec.decoded_by))


def board_record(setup: RunSetup, name: str, result: TargetResult) -> BoardRecord:
    board = setup.boards.get(name)
    return BoardRecord(kind=result.kind, status=result.status, error=result.error,
                       expected_mnn_version=expected_mnn(setup, board), mnn=getattr(board, "mnn", None),
                       facts=board_facts(result.facts), timings=dict(result.timings), notes=list(result.notes),
                       locked_span=result.locked_span, bytes_uploaded=result.bytes_uploaded,
                       bytes_downloaded=result.bytes_downloaded, reused_from=result.reused_from,
                       via=list(result.via))


def expected_mnn(setup: RunSetup, board: Optional[BoardSpec]) -> Optional[str]:
    """The MNN version a board was to run: the run's (scenario, matrix, bisect), else the inventory's."""
    if board is None or board.kind == "local" and not setup.scenario.mnn_version:
        return None
    return setup.scenario.mnn_version or getattr(board, "mnn_version", None)


def board_facts(facts: dict) -> dict:
    """The agent's facts as the record keeps them: no traceback; output shapes as the model's.

    Agents stack the samples on a first axis; the record says the model's shape of one sample and how many
    samples there were.
    """
    kept = {k: v for k, v in facts.items() if k != "traceback"}
    if isinstance(kept.get("outputs"), dict):
        kept["outputs"] = {name: ({**info, "shape": list(info["shape"][1:]), "samples": info["shape"][0]}
                                  if isinstance(info, dict) and info.get("shape") and "samples" not in info
                                  else info)
                           for name, info in kept["outputs"].items()}
    return kept


def _image(inputs: InputSet):
    """The image input's samples as sent (for report.html's pictures), None when no input is an image."""
    if not inputs.image_input or not Path(inputs.path).exists():
        return None
    return load_tensor(inputs.path, inputs.image_input)


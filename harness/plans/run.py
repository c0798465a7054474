"""One run, start to end: scenario -> model and inputs -> a plan of jobs on the boards -> comparisons -> its folder.

The data walks one way. `prepare_run` does the host's part (model, inputs,
the job), its plan goes to the executor with every other run's of the same
invocation (a matrix, a night), and `finish_run` turns the results into the
run's record (analysis/judge.py judges them: a RunRecord), the one value the
terminal report and the files in reports/<run-id>/ are views of;
`write_run_files` keeps it there (record/run_folder.py). `run_scenario` is
the three for one run.
"""

import dataclasses
import hashlib
import json
import platform
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from rich.console import Console
from rich.markup import escape

from .. import __version__
from ..analysis.judge import RunSetup, judge_run, mark_interrupted
from ..core.cache import sha256_file
from ..config.decoded import check_against_model as check_decoded
from ..core.errors import ConfigError
from ..core.build.inputs import InputSet, build_inputs
from ..config.inventory import BoardSpec, Inventory, boards_named
from ..core.job import Job
from ..core.build.model import ModelArtifact, prepare_model
from ..core.build.model_shapes import output_shapes
from ..core.build.preprocess import preprocess_spec, save_raw_images
from ..core.results import INTERRUPTED, TargetResult
from ..config.scenario import Scenario
from ..execution.executor import Executor, PlannedJob, Progress
from ..execution.interrupt import Interruption
from ..execution.targets.lock import LOCK_TIMEOUT_S
from ..execution.targets.remote import safe_name
from ..execution.targets.source import source_board
from ..record.run import RunRecord
from ..record.run_folder import HTML_FILE, JUNIT_FILE, View, new_run_folder, new_run_id, run_folder, write_run
from ..views.html import render_html
from ..views.junit import junit_xml

RUN_VIEWS: Dict[str, View] = {JUNIT_FILE: junit_xml, HTML_FILE: render_html}
"""The views every run folder keeps beside summary.json: junit.xml for CI, report.html for people."""


TAG_PREFIX = "tag:"
"""`--targets tag:fp16`: every board of the inventory carrying that tag."""


def select_targets(scenario: Scenario, inventory: Inventory, only: Optional[List[str]] = None,
                   only_from: str = "--targets") -> List[BoardSpec]:
    """The boards a run uses, the reference first: the scenario's `targets` and `tags`, or, when `only` is given
    (`--targets`, a nightly entry's `targets`), exactly those: any board of the inventory, or `tag:X` for every
    board carrying tag X. only_from names where `only` came from, for its errors."""
    if only:
        names, places = command_line_targets(scenario, inventory, only, only_from)
    else:
        names, places = scenario_targets(scenario, inventory)
    if scenario.reference not in names:
        names.insert(0, scenario.reference)
    boards = boards_named(inventory, names, scenario.path) + places
    reference = inventory.board(scenario.reference, scenario.path, "reference")
    if reference.kind != "local":
        raise ConfigError(scenario.path, "reference", f"the reference {reference.name!r} is a {reference.kind} "
                          "board", "name the local x86 host (kind: local) as the reference")
    return boards


def command_line_targets(scenario: Scenario, inventory: Inventory, only: List[str],
                         only_from: str) -> Tuple[List[str], List[BoardSpec]]:
    """Board names (and labgrid places chosen by tag) for `--targets a,tag:fp16`: the scenario's own list aside."""
    names: List[str] = []
    places: List[BoardSpec] = []
    tags = sorted({tag for board in inventory.boards.values() for tag in board.tags})
    for item in only:
        if item.startswith(TAG_PREFIX):
            tag = item[len(TAG_PREFIX):]
            tagged = [board.name for board in inventory.boards.values()
                      if board.kind != "labgrid" and tag and tag in board.tags]
            labgrid = [board for board in inventory.boards.values() if board.kind == "labgrid"]
            pool = []
            if labgrid and tag:
                from ..execution.targets.labgrid import boards_for_tags

                pool = boards_for_tags(labgrid, [tag], [])
            if not tagged and not pool:
                raise ConfigError(only_from, None, f"{item!r}: no board of {inventory.path} carries the tag "
                                  f"{tag!r}", f"use a tag the inventory gives ({', '.join(tags) or 'it has none'}), "
                                  "or name boards")
            names += [name for name in tagged if name not in names]  # named twice, or by two tags: once
            places += [board for board in pool if board.name not in {p.name for p in places} | set(names)]
        elif item not in inventory.boards and scenario_place(scenario, inventory, item) is not None:
            places.append(scenario_place(scenario, inventory, item))  # a place of the scenario's labgrid pool
        elif item not in inventory.boards:
            raise ConfigError(only_from, None, f"no board named {item!r} in the inventory {inventory.path}",
                              f"use one of {', '.join(inventory.boards)}, or {TAG_PREFIX}TAG for every board "
                              f"carrying a tag ({', '.join(tags) or 'the inventory has none'})")
        elif item not in names:
            names.append(item)
    return names, places


def scenario_place(scenario: Scenario, inventory: Inventory, name: str) -> Optional[BoardSpec]:
    """The labgrid place called name among those the scenario's `tags:` select (a pool's board is named after
    its place), or None."""
    labgrid = [board for board in inventory.boards.values() if board.kind == "labgrid"]
    if not scenario.tags or not labgrid:
        return None
    from ..execution.targets.labgrid import boards_for_tags

    return next((board for board in boards_for_tags(labgrid, scenario.tags, []) if board.name == name), None)


def scenario_targets(scenario: Scenario, inventory: Inventory) -> Tuple[List[str], List[BoardSpec]]:
    """Board names (and labgrid places) of the scenario's `targets` and `tags`."""
    names = list(scenario.targets)
    places: List[BoardSpec] = []
    if scenario.tags:
        tagged = [board.name for board in inventory.boards.values()
                  if board.kind != "labgrid" and set(scenario.tags) <= set(board.tags) and board.name not in names]
        labgrid = [board for board in inventory.boards.values() if board.kind == "labgrid"]
        if labgrid:
            # labgrid places are chosen by their tags on the coordinator, a pool giving one board per place.
            from ..execution.targets.labgrid import boards_for_tags

            places = boards_for_tags(labgrid, scenario.tags, names)
        if not tagged and not places and not names:
            raise ConfigError(scenario.path, "tags", f"no board of {inventory.path} carries all of "
                              f"{', '.join(scenario.tags)}", "tag boards in the inventory, or name them in targets")
        names += tagged
    return names, places


def check_outputs(scenario: Scenario, model: ModelArtifact) -> None:
    """Every output the scenario names (settings, compare, stream carry) is one the model has."""
    known = f"its outputs are {', '.join(model.outputs)}"
    check_decoded(scenario.path, scenario.decoded, list(model.outputs), dict(model.output_shapes))
    for output, spec in scenario.outputs.items():
        if output not in model.outputs:
            raise ConfigError(scenario.path, f"outputs.{output}", f"the model has no output {output!r}", known)
        check_class_axis(scenario, output, spec.kind, spec.class_axis, model.output_shapes.get(output))
    for index, output in enumerate(scenario.compare or []):
        if output not in model.outputs:
            raise ConfigError(scenario.path, f"compare[{index}]", f"the model has no output {output!r}", known)
    if scenario.stream is not None:
        for output, fed in scenario.stream.carry.items():
            if output not in model.outputs:
                raise ConfigError(scenario.path, f"stream.carry.{output}", f"the model has no output {output!r}",
                                  known)
            if fed not in model.inputs:
                raise ConfigError(scenario.path, f"stream.carry.{output}", f"the model has no input {fed!r}",
                                  f"its inputs are {', '.join(model.inputs)}")


def prepare_inputs(scenario: Scenario, model: ModelArtifact, run_dir: Path) -> InputSet:
    """The run's inputs, built and checked against the model before anything is sent (ConfigError: exit 2)."""
    check_outputs(scenario, model)
    inputs = build_inputs(scenario, model, run_dir)
    if scenario.stream is not None:
        for output, fed in scenario.stream.carry.items():
            tensor = inputs.tensor(fed)
            if not tensor.shared and tensor.samples > 1:
                raise ConfigError(scenario.path, f"inputs.{fed}", f"gives {tensor.samples} samples, but "
                                  f"stream.carry feeds it from {output!r} after the first step",
                                  "give one sample: the stream's starting value")
    return inputs


def input_layout(scenario: Scenario, model: ModelArtifact) -> str:
    """The layout of the model's image input: the scenario's preprocessing says it, else the source format's own
    (TFLite models take NHWC, ONNX and MNN NCHW)."""
    if scenario.preprocess is not None:
        return scenario.preprocess.layout
    return "NHWC" if model.source_format == "TFLITE" else "NCHW"


def stream_spec(scenario: Scenario, inputs: InputSet) -> Optional[dict]:
    if scenario.stream is None:
        return None
    return {"steps": inputs.count, "carry": dict(scenario.stream.carry)}


def check_class_axis(scenario: Scenario, output: str, kind: str, axis: int, shape: Optional[list]) -> None:
    """A class_logits output's class axis must be one of its axes, and not one of size 1 (one class:
    every label would agree). Unknown when the model file does not declare the output's rank."""
    if kind != "class_logits" or shape is None:
        return
    key, rank = f"outputs.{output}.class_axis", len(shape)
    shown = "x".join("?" if dim is None else str(dim) for dim in shape) or "a scalar"
    if not -rank <= axis < rank:
        raise ConfigError(scenario.path, key, f"is {axis}, but the output {output!r} has {rank} axes ({shown})",
                          f"use an axis from 0 to {rank - 1} (or -1 for the last): the axis of the class scores, "
                          "1 for NCHW logits")
    if shape[axis] == 1:
        raise ConfigError(scenario.path, key, f"is {axis}, an axis of size 1 of the output {output!r} ({shown}): "
                          "one class, so every label would agree", "use the axis of the class scores, 1 for NCHW "
                          "logits, -1 for NHWC")


@dataclass
class PreparedRun:
    """A run made ready before any board is used: its folder, model, inputs, and the job every board runs."""

    setup: RunSetup
    """What the run is: its scenario, model, inputs and boards, and its folder."""
    job: Job
    source_job: Optional[Job]
    """The source model's job (ONNX Runtime / LiteRT on the host), when the scenario asks for it."""
    started: float
    label: str = ""
    """What the display calls this run among others (a matrix setting, a nightly scenario)."""

    def plan(self) -> List[PlannedJob]:
        """The run's jobs: the same job on every board (the reference first), then the source model's.

        The reference and the source model are keyed for reuse by what goes into them (the model's bytes,
        the inputs and every setting the agent or the runtime receives): another run of the same
        invocation with the same key takes their result instead of computing it again.
        """
        setup, targets = self.setup, self.setup.folder / "targets"
        items = [PlannedJob(board, self.job, targets / board.name, self.label,
                            reuse=f"mnn:{self.job.identity()}" if board.name == setup.reference else None)
                 for board in setup.boards.values()]
        if self.source_job is not None:
            board = source_board(setup.model.source_format)
            items.append(PlannedJob(board, self.source_job, targets / board.name, self.label,
                                    reuse=source_key(self.source_job)))
        return items


def source_key(job: Job) -> str:
    """What reaches ONNX Runtime (or LiteRT): the source model's bytes and the inputs as the agent walks them;
    no MNN setting does."""
    what = {"source": sha256_file(job.source_path), "format": job.source_format, "inputs": job.inputs_sha256,
            "input_names": job.input_names, "output_names": job.output_names, "samples": job.samples,
            "stream": job.stream}
    return "source:" + hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def prepare_run(scenario: Scenario, inventory: Inventory, reports_dir: Path, progress: Progress = Progress(),
                only: Optional[List[str]] = None, log: Callable[[str], None] = lambda message: None,
                run_id: Optional[str] = None, label: str = "", only_from: str = "--targets") -> PreparedRun:
    """Everything a run does on the host before a board is used: boards chosen, model built and converted,
    inputs made and checked, the job written down. A ConfigError (exit 2) here leaves no run folder."""
    started = time.perf_counter()
    boards = select_targets(scenario, inventory, only, only_from)
    run_dir = run_folder(reports_dir, run_id or new_run_id(scenario))
    run_id = run_dir.name

    progress.step("model: building and converting (cached by content)" if scenario.model.mnn is None
                  else f"model: {scenario.model.mnn.name} as it is (no conversion)")
    model = prepare_model(scenario.model, log=log)
    progress.step(f"inputs: making {len(model.inputs)} input(s) on the host")
    with new_run_folder(run_dir):  # an input that cannot be made leaves no folder behind
        inputs = prepare_inputs(scenario, model, run_dir)
        images_path = images_sha256 = board_preprocess = None
        if scenario.parity is not None:
            images_path, images_sha256 = save_raw_images(scenario.images, run_dir)
            board_preprocess = {**preprocess_spec(scenario.parity.board), "input": inputs.image_input}
        # What a board may send back is bounded by what this model gives for these inputs.
        input_shapes = {tensor.name: list(tensor.shape) for tensor in inputs.tensors}
        shapes = output_shapes(model.mnn_path, model.mnn_sha256, input_shapes, list(model.outputs))
    # Unique on every board even when two runs share a run id (a matrix setting's label); safe as a path there.
    job = Job(id=f"{safe_name(run_id)}-{secrets.token_hex(3)}", model_path=model.mnn_path,
              model_sha256=model.mnn_sha256,
              inputs_path=inputs.path, inputs_sha256=inputs.sha256, input_names=list(model.inputs),
              output_names=list(model.outputs), layout=input_layout(scenario, model),
              settings=scenario.run.as_dict(), iterations=scenario.run.iterations,
              warmup=scenario.run.warmup, preprocess=board_preprocess, images_path=images_path,
              images_sha256=images_sha256, samples=inputs.count, stream=stream_spec(scenario, inputs),
              input_shapes=input_shapes, output_shapes=shapes, mnn_version=scenario.mnn_version)
    source_job = None
    if scenario.source_reference and model.source_path is not None:
        source_job = dataclasses.replace(job, source_path=model.source_path, source_format=model.source_format)
    setup = RunSetup(run_id=run_id, folder=run_dir, scenario=scenario, model=model, inputs=inputs,
                     boards={board.name: board for board in boards},
                     started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     host={"machine": platform.machine(), "python": platform.python_version(), "harness": __version__},
                     targets_from=f"{only_from} {','.join(only)}" if only else None)
    return PreparedRun(setup, job, source_job, started, label)


def finish_run(prepared: PreparedRun, results: List[TargetResult], interruption: Interruption,
               ended: Optional[float] = None, interrupted: Optional[bool] = None) -> RunRecord:
    """The run's record from its jobs' results (in plan order): comparisons, attributions, likely causes.

    ended: when its last job's result came (time.perf_counter()); the run's wall time ends there.
    interrupted: whether the record says the run was stopped (default: whether a signal came at all; a
    matrix or a night says it only of the runs the signal cut).
    """
    boards = list(prepared.setup.boards)
    source = results[len(boards)] if prepared.source_job is not None else None
    stopped = interruption.is_set() if interrupted is None else interrupted
    return judge_run(prepared.setup, dict(zip(boards, results)), source,
                     interrupted=(interruption.signal_name or "SIGINT") if stopped else None,
                     interrupted_exit_code=interruption.exit_code,
                     wall_s=(ended or time.perf_counter()) - prepared.started)


def run_scenario(scenario: Scenario, inventory: Inventory, reports_dir: Path,
                 progress: Progress = Progress(), only: Optional[List[str]] = None,
                 log: Callable[[str], None] = lambda message: None, lock_timeout: float = LOCK_TIMEOUT_S,
                 run_id: Optional[str] = None, interruption: Optional[Interruption] = None,
                 executor: Optional[Executor] = None, warm: bool = True) -> RunRecord:
    """One run; run_id names its folder under reports_dir (a new one by default).

    interruption: when it is set (Ctrl-C, SIGTERM) the boards stop promptly
    and the record holds what finished and "interrupted" for the rest.
    executor: board sessions to run on (and keep open for what comes after, e.g. --find-layer); by
    default the run opens its own and closes them when it is done. warm=False: a session (connection,
    agent process) per job, as the harness ran before sessions.
    """
    interruption = interruption or (executor.interruption if executor else Interruption())
    prepared = prepare_run(scenario, inventory, reports_dir, progress, only, log, run_id)
    own = executor is None
    executor = executor or Executor(progress, interruption, lock_timeout, warm=warm)
    try:
        results = executor.run(prepared.plan())
    finally:
        if own:
            executor.close()
    return finish_run(prepared, results, interruption, max(executor.ended_at.values(), default=None))


def run_together(prepared: List[PreparedRun], executor: Executor) -> List[Optional[RunRecord]]:
    """Several runs (a matrix's settings, a night's scenarios) as one plan: each board runs its jobs of every
    run back to back on its session, the boards at once; a record per run, in order.

    After an interruption, a run none of whose boards started its job (only the reference, or nothing,
    had run) is left out (None), as the runs after a stopped one always were; the runs the signal cut say
    so, and the last run kept says so in any case, so that the exit code tells of the signal.
    """
    plan: List[PlannedJob] = []
    spans = []
    for run in prepared:
        items = run.plan()
        spans.append(range(len(plan), len(plan) + len(items)))
        plan += items
    results = executor.run(plan)
    interruption = executor.interruption
    reports: List[Optional[RunRecord]] = []
    for run, span in zip(prepared, spans):
        if interruption.is_set():
            boards = [index for index in span
                      if plan[index].board.name != run.setup.reference and plan[index].board.kind != "source"]
            if all(index in executor.not_started for index in boards or span):
                reports.append(None)
                continue
        mine = [results[index] for index in span]
        ended = max((executor.ended_at[index] for index in span if index in executor.ended_at), default=None)
        reports.append(finish_run(run, mine, interruption, ended,
                                  interrupted=any(result.status == INTERRUPTED for result in mine)))
    kept = [report for report in reports if report is not None]
    if interruption.is_set() and kept and not any(report.interrupted for report in kept):
        mark_interrupted(kept[-1], interruption.signal_name or "SIGINT", interruption.exit_code)
    return reports


def write_run_files(record: RunRecord, console: Console, keep_outputs_mb: float = 0.0) -> RunRecord:
    """summary.json, junit.xml and report.html into reports/<run-id>/; returns the record as stored (read back
    from summary.json, with the run's arrays), which the terminal shows.

    A view that cannot be written is said in yellow and does not change the exit code.
    """
    return write_run(record, RUN_VIEWS, keep_outputs_mb, on_error=lambda name, error: console.print(
        f"[yellow]could not write {name}: {type(error).__name__}: {escape(str(error))}[/]"))

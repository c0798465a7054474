"""harness layers: the first op that goes wrong, from the deployed .mnn alone, board against board.

Three rounds of jobs, each an ordinary Job, planned on the executor's board
sessions (the same connections and resident agents for all three rounds):

1. trace, on the reference and every board at once: every op MNN executes,
   with a summary of each output (statistics and 64 values at fixed
   positions) and, for each input, the op whose output it holds (by content,
   as the op read it). Op names, types and order come from the model as MNN
   runs it; no source model is needed.
2. capture, on each board: the whole input and output tensors of the ops from
   the first suspicious one onwards, as many as --budget allows.
3. replay, on the reference, one job per board: a run in which each of those
   ops computes on the BOARD's inputs (written into the op's input tensors
   just before it runs), beside a run on its own. An op whose output on the
   board matches the reference's replay only passed on error it inherited;
   the first op whose replay does not match introduced it.

The analysis is opdiff's, the mapping back to the source opmap's, the views
views/layers.py's; this module only runs the jobs and gathers what they wrote.
"""

import json
import secrets
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..analysis.diagnose import arithmetic
from ..analysis.opdiff import (DumpError, OpTrace, choose_sample, conclude, exact_rows, first_nonfinite, first_suspect,
                               nothing_compared, parse_plain, parse_traces, replay_feeds, summary_rows, tolerance_for,
                               traced_differs, window)
from ..analysis.opmap import map_ops, mapping_summary, read_source_graph
from ..core.cache import sha256_file
from ..core.errors import BoardResultError, ConfigError, Interrupted
from ..config.inventory import BoardSpec, Inventory
from ..core.job import Job, read_dump as read_agent_dump
from ..core.npz import load_npz, save_npz
from ..core.build.mnn_graph import MnnFileError, read_mnn_graph
from ..core.build.model import prepare_model
from ..core.results import TargetResult
from ..config.scenario import Scenario
from ..execution.executor import Executor, PlannedJob
from ..execution.interrupt import Interruption
from ..execution.targets.lock import LOCK_TIMEOUT_S
from ..record.backend import precision_fallback
from ..record.layers import BoardLayers, LayersReport, Side
from ..record.run import RunRecord
from ..record.run_folder import new_run_folder, new_run_id, run_folder, write_file
from ..views.layers import model_explorer_data, render_layers_html
from .run import input_layout, prepare_inputs

DEFAULT_BUDGET_MB = 256.0
"""Whole tensors fetched from each board for the replay (SegFormer-512 has 764 MB of op outputs)."""
Log = Callable[[str], None]


def side_settings(scenario: Scenario, overrides: Dict[str, object]) -> dict:
    """A side's settings: the scenario's, with the command line's on top; always the Session API (callbacks)."""
    settings = {**scenario.run.as_dict(), **{k: v for k, v in overrides.items() if v is not None}}
    settings.update(api="session", io="copy")
    return settings


def run_jobs(executor: Executor, work: List[Tuple[BoardSpec, Job, Path]], label: str) -> List[TargetResult]:
    """One round: each job on its board's session, the boards at once; one board's failure is its result,
    not the end of the others.

    A Ctrl-C or SIGTERM stops every board as in a run (agents killed, jobs removed, locks and labgrid
    places released) and ends the search with Interrupted.
    """
    results = executor.run([PlannedJob(board, job, folder, label) for board, job, folder in work])
    if executor.interruption.is_set():
        raise Interrupted(f"the layer search was interrupted ({executor.interruption.signal_name}); its boards "
                          "were stopped", exit_code=executor.interruption.exit_code)
    return results


def read_dump(folder: Path, result: TargetResult) -> Tuple[dict, Dict[str, np.ndarray]]:
    """What the agent dumped in folder for one of the search's jobs, read as core/job.py reads every dump (its
    hashes and caps checked); DumpError saying why there is none."""
    if not isinstance((result.facts or {}).get("dump"), dict):
        raise DumpError(result.error or f"the agent reported no layer dump ({result.status})")
    try:
        return read_agent_dump(folder, result.facts)
    except BoardResultError as error:
        raise DumpError(str(error)) from error


def side_of(board: str, settings: dict, result: TargetResult) -> Side:
    """A side as it ran: low_bf16 that MNN computed in FP32 (the agent's check) is FP32, and says so."""
    facts = result.facts or {}
    features = [str(f) for f in facts.get("cpu_features") or []]
    fell_back = precision_fallback(result.facts or {}, result.ok)
    return Side(board=board, settings=settings, machine=str(facts.get("machine") or ""),
                mnn_version=str(facts.get("mnn_version") or ""), cpu_features=features,
                arithmetic=(f"FP32: {fell_back.split(' (')[0]}" if fell_back
                            else arithmetic(str(settings.get("precision", "normal")), features)[0]))


def ran_precision(settings: dict, side: Side) -> str:
    """The precision a side's arithmetic follows: normal when MNN computed its low_bf16 in FP32."""
    return "normal" if side.arithmetic.startswith("FP32:") else str(settings.get("precision", "normal"))


def boards_to_search(report: RunRecord, asked: bool) -> List[str]:
    """The boards a run's layer search looks at (`--find-layer`, or `find_layer: true`): every board that
    failed but the local host; none when nothing was asked or the run was interrupted."""
    failing = [name for name in report.failed if report.boards[name].kind != "local"]
    return failing if asked and failing and not report.interrupted else []


def search_layers(scenario: Scenario, inventory: Inventory, boards: List[str], reports_dir: Path,
                  against: Optional[str] = None, board_overrides: Optional[dict] = None,
                  against_overrides: Optional[dict] = None, tolerance: Optional[float] = None,
                  budget_mb: float = DEFAULT_BUDGET_MB, log: Log = lambda message: None,
                  lock_timeout: float = LOCK_TIMEOUT_S, interruption: Optional[Interruption] = None,
                  executor: Optional[Executor] = None) -> LayersReport:
    """Search every board against the reference (the x86 host, or `against`); returns the report.

    The three rounds run on the same board sessions: executor's (a run's, for --find-layer), or the search's
    own, closed at its end.
    """
    with ExitStack() as stack:
        if executor is None:
            executor = stack.enter_context(Executor(interruption=interruption, lock_timeout=lock_timeout))
        return _search(scenario, inventory, boards, reports_dir, against, board_overrides, against_overrides,
                       tolerance, budget_mb, log, executor)


def _search(scenario: Scenario, inventory: Inventory, boards: List[str], reports_dir: Path, against: Optional[str],
            board_overrides: Optional[dict], against_overrides: Optional[dict], tolerance: Optional[float],
            budget_mb: float, log: Log, executor: Executor) -> LayersReport:
    started = time.perf_counter()
    where = scenario.path
    if not boards:
        raise ConfigError(where, "--board", "names no board", "name one or more boards, comma-separated")
    duplicates = sorted({name for name in boards if boards.count(name) > 1})
    if duplicates:
        raise ConfigError(where, "--board", f"names {', '.join(duplicates)} twice", "name each board once")
    reference_name = against or scenario.reference
    reference = inventory.board(reference_name, where, "--against" if against else "reference")
    specs = [inventory.board(name, where, "--board") for name in boards]
    if reference_name in boards:
        raise ConfigError(where, "--board", f"{reference_name} is also the side every board is compared with",
                          "compare it with another board (--against), or leave it out")
    if scenario.stream is not None:
        raise ConfigError(where, "stream", "the layer search traces single samples; a stream's steps depend on "
                          "each other", "look for the op in a scenario without `stream:`")
    board_settings = side_settings(scenario, board_overrides or {})
    reference_settings = side_settings(scenario, against_overrides or {})
    run_dir = run_folder(reports_dir, new_run_id(scenario) + "-layers")
    log("model: building and converting (cached by content)" if scenario.model.mnn is None
        else f"model: {scenario.model.mnn.name} as it is")
    model = prepare_model(scenario.model, log=log)
    with new_run_folder(run_dir):
        inputs = prepare_inputs(scenario, model, run_dir)
    layout = input_layout(scenario, model)
    report = LayersReport(scenario=scenario.name, run_dir=str(run_dir), reference=reference_name,
                          model={"mnn": str(model.mnn_path), "mnn_sha256": model.mnn_sha256,
                                 "source": str(model.source_path) if model.source_path else None,
                                 "source_format": model.source_format, "converted": model.converted},
                          started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def job(label: str, settings: dict, dump: dict, inputs_path: Path = inputs.path,
            inputs_sha256: str = inputs.sha256) -> Job:
        return Job(id=f"{run_dir.name}-{label}-{secrets.token_hex(3)}", model_path=model.mnn_path,
                   model_sha256=model.mnn_sha256, inputs_path=inputs_path, inputs_sha256=inputs_sha256,
                   input_names=list(model.inputs), output_names=list(model.outputs), layout=layout,
                   settings=settings, samples=1, dump=dump)

    samples = list(range(inputs.count))
    sides = [reference_name] + boards
    log(f"trace: every op on {', '.join(sides)}")
    traced = run_jobs(executor, [(spec, job(f"trace-{spec.name}", reference_settings if spec.name == reference_name
                                            else board_settings, {"samples": samples, "plain": True}),
                                        run_dir / "trace" / spec.name)
                                 for spec in [reference] + specs], "trace")
    results = dict(zip(sides, traced))
    reference_error = ""
    reference_plain: Dict[int, Dict[str, dict]] = {}
    try:
        reference_dump = read_dump(run_dir / "trace" / reference_name, results[reference_name])[0]
        reference_traces, reference_plain = parse_traces(reference_dump), parse_plain(reference_dump)
    except DumpError as error:
        reference_traces = None
        reference_error = f"the reference {reference_name} sent no usable trace: {error}"
    reference_side = side_of(reference_name, reference_settings, results[reference_name])

    searches: Dict[str, dict] = {}
    for name in boards:
        side = side_of(name, board_settings, results[name])
        limits = tolerance_for([(ran_precision(reference_settings, reference_side), reference_side.cpu_features),
                                (ran_precision(board_settings, side), side.cpu_features)], tolerance)
        result = BoardLayers(board=side, reference=reference_side, budget_mb=budget_mb, samples=len(samples),
                             tolerance={"arithmetic": limits.arithmetic, "eps": limits.eps, "fixed": limits.fixed,
                                        "steps": limits.steps, "text": limits.describe()})
        report.boards.append(result)
        if reference_traces is None:
            result.error = reference_error
            continue
        try:
            board_dump = read_dump(run_dir / "trace" / name, results[name])[0]
            board_traces, board_plain = parse_traces(board_dump), parse_plain(board_dump)
        except DumpError as error:
            result.error = f"{name} sent no usable trace: {error}"
            continue
        common = sorted(set(board_traces) & set(reference_traces))
        if not common:
            result.error = "the two sides traced different samples"
            continue
        per_sample = {s: summary_rows(board_traces[s], reference_traces[s], limits)[0] for s in common}
        problem = nothing_compared(per_sample[common[0]], name, reference_name)
        if problem:
            result.error = problem
            continue
        result.sample, result.sample_reason = choose_sample(per_sample)
        result.sample_name = sample_name(inputs.sample_names, result.sample)
        result.sample_firsts, result.sample_nonfinite = [], []
        for s in common:
            rows = per_sample[s]
            first = next((r for r in rows if r.verdict == "over"), None)
            result.sample_firsts.append(f"{first.name} ({first.type})" if first else None)
            making = first_nonfinite(rows)
            result.sample_nonfinite.append(f"{rows[making].name} ({rows[making].type})" if making is not None
                                           else None)
        # A trace answers only for what a plain run does: MNN's callbacks may change what runs.
        noise = limits.steps * limits.eps
        differs = {}
        for s in common:
            for side_name, checks in ((name, board_plain), (reference_name, reference_plain)):
                why = traced_differs(checks.get(s, {}), noise)
                if why:
                    differs.setdefault(s, f"on {side_name}, {why}")
        # The sample replayed, or one whose plain run holds NaN/Inf: the question the search must answer.
        unanswered = [s for s in common if s in differs and (s == result.sample or any(
            check.get("plain_nonfinite") for check in board_plain.get(s, {}).values()))]
        if unanswered:
            which = sample_name(inputs.sample_names, unanswered[0])
            result.error = (f"the traced run of {which} is not what a plain run gives ({differs[unanswered[0]]}): "
                            "MNN's op callbacks changed what ran, so the trace cannot say which op does it")
            continue
        result.notes += [f"the traced run of {sample_name(inputs.sample_names, s)} is not what a plain run gives "
                         f"({why}): that sample's trace was not used" for s, why in sorted(differs.items())]
        result.rows = per_sample[result.sample]
        result.unmatched = sum(1 for row in result.rows if row.verdict == "unmatched")
        start = first_suspect(result.rows)
        positions = window(board_traces[result.sample], result.rows, start, budget_mb * 2 ** 20) \
            if start is not None else []
        if start is not None and positions and positions[-1] < len(result.rows) - 1:
            result.notes.append(f"whole tensors of {len(positions)} ops fitted --budget {budget_mb:g} MB; the "
                                f"{len(result.rows) - 1 - positions[-1]} ops after them have summary errors only")
        searches[name] = {"traces": board_traces, "positions": positions}

    capture = {name: s for name, s in searches.items() if s["positions"]}
    if capture:
        log(f"capture: whole tensors of the suspicious ops on {', '.join(capture)}")
        spec_of = {spec.name: spec for spec in specs}
        captured = run_jobs(executor, [(spec_of[name], job(f"capture-{name}", board_settings, {
            "samples": [result_of(report, name).sample],
            "keep": {"sample": result_of(report, name).sample,
                     "ops": [result_of(report, name).rows[p].index for p in s["positions"]]}}),
            run_dir / "capture" / name) for name, s in capture.items()], "capture")
        replays = []
        for (name, search), result in zip(capture.items(), captured):
            board = result_of(report, name)
            try:
                data, tensors = read_dump(run_dir / "capture" / name, result)
                search["ops"] = kept_trace(data, board.sample, search["traces"][board.sample])
            except DumpError as error:
                board.error = f"{name} sent no whole tensors: {error}"
                continue
            search["tensors"] = tensors
            board.fetched_mb = sum(array.nbytes for array in tensors.values()) / 2 ** 20
            replay = replay_job(run_dir, name, board, search, reference_traces, inputs.path, reference_settings,
                                job)
            not_replayed = [row for row in (board.rows[p] for p in search["positions"]) if row.not_replayed]
            if not_replayed:
                first = not_replayed[0]
                board.notes.append(f"{len(not_replayed)} op(s) whose whole tensors arrived were not replayed, as "
                                   f"they cannot be fed the board's inputs as they read them: the first #{first.index} "
                                   f"{first.name} ({first.type}): {first.not_replayed}")
            replays.append((name, search, replay))
        if replays:
            log(f"replay: those ops on {reference_name}, fed each board's own inputs")
            replayed = run_jobs(executor, [(reference, replay, run_dir / "replay" / name)
                                           for name, _, replay in replays], "replay")
            for (name, search, _), result in zip(replays, replayed):
                board = result_of(report, name)
                try:
                    data, tensors = read_dump(run_dir / "replay" / name, result)
                    reference_ops = kept_trace(data, board.sample, reference_traces[board.sample])
                except DumpError as error:
                    board.error = f"the replay on {reference_name} failed: {error}"
                    continue
                exact_rows(board.rows, search["positions"], search["ops"], reference_ops, board.sample,
                           search["tensors"], tensors, tensors)
                board.replayed = (search["positions"][0], search["positions"][-1])

    mapping_line = attach_mappings(report, model)
    report.mapping = mapping_line
    for board in report.boards:
        if board.error is None:
            conclude(board)
    report.wall_s = time.perf_counter() - started
    return report


def sample_name(names: List[str], sample: int) -> str:
    return names[sample] if sample < len(names) else f"sample {sample}"


def result_of(report: LayersReport, name: str) -> BoardLayers:
    return next(board for board in report.boards if board.board.board == name)


def kept_trace(data: dict, sample: int, traced: List[OpTrace]) -> List[OpTrace]:
    """The trace of the run that kept a job's whole tensors (its dump.json), which says where each input was
    kept; it must have run the ops the trace round did."""
    ops = parse_traces(data).get(sample)
    if ops is None or [op.key for op in ops] != [op.key for op in traced]:
        raise DumpError(f"the run that kept the tensors of sample {sample} executed other ops than the traced one")
    return ops


def replay_job(run_dir: Path, name: str, board: BoardLayers, search: dict, reference_traces: Dict[int, list],
               inputs_path: Path, settings: dict, make_job) -> Job:
    """The reference's job: its own run keeping the same ops, and a run of those ops on the board's inputs.

    The board's tensors travel as extra arrays of the job's inputs file (the
    model inputs stay as they are), so any target carries them like inputs.
    An op whose inputs cannot be fed as it read them on the board is not
    replayed, and its row says why (not_replayed).
    """
    rows = [board.rows[p] for p in search["positions"]]
    kept = {row.index for row in rows}
    arrays = load_npz(inputs_path)
    inject = {}
    for row in rows:
        keys, row.not_replayed = replay_feeds(search["ops"], kept, board.sample, row.index,
                                              reference_traces[board.sample][row.reference_index], search["tensors"])
        if row.not_replayed is None:
            for key in keys:
                if key is not None:
                    arrays["replay." + key] = search["tensors"][key]
            inject[str(row.reference_index)] = [None if key is None else "replay." + key for key in keys]
    folder = run_dir / "replay" / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "replay-inputs.npz"
    save_npz(path, arrays)
    keep = [row.reference_index for row in rows]
    return make_job(f"replay-{name}", settings, {"samples": [board.sample],
                                                 "keep": {"sample": board.sample, "ops": keep},
                                                 "replay": {"sample": board.sample, "ops": inject}},
                    path, sha256_file(path))


def attach_mappings(report: LayersReport, model) -> str:
    """Map every row's op back to the source model (when there is one); the one-line summary."""
    try:
        graph = read_mnn_graph(model.mnn_path)
    except (MnnFileError, OSError) as error:
        return f"no mapping back to the source: {error}"
    source = None
    if model.source_path is not None:
        try:
            source = read_source_graph(model.source_path, model.source_format)
        except Exception as error:  # noqa: BLE001  a source that cannot be listed costs the mapping, not the search
            return f"no mapping back to {Path(model.source_path).name}: {type(error).__name__}: {error}"
    names = list(dict.fromkeys(row.name for board in report.boards for row in board.rows))
    mappings = map_ops(names, graph, source)
    for board in report.boards:
        for row in board.rows:
            row.source = mappings[row.name].as_dict()
    return mapping_summary(mappings, source)


def write_layers_files(report: LayersReport) -> Dict[str, Path]:
    """layers.json (the record), report.html and one Model Explorer node-data file per board."""
    run_dir = Path(report.run_dir)
    written = {}
    for name, text in (("layers.json", json.dumps(report.to_dict(), indent=1)),
                       ("report.html", render_layers_html(report))):
        written[name] = write_file(run_dir, name, text)
    for board in report.boards:
        if board.error or not board.rows:
            continue
        name = f"model_explorer/{board.board.board}.json"
        written[name] = write_file(run_dir, name, json.dumps(model_explorer_data(board), indent=1))
    return written


__all__ = ["search_layers", "boards_to_search", "write_layers_files", "DEFAULT_BUDGET_MB", "side_settings"]

"""harness repro: from a layer search's finding to a bundle MNN's maintainers can act on, verified before it is offered.

For one op on one board of a layer search (layers.json), the shortest stretch
of ops ending in it is cut out of the deployed .mnn (core/build/cut_model), fed the
board's own values of its inputs (the search's capture, else one capture job
for every stretch it may try), and the bundle's standalone script runs, as a
job of the agent, on the reference side (its settings) and then on the board
(its settings), where it prints its difference against the reference's output. When the
difference does not show what the search found, the stretch grows one
producer level upstream and is tried again, up to `widen` levels; a bundle
that never shows it is not offered (repro.json says what was tried). A
reproducing bundle is run once more on the board at the other precision (the
workaround, measured), gets the source model's sub-graph where the cut's
tensors are the source's (ONNX Runtime's output beside MNN's), its C++
snippet and ISSUE.md, and is renamed into place whole:

    <layers folder>/repro/<board>/<op>/  cut.mnn, tensors.npz, input-N.bin, reference-N.bin, repro.py,
                                         repro.cpp, source.onnx (when there is one), ISSUE.md, repro.json
"""

import difflib
import hashlib
import json
import re
import secrets
import shlex
import shutil
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..analysis.opmap import RASTER
from ..analysis.opdiff import BoardLayers, DumpError, LayersReport, OpRow, OpTrace, parse_traces, tensor_key
from ..analysis.repro import (DEFAULT_WIDEN, EntrySource, Stretch, StretchEntry, StretchError, claim_for,
                              difference, entry_summary, model_output_keys, other_precisions, plan_stretch, removes,
                              same_as_model, shows, worst)
from ..core.board_files import read_result_json
from ..core.cache import sha256_file
from ..core.build.cut_model import CutEntry, CutError, CutModel, cut_mnn, extract_source
from ..core import files
from ..core.errors import BoardResultError, ConfigError, Interrupted
from ..core.files import locked
from ..config.inventory import BoardSpec, Inventory
from ..core.job import Job
from ..core.build.mnn_graph import MnnFileError, MnnGraph, read_mnn_graph
from ..core.repro_files import (CPP_FILE, ISSUE_FILE, MANIFEST_FILE, MODEL_FILE, SCRIPT_FILE, SOURCE_FILE, TENSORS_FILE,
                                TensorSpec, board_key, cpp_snippet, input_key, python_script, raw_files,
                                reference_key, script_args)
from ..core.results import OK, TargetResult
from ..execution.executor import Executor, PlannedJob
from ..execution.interrupt import Interruption
from ..execution.targets.source import SourceModelTarget
from ..record.repro import Attempt, Claim, ReproRecord, SideRun, Workaround
from ..record.run_folder import find_run, read_record
from ..record.serde import SchemaError
from ..views.repro import issue_text
from .layers import read_dump

LAYERS_FILE = "layers.json"
VERIFICATION = "verification"
"""The bundle's sub-folder of the harness's own evidence: each stretch tried, each side's job (result.json,
the agent's log), the captures. A maintainer needs none of it."""
Log = Callable[[str], None]
SAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_FOLDER = 80


# ---- what to reproduce ----------------------------------------------------------------------

def find_layers_folder(reports: Path, given: str) -> Path:
    """The layer search a RUN_OR_LAYERS_FOLDER names: a folder with layers.json (a path, a name under reports or a
    unique part of one), or a run (as `harness report` finds it) whose layer search (`--find-layer`) is the
    first of that scenario and model stored under reports after the run started."""
    for candidate in (Path(given), reports / given):
        if (candidate / LAYERS_FILE).is_file():
            return candidate
    searches = sorted(path.parent for path in reports.glob(f"*/{LAYERS_FILE}")) if reports.is_dir() else []
    named = [path for path in searches if given in path.name]
    if len(named) == 1:
        return named[0]
    try:
        run_dir = find_run(reports, given)
    except ConfigError as error:
        raise ConfigError(given, None, f"no layer search (layers.json) and no run (summary.json) by this name "
                          f"under {reports} ({error.problem.strip()})",
                          "give the folder `harness layers` printed (reports/<run-id>-layers), or a run whose "
                          "search `harness run --find-layer` made; --reports DIR for another reports folder") \
            from error
    return _layers_of_run(run_dir, reports)


def _layers_of_run(run_dir: Path, reports: Path) -> Path:
    record = read_record(run_dir)
    found = []
    for path in sorted({*reports.glob(f"*/{LAYERS_FILE}"), *run_dir.parent.glob(f"*/{LAYERS_FILE}")}):
        try:
            search = LayersReport.from_dict(json.loads(path.read_text()), str(path))
        except (OSError, ValueError, SchemaError):
            continue
        if search.scenario == record.name and (search.model or {}).get("mnn_sha256") == record.model.mnn_sha256 \
                and search.started_at >= record.started_at:
            found.append((search.started_at, path.parent))
    if not found:
        raise ConfigError(run_dir, None, "this run has no layer search stored beside it",
                          f"run `harness run {record.scenario.get('path', 'SCENARIO')} --find-layer`, or "
                          "`harness layers SCENARIO --board B`, then give its folder")
    return min(found)[1]


def read_search(folder: Path) -> LayersReport:
    path = folder / LAYERS_FILE
    try:
        return LayersReport.from_dict(json.loads(path.read_text()), str(path))
    except (OSError, ValueError, SchemaError) as error:
        raise ConfigError(path, None, f"cannot read this layer search: {type(error).__name__}: {error}",
                          "run `harness layers` again") from error


def choose_board(report: LayersReport, folder: Path, board: Optional[str]) -> BoardLayers:
    searched = [b.board.board for b in report.boards]
    if board is None:
        if len(searched) != 1:
            raise ConfigError(folder / LAYERS_FILE, "--board", f"the search has {len(searched)} boards "
                              f"({', '.join(searched)})", "name one with --board")
        board = searched[0]
    chosen = next((b for b in report.boards if b.board.board == board), None)
    if chosen is None:
        raise ConfigError(folder / LAYERS_FILE, "--board", f"the search has no board {board!r}",
                          f"use one of {', '.join(searched)}")
    if chosen.error:
        raise ConfigError(folder / LAYERS_FILE, "--board", f"the search of {board} failed: {chosen.error}",
                          "run the search again")
    return chosen


def choose_op(board: BoardLayers, folder: Path, op: Optional[str]) -> OpRow:
    """The row of --op, or the first op that introduces error (then the first NaN/Inf)."""
    where = folder / LAYERS_FILE
    if op is None:
        index = board.first_introduced if board.first_introduced is not None else board.first_nonfinite
        if index is None:
            raise ConfigError(where, "--op", f"no op introduces error on {board.board.board} in this search",
                              "name the op to reproduce with --op (and --tolerance for a limit of your own)")
        return board.rows[index]
    rows = [row for row in board.rows if row.name == op]
    if not rows:
        close = difflib.get_close_matches(op, [row.name for row in board.rows], n=3, cutoff=0.5)
        raise ConfigError(where, "--op", f"{board.board.board} ran no op named {op!r}",
                          f"did you mean {' or '.join(close)}?" if close else
                          "copy a name from the search's table (`harness layers ... --all`)")
    return rows[0]


def bundle_folder(folder: Path, board: str, op: str) -> Path:
    """<layers folder>/repro/<board>/<op as a safe folder name>: an op name that is not one already (SegFormer's
    /inner/segformer/...) keeps its end and gets a digest of the whole, so names that fold alike stay apart."""
    safe = SAFE.sub("_", op).strip("._-") or "op"
    if safe != op or len(safe) > MAX_FOLDER:
        tail = safe[-(MAX_FOLDER - 9):]
        if len(tail) < len(safe) and "_" in tail[:-1]:
            tail = tail[tail.index("_") + 1:]  # from a word's start, not the middle of one
        safe = f"{tail.lstrip('._-') or 'op'}-{hashlib.sha256(op.encode()).hexdigest()[:8]}"
    return folder / "repro" / board / safe


# ---- the run --------------------------------------------------------------------------------

class _Search:
    """What a reproduction reads of the layer search, checked once."""

    def __init__(self, folder: Path, report: LayersReport, board: BoardLayers, row: OpRow):
        self.folder, self.report, self.board, self.row = folder, report, board, row
        self.name = board.board.board
        model = report.model or {}
        self.model = Path(str(model.get("mnn", "")))
        where = folder / LAYERS_FILE
        if not self.model.is_file():
            raise ConfigError(where, "model.mnn", f"{self.model} is gone", "run `harness layers` again")
        if sha256_file(self.model) != model.get("mnn_sha256"):
            raise ConfigError(where, "model.mnn", f"{self.model} changed since the search (its SHA-256 differs)",
                              "run `harness layers` again on the model as deployed now")
        try:
            self.graph: MnnGraph = read_mnn_graph(self.model)
        except MnnFileError as error:
            raise ConfigError(where, "model.mnn", str(error)) from error
        trace_dir = folder / "trace" / self.name
        try:
            data, _ = read_dump(trace_dir, stored_result(trace_dir, self.name))
            self.trace: List[OpTrace] = parse_traces(data)[board.sample]
            self.job = json.loads((trace_dir / "job.json").read_text())
        except (DumpError, KeyError, OSError, ValueError) as error:
            raise ConfigError(trace_dir, None, f"the search's trace of {self.name} cannot be read: {error}",
                              "run `harness layers` again") from error
        self.captured: Dict[str, np.ndarray] = {}
        self.kept: set = set()
        capture_dir = folder / "capture" / self.name
        if (capture_dir / "dump.npz").is_file():
            try:
                _, tensors = read_dump(capture_dir, stored_result(capture_dir, self.name))
                self.add_capture(tensors)
            except DumpError:
                pass  # unreadable: the reproduction captures what it needs itself
        try:
            with np.load(folder / "inputs.npz", allow_pickle=False) as stored:
                self.inputs = {key: stored[key][board.sample if len(stored[key]) > 1 else 0] for key in stored.files}
        except (OSError, ValueError, IndexError) as error:
            raise ConfigError(folder / "inputs.npz", None, f"the search's inputs cannot be read: {error}",
                              "run `harness layers` again") from error

    def add_capture(self, tensors: Dict[str, np.ndarray]) -> None:
        self.captured.update(tensors)
        self.kept |= {int(key.split(".")[1][2:]) for key in tensors if ".op" in key and ".out" in key}

    def value(self, entry: StretchEntry) -> Optional[Tuple[np.ndarray, EntrySource]]:
        """The board's value of a stretch input from what has been captured (and where it came from), or None.

        An op's input is kept as the output whose values and shape it holds when that op was kept too (the agent
        matches them by content), else as the input itself; a value is taken only in the shape the op ran with."""
        sample = self.board.sample
        for source in entry.sources:
            expected = None
            if source.kind == "model":
                array = self.inputs.get(entry.tensor)
            elif source.kind == "output":
                array = self.captured.get(f"s{sample}.op{source.op}.out{source.slot}")
                expected = self.trace[source.op].outputs[source.slot]["shape"]
            elif source.kind == "input":
                array = self.captured.get(f"s{sample}.op{source.op}.in{source.slot}")
                if array is None:
                    array = self.captured.get(tensor_key(self.trace, self.kept, sample, source.op, source.slot))
                expected = self.trace[source.op].input_shapes[source.slot]
            else:
                array = None  # worked out from shapes by the cut, never captured
            if array is not None and (expected is None or list(array.shape) == list(expected)):
                return array, source
        return None


def run_job(executor: Executor, board: BoardSpec, job: Job, folder: Path, label: str) -> TargetResult:
    """One job on its board's session; a Ctrl-C or SIGTERM stops it as a run stops (agent killed, job removed,
    lock released) and ends the reproduction with Interrupted."""
    (result,) = executor.run([PlannedJob(board, job, folder, label)])
    if executor.interruption.is_set():
        raise Interrupted(f"the repro was interrupted ({executor.interruption.signal_name}); its boards were "
                          "stopped and no bundle was written", exit_code=executor.interruption.exit_code)
    return result


def stored_result(folder: Path, board: str) -> TargetResult:
    """A stored job's result.json as a result (read_dump checks its dump against the hashes there)."""
    try:
        facts = read_result_json(folder / "result.json")
    except BoardResultError as error:
        raise DumpError(str(error)) from error
    return TargetResult(target=board, kind="", status=facts.get("status", ""), facts=facts)


def make_repro(layers_dir: Path, inventory: Inventory, op: Optional[str] = None, board: Optional[str] = None,
               widen: int = DEFAULT_WIDEN, tolerance: Optional[float] = None, log: Log = lambda message: None,
               lock_timeout: float = 300.0, interruption: Optional[Interruption] = None,
               executor: Optional[Executor] = None) -> ReproRecord:
    """Reproduce one op's error of a stored layer search outside the model, and write the bundle (see the module).

    The jobs run on executor's board sessions (the search's, for `layers --repro`), or on sessions of its own.
    """
    report = read_search(layers_dir)
    chosen = choose_board(report, layers_dir, board)
    row = choose_op(chosen, layers_dir, op)
    claim = claim_for(row, tolerance)
    if claim is None:
        raise ConfigError(layers_dir / LAYERS_FILE, "--op", f"{row.name} on {chosen.board.board} stays within "
                          f"its tolerance {row.tolerance:.2g} (introduced {_shown(row.introduced)}, on exit "
                          f"{_shown(row.exit)}): there is nothing to reproduce",
                          "name an op the search marks ✗ or ~, or pass --tolerance with a limit of your own")
    search = _Search(layers_dir, report, chosen, row)
    where = layers_dir / LAYERS_FILE
    if search.graph.op(row.name) is None:
        parent = RASTER.match(row.name)
        raise ConfigError(where, "--op", f"{row.name} ({row.type}) is an op MNN generated while running, no op of "
                          f"{search.model.name}: there is nothing of it to cut",
                          f"reproduce the op it was made for: --op {parent.group(1)}" if parent else
                          "name an op of the model")
    board_spec = inventory.board(search.name, where, "--board")
    reference_spec = inventory.board(report.reference, where, "reference")
    with ExitStack() as stack:
        if executor is None:
            executor = stack.enter_context(Executor(interruption=interruption, lock_timeout=lock_timeout))
        return _reproduce(search, claim, board_spec, reference_spec, widen, log, executor)


def _shown(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.2g}"


def _reproduce(search: _Search, claim: Claim, board_spec: BoardSpec, reference_spec: BoardSpec, widen: int, log: Log,
               executor: Executor) -> ReproRecord:
    started = time.perf_counter()
    row, board = search.row, search.board
    final = bundle_folder(search.folder, search.name, row.name)
    record = ReproRecord(op=row.name, op_type=row.type, board=_side(board.board, board_spec),
                         reference=_side(board.reference, reference_spec),
                         claim=claim, layers_dir=str(search.folder), bundle_dir=str(final), sample=board.sample,
                         sample_name=board.sample_name, model=_model_facts(search),
                         started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    # the bundle appears whole or not at all; a bundle of an earlier repro of the same op is replaced
    with locked(final.with_name(f".{final.name}.lock")), files.building(final) as building:
        runner = _Runner(search, executor, board_spec, reference_spec, building)
        stretches: List[object] = []
        for level in range(widen + 1):
            try:
                stretches.append(plan_stretch(search.graph, search.trace, row.index, level))
            except StretchError as error:
                stretches.append(error)
                if error.final:
                    break
        log(f"repro: the board's values of the inputs, from {search.name}")
        problem = runner.prefetch([s for s in stretches if isinstance(s, Stretch)])
        for level, stretch in enumerate(stretches):
            log(f"repro: {row.name} on {search.name}, " + ("the op alone" if level == 0 else
                                                             f"widened {level} producer level(s) upstream"))
            attempt, made, final_try = runner.attempt(claim, stretch, problem)
            record.attempts.append(attempt)
            if attempt.reproduces:
                record.reproduces = True
                runner.finish(record, attempt, *made, log)
                break
            if final_try:
                break
        record.wall_s = time.perf_counter() - started
        (building / MANIFEST_FILE).write_text(json.dumps(record.to_dict(), indent=1))
    return record


def _side(side, spec: BoardSpec) -> dict:
    """A side of the search as the record keeps it, with what the inventory says of the board (kind, emulated CPU)."""
    return {"board": side.board, "settings": dict(side.settings), "machine": side.machine,
            "mnn_version": side.mnn_version, "cpu_features": list(side.cpu_features), "arithmetic": side.arithmetic,
            "label": side.label, "kind": spec.kind, **({"cpu": spec.cpu} if spec.kind == "emulated" else {})}


def _model_facts(search: _Search) -> dict:
    model = dict(search.report.model or {})
    model["bytes"] = search.model.stat().st_size
    convert = search.model.parent / "convert.json"
    if model.get("converted") and convert.is_file():
        try:
            facts = json.loads(convert.read_text())
            model["converter_args"] = list(facts.get("args") or [])
            model["converter_version"] = facts.get("mnn")
        except (OSError, ValueError):
            pass
    return model


class _Runner:
    """The jobs of one reproduction: captures on the board, the bundle's script on both sides."""

    def __init__(self, search: _Search, executor: Executor, board: BoardSpec, reference: BoardSpec, building: Path):
        self.search, self.executor, self.board, self.reference, self.building = (search, executor, board, reference,
                                                                                 building)
        self.count = 0
        self.nhwc: List[str] = []
        """The inputs of the current cut given in TensorFlow's layout (an NHWC model's own input)."""
        self.title = (f"MNN repro: {search.row.name} ({search.row.type}) on {search.name} at precision "
                      f"{search.board.board.settings.get('precision', 'normal')}")

    def job_id(self, label: str) -> str:
        self.count += 1
        return f"{self.search.folder.name}-repro-{label}-{self.count}-{secrets.token_hex(2)}"

    # -- a stretch -----------------------------------------------------------------------------

    def attempt(self, claim: Claim, stretch, capture_problem: Optional[str]) -> Tuple[Attempt, tuple, bool]:
        """One stretch (or why there is none): (what it showed, (folder, cut, tensors) when it ran, whether widening
        further is pointless: nothing more upstream, or a side that cannot run the bundle at all)."""
        search = self.search
        if isinstance(stretch, StretchError):
            return Attempt(ops=[], executed=[], problem=str(stretch)), (), stretch.final
        attempt = Attempt(ops=stretch.ops, executed=[search.trace[i].name for i in stretch.executed])
        widest = max((search.trace[i] for i in stretch.executed), key=lambda op: op.reduction)
        attempt.reduction, attempt.reduction_op = widest.reduction, widest.name
        folder = self.building / VERIFICATION / f"{len(stretch.ops)}-ops"
        folder.mkdir(parents=True, exist_ok=True)
        arrays = self.values(stretch)
        if arrays is None:
            attempt.problem = capture_problem or "the board's value of an input of the stretch did not arrive"
            return attempt, (), False
        entries = [CutEntry(name, list(array.shape), str(array.dtype)) for name, (array, _) in arrays.items()]
        computed = [e.tensor for e in stretch.entries if e.sources[0].kind == "shape"]
        try:
            cut = cut_mnn(search.model, entries, stretch.outputs, stretch.ops, folder / MODEL_FILE,
                          {name: list(array.shape) for name, array in search.inputs.items()}, computed)
        except CutError as error:
            attempt.problem = str(error)
            return attempt, (), False
        attempt.cut_bytes = cut.bytes
        attempt.entries = entry_summary(stretch.entries, arrays, cut.formats, search.trace) + [
            {"tensor": name, "shape": [len(value)] if isinstance(value, list) else [], "dtype": "int32",
             "format": "", "from": f"worked out from the shapes, {value}: a constant of the cut"}
            for name, value in cut.computed.items()]
        tensors = {input_key(name): array for name, (array, _) in arrays.items()}
        self.nhwc = ([name for name, (_, source) in arrays.items() if source.kind == "model"]
                     if search.job.get("layout") == "NHWC" else [])  # fed as the agent feeds an NHWC model
        script = python_script(self.title, search.board.board.settings, search.board.board.mnn_version, self.nhwc)
        (folder / SCRIPT_FILE).write_text(script)
        np.savez(folder / TENSORS_FILE, **tensors)
        shapes = self.output_shapes(stretch)
        attempt.reference, reference_out = self.run_script(self.reference, search.board.reference.settings, folder,
                                                           cut, script, shapes, "reference")
        if reference_out is None:
            attempt.problem = f"the bundle did not run on {self.reference.name}: {attempt.reference.error}"
            return attempt, (), True
        tensors.update({reference_key(name): array for name, array in reference_out.items()})
        np.savez(folder / TENSORS_FILE, **tensors)
        attempt.board, board_out = self.run_script(self.board, search.board.board.settings, folder, cut, script,
                                                   shapes, "board")
        if board_out is None:
            attempt.problem = f"the bundle did not run on {self.board.name}: {attempt.board.error}"
            return attempt, (), True
        fed = any(a.dtype.kind == "f" and not np.isfinite(a).all() for a, _ in arrays.values())
        attempt.differences = [difference(name, board_out[name], reference_out[name], fed) for name in cut.outputs]
        attempt.error = worst(attempt.differences)
        attempt.reproduces = shows(claim, attempt.differences)
        keys = model_output_keys(stretch, search.trace, search.graph, search.board.sample)
        attempt.same_as_model = same_as_model(board_out, {name: search.captured.get(key)
                                                          for name, key in keys.items()})
        tensors.update({board_key(name): array for name, array in board_out.items()})
        np.savez(folder / TENSORS_FILE, **tensors)
        return attempt, (folder, cut, tensors), False

    def prefetch(self, stretches: List[Stretch]) -> Optional[str]:
        """Capture on the board, in one job, what the stretches need and the search did not keep (the search's
        sample and settings); None, or why the capture failed."""
        search = self.search
        needed = set()
        for stretch in stretches:
            keys = model_output_keys(stretch, search.trace, search.graph, search.board.sample)
            if any(search.value(e) is None for e in stretch.entries if e.sources[0].kind != "shape") \
                    or any(key not in search.captured for key in keys.values()):
                needed.update(stretch.needed_ops())
        if not needed:
            return None
        folder = self.building / VERIFICATION / "capture"
        result = self.capture(sorted(needed), folder)
        try:
            _, tensors = read_dump(folder, result)
        except DumpError as error:
            return f"the capture on {search.name} sent no whole tensors: {error}"
        search.add_capture(tensors)
        return None

    def values(self, stretch: Stretch) -> Optional[Dict[str, Tuple[np.ndarray, EntrySource]]]:
        """The board's value of every input of the stretch fed from outside, and where it came from (those worked
        out from shapes are the cut's business); None when one is missing."""
        arrays = {}
        for entry in stretch.entries:
            if entry.sources[0].kind == "shape":
                continue
            found = self.search.value(entry)
            if found is None:
                return None
            arrays[entry.tensor] = (np.ascontiguousarray(found[0]), found[1])
        return arrays

    def capture(self, ops: List[int], folder: Path) -> TargetResult:
        """A capture job on the board: the search's model, inputs, sample and settings, these ops kept whole."""
        search = self.search
        job, sample = search.job, search.board.sample
        inputs = search.folder / "inputs.npz"
        capture = Job(id=self.job_id("capture"), model_path=search.model, model_sha256=sha256_file(search.model),
                      inputs_path=inputs, inputs_sha256=sha256_file(inputs), input_names=list(job["input_names"]),
                      output_names=list(job["output_names"]), layout=job.get("layout", "NCHW"),
                      settings=dict(search.board.board.settings), samples=1,
                      dump={"samples": [sample], "keep": {"sample": sample, "ops": ops}})
        return run_job(self.executor, self.board, capture, folder, "repro capture")

    def output_shapes(self, stretch: Stretch) -> Dict[str, List[int]]:
        op = self.search.trace[stretch.target_index]
        target = self.search.graph.op(stretch.target)
        if target is None or len(op.outputs) != len(target.outputs):
            return {}
        return {tensor: list(op.outputs[k]["shape"]) for k, tensor in enumerate(target.outputs)}

    def run_script(self, spec: BoardSpec, settings: dict, folder: Path, cut: CutModel, script: str,
                   shapes: Dict[str, List[int]], label: str) -> Tuple[SideRun, Optional[Dict[str, np.ndarray]]]:
        """The bundle's script on one side with its settings; its outputs by the cut's output names."""
        names = [f"output{k}" for k in range(len(cut.outputs))]
        job = Job(id=self.job_id(label), model_path=cut.path, model_sha256=sha256_file(cut.path),
                  inputs_path=folder / TENSORS_FILE, inputs_sha256=sha256_file(folder / TENSORS_FILE),
                  input_names=[], output_names=names, layout=self.search.job.get("layout", "NCHW"),
                  settings={k: settings[k] for k in ("precision", "threads", "backend") if k in settings},
                  script={"name": SCRIPT_FILE, "source": script, "args": script_args(settings),
                          "saves": list(cut.outputs), "python": shlex.split(spec.python) if spec.python else None},
                  output_shapes={name: shapes.get(tensor) for name, tensor in zip(names, cut.outputs)})
        result = run_job(self.executor, spec, job, folder / f"{label}-{spec.name}", f"repro {label}")
        facts = result.facts or {}
        script_facts = facts.get("script") or {}
        run = SideRun(board=spec.name, settings=dict(job.settings), machine=str(facts.get("machine") or ""),
                      mnn_version=str(facts.get("mnn_version") or ""), mnn_banner=str(facts.get("mnn_banner") or ""),
                      cpu_features=[str(f) for f in facts.get("cpu_features") or []],
                      python=str(facts.get("python") or ""), seconds=float(script_facts.get("seconds") or 0.0),
                      output=str(script_facts.get("output") or ""),
                      command=" ".join(["python3", SCRIPT_FILE] + script_args(settings)))
        if result.status != OK:
            run.error = result.error or "the job failed"
            return run, None
        return run, {tensor: result.outputs[name][0] for name, tensor in zip(names, cut.outputs)}

    # -- the bundle ----------------------------------------------------------------------------

    def finish(self, record: ReproRecord, attempt: Attempt, folder: Path, cut: CutModel,
               tensors: Dict[str, np.ndarray], log: Log) -> None:
        """Promote the reproducing attempt's files to the bundle and add what a maintainer needs beside them."""
        search = self.search
        for name in (MODEL_FILE, TENSORS_FILE, SCRIPT_FILE):
            shutil.copy2(folder / name, self.building / name)
        cut.path = self.building / MODEL_FILE
        inputs = [TensorSpec(e.name, list(e.shape), e.dtype) for e in cut.entries]
        outputs = [TensorSpec(name, list(tensors[reference_key(name)].shape), str(tensors[reference_key(name)].dtype))
                   for name in cut.outputs]
        for name, data in raw_files(inputs, outputs, tensors).items():
            (self.building / name).write_bytes(data)
        (self.building / CPP_FILE).write_text(cpp_snippet(self.title, search.board.board.settings,
                                                          search.board.board.mnn_version, inputs, outputs,
                                                          self.nhwc))
        record.cut = {"bytes": cut.bytes, "ops": [{"name": op.name, "type": op.type, "params": op.params}
                                                  for op in cut.ops],
                      "inputs": attempt.entries, "outputs": [spec.__dict__ for spec in outputs],
                      "converter_version": cut.converter_version, "biz_code": cut.biz_code}
        record.source = self.source_subgraph(cut, tensors)
        for precision in other_precisions(str(search.board.board.settings.get("precision", "normal"))):
            log(f"repro: the workaround, {search.name} at precision {precision}")
            record.workarounds.append(self.workaround(record.claim, precision, cut, tensors))
        record.files = {}
        (self.building / ISSUE_FILE).write_text(issue_text(record))
        record.files = {path.name: sha256_file(path) for path in sorted(self.building.iterdir())
                        if path.is_file() and not path.name.startswith(".") and path.name != MANIFEST_FILE}

    def workaround(self, claim: Claim, precision: str, cut: CutModel, tensors: Dict[str, np.ndarray]) -> Workaround:
        settings = {**self.search.board.board.settings, "precision": precision}
        result = Workaround(label=f"precision {precision}", settings=settings)
        folder = self.building / VERIFICATION / f"workaround-{precision}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.building / TENSORS_FILE, folder / TENSORS_FILE)
        script = (self.building / SCRIPT_FILE).read_text()
        run, out = self.run_script(self.board, settings, folder, cut, script, self.shapes_of(cut, tensors),
                                   f"workaround-{precision}")
        result.run = run
        if out is None:
            result.problem = run.error
            return result
        fed = any(a.dtype.kind == "f" and not np.isfinite(a).all()
                  for key, a in tensors.items() if key.startswith(input_key("")))
        result.differences = [difference(name, out[name], tensors[reference_key(name)], fed) for name in cut.outputs]
        result.error = worst(result.differences)
        result.removes = removes(claim, result.differences)
        return result

    @staticmethod
    def shapes_of(cut: CutModel, tensors: Dict[str, np.ndarray]) -> Dict[str, List[int]]:
        return {name: list(tensors[reference_key(name)].shape) for name in cut.outputs}

    def source_subgraph(self, cut: CutModel, tensors: Dict[str, np.ndarray]) -> dict:
        """The source model's sub-graph between the cut's inputs and outputs, when both are tensors of an ONNX
        source (the op maps back exactly); ONNX Runtime's output on the board's inputs against both sides'."""
        model = self.search.report.model or {}
        source = model.get("source")
        if not source:
            return {"note": "no source model: the search ran the deployed .mnn alone"}
        if model.get("source_format") != "ONNX":
            return {"note": f"the source is {model.get('source_format')}: only an ONNX source is cut here"}
        try:
            outputs = {name: tensors[reference_key(name)] for name in cut.outputs}
            nodes = extract_source(Path(source), {e.name: (e.shape, e.dtype) for e in cut.entries},
                                   {name: (list(array.shape), str(array.dtype)) for name, array in outputs.items()},
                                   self.building / SOURCE_FILE)
        except CutError as error:
            return {"note": str(error)}
        try:
            loaded = SourceModelTarget.load(self.building / SOURCE_FILE, "ONNX")
            run, runtime = loaded.run, loaded.runtime
            feeds = {e.name: tensors[input_key(e.name)] for e in cut.entries}
            produced = dict(zip(cut.outputs, run(feeds, list(cut.outputs))))
        except Exception as error:  # noqa: BLE001  the sub-graph is a courtesy: its failure is said, not fatal
            return {"file": SOURCE_FILE, "nodes": nodes, "note": f"ONNX Runtime could not run it: "
                    f"{type(error).__name__}: {error}"}
        return {"file": SOURCE_FILE, "nodes": nodes, "inputs": [e.name for e in cut.entries],
                "outputs": list(cut.outputs), "runtime": runtime,
                "against_reference": [difference(name, np.asarray(produced[name]), reference).__dict__
                                      for name, reference in outputs.items()],
                "board_against_it": [difference(name, tensors[board_key(name)], np.asarray(produced[name])).__dict__
                                     for name in cut.outputs]}


__all__ = ["make_repro", "find_layers_folder", "bundle_folder", "DEFAULT_WIDEN"]

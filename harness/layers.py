"""The first divergent layer: which op, in graph order, is the first whose output leaves tolerance.

The ONNX source gives every op's output tensor in graph order; MNN keeps the
ones that survive its fusions (saveTensors). Two passes keep what crosses the
wire small. First the x86 host and the board each send a summary of every
kept tensor (statistics and values at fixed positions, see the agent's
dump_layers); the first op whose summary differs beyond the tolerance is the
candidate. Then both send the whole tensors of the ops around it, and the
exact comparison names the first op that leaves tolerance.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import List, Optional

import numpy as np

from .compare import metrics
from .errors import ConfigError
from .inventory import Inventory
from .job import Job
from .model import prepare_model
from .runner import new_run_folder, new_run_id, prepare_inputs, run_folder, stream_spec
from .scenario import Scenario
from .targets import make_target

DEFAULT_TOLERANCE = 1e-2
"""Relative error (max |board - x86| / max |x86|) an op's output may show before it counts as divergent."""
WINDOW = 2
"""Ops on each side of the candidate whose whole tensors are compared."""


@dataclass
class LayerRow:
    index: int
    name: str
    type: str
    shape: list
    summary_error: Optional[float]
    """Relative error over the summary's probe values (inf when the board has NaN/Inf the host has not)."""
    exact: Optional[dict] = None
    """Exact metrics over the whole tensor, for the ops around the candidate."""


@dataclass
class LayerReport:
    board: str
    run_dir: Path
    tolerance: float
    rows: List[LayerRow] = field(default_factory=list)
    first: Optional[LayerRow] = None
    error: Optional[str] = None
    missing_on_board: int = 0
    """Ops of the host's graph that the board's run did not report (a different fusion)."""


def relative_error(board: dict, host: dict) -> float:
    if (board["nan"] or board["inf"]) and not (host["nan"] or host["inf"]):
        return float("inf")
    pairs = [(b, h) for b, h in zip(board["probe"], host["probe"]) if b is not None and h is not None]
    if not pairs:
        return 0.0
    b, h = np.array(pairs, dtype=np.float64).T
    scale = max(float(np.abs(h).max()), 1e-12)
    return float(np.abs(b - h).max() / scale)


def exact_error(board: np.ndarray, host: np.ndarray) -> dict:
    values = metrics(board[np.newaxis], host[np.newaxis])
    scale = max(float(np.abs(host).max()), 1e-12)
    return {"max_abs": values["max_abs"], "relative": values["max_abs"] / scale if np.isfinite(board).all()
            else float("inf"), "cosine": values["cosine"], "nan": values["nan_count"], "inf": values["inf_count"]}


def graph_tensors(onnx_path: Path) -> List[tuple]:
    """(tensor name, op type, op name) of every op output of the ONNX graph, in graph order."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return [(output, node.op_type, node.name or output) for node in graph.node for output in node.output if output]


def _run_pair(scenario, inventory, board, job, run_dir, label):
    targets = [make_target(inventory.board(scenario.reference)), make_target(board)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(t.run, job, run_dir / label / t.name) for t in targets]
        results = [f.result() for f in futures]
    for target in targets:
        target.close()
    dumps = []
    for target, result in zip(targets, results):
        path = run_dir / label / target.name / "dump.json"
        if not path.is_file():
            raise RuntimeError(f"{target.name} sent no layer dump: {result.error or result.status}")
        dumps.append(json.loads(path.read_text())["tensors"])
    return dumps


def find_first_divergence(scenario: Scenario, inventory: Inventory, board_name: str, reports_dir: Path,
                          tolerance: float = DEFAULT_TOLERANCE, sample: int = 0) -> LayerReport:
    board = inventory.board(board_name, scenario.path, "--board")
    if board.kind == "local":
        raise ConfigError(scenario.path, "--board", f"{board_name} is the x86 host itself",
                          "name a board to compare with it")
    if scenario.stream is not None:
        raise ConfigError(scenario.path, "stream", "the layer search dumps one sample with the Session API; "
                          "a stream's steps depend on each other", "look for the layer in a scenario without `stream:`")
    scenario = replace(scenario, run=replace(scenario.run, api="session", io="copy"))
    run_dir = run_folder(reports_dir, new_run_id(scenario) + f"-layers-{board_name}")
    model = prepare_model(scenario.model, log=lambda message: None)
    if model.source_format != "ONNX":
        raise ConfigError(scenario.path, "model", "the layer search reads tensor names from an ONNX source",
                          "give the model as ONNX")
    with new_run_folder(run_dir):
        inputs = prepare_inputs(scenario, model, run_dir)
    report = LayerReport(board=board_name, run_dir=run_dir, tolerance=tolerance)
    order = graph_tensors(model.source_path)
    op_types = {name: op_type for name, op_type, _ in order}

    def job(label, keep):
        return Job(id=f"{run_dir.name}-{label}", model_path=model.mnn_path, model_sha256=model.mnn_sha256,
                   inputs_path=inputs.path, inputs_sha256=inputs.sha256, input_names=list(model.inputs),
                   output_names=list(model.outputs),
                   layout=scenario.preprocess.layout if scenario.preprocess else "NCHW",
                   samples=inputs.count, stream=stream_spec(scenario, inputs),
                   settings=scenario.run.as_dict(),
                   dump={"sample": sample, "tensors": [name for name, _, _ in order], "keep": keep})

    try:
        host_ops, board_ops = _run_pair(scenario, inventory, board, job("summary", []), run_dir, "summary")
    except RuntimeError as error:
        report.error = str(error)
        return report
    on_board = {op["name"]: op for op in board_ops}
    for index, op in enumerate(host_ops):
        other = on_board.get(op["name"])
        op_type = op_types.get(op["name"], "?")
        if other is None or other["shape"] != op["shape"]:
            report.missing_on_board += 1
            report.rows.append(LayerRow(index, op["name"], op_type, op["shape"], None))
            continue
        report.rows.append(LayerRow(index, op["name"], op_type, op["shape"], relative_error(other, op)))
    compared = [row for row in report.rows if row.summary_error is not None]
    candidate = next((i for i, row in enumerate(compared) if row.summary_error > tolerance), None)
    if candidate is None:
        return report
    window = compared[max(0, candidate - WINDOW): candidate + WINDOW + 1]
    names = [row.name for row in window]
    _run_pair(scenario, inventory, board, job("tensors", names), run_dir, "tensors")
    arrays = []
    for side in (scenario.reference, board_name):
        with np.load(run_dir / "tensors" / side / "dump.npz", allow_pickle=False) as data:
            arrays.append({key: data[key] for key in data.files})
    host_arrays, board_arrays = arrays
    for row in window:
        if row.name in host_arrays and row.name in board_arrays:
            row.exact = exact_error(board_arrays[row.name], host_arrays[row.name])
    report.first = next((row for row in window if row.exact and row.exact["relative"] > tolerance),
                        compared[candidate])
    return report


def render_layers(report: LayerReport, console) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    if report.error:
        console.print(f"[red]layer dump failed: {report.error}[/]")
        return
    table = Table(title=f"Layers: {report.board} against x86 (relative error, tolerance {report.tolerance:g})",
                  title_justify="left", box=box.SIMPLE_HEAD, header_style="bold")
    for column in ("#", "Op", "Type", "Shape", "summary", "exact max abs", "exact rel", "cosine"):
        table.add_column(column, no_wrap=True, justify="right" if column not in ("Op", "Type", "Shape") else "left")
    first_index = report.first.index if report.first else None
    shown = [row for row in report.rows if first_index is None or abs(row.index - first_index) <= 6]
    for row in shown:
        style = "bold red" if row is report.first else ("red" if (row.summary_error or 0) > report.tolerance else "")
        exact = row.exact or {}
        table.add_row(str(row.index), Text(row.name, style), row.type, "x".join(map(str, row.shape)),
                      "–" if row.summary_error is None else f"{row.summary_error:.2e}",
                      f"{exact['max_abs']:.2e}" if exact else "", f"{exact['relative']:.2e}" if exact else "",
                      f"{exact['cosine']:.6f}" if exact else "")
    console.print(table)
    if report.first is None:
        console.print(Text(f"no op of {report.board} leaves tolerance {report.tolerance:g} against x86", "green"))
    else:
        row = report.first
        error = row.exact["relative"] if row.exact else row.summary_error
        console.print(Text(f"first divergent op: #{row.index} {row.name} ({row.type}), relative error "
                           f"{error:.3g}" + (" (NaN/Inf on the board)" if error == float("inf") else ""),
                           "bold red"))
    console.print(f"[dim]dumps: {report.run_dir}[/]")

"""harness layers: the first op that goes wrong, from the deployed .mnn alone, board against board.

tiny_segnet's overflow_layer N scales conv N's output past FP16's range and
conv N+1's weights back: the same function in float32, an overflow at exactly
conv N when a board computes in FP16 (precision low on a Cortex-A76; a
Cortex-A53 has no FP16 arithmetic and computes in float32 whatever it is asked).
"""

import json
import math
import os
import shutil

import numpy as np
import pytest
from rich.console import Console

from harness.cli import main
from harness.emulation import board as emulated
from harness.config.inventory import load_inventory
from harness.plans.layers import search_layers, write_layers_files
from harness.views.layers import FLOAT32_MAX, board_table, model_explorer_data, render_layers
from harness.core.build.model import prepare_model
from harness.analysis.opdiff import DumpError, LayersReport, nothing_compared, parse_traces, summary_rows, tolerance_for
from harness.config.scenario import load_scenario

from .conftest import REPO, scenario_text

PREFIX = f"ly{os.getpid()}"
A76, A53 = f"{PREFIX}-a76", f"{PREFIX}-a53"
INVENTORY = (f"boards:\n  x86: {{kind: local}}\n  x86b: {{kind: local}}\n"
             f"  {A76}: {{kind: emulated, cpu: cortex-a76}}\n  {A53}: {{kind: emulated, cpu: cortex-a53}}\n")
DEPLOYED = """\
name: deployed
model: {{mnn: tiny.mnn}}
inputs:
  images: [{images}]
preprocess:
  resize: {{height: 64, width: 64, interpolation: area}}
  mean: [0.485, 0.456, 0.406]
  std: [0.229, 0.224, 0.225]
run: {{precision: {precision}}}
targets: [x86]
"""

# Model Explorer's node data for one graph, as its documentation gives it (NodeDataProviderGraphData in
# src/ui/src/components/visualizer/common/types.ts; GraphNodeData in the Python package's node_data_builder.py).
COLOUR = {"type": "string", "minLength": 1}
MODEL_EXPLORER_GRAPH_NODE_DATA = {
    "type": "object",
    "required": ["results"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "results": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["value"], "additionalProperties": False,
            "properties": {"value": {"type": "number"}, "bgColor": COLOUR, "textColor": COLOUR}}},
        "thresholds": {"type": "array", "items": {
            "type": "object", "required": ["value", "bgColor"], "additionalProperties": False,
            "properties": {"value": {"type": "number"}, "bgColor": COLOUR, "textColor": COLOUR}}},
        "gradient": {"type": "array", "items": {
            "type": "object", "required": ["stop"], "additionalProperties": False,
            "properties": {"stop": {"type": "number", "minimum": 0, "maximum": 1}, "bgColor": COLOUR,
                           "textColor": COLOUR}}},
        "hideInAggregatedStatsTable": {"type": "boolean"},
        "hideInChildrenStatsTable": {"type": "boolean"},
        "hideAggregatedStats": {"type": "array", "items": {"enum": ["min", "max", "sum", "avg"]}},
        "showExpandedSummaryOnGroupNode": {"type": "boolean"},
        "showLabelCountColumnsInChildrenStatsTable": {"type": "boolean"},
    },
}


def check_model_explorer_file(path):
    import jsonschema

    def no_constant(name):
        raise AssertionError(f"{path} holds {name}, which JSON (and Model Explorer) cannot read")

    data = json.loads(path.read_text(), parse_constant=no_constant)
    jsonschema.validate(data, MODEL_EXPLORER_GRAPH_NODE_DATA)
    return data


@pytest.fixture(scope="module")
def overflow_mnn(tmp_path_factory):
    """tiny_segnet --overflow-layer 1 converted to .mnn, alone in a folder: no ONNX beside it."""
    folder = tmp_path_factory.mktemp("deployed")
    built = folder / "build.yaml"
    built.write_text(scenario_text(["x86"]).replace("seed: 0}", "seed: 0, overflow_layer: 1}"))
    model = prepare_model(load_scenario(built).model, log=lambda message: None)
    shutil.copy(model.mnn_path, folder / "tiny.mnn")
    built.unlink()
    return folder


@pytest.fixture(scope="module")
def boards():
    yield
    for name in (A76, A53):
        emulated.stop(name)
        emulated.remove(name)


def deployed_scenario(folder, precision, images="skimage:astronaut, skimage:coffee"):
    path = folder / f"deployed-{precision}-{len(images)}.yaml"
    path.write_text(DEPLOYED.format(precision=precision, images=images))
    return path


def layers_json(reports):
    (run_dir,) = [p for p in reports.iterdir() if p.is_dir() and p.name.endswith("-layers")]
    return run_dir, LayersReport.from_dict(json.loads((run_dir / "layers.json").read_text()))


@pytest.mark.emulated
def test_the_deployed_mnn_alone_names_conv1_on_the_a76_at_low_and_nothing_on_the_a53(
        tmp_path, write_file, overflow_mnn, boards, capsys):
    assert not list(overflow_mnn.glob("*.onnx"))
    inventory = write_file("inventory.yaml", INVENTORY)
    code = main(["--inventory", str(inventory), "layers", str(deployed_scenario(overflow_mnn, "low")),
                 "--board", f"{A76},{A53}", "--reports", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == 1
    run_dir, report = layers_json(tmp_path / "r")
    a76, a53 = report.boards
    assert report.model["source"] is None and "no source model" in report.mapping
    assert a76.error is None and a76.board.arithmetic == "FP16" and a76.tolerance["arithmetic"] == "FP16"
    names = [row.name for row in a76.rows]
    conv1 = names.index("conv1")
    assert a76.first_introduced == conv1 and a76.first_nonfinite == conv1
    assert a76.rows[conv1].type == "Convolution" and a76.rows[conv1].introduced == math.inf
    # Every op before conv1 stays within FP16's resolution; every op after it only inherits the Inf.
    assert all(row.verdict == "ok" for row in a76.rows[:conv1])
    assert [row.verdict for row in a76.rows[conv1 + 1:]] == ["inherited"] * (len(names) - conv1 - 1)
    assert all(row.exact for row in a76.rows[conv1:])
    assert a53.error is None and a53.board.arithmetic == "FP32" and a53.first_introduced is None
    # The A53 computes in float32: the error it accumulates may pass one op's FP32 tolerance, but no op adds it.
    assert a53.first_nonfinite is None and {row.verdict for row in a53.rows} <= {"ok", "inherited"}
    # The run ends in one line per board.
    assert out.rstrip().splitlines()[-2:] == [
        f"first introduced at conv1 (Convolution) on {A76} at low (FP16); first NaN/Inf there",
        f"not on {A53} at low (FP32): no op introduces error beyond tolerance (FP32)"]
    # Whole tensors travelled only from the first suspicious op on: conv1 on the A76, the tail on the A53.
    def first_kept(board):
        with np.load(run_dir / "capture" / board / "dump.npz") as kept:
            return min(int(name.split(".")[1][2:]) for name in kept.files)
    assert first_kept(A76) == conv1 and first_kept(A53) > conv1
    # Without a source model the node data is keyed by the .mnn's op names.
    data = check_model_explorer_file(run_dir / "model_explorer" / f"{A76}.json")
    assert data["results"]["conv1"]["value"] == FLOAT32_MAX and data["results"]["conv0"]["value"] < 1e-2
    html = (run_dir / "report.html").read_text()
    assert f'id="chart-{A76}"' in html and "<polyline" in html and f'id="ops-{A53}"' in html


@pytest.mark.emulated
def test_board_against_board_finds_the_same_op(tmp_path, write_file, overflow_mnn, boards):
    inventory = load_inventory(write_file("inventory.yaml", INVENTORY))
    scenario = load_scenario(deployed_scenario(overflow_mnn, "low", images="skimage:astronaut"))
    report = search_layers(scenario, inventory, [A76], tmp_path, against=A53,
                           against_overrides={"precision": "normal"})
    (a76,) = report.boards
    assert report.reference == A53 and a76.reference.settings["precision"] == "normal"
    assert a76.reference.machine == "aarch64" and a76.error is None
    conv1 = [row.name for row in a76.rows].index("conv1")
    assert a76.first_introduced == conv1
    assert {row.verdict for row in a76.rows[conv1 + 1:]} == {"inherited"}
    # The replay ran on the A53, fed the A76's tensors.
    replay = json.loads((tmp_path / report.run_dir.split("/")[-1] / "replay" / A76 / "result.json").read_text())
    assert replay["machine"] == "aarch64" and "asimdhp" not in replay["cpu_features"]
    assert replay["dump"]["replayed"] == len(a76.rows) - conv1


def test_ops_map_back_to_onnx_exactly_on_the_tiny_net(tmp_path, write_file):
    """Two local sides (no board needed): the mapping is the .mnn's and the source's, not the board's."""
    inventory = load_inventory(write_file("inventory.yaml", INVENTORY))
    scenario = load_scenario(write_file("tiny.yaml", scenario_text(["x86", "x86b"])))
    report = search_layers(scenario, inventory, ["x86b"], tmp_path)
    (side,) = report.boards
    assert report.exit_code == 0 and side.first_introduced is None and side.replayed is None
    by_name = {row.name: row.source for row in side.rows}
    for index in range(4):
        assert by_name[f"conv{index}"] == {"kind": "exact", "nodes": [f"conv{index}", f"conv{index}.relu"],
                                           "types": ["Conv", "Relu"], "tensors": [f"conv{index}.relu"], "via": None}
    assert by_name["classifier"]["kind"] == "exact" and by_name["classifier"]["nodes"] == ["classifier"]
    assert by_name["conv0_raster_0"]["kind"] == "nearest" and by_name["conv0_raster_0"]["via"] == "conv0"
    assert report.mapping.startswith("back to model.onnx: 5 exact, 0 fused groups, 2 generated ops")
    written = write_layers_files(report)
    data = check_model_explorer_file(written["model_explorer/x86b.json"])
    assert set(data["results"]) == {"conv0.relu", "conv1.relu", "conv2.relu", "conv3.relu", "classifier"}
    assert all(result["value"] == 0.0 for result in data["results"].values())  # the same machine


def test_a_wrong_source_model_says_the_mapping_cannot_point_anywhere(tmp_path, overflow_mnn):
    from harness.core.build.mnn_graph import read_mnn_graph
    from harness.analysis.opmap import map_ops, mapping_summary, read_source_graph

    other = tmp_path / "other.onnx"
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Relu", ["a"], ["b"], name="r")], "g",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), other)
    names = [op.name for op in read_mnn_graph(overflow_mnn / "tiny.mnn").ops]
    source = read_source_graph(other, "ONNX")
    line = mapping_summary(map_ops(names, read_mnn_graph(overflow_mnn / "tiny.mnn"), source), source)
    assert "0 exact, 0 fused groups" in line and "no op of the .mnn keeps a name of other.onnx" in line
    # No side traced an op (every trace failed): nothing is said about names that were never looked at.
    assert mapping_summary({}, source) == "nothing mapped back to other.onnx: no op was traced"


def test_nothing_comparable_is_an_error_never_a_pass(tmp_path, overflow_mnn):
    """Real traces of both sides; then the board's ops renamed as another converter would: no op matches."""
    import subprocess
    import sys
    import hashlib

    x = np.random.default_rng(0).normal(size=(1, 1, 3, 64, 64)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", pixel_values=x)
    (tmp_path / "job.json").write_text(json.dumps({
        "model": str(overflow_mnn / "tiny.mnn"), "inputs": "inputs.npz",
        "inputs_sha256": hashlib.sha256((tmp_path / "inputs.npz").read_bytes()).hexdigest(),
        "input_names": ["pixel_values"], "output_names": ["logits"], "layout": "NCHW",
        "settings": {"precision": "normal", "api": "session"}, "dump": {"samples": [0]}}))
    subprocess.run([sys.executable, str(REPO / "agent" / "mnn_agent.py"), str(tmp_path)], check=True)
    data = json.loads((tmp_path / "dump.json").read_text())
    reference = parse_traces(data)[0]
    for op in data["traces"][0]["ops"]:
        op["name"] = "renamed_" + op["name"]
    board = parse_traces(data)[0]
    tolerance = tolerance_for([("normal", [])])
    rows, unmatched = summary_rows(board, reference, tolerance)
    assert unmatched == len(rows) == 7
    assert "nothing to compare" in nothing_compared(rows, "b", "x86")
    assert nothing_compared(summary_rows(reference, reference, tolerance)[0], "x86", "x86") is None
    # A board that sends garbage is a failed side with the reason, not a crash.
    for garbage in ({}, {"traces": [{"sample": 0, "ops": [{"inputs": [{"from": [5, 0]}], "outputs": []}]}]},
                    {"traces": [{"sample": 0, "ops": [{"inputs": [], "outputs": [{"summary": {"probe": "x"}}]}]}]},
                    {"traces": [{"sample": 0, "ops": [{"inputs": [{"layout": ["NCHW"]}], "outputs": []}]}]}):
        with pytest.raises(DumpError):
            parse_traces(garbage)


@pytest.mark.parametrize("argv, message", [
    (["--budget", "nan"], "not a finite number"), (["--budget", "-1"], "more than 0"),
    (["--budget", "1e30"], "at most"), (["--tolerance", "nan"], "not a finite number"),
    (["--tolerance", "0"], "more than 0"), (["--tolerance", "2"], "at most"), (["--threads", "0"], "at least 1"),
    (["--against-threads", "100000"], "at most"), (["--precision", "fp8"], "invalid choice"),
    (["--board", "nope"], "no board named 'nope'"), (["--against", "nope"], "no board named 'nope'"),
    (["--board", "x86b,x86b"], "names x86b twice"), (["--board", "x86b", "--against", "x86b"], "also the side"),
    (["--board", ","], "names no board"),
])
def test_hostile_options_stop_before_anything_runs(tmp_path, write_file, capsys, argv, message):
    inventory = write_file("inventory.yaml", INVENTORY)
    scenario = write_file("tiny.yaml", scenario_text(["x86"]))
    if "--board" not in argv:
        argv = argv + ["--board", "x86b"]
    try:
        code = main(["--inventory", str(inventory), "layers", str(scenario), "--reports", str(tmp_path / "r")] + argv)
    except SystemExit as exit_:  # the argument parser's refusals
        code = exit_.code
    captured = capsys.readouterr()
    assert code == 2 and message in " ".join((captured.out + captured.err).split())
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


@pytest.mark.emulated
@pytest.mark.slow
def test_segformer_at_low_shows_what_each_op_receives_and_what_it_adds(tmp_path, write_file, boards):
    """SegFormer-128 on the A76 at low: the error ramps up from the first op (exit errors ~1e-2), yet every op
    introduces only what FP16 rounding explains, and the table says which is which."""
    text = scenario_text(["x86"], precision="low", size=128).replace(
        f"build: {REPO / 'scenarios' / 'models' / 'tiny_segnet.py'}",
        f"build: {REPO / 'scenarios' / 'models' / 'segformer.py'}").replace(
        "num_classes: 8", "num_classes: 150")
    inventory = load_inventory(write_file("inventory.yaml", INVENTORY))
    report = search_layers(load_scenario(write_file("seg.yaml", text)), inventory, [A76], tmp_path)
    (a76,) = report.boards
    assert a76.error is None and a76.tolerance["arithmetic"] == "FP16"
    compared = [row for row in a76.rows if row.verdict != "unmatched"]
    assert len(compared) == len(a76.rows) > 250
    replayed = [row for row in compared if row.introduced is not None]
    assert len(replayed) > 250 and all(row.entry is not None and row.exact for row in replayed)
    # The error accumulates (exit well above one FP16 step) while no op introduces more than FP16 explains.
    assert max(row.exit for row in replayed) > 8 * 2 ** -10
    assert a76.first_introduced is None and a76.first_nonfinite is None
    assert all(row.introduced <= row.tolerance for row in replayed)
    convolutions = [row for row in replayed if row.type == "Convolution"]
    assert all(0 < row.introduced < 2 ** -10 * math.sqrt(row.reduction) for row in convolutions)
    assert all(row.introduced == 0 for row in replayed if row.type == "Raster")  # moves data, adds nothing
    assert a76.type_shares[0]["type"] == "Convolution"
    # Back to the ONNX graph: MatMul + Add fused into one convolution, named as such.
    fused = [row.source for row in a76.rows if row.name.endswith("q_proj/Add_output_0__matmul_converted")]
    assert fused and all(s["kind"] == "fused" and s["types"] == ["MatMul", "Add"] for s in fused)
    # The table fits 80 columns: names fold, nothing is cut with an ellipsis, both errors are there.
    console = Console(width=80, record=True, color_system=None)
    console.print(board_table(a76))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    assert "on entry" in text and "introduced" in text and "op names under /inner/" in text
    render_layers(report, console)
    assert "error introduced, by op type: Convolution" in console.export_text()


@pytest.mark.emulated
def test_a_failing_run_looks_for_the_op_by_itself(tmp_path, write_file, boards, capsys):
    inventory = write_file("inventory.yaml", INVENTORY)
    text = scenario_text(["x86", A76], precision="low").replace(
        "seed: 0}", "seed: 0, overflow_layer: 2}") + "find_layer: true\n"
    code = main(["--inventory", str(inventory), "run", str(write_file("auto.yaml", text)),
                 "--reports", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == 1
    assert f"first introduced at conv2 (Convolution) on {A76} at low (FP16)" in out


def two_op_search(replay_of_the_mean):
    """A MEAN (Reduction over 49 values) then a convolution, as whole tensors of a board and the reference, and
    the reference's replay of both on the board's inputs: the mean's replay is given, the convolution's replay
    is the reference's own (so the convolution introduces the board's whole difference)."""
    from harness.analysis.opdiff import BoardLayers, OpTrace, Side, conclude, exact_rows

    rng = np.random.default_rng(0)
    x = rng.random((1, 49, 8)).astype(np.float32)
    board_x = (x * (1 + 1e-3 * rng.standard_normal(x.shape))).astype(np.float32)
    mean, board_mean = x.mean(axis=1, keepdims=True), board_x.mean(axis=1, keepdims=True)
    conv, board_conv = mean * 2.0, board_mean * 2.0 + 0.05

    def op(index, name, kind, flops, source, in_shape, out_shape):
        return OpTrace(index, name, kind, flops, [source], [in_shape], [None],
                       [{"shape": out_shape, "dtype": "float32", "summary": None}])
    board_ops = [op(0, "gap/Mean_raster_1", "Reduction", 8 / 2 ** 20, None, [1, 49, 8], [1, 1, 8]),
                 op(1, "head", "Convolution", 8 * 8 / 2 ** 20, (0, 0), [1, 1, 8], [1, 1, 8])]
    reference = tolerance_for([("low", ["asimdhp"])])
    rows, _ = summary_rows(board_ops, board_ops, reference)
    board = {"s0.op0.in0": board_x, "s0.op0.out0": board_mean, "s0.op1.out0": board_conv}
    ref = {"s0.op0.in0": x, "s0.op0.out0": mean, "s0.op1.out0": conv}
    replayed = {"replay.op0.out0": replay_of_the_mean(board_x), "replay.op1.out0": board_mean * 2.0}
    exact_rows(rows, [0, 1], board_ops, board_ops, 0, board, ref, replayed)
    result = BoardLayers(board=Side("a76", {"precision": "low"}, arithmetic="FP16"),
                         reference=Side("x86", {"precision": "low"}), rows=rows,
                         tolerance={"arithmetic": "FP16", "text": reference.describe()})
    conclude(result)
    return result


def test_a_global_average_pool_and_a_mean_over_6x80_values_get_k_480(tmp_path):
    """Traced by the real agent on x86: MNN counts no flop for a global pool and one per output for a Reduction
    (ONNX ReduceMean becomes Raster + Reduction); K is what each averages, 6 x 80 values."""
    import subprocess
    import sys

    import onnx
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    from harness.core.build.model import convert

    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(8, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                               helper.make_node("GlobalAveragePool", ["c"], ["pooled"]),
                               helper.make_node("ReduceMean", ["c"], ["mean"], axes=[2, 3], keepdims=1)], "gap",
                              [helper.make_tensor_value_info("x", T.FLOAT, [1, 3, 6, 80])],
                              [helper.make_tensor_value_info("pooled", T.FLOAT, [1, 8, 1, 1]),
                               helper.make_tensor_value_info("mean", T.FLOAT, [1, 8, 1, 1])], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "gap.onnx"))
    mnn_path = convert(tmp_path / "gap.onnx", "ONNX", (), log=lambda message: None)
    np.savez(tmp_path / "inputs.npz", x=np.random.default_rng(1).random((1, 1, 3, 6, 80), dtype=np.float32))
    (tmp_path / "job.json").write_text(json.dumps({
        "model": str(mnn_path), "inputs": "inputs.npz", "input_names": ["x"], "output_names": ["pooled", "mean"],
        "layout": "NCHW", "settings": {"precision": "normal", "api": "session"}, "dump": {"samples": [0]}}))
    subprocess.run([sys.executable, str(REPO / "agent" / "mnn_agent.py"), str(tmp_path)], check=True,
                   capture_output=True)
    ops = parse_traces(json.loads((tmp_path / "dump.json").read_text()))[0]
    reducing = {op.type: op for op in ops if op.type in ("Pooling", "Reduction")}
    assert set(reducing) == {"Pooling", "Reduction"}
    assert reducing["Pooling"].flops == 0 and reducing["Reduction"].flops * 2 ** 20 == 8  # what MNN counts
    assert reducing["Pooling"].reduction == reducing["Reduction"].reduction == 480
    rows, _ = summary_rows(ops, ops, tolerance_for([("low", ["asimdhp"])]))
    assert [row.tolerance for row in rows if row.type in reducing] == [pytest.approx(4 * 2 ** -10 * math.sqrt(480))] * 2


def test_a_replay_that_contradicts_entry_and_exit_is_a_defect_never_the_answer():
    """The replay of the mean averages permuted values (what a layout mix-up did on MediaPipe's hand model):
    it 'introduces' far more than its entry and exit errors allow. That is shown as a defect of the replay,
    never blamed on the op nor counted; the convolution after it is still found."""
    result = two_op_search(lambda board_x: board_x.reshape(1, 8, 49).transpose(0, 2, 1).mean(axis=1, keepdims=True))
    mean, head = result.rows
    assert mean.introduced > mean.entry + mean.exit + mean.tolerance
    assert mean.verdict == "defect" and head.verdict == "introduced"
    assert result.first_introduced == 1 and [s["type"] for s in result.type_shares] == ["Convolution"]
    console = Console(width=80, record=True, color_system=None)
    console.print(board_table(result))
    from harness.views.layers import board_lines
    for line in board_lines(result):
        console.print(line)
    text = console.export_text()
    assert "! replay defect" in text and "replay defect at #0 gap/Mean_raster_1 (Reduction)" in text
    assert "first op that introduces error: #1 head (Convolution)" in " ".join(text.split())
    # An honest replay of the same mean: nothing is a defect, and the mean introduced nothing.
    honest = two_op_search(lambda board_x: board_x.mean(axis=1, keepdims=True))
    assert [row.verdict for row in honest.rows] == ["ok", "introduced"] and honest.rows[0].introduced == 0


HAND = """\
name: hand-landmark
model: {{tflite: {model}, converter_args: []}}
inputs:
  images: [skimage:astronaut]
preprocess:
  resize: {{height: 224, width: 224, interpolation: area}}
  scale: 1/255
  mean: [0, 0, 0]
  std: [1, 1, 1]
  layout: NHWC
run: {{precision: low}}
targets: [x86]
"""


@pytest.mark.emulated
def test_mediapipes_hand_landmark_model_is_searched_and_its_mean_replays_right(tmp_path, write_file, boards):
    """MediaPipe's hand landmark model (TFLite, its global average pool a MEAN that MNN runs as Raster +
    Reduction on NHWC tensors) on the A76 at low. Before, the mean's replay averaged permuted values and it was
    named as introducing 2.5 (91% of all error) with 4.8e-2 on entry and 8.2e-3 on exit, at K=1. Now no replay
    contradicts its own entry and exit, the mean has K=49 and stays within FP16's resolution, and the TFLite
    ops map back to the source by name."""
    from .public_models import HAND_LANDMARK_LITE, fetch

    inventory = load_inventory(write_file("inventory.yaml", INVENTORY))
    scenario = load_scenario(write_file("hand.yaml", HAND.format(model=fetch(HAND_LANDMARK_LITE))))
    report = search_layers(scenario, inventory, [A76], tmp_path)
    (a76,) = report.boards
    assert a76.error is None and a76.tolerance["arithmetic"] == "FP16"
    replayed = [row for row in a76.rows if row.introduced is not None]
    assert len(replayed) > 40 and not [row for row in a76.rows if row.verdict == "defect"]
    assert all(row.introduced <= row.entry + row.exit + row.tolerance for row in replayed)
    (mean,) = [row for row in a76.rows if row.type == "Reduction"]
    assert mean.name.endswith("global_average_pooling2d/Mean_raster_1") and mean.reduction == 49
    assert mean in replayed and mean.introduced <= mean.tolerance and mean.verdict != "introduced"
    assert a76.first_introduced is None or a76.rows[a76.first_introduced].type != "Reduction"
    assert all(share["type"] != "Reduction" or share["share"] < 0.05 for share in a76.type_shares)
    exact = int(report.mapping.split(": ")[1].split(" exact")[0])
    assert report.mapping.startswith("back to hand_landmark_lite.tflite") and exact > 50


def test_a_dump_from_a_board_is_read_within_the_caps_of_every_file_from_a_board(tmp_path):
    """dump.npz gets what outputs.npz gets: a pickle, a symlink or a wrong hash is refused, never loaded."""
    from harness.core.cache import sha256_file
    from harness.core.npz import save_npz
    from harness.core.results import OK, TargetResult
    from harness.plans.layers import read_dump

    (tmp_path / "dump.json").write_text(json.dumps({"ops": []}))
    save_npz(tmp_path / "dump.npz", {"s0.op1.out": np.ones((2, 3), np.float32)})
    facts = {"dump": {"json_sha256": sha256_file(tmp_path / "dump.json"),
                      "npz_sha256": sha256_file(tmp_path / "dump.npz")}}
    data, tensors = read_dump(tmp_path, TargetResult("arm", "ssh", OK, facts=facts))
    assert data == {"ops": []} and tensors["s0.op1.out"].shape == (2, 3)

    np.savez(tmp_path / "dump.npz", evil=np.array([{"a": 1}], dtype=object))  # a pickle inside
    facts["dump"]["npz_sha256"] = sha256_file(tmp_path / "dump.npz")
    with pytest.raises(DumpError, match="dump.npz"):
        read_dump(tmp_path, TargetResult("arm", "ssh", OK, facts=facts))
    (tmp_path / "elsewhere.npz").write_bytes((tmp_path / "dump.npz").read_bytes())
    (tmp_path / "dump.npz").unlink()
    os.symlink(tmp_path / "elsewhere.npz", tmp_path / "dump.npz")
    with pytest.raises(DumpError, match="symbolic link"):
        read_dump(tmp_path, TargetResult("arm", "ssh", OK, facts=facts))
    facts["dump"]["json_sha256"] = "0" * 64
    with pytest.raises(DumpError, match="does not match the SHA-256"):
        read_dump(tmp_path, TargetResult("arm", "ssh", OK, facts=facts))


def ppocr_scenario(folder, size=96, precision="normal"):
    """The shipped PP-OCR detector scenario (PP-OCRv6 det from the rapidocr wheel) at size x size."""
    text = (REPO / "scenarios" / "ppocr_det.yaml").read_text()
    text = text.replace("resize: {height: 192, width: 384,", f"resize: {{height: {size}, width: {size},")
    text = text.replace("precision: normal", f"precision: {precision}")
    assert f"height: {size}, width: {size}" in text and f"precision: {precision}" in text
    path = folder / f"ppocr-{size}-{precision}.yaml"
    path.write_text(text)
    return path


def agent_dump(folder, model_path, inputs, dump):
    """One layer-dump job run by the real agent on this host: (dump.json, dump.npz's tensors)."""
    import hashlib
    import subprocess
    import sys

    from harness.core.npz import load_npz, save_npz

    folder.mkdir(parents=True, exist_ok=True)
    save_npz(folder / "inputs.npz", inputs)
    (folder / "job.json").write_text(json.dumps({
        "model": str(model_path), "inputs": "inputs.npz",
        "inputs_sha256": hashlib.sha256((folder / "inputs.npz").read_bytes()).hexdigest(),
        "input_names": ["x"], "output_names": ["fetch_name_0"], "layout": "NCHW",
        "settings": {"precision": "normal", "api": "session"}, "dump": dump}))
    subprocess.run([sys.executable, str(REPO / "agent" / "mnn_agent.py"), str(folder)], check=True,
                   capture_output=True)
    data = json.loads((folder / "dump.json").read_text())
    return data, (load_npz(folder / "dump.npz") if (folder / "dump.npz").exists() else {})


def test_every_op_replayed_on_its_own_inputs_gives_its_own_output_bit_for_bit(tmp_path):
    """PP-OCR's detector on x86: capture every op, then replay every op fed the tensors the search would feed it.
    Fed what it really read, each op computes exactly what it computed: introduced 0, everywhere.

    Before, inputs were linked to the op that last wrote the same memory address. MNN hands an op a converted
    copy of an input (another layout, backend or precision) in memory a dead tensor used, so an Interp read a
    [1, 96, 3, 3] copy at the address of a [1, 96, 1, 1] output (the replay stopped: "input 0 has shape ..."),
    and an Add read the Interp's output copied to where a convolution's output had been: it was fed the
    convolution's values, same shape, no error."""
    from harness.analysis.opdiff import exact_rows, replay_feeds
    from harness.plans.layers import kept_trace

    model = prepare_model(load_scenario(ppocr_scenario(tmp_path)).model, log=lambda message: None)
    x = np.random.default_rng(0).uniform(-1, 1, size=(1, 1, 3, 96, 96)).astype(np.float32)
    traced = parse_traces(agent_dump(tmp_path / "trace", model.mnn_path, {"x": x}, {"samples": [0]})[0])[0]
    every = list(range(len(traced)))
    data, captured = agent_dump(tmp_path / "capture", model.mnn_path, {"x": x},
                                {"samples": [0], "keep": {"sample": 0, "ops": every}})
    ops = kept_trace(data, 0, traced)
    # The Add after the first nearest Interp reads that Interp's output (MNN copied it out of the Interp's own
    # layout), not the convolution whose memory the copy reuses.
    names = [op.name for op in ops]
    add = ops[names.index("Add.179")]
    assert [ops[source[0]].name if source else None for source in add.inputs] == [
        "Add.165", "p2o.pd_op.nearest_interp.0.0"]
    # Some inputs are no op's output: MNN's converted copies (and the model input, constants): read as they are.
    assert sum(source is None for op in ops for source in op.inputs) > len(ops) // 10
    feeds, replay_inputs = {}, {"x": x}
    for index in every:
        keys, why = replay_feeds(ops, set(every), 0, index, ops[index], captured)
        assert why is None, f"op {index} {names[index]}: {why}"
        feeds[str(index)] = [None if key is None else "replay." + key for key in keys]
        replay_inputs.update(("replay." + key, captured[key]) for key in keys if key is not None)
    data, replayed = agent_dump(tmp_path / "replay", model.mnn_path, replay_inputs,
                                {"samples": [0], "keep": {"sample": 0, "ops": every},
                                 "replay": {"sample": 0, "ops": feeds}})
    rows, _ = summary_rows(ops, ops, tolerance_for([("normal", [])]))
    exact_rows(rows, every, ops, kept_trace(data, 0, traced), 0, captured, replayed, replayed)
    assert len(rows) > 200 and all(row.exact and row.entry == 0 and row.exit == 0 for row in rows)
    assert [row.name for row in rows if row.introduced != 0] == []


@pytest.mark.emulated
def test_ppocrs_detector_at_low_is_searched_with_every_input_as_the_op_read_it(tmp_path, write_file, boards):
    """PP-OCR's detector (96x96) on the A76 at low against x86. MNN's Arm82 backend has no Reduction: each
    ReduceMean runs in FP32 on a copy MNN converts from FP16, in memory a dead [1, 48, 24, 24] convolution output
    used. Linked by that address, the replay stopped ("op 34 (ReduceMean.3_raster_1) input 0 has shape
    [96, 144, 1] here, the replayed one [1, 48, 24, 24]"). Now every op is replayed on what it read, and no
    replay contradicts its op's own entry and exit errors."""
    inventory = load_inventory(write_file("inventory.yaml", INVENTORY))
    report = search_layers(load_scenario(ppocr_scenario(tmp_path, precision="low")), inventory, [A76], tmp_path)
    (a76,) = report.boards
    assert a76.error is None and a76.tolerance["arithmetic"] == "FP16", a76.error
    assert a76.replayed is not None and not [row for row in a76.rows if row.not_replayed]
    replayed = [row for row in a76.rows if row.introduced is not None]
    assert len(replayed) > 200 and not [row for row in a76.rows if row.verdict == "defect"]
    assert all(row.introduced <= row.entry + row.exit + row.tolerance for row in replayed)
    means = [row for row in replayed if row.type == "Reduction"]
    assert len(means) >= 4 and all(row.introduced <= row.tolerance for row in means)
    # A Raster moves values; fed the board's, it moves them exactly as the board did.
    assert all(row.introduced == 0 for row in replayed if row.type == "Raster")


def test_an_input_that_cannot_be_fed_as_the_op_read_it_is_not_replayed_and_the_row_says_why():
    """The board's tensors are fed only in the shape and axis order the reference's op reads: 4096 values as
    [16, 256, 1, 1] are not [1, 256, 4, 4]. A scalar () is (1,) elsewhere, and an input without elements has
    nothing to feed."""
    from harness.analysis.opdiff import OpTrace, replay_feeds

    def op(shapes, layouts=None, sources=None):
        return OpTrace(0, "resize", "Interp", 0.0, sources or [None] * len(shapes), shapes, [None] * len(shapes),
                       [{"shape": [1, 256, 8, 8], "dtype": "float32", "summary": None}],
                       layouts or ["NCHW"] * len(shapes))
    tensors = {"s0.op0.in0": np.zeros((1, 256, 4, 4), np.float32), "s0.op0.in1": np.zeros((), np.float32)}
    board = [op([[1, 256, 4, 4], [], [0]])]
    assert replay_feeds(board, {0}, 0, 0, op([[1, 256, 4, 4], [1], [0]]), tensors) == (
        ["s0.op0.in0", "s0.op0.in1", None], None)
    _, why = replay_feeds(board, {0}, 0, 0, op([[16, 256, 1, 1], [1], [0]]), tensors)
    assert why == "input 0 is [1, 256, 4, 4] on the board and [16, 256, 1, 1] on the reference"
    _, why = replay_feeds(board, {0}, 0, 0, op([[1, 256, 4, 4], [1], [0]], ["NHWC", "NCHW", "NCHW"]), tensors)
    assert why == "input 0 is NCHW on the board and NHWC on the reference"
    _, why = replay_feeds([op([[1, 256, 4, 4], [], [3]])], {0}, 0, 0, op([[1, 256, 4, 4], [1], [3]]), tensors)
    assert why == "input 2 ([3]) did not arrive whole from the board"

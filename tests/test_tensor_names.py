"""Tensor names as exporters write them travel through every side: agent, x86 host, ONNX Runtime, layer search.

Paddle names outputs `save_infer_model/scale_0.tmp_1` (PaddleOCR's models in
rapidocr), TFLite `StatefulPartitionedCall:0`; nothing stops a model from
naming an output `file` or `100%`. The model here is built with the onnx
helper API with such names on its outputs and one of its inputs, converted by
MNN's real converter, and run by the real agent and ONNX Runtime.
"""

import json
import shutil
import zipfile

import numpy as np
import pytest

from harness.cli import main
from harness.core.board_files import load_npz
from harness.core.errors import BoardResultError
from harness.core.npz import member_name, save_npz, tensor_name

PROBABILITY, SCORES, PERCENT, SCALE = "save_infer_model/scale_0.tmp_1", "file", "100%/ok:0", "feed/scale:0"
INVENTORY = "boards:\n  x86: {kind: local}\n  x86b: {kind: local}\n"
SCENARIO = f"""\
name: paddle-names
model: {{onnx: named.onnx}}
inputs:
  x: {{image: [skimage:astronaut]}}
  "{SCALE}": {{value: 0.5}}
preprocess:
  resize: {{height: 16, width: 16, interpolation: area}}
  scale: 1/255
targets: [x86]
outputs:
  "{PROBABILITY}": {{kind: probability_map, threshold: 0.5}}
"""


def build_named_model(path):
    import onnx
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(0, 0.3, size=(4, 3, 3, 3)).astype(np.float32), "conv.w")
    nodes = [helper.make_node("Conv", ["x", "conv.w"], ["conv_out"], pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["conv_out", SCALE], ["scaled"]),
             helper.make_node("ReduceMean", ["scaled"], ["pooled"], axes=[1], keepdims=1),
             helper.make_node("Sigmoid", ["pooled"], [PROBABILITY]),
             helper.make_node("Relu", ["scaled"], [SCORES]),
             helper.make_node("Tanh", ["scaled"], [PERCENT])]
    graph = helper.make_graph(nodes, "paddle_names", [
        helper.make_tensor_value_info("x", T.FLOAT, [1, 3, 16, 16]),
        helper.make_tensor_value_info(SCALE, T.FLOAT, [])],
        [helper.make_tensor_value_info(PROBABILITY, T.FLOAT, [1, 1, 16, 16]),
         helper.make_tensor_value_info(SCORES, T.FLOAT, [1, 4, 16, 16]),
         helper.make_tensor_value_info(PERCENT, T.FLOAT, [1, 4, 16, 16])], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("names")
    build_named_model(folder / "named.onnx")
    (folder / "inventory.yaml").write_text(INVENTORY)
    (folder / "named.yaml").write_text(SCENARIO)
    return folder


def test_names_with_slashes_percent_and_file_run_on_x86_and_onnxruntime(workdir, capsys):
    reports = workdir / "reports"
    shutil.rmtree(reports, ignore_errors=True)
    code = main(["--inventory", str(workdir / "inventory.yaml"), "run", str(workdir / "named.yaml"),
                 "--reports", str(reports), "--keep-outputs", "10"])
    out = capsys.readouterr().out
    assert code == 0, out
    (run_dir,) = list(reports.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["boards"]["x86"]["status"] == "ok" and summary["source"]["status"] == "ok"
    outputs = summary["conversion"]["outputs"]
    assert set(outputs) == {PROBABILITY, SCORES, PERCENT}
    assert all(output["passed"] for output in outputs.values())
    assert outputs[PROBABILITY]["metrics"]["max_abs"] < 1e-5
    # The archives hold one flat member per tensor; numpy reads them, and the names come back decoded.
    for side in ("x86", "onnxruntime"):
        path = run_dir / "targets" / side / "outputs.npz"
        with zipfile.ZipFile(path) as archive:
            assert sorted(archive.namelist()) == sorted(member_name(n) + ".npy" for n in (PROBABILITY, SCORES, PERCENT))
            assert not any("/" in member for member in archive.namelist())
        assert set(load_npz(path, [PROBABILITY, SCORES, PERCENT], 1 << 30)) == {PROBABILITY, SCORES, PERCENT}
    with zipfile.ZipFile(run_dir / "inputs.npz") as archive:
        assert sorted(archive.namelist()) == sorted(["x.npy", "feed%2Fscale:0.npy"])
    assert "did not run" not in out and "unexpected member" not in out


def test_the_layer_search_traces_and_maps_such_a_model(workdir, capsys):
    reports = workdir / "layer-reports"
    code = main(["--inventory", str(workdir / "inventory.yaml"), "layers", str(workdir / "named.yaml"),
                 "--board", "x86b", "--reports", str(reports)])
    out = capsys.readouterr().out
    assert code == 0, out
    (run_dir,) = list(reports.iterdir())
    layers = json.loads((run_dir / "layers.json").read_text())
    (board,) = layers["boards"]
    assert board["error"] is None and board["rows"]
    assert "exact" in layers["mapping"] and "no op of the .mnn keeps a name" not in layers["mapping"]
    assert "not on x86b" in out


@pytest.mark.parametrize("name", ["logits", PROBABILITY, SCORES, PERCENT, SCALE, "../../etc/passwd", "a%2Fb",
                                  "名前", "", "x.npy", "%"])
def test_every_name_has_one_safe_member_and_comes_back(tmp_path, name):
    member = member_name(name)
    assert "/" not in member and "\\" not in member and tensor_name(member) == name
    path = save_npz(tmp_path / "t.npz", {name: np.arange(3, dtype=np.float32)})
    assert list(load_npz(path, [name], 1 << 20)) == [name]
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_board_member_that_is_not_an_encoded_name_is_refused(tmp_path):
    """A member with "/" (an old agent, a hostile board) or a stray "%" is refused, even when any name is allowed."""
    for member in ("save_infer_model/scale_0.tmp_1.npy", "bad%zz.npy", "a%2fb.npy"):
        path = tmp_path / "outputs.npz"
        with zipfile.ZipFile(path, "w") as archive:
            with archive.open(member, "w") as f:
                np.lib.format.write_array(f, np.zeros(2, np.float32))
        with pytest.raises(BoardResultError, match="unexpected member"):
            load_npz(path, None, 1 << 20)
        with pytest.raises(BoardResultError, match="unexpected member"):
            load_npz(path, [PROBABILITY], 1 << 20)


def test_the_agent_encodes_names_exactly_as_the_host_does():
    """Two copies of one rule (the agent imports nothing of the harness): held together here."""
    import subprocess
    import sys

    from .conftest import REPO

    names = ["logits", PROBABILITY, SCORES, PERCENT, SCALE, "../x", "名前", "", "%", "a b+c=d&e"]
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from mnnagent.files import npz_member, tensor_name; "
            "names = json.loads(sys.argv[2]); "
            "print(json.dumps([[npz_member(n), tensor_name(npz_member(n))] for n in names]))")
    completed = subprocess.run([sys.executable, "-c", code, str(REPO / "agent"), json.dumps(names)],
                               capture_output=True, text=True, check=True)
    assert json.loads(completed.stdout) == [[member_name(n), n] for n in names]

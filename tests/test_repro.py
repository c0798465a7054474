"""harness repro: from the op a layer search names to a bundle MNN's maintainers can run, verified on the board.

The FP16-overflow tiny net (tiny_segnet --overflow-layer 1: conv1's output passes FP16's range, the function is
the same in float32) on an emulated Cortex-A76 at low against x86: conv1 is cut out of the converted .mnn, its
script shows the inf on the board and not at normal, with nothing but MNN and numpy there. The fast tests hold
the pieces to real MNN on x86: the stretch, the cut, the agent's script job, the C++ snippet, the numbers.
"""

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from harness.analysis.opdiff import OpRow, parse_traces
from harness.analysis.repro import StretchError, claim_for, difference, plan_stretch, shows
from harness.cli import main
from harness.core.build.cut_model import CutEntry, CutError, cut_mnn
from harness.core.build.mnn_graph import read_mnn_graph
from harness.core.build.model import prepare_model
from harness.core.repro_files import TensorSpec, cpp_snippet, python_script, raw_files
from harness.config.scenario import load_scenario
from harness.record.repro import Claim, ReproRecord, rounding_context
from harness.record.run import InputsRecord, ModelRecord, RunRecord
from harness.emulation import board as emulated

from .conftest import REPO, scenario_text

PREFIX = f"rp{os.getpid()}"
A76 = f"{PREFIX}-a76"
INVENTORY = (f"boards:\n  x86: {{kind: local}}\n  x86b: {{kind: local}}\n"
             f"  {A76}: {{kind: emulated, cpu: cortex-a76}}\n")
MNN_HEADERS = os.environ.get("MNN_INCLUDE_DIR")
"""MNN's own include/ directory (from its source, which no package registry carries): where it is given, the C++
snippet is compiled against it and linked against the wheel's library, which exports MNN's C++ API."""


def overflow_scenario(folder: Path, precision: str = "low") -> Path:
    """tiny_segnet --overflow-layer 1, converted from its ONNX (so the source sub-graph can be cut too)."""
    path = folder / f"overflow-{precision}.yaml"
    path.write_text(scenario_text(["x86"], precision=precision).replace("seed: 0}", "seed: 0, overflow_layer: 1}")
                    .replace("name: tiny", "name: overflow"))
    return path


@pytest.fixture(scope="module")
def overflow_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("overflow")
    return prepare_model(load_scenario(overflow_scenario(folder)).model, log=lambda message: None)


def agent_trace(model_path: Path, folder: Path, keep=()) -> dict:
    """A real x86 trace of the model (the agent's layer dump, as a search runs it), on a seeded input."""
    x = np.random.default_rng(0).normal(size=(1, 1, 3, 64, 64)).astype(np.float32)
    np.savez(folder / "inputs.npz", pixel_values=x)
    import hashlib
    (folder / "job.json").write_text(json.dumps({
        "model": str(model_path), "inputs": "inputs.npz",
        "inputs_sha256": hashlib.sha256((folder / "inputs.npz").read_bytes()).hexdigest(),
        "input_names": ["pixel_values"], "output_names": ["logits"], "layout": "NCHW",
        "settings": {"precision": "normal", "api": "session"},
        "dump": {"samples": [0], **({"keep": {"sample": 0, "ops": list(keep)}} if keep else {})}}))
    subprocess.run([sys.executable, str(REPO / "agent" / "mnn_agent.py"), str(folder)], check=True,
                   capture_output=True)
    return json.loads((folder / "dump.json").read_text())


# ---- the numbers and the claim ----------------------------------------------------------------

def test_difference_says_where_how_far_and_in_fp16_steps():
    reference = np.array([[0.5, -2.0], [1000.0, 70000.0]], np.float32)
    board = reference.copy()
    board[1, 0] = 1001.0  # FP16's spacing at 1000 is 0.5: two steps
    d = difference("y", board, reference)
    assert d.where == [1, 0] and d.max_abs == 1.0 and d.fp16_steps == 2.0 and d.nonfinite == 0
    assert d.relative == pytest.approx(1.0 / 70000.0) and d.scale == 70000.0
    board[0, 1] = np.inf
    d = difference("y", board, reference)
    assert d.nonfinite == 1 and d.where == [0, 1] and math.isinf(d.relative) and math.isinf(d.max_abs)
    # NaN/Inf on both sides at the same place is no new error; a value beyond FP16's range has no FP16 step.
    both = reference.copy()
    both[0, 0] = np.nan
    d = difference("y", both, both)
    assert d.nonfinite == 0 and d.relative == 0.0
    assert difference("y", reference * 1.01, reference).fp16_steps is None  # worst at 70000 > 65504
    # Fed NaN/Inf, an op's NaN/Inf came with its inputs (as the search judges it): only finite pairs count.
    fed = difference("y", board, reference, fed_nonfinite=True)
    assert fed.nonfinite == 1 and fed.relative == pytest.approx(1.0 / 70000.0) and fed.where == [1, 0]
    claim = Claim("exit", math.inf, 0.05, True)
    assert shows(claim, [difference("y", board, reference)]) and not shows(claim, [fed])


def test_the_claim_is_what_the_search_measured_for_the_op():
    row = OpRow(index=2, name="conv1", type="Convolution", shape=[1], reduction=144.0, tolerance=0.05,
                entry=1e-3, exit=math.inf, introduced=math.inf, nonfinite=10, reference_nonfinite=0,
                verdict="introduced")
    claim = claim_for(row)
    assert (claim.kind, claim.nonfinite, claim.tolerance) == ("introduced", True, 0.05)
    inherited = OpRow(index=3, name="conv2", type="Convolution", shape=[1], reduction=288.0, tolerance=0.07,
                      entry=math.inf, exit=math.inf, introduced=0.0, nonfinite=5, verdict="inherited")
    assert claim_for(inherited).kind == "exit"
    quiet = OpRow(index=4, name="fc", type="Convolution", shape=[1], reduction=1024.0, tolerance=0.125,
                  entry=1e-2, exit=1.7e-2, introduced=1.6e-2, verdict="ok")
    assert claim_for(quiet) is None  # within the search's limit: nothing to reproduce
    strict = claim_for(quiet, tolerance=1e-3)  # ... unless the user asks for a limit of their own
    assert strict.kind == "introduced" and strict.value == 1.6e-2 and strict.search_tolerance == 0.125
    d = difference("y", np.array([1.016], np.float32), np.array([1.0], np.float32))
    assert shows(strict, [d]) and not shows(dataclasses.replace(strict, tolerance=0.1), [d])
    assert rounding_context(1.6e-2, "FP16", 1024.0, "fc").endswith("= 0.031 (relative); this is 0.51 times that: "
                                                                    "within what its rounding explains")
    assert "the stretch's largest sum, fc (K=1024 products)" in rounding_context(1.6e-2, "FP16", 1024.0, "fc", 3)
    assert rounding_context(1.6e-2, "FP32", 1024.0, "fc") is None and rounding_context(math.inf, "FP16", 1, "x") is None


# ---- the stretch and the cut, with real MNN on x86 -----------------------------------------------

def test_the_stretch_grows_one_producer_level_at_a_time(tmp_path, overflow_model):
    graph = read_mnn_graph(overflow_model.mnn_path)
    trace = parse_traces(agent_trace(overflow_model.mnn_path, tmp_path))[0]
    names = [op.name for op in trace]
    conv1 = names.index("conv1")
    alone = plan_stretch(graph, trace, conv1, 0)
    assert alone.ops == ["conv1"] and alone.outputs == ["conv1.relu"]
    (entry,) = alone.entries
    # Its input's value: conv0's output on the board, or conv1's own input.
    assert entry.tensor == "conv0.relu" and [(s.kind, s.op) for s in entry.sources] == [
        ("output", names.index("conv0")), ("input", conv1)]
    assert alone.needed_ops() == [names.index("conv0"), conv1]
    one = plan_stretch(graph, trace, conv1, 1)
    assert one.ops == ["conv0", "conv1"] and [names[i] for i in one.executed] == ["conv0_raster_0", "conv0", "conv1"]
    # conv0 reads a layout conversion MNN folds into a Raster: its value is conv0's own input on the board.
    (entry,) = one.entries
    assert entry.tensor == "pixel_values___tr4conv0" and [(s.kind, s.op) for s in entry.sources] == [
        ("input", names.index("conv0"))]
    two = plan_stretch(graph, trace, conv1, 2)
    assert two.ops == ["pixel_values___tr4conv0", "conv0", "conv1"]
    assert [(e.tensor, e.sources[0].kind) for e in two.entries] == [("pixel_values", "model")]
    with pytest.raises(StretchError, match="cannot grow past 2 level"):
        plan_stretch(graph, trace, conv1, 3)
    with pytest.raises(StretchError, match="no op of the .mnn"):
        plan_stretch(graph, trace, names.index("conv0_raster_0"), 0)


def test_the_cut_runs_alone_and_computes_the_op_bit_for_bit(tmp_path, overflow_model):
    """conv1 cut out of the .mnn: one input, one output, a fifth of the bytes, the op's output exactly."""
    trace_dir = tmp_path / "trace"
    trace_dir.mkdir()
    dump = agent_trace(overflow_model.mnn_path, trace_dir, keep=[2])
    assert [op["name"] for op in dump["traces"][0]["ops"]][2] == "conv1"
    with np.load(trace_dir / "dump.npz") as kept:
        x, y = kept["s0.op2.in0"], kept["s0.op2.out0"]
    cut = cut_mnn(overflow_model.mnn_path, [CutEntry("conv0.relu", list(x.shape), "float32")], ["conv1.relu"],
                  ["conv1"], tmp_path / "cut.mnn")
    assert cut.bytes < overflow_model.mnn_path.stat().st_size / 4
    assert cut.formats == {"conv0.relu": "NC4HW4"}
    (op,) = cut.ops
    common = op.params["main"]["common"]
    assert (op.name, op.type, op.params["main_type"]) == ("conv1", "Convolution", "Convolution2D")
    assert (common["kernelX"], common["strideX"], common["group"], common["inputCount"], common["outputCount"]) == \
        (3, 2, 1, 16, 32)
    assert op.params["main"]["weight"]["values"] == 32 * 16 * 9  # the weights summarized, not spelled out
    graph = read_mnn_graph(cut.path)
    assert [(o.name, o.type_code) for o in graph.ops] == [("conv0.relu", 34), ("conv1", 12)]
    # The bundle's own script (MNN and numpy only) on the cut gives the op's output in the whole model.
    (tmp_path / "repro.py").write_text(python_script("t", {"precision": "normal"}, "3.6.1"))
    np.savez(tmp_path / "tensors.npz", **{"input/conv0.relu": x})
    subprocess.run([sys.executable, "repro.py", "--save", "out.npz"], cwd=tmp_path, check=True, capture_output=True)
    with np.load(tmp_path / "out.npz") as out:
        assert np.array_equal(out["conv1.relu"], y)
    # An input left out would pull the rest of the model in: refused, naming it; a name the model lacks too.
    with pytest.raises(CutError, match="holds ops outside it"):
        cut_mnn(overflow_model.mnn_path, [], ["conv1.relu"], ["conv1"], tmp_path / "bad.mnn")
    with pytest.raises(CutError, match="no tensor named 'nope'"):
        cut_mnn(overflow_model.mnn_path, [CutEntry("nope", [1], "float32")], ["conv1.relu"], ["conv1"],
                tmp_path / "bad.mnn")


def test_an_nhwc_models_own_input_is_fed_as_the_model_takes_it(tmp_path):
    """A TFLite model's input is NHWC: a cut that reaches it gets it in TensorFlow's layout (as the agent feeds the
    model), and gives the op's output bit for bit; fed as NCHW it would not."""
    import hashlib

    model = prepare_model(load_scenario(REPO / "scenarios" / "face_tflite.yaml").model, log=lambda message: None)
    x = np.random.default_rng(0).uniform(-1, 1, size=(1, 1, 128, 128, 3)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", input=x)
    (tmp_path / "job.json").write_text(json.dumps({
        "model": str(model.mnn_path), "inputs": "inputs.npz",
        "inputs_sha256": hashlib.sha256((tmp_path / "inputs.npz").read_bytes()).hexdigest(),
        "input_names": ["input"], "output_names": list(model.outputs), "layout": "NHWC",
        "settings": {"precision": "normal", "api": "session"}, "dump": {"samples": [0], "keep": {"sample": 0,
                                                                                                "ops": [1]}}}))
    subprocess.run([sys.executable, str(REPO / "agent" / "mnn_agent.py"), str(tmp_path)], check=True,
                   capture_output=True)
    trace = parse_traces(json.loads((tmp_path / "dump.json").read_text()))[0]
    stretch = plan_stretch(read_mnn_graph(model.mnn_path), trace, 1, 1)  # the first conv and its layout change
    assert trace[1].name == "conv2d" and [(e.tensor, e.sources[0].kind) for e in stretch.entries] == [
        ("input", "model")]
    cut = cut_mnn(model.mnn_path, [CutEntry("input", [1, 128, 128, 3], "float32")], stretch.outputs, stretch.ops,
                  tmp_path / "cut.mnn", {"input": [1, 128, 128, 3]})
    assert cut.formats == {"input": "NHWC"}
    np.savez(tmp_path / "tensors.npz", **{"input/input": x[0]})
    with np.load(tmp_path / "dump.npz") as kept:
        expected = kept["s0.op1.out0"]
    for nhwc, same in ((["input"], True), ([], False)):
        (tmp_path / "repro.py").write_text(python_script("t", {"precision": "normal"}, "3.6.1", nhwc))
        subprocess.run([sys.executable, "repro.py", "--save", "out.npz"], cwd=tmp_path, check=True,
                       capture_output=True)
        with np.load(tmp_path / "out.npz") as out:
            assert np.array_equal(out[stretch.outputs[0]], expected) == same


def test_an_interps_size_worked_out_from_shapes_becomes_a_constant_of_the_cut(tmp_path):
    """SegFormer's decode head resizes with a size computed from a tensor's shape (Shape, Slice, Concat): no op
    runs with it, so the cut works it out with MNN and keeps it as a constant; the Interp alone then gives its
    output bit for bit. Its data input is taken in the shape the op ran with, not as the bytes a Raster wrote."""
    import hashlib

    text = scenario_text(["x86"], size=64).replace(
        f"build: {REPO / 'scenarios' / 'models' / 'tiny_segnet.py'}",
        f"build: {REPO / 'scenarios' / 'models' / 'segformer.py'}").replace("num_classes: 8", "num_classes: 150")
    (tmp_path / "seg.yaml").write_text(text)
    model = prepare_model(load_scenario(tmp_path / "seg.yaml").model, log=lambda message: None)
    x = np.random.default_rng(0).normal(size=(1, 1, 3, 64, 64)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", pixel_values=x)
    job = {"model": str(model.mnn_path), "inputs": "inputs.npz",
           "inputs_sha256": hashlib.sha256((tmp_path / "inputs.npz").read_bytes()).hexdigest(),
           "input_names": ["pixel_values"], "output_names": ["logits"], "layout": "NCHW",
           "settings": {"precision": "normal", "api": "session"}, "dump": {"samples": [0]}}
    (tmp_path / "job.json").write_text(json.dumps(job))
    subprocess.run([sys.executable, str(REPO / "agent" / "mnn_agent.py"), str(tmp_path)], check=True,
                   capture_output=True)
    trace = parse_traces(json.loads((tmp_path / "dump.json").read_text()))[0]
    interp = next(op.index for op in trace if op.type == "Interp")
    job["dump"]["keep"] = {"sample": 0, "ops": [interp]}
    (tmp_path / "job.json").write_text(json.dumps(job))
    subprocess.run([sys.executable, str(REPO / "agent" / "mnn_agent.py"), str(tmp_path)], check=True,
                   capture_output=True)
    stretch = plan_stretch(read_mnn_graph(model.mnn_path), trace, interp, 0)
    data, size = stretch.entries
    assert (data.sources[0].kind, size.sources[0].kind) == ("input", "shape")
    with np.load(tmp_path / "dump.npz") as kept:
        x, expected = kept[f"s0.op{interp}.in0"], kept[f"s0.op{interp}.out0"]
    cut = cut_mnn(model.mnn_path, [CutEntry(data.tensor, list(x.shape), "float32")], stretch.outputs, stretch.ops,
                  tmp_path / "cut.mnn", {"pixel_values": [1, 3, 64, 64]}, [size.tensor])
    assert cut.computed == {size.tensor: list(expected.shape)} and cut.bytes < 2000
    (tmp_path / "repro.py").write_text(python_script("t", {"precision": "normal"}, "3.6.1"))
    np.savez(tmp_path / "tensors.npz", **{"input/" + data.tensor: x})
    subprocess.run([sys.executable, "repro.py", "--save", "out.npz"], cwd=tmp_path, check=True, capture_output=True)
    with np.load(tmp_path / "out.npz") as out:
        assert np.array_equal(out[stretch.outputs[0]], expected)


def test_the_agent_runs_a_script_job_and_reports_what_it_printed(tmp_path, overflow_model):
    """The agent's script job: the script runs in a child Python, its saved arrays are the outputs (NaN/Inf kept),
    its exit and output are in result.json; a failing script fails the job with its last lines."""
    import hashlib

    def job(script, name="repro.py", saves=None, **hostile):
        folder = tmp_path / f"job{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        np.savez(folder / "tensors.npz", **{"input/x": np.ones(3, np.float32)})
        (folder / "job.json").write_text(json.dumps({
            "schema": 2, "id": "s", "model": str(overflow_model.mnn_path), "inputs": "tensors.npz",
            "inputs_sha256": hashlib.sha256((folder / "tensors.npz").read_bytes()).hexdigest(),
            "input_names": [], "output_names": ["output0"], "layout": "NCHW", "settings": {},
            "script": {"name": name, "source": script, "args": ["--precision", "low"],
                       "saves": saves or ["a/tensor"], **hostile}}))
        code = subprocess.run([sys.executable, str(REPO / "agent" / "mnn_agent.py"), str(folder)],
                              capture_output=True).returncode
        return code, json.loads((folder / "result.json").read_text()), folder

    writes = ("import argparse, numpy as np, os\n"
              "p = argparse.ArgumentParser(); [p.add_argument(o) for o in ('--model', '--tensors', '--save', "
              "'--precision')]\n"
              "a = p.parse_args(); assert os.path.isfile(a.model)\n"
              "print('ran at', a.precision, 'harness importable:', __import__('importlib').util.find_spec('mnnagent') "
              "is not None)\n"
              "np.savez(a.save, **{'a/tensor': np.load(a.tensors)['input/x'] * np.inf})\n")
    code, result, folder = job(writes)
    assert code == 0 and result["status"] == "ok", (result.get("error"), result.get("traceback"))
    assert result["script"]["exit"] == 0 and "ran at low harness importable: False" in result["script"]["output"]
    with np.load(folder / "outputs.npz") as out:
        assert np.isinf(out["output0"]).all() and out["output0"].shape == (1, 3)  # a sample axis, NaN/Inf kept
    code, result, _ = job("import sys\nprint('MNN said no')\nsys.exit(3)\n")
    assert code == 1 and result["error_kind"] == "script-failed" and "exited 3" in result["error"]
    assert "MNN said no" in result["error"] and result["script"]["exit"] == 3
    code, result, _ = job(writes, saves=["other"])
    assert result["error_kind"] == "missing-output" and "'other'" in result["error"]
    code, result, _ = job(writes, name="../escape.py")
    assert result["error_kind"] == "bad-job" and "plain file name" in result["error"]
    for hostile, says in (({"python": "python3"}, "script.python"), ({"python": []}, "script.python"),
                          ({"args": "--x"}, "script.args"), ({"saves": ["a", "b"]}, "one per output name"),
                          ({"source": ""}, "script.source")):
        code, result, _ = job(writes, **hostile)
        assert code == 1 and result["error_kind"] == "bad-job" and says in result["error"], (hostile, result)
    # And the host refuses a result.json whose script facts have the wrong types, as every field of it.
    from harness.core.board_files import read_result_json
    from harness.core.errors import BoardResultError

    (tmp_path / "result.json").write_text(json.dumps({"status": "error", "script": {"exit": "0", "output": 5}}))
    with pytest.raises(BoardResultError, match="script must be"):
        read_result_json(tmp_path / "result.json")


def test_the_cpp_snippet_compiles_against_mnn_and_agrees_with_the_script(tmp_path, overflow_model):
    """repro.cpp against MNN 3.6.1's headers, linked against the wheel's library (it exports MNN's C++ API), run on
    x86: the same numbers as repro.py, through map/unmap."""
    import MNN

    compiler = shutil.which("g++")
    engine = next(Path(MNN.__file__).parent.parent.glob("_mnncengine*.so"), None)
    libdir, library = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    if MNN_HEADERS is None or compiler is None or engine is None or not (Path(libdir) / library).is_file():
        pytest.skip("needs MNN_INCLUDE_DIR (MNN's include/ from its source), g++, the MNN wheel's library and a "
                    "shared libpython (its Python bindings need it)")
    rng = np.random.default_rng(1)
    x = np.abs(rng.normal(size=(1, 16, 32, 32))).astype(np.float32)
    cut = cut_mnn(overflow_model.mnn_path, [CutEntry("conv0.relu", [1, 16, 32, 32], "float32")], ["conv1.relu"],
                  ["conv1"], tmp_path / "cut.mnn")
    (tmp_path / "repro.py").write_text(python_script("t", {"precision": "normal"}, "3.6.1"))
    np.savez(tmp_path / "tensors.npz", **{"input/conv0.relu": x})
    subprocess.run([sys.executable, "repro.py", "--save", "ref.npz"], cwd=tmp_path, check=True, capture_output=True)
    with np.load(tmp_path / "ref.npz") as saved:
        reference = saved["conv1.relu"]
    perturbed = reference.copy()
    perturbed[0, 5, 3, 7] += 0.5  # a reference that differs in one place: both programs must find it there
    tensors = {"input/conv0.relu": x, "reference/conv1.relu": perturbed}
    np.savez(tmp_path / "tensors.npz", **tensors)
    inputs, outputs = [TensorSpec("conv0.relu", [1, 16, 32, 32], "float32")], \
        [TensorSpec("conv1.relu", list(reference.shape), "float32")]
    for name, data in raw_files(inputs, outputs, tensors).items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "repro.cpp").write_text(cpp_snippet("t", {"precision": "normal", "threads": 1}, "3.6.1", inputs,
                                                    outputs))
    build = subprocess.run([compiler, "-std=c++11", "-O1", "-Wall", "-Wextra", "-Werror", "-I", str(MNN_HEADERS),
                            "repro.cpp", "-o", "repro", str(engine), "-L", libdir, f"-l:{library}",
                            f"-Wl,-rpath,{engine.parent}", f"-Wl,-rpath,{libdir}"], cwd=tmp_path,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    (tmp_path / "nhwc.cpp").write_text(cpp_snippet("t", {"precision": "low"}, "3.6.1", inputs, outputs, ["conv0.relu"]))
    check = subprocess.run([compiler, "-std=c++11", "-fsyntax-only", "-Wall", "-Werror", "-I", str(MNN_HEADERS),
                            "nhwc.cpp"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0 and "MNN::Tensor::TENSORFLOW" in (tmp_path / "nhwc.cpp").read_text(), check.stderr
    native = subprocess.run(["./repro"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    python = subprocess.run([sys.executable, "repro.py"], cwd=tmp_path, capture_output=True, text=True,
                            check=True).stdout
    flat = int(np.ravel_multi_index((0, 5, 3, 7), reference.shape))
    assert f"max |here - reference| 0.5 at flat index {flat}" in native
    assert "max |here - reference| 0.5 at (0, 5, 3, 7)" in python
    assert "0 of 8192 values NaN/Inf" in native


def test_the_cpp_snippet_reads_the_files_it_is_shipped_with_at_the_settings_that_failed():
    """Where no MNN headers are at hand (a clean machine: no package registry carries them), the snippet is held to
    its bundle: every raw file raw_files writes is read, in the model's shapes and layout, at the run's precision."""
    inputs = [TensorSpec("a/b:0", [1, 3, 8, 8], "float32"), TensorSpec("ids", [1, 4], "int32")]
    outputs = [TensorSpec("out", [1, 2], "float32")]
    tensors = {"input/a/b:0": np.zeros((1, 3, 8, 8), np.float32), "input/ids": np.zeros((1, 4), np.int32),
               "reference/out": np.zeros((1, 2), np.float32)}
    files = raw_files(inputs, outputs, tensors)
    assert sorted(files) == ["input-0.bin", "input-1.bin", "reference-0.bin"]
    assert len(files["input-0.bin"]) == 3 * 8 * 8 * 4 and len(files["input-1.bin"]) == 4 * 4
    for precision, enum in (("low", "Precision_Low"), ("normal", "Precision_Normal"),
                            ("low_bf16", "Precision_Low_BF16"), ("high", "Precision_High")):
        text = cpp_snippet("t", {"precision": precision, "threads": 2}, "3.6.1", inputs, outputs, ["a/b:0"])
        assert enum in text and "numThread = 2" in text, precision
        for name in files:
            assert f'"{name}"' in text, name
        assert 'getSessionInput(session, "a/b:0")' in text and "resizeTensor(input0, {1, 3, 8, 8})" in text
        assert 'feed<float>(input0, "input-0.bin", 192,\n                MNN::Tensor::TENSORFLOW)' in text
        assert 'feed<int32_t>(input1, "input-1.bin", 4,\n                MNN::Tensor::CAFFE)' in text
        assert text.index("resizeSession") < text.index("feed<float>") < text.index("runSession")


# ---- options and what is refused ------------------------------------------------------------

@pytest.fixture(scope="module")
def quiet_search(tmp_path_factory):
    """A search of x86 against x86 (no board): every op within tolerance, nothing to reproduce."""
    folder = tmp_path_factory.mktemp("quiet")
    (folder / "inventory.yaml").write_text(INVENTORY)
    (folder / "tiny.yaml").write_text(scenario_text(["x86"]))
    code = main(["--inventory", str(folder / "inventory.yaml"), "layers", str(folder / "tiny.yaml"), "--board", "x86b",
                 "--reports", str(folder / "r")])
    assert code == 0
    (layers,) = (folder / "r").iterdir()
    return folder, layers


@pytest.mark.parametrize("argv, message", [
    (["--widen", "nan"], "not an integer"), (["--widen", "-1"], "at least 0"), (["--widen", "1000"], "at most"),
    (["--tolerance", "0"], "more than 0"), (["--tolerance", "inf"], "not a finite number"),
    (["--op", "conv11"], "ran no op named 'conv11'"), (["--op", "conv11"], "did you mean conv1"),
    (["--op", "conv1"], "stays within its tolerance"), ([], "no op introduces error on x86b"),
    (["--board", "nope"], "the search has no board 'nope'"),
])
def test_what_cannot_be_reproduced_is_refused_before_anything_runs(quiet_search, capsys, argv, message):
    folder, layers = quiet_search
    try:
        code = main(["--inventory", str(folder / "inventory.yaml"), "repro", str(layers)] + argv)
    except SystemExit as exit_:  # the argument parser's refusals
        code = exit_.code
    captured = capsys.readouterr()
    assert code == 2 and message in " ".join((captured.out + captured.err).split())
    assert not (layers / "repro").exists()


def run_record(scenario: str, mnn_sha256: str, started_at: str) -> RunRecord:
    """The record of a run of this scenario and model (as summary.json keeps it), started then."""
    return RunRecord(run_id="r", scenario={"name": scenario, "path": f"{scenario}.yaml"}, reference="x86",
                     model=ModelRecord(source=None, mnn_path="m.mnn", mnn_sha256=mnn_sha256),
                     inputs=InputsRecord(sha256="0"), started_at=started_at)


def test_a_run_leads_to_its_search_and_a_folder_that_is_neither_is_refused(quiet_search, tmp_path, capsys):
    """A run's folder (or a unique part of its id, as `harness report` takes it) leads to the layer search stored
    after it for the same scenario and model; a folder that is neither, or a run without a search, is refused."""
    folder, layers = quiet_search
    search = json.loads((layers / "layers.json").read_text())
    run = layers.parent / "20000101-000000-tiny-ab12"
    run.mkdir(exist_ok=True)
    (run / "summary.json").write_text(json.dumps(run_record(search["scenario"], search["model"]["mnn_sha256"],
                                                            "2000-01-01T00:00:00+00:00").to_dict()))
    inventory = ["--inventory", str(folder / "inventory.yaml")]
    code = main(inventory + ["repro", "ab12", "--reports", str(layers.parent)])
    assert code == 2 and "no op introduces error on x86b" in " ".join(capsys.readouterr().err.split())  # found it
    code = main(inventory + ["repro", str(tmp_path)])
    assert code == 2 and "no layer search (layers.json) and no run" in " ".join(capsys.readouterr().err.split())
    (run / "summary.json").write_text(json.dumps(run_record("other", "0" * 64, "2099").to_dict()))
    code = main(inventory + ["repro", str(run)])
    out = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "this run has no layer search" in out and "--find-layer" in out


# ---- on an emulated Cortex-A76 ------------------------------------------------------------------

@pytest.fixture(scope="module")
def a76():
    """The module's emulated A76 (started by the first job that needs it), stopped and removed at the end."""
    yield A76
    emulated.stop(A76)
    emulated.remove(A76)


@pytest.fixture(scope="module")
def a76_search(tmp_path_factory, a76):
    """`harness layers --repro` of the overflow net on the A76 at low against x86, once for the module's tests: the
    search and the bundle on the same board sessions."""
    folder = tmp_path_factory.mktemp("a76")
    (folder / "inventory.yaml").write_text(INVENTORY)
    console = Console(width=80, record=True, color_system=None)
    import harness.cli as cli

    real = cli.Console
    cli.Console = lambda **kwargs: console  # the report as an 80-column terminal shows it
    try:
        code = main(["--inventory", str(folder / "inventory.yaml"), "layers", str(overflow_scenario(folder)),
                     "--board", A76, "--repro", "--reports", str(folder / "r")])
    finally:
        cli.Console = real
    (layers,) = (folder / "r").iterdir()
    return folder, layers, code, console.export_text()


def bundle_of(layers: Path, op: str) -> Path:
    return layers / "repro" / A76 / op


@pytest.mark.emulated
def test_layers_repro_gives_a_verified_bundle_for_conv1(a76_search):
    """conv1 alone, cut out of the converted .mnn: inf on the A76 at low, bit for bit the op in the whole model,
    gone at normal (measured); its ONNX sub-graph beside it; ISSUE.md with every field MNN's maintainers ask for."""
    _, layers, code, out = a76_search
    assert code == 1  # the search's verdict: an op introduces error
    bundle = bundle_of(layers, "conv1")
    record = json.loads((bundle / "repro.json").read_text())
    assert record["reproduces"] and record["exit_code"] == 0 and record["op"] == "conv1"
    assert ReproRecord.from_dict(record).to_dict() == record  # the record reads back as itself
    (attempt,) = record["attempts"]
    assert attempt["ops"] == ["conv1"] and attempt["reproduces"] and attempt["same_as_model"] == 0.0
    (d,) = attempt["differences"]
    assert d["output"] == "conv1.relu" and d["nonfinite"] > 1000 and d["relative"] == "inf"
    assert attempt["board"]["machine"] == "aarch64" and "asimdhp" in attempt["board"]["cpu_features"]
    assert attempt["reference"]["machine"] == "x86_64"
    # The measured workaround: the same cut on the A76 at normal has no NaN/Inf and matches x86.
    (workaround,) = record["workarounds"]
    assert workaround["label"] == "precision normal" and workaround["removes"]
    assert workaround["differences"][0]["nonfinite"] == 0 and workaround["error"] < 1e-5
    # A small standalone model: MNN's own description of the op; the source's sub-graph runs in ONNX Runtime.
    original = Path(record["model"]["mnn"]).stat().st_size
    assert (bundle / "cut.mnn").stat().st_size == record["cut"]["bytes"] < original / 4
    (op,) = record["cut"]["ops"]
    assert op["params"]["main"]["common"]["kernelX"] == 3 and op["params"]["main"]["common"]["strideX"] == 2
    assert record["source"]["nodes"] == ["conv1 (Conv)", "conv1.relu (Relu)"]
    assert record["source"]["against_reference"][0]["relative"] < 1e-5
    for name in ("cut.mnn", "tensors.npz", "input-0.bin", "reference-0.bin", "repro.py", "repro.cpp", "ISSUE.md",
                 "source.onnx"):
        assert record["files"][name] == __import__("hashlib").sha256((bundle / name).read_bytes()).hexdigest()
    with np.load(bundle / "tensors.npz") as tensors:
        assert set(tensors.files) == {"input/conv0.relu", "reference/conv1.relu", "board/conv1.relu"}
        assert np.isinf(tensors["board/conv1.relu"]).sum() == d["nonfinite"]
        assert np.isfinite(tensors["reference/conv1.relu"]).all()
    issue = (bundle / "ISSUE.md").read_text()
    for field in ("## Platform", "## Github Version", "## Compiling Method", "## Model and conversion", "## Settings",
                  "## The op", "## What happens", "## To reproduce", "## Workaround (measured on the cut)",
                  "MNN 3.6.1 on " + A76, "MNN 3.6.1 on x86",  # MNN on each side
                  "`mnnconvert -f ONNX --modelFile model.onnx --MNNModel model.mnn --bizCode harness "
                  "--useGeluApproximation 0` (MNN 3.6.1's converter",  # the converter's command line and version
                  "precision `low`, numThread 1, backend CPU (FP16 arithmetic)",
                  "precision `low`, numThread 1, backend CPU (FP32 arithmetic)",
                  'MNN says "The device supports: i8sdot:1, fp16:1', "CPU features fp asimd",
                  "an emulated cortex-a76 (qemu-aarch64-static -cpu cortex-a76",
                  "Convolution2D common: padX 1, padY 1, kernelX 3, kernelY 3, strideX 2, strideY 2",
                  "group 1", "input `conv0.relu`: float32 [1, 16, 32, 32] (NC4HW4 in MNN)",
                  "output `conv1.relu`: float32 [1, 32, 16, 16]", "values are NaN/Inf on " + A76,
                  "beyond FP16's largest, 65504", "so this is FP16's range rather than a wrong result of the kernel",
                  "pip install MNN==3.6.1 numpy", "python3 repro.py",
                  "values are NaN/Inf here and finite in the reference",  # the log of the run on the board
                  "Convolution at precision normal on " + A76 + ": no NaN/Inf",
                  "conv1 (Conv) + conv1.relu (Relu)"):
        assert field in issue, field
    # The terminal: the search, then the bundle, in 80 columns, its path whole on a line of its own.
    assert max(len(line) for line in out.splitlines() if str(layers) not in line) <= 80
    assert f"reproduces: conv1 (Convolution) on {A76} at low, verified on {A76} and x86" in " ".join(out.split())
    assert str(bundle) in out.splitlines()


@pytest.mark.emulated
def test_the_bundle_runs_on_the_board_with_only_mnn_and_numpy(a76_search, tmp_path):
    """The bundle copied to the board and run by hand there, no agent and no harness: the inf at low, none at
    normal."""
    import paramiko

    _, layers, _, _ = a76_search
    bundle = bundle_of(layers, "conv1")
    endpoint = emulated.ensure_running(emulated.EmulatedBoardSpec(name=A76, cpu="cortex-a76"),
                                       log=lambda message: None)
    client = paramiko.SSHClient()
    client.load_host_keys(str(endpoint.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(endpoint.host, endpoint.port, endpoint.user, key_filename=endpoint.key_filename,
                   look_for_keys=False, allow_agent=False, timeout=10)

    def run(command):
        _, stdout, _ = client.exec_command(command, timeout=120)
        text = stdout.read().decode()
        return stdout.channel.recv_exit_status(), text

    try:
        remote = f"{endpoint.workdir}/bundle-by-hand"
        run(f"rm -rf {remote} && mkdir -p {remote}")
        sftp = client.open_sftp()
        for name in ("cut.mnn", "tensors.npz", "repro.py"):
            sftp.put(str(bundle / name), f"{remote}/{name}")
        sftp.close()
        code, modules = run("python3 -c \"import importlib.util as u; print([m for m in ('numpy', 'MNN', 'harness', "
                            "'mnnagent', 'onnx', 'onnxruntime') if u.find_spec(m)])\" 2>&1")
        low = run(f"cd {remote} && python3 repro.py 2>&1")
        normal = run(f"cd {remote} && python3 repro.py --precision normal 2>&1")
    finally:
        client.close()
    assert code == 0 and "['numpy', 'MNN']" in modules  # the board has MNN and numpy, nothing of the harness
    assert low[0] == 0 and "conv1.relu: " in low[1] and "values are NaN/Inf here and finite in the reference" in low[1]
    assert "fp16:1" in low[1]
    assert normal[0] == 0 and "NaN/Inf" not in normal[1] and "max |here - reference|" in normal[1]


@pytest.mark.emulated
def test_an_op_that_only_inherits_the_error_grows_upstream_until_it_shows(a76_search, capsys):
    """conv2 receives conv1's inf: alone (fed the board's inf) it adds nothing, so the cut grows one producer level
    and conv1 + conv2 show the inf; what was tried stays in repro.json."""
    folder, layers, _, _ = a76_search
    code = main(["--inventory", str(folder / "inventory.yaml"), "repro", str(layers), "--op", "conv2"])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0, out
    record = json.loads((bundle_of(layers, "conv2") / "repro.json").read_text())
    alone, widened = record["attempts"]
    assert alone["ops"] == ["conv2"] and not alone["reproduces"] and alone["error"] != "inf"
    assert widened["ops"] == ["conv1", "conv2"] and widened["reproduces"]
    assert widened["differences"][0]["nonfinite"] > 0 and record["claim"]["kind"] == "exit"
    assert "conv2 alone: cut" in out and "does not show it" in out and "2 ops (conv1, conv2" in out


@pytest.mark.emulated
def test_a_raster_op_is_refused_naming_the_op_it_was_made_for(a76_search, capsys):
    folder, layers, _, _ = a76_search
    code = main(["--inventory", str(folder / "inventory.yaml"), "repro", str(layers), "--op",
                 "logits__before_tr_raster_0"])
    out = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "an op MNN generated while running" in out and "--op logits__before_tr" in out


@pytest.mark.emulated
@pytest.mark.slow
def test_a_segformer_op_cut_alone_is_a_small_model_that_shows_the_searchs_number(tmp_path, a76):
    """SegFormer-128 on the A76 at low: no op introduces more than FP16 explains, but a user's own limit (half the
    largest an op introduces) makes that op's error something to report. Its bundle is a small fraction of the
    model and shows the search's number within 10% (the same kernels on the same inputs: in practice exactly)."""
    from harness.config.inventory import load_inventory
    from harness.plans.layers import search_layers, write_layers_files
    from harness.plans.repro import make_repro

    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    text = scenario_text(["x86"], precision="low", size=128).replace(
        f"build: {REPO / 'scenarios' / 'models' / 'tiny_segnet.py'}",
        f"build: {REPO / 'scenarios' / 'models' / 'segformer.py'}").replace("num_classes: 8", "num_classes: 150")
    (tmp_path / "seg.yaml").write_text(text)
    inventory = load_inventory(tmp_path / "inventory.yaml")
    report = search_layers(load_scenario(tmp_path / "seg.yaml"), inventory, [A76], tmp_path, budget_mb=16)
    write_layers_files(report)
    (board,) = report.boards
    replayed = [row for row in board.rows if row.introduced is not None and row.type == "Convolution"]
    row = max(replayed, key=lambda r: r.introduced)
    assert board.first_introduced is None and row.introduced <= row.tolerance  # FP16 explains every op
    record = make_repro(Path(report.run_dir), inventory, op=row.name, tolerance=row.introduced / 2)
    assert record.reproduces and len(record.attempts) == 1
    (attempt,) = record.attempts
    assert attempt.error == pytest.approx(row.introduced, rel=0.1) and attempt.same_as_model == 0.0
    model_bytes = Path(report.model["mnn"]).stat().st_size
    assert attempt.cut_bytes < model_bytes / 10
    assert record.claim.search_tolerance == row.tolerance and record.claim.tolerance == row.introduced / 2
    issue = (Path(record.bundle_dir) / "ISSUE.md").read_text()
    assert "the search's own limit for it" in issue and "within what its rounding explains" in issue


@pytest.mark.emulated
def test_an_interrupted_repro_leaves_no_bundle_and_nothing_on_the_board(a76_search):
    """Stopped while the board runs the bundle's script (the Interruption a Ctrl-C sets, requested the moment the
    board's job starts): the board's agent is killed, its job dir and lock are gone, and no bundle, not even a
    half-made one, is left."""
    from harness.core.errors import Interrupted
    from harness.config.inventory import load_inventory
    from harness.execution.executor import Executor, Progress
    from harness.execution.interrupt import Interruption
    from harness.plans.repro import make_repro

    folder, layers, _, _ = a76_search
    interruption = Interruption()

    class StopOnTheBoard(Progress):
        label = ""

        def job(self, name, label, number, count):
            self.label = label

        def stage(self, name, stage):
            if name == A76 and self.label == "repro board" and stage == "run":
                interruption.request("SIGINT")

    before = set((layers / "repro" / A76).iterdir())
    with pytest.raises(Interrupted, match="no bundle was written"):
        with Executor(progress=StopOnTheBoard(), interruption=interruption) as executor:
            make_repro(layers, load_inventory(folder / "inventory.yaml"), op="conv1", tolerance=0.01,
                       executor=executor)
    assert set((layers / "repro" / A76).iterdir()) == before  # the earlier bundle of conv1 stands, nothing new
    workdir = Path(emulated.ensure_running(emulated.EmulatedBoardSpec(name=A76, cpu="cortex-a76"),
                                           log=lambda message: None).workdir)
    assert not (workdir / "lock").exists() and not list((workdir / "jobs").glob("*"))
    assert not [line for line in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
                .splitlines() if str(workdir) in line and "repro.py" in line]


@pytest.mark.emulated
def test_a_model_changed_since_the_search_is_refused(a76_search, tmp_path, capsys):
    """The bundle must cut the model the search traced: a .mnn whose bytes changed since is refused, naming it."""
    folder, layers, _, _ = a76_search
    copy = tmp_path / layers.name
    shutil.copytree(layers, copy, ignore=shutil.ignore_patterns("repro"))
    data = json.loads((copy / "layers.json").read_text())
    data["model"]["mnn_sha256"] = "0" * 64
    (copy / "layers.json").write_text(json.dumps(data))
    code = main(["--inventory", str(folder / "inventory.yaml"), "repro", str(copy)])
    out = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "changed since the search" in out and "run `harness layers` again" in out
    assert not (copy / "repro").exists()


def test_the_exit_code_says_whether_a_side_could_run_the_bundle():
    from harness.record.repro import Attempt, SideRun

    def record(*attempts):
        return ReproRecord(op="c", op_type="Convolution", board={}, reference={}, claim=Claim("exit", 1.0, 0.1, False),
                           layers_dir="", bundle_dir="", attempts=list(attempts))
    shown = Attempt(ops=["c"], executed=["c"], reproduces=True)
    quiet = Attempt(ops=["c"], executed=["c"], error=0.01, board=SideRun("b", {}), reference=SideRun("x", {}))
    broken = Attempt(ops=["b", "c"], executed=[], problem="the bundle did not run on b: ...",
                     board=SideRun("b", {}, error="MNN crashed"), reference=SideRun("x", {}))
    no_value = Attempt(ops=[], executed=[], problem="no value of t on the board")
    assert dataclasses.replace(record(shown), reproduces=True).exit_code == 0
    assert record(quiet, no_value).exit_code == 1  # tried, nothing showed it: not a board's failure
    assert record(quiet, broken).exit_code == 3

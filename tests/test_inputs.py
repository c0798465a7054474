"""Inputs by name from providers, checked against a real multi-input model; integers compared exactly.

The model is built here with the onnx helper API: int64, int32 and uint8
inputs, a float32 input, a float32 scalar, a float output and an integer
(ArgMax) output. It goes through MNN's real converter and runs with the real
x86 MNN and ONNX Runtime.
"""

import hashlib
import json
import shutil
import textwrap

import numpy as np
import pytest

from harness.cli import main

INVENTORY = "boards:\n  x86: {kind: local}\n"


def build_int_model(path):
    import onnx
    from onnx import TensorProto as T
    from onnx import helper

    nodes = [helper.make_node("Cast", ["ids"], ["ids_f"], to=T.FLOAT),
             helper.make_node("Cast", ["mask"], ["mask_f"], to=T.FLOAT),
             helper.make_node("Cast", ["pix"], ["pix_f"], to=T.FLOAT),
             helper.make_node("Add", ["ids_f", "x"], ["a"]),
             helper.make_node("Add", ["a", "pix_f"], ["a2"]),
             helper.make_node("Mul", ["a2", "mask_f"], ["b"]),
             helper.make_node("Mul", ["b", "scale"], ["y"]),
             helper.make_node("ArgMax", ["y"], ["idx"], axis=1, keepdims=0)]
    graph = helper.make_graph(nodes, "ints", [
        helper.make_tensor_value_info("ids", T.INT64, [1, 8]),
        helper.make_tensor_value_info("mask", T.INT32, [1, 8]),
        helper.make_tensor_value_info("pix", T.UINT8, [1, 8]),
        helper.make_tensor_value_info("x", T.FLOAT, [1, 8]),
        helper.make_tensor_value_info("scale", T.FLOAT, [])],
        [helper.make_tensor_value_info("y", T.FLOAT, [1, 8]), helper.make_tensor_value_info("idx", T.INT64, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def expected_y(ids, mask, pix, x, scale):
    return ((ids.astype(np.float32) + x + pix.astype(np.float32)) * mask.astype(np.float32) * scale)


@pytest.fixture(scope="module")
def int_model(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ints")
    build_int_model(directory / "ints.onnx")
    return directory / "ints.onnx"


@pytest.fixture
def workdir(tmp_path, int_model):
    shutil.copy(int_model, tmp_path / "ints.onnx")
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "tokens.npz", ids=rng.integers(0, 50, size=(3, 1, 8)).astype(np.int64))
    (tmp_path / "data.py").write_text(textwrap.dedent("""\
        import numpy as np

        def pixels(base=10):
            for index in range(100000):      # endless in effect: the scenario takes `count`
                yield {"pix": np.full((1, 8), base + index, dtype=np.uint8)}
        """))
    return tmp_path


SCENARIO = """\
name: ints
model: {onnx: ints.onnx}
inputs:
  ids: {npz: tokens.npz}
  mask: {random: {dtype: int32, low: 0, high: 2, seed: 7, samples: 3}}
  pix: {loader: {call: data.py:pixels, args: {base: 20}, count: 3}}
  x: {random: {low: -1, high: 1, seed: 1, samples: 3}}
  scale: {value: 2.5}
targets: [x86]
tolerance: {max_abs: 1e-4}
"""


def run(workdir, text, *extra):
    scenario = workdir / "s.yaml"
    scenario.write_text(text)
    reports = workdir / "reports"
    shutil.rmtree(reports, ignore_errors=True)
    code = main(["--inventory", str(workdir / "inventory.yaml"), "run", str(scenario), "--reports", str(reports),
                 "--keep-outputs", "10", *extra])
    runs = list(reports.iterdir()) if reports.is_dir() else []
    return code, runs[0] if runs else None


def test_every_provider_feeds_a_multi_input_integer_model(workdir, capsys):
    code, run_dir = run(workdir, SCENARIO)
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads((run_dir / "summary.json").read_text())
    tensors = {t["name"]: t for t in summary["inputs"]["tensors"]}
    assert {name: (t["provider"], t["dtype"], t["shape"]) for name, t in tensors.items()} == {
        "ids": ("npz", "int64", [1, 8]), "mask": ("random", "int32", [1, 8]), "pix": ("loader", "uint8", [1, 8]),
        "x": ("random", "float32", [1, 8]), "scale": ("value", "float32", [])}
    assert tensors["scale"]["shared"] and not tensors["ids"]["shared"] and summary["inputs"]["count"] == 3
    for name in ("ids", "pix", "scale"):  # the header names every input, its provider and its type
        assert f"input {name}" in out
    # The agent took int64 as MNN's int32 and says so; the integer output came back as integers.
    facts = summary["boards"]["x86"]["facts"]
    assert facts["inputs"]["ids"] == {"shape": [1, 8], "dtype": "int64", "fed_dtype": "int32"}
    assert facts["outputs"]["idx"]["dtype"] == "int32" and facts["api"] == "session"
    # What MNN computed is what numpy computes from the same inputs.
    with np.load(run_dir / "inputs.npz") as inputs:
        arrays = {name: inputs[name] for name in inputs.files}
    assert list(arrays["pix"][:, 0, 0]) == [20, 21, 22]  # the loader's args and count were honoured
    y = expected_y(arrays["ids"], arrays["mask"], arrays["pix"], arrays["x"], arrays["scale"][0])
    with np.load(run_dir / "targets" / "x86" / "outputs.npz") as outputs:
        assert np.allclose(outputs["y"], y, atol=1e-4)
        assert np.array_equal(outputs["idx"][:, 0], np.argmax(y[:, 0], axis=1))
    # ONNX Runtime (int64 ArgMax) against MNN (int32): compared exactly, and equal.
    idx = summary["conversion"]["outputs"]["idx"]
    assert idx["passed"] and idx["metrics"]["mismatches"] == 0


@pytest.mark.parametrize("change, where, words", [
    ("  ids: {npz: tokens.npz}", "inputs.ids", ["float32", "int64"]),
    ("  x: {random: {low: -1, high: 1, seed: 1, samples: 3}}", "inputs.x", ["[1, 9]", "[1, 8]"]),
    ("  scale: {value: 2.5}", "inputs.scales", ["no input 'scales'", "ids int64 [1, 8]"]),
])
def test_a_wrong_dtype_shape_or_name_stops_the_run_naming_it(workdir, capsys, change, where, words):
    np.savez(workdir / "floats.npz", ids=np.zeros((3, 1, 8), np.float32))
    replacement = {"inputs.ids": "  ids: {npz: floats.npz}",
                   "inputs.x": "  x: {value: {data: 0.5, shape: [1, 9]}}",
                   "inputs.scales": "  scales: {value: 2.5}"}[where]
    code, run_dir = run(workdir, SCENARIO.replace(change, replacement))
    out = " ".join(capsys.readouterr().err.split())
    assert code == 2, out
    assert f"s.yaml: {where}" in out
    for word in words:
        assert word in out
    assert run_dir is None or not (run_dir / "targets").exists()  # nothing was sent anywhere


def test_an_input_nothing_feeds_is_named(workdir, capsys):
    code, _ = run(workdir, SCENARIO.replace("  scale: {value: 2.5}\n", ""))
    out = " ".join(capsys.readouterr().err.split())  # the terminal wraps long lines
    assert code == 2 and "s.yaml: inputs: nothing feeds the model's input(s) scale (float32 [])" in out


HOSTILE = [
    ("  x: {random: {low: -1, high: 1, seed: 1, samples: 3}}", "  x: {random: {low: .nan, samples: 3}}",
     "inputs.x.random.low"),
    ("  x: {random: {low: -1, high: 1, seed: 1, samples: 3}}", "  x: {random: {samples: -3}}",
     "inputs.x.random.samples"),
    ("  x: {random: {low: -1, high: 1, seed: 1, samples: 3}}", "  x: {random: {shape: [100000, 100000]}}",
     "inputs.x.random.shape"),
    ("  x: {random: {low: -1, high: 1, seed: 1, samples: 3}}", "  x: {random: {shape: [8192, 8192], samples: 9999}}",
     "inputs.x.random: 9999 sample(s)"),
    ("  x: {random: {low: -1, high: 1, seed: 1, samples: 3}}", "  x: {random: {seed: 1.5, samples: 3}}",
     "inputs.x.random.seed"),
    ("  x: {random: {low: -1, high: 1, seed: 1, samples: 3}}", "  x: {random: {dtype: float64}}",
     "inputs.x.random.dtype"),
    ("  scale: {value: 2.5}", "  scale: {value: .inf}", "inputs.scale.value"),
    ("  scale: {value: 2.5}", "  scale: {value: {data: [[1, 2], [3]]}}", "inputs.scale.value.data"),
    ("  scale: {value: 2.5}", "  scale: {value: 2.5, npz: tokens.npz}", "inputs.scale"),
    ("  scale: {value: 2.5}", "  scale: {value: 2.5}\n  scale: {value: 1}", "appears twice"),
    ("  pix: {loader: {call: data.py:pixels, args: {base: 20}, count: 3}}", "  pix: {loader: data.py}",
     "inputs.pix.loader"),
    ("  pix: {loader: {call: data.py:pixels, args: {base: 20}, count: 3}}",
     "  pix: {loader: {call: data.py:pixels, count: 0}}", "inputs.pix.loader.count"),
    ("  pix: {loader: {call: data.py:pixels, args: {base: 20}, count: 3}}",
     "  pix: {audio: {speak: hi, frame: -512}}", "inputs.pix.audio.frame"),
    ("  pix: {loader: {call: data.py:pixels, args: {base: 20}, count: 3}}",
     "  pix: {audio: {speak: hi, voice: --help}}", "inputs.pix.audio.voice"),
    ("  pix: {loader: {call: data.py:pixels, args: {base: 20}, count: 3}}",
     "  pix: {audio: {speak: hi, rate: 1e12}}", "inputs.pix.audio.rate"),
    ("targets: [x86]", "targets: [x86]\nstream: {steps: many}", "stream.steps"),
    ("targets: [x86]", "targets: [x86]\nstream: {steps: 0}", "stream.steps"),
    ("targets: [x86]", "targets: [x86]\nstream: {carry: {y: x, idx: x}}", "stream.carry.idx"),
    ("targets: [x86]", "targets: [x86]\nstream: {carry: [y, x]}", "stream.carry"),
    ("targets: [x86]", "targets: [x86]\ncompare: [y, y]", "compare[1]"),
    ("targets: [x86]", "targets: [x86]\ncompare: [z]", "compare[0]"),
    ("targets: [x86]", "targets: [x86]\nrun: {backend: gpu}", "run.backend"),
    ("targets: [x86]", "targets: [x86]\nrun: {allow_fallback: 1}", "run.allow_fallback"),
    ("targets: [x86]", "targets: [x86]\nmatrix: {backend: [cpu, cpu]}", "matrix.backend[1]"),
    ("targets: [x86]", "targets: [x86]\npreprocess: {resize: {height: 8, width: 8}}", "preprocess"),
    ("targets: [x86]", "targets: [x86]\noutputs: {y: {kind: decision, threshold: .nan}}", "outputs.y.threshold"),
    ("targets: [x86]", "targets: [x86]\noutputs: {y: {tolerance: {min_decision_agreement: 0.9}}}",
     "outputs.y.tolerance.min_decision_agreement"),
    ("model: {onnx: ints.onnx}", "model: {mnn: ints.onnx}", "model.mnn"),
    ("model: {onnx: ints.onnx}", "model: {onnx: ints.onnx, source: ints.onnx}", "model.source"),
]


@pytest.mark.parametrize("old, new, key", HOSTILE, ids=[key for _, _, key in HOSTILE])
def test_hostile_values_in_new_keys_stop_the_run_naming_the_key(workdir, capsys, old, new, key):
    assert old in SCENARIO
    code, _ = run(workdir, SCENARIO.replace(old, new))
    out = " ".join(capsys.readouterr().err.split())
    assert code == 2, out
    assert key in out, out


def test_only_the_deployed_mnn_and_then_with_its_source(workdir, capsys):
    from harness.core.build.model import convert

    mnn = convert(workdir / "ints.onnx", "ONNX", ("--useGeluApproximation", "0"), log=lambda m: None)
    shutil.copy(mnn, workdir / "app.mnn")
    # MNN keeps int64 inputs as int32: an app feeding the .mnn feeds int32, so the scenario does too.
    deployed = SCENARIO.replace("model: {onnx: ints.onnx}", "model: {mnn: app.mnn}").replace(
        "  ids: {npz: tokens.npz}", "  ids: {random: {dtype: int32, low: 0, high: 50, samples: 3}}")
    code, run_dir = run(workdir, deployed)
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["model"]["converted"] is False and summary["model"]["source"] is None
    assert summary["model"]["mnn_sha256"] == hashlib.sha256((workdir / "app.mnn").read_bytes()).hexdigest()
    assert summary["conversion"] is None and summary["source"] is None
    assert "app.mnn" in out and "as deployed" in out
    # The same .mnn with the ONNX it came from: the source reference runs again, with the source's int64.
    code, run_dir = run(workdir, SCENARIO.replace("model: {onnx: ints.onnx}",
                                                  "model: {mnn: app.mnn, source: ints.onnx}"))
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["conversion"]["passed"] and summary["source"]["status"] == "ok"
    assert {t["name"]: t["dtype"] for t in summary["inputs"]["tensors"]}["ids"] == "int64"


def test_integer_outputs_are_compared_exactly():
    from harness.analysis.compare import judge
    from harness.config.scenario import OutputSpec, Tolerance

    loose = OutputSpec(tolerance=Tolerance(max_abs=100.0, min_cosine=0.0))
    reference = np.array([[3], [7], [1]], dtype=np.int64)
    assert judge("idx", reference.astype(np.int32), reference, loose).passed
    off_by_one = judge("idx", np.array([[3], [6], [1]], dtype=np.int32), reference, loose)
    assert not off_by_one.passed and off_by_one.metrics["mismatches"] == 1
    assert off_by_one.reasons == ["1 of 3 integer values differ (integers are compared exactly)"]

"""Building and converting models: real torch export, real MNN converter, real ONNX Runtime."""

import subprocess
import sys

import numpy as np
import pytest

from harness.model import ModelError, ModelSource, prepare_model

from .conftest import REPO, TINY_SEGNET

SEGFORMER = REPO / "scenarios" / "models" / "segformer.py"
SMALL = {"height": 64, "width": 64, "num_classes": 150, "seed": 0}


def run_mnn(mnn_path, x):
    """MNN's Session API the right way, in a child process (MNN prints on stdout at import)."""
    code = r"""
import sys, numpy as np, MNN
x = np.load(sys.argv[2])
interpreter = MNN.Interpreter(sys.argv[1])
session = interpreter.createSession({"precision": "normal", "numThread": 1})
tensor = interpreter.getSessionInput(session)
tensor.copyFrom(MNN.Tensor(x.shape, MNN.Halide_Type_Float, x, MNN.Tensor_DimensionType_Caffe))
assert interpreter.runSession(session) == 0
out = interpreter.getSessionOutput(session, "logits")
host = MNN.Tensor(out.getShape(), MNN.Halide_Type_Float, np.zeros(out.getShape(), np.float32),
                  MNN.Tensor_DimensionType_Caffe)
out.copyToHostTensor(host)
np.save(sys.argv[3], np.array(host.getNumpyData(), copy=True))
"""
    directory = mnn_path.parent.parent
    np.save(directory / "x.npy", x)
    subprocess.run([sys.executable, "-c", code, str(mnn_path), str(directory / "x.npy"), str(directory / "y.npy")],
                   check=True, capture_output=True)
    return np.load(directory / "y.npy")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MNN_HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_segformer_matches_onnxruntime_only_without_gelu_approximation(cache):
    import onnxruntime
    exact = prepare_model(ModelSource(build_script=SEGFORMER, build_args=SMALL), log=lambda m: None)
    approximate = prepare_model(ModelSource(build_script=SEGFORMER, build_args=SMALL, converter_args=()),
                                log=lambda m: None)
    assert exact.inputs == {"pixel_values": [1, 3, 64, 64]} and exact.outputs == ["logits"]
    assert exact.source_path == approximate.source_path  # built once, converted twice
    assert exact.mnn_sha256 != approximate.mnn_sha256
    x = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
    reference = onnxruntime.InferenceSession(str(exact.source_path)).run(None, {"pixel_values": x})[0]
    assert reference.shape == (1, 150, 16, 16)
    error_exact = np.abs(run_mnn(exact.mnn_path, x) - reference).max()
    error_approximate = np.abs(run_mnn(approximate.mnn_path, x) - reference).max()
    assert error_exact < 1e-4
    assert error_approximate > 5 * error_exact  # the converter's GELU approximation is visible


def test_build_is_deterministic_and_cached(cache, tmp_path, monkeypatch):
    args = {"height": 32, "width": 32, "num_classes": 4, "seed": 3}
    messages = []
    first = prepare_model(ModelSource(build_script=TINY_SEGNET, build_args=args), log=messages.append)
    assert any("converting" in m for m in messages) and any("building" in m for m in messages)
    messages.clear()
    again = prepare_model(ModelSource(build_script=TINY_SEGNET, build_args=args), log=messages.append)
    assert messages == [] and again.mnn_sha256 == first.mnn_sha256  # a cache hit: nothing rebuilt
    monkeypatch.setenv("MNN_HARNESS_CACHE", str(tmp_path / "elsewhere"))
    elsewhere = prepare_model(ModelSource(build_script=TINY_SEGNET, build_args=args), log=lambda m: None)
    assert elsewhere.source_path.read_bytes() == first.source_path.read_bytes()  # same ONNX on a fresh cache


def test_bad_converter_option_is_a_clear_error(cache):
    with pytest.raises(ModelError) as caught:
        prepare_model(ModelSource(build_script=TINY_SEGNET, build_args={"height": 32, "width": 32},
                                  converter_args=("--weightQuantBits", "banana")), log=lambda m: None)
    message = str(caught.value)
    assert "banana" in message and "converter_args" in message
    assert not list((cache / "models" / "mnn").glob("*/model.mnn"))  # nothing half-made left behind


def test_unknown_converter_flag_is_refused_with_a_suggestion(cache):
    with pytest.raises(ModelError, match="did you mean --useGeluApproximation"):
        prepare_model(ModelSource(build_script=TINY_SEGNET, build_args={"height": 32, "width": 32},
                                  converter_args=("--useGeluAproximation", "0")), log=lambda m: None)


def test_failing_build_script_names_the_script(cache, tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("import sys\nsys.exit('no weights here')\n")
    with pytest.raises(ModelError, match="broken.py"):
        prepare_model(ModelSource(build_script=script), log=lambda m: None)

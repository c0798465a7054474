"""A TFLite source with NHWC input: MNN's TFLite converter against LiteRT on the same tensors."""

import json

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

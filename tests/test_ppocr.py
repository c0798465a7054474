"""The second real scenario: PP-OCR's trained text detector from the rapidocr wheel, with mask IoU."""

import json

from harness.cli import main

from .conftest import REPO


def test_ppocr_detector_converts_faithfully_with_mask_iou(tmp_path, capsys):
    code = main(["run", str(REPO / "scenarios" / "ppocr_det.yaml"), "--targets", "x86",
                 "--reports", str(tmp_path), "--keep-outputs", "50"])
    assert code == 0, capsys.readouterr().out
    (run_dir,) = list(tmp_path.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["inputs"]["shape"] == [1, 3, 192, 384]
    metrics = summary["conversion"]["outputs"]["fetch_name_0"]["metrics"]
    assert metrics["miou"] > 0.999 and metrics["max_abs"] < 1e-3
    # The page really has text: the detector's mask is not empty.
    import numpy as np
    probability = np.load(run_dir / "targets" / "x86" / "outputs.npz")["fetch_name_0"]
    assert probability.shape == (1, 1, 1, 192, 384)
    assert 0.01 < (probability > 0.3).mean() < 0.5

"""The second real scenario: PP-OCR's trained text detector from the rapidocr wheel, with mask IoU."""

import json

import pytest

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


PAGE_AND_BLANK = """\
name: ppocr-masks
model: {{onnx: pkg:rapidocr/models/PP-OCRv6_det_small.onnx}}
inputs:
  images: [skimage:page, {blank}]
preprocess:
  color: bgr
  resize: {{height: 96, width: 192, interpolation: linear}}
  scale: 1/255
  mean: [0.5, 0.5, 0.5]
  std: [0.5, 0.5, 0.5]
  layout: NCHW
run: {{precision: {precision}}}
targets: {targets}
outputs:
  fetch_name_0: {{kind: probability_map, threshold: 0.3}}
"""


def masks_scenario(tmp_path, precision, targets):
    import cv2
    import numpy as np

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((96, 192, 3), 200, np.uint8))  # a page with no text: an empty mask
    scenario = tmp_path / f"masks-{precision}.yaml"
    scenario.write_text(PAGE_AND_BLANK.format(blank=blank, precision=precision, targets=targets))
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("boards:\n  x86: {kind: local}\n  ocr-a76: {kind: emulated, cpu: cortex-a76}\n")
    return ["--inventory", str(inventory), "run", str(scenario), "--reports", str(tmp_path / "r")]


def test_an_image_without_text_is_not_a_100_percent_mask(tmp_path, capsys):
    """The detector on a blank image: no probability reaches 1.3e-6, the mask is empty on both sides. IoU
    judges only the page; the blank sample is said to be empty and judged by its distance to the threshold,
    not passed as "100%" (nor failed on the SNR of values at float32's floor: 9.4 dB on this faithful
    conversion)."""
    code = main(masks_scenario(tmp_path, "normal", "[x86]"))
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0, out
    (run_dir,) = list((tmp_path / "r").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    conversion = summary["conversion"]["outputs"]["fetch_name_0"]
    m = conversion["metrics"]
    assert m["mask_empty_samples"] == 1 and m["mask_empty_peak"] < 1e-5 and m["mask_empty_margin"] < 1e-4
    assert m["mask_size"] > 1000 and m["miou"] > 0.999  # the page's mask, judged by IoU
    assert conversion["notes"] and "1 of 2 sample(s) empty on both sides" in conversion["notes"][0]
    assert "x86 vs onnxruntime fetch_name_0: mask 1 of 2 sample(s) empty on both sides" in out
    assert "IoU cannot judge" in out


@pytest.mark.emulated
def test_fp16_on_a_text_mask_names_the_pixels_that_changed_not_argmax_flips(tmp_path, capsys, emulated_boards):
    """At low on the A76 the page's mask loses some pixels along its outline: the cause says how many and
    where; a probability map has no argmax, so "ArgMax flips" is never offered."""
    emulated_boards.add("ocr-a76")
    code = main(masks_scenario(tmp_path, "low", "[x86, ocr-a76]"))
    out = " ".join(capsys.readouterr().out.split())
    assert code == 1, out
    (run_dir,) = list((tmp_path / "r").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    m = summary["comparisons"]["ocr-a76"]["outputs"]["fetch_name_0"]["metrics"]
    assert m["miou"] < 0.999 and m["mask_changed"] > 0 and m["mask_empty_samples"] == 1
    causes = {finding["cause"]: finding["message"] for finding in summary["findings"]}
    assert set(causes) == {"precision", "mask-changes"}, causes
    assert causes["mask-changes"].startswith(f"fetch_name_0: {m['mask_changed']:,} of 36,864 pixels")
    assert "next to its edges" in causes["mask-changes"] and "ArgMax" not in out

"""Decoded verdicts on a real board: BlazeFace's faces and a CRNN's text on an emulated Cortex-A76 (real aarch64
MNN under qemu, behind a real sshd), at precision normal and low (FP16 arithmetic).

What they pin: at low, BlazeFace's raw tensors move far beyond a plain tensor's floor while the faces stay the
same, and the board passes saying that the faces decided; a raw limit the scenario sets itself still decides
(and the report says the faces matched); the opposite, raw tensors within their limits while the faces move,
fails on the faces. The CRNN at low reads some lines differently, and the labels column shows the CER.
"""

import json
from pathlib import Path

import pytest

from harness.cli import main

from .conftest import REPO

pytestmark = pytest.mark.emulated

BOARD = "dec-a76"
INVENTORY = f"boards:\n  x86: {{kind: local}}\n  {BOARD}: {{kind: emulated, cpu: cortex-a76}}\n"


def shipped(name: str, precision: str, extra: str = "", decoded_extra: str = "") -> str:
    """A shipped scenario on the test's board at a precision, its relative paths made absolute."""
    text = (REPO / "scenarios" / name).read_text()
    text = text.replace("models/", f"{REPO}/scenarios/models/")
    text = text.replace("targets: [x86, arm-a76]", f"targets: [x86, {BOARD}]\nrun: {{precision: {precision}}}")
    return text + decoded_extra + extra


def run(tmp_path: Path, label: str, text: str, capsys):
    folder = tmp_path / label
    folder.mkdir()
    (folder / "inventory.yaml").write_text(INVENTORY)
    (folder / "s.yaml").write_text(text)
    code = main(["--inventory", str(folder / "inventory.yaml"), "run", str(folder / "s.yaml"),
                 "--reports", str(folder / "reports")])
    out = " ".join(capsys.readouterr().out.split())
    (run_dir,) = list((folder / "reports").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["boards"][BOARD]["status"] == "ok", summary["boards"][BOARD]["error"]
    run.html = (run_dir / "report.html").read_text()
    return code, summary["comparisons"][BOARD]["outputs"], out


def test_blazeface_faces_decide_on_the_a76_at_normal_and_low(tmp_path, capsys, emulated_boards):
    emulated_boards.add(BOARD)
    code, outputs, out = run(tmp_path, "normal", shipped("face_tflite.yaml", "normal"), capsys)
    assert code == 0 and outputs["faces"]["decoded"]["label"] == "faces 2/2"
    assert outputs["classificators"]["metrics"]["snr_db"] > 90  # FP32 on both sides: nothing to explain
    assert not outputs["classificators"].get("notes")

    # FP16: the anchors' scores move by whole units, and the faces the application draws stay where they were.
    code, outputs, out = run(tmp_path, "low", shipped("face_tflite.yaml", "low"), capsys)
    raw = outputs["classificators"]
    assert raw["metrics"]["snr_db"] < 60 and raw["metrics"]["max_abs"] > 1.0
    assert code == 0 and raw["passed"] and outputs["faces"]["passed"]
    assert outputs["faces"]["decoded"]["label"] == "faces 2/2" and outputs["faces"]["metrics"]["min_box_iou"] > 0.95
    assert "judged by what it decodes to (faces 2/2), which decides: its own snr_db" in " ".join(raw["notes"])
    assert f"{BOARD} classificators: judged by what it decodes to (faces 2/2)" in out
    low_iou = outputs["faces"]["metrics"]["min_box_iou"]

    # A raw limit the scenario sets itself still decides; the report says the faces matched.
    code, outputs, out = run(tmp_path, "raw-limit", shipped("face_tflite.yaml", "low", "tolerance: {max_abs: 1e-3}\n"),
                             capsys)
    assert code == 1 and not outputs["classificators"]["passed"] and outputs["faces"]["passed"]
    assert "the limits the scenario sets on this tensor decided (max_abs" in " ".join(outputs["classificators"]["notes"])
    assert "what it decodes to matches (faces 2/2)" in out

    # The opposite: the raw tensors within the limits the scenario sets, the faces moved beyond theirs: it fails.
    strict = f"    tolerance: {{min_box_iou: {min(low_iou + 1e-4, 1.0):.6f}}}\n"
    code, outputs, out = run(tmp_path, "faces-decide", shipped("face_tflite.yaml", "low", "tolerance: {min_snr_db: 20}\n",
                                                               strict), capsys)
    assert code == 1 and outputs["classificators"]["passed"] and outputs["regressors"]["passed"]
    assert not outputs["faces"]["passed"]
    assert "a matched box moved: min_box_iou" in outputs["faces"]["reasons"][0]
    assert "faces decides, and what the application sees changed: regressors, classificators stay within the " \
           "limits the scenario sets on them" in " ".join(outputs["faces"]["notes"])
    assert f"FAIL {BOARD}: faces 2/2: a matched box moved" in out


def test_the_crnn_reads_differently_in_fp16_and_the_labels_show_the_cer(tmp_path, capsys, emulated_boards):
    emulated_boards.add(BOARD)
    code, outputs, out = run(tmp_path, "normal", shipped("crnn_text.yaml", "normal"), capsys)
    assert code == 0 and outputs["text"]["decoded"]["label"] == "text 40/40 exact, CER 0.0%"

    code, outputs, out = run(tmp_path, "low", shipped("crnn_text.yaml", "low"), capsys)
    text = outputs["text"]
    metrics = text["metrics"]
    assert code == 1 and not text["passed"] and outputs["logits"]["passed"]
    assert 0 < metrics["cer"] < 0.2 and metrics["exact"] < 40
    label = f"text {metrics['exact']}/40 exact, CER {metrics['cer']:.1%}"
    assert text["decoded"]["label"] == label and label in out
    differing = [s for s in text["decoded"]["samples"] if s["distance"]]
    assert len(differing) == 40 - metrics["exact"]
    assert f"on x86, {differing[0]['target']!r} on {BOARD}" in " ".join(text["reasons"])
    # report.html lists the lines read differently, both sides' text side by side.
    assert f"<code>{differing[0]['reference']}</code></td><td><code>{differing[0]['target']}</code>" in run.html
    assert "FP16 / precision setting" in out

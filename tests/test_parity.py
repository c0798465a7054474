"""Preprocessing parity: the board preprocesses the raw images itself; drift is caught apart from inference."""

import json

import pytest

from harness.cli import main

from .conftest import scenario_text

pytestmark = pytest.mark.emulated

INVENTORY = "boards:\n  x86: {kind: local}\n  par-a76: {kind: emulated, cpu: cortex-a76}\n"


def run(tmp_path, write_file, label, parity):
    text = scenario_text(["x86", "par-a76"]).replace("interpolation: area", "interpolation: linear")
    scenario = write_file(f"{label}.yaml", text + f"preprocess_parity: {parity}\n")
    inventory = write_file("inventory.yaml", INVENTORY)
    code = main(["--inventory", str(inventory), "run", str(scenario), "--reports", str(tmp_path / label)])
    (run_dir,) = list((tmp_path / label).iterdir())
    return code, json.loads((run_dir / "summary.json").read_text())


def test_same_preprocessing_on_the_board_matches(tmp_path, write_file, emulated_boards):
    emulated_boards.add("par-a76")
    code, summary = run(tmp_path, write_file, "same", "{}")
    assert code == 0
    parity = summary["preprocess_parity"]
    assert parity["par-a76"]["passed"] and parity["par-a76"]["backend"].startswith("MNN.cv")  # no OpenCV there
    assert parity["x86"]["passed"] and parity["x86"]["backend"].startswith("opencv")
    assert parity["par-a76"]["metrics"]["max_abs"] < 0.05


def test_a_bgr_rgb_swap_on_the_board_is_named(tmp_path, write_file, emulated_boards):
    emulated_boards.add("par-a76")
    code, summary = run(tmp_path, write_file, "swap", "{board: {color: bgr}}")
    assert code == 1
    parity = summary["preprocess_parity"]["par-a76"]
    assert not parity["passed"] and "swapped" in parity["hint"]
    assert ("preprocessing", "par-a76") in {(f["cause"], f["board"]) for f in summary["findings"]}
    # Inference itself was compared on the host's tensors and still matches: the drift is kept apart.
    assert summary["comparisons"]["par-a76"]["passed"]


def test_a_different_interpolation_on_the_board_is_named(tmp_path, write_file, emulated_boards):
    emulated_boards.add("par-a76")
    code, summary = run(tmp_path, write_file, "nearest", "{board: {interpolation: nearest}}")
    assert code == 1
    parity = summary["preprocess_parity"]["par-a76"]
    assert not parity["passed"] and "interpolation" in parity["hint"]

"""A board's NaN and Inf are its answer: counted, located, judged FAIL with the cause named, never "did not run".

tiny_segnet's overflow_layer 1 scales conv1's output past FP16's 65,504 and
conv2's weights back: the same function in float32, an overflow when the
Cortex-A76 computes in FP16 (precision low). Real aarch64 MNN under qemu.
"""

import json
import os

import numpy as np
import pytest

from harness.analysis.nonfinite import find_nonfinite
from harness.analysis.outcome import summary_text, verdicts
from harness.cli import main
from harness.record.history import verdict_rows
from harness.views.matrix import cell

from .conftest import scenario_text

A76 = f"nf{os.getpid()}-a76"
INVENTORY = f"boards:\n  x86: {{kind: local}}\n  {A76}: {{kind: emulated, cpu: cortex-a76}}\n"


def test_nonfinite_values_are_counted_per_sample_and_located_with_the_reference_there():
    reference = np.full((2, 1, 3, 4), 2.0, np.float32)
    reference[1, 0, 2, 3] = 7.1e4
    target = reference.copy()
    target[1, 0, 2, 3] = np.inf
    target[1, 0, 0, 1] = np.nan
    found = find_nonfinite(target, reference, ["astronaut", "coffee"])
    assert (found.nan, found.inf, found.size) == (1, 1, 24)
    assert found.samples == [{"sample": 1, "name": "coffee", "nan": 1, "inf": 1}]
    assert [item["index"] for item in found.first] == [[0, 0, 1], [0, 2, 3]]
    assert found.first[1] == {"sample": 1, "index": [0, 2, 3], "value": "inf", "reference": 7.1e4}
    assert found.reference_max == pytest.approx(7.1e4) and found.reference_nonfinite == 0
    assert found.reason("x86") == ("1 NaN and 1 Inf values of 24 (all in coffee; at [0, 0, 1], [0, 2, 3]); "
                                   "x86 has |x| up to 7.1e+04 there")
    # A NaN the reference holds too is said so; a NaN only the reference holds is counted on its side.
    both = find_nonfinite(target, np.where(np.isfinite(target), reference, np.nan), ["a", "b"])
    assert both.reference_nonfinite == 2 and both.reference_max is None and "at all of them too" in both.reason("x86")
    only = find_nonfinite(reference, target)
    assert only.count == 0 and only.reference_only == 2
    assert find_nonfinite(reference, reference) is None


@pytest.mark.emulated
def test_an_fp16_overflow_comes_back_counted_located_and_named_and_normal_passes(tmp_path, write_file,
                                                                                 emulated_boards):
    emulated_boards.add(A76)
    inventory = write_file("inventory.yaml", INVENTORY)
    text = scenario_text(["x86", A76], precision="low", images=("skimage:astronaut", "skimage:coffee")).replace(
        "seed: 0}", "seed: 0, overflow_layer: 1}")
    text += "matrix:\n  precision: [normal, low]\n"
    reports = tmp_path / "r"
    code = main(["--inventory", str(inventory), "run", str(write_file("overflow.yaml", text)),
                 "--reports", str(reports)])
    assert code == 1
    (matrix_dir,) = [p for p in reports.iterdir() if p.is_dir()]
    records = {}
    for setting in ("normal-t1-session-copy-default", "low-t1-session-copy-default"):
        records[setting.split("-")[0]] = json.loads((matrix_dir / setting / "summary.json").read_text())
    normal, low = records["normal"], records["low"]
    # At normal the A76 computes in float32: the model's 1e5 scale is no problem, and the board passes.
    assert normal["exit_code"] == 0 and normal["comparisons"][A76]["passed"]
    # At low the board ran and its outputs came back: it is a FAIL with numbers, not an error.
    assert low["boards"][A76]["status"] == "ok" and low["boards"][A76]["error"] is None
    logits = low["comparisons"][A76]["outputs"]["logits"]
    metrics, nonfinite = logits["metrics"], logits["nonfinite"]
    counted = metrics["nan_count"] + metrics["inf_count"]
    assert counted > 0 and counted == nonfinite["nan"] + nonfinite["inf"]
    assert [s["name"] for s in nonfinite["samples"]] == ["astronaut", "coffee"]
    assert sum(s["nan"] + s["inf"] for s in nonfinite["samples"]) == counted
    assert len(nonfinite["first"][0]["index"]) == 4 and nonfinite["reference_max"] > 0
    assert f"values of {nonfinite['size']} (astronaut: " in logits["reasons"][0]
    (overflow,) = [f for f in low["findings"] if f["board"] == A76]
    assert overflow["cause"] == "fp16-overflow" and "FP16" in overflow["message"] and "65,504" in overflow["message"]
    assert "harness layers" in overflow["message"]
    # Every view says FAIL with the count: the last line, the matrix cell, JUnit and the history.
    label, line = summary_text(low)
    assert label == "FAIL" and "did not run" not in line and f"{A76}: logits {logits['reasons'][0]}" in line
    shown = cell(low, A76).plain
    assert shown.startswith("FAIL platform") and ("NaN" in shown or "Inf" in shown) and str(counted) in shown
    junit = (matrix_dir / "low-t1-session-copy-default" / "junit.xml").read_text()
    assert "<error" not in junit and 'type="tolerance"' in junit and "NaN" in junit
    assert [row[2] for row in verdict_rows(low) if row[0] == A76] == ["fail"]
    assert [v.status for v in verdicts(low) if v.board == A76] == ["fail"]
    # The picture: the label maps with the NaN/Inf positions marked.
    page = (matrix_dir / "low-t1-session-copy-default" / "report.html").read_text()
    assert "NaN/Inf on the board" in page and f"{A76} labels" in page and "NaN/Inf</figcaption>" in page

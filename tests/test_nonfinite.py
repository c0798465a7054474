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
from harness.analysis.opdiff import DumpError, parse_plain, traced_differs
from harness.cli import main
from harness.record.history import verdict_rows
from harness.record.outcome import summary_text, verdicts
from harness.record.run_folder import read_record
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
    record = read_record(matrix_dir / "low-t1-session-copy-default")
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
    label, line = summary_text(record)
    assert label == "FAIL" and "did not run" not in line and f"{A76}: logits {logits['reasons'][0]}" in line
    shown = cell(record, A76).plain
    assert shown.startswith("FAIL platform") and ("NaN" in shown or "Inf" in shown) and str(counted) in shown
    junit = (matrix_dir / "low-t1-session-copy-default" / "junit.xml").read_text()
    assert "<error" not in junit and 'type="tolerance"' in junit and "NaN" in junit
    assert [row[2] for row in verdict_rows(record) if row[0] == A76] == ["fail"]
    assert [v.status for v in verdicts(record) if v.board == A76] == ["fail"]
    # The picture: the label maps with the NaN/Inf positions marked.
    page = (matrix_dir / "low-t1-session-copy-default" / "report.html").read_text()
    assert "NaN/Inf on the board" in page and f"{A76} labels" in page and "NaN/Inf</figcaption>" in page


@pytest.mark.emulated
def test_layers_replays_the_sample_that_overflows_and_names_the_op(tmp_path, write_file, emulated_boards):
    """Two samples through conv1 scaled by 1e3: zeros, which stay within FP16 everywhere (conv1 near 4e2), and 16x
    normal noise, which overflows at conv1 (9.6e4 on x86). The divergence starts at the first ops on both; the
    search must replay the one that makes Inf, and find the op there."""
    emulated_boards.add(A76)
    x = np.zeros((2, 1, 3, 64, 64), np.float32)
    x[1] = 16 * np.random.default_rng(0).normal(size=(1, 3, 64, 64))
    np.savez(tmp_path / "two.npz", pixel_values=x)
    text = scenario_text(["x86"], precision="low").replace("seed: 0}", "seed: 0, overflow_layer: 1, "
                                                           "overflow_gain: 1000}")
    head, tail = text.split("inputs:")[0], text.split("run:")[1]
    scenario = write_file("two.yaml", head + "inputs:\n  pixel_values: {npz: two.npz}\nrun:" + tail)
    reports = tmp_path / "r"
    code = main(["--inventory", str(write_file("inventory.yaml", INVENTORY)), "layers", str(scenario),
                 "--board", A76, "--reports", str(reports)])
    assert code == 1
    (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
    data = json.loads((run_dir / "layers.json").read_text())
    (board,) = data["boards"]
    assert board["error"] is None and board["sample"] == 1
    assert board["sample_reason"] == "the only traced sample whose ops make NaN/Inf"
    assert board["sample_nonfinite"] == [None, "conv1 (Convolution)"] and board["sample_firsts"][0] != "conv1 (Convolution)"
    first = board["rows"][board["first_nonfinite"]]
    assert first["name"] == "conv1" and first["nonfinite"] > 0 and first["reference_nonfinite"] == 0
    # The traced runs were checked against plain runs of the same samples: they agree, no note says otherwise.
    assert not [note for note in board["notes"] if "plain run" in note]


def test_a_traced_run_that_is_not_a_plain_run_is_said_so_and_garbage_is_refused():
    """The check the layer search makes on every traced sample (the emulated test above passes it for real)."""
    same = {"logits": {"traced_nonfinite": 0.0, "plain_nonfinite": 0.0, "finiteness_differs": 0.0, "max_abs": 0.0,
                       "scale": 5.0}}
    assert traced_differs(same, 1e-6) is None
    noisy = {"logits": dict(same["logits"], max_abs=5e-3)}
    assert traced_differs(noisy, 1e-4) == "logits differs by 1.0e-03 of its largest value (noise is at most 1.0e-04)"
    assert traced_differs(noisy, 3.9e-3) is None
    overflowing = {"Identity": dict(same["logits"], plain_nonfinite=9.0, finiteness_differs=9.0)}
    assert traced_differs(overflowing, 1.0) == "Identity holds 9 NaN/Inf in a plain run and 0 in the traced one"
    assert parse_plain({"plain": [{"sample": 1, "outputs": same}]}) == {1: same}
    assert parse_plain({"traces": []}) == {}  # an older agent: nothing to check
    for garbage in ({"plain": "x"}, {"plain": [{"sample": 0, "outputs": {"y": {"max_abs": "big"}}}]},
                    {"plain": [{"outputs": {}}]}):
        with pytest.raises(DumpError):
            parse_plain(garbage)


def test_the_likely_cause_of_nan_and_inf_fits_the_setting_and_the_reference():
    from harness.analysis.compare import judge
    from harness.analysis.diagnose import diagnose
    from harness.config.scenario import OutputSpec

    from .records import against_x86, board_run

    reference = np.full((1, 4), 7.1e4, np.float32)
    overflowed = reference.copy()
    overflowed[0, 1] = np.inf

    def causes(target, ref, precision, features):
        comparison = against_x86(judge("y", target, ref, OutputSpec(), reference_name="x86"))
        record = board_run(comparison, precision=precision, board_facts={"cpu_features": features})
        return [(f.cause, f.message) for f in diagnose(record)]

    ((cause, message),) = causes(overflowed, reference, "low", ["asimdhp", "fphp"])
    assert cause == "fp16-overflow" and "y: 1 Inf where x86 has up to 7.1e+04, beyond FP16's largest value" in message
    ((cause, message),) = causes(overflowed, reference, "normal", ["asimdhp", "fphp"])
    assert cause == "non-finite" and "precision: normal (FP32)" in message and "harness layers" in message
    nan_too = np.where(np.isfinite(overflowed), reference, np.nan)
    ((cause, message),) = causes(overflowed, nan_too, "low", ["asimdhp", "fphp"])
    assert cause == "non-finite" and "the model makes them there too" in message
    ((cause, message),) = causes(reference, nan_too, "low", ["asimdhp", "fphp"])
    assert cause == "non-finite" and "x86 holds NaN/Inf where arm has numbers (y: 1 values)" in message

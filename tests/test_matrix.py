"""The run matrix: which settings diverge on which boards, each setting an ordinary run."""

import json

import pytest
from rich.console import Console

from harness.config.inventory import load_inventory
from harness.config.scenario import OutputSpec, load_scenario
from harness.plans.matrix import expand, run_matrix
from harness.plans.run import Progress
from harness.record.run import BoardRecord, Comparison, LimitFailure, OutputComparison, SourceRecord
from harness.views.matrix import matrix_view

from .conftest import scenario_text
from .records import board_run

MATRIX = """matrix:
  precision: [normal, low]
  converter:
    fp32: [--useGeluApproximation, "0"]
    w4: [--weightQuantBits, "4"]
"""


def test_expand_makes_every_combination(write_file):
    scenario = load_scenario(write_file("m.yaml", scenario_text(["x86"]) + MATRIX))
    settings = expand(scenario)
    assert [s.label for s in settings] == ["normal-t1-session-copy-fp32", "normal-t1-session-copy-w4",
                                           "low-t1-session-copy-fp32", "low-t1-session-copy-w4"]
    low_w4 = settings[3].scenario
    assert low_w4.run.precision == "low" and low_w4.model.converter_args == ("--weightQuantBits", "4")
    assert low_w4.matrix == {}


def test_a_backend_axis_names_its_settings(write_file):
    scenario = load_scenario(write_file("b.yaml", scenario_text(["x86"]) + "matrix: {backend: [cpu, opencl]}\n"))
    settings = expand(scenario)
    assert [s.label for s in settings] == ["normal-t1-session-copy-cpu-default", "normal-t1-session-copy-opencl-default"]
    assert [s.scenario.run.backend for s in settings] == ["cpu", "opencl"]


@pytest.mark.emulated
def test_matrix_shows_fp16_on_the_board_and_quantization_in_the_conversion(tmp_path, write_file,
                                                                           emulated_boards):
    emulated_boards.add("mx-a76")
    inventory = load_inventory(write_file("inventory.yaml", "boards:\n  x86: {kind: local}\n"
                                          "  mx-a76: {kind: emulated, cpu: cortex-a76}\n"))
    scenario = load_scenario(write_file("m.yaml", scenario_text(["x86", "mx-a76"]) + MATRIX))
    report = run_matrix(scenario, inventory, tmp_path, lambda setting: Progress())
    by_label = {setting.label: run for setting, run in report.runs}
    clean = by_label["normal-t1-session-copy-fp32"]
    assert clean.exit_code == 0
    fp16 = by_label["low-t1-session-copy-fp32"]
    assert not fp16.comparisons["mx-a76"].passed and fp16.conversion.passed
    assert fp16.attribution["mx-a76"] == "platform"
    assert "precision" in {f.cause for f in fp16.findings}
    quantized = by_label["normal-t1-session-copy-w4"]
    assert not quantized.conversion.passed  # 4-bit weights: MNN on x86 already differs from its source
    assert "converter" in {f.cause for f in quantized.findings}
    assert report.exit_code == 1
    saved = json.loads((report.run_dir / "matrix.json").read_text())
    assert [s["label"] for s in saved["settings"]] == [s.label for s, _ in report.runs]
    for setting, _ in report.runs:
        assert (report.run_dir / setting.label / "inputs.npz").is_file()
    console = Console(width=100, record=True)
    console.print(matrix_view(report.scenario.name, report.record().records))
    text = console.export_text()
    assert "low-t1-session-copy-fp32" in text and "x86 vs onnxruntime" in text
    # Every failing cell names where the difference comes from and the limit it broke.
    w4_row = next(line for line in text.splitlines() if line.startswith("normal-t1-session-copy-w4"))
    assert "FAIL conversion" in w4_row and "…" not in text
    fp16_row = next(line for line in text.splitlines() if line.startswith("low-t1-session-copy-fp32"))
    # The run alone says "platform"; the matrix sees the A76 pass at normal with the same converter variant.
    assert "FAIL precision" in fp16_row


def test_harness_run_with_a_matrix_writes_every_setting_and_one_table(tmp_path, write_file, capsys):
    from harness.cli import main

    scenario = write_file("m.yaml", scenario_text(["x86"]) + "matrix:\n  api: [session, module]\n  threads: [1, 2]\n")
    code = main(["run", str(scenario), "--reports", str(tmp_path / "reports")])
    out = capsys.readouterr().out
    assert code == 0, out
    (matrix_dir,) = list((tmp_path / "reports").iterdir())
    saved = json.loads((matrix_dir / "matrix.json").read_text())
    labels = [s["label"] for s in saved["settings"]]
    assert labels == ["normal-t1-session-copy-default", "normal-t1-module-copy-default",
                      "normal-t2-session-copy-default", "normal-t2-module-copy-default"]
    for label in labels:
        assert (matrix_dir / label / "summary.json").is_file() and (matrix_dir / label / "junit.xml").is_file()
    assert "Which settings diverge" in out and "PASS  all 4 setting(s)" in out


def record(boards, flipped, conversion_limit=None):
    """A setting's record with 20 boards, some of whose labels flipped."""
    def comparison(reference, failures):
        agreement = 0.99 if failures and failures[0].metric == "argmax_agreement" else 1.0
        logits = OutputComparison("logits", not failures, {"argmax_agreement": agreement, "max_abs": 1e-5},
                                  failures)
        return Comparison(reference, {"logits": logits})

    flip = LimitFailure("argmax_agreement", 0.99, 0.999, "<")
    run = board_run(comparison("x86", []), specs={"logits": OutputSpec(kind="class_logits")})
    run.boards = {name: BoardRecord("ssh", "ok") for name in ["x86", *boards]}
    run.comparisons = {board: comparison("x86", [flip] if board in flipped else []) for board in boards}
    run.conversion = comparison("onnxruntime", [conversion_limit] if conversion_limit else [])
    run.source = SourceRecord("ok", runtime="onnxruntime 1.22")
    run.attribution = {board: "platform" if board in flipped else "none" for board in boards}
    run.exit_code = 1 if flipped or conversion_limit is not None else 0
    return run


def test_twenty_boards_by_six_settings_fit_in_100_columns_failures_first():
    from harness.views.matrix import matrix_summary_line, matrix_view

    labels = ["normal-t1-session-copy-fp32", "low-t1-session-copy-fp32", "normal-t4-session-copy-fp32",
              "normal-t1-module-copy-fp32", "normal-t1-session-copy-fp16", "normal-t1-session-copy-w8"]
    boards = [f"rk3588-{index:02d}" for index in range(20)]
    records = []
    for index, label in enumerate(labels):
        flipped = {board for number, board in enumerate(boards) if index == 1 and number % 7 == 3}
        # The fp16 converter variant fails its tolerance although its labels all agree.
        limit = LimitFailure("max_abs", 0.00993, 0.001, ">") if label.endswith("fp16") else None
        records.append((label, record(boards, flipped, limit)))
    for width in (80, 100, 160):
        console = Console(width=width, record=True)
        console.print(matrix_view("s", records))
        console.print(matrix_summary_line(records, 1))
        text = console.export_text()
        lines = text.splitlines()
        assert max(len(line.rstrip()) for line in lines) <= width and "…" not in text
    rows = [line.split()[0] for line in lines if line.strip().startswith("rk3588-")]
    assert rows[:3] == ["rk3588-03", "rk3588-10", "rk3588-17"]  # the boards that diverge come first
    legend = [line for line in lines if line.startswith("S") and " = " in line]
    assert legend[:2] == ["S1 = low-t1-session-copy-fp32", "S2 = normal-t1-session-copy-fp16"]  # failing first
    conversion_row = next(line for line in lines if line.startswith("x86 vs onnxruntime"))
    # The failed conversion shows as failed, with the limit it broke, never as "src 100.00%".
    assert "FAIL conversion" in conversion_row and "100.000%" not in conversion_row.split("FAIL")[0][-12:]
    assert "max_abs 0.00993 > 0.001" in text
    assert "FAIL platform" in text and "argmax_agreement 99.000% < 99.900%" in text
    assert lines[-1].startswith("FAIL  2 of 6 setting(s) diverge") or "FAIL  2 of 6" in text

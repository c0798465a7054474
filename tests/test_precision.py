"""precision: low computes in FP16 on an ARMv8.2 CPU with FP16 arithmetic, and nowhere else.

Real aarch64 MNN under qemu: a Cortex-A76 has asimdhp, a Cortex-A53 does not.
"""

import json

import pytest

from harness.cli import main

from .conftest import scenario_text

pytestmark = pytest.mark.emulated

INVENTORY = """
boards:
  x86: {kind: local}
  prec-a76: {kind: emulated, cpu: cortex-a76}
  prec-a53: {kind: emulated, cpu: cortex-a53}
"""


def max_abs_errors(tmp_path, write_file, precision):
    inventory = write_file("inventory.yaml", INVENTORY)
    scenario = write_file(f"{precision}.yaml", scenario_text(["x86", "prec-a76", "prec-a53"], precision=precision))
    reports = tmp_path / precision
    code = main(["--inventory", str(inventory), "run", str(scenario), "--reports", str(reports)])
    (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
    summary = json.loads((run_dir / "summary.json").read_text())
    for board in ("prec-a76", "prec-a53"):
        assert summary["boards"][board]["status"] == "ok", summary["boards"][board]["error"]
    errors = {board: summary["comparisons"][board]["outputs"]["logits"]["metrics"]["max_abs"]
              for board in ("prec-a76", "prec-a53")}
    if precision == "low":
        # The report names the cause, on the board it concerns, and puts it on the platform side.
        assert [(f["cause"], f["board"]) for f in summary["findings"]] == [("precision", "prec-a76")]
        assert summary["attribution"]["prec-a76"] == "platform"
        assert summary["conversion"]["passed"]
    return code, errors


def test_low_precision_shows_on_fp16_cpu_only(tmp_path, write_file, emulated_boards):
    emulated_boards.update({"prec-a76", "prec-a53"})
    normal_code, normal = max_abs_errors(tmp_path, write_file, "normal")
    low_code, low = max_abs_errors(tmp_path, write_file, "low")
    assert normal_code == 0
    # FP16 arithmetic on the A76: an error far above fp32 noise, and the run fails its tolerance.
    assert low["prec-a76"] > 20 * normal["prec-a76"]
    assert low["prec-a76"] > 1e-3 and low_code == 1
    # No FP16 on the A53: MNN falls back to fp32, the error stays at fp32 noise.
    assert low["prec-a53"] < 5 * max(normal["prec-a53"], 1e-6)
    assert low["prec-a53"] < 1e-3


def test_reading_the_session_buffer_is_garbage_on_fp16_arm_only(tmp_path, write_file, emulated_boards):
    """io: host (getNumpyData on the session tensor) reads an FP16 buffer as float32 on the A76."""
    emulated_boards.add("prec-a76")
    inventory = write_file("inventory.yaml", INVENTORY)
    cosines = {}
    for io in ("copy", "host"):
        scenario = write_file(f"{io}.yaml", scenario_text(["x86", "prec-a76"], precision="low",
                                                          extra_run=f", io: {io}"))
        reports = tmp_path / io
        main(["--inventory", str(inventory), "run", str(scenario), "--reports", str(reports)])
        (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["settings"]["io"] == io
        cosines[io] = summary["comparisons"]["prec-a76"]["outputs"]["logits"]["metrics"]["cosine"]
        causes = {f["cause"] for f in summary["findings"]}
        assert ("tensor-access" in causes) == (io == "host")
    assert cosines["copy"] > 0.999   # FP16 arithmetic, read back correctly: close
    assert cosines["host"] < 0.5     # the same numbers read the wrong way: unrelated to the truth

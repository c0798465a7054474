"""The MNN version is blamed only where it can matter, and a matrix's last line names every failing board.

Three emulated Cortex-A76 boards, the same CPU, three MNN versions: 3.6.1 (the
host's), 3.4.1 and 3.0.0. At precision low on the tiny net, 3.4.1 gives
bit-identical outputs to 3.6.1 (its version is not what fails it), while
3.0.0's FP16 kernels give other numbers (max abs 0.056 from 3.6.1's: the
version does change them). Real aarch64 MNN of each version under qemu.
"""

import json
import os

import pytest

from harness.cli import main
from harness.record.outcome import failing_boards_text, severity, verdicts
from harness.record.run_folder import read_record

from .conftest import scenario_text

pytestmark = pytest.mark.emulated

PREFIX = f"vr{os.getpid()}"
NEW, OLD, OLDEST = f"{PREFIX}-a76", f"{PREFIX}-a76-341", f"{PREFIX}-a76-300"
INVENTORY = (f"boards:\n  x86: {{kind: local}}\n  {NEW}: {{kind: emulated, cpu: cortex-a76}}\n"
             f"  {OLD}: {{kind: emulated, cpu: cortex-a76, mnn_version: '3.4.1'}}\n"
             f"  {OLDEST}: {{kind: emulated, cpu: cortex-a76, mnn_version: '3.0.0'}}\n")


def test_a_version_is_blamed_only_when_the_same_cpu_with_the_hosts_version_gives_other_outputs(
        tmp_path, write_file, emulated_boards, capsys):
    emulated_boards.update({NEW, OLD, OLDEST})
    text = scenario_text(["x86", NEW, OLD, OLDEST], precision="low") + "matrix:\n  precision: [normal, low]\n"
    reports = tmp_path / "r"
    code = main(["--inventory", str(write_file("inventory.yaml", INVENTORY)), "run",
                 str(write_file("versions.yaml", text)), "--reports", str(reports)])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 1
    (matrix_dir,) = [p for p in reports.iterdir() if p.is_dir()]
    low = json.loads((matrix_dir / "low-t1-session-copy-default" / "summary.json").read_text())
    assert {name: low["boards"][name]["facts"]["mnn_version"] for name in (NEW, OLD, OLDEST)} == {
        NEW: "3.6.1", OLD: "3.4.1", OLDEST: "3.0.0"}
    assert not any(low["comparisons"][name]["passed"] for name in (NEW, OLD, OLDEST))  # FP16 fails all three
    checks = low["mnn_versions"]
    assert set(checks) == {OLD, OLDEST}
    # 3.4.1: the same outputs as 3.6.1 on the same CPU. Not blamed, and the run says why.
    assert checks[OLD]["peer"] == NEW and checks[OLD]["identical"] and not checks[OLD]["blamed"]
    assert checks[OLD]["evidence"] == f"{NEW} runs 3.6.1 on the same CPU and gives identical outputs"
    assert not [f for f in low["findings"] if f["board"] == OLD and f["cause"] == "mnn-version"]
    assert main(["report", str(matrix_dir / "low-t1-session-copy-default")]) == 1
    shown = " ".join(capsys.readouterr().out.split())
    assert (f"{OLD}: MNN 3.4.1 on the board, 3.6.1 on the host: not what makes a difference here: {NEW} runs 3.6.1 "
            "on the same CPU and gives identical outputs") in shown
    # 3.0.0: other outputs than 3.6.1 on the same CPU. Blamed, with the numbers.
    assert checks[OLDEST]["peer"] == NEW and not checks[OLDEST]["agree"] and checks[OLDEST]["blamed"]
    (blame,) = [f for f in low["findings"] if f["board"] == OLDEST and f["cause"] == "mnn-version"]
    assert f"{NEW} runs 3.6.1 on the same CPU and gives other outputs: logits max_abs" in blame["message"]
    # The last line of the matrix names every failing board of the setting, or their count and the worst.
    record = read_record(matrix_dir / "low-t1-session-copy-default")
    failing = [v for v in verdicts(record) if not v.passed]
    worst = max(failing, key=lambda v: v.metrics["max_abs"]).board  # every one broke max_abs first
    assert sorted(failing, key=lambda v: severity(record, v, "max_abs"))[0].board == worst
    assert f"low-t1-session-copy-default (3 fail, the worst {worst}: logits " in out
    named = failing_boards_text(record, at_most=3)
    assert all(f"{board}: logits" in named for board in (NEW, OLD, OLDEST)) and named.startswith(f"{worst}: ")

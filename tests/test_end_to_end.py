"""The whole path with real parts: scenario -> x86 host and an emulated aarch64 board over a real sshd."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.analysis.compare import metrics
from harness.config.scenario import OutputSpec

from .conftest import scenario_text

pytestmark = pytest.mark.emulated

INVENTORY = """
boards:
  x86: {kind: local}
  e2e-a76: {kind: emulated, cpu: cortex-a76}
  e2e-down: {kind: ssh, host: 127.0.0.1, port: 9, connect_timeout: 3}
"""


def only_run(reports):
    runs = [p for p in reports.iterdir() if p.is_dir()]
    assert len(runs) == 1
    return runs[0]


def test_run_on_emulated_aarch64_board(tmp_path, write_file, emulated_boards, capsys):
    emulated_boards.add("e2e-a76")
    from harness.emulation.board import EmulatedBoardSpec, ensure_running
    endpoint = ensure_running(EmulatedBoardSpec(name="e2e-a76", cpu="cortex-a76"), log=lambda m: None)
    shutil.rmtree(Path(endpoint.workdir) / "store", ignore_errors=True)  # a cold board: nothing cached yet
    inventory = write_file("inventory.yaml", INVENTORY)
    scenario = write_file("s.yaml", scenario_text(["x86", "e2e-a76"], images=("skimage:astronaut", "skimage:coffee")))
    reports = tmp_path / "reports"
    code = main(["--inventory", str(inventory), "run", str(scenario), "--reports", str(reports),
                 "--keep-outputs", "50"])
    out = capsys.readouterr().out
    run_dir = only_run(reports)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert code == 0, out

    board = summary["boards"]["e2e-a76"]
    assert board["status"] == "ok"
    assert board["facts"]["machine"] == "aarch64"          # the agent ran on aarch64 ...
    assert board["facts"]["mnn_version"] == "3.6.1"        # ... with aarch64 MNN
    assert "asimdhp" in board["facts"]["cpu_features"]     # a Cortex-A76 has FP16 arithmetic
    assert "fp16:1" in board["facts"]["mnn_banner"].replace(" ", "")
    assert summary["boards"]["x86"]["facts"]["machine"] == "x86_64"

    # The numbers in the report are the numbers of the real outputs.
    arm = np.load(run_dir / "targets" / "e2e-a76" / "outputs.npz")["logits"]
    x86 = np.load(run_dir / "targets" / "x86" / "outputs.npz")["logits"]
    assert arm.shape == (2, 1, 8, 16, 16)
    reported = summary["comparisons"]["e2e-a76"]["outputs"]["logits"]["metrics"]
    recomputed = metrics(arm, x86, OutputSpec(kind="class_logits", class_axis=1))
    for name, value in recomputed.items():
        if reported[name] is None:  # JSON has no infinity: null stands for it
            assert value in (float("inf"), float("-inf")), name
        else:
            assert reported[name] == pytest.approx(value, rel=1e-12, abs=0), name
    assert 0 < reported["max_abs"] < 1e-3  # two machines, two sets of kernels, close results

    # The terminal report shows the board, its facts and the verdict.
    for words in ("e2e-a76", "aarch64", "3.6.1", "PASS", "labels", "x86 vs onnxruntime"):
        assert words in out

    # A second run ships no model bytes: the board keeps them by hash.
    code = main(["--inventory", str(inventory), "run", str(scenario), "--reports", str(tmp_path / "again")])
    assert code == 0
    again = json.loads((only_run(tmp_path / "again") / "summary.json").read_text())
    # Raw tensors stay only on request: the second run, without --keep-outputs, keeps none.
    assert sorted(summary["raw_outputs"]) == ["targets/e2e-a76/outputs.npz", "targets/onnxruntime/outputs.npz",
                                              "targets/x86/outputs.npz"]
    assert again["raw_outputs"] == [] and not list(only_run(tmp_path / "again").glob("targets/*/outputs.npz"))
    model_bytes = Path(summary["model"]["mnn_path"]).stat().st_size
    assert board["bytes_uploaded"] - again["boards"]["e2e-a76"]["bytes_uploaded"] >= model_bytes


def test_unreachable_board_is_a_result_not_an_abort(tmp_path, write_file, capsys):
    inventory = write_file("inventory.yaml", INVENTORY)
    scenario = write_file("s.yaml", scenario_text(["x86", "e2e-down"]))
    reports = tmp_path / "reports"
    code = main(["--inventory", str(inventory), "run", str(scenario), "--reports", str(reports)])
    out = capsys.readouterr().out
    assert code == 3
    summary = json.loads((only_run(reports) / "summary.json").read_text())
    assert summary["boards"]["e2e-down"]["status"] == "unusable"
    assert "127.0.0.1" in summary["boards"]["e2e-down"]["error"]
    assert "Connection refused" in summary["boards"]["e2e-down"]["error"]  # the socket's words, not paramiko's
    assert summary["boards"]["x86"]["status"] == "ok"
    assert "could not be used" in out

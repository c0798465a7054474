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
  prec-max: {kind: emulated, cpu: max}
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


def test_low_precision_changes_sigmoids_on_a_cpu_without_fp16_and_the_matrix_says_precision(tmp_path, write_file,
                                                                                          emulated_boards, capsys):
    """Silero VAD (LSTM: sigmoids) streamed on the A53, which has no FP16: at normal it matches x86, at low MNN's
    approximate Sigmoid (MNNSigmoidLowp, NEON's reciprocal estimate) moves the state step after step. The run
    names the precision setting, never "platform numerics", and the matrix attributes the failing setting to
    the precision, since the same board passes at normal."""
    from .test_silero import silero_text

    emulated_boards.add("prec-a53")
    inventory = write_file("inventory.yaml", INVENTORY)
    text = silero_text(frames=12).replace("vad-a76", "prec-a53") + "matrix:\n  precision: [normal, low]\n"
    scenario = write_file("vad.yaml", text)
    reports = tmp_path / "matrix"
    code = main(["--inventory", str(inventory), "run", str(scenario), "--reports", str(reports)])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 1, out
    (matrix_dir,) = list(reports.iterdir())
    normal = json.loads((matrix_dir / "normal-t1-session-copy-default" / "summary.json").read_text())
    low = json.loads((matrix_dir / "low-t1-session-copy-default" / "summary.json").read_text())
    assert "asimdhp" not in low["boards"]["prec-a53"]["facts"]["cpu_features"]
    assert normal["comparisons"]["prec-a53"]["passed"] and not low["comparisons"]["prec-a53"]["passed"]
    state = low["comparisons"]["prec-a53"]["outputs"]["stateN"]["metrics"]["max_abs"]
    assert state > 100 * normal["comparisons"]["prec-a53"]["outputs"]["stateN"]["metrics"]["max_abs"]
    causes = [(f["cause"], f["board"]) for f in low["findings"]]
    assert causes == [("precision", "prec-a53")]
    assert "no FP16 arithmetic" in low["findings"][0]["message"] and "MNNSigmoidLowp" in low["findings"][0]["message"]
    assert "FAIL precision" in out and "platform numerics" not in out
    assert "prec-a53: passes at precision normal and fails at low (low-t1-session-copy-default)" in out
    # The table has no room for a stream's steps: the run names the commands that show them (issue 19.7).
    assert "Stream:" not in out
    assert f"`harness report {matrix_dir.name} --details` (all settings)" in out
    assert f"`harness report {matrix_dir.name}/SETTING` (one)" in out
    for argv in (["report", str(matrix_dir), "--details"],
                 ["--inventory", str(inventory), "run", str(scenario), "--reports", str(tmp_path / "again"),
                  "--details"]):
        assert main(argv) == 1
        shown = " ".join(capsys.readouterr().out.split())
        assert shown.count("Stream: 12 steps, stateN -> state on each board") == 2, shown  # one per setting
        assert "prec-a53 stateN: max |err| per step" in shown and "worst at step" in shown
        assert "✗ prec-a53 stateN: max_abs" in shown
    assert main(["report", str(matrix_dir / "low-t1-session-copy-default")]) == 1
    assert "prec-a53 stateN: max |err| per step" in " ".join(capsys.readouterr().out.split())


def test_layers_at_low_on_a_cpu_without_fp16_finds_the_sigmoid(tmp_path, write_file, emulated_boards, capsys):
    """MediaPipe's selfie segmentation (TFLite, hard-swish and LOGISTIC ops) at low on the A53, against x86 at
    low: the first op that introduces error is a sigmoid (MNNSigmoidLowp), mapped back to the TFLite LOGISTIC."""
    from .test_tflite import SELFIE, SELFIE_SCENARIO

    emulated_boards.add("prec-a53")
    inventory = write_file("inventory.yaml", INVENTORY)
    scenario = write_file("selfie.yaml", SELFIE_SCENARIO.format(model=f"tflite: {SELFIE}").replace(
        "targets: [x86]", "targets: [x86, prec-a53]"))
    reports = tmp_path / "layers"
    code = main(["--inventory", str(inventory), "layers", str(scenario), "--board", "prec-a53", "--precision", "low",
                 "--against-precision", "low", "--reports", str(reports)])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 1, out
    (run_dir,) = list(reports.iterdir())
    layers = json.loads((run_dir / "layers.json").read_text())
    (board,) = layers["boards"]
    first = board["rows"][board["first_introduced"]]
    assert first["type"] == "UnaryOp" and first["source"]["types"] == ["LOGISTIC"], first
    assert all(row["verdict"] != "introduced" for row in board["rows"][:board["first_introduced"]])
    assert "prec-a53 at low (FP32)" in out
    assert f"the first #{board['first_introduced']} {first['name']}: at low, MNN computes Sigmoid and SiLU on any " \
        "ARM CPU with approximate kernels" in out


def test_low_bf16_that_mnn_computes_in_fp32_is_called_so(tmp_path, write_file, emulated_boards, capsys):
    """qemu's `max` CPU has bf16, yet the aarch64 wheel computes low_bf16 in FP32 (bit-identical to normal): the
    run, the matrix and the layer search say "asked low_bf16, ran FP32" instead of calling it BF16."""
    emulated_boards.add("prec-max")
    inventory = write_file("inventory.yaml", INVENTORY)
    scenario = write_file("bf16.yaml", scenario_text(["x86", "prec-max"], precision="low_bf16"))
    reports = tmp_path / "run"
    code = main(["--inventory", str(inventory), "run", str(scenario), "--reports", str(reports)])
    out = " ".join(capsys.readouterr().out.split())
    (run_dir,) = list(reports.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    facts = summary["boards"]["prec-max"]["facts"]
    assert "bf16" in facts["cpu_features"]
    assert facts["precision"] == {"asked": "low_bf16", "ran": "FP32",
                                  "evidence": "its outputs are bit-identical to precision normal's"}
    assert code == 1 and summary["attribution"]["prec-max"] == "precision"
    failure = summary["backend_failures"]["prec-max"]
    assert (failure["setting"], failure["asked"], failure["ran"]) == ("precision", "low_bf16", "FP32")
    assert failure["text"].startswith("asked low_bf16, ran FP32")
    assert "x86" not in summary["backend_failures"]  # the reference is the FP32 baseline: a note, not a failure
    assert "FAIL prec-max: asked low_bf16, ran FP32 (precision)" in out
    assert "x86: asked low_bf16, ran FP32" in out and "(the reference: the FP32 baseline)" in out
    assert [f["cause"] for f in summary["findings"]] == ["precision"]

    code = main(["--inventory", str(inventory), "layers", str(scenario), "--board", "prec-max",
                 "--reports", str(tmp_path / "layers")])
    out = " ".join(capsys.readouterr().out.split())
    assert "prec-max at low_bf16 (FP32: asked low_bf16, ran FP32)" in out and "(BF16)" not in out
    (layers_dir,) = list((tmp_path / "layers").iterdir())
    layers = json.loads((layers_dir / "layers.json").read_text())
    assert layers["boards"][0]["tolerance"]["arithmetic"] == "FP32"

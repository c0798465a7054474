"""Ctrl-C, SIGTERM, a frozen board, run_timeout: the run stops promptly and leaves nothing running.

`harness run` is a real subprocess that gets real signals; the board is a
real sshd whose agent (real aarch64 MNN under qemu) is slowed down by many
iterations, so it is surely still running when the signal comes, while the
x86 host has finished. Nothing of the job may be left: no process whose
command line names the board's job dir, no job dir, no lock.
"""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from harness.bench.common import scenario_text
from harness.emulation import board as emulated

from .conftest import (harness, is_session_sshd, needs_root, only_run, processes_naming, run_harness,
                       seconds_until_it_exits_frozen, ssh_board, start_board, summary_of, wait_for, write_inventory)

pytestmark = [pytest.mark.emulated, pytest.mark.faults, needs_root]

NAME = f"fi{os.getpid()}-a76"
SLOW = ", iterations: 2000"
"""x86 does these in a few seconds; the emulated board needs minutes."""


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    endpoint = start_board(NAME)
    directory = tmp_path_factory.mktemp("interrupts")
    inventory = write_inventory(directory / "inventory.yaml", {"arm": ssh_board(endpoint, dead_after=6)})
    slow = directory / "slow.yaml"
    slow.write_text(scenario_text(["x86", "arm"], extra_run=SLOW))
    quick = directory / "quick.yaml"
    quick.write_text(scenario_text(["x86", "arm"]))
    try:
        yield {"endpoint": endpoint, "dir": directory, "inventory": inventory, "slow": slow, "quick": quick,
               "workdir": Path(endpoint.workdir)}
    finally:
        emulated.remove(NAME)


def jobs_marker(rig) -> str:
    return str(rig["workdir"] / "jobs") + "/"


def start_slow_run(rig, reports: Path, log: Path):
    process = harness(["--inventory", str(rig["inventory"]), "run", str(rig["slow"]), "--reports", str(reports)],
                      log)
    # The moment that matters: x86 finished, the board's agent still runs.
    x86_done = wait_for(lambda: list(reports.glob("*/targets/x86/result.json")), timeout=120)
    agent = wait_for(lambda: processes_naming(jobs_marker(rig)), timeout=120)
    assert x86_done and agent and process.poll() is None, log.read_text()
    return process


def assert_board_left_clean(rig) -> None:
    assert wait_for(lambda: not processes_naming(jobs_marker(rig)), timeout=15), \
        f"agent processes left on the board: {processes_naming(jobs_marker(rig))}"
    assert not (rig["workdir"] / "lock").exists()
    assert not list((rig["workdir"] / "jobs").iterdir())


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_run_in_seconds_and_keeps_what_finished(rig, tmp_path, signum, code):
    reports = tmp_path / "reports"
    process = start_slow_run(rig, reports, tmp_path / "out.txt")
    sent = time.monotonic()
    os.kill(process.pid, signum)
    returncode = process.wait(timeout=60)
    stopped_in = time.monotonic() - sent
    out = (tmp_path / "out.txt").read_text()
    assert returncode == code, out
    assert stopped_in < 20, f"took {stopped_in:.1f} s to stop"
    summary = summary_of(reports)
    assert summary["interrupted"] == signal.Signals(signum).name and summary["exit_code"] == code
    assert summary["boards"]["x86"]["status"] == "ok"
    assert summary["boards"]["arm"]["status"] == "interrupted"
    assert "interrupted during run" in summary["boards"]["arm"]["error"]
    run_dir = only_run(reports)
    assert (run_dir / "junit.xml").is_file() and (run_dir / "report.html").is_file()
    assert f"INTERRUPTED ({signal.Signals(signum).name})" in out
    assert_board_left_clean(rig)


def test_sigterm_stops_a_layer_search_with_143_and_leaves_the_board_clean(rig, tmp_path):
    """`harness layers` stopped by SIGTERM (what CI sends) while the board traces every op: the board's agent is
    killed, its job and lock are gone, and the search exits 143 as `harness run` does (it said 130 before: its
    Interrupted carried a fixed code)."""
    scenario = rig["dir"] / "layers-slow.yaml"
    scenario.write_text(scenario_text(["x86", "arm"], size=256, images=(
        "skimage:astronaut", "skimage:coffee", "skimage:chelsea", "skimage:rocket")))
    log = tmp_path / "out.txt"
    process = harness(["--inventory", str(rig["inventory"]), "layers", str(scenario), "--board", "arm",
                       "--reports", str(tmp_path / "reports")], log)
    agent = wait_for(lambda: processes_naming(jobs_marker(rig)), timeout=180, step=0.05)
    assert agent and process.poll() is None, log.read_text()
    sent = time.monotonic()
    os.kill(process.pid, signal.SIGTERM)
    returncode = process.wait(timeout=60)
    out = log.read_text()
    assert returncode == 143, out
    assert time.monotonic() - sent < 20 and "interrupted (SIGTERM)" in " ".join(out.split())
    assert_board_left_clean(rig)


def test_a_second_ctrl_c_quits_at_once(rig, tmp_path):
    process = start_slow_run(rig, tmp_path / "reports", tmp_path / "out.txt")
    os.kill(process.pid, signal.SIGINT)
    time.sleep(0.05)
    sent = time.monotonic()
    os.kill(process.pid, signal.SIGINT)
    assert process.wait(timeout=30) == 130
    assert time.monotonic() - sent < 3
    assert "quitting at once" in (tmp_path / "out.txt").read_text()
    # Its SSH session died with it: the board's watchdog killed the agent.
    assert wait_for(lambda: not processes_naming(jobs_marker(rig)), timeout=40)
    # What it may have left (a lock whose holder and agent are gone) the next run breaks and cleans.
    assert run_harness(["--inventory", str(rig["inventory"]), "run", str(rig["quick"]), "--reports",
                        str(tmp_path / "next"), "--lock-timeout", "30"], tmp_path / "next.txt") == 0
    assert_board_left_clean(rig)


def test_a_lock_is_not_broken_while_its_agent_still_runs(rig, tmp_path):
    """The holder's host process is gone, its agent is not: the board stays locked until the agent ends."""
    workdir = rig["workdir"]
    job_dir = workdir / "jobs" / "ghost-run-000000"
    # An agent of a run whose host died: started over SSH, detached, its job dir in its command line.
    ssh = ["ssh", "-i", rig["endpoint"].key_filename, "-o", f"UserKnownHostsFile={rig['endpoint'].known_hosts}",
           "-o", "BatchMode=yes", "-p", str(rig["endpoint"].port), f"{rig['endpoint'].user}@{rig['endpoint'].host}"]
    subprocess.run(ssh + [f"mkdir -p {job_dir} && (setsid sh -c 'sleep 600; :' {job_dir} </dev/null >/dev/null 2>&1 "
                          f"& echo $! > {job_dir}/agent.pid)"], check=True, timeout=60)
    agent_pid = int(wait_for(lambda: (job_dir / "agent.pid").read_text().strip(), timeout=10))
    dead_pid = _a_dead_pid()
    (workdir / "lock").mkdir()
    (workdir / "lock" / "holder.json").write_text(json.dumps({
        "host": socket.gethostname(), "pid": dead_pid, "run_id": "ghost-run", "since": time.time(),
        "expires": time.time() + 3600, "job": str(job_dir), "agent": {"pid": agent_pid, "pgid": agent_pid}}))
    try:
        code = run_harness(["--inventory", str(rig["inventory"]), "run", str(rig["quick"]), "--reports",
                            str(tmp_path / "blocked"), "--lock-timeout", "4"], tmp_path / "blocked.txt")
        summary = summary_of(tmp_path / "blocked")
        assert code == 3
        assert "still runs on the board" in summary["boards"]["arm"]["error"]
        assert processes_naming(str(job_dir)) == [agent_pid]  # left alone
        assert (workdir / "lock" / "holder.json").is_file()
    finally:
        os.kill(agent_pid, signal.SIGKILL)
    # Its agent gone, the lock is stale: the next run breaks it and removes the ghost's job dir.
    assert wait_for(lambda: not processes_naming(str(job_dir)), timeout=10)
    assert run_harness(["--inventory", str(rig["inventory"]), "run", str(rig["quick"]), "--reports",
                        str(tmp_path / "after"), "--lock-timeout", "10"], tmp_path / "after.txt") == 0
    assert not job_dir.exists()
    assert_board_left_clean(rig)


def _a_dead_pid() -> int:
    """A pid that surely names no process now: one of a child that has exited."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_run_timeout_kills_the_agent_on_the_board(rig, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yaml", {"arm": ssh_board(rig["endpoint"], run_timeout=8)})
    code = run_harness(["--inventory", str(inventory), "run", str(rig["slow"]), "--reports", str(tmp_path / "r")],
                       tmp_path / "out.txt")
    summary = summary_of(tmp_path / "r")
    assert code == 3, (tmp_path / "out.txt").read_text()
    assert "longer than run_timeout=8 s and was stopped" in summary["boards"]["arm"]["error"]
    assert_board_left_clean(rig)


def test_a_frozen_board_is_given_up_after_dead_after_and_its_agent_dies_with_the_session(rig, tmp_path):
    """SIGSTOP the board's sshd sessions mid-run: no reset ever comes, only silence."""
    namespace = emulated.status(NAME) and json.loads((emulated.state_dir(NAME) / "state.json").read_text())["namespace"]
    reports = tmp_path / "reports"
    process = start_slow_run(rig, reports, tmp_path / "out.txt")
    sessions = [int(pid) for pid in subprocess.run(["ip", "netns", "pids", namespace], capture_output=True,
                                                   text=True).stdout.split()
                if is_session_sshd(int(pid))]
    assert seconds_until_it_exits_frozen(process, sessions, tmp_path / "out.txt") < 40
    summary = summary_of(reports)
    error = summary["boards"]["arm"]["error"]
    assert "stopped answering during run after" in error and "dead_after=6" in error, error
    assert "Socket is closed" not in error
    # Thawed, sshd finds its client gone and ends the session: the watchdog kills the agent.
    assert wait_for(lambda: not processes_naming(jobs_marker(rig)), timeout=60)
    # The lock (its holder gone with the harness, its agent dead) is broken by the next run.
    assert run_harness(["--inventory", str(rig["inventory"]), "run", str(rig["quick"]), "--reports",
                        str(tmp_path / "next"), "--lock-timeout", "30"], tmp_path / "next.txt") == 0
    assert_board_left_clean(rig)


@pytest.mark.parametrize("resident", [True, False])
def test_a_board_whose_sshd_dies_mid_run_names_the_stage_the_job_was_in(rig, tmp_path, resident):
    """Kill the board's sshd (the listener and the session's) while its agent runs: the reason names the run
    stage, where the job was, never the download after it (a one-shot agent's channel closing without an exit
    status is the connection dropping, not the agent ending)."""
    namespace = emulated.status(NAME) and json.loads((emulated.state_dir(NAME) / "state.json").read_text())["namespace"]
    inventory = write_inventory(tmp_path / "inventory.yaml", {"arm": ssh_board(rig["endpoint"], dead_after=6,
                                                                             resident=resident)})
    reports = tmp_path / "reports"
    process = start_slow_run({**rig, "inventory": inventory}, reports, tmp_path / "out.txt")
    daemons = [int(pid) for pid in subprocess.run(["ip", "netns", "pids", namespace], capture_output=True,
                                                  text=True).stdout.split() if _is_sshd(int(pid))]
    assert daemons
    for pid in daemons:
        os.kill(pid, signal.SIGKILL)
    try:
        assert process.wait(timeout=90) == 3, (tmp_path / "out.txt").read_text()
        error = summary_of(reports)["boards"]["arm"]["error"]
        assert "stopped answering during run after" in error and "download" not in error, error
    finally:
        start_board(NAME)  # the board comes back for the tests after this one
    assert wait_for(lambda: not processes_naming(jobs_marker(rig)), timeout=60)


def _is_sshd(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sshd")
    except OSError:
        return False


STUCK_AGENT = """import json, os, struct, sys, time
def frame(message):
    body = json.dumps(message).encode()
    return struct.pack(">4sI", {magic!r}, len(body)) + body
os.write(1, frame({{"type": "hello", "protocol": {protocol}, "pid": os.getpid(), "pgid": os.getpgid(0),
                   "python": "3", "machine": "aarch64"}}))
os.read(0, 8)  # the first request comes
os.close(1)  # its frame channel, closed; the process runs on
time.sleep(600)
"""


def test_a_resident_agent_that_closes_its_frame_channel_is_given_up_within_dead_after(rig, tmp_path):
    """A resident agent that says hello, takes a job, closes its replies and runs on: the board's shells no
    longer keep the channel open, so the host sees the end of the replies at once instead of waiting out
    run_timeout (1800 s by default), and the agent is stopped with the session."""
    from harness.execution.agent_protocol import MAGIC, PROTOCOL

    files = rig["workdir"] / "stuck"
    files.mkdir(exist_ok=True)
    (files / "stuck_agent.py").write_text(STUCK_AGENT.format(magic=MAGIC, protocol=PROTOCOL))
    script = files / "python.sh"
    # Called as the agent would be: PYTHON AGENT --serve ... (or PYTHON AGENT --probe OUT).
    script.write_text(f'#!/bin/sh\n[ "$2" = --probe ] && exit 1\nexec python3 {files / "stuck_agent.py"}\n')
    script.chmod(0o755)
    inventory = write_inventory(tmp_path / "inventory.yaml", {"arm": ssh_board(
        rig["endpoint"], dead_after=6, run_timeout=600, python=str(script), workdir=str(rig["workdir"] / "stuck-wd"))})
    started = time.monotonic()
    code = run_harness(["--inventory", str(inventory), "run", str(rig["quick"]), "--reports", str(tmp_path / "r")],
                       tmp_path / "out.txt", timeout=120)
    took = time.monotonic() - started
    assert code == 1, (tmp_path / "out.txt").read_text()
    error = summary_of(tmp_path / "r")["boards"]["arm"]["error"]
    assert "closed its reply channel during this job but kept running" in error, error
    assert took < 60, f"took {took:.0f} s"  # not run_timeout's 600 s; the board's dead_after is 6 s
    assert wait_for(lambda: not processes_naming(str(files / "stuck_agent.py")), timeout=30)  # stopped with it

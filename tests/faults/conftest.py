"""Helpers of the fault suite: a throw-away emulated board per module, `harness` as a real subprocess, /proc.

Each module starts its own board (named after this process, removed at the
end) and drives it as a plain SSH board through inventories written here, as
a lab's inventory would, so one sshd serves several boards with different
workdirs, timeouts or `python:` programs.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional

import pytest
import yaml

from harness.emulation import board as emulated

REPO = Path(__file__).resolve().parent.parent.parent

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="emulated boards of their own user and namespace need root")


def start_board(name: str, cpu: str = "cortex-a76"):
    return emulated.ensure_running(emulated.EmulatedBoardSpec(name=name, cpu=cpu), log=lambda message: None)


def ssh_board(endpoint, workdir: Optional[str] = None, **overrides) -> dict:
    """An inventory entry reaching the emulated board as a plain SSH board."""
    entry = {"kind": "ssh", "mnn": "system", "host": endpoint.host, "port": endpoint.port, "user": endpoint.user,
             "key": endpoint.key_filename, "known_hosts": endpoint.known_hosts,
             "workdir": workdir or endpoint.workdir, "python": endpoint.python}
    entry.update(overrides)
    return entry


def write_inventory(path: Path, boards: dict) -> Path:
    path.write_text(yaml.safe_dump({"boards": {"x86": {"kind": "local"}, **boards}}))
    return path


def harness(args: List[str], log: Path, env: Optional[dict] = None, **kwargs) -> subprocess.Popen:
    """`harness ARGS` as its own process (and session: signals reach only it), output into log; env: more
    environment (HOME=...)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100", **(env or {})}
    out = open(log, "wb")
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, cwd=str(REPO), start_new_session=True, **kwargs)


def run_harness(args: List[str], log: Path, timeout: float = 300, env: Optional[dict] = None) -> int:
    process = harness(args, log, env)
    try:
        return process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def processes_naming(marker: str) -> List[int]:
    """Pids of the processes whose command line holds marker (this test process excluded)."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_for(condition: Callable[[], object], timeout: float, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    return condition()


def only_run(reports: Path) -> Path:
    runs = [p for p in reports.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def summary_of(reports: Path) -> dict:
    return json.loads((only_run(reports) / "summary.json").read_text())


def is_session_sshd(pid: int) -> bool:
    """An sshd serving one session (not the listener): the process a frozen board or bastion is made of."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return command.startswith(b"sshd: ") and b"listener" not in command


def signal_quietly(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def seconds_until_it_exits_frozen(process: subprocess.Popen, pids: List[int], out: Path, code: int = 3) -> float:
    """Freeze these processes (SIGSTOP: a board or bastion that hangs) until the harness exits with `code`; how
    long it took. They are thawed whatever happens."""
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        frozen = time.monotonic()
        assert process.wait(timeout=90) == code, out.read_text()
        return time.monotonic() - frozen
    finally:
        for pid in pids:
            signal_quietly(pid, signal.SIGCONT)

"""The emulated farm as a labgrid lab: a real coordinator and exporter on 127.0.0.1, one place per board.

`labgrid_up(size)` starts the farm's emulated boards (as `farm up --size`),
a `labgrid-coordinator` listening on 127.0.0.1, and one `labgrid-exporter`
that exports each board's sshd as a NetworkService resource (address, user,
port). Each board becomes a place of its own name, matching that resource and
tagged with what a scenario may ask for: `cpu`, `fp16` (yes/no), `mnn` (the
board's MNN version) and `emulated=yes`. One lab key is authorized on every
board, as a lab's CI key would be. Then it writes an inventory of
`kind: labgrid` boards: the harness reserves and reaches them through the
coordinator exactly as it would a real lab's.

Both processes are real labgrid 26.0.1 programs started with this Python
(`-m labgrid.remote.coordinator` / `exporter`), in sessions of their own so
they outlive the command, and are stopped by the pids they were started with:
the exporter first (the coordinator otherwise waits ~7 s for it). What they
need to know, measured: the exporter's YAML is a Jinja2 template ('#' starts
a statement, '##' a comment) and takes no `tags:` (tags belong to places);
the exporter exits when it loses the coordinator and never reconnects, so a
new coordinator means a new exporter; the coordinator keeps places.yaml in its
working directory and forgets acquisitions when it restarts.

State: cache_root()/labgrid/<prefix>/: state.json (pids, address), coordinator/
(its working directory), exporter.yaml, coordinator.log, exporter.log, lab_key,
known_hosts and inventory.yaml.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional

import yaml

from ..core.cache import cache_root
from ..core.errors import SetupError
from ..core.files import locked, write_atomic
from . import board as emulated
from .farm import FARM_BOARDS, start_boards

HOST = "127.0.0.1"
LABGRID_PORT = 20408
"""labgrid's default port, taken for the user's lab when it is free (`labgrid-client` then needs no -x)."""
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
COORDINATOR_MODULE = "labgrid.remote.coordinator"
EXPORTER_MODULE = "labgrid.remote.exporter"

Log = Callable[[str], None]


def labs_dir() -> Path:
    return cache_root() / "labgrid"


def lab_dir(prefix: str = "farm") -> Path:
    return labs_dir() / prefix


def exporter_name(prefix: str) -> str:
    return f"mnn-harness-{prefix}"


def labgrid_up(size: int = len(FARM_BOARDS), log: Log = print, prefix: str = "farm") -> Path:
    """Start the boards, the coordinator and the exporter, set up the places; return the inventory's path.

    Running again keeps a coordinator that answers (and the places and
    acquisitions it holds) and restarts the exporter only if its boards changed.
    """
    from ..core.clients.labgrid_client import Coordinator, require_labgrid

    require_labgrid()
    started = start_boards(size, log, prefix)
    directory = lab_dir(prefix)
    with locked(directory / ".lock"):
        state = _read_state(directory)
        public_key = _lab_key(directory)
        for board, _ in started:
            emulated.authorize_key(board.name, public_key)
        address, fresh = _ensure_coordinator(directory, state, prefix, log)
        exporter = exporter_name(prefix)
        groups = {board.name: {"NetworkService": {"address": endpoint.host, "username": endpoint.user,
                                                  "port": endpoint.port}}
                  for board, endpoint in started}
        _ensure_exporter(directory, state, address, exporter, groups, fresh, log)
        coordinator = Coordinator.connect(address, timeout=START_TIMEOUT_S)
        _wait_for_resources(coordinator, directory, exporter, list(groups), state["exporter"]["pid"])
        for board, _ in started:
            coordinator.ensure_place(board.name, [f"{exporter}/{board.name}/NetworkService"], {
                "cpu": board.cpu, "fp16": "yes" if "fp16" in board.tags else "no",
                "mnn": board.mnn_version, "emulated": "yes"})
        places, matches = coordinator.places(), coordinator.matches()
        for name, place in places.items():
            ours = any(pattern.startswith(f"{exporter}/") for pattern in matches.get(name, []))
            if ours and name not in groups and not place.acquired:
                coordinator.delete_place(name)  # a board of a bigger farm of earlier
        known_hosts = directory / "known_hosts"
        write_atomic(known_hosts, "".join(Path(endpoint.known_hosts).read_text() for _, endpoint in started))
        inventory = {"boards": {"x86": {"kind": "local", "tags": ["x86_64", "reference"]}}}
        # Every emulated board lives in one file system: the workdir names the place, so that a pool
        # (`match:`) made from any of these entries works in the directory of whichever board it gets.
        template = emulated.workdir_template()
        for board, endpoint in started:
            workdir = template if endpoint.workdir == template.replace("{place}", board.name) else endpoint.workdir
            inventory["boards"][board.name] = {
                "kind": "labgrid", "place": board.name, "coordinator": address,
                "key": str(directory / "lab_key"), "known_hosts": str(known_hosts), "workdir": workdir,
                "python": endpoint.python, **board.inventory_mnn(),
                "tags": ["emulated", "labgrid", *board.tags]}
        path = directory / "inventory.yaml"
        write_atomic(path, "# Written by `harness farm up --labgrid`: the emulated farm as places of a labgrid "
                      f"coordinator ({address}).\n" + yaml.safe_dump(inventory, sort_keys=False))
        state.update(boards=sorted(groups), inventory=str(path))
        write_atomic(directory / "state.json", json.dumps(state, indent=1) + "\n")
    log(f"labgrid: coordinator {address}, exporter {exporter}, {len(groups)} place(s)")
    return path


def labgrid_down(prefix: Optional[str] = None) -> List[str]:
    """Stop the exporter, then the coordinator, of one lab (or of every lab here); say what was stopped."""
    from ..core.clients.labgrid_client import Coordinator

    stopped = []
    directories = [lab_dir(prefix)] if prefix else sorted(p for p in labs_dir().glob("*") if p.is_dir()) \
        if labs_dir().is_dir() else []
    for directory in directories:
        if not (directory / "state.json").is_file():
            continue
        with locked(directory / ".lock"):
            state = _read_state(directory)
            exporter = state.get("exporter") or {}
            if _stop(exporter.get("pid"), EXPORTER_MODULE):
                stopped.append(f"labgrid exporter {exporter.get('name')} (pid {exporter['pid']})")
            coordinator = state.get("coordinator") or {}
            Coordinator.forget(coordinator.get("address"))
            if _stop(coordinator.get("pid"), COORDINATOR_MODULE):
                stopped.append(f"labgrid coordinator {coordinator.get('address')} (pid {coordinator['pid']})")
            state["exporter"] = {**exporter, "pid": None}
            state["coordinator"] = {**coordinator, "pid": None}
            write_atomic(directory / "state.json", json.dumps(state, indent=1) + "\n")
    return stopped


def labgrid_status() -> List[dict]:
    """Every lab of this machine: prefix, address, whether coordinator and exporter run, places, inventory."""
    labs = []
    for directory in sorted(p for p in labs_dir().glob("*") if (p / "state.json").is_file()) \
            if labs_dir().is_dir() else []:
        state = _read_state(directory)
        coordinator, exporter = state.get("coordinator") or {}, state.get("exporter") or {}
        labs.append({"prefix": directory.name, "address": coordinator.get("address"),
                     "coordinator_pid": _running(coordinator.get("pid"), COORDINATOR_MODULE),
                     "exporter_pid": _running(exporter.get("pid"), EXPORTER_MODULE),
                     "places": state.get("boards") or [], "inventory": state.get("inventory")})
    return labs


# -- the two processes ----------------------------------------------------------------------------------


def _ensure_coordinator(directory: Path, state: dict, prefix: str, log: Log) -> tuple:
    """(address, True if it was started now). A coordinator that runs but does not answer is replaced."""
    from ..core.errors import BoardError
    from ..core.clients.labgrid_client import Coordinator

    previous = state.get("coordinator") or {}
    if _running(previous.get("pid"), COORDINATOR_MODULE):
        try:
            Coordinator.connect(previous["address"], timeout=5.0)
            return previous["address"], False
        except BoardError:
            log(f"labgrid: the coordinator {previous['address']} does not answer; restarting it")
            _stop(previous["pid"], COORDINATOR_MODULE)
    workdir = directory / "coordinator"
    workdir.mkdir(parents=True, exist_ok=True)
    preferred = [previous.get("address", "").rpartition(":")[2]] if previous.get("address") else []
    if prefix == "farm":
        preferred.append(str(LABGRID_PORT))
    problem = ""
    for attempt in range(3):
        port = _free_port([int(p) for p in preferred if p.isdigit()] if attempt == 0 else [])
        address = f"{HOST}:{port}"
        process = _spawn([sys.executable, "-m", COORDINATOR_MODULE, "-l", address], workdir,
                         directory / "coordinator.log")
        problem = _wait_for_line(process, directory / "coordinator.log", "listening on")
        if not problem:
            state["coordinator"] = {"pid": process.pid, "address": address}
            log(f"labgrid: coordinator listening on {address} (pid {process.pid})")
            return address, True
        _stop(process.pid, COORDINATOR_MODULE)
    raise SetupError(f"labgrid-coordinator would not start: {problem}\n  its log: {directory / 'coordinator.log'}")


def _ensure_exporter(directory: Path, state: dict, address: str, name: str, groups: dict, fresh_coordinator: bool,
                     log: Log) -> None:
    config = directory / "exporter.yaml"
    # A Jinja2 template to labgrid: '#' starts a statement there, '##' is a comment. No tags: those are the places'.
    text = ("## Written by `harness farm up --labgrid`: each emulated board's sshd as a NetworkService.\n"
            + yaml.safe_dump(groups, sort_keys=True))
    previous = state.get("exporter") or {}
    running = _running(previous.get("pid"), EXPORTER_MODULE)
    if running and not fresh_coordinator and config.is_file() and config.read_text() == text:
        return
    if running:
        _stop(previous["pid"], EXPORTER_MODULE)
    write_atomic(config, text)
    process = _spawn([sys.executable, "-m", EXPORTER_MODULE, "-c", address, "-n", name, "--hostname", HOST,
                      str(config)], directory, directory / "exporter.log")
    state["exporter"] = {"pid": process.pid, "name": name}
    log(f"labgrid: exporter {name} (pid {process.pid}) exports {len(groups)} board(s)")


def _wait_for_resources(coordinator, directory: Path, exporter: str, groups: List[str], pid: int) -> None:
    """The exporter's resources reach the coordinator about a second after it starts."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if set(groups) <= set(coordinator.resources().get(exporter, {})):
            return
        if not _running(pid, EXPORTER_MODULE):
            break
        time.sleep(0.2)
    raise SetupError(f"the labgrid exporter {exporter} did not export its boards within {START_TIMEOUT_S:g} s; "
                     f"its log ({directory / 'exporter.log'}) ends with:\n{_tail(directory / 'exporter.log')}")


def _spawn(argv: List[str], cwd: Path, log_path: Path) -> subprocess.Popen:
    """Start a labgrid program that outlives this command (its own session: a Ctrl-C here does not reach it)."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for_line(process: subprocess.Popen, log_path: Path, line: str) -> str:
    """'' once the program's log shows line, else what went wrong."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if line in log_path.read_text(errors="replace"):
            return ""
        if process.poll() is not None:
            return f"it exited with status {process.returncode}: {_tail(log_path)}"
        time.sleep(0.05)
    return f"it did not say {line!r} within {START_TIMEOUT_S:g} s: {_tail(log_path)}"


def _running(pid: Optional[int], module: str) -> Optional[int]:
    """pid if that process is alive and is the labgrid program we started, else None."""
    if not pid:
        return None
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if status.rsplit(")", 1)[-1].split()[0] == "Z":
        return None
    return pid if module.encode() in command else None


def _stop(pid: Optional[int], module: str) -> bool:
    """SIGTERM the program we started (checked by its command line), SIGKILL after STOP_TIMEOUT_S; True if it ran."""
    if not _running(pid, module):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        _reap(pid)
        if not _running(pid, module):
            return True
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status of a child of this process (tests start and stop labs in one process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# -- small helpers --------------------------------------------------------------------------------------


def _free_port(preferred: List[int]) -> int:
    for port in preferred + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise SetupError(f"no free TCP port on {HOST} for the labgrid coordinator")


def _lab_key(directory: Path) -> str:
    """The lab's SSH key (made once), authorized on every board of the farm; its public half."""
    key = directory / "lab_key"
    if not (key.is_file() and key.with_name("lab_key.pub").is_file()):
        completed = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mnn-harness-lab",
                                    "-f", str(key)], capture_output=True, text=True, input="y\n", timeout=30)
        if completed.returncode != 0:
            raise SetupError(f"ssh-keygen could not write {key}: {completed.stderr.strip()}")
    return key.with_name("lab_key.pub").read_text()


def _read_state(directory: Path) -> dict:
    try:
        return json.loads((directory / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def _tail(path: Path, chars: int = 800) -> str:
    try:
        return path.read_text(errors="replace")[-chars:].strip()
    except OSError:
        return "(no log)"

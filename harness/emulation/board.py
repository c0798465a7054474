"""An emulated aarch64 board: a real OpenSSH sshd whose `python3` is aarch64 Python under qemu-user.

To the harness it is an SSH board like any other: key-only login, a host key
checked against known_hosts, SFTP, a workdir. Behind the sshd, a ForceCommand
wrapper puts the board's bin/ first on PATH, where `python3` runs the cached
aarch64 sysroot's Python 3.11 under `qemu-aarch64-static -cpu MODEL`, with
the board's MNN version on PYTHONPATH. The CPU model decides which features
MNN sees (FP16 arithmetic, dot product, i8mm, SVE), as on real silicon.

Each board's state lives in cache_root()/farm/<name>/: sshd_config, host
key, client key, known_hosts, pid file, log and home/ (its workdir). The
host key and port survive restarts, so known_hosts stays valid.
"""

import fcntl
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from ..cache import cache_root
from ..endpoint import SshEndpoint
from ..errors import BoardError, SetupError
from .sysroot import PYTHON_VERSION, ensure_mnn, ensure_sysroot, qemu_binary, sysroot_key

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class EmulatedBoardSpec:
    name: str
    cpu: str = "cortex-a76"
    """qemu -cpu model: cortex-a53 and cortex-a72 (no FP16), cortex-a76 and neoverse-n1 (FP16, dotprod), max."""
    mnn_version: str = "3.6.1"
    network: str = "auto"
    """netns: its own network namespace and link-local address; loopback: a port on 127.0.0.1;
    auto: netns where this process may create namespaces, else loopback."""


def farm_dir() -> Path:
    return cache_root() / "farm"


def state_dir(name: str) -> Path:
    return farm_dir() / name


def list_boards() -> List[str]:
    directory = farm_dir()
    return sorted(p.name for p in directory.iterdir() if (p / "state.json").is_file()) if directory.is_dir() else []


def _read_state(name: str) -> Optional[dict]:
    try:
        return json.loads((state_dir(name) / "state.json").read_text())
    except (OSError, ValueError):
        return None


def _pid(name: str) -> Optional[int]:
    """The sshd's pid if that process is alive and is an sshd, else None (a stale pid file)."""
    try:
        pid = int((state_dir(name) / "sshd.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ProcessLookupError):
        return None
    return pid if b"sshd" in command and str(state_dir(name)).encode() in command else None


def status(name: str) -> Optional[dict]:
    state = _read_state(name)
    if state is None:
        return None
    pid = _pid(name)
    return {**state, "pid": pid, "running": pid is not None}


@contextmanager
def _locked(name: str):
    directory = state_dir(name)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _free_port(preferred: Optional[int]) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise BoardError("no free loopback port for an emulated board")


NETNS_PREFIX = "mh-"
MAX_SLOTS = 250


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def netns_available() -> bool:
    """Whether this process may create network namespaces (root with iproute2, not in a locked sandbox)."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        return False
    probe = f"{NETNS_PREFIX}probe-{os.getpid()}"
    if _ip("netns", "add", probe).returncode != 0:
        return False
    _ip("netns", "del", probe)
    return True


def _slot(name: str, state: dict) -> int:
    """A number unique among this machine's boards, kept across restarts: it makes the address."""
    if state.get("slot"):
        return state["slot"]
    taken = {(_read_state(other) or {}).get("slot") for other in list_boards() if other != name}
    for slot in range(1, MAX_SLOTS):
        if slot not in taken:
            return slot
    raise BoardError(f"more than {MAX_SLOTS - 1} emulated boards on this machine")


def _namespace(name: str, slot: int) -> str:
    return f"{NETNS_PREFIX}{slot}-{name}"[:48]


def _create_namespace(name: str, slot: int) -> str:
    """A network namespace with a veth pair 169.254.SLOT.1 (host) <-> 169.254.SLOT.2 (board).

    Traffic to the board stays on that veth: nothing is routed anywhere else.
    """
    namespace = _namespace(name, slot)
    _ip("netns", "del", namespace)  # a leftover from a run that died
    host_if, board_if = f"mhv{slot}h", f"mhv{slot}b"
    _ip("link", "del", host_if)
    steps = [("netns", "add", namespace),
             ("link", "add", host_if, "type", "veth", "peer", "name", board_if),
             ("link", "set", board_if, "netns", namespace),
             ("addr", "add", f"169.254.{slot}.1/30", "dev", host_if),
             ("link", "set", host_if, "up"),
             ("-n", namespace, "addr", "add", f"169.254.{slot}.2/30", "dev", board_if),
             ("-n", namespace, "link", "set", board_if, "up"),
             ("-n", namespace, "link", "set", "lo", "up")]
    for step in steps:
        completed = _ip(*step)
        if completed.returncode != 0:
            _ip("netns", "del", namespace)
            raise BoardError(f"{name}: `ip {' '.join(step)}` failed: {completed.stderr.strip()}")
    return namespace


def _write_executable(path: Path, text: str) -> None:
    """Write a script atomically: a session starting right now must never see half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, path)


def _keygen(path: Path, comment: str) -> None:
    if not path.is_file():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                       check=True, capture_output=True)


def _write_config(spec: EmulatedBoardSpec, directory: Path, address: str, port: int, sysroot: Path,
                  mnn: Path) -> None:
    home = directory / "home"
    (home / "work").mkdir(parents=True, exist_ok=True)
    (directory / "bin").mkdir(exist_ok=True)
    python = (f'#!/bin/sh\n# aarch64 Python {PYTHON_VERSION} on an emulated {spec.cpu}, MNN {spec.mnn_version}\n'
              f'PYTHONPATH="{mnn}" PYTHONNOUSERSITE=1 exec "{qemu_binary()}" -cpu "{spec.cpu}" -L "{sysroot}" '
              f'"{sysroot}/usr/bin/python{PYTHON_VERSION}" "$@"\n')
    for name in ("python3", f"python{PYTHON_VERSION}"):
        _write_executable(directory / "bin" / name, python)
    _write_executable(directory / "board-shell", (
        "#!/bin/sh\n# Every SSH session of this board runs here (ForceCommand): python3 is the emulated one.\n"
        f'export PATH="{directory}/bin:/usr/local/bin:/usr/bin:/bin"\n'
        f'export HOME="{home}"\n'
        'cd "$HOME" || exit 1\n'
        'if [ -n "$SSH_ORIGINAL_COMMAND" ]; then exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"; fi\n'
        "exec /bin/sh -l\n"))
    (directory / "sshd_config").write_text(f"""\
# sshd of the emulated board {spec.name}, written by mnn-harness
Port {port}
ListenAddress {address}
HostKey {directory}/ssh_host_ed25519_key
PidFile {directory}/sshd.pid
AuthorizedKeysFile {directory}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers {getpass.getuser()}
UsePAM no
StrictModes no
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
MaxStartups 64
Subsystem sftp {SFTP_SERVER}
ForceCommand {directory}/board-shell
""")


def _wait_for_banner(address: str, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1.0) as connection:
                if connection.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.1)
    tail = log_path.read_text(errors="replace")[-800:] if log_path.is_file() else "(no log)"
    raise BoardError(f"the emulated board's sshd did not answer on {address}:{port} within "
                     f"{START_TIMEOUT_S:g} s; its log says:\n{tail}")


def ensure_running(spec: EmulatedBoardSpec, log: Callable[[str], None] = print) -> SshEndpoint:
    """Start the board unless it runs already with this spec; return how to reach it."""
    if not Path(SSHD).is_file():
        raise SetupError(f"{SSHD} is missing; run `make setup` (it installs openssh-server)")
    sysroot = ensure_sysroot(log)
    mnn = ensure_mnn(spec.mnn_version, log)
    directory = state_dir(spec.name)
    with _locked(spec.name):
        state = _read_state(spec.name) or {}
        wanted = {"name": spec.name, "cpu": spec.cpu, "mnn_version": spec.mnn_version,
                  "sysroot": sysroot_key()}
        pid = _pid(spec.name)
        if pid is not None and {k: state.get(k) for k in wanted} != wanted:
            log(f"{spec.name}: its spec changed, restarting")
            _terminate(pid)
            pid = None
        if pid is None:
            _keygen(directory / "ssh_host_ed25519_key", f"{spec.name}-host")
            _keygen(directory / "client_key", f"mnn-harness@{spec.name}")
            shutil.copyfile(directory / "client_key.pub", directory / "authorized_keys")
            network = spec.network
            if network == "auto":
                network = "netns" if netns_available() else "loopback"
            command = [SSHD, "-f", str(directory / "sshd_config"), "-E", str(directory / "sshd.log")]
            if network == "netns":
                slot = _slot(spec.name, state)
                namespace = _create_namespace(spec.name, slot)
                address, port = f"169.254.{slot}.2", 22
                command = ["ip", "netns", "exec", namespace] + command
                extra = {"slot": slot, "namespace": namespace}
            else:
                address, port = "127.0.0.1", _free_port(state.get("port") if state.get("address") == "127.0.0.1"
                                                         else None)
                extra = {"slot": state.get("slot")}
            _write_config(spec, directory, address, port, sysroot, mnn)
            host_key = (directory / "ssh_host_ed25519_key.pub").read_text().split()
            host_field = address if port == 22 else f"[{address}]:{port}"
            (directory / "known_hosts").write_text(f"{host_field} {host_key[0]} {host_key[1]}\n")
            Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation directory
            log_path = directory / "sshd.log"
            log_path.unlink(missing_ok=True)
            started = subprocess.run(command, capture_output=True, text=True)
            if started.returncode != 0:
                raise BoardError(f"{spec.name}: sshd would not start: {started.stderr.strip()[-600:]}")
            _wait_for_banner(address, port, log_path)
            state = {**wanted, **extra, "network": network, "address": address, "port": port}
            (directory / "state.json").write_text(json.dumps(state, indent=1))
            log(f"{spec.name}: emulated {spec.cpu} with MNN {spec.mnn_version} on {address}:{port} ({network})")
    return SshEndpoint(host=state["address"], port=state["port"], user=getpass.getuser(),
                       key_filename=str(directory / "client_key"), known_hosts=str(directory / "known_hosts"),
                       python="python3", workdir=str(directory / "home" / "work"))


def _terminate(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def stop(name: str) -> bool:
    """Stop the board's sshd by its pid; True if it was running. Its state (keys, port) is kept."""
    pid = _pid(name)
    if pid is None:
        return False
    _terminate(pid)
    (state_dir(name) / "sshd.pid").unlink(missing_ok=True)
    namespace = (_read_state(name) or {}).get("namespace")
    if namespace:
        _ip("netns", "del", namespace)  # takes the veth pair with it
    return True

"""A jump host on this machine: a real OpenSSH sshd that only passes connections on (ProxyJump, `ssh -W`).

A lab's boards usually sit on a private network that is reached through a
bastion. This one is an sshd with its own host key and its own client key,
TCP forwarding allowed and sessions refused (`ForceCommand /bin/false`: a
bastion is for passing through), started where it is asked to listen: on
127.0.0.1, or inside an emulated board's network namespace on the board's
address, so that what reaches the board through it comes from the board's
own side (the board's sshd log names that address), as on a lab network.
Its log (LogLevel DEBUG1) names every connection it passes on
(`server_request_direct_tcpip: originator ..., target H port P`).

It is made of the emulated board's sshd pieces (keys, atomic files, start,
banner wait, stop by pid) and stopped by the pid in its pid file. The tests
start it; `make bench` measures what a hop costs with it.
"""

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from ..core.errors import BoardError, SetupError
from .board import (LOOPBACK, PRIVSEP_DIR, SSHD, START_ATTEMPTS, START_TIMEOUT_S, _alive, _free_port,
                    _keygen, _log_tail, _terminate, _user, _wait_for_banner, _write_atomic, sshd_config_head)

NAMESPACE_PORT = 2222
"""Where a bastion inside a board's network namespace listens first (the board's sshd has 22 there)."""
_FORWARD = re.compile(r"server_request_direct_tcpip: originator \S* port \d+, target (\S+) port (\d+)")


@dataclass(frozen=True)
class Bastion:
    """A running jump host: where it listens, who may log in with which key, and its files."""

    name: str
    directory: Path
    """Its keys, sshd_config, pid file, log and known_hosts (the line a client needs for it)."""
    address: str
    port: int
    user: str
    namespace: Optional[str] = None
    """The network namespace it listens in (an emulated board's), or None: this machine's."""

    @property
    def key(self) -> Path:
        """The private key that may log in."""
        return self.directory / "client_key"

    @property
    def known_hosts(self) -> Path:
        """A known_hosts file holding its host key under the name a client looks it up by."""
        return self.directory / "known_hosts"

    @property
    def log(self) -> Path:
        return self.directory / "sshd.log"

    @property
    def jump(self) -> str:
        """user@address:port, as `ssh -J` and the inventory's `jump:` write it."""
        return f"{self.user}@{self.address}:{self.port}"

    def pid(self) -> Optional[int]:
        """The listener's pid while it runs (its pid file names a live sshd started with its config), else None."""
        try:
            pid = int((self.directory / "sshd.pid").read_text().split()[0])
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return None
        return pid if str(self.directory / "sshd_config").encode() in command and _alive(pid) else None

    def sessions(self) -> List[int]:
        """Pids of the processes that serve its connections: the listener's descendants (sshd forks one per
        connection, and that one a child of its own)."""
        listener = self.pid()
        if listener is None:
            return []
        children: dict = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
        found, todo = [], list(children.get(listener, []))
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += children.get(pid, [])
        return sorted(found)

    def forwards(self) -> List[Tuple[str, int]]:
        """(host, port) of every connection it passed on, oldest first, as its log says."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return []
        return [(host, int(port)) for host, port in _FORWARD.findall(text)]


def start_bastion(directory: Path, name: str = "bastion", address: str = LOOPBACK,
                  namespace: Optional[str] = None) -> Bastion:
    """Start a jump host whose state lives in directory; on address (a free port), or in namespace on
    address:2222 (or the next free port there). Keys are made once and kept: a restart keeps its identity."""
    if not Path(SSHD).is_file():
        raise SetupError(f"{SSHD} is missing; run `make setup` (it installs openssh-server)")
    directory.mkdir(parents=True, exist_ok=True)
    _keygen(directory / "ssh_host_ed25519_key", f"{name}-host-key")
    _keygen(directory / "client_key", f"mnn-harness@{name}")
    _write_atomic(directory / "authorized_keys", (directory / "client_key.pub").read_text())
    if os.geteuid() == 0:
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    user = _user()
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    if namespace:
        ports = [NAMESPACE_PORT + attempt for attempt in range(START_ATTEMPTS)]
    else:
        ports = [_free_port(address, None) for _ in range(START_ATTEMPTS)]
    for port in ports:
        _write_config(directory, name, address, port, user)
        (directory / "sshd.pid").unlink(missing_ok=True)
        (directory / "sshd.log").unlink(missing_ok=True)
        bastion = Bastion(name=name, directory=directory, address=address, port=port, user=user, namespace=namespace)
        started = subprocess.run(prefix + [SSHD, "-f", str(directory / "sshd_config"), "-E", str(bastion.log)],
                                 capture_output=True, text=True, timeout=START_TIMEOUT_S)
        listening = started.returncode == 0 and _listening(bastion)
        problem = (_log_tail(bastion.log) + started.stderr).strip()
        if listening or "Cannot bind any address" not in problem:
            break
    if not listening:
        raise BoardError(f"the jump host {name} would not start on {address}:{port} (exit {started.returncode}):\n"
                         f"{problem[-800:]}")
    host_key = (directory / "ssh_host_ed25519_key.pub").read_text().split()
    _write_atomic(directory / "known_hosts",
                  f"{address if port == 22 else f'[{address}]:{port}'} {host_key[0]} {host_key[1]}\n")
    try:
        if namespace:
            _in_namespace_wait_for_banner(namespace, address, port)
        else:
            _wait_for_banner(address, port)
    except BoardError:
        stop_bastion(bastion)
        raise
    return bastion


def stop_bastion(bastion: Bastion) -> bool:
    """Stop its listener by pid (open sessions are cut off with it); True if it was running. Keys are kept."""
    pid = bastion.pid()
    sessions = bastion.sessions()
    if pid is not None:
        _terminate(pid)
    for session in sessions:
        _terminate(session)
    (bastion.directory / "sshd.pid").unlink(missing_ok=True)
    return pid is not None


def _listening(bastion: Bastion) -> bool:
    """Whether its sshd came up: sshd daemonises before it binds, so its exit status says nothing of the port;
    it writes its pid file once it listens, and logs "Cannot bind any address" when it cannot."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if bastion.pid() is not None:
            return True
        if "Cannot bind any address" in _log_tail(bastion.log):
            return False
        time.sleep(0.02)
    return False


def _in_namespace_wait_for_banner(namespace: str, address: str, port: int) -> None:
    """The banner wait, from inside the namespace (its address is reachable from here too, but the namespace is
    where the bastion must answer)."""
    probe = ("import socket, sys, time\n"
             "deadline = time.monotonic() + float(sys.argv[3])\n"
             "while time.monotonic() < deadline:\n"
             "    try:\n"
             "        with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.0) as c:\n"
             "            if c.recv(64).startswith(b'SSH-'):\n"
             "                sys.exit(0)\n"
             "    except OSError:\n"
             "        pass\n"
             "    time.sleep(0.05)\n"
             "sys.exit(1)\n")
    done = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", probe, address, str(port),
                           str(START_TIMEOUT_S)], capture_output=True, text=True, timeout=START_TIMEOUT_S + 10)
    if done.returncode != 0:
        raise BoardError(f"the jump host did not answer on {address}:{port} in {namespace} within "
                         f"{START_TIMEOUT_S:g} s: {done.stderr.strip()[-300:]}")


def _write_config(directory: Path, name: str, address: str, port: int, user: str) -> None:
    # it passes connections on, nothing else
    _write_atomic(directory / "sshd_config", sshd_config_head(f"the jump host {name}", address, port, directory,
                                                              directory / "authorized_keys", user) + """\
# its files sit in a temporary directory, whose modes sshd's checks were not written for
StrictModes no
PermitRootLogin prohibit-password
UsePAM no
AllowTcpForwarding local
AllowAgentForwarding no
X11Forwarding no
PermitTTY no
ForceCommand /bin/false
MaxStartups 64
MaxSessions 64
ClientAliveInterval 10
ClientAliveCountMax 3
# DEBUG1 names every connection it passes on: proof that a board was reached through it
LogLevel DEBUG1
""")

"""An emulated aarch64 board: a real OpenSSH sshd whose `python3` is aarch64 Python under qemu-user.

To the harness it is an SSH board like any other: key-only login, a host key
checked against known_hosts, SFTP, a workdir. Behind the sshd, a ForceCommand
wrapper puts the board's bin/ first on PATH, where `python3` runs the cached
sysroot's Python 3.11 under `qemu-aarch64-static -cpu MODEL`, with the
board's MNN version on PYTHONPATH. The CPU model decides which features MNN
sees (FP16 arithmetic, dot product, i8mm, SVE), as real silicon would.

Only `python3` is emulated: the shell and every other command on the board
are the host's x86 programs, and the emulated Python cannot exec another
aarch64 program (no binfmt_misc), so the agent must not re-launch
`sys.executable`.

Each board's state lives in cache_root()/farm/<name>/: sshd_config, host
key, client key, known_hosts, pid file, sshd log and state.json. The host key
and the address survive restarts, so a known_hosts entry stays valid.

Who the board's sessions run as: where this process is root (and may make
namespaces), each board logs in a user of its own, `mnn-board-SLOT` (made
with useradd when missing), never root. Its side of the board lives in a
world-traversable directory, BOARDS_ROOT/<cache>/<name>/: board-shell,
bin/python3 and authorized_keys (root's, read-only to it), home/ (its HOME,
root's) and home/work, the workdir, its only writable place. The sysroot and
the board's MNN stay in the cache (which may sit under root's 0700 home):
sshd starts in a mount namespace of its own where they are bind-mounted,
read-only, onto <board dir>/sysroot and <board dir>/mnn, and where /tmp,
/var/tmp, /dev/shm and /run/lock are private tmpfs (but the one holding the
board's state, a cache under /tmp); none of it is visible on the host. sshd checks the modes of the key files (StrictModes yes). Where
this process is not root, a board is run as before: by this user, state and
workdir in the cache (cache_root()/farm/<name>/home/work), StrictModes off
because the cache may sit under a world-writable tmp.

Networking: where this process may create network namespaces (root with
iproute2), each board gets its own namespace and a veth pair
169.254.SLOT.1 (host) <-> 169.254.SLOT.2 (board), sshd on port 22 there, as a
real board on its own address; traffic to it stays on that veth. Elsewhere a
board is a port on 127.0.0.1. SLOT is chosen machine-wide, under a lock in
RUN_ROOT, among the slots no running board of any cache holds (their
namespaces, veths and claims in RUN_ROOT/slots), and kept in the board's
state directory; boards started by earlier versions are seen by their
namespaces.
"""

import functools
import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from ..core.cache import cache_root
from ..core.clients.wheels import EMULATED_MNN_VERSION
from ..core.endpoint import SshEndpoint
from ..core import host
from ..core.errors import BoardError, SetupError
from ..core.files import locked, write_atomic
from .sysroot import (PYTHON_VERSION, ensure_bare_sysroot, ensure_mnn, ensure_sysroot, python_command, qemu_binary,
                      sysroot_key)

Log = Callable[[str], None]

SSHD = host.SSHD.command
SFTP_SERVER = host.SFTP_SERVER.command
PRIVSEP_DIR = Path("/run/sshd")
"""sshd running as root refuses to start without its privilege-separation directory."""
LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
START_ATTEMPTS = 3
"""A free port can be taken between choosing it and sshd binding it; that many tries with a new port."""
CPU_MODELS = ("cortex-a53", "cortex-a72", "cortex-a76", "neoverse-n1", "max")
"""qemu -cpu models with known MNN features: a53/a72 no FP16, a76/neoverse-n1 FP16 + dotprod, max also i8mm, SVE2.
qemu also knows cortex-a35, cortex-a57 and a64fx, which are accepted too."""
NETWORKS = ("auto", "netns", "loopback")
NETNS_PREFIX = "mh-"
MAX_SLOTS = 250
"""Slots make addresses 169.254.SLOT.x: one octet, and 0 and 255 are not usable."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
BOARDS_ROOT = Path("/var/lib/mnn-harness/boards")
"""Where a board's own side lives when it runs as a user of its own (root only): world-traversable."""
RUN_ROOT = Path("/run/mnn-harness")
"""Machine-wide: the slot lock and the slots' claims, shared by every cache on this machine."""
USER_PREFIX = "mnn-board-"
LAYOUT = 2
"""How a board is laid out (2: a user of its own where root); a board started with another layout restarts."""
PRIVATE_TMP_MB = 256
_MOUNTS = r"""
# In the board's own mount namespace (never seen by the host): the sysroot and MNN read-only where the
# board's user can reach them, private tmpfs on every world-writable directory (but one holding the board's
# state, which sshd reads and writes: a cache under /tmp), then sshd.
set -e
mount --bind "$1" "$2"; mount -o remount,bind,ro "$2"
if [ "$3" != - ]; then mount --bind "$3" "$4"; mount -o remount,bind,ro "$4"; fi
tmp_mb=$5; state=$6
shift 6
for d in /tmp /var/tmp /dev/shm /run/lock; do
  case "$state/" in "$d"/*) continue;; esac
  if [ -d "$d" ] && [ ! -L "$d" ]; then mount -t tmpfs -o "size=${tmp_mb}m,mode=1777,nosuid,nodev" tmpfs "$d"; fi
done
exec "$@"
"""


@dataclass(frozen=True)
class EmulatedBoardSpec:
    """What an emulated board is. Changing any field of a running board restarts it."""

    name: str
    """Also its state directory's name: letters, digits, '.', '_', '-'."""
    cpu: str = "cortex-a76"
    """qemu -cpu model: cortex-a53, cortex-a72, cortex-a76, neoverse-n1, max."""
    mnn_version: str = EMULATED_MNN_VERSION
    """The aarch64 MNN wheel this board carries, independent of the host's."""
    network: str = "auto"
    """netns: its own network namespace and link-local address; loopback: a port on 127.0.0.1;
    auto: netns where this process may create namespaces, else loopback."""
    bare: bool = False
    """A board as it comes: the sysroot's Python without numpy and MNN (the bare sysroot), for the harness to
    provision; mnn_version is then not the board's."""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise BoardError(f"{self.name!r} is not a usable emulated board name: use up to 64 letters, digits, "
                             f"'.', '_' or '-', starting with a letter or digit")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", self.cpu):
            raise BoardError(f"board {self.name}: {self.cpu!r} is not a qemu CPU model; use one of "
                             f"{', '.join(CPU_MODELS)}")
        if self.network not in NETWORKS:
            raise BoardError(f"board {self.name}: network {self.network!r} is not one of {', '.join(NETWORKS)}")


def emulated_spec(board) -> EmulatedBoardSpec:
    """The emulated board an inventory's `kind: emulated` entry (a BoardSpec) describes."""
    if board.bare:
        return EmulatedBoardSpec(name=board.name, cpu=board.cpu, bare=True)
    return EmulatedBoardSpec(name=board.name, cpu=board.cpu, mnn_version=board.mnn_version or EMULATED_MNN_VERSION)


# -- queries --------------------------------------------------------------------------------------------


def farm_dir() -> Path:
    return cache_root() / "farm"


def state_dir(name: str) -> Path:
    if not _NAME.fullmatch(name):
        raise BoardError(f"{name!r} is not an emulated board name")
    return farm_dir() / name


def list_boards() -> List[str]:
    """Names of the boards that have state on this machine, running or not."""
    directory = farm_dir()
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if (p / "state.json").is_file())


def status(name: str) -> Optional[Dict[str, object]]:
    """name, cpu, mnn_version, network, address, port, pid and running; None for a board never started here."""
    state = _read_state(name)
    if state is None:
        return None
    pid = _pid(name)
    return {"name": name, "cpu": state.get("cpu"),
            "mnn_version": "bare" if state.get("bare") else state.get("mnn_version"),
            "network": state.get("network", "loopback"), "address": state.get("address", LOOPBACK),
            "port": state.get("port"), "pid": pid, "running": pid is not None}


def endpoint_of(name: str) -> Optional[SshEndpoint]:
    """How to reach the board as last started, or None; does not check that it is running."""
    state = _read_state(name)
    if state is None or "port" not in state:
        return None
    directory = state_dir(name)
    return SshEndpoint(host=state.get("address", LOOPBACK), port=int(state["port"]), user=state.get("user") or _user(),
                       key_filename=str(directory / "client_key"), known_hosts=str(directory / "known_hosts"),
                       python="python3", workdir=state.get("workdir") or str(directory / "home" / "work"))


# -- start and stop -------------------------------------------------------------------------------------


def ensure_running(spec: EmulatedBoardSpec, log: Log = print) -> SshEndpoint:
    """Start the board unless it runs already with this spec (restart it if the spec changed); say how to reach it.

    Builds the sysroot and the board's MNN first if this machine has none. The
    wrapper scripts of a running board are refreshed in place (atomically):
    they are read afresh by every session, so that needs no restart.
    """
    host.require(host.EMULATED_BOARD_TOOLS, "emulated boards")
    _check_cpu(spec)
    network = _resolve_network(spec)
    if spec.bare:
        sysroot, mnn = ensure_bare_sysroot(log), None
    else:
        sysroot, mnn = ensure_sysroot(log), ensure_mnn(spec.mnn_version, log)
    directory = state_dir(spec.name)
    wanted = {"name": spec.name, "cpu": spec.cpu, "mnn_version": None if spec.bare else spec.mnn_version,
              "network": network, "sysroot": sysroot_key(), "layout": LAYOUT, "isolated": _may_isolate(network),
              "bare": spec.bare}
    with locked(directory / ".lock"):
        state = _read_state(spec.name) or {}
        pid = _pid(spec.name)
        # A running board of an earlier layout keeps serving until its next start: restarting it here would
        # cut off a run of an older harness that uses it right now.
        same = {key: state.get(key, False if key == "bare" else None) for key in wanted
                if key not in ("layout", "isolated")}
        if pid is not None and same != {key: wanted[key] for key in same}:
            log(f"{spec.name}: its spec changed, restarting it")
            _terminate(pid)
            pid = None
        if pid is None:
            _start(spec, directory, state, wanted, sysroot, mnn, log)
        else:
            _write_scripts(spec, _board_side(spec.name, state), sysroot, mnn, state.get("isolated", False))
    found = endpoint_of(spec.name)
    assert found is not None  # _start wrote the state
    return found


def stop(name: str) -> bool:
    """Stop the board's sshd by the pid in its pid file; True if it was running. Keys and address are kept.

    A board in a network namespace also loses its namespace and veth pair,
    which cuts its open sessions off. On loopback, as with a real sshd,
    stopping the listener ends new logins and open sessions run to their end.
    """
    directory = state_dir(name)
    if not directory.is_dir():
        return False
    with locked(directory / ".lock"):
        pid = _pid(name)
        if pid is not None:
            _terminate(pid)
        (directory / "sshd.pid").unlink(missing_ok=True)
        namespace = (_read_state(name) or {}).get("namespace")
        if namespace:
            _delete_namespace(namespace, (_read_state(name) or {}).get("slot"))
    return pid is not None


def remove(name: str) -> bool:
    """Stop the board and delete its state (keys, home); True if there was any. For throw-away test boards."""
    directory = state_dir(name)
    if not directory.is_dir():
        return False
    stop(name)
    public = (_read_state(name) or {}).get("public")
    if public and BOARDS_ROOT in Path(public).parents:
        shutil.rmtree(public, ignore_errors=True)
        try:
            Path(public).parent.rmdir()  # the cache's directory, once its last board is gone
        except OSError:
            pass
    shutil.rmtree(directory)
    return True


def authorize_key(name: str, public_key: str) -> None:
    """Let one more key log in to the board (a lab's shared key), now and after restarts.

    sshd reads authorized_keys at every login, so a running board takes it at once.
    """
    directory = state_dir(name)
    line = public_key.strip()
    with locked(directory / ".lock"):
        extra = directory / "extra_authorized_keys"
        lines = extra.read_text().splitlines() if extra.is_file() else []
        if line not in lines:
            _write_atomic(extra, "".join(f"{key}\n" for key in lines + [line]))
        _write_authorized_keys(directory, _board_side(name, _read_state(name) or {}))


# -- internals ------------------------------------------------------------------------------------------


def _write_authorized_keys(directory: Path, side: Path) -> None:
    """The board's own client key and the extra keys authorize_key gave it, where its sshd reads them (side)."""
    keys = (directory / "client_key.pub").read_text()
    extra = directory / "extra_authorized_keys"
    if extra.is_file():
        keys += extra.read_text()
    _write_atomic(side / "authorized_keys", keys)


def _user() -> str:
    """The account sshd authenticates: the real uid's, whatever $USER says (sudo keeps it)."""
    return pwd.getpwuid(os.getuid()).pw_name


def _may_isolate(network: str) -> bool:
    """Whether boards get a user of their own here: root, with useradd, and a mount namespace to start sshd in."""
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("mount"):
        return False
    return network == "netns" or shutil.which("unshare") is not None


def _board_side(name: str, state: dict) -> Path:
    """Where the board's own side lives: its directory under BOARDS_ROOT when isolated, else its state dir."""
    if state.get("isolated"):
        return Path(state["public"])
    return state_dir(name)


def _public_dir(name: str) -> Path:
    """The board's directory: BOARDS_ROOT/<cache>/<name>, the cache's hash keeping two caches' boards apart."""
    return BOARDS_ROOT / hashlib.sha256(str(farm_dir().resolve()).encode()).hexdigest()[:8] / name


def workdir_template() -> str:
    """Where a board of this cache started now has its workdir, "{place}" standing for its name.

    Every board's workdir is the same path but for its name, so one inventory
    entry can serve whichever board a labgrid pool hands out.
    """
    network = "netns" if netns_available() else "loopback"
    if _may_isolate(network):
        return str(_public_dir("{place}") / "home" / "work")
    return str(farm_dir() / "{place}" / "home" / "work")


def _ensure_user(slot: int) -> pwd.struct_passwd:
    """The board's user `mnn-board-SLOT`: made once (no password, no login but by key, no home of its own).

    Called under the machine-wide slot lock, so parallel starts never race useradd.
    """
    name = f"{USER_PREFIX}{slot}"
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    # "*" is no password; "!" (useradd's default) would be a locked account, which sshd refuses without PAM.
    argv = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", str(BOARDS_ROOT.parent),
            "--shell", "/bin/sh", "--comment", "mnn-harness emulated board", "--password", "*", name]
    for attempt in range(5):
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if completed.returncode in (0, 9):  # 9: it exists (made meanwhile)
            return pwd.getpwnam(name)
        time.sleep(0.2 * (attempt + 1))  # /etc/passwd locked by another tool for a moment
    raise BoardError(f"could not create the user {name} for an emulated board: {completed.stderr.strip()}")


def _prepare_board_side(public: Path, user: pwd.struct_passwd) -> Path:
    """The board's own side, owned by root except its workdir; returns the workdir."""
    public.parent.mkdir(parents=True, exist_ok=True)
    for directory in (BOARDS_ROOT.parent, BOARDS_ROOT, public.parent):
        directory.chmod(0o755)
    for directory in (public, public / "bin", public / "home", public / "sysroot", public / "mnn"):
        directory.mkdir(exist_ok=True)
        os.chown(directory, 0, 0)
        directory.chmod(0o755)
    work = public / "home" / "work"
    work.mkdir(exist_ok=True)
    if work.stat().st_uid != user.pw_uid:  # a new slot gave the board a new user: hand its files over
        for root, dirs, files in os.walk(work):
            for entry in dirs + files:
                os.lchown(os.path.join(root, entry), user.pw_uid, user.pw_gid)
    os.chown(work, user.pw_uid, user.pw_gid)
    work.chmod(0o700)
    return work


def _read_state(name: str) -> Optional[dict]:
    try:
        return json.loads((state_dir(name) / "state.json").read_text())
    except (OSError, ValueError):
        return None


def _pid(name: str) -> Optional[int]:
    """The listener's pid if that process is alive and is this board's sshd, else None.

    A pid file whose process is gone, or whose pid now belongs to something
    else, means the board is not running.
    """
    return _sshd_of(state_dir(name))


def _sshd_of(directory: Path) -> Optional[int]:
    """The pid of the sshd started from this state directory, if it runs."""
    try:
        pid = int((directory / "sshd.pid").read_text().split()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    # sshd rewrites its title to "sshd: /usr/sbin/sshd -f CONFIG ... [listener]"; the config path is ours.
    return pid if str(directory / "sshd_config").encode() in command else None


@functools.lru_cache(maxsize=None)
def _qemu_cpu_models() -> tuple:
    """The CPU models this qemu knows (`-cpu help`: a heading, then one name per line)."""
    completed = subprocess.run([qemu_binary(), "-cpu", "help"], capture_output=True, text=True, timeout=30)
    return tuple(line.strip() for line in completed.stdout.splitlines()[1:] if line.strip())


def _check_cpu(spec: EmulatedBoardSpec) -> None:
    """Refuse a CPU model qemu does not know before any sshd starts, listing the ones it does."""
    known = _qemu_cpu_models()
    if known and spec.cpu not in known:
        raise BoardError(f"board {spec.name}: qemu has no CPU model {spec.cpu!r}; it has {', '.join(known)}")


def _free_port(address: str, preferred: Optional[int]) -> int:
    """The preferred port if it is free (known_hosts entries name the port), else any free one."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise BoardError(f"no free TCP port on {address} for an emulated board")


def _start(spec: EmulatedBoardSpec, directory: Path, state: dict, wanted: dict, sysroot: Path, mnn: Optional[Path],
           log: Log) -> None:
    """Write keys and config, start sshd (in the board's namespace), wait until it greets; record the state."""
    _keygen(directory / "ssh_host_ed25519_key", f"{spec.name}-host-key")
    _keygen(directory / "client_key", f"mnn-harness@{spec.name}")
    if os.geteuid() == 0:
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    log_path = directory / "sshd.log"
    sshd = [SSHD, "-f", str(directory / "sshd_config"), "-E", str(log_path)]
    extra: Dict[str, object] = {"isolated": wanted["isolated"]}
    slot = _allocate_slot(spec.name) if wanted["network"] == "netns" or wanted["isolated"] else None
    if wanted["isolated"]:
        user = _ensure_user(slot)
        public = _public_dir(spec.name)
        work = _prepare_board_side(public, user)
        extra.update(user=user.pw_name, public=str(public), workdir=str(work))
        _write_authorized_keys(directory, public)
        sshd = ["/bin/sh", "-c", _MOUNTS, "sh", str(sysroot), str(public / "sysroot"), str(mnn or "-"),
                str(public / "mnn"),
                str(PRIVATE_TMP_MB), str(directory.resolve()), *sshd]
        user_name = user.pw_name
    else:
        public = directory
        (directory / "home" / "work").mkdir(parents=True, exist_ok=True)
        _write_authorized_keys(directory, directory)
        extra.update(user=_user(), workdir=str(directory / "home" / "work"))
        user_name = _user()
    _write_scripts(spec, public, sysroot, mnn, wanted["isolated"])
    if wanted["network"] == "netns":
        namespace = _create_namespace(spec.name, slot)
        address, ports, prefix = f"169.254.{slot}.2", [22], ["ip", "netns", "exec", namespace]
        extra.update(slot=slot, namespace=namespace)
    else:
        # Keep the old port if it is free: the board's known_hosts line names it.
        address, prefix = LOOPBACK, (["unshare", "--mount", "--propagation", "private"] if wanted["isolated"] else [])
        previous = state.get("port") if state.get("address") == LOOPBACK else None
        ports = [_free_port(address, previous if attempt == 0 else None) for attempt in range(START_ATTEMPTS)]
        if slot:
            extra["slot"] = slot
    for port in ports:
        _write_config(spec, directory, public, address, port, user_name, wanted["isolated"])
        log_path.unlink(missing_ok=True)
        (directory / "sshd.pid").unlink(missing_ok=True)
        # sshd daemonises once it listens; its exit status says whether it could bind and load its keys.
        started = subprocess.run(prefix + sshd, capture_output=True, text=True, timeout=START_TIMEOUT_S)
        if started.returncode == 0:
            break
        problem = (_log_tail(log_path) + started.stderr).strip()
        if "Bind to port" not in problem and "Address already in use" not in problem:
            break
    if started.returncode != 0:
        if extra.get("namespace"):
            _delete_namespace(str(extra["namespace"]), int(extra["slot"]))
        raise BoardError(f"{spec.name}: sshd would not start on {address} (exit {started.returncode}):\n"
                         f"{(_log_tail(log_path) + started.stderr).strip()[-800:]}\n"
                         f"  fix: if its keys are damaged, `harness farm down` and delete {directory} (the board "
                         f"gets new keys and a new known_hosts line)")
    host_key = (directory / "ssh_host_ed25519_key.pub").read_text().split()
    host_field = address if port == 22 else f"[{address}]:{port}"
    _write_atomic(directory / "known_hosts", f"{host_field} {host_key[0]} {host_key[1]}\n")
    try:
        _wait_for_banner(address, port)
    except BoardError as error:
        pid = _pid(spec.name)
        if pid is not None:
            _terminate(pid)
        raise BoardError(f"{spec.name}: {error}; sshd's log ({log_path}) ends with:\n{_log_tail(log_path)}") from None
    _write_atomic(directory / "state.json",
                  json.dumps({**wanted, **extra, "address": address, "port": port}, indent=1) + "\n")
    what = "bare (no numpy, no MNN)" if spec.bare else f"with MNN {spec.mnn_version}"
    log(f"{spec.name}: emulated {spec.cpu} {what} on {address}:{port} ({wanted['network']})")


# -- network namespaces ---------------------------------------------------------------------------------


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


_NETNS_PROBE_LOCK = threading.Lock()


@functools.lru_cache(maxsize=None)
def netns_available() -> bool:
    """Whether this process may create network namespaces (root with iproute2, not in a locked sandbox).

    Probed once per process by creating and deleting a namespace: nothing
    short of trying tells a sandbox that forbids it apart.
    """
    if os.geteuid() != 0 or not shutil.which("ip"):
        return False
    # Boards start in parallel threads: one probe at a time, or two threads
    # share the probe's name and one of them wrongly concludes "not allowed".
    with _NETNS_PROBE_LOCK:
        probe = f"{NETNS_PREFIX}probe-{os.getpid()}"
        if _ip("netns", "add", probe).returncode != 0:
            return False
        _ip("netns", "del", probe)
        return True


def _resolve_network(spec: EmulatedBoardSpec) -> str:
    if spec.network == "auto":
        return "netns" if netns_available() else "loopback"
    if spec.network == "netns" and not netns_available():
        raise BoardError(f"board {spec.name}: asks for its own network namespace, and this process may not "
                         f"create one (it needs root and iproute2); run as root or set network: loopback")
    return spec.network


def _allocate_slot(name: str) -> int:
    """The board's slot (its address 169.254.SLOT.2 and its user mnn-board-SLOT), machine-wide unique.

    Chosen under this cache's lock and a machine-wide lock in RUN_ROOT, among
    the slots no other board holds: another board of this cache (its slot
    file), any running board of any cache (its claim in RUN_ROOT/slots), any
    namespace of another board (boards started by earlier versions have no
    claim but have their namespace). The board's own slot is kept when free,
    so its address, and the known_hosts lines naming it, survive restarts.
    """
    with locked(farm_dir() / ".slots.lock"), locked(RUN_ROOT / "slots.lock"):
        mine = _slot_of(name)
        taken = _slots_taken(name)
        slot = mine if mine and mine not in taken else next((n for n in range(1, MAX_SLOTS) if n not in taken), None)
        if slot is None:
            raise BoardError(f"more than {MAX_SLOTS - 1} emulated boards on this machine; remove some with "
                             f"`harness farm down` and delete their directories under {farm_dir()}")
        _write_atomic(state_dir(name) / "slot", f"{slot}\n")
        (RUN_ROOT / "slots").mkdir(parents=True, exist_ok=True)
        _write_atomic(RUN_ROOT / "slots" / str(slot), str(state_dir(name)) + "\n")
        return slot


def _slots_taken(name: str) -> set:
    me = str(state_dir(name))
    taken = {_slot_of(other.name) for other in farm_dir().iterdir()
             if other.is_dir() and _NAME.fullmatch(other.name) and other.name != name}
    claims = RUN_ROOT / "slots"
    if claims.is_dir():
        for claim in claims.iterdir():
            try:
                owner = claim.read_text().strip()
            except OSError:
                continue
            if claim.name.isdigit() and owner != me and _sshd_of(Path(owner)) is not None:
                taken.add(int(claim.name))
    for namespace, slot in _board_namespaces():
        if namespace != _namespace(name, slot) or _namespace_used_by_another(namespace, name):
            taken.add(slot)
    taken.discard(None)
    return taken


def _board_namespaces() -> List[tuple]:
    """(name, slot) of every board namespace on this machine, whatever cache started it."""
    found = []
    for line in _ip("netns", "list").stdout.splitlines():
        words = line.split()
        match = re.fullmatch(rf"{NETNS_PREFIX}(\d+)-.*", words[0]) if words else None
        if match:
            found.append((words[0], int(match.group(1))))
    return found


def _namespace_used_by_another(namespace: str, name: str) -> bool:
    """A namespace named like ours whose sshd listener is another cache's board of the same name.

    Sessions and agents left from our own board's last life do not count: only a listener whose config is
    not ours does.
    """
    ours = str(state_dir(name) / "sshd_config").encode()
    for pid in _ip("netns", "pids", namespace).stdout.split():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"/sshd_config" in command and ours not in command:
            return True
    return False


def _slot_of(name: str) -> Optional[int]:
    """A board's slot: its slot file, else (boards started before slot files) its state."""
    try:
        return int((state_dir(name) / "slot").read_text())
    except (OSError, ValueError):
        slot = (_read_state(name) or {}).get("slot")
        return int(slot) if slot else None


def _namespace(name: str, slot: int) -> str:
    return f"{NETNS_PREFIX}{slot}-{name}"[:48]


def _create_namespace(name: str, slot: int) -> str:
    """A network namespace with a veth pair 169.254.SLOT.1/30 (host) <-> 169.254.SLOT.2/30 (board).

    Traffic to the board stays on that veth: nothing is routed anywhere else.
    """
    namespace = _namespace(name, slot)
    _delete_namespace(namespace, slot)  # a leftover of a board that died
    host_if, board_if = f"mhv{slot}h", f"mhv{slot}b"
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
            _delete_namespace(namespace, slot)
            raise BoardError(f"{name}: `ip {' '.join(step)}` failed: {completed.stderr.strip()}; "
                             f"set network: loopback for this board if namespaces cannot work here")
    return namespace


def _delete_namespace(namespace: str, slot: Optional[int]) -> None:
    """Remove the namespace and the host end of its veth pair (deleting either end deletes both)."""
    _ip("netns", "del", namespace)
    if slot:
        _ip("link", "del", f"mhv{slot}h")


def _keygen(path: Path, comment: str) -> None:
    """An ed25519 key pair at path, made once: the board's identity must survive restarts."""
    if path.is_file() and path.with_name(path.name + ".pub").is_file():
        return
    completed = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                               capture_output=True, text=True, input="y\n", timeout=30)
    if completed.returncode != 0:
        raise BoardError(f"ssh-keygen could not write {path}: {completed.stderr.strip()}")


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """A session or reader starting right now must never see half a file; an unchanged file is left alone."""
    try:
        if path.read_text() == text and (path.stat().st_mode & 0o777) == mode:
            return
    except OSError:
        pass
    write_atomic(path, text, mode)


def _write_scripts(spec: EmulatedBoardSpec, side: Path, sysroot: Path, mnn: Optional[Path], isolated: bool) -> None:
    """bin/python3 (the emulated interpreter) and board-shell (what every SSH session runs), in the board's side.

    An isolated board sees the sysroot and MNN where its namespace mounts them (side/sysroot, side/mnn). The
    board's MNN comes after whatever PYTHONPATH the caller gives, as a system-wide MNN would: a site the harness
    provisions is found first. A bare board has no MNN of its own.
    """
    home = side / "home"
    (side / "bin").mkdir(parents=True, exist_ok=True)
    if isolated:
        sysroot, mnn = side / "sysroot", (side / "mnn" if mnn is not None else None)
    python = " ".join(shlex.quote(arg) for arg in python_command(sysroot, spec.cpu))
    path = f"PYTHONPATH=\"${{PYTHONPATH:+$PYTHONPATH:}}\"{shlex.quote(str(mnn))} " if mnn is not None else ""
    _write_atomic(side / "bin" / "python3", (
        "#!/bin/sh\n"
        f"# aarch64 Python {PYTHON_VERSION} on an emulated {spec.cpu}, "
        + ("bare: no numpy, no MNN\n" if spec.bare else f"MNN {spec.mnn_version}\n")
        + "unset PYTHONHOME PYTHONSTARTUP\n"
        f"{path}PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1 exec {python} \"$@\"\n"),
        mode=0o755)
    link = side / "bin" / f"python{PYTHON_VERSION}"
    if not link.is_symlink():  # absent, or a copy of the wrapper written by an earlier version
        tmp = link.with_name(f"{link.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to("python3")
        os.replace(tmp, link)
    _write_atomic(side / "board-shell", (
        "#!/bin/sh\n"
        f"# ForceCommand of the emulated board {spec.name}: every SSH session, SFTP included, starts here.\n"
        f"export PATH={shlex.quote(str(side / 'bin'))}:/usr/local/bin:/usr/bin:/bin\n"
        f"export HOME={shlex.quote(str(home))}\n"
        f"export QEMU_CPU={shlex.quote(spec.cpu)}\n"
        'cd "$HOME" || exit 1\n'
        'if [ -n "$SSH_ORIGINAL_COMMAND" ]; then exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"; fi\n'
        "exec /bin/sh -l\n"), mode=0o755)


def _config_path(path: Path) -> str:
    """A path as one sshd_config argument (sshd splits arguments on spaces; it understands double quotes)."""
    text = str(path)
    if '"' in text or "\n" in text:
        raise SetupError(f"the cache path {text!r} cannot appear in an sshd_config; set MNN_HARNESS_CACHE to a "
                         f"plainer path")
    return f'"{text}"'


def sshd_config_head(what: str, address: str, port: int, directory: Path, authorized_keys: Path, user: str) -> str:
    """The lines every sshd the harness starts begins with: where it listens, its own key and pid file, and one user
    let in by public key only."""
    return f"""\
# sshd of {what}, written by mnn-harness
ListenAddress {address}:{port}
HostKey {_config_path(directory / "ssh_host_ed25519_key")}
PidFile {_config_path(directory / "sshd.pid")}
AuthorizedKeysFile {_config_path(authorized_keys)}
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers {user}
"""


def _write_config(spec: EmulatedBoardSpec, directory: Path, side: Path, address: str, port: int, user: str,
                  isolated: bool) -> None:
    if isolated:
        strict = ("# the board's user reads only root's files here (and its own workdir): sshd checks their modes\n"
                  "StrictModes yes\nPermitRootLogin no")
    else:
        strict = ("# not root: the board runs as this user, its state under a cache whose modes (a world-writable\n"
                  "# tmp, say) sshd's checks were not written for\nStrictModes no\nPermitRootLogin prohibit-password")
    what = f"the emulated board {spec.name} ({spec.cpu}, {'bare' if spec.bare else 'MNN ' + spec.mnn_version})"
    _write_atomic(directory / "sshd_config", sshd_config_head(what, address, port, directory, side / "authorized_keys",
                                                              user) + f"""\
{strict}
UsePAM no
PermitUserEnvironment no
AllowTcpForwarding no
AllowAgentForwarding no
X11Forwarding no
PrintMotd no
PrintLastLog no
MaxStartups 64
MaxSessions 32
# a host that vanished: its sessions close within 30 s, and with them (their watchdog) its agents
ClientAliveInterval 10
ClientAliveCountMax 3
Subsystem sftp {SFTP_SERVER}
# exec: the session's shell becomes the wrapper (dash runs a -c command as a child otherwise, holding the channel's
# descriptors, so that an agent closing its replies would not end the channel's output)
ForceCommand exec {shlex.quote(str(side / "board-shell"))}
""")


def _wait_for_banner(address: str, port: int) -> None:
    """Wait until sshd answers with its SSH banner, not just until the port is bound."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1.0) as connection:
                if connection.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise BoardError(f"sshd did not answer on {address}:{port} within {START_TIMEOUT_S:g} s")


def _log_tail(path: Path, chars: int = 800) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a daemon's parent, init here, may be slow to reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _terminate(pid: int) -> None:
    """SIGTERM, then SIGKILL if the listener has not gone within STOP_TIMEOUT_S."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass

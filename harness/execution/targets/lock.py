"""A board lock: one run at a time per board, with a holder, an age, waiting and stale-lock detection.

The lock is a directory on the board (`mkdir` is atomic over SFTP as on any
POSIX file system) holding holder.json: who (host, pid, run id), since when,
until when it may reasonably be held, the job directory it works in and,
once started, its agent's pid and process group on the board.

A lock is stale when its holder is a process of this machine that no longer
exists, when it has outlived its expiry, or when it has no holder file a
minute after it was made (a crash between mkdir and write); but never while
the holder's AGENT still runs on the board (checked there, by the job
directory in the process's command line): a host process can die and leave
its agent running, and two agents on one board would share its CPU and
double its timings. An expired lock's agent is killed before the lock is
broken. A stale lock is moved aside atomically, so two runs that both find it
stale cannot both take it.
"""

import json
import os
import posixpath
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from ...core.errors import BoardError, Interrupted

LOCK_TIMEOUT_S = 300.0
"""How long a run waits for another run's lock on a board before it gives up on that board (--lock-timeout)."""
POLL_S = 1.0
HOLDERLESS_GRACE_S = 60.0

_HELD: set = set()
"""(lock dir, run id) of the locks this process holds now: a lock of this very process that is not among them
was left by one of its earlier runs that lost its connection (a nightly's next run must not wait for it)."""
_HELD_GUARD = threading.Lock()

AgentState = Callable[[str, bool], str]
"""(job dir, kill) -> "running PID", "killed PID" or "gone": the holder's agent, looked up on the board."""


@dataclass
class Holder:
    host: str
    pid: int
    run_id: str
    since: float
    expires: float
    job: Optional[str] = None
    """The job directory the holder works in (its agent's command line names it)."""
    agent_pid: Optional[int] = None
    agent_pgid: Optional[int] = None

    def describe(self, now: Optional[float] = None) -> str:
        age = (now or time.time()) - self.since
        return f"run {self.run_id} of pid {self.pid} on {self.host}, for {age:.0f} s"


def read_holder(sftp, lock_dir: str) -> Optional[Holder]:
    try:
        with sftp.open(posixpath.join(lock_dir, "holder.json")) as f:
            data = json.loads(f.read(1 << 16).decode())
        holder = Holder(**{k: data[k] for k in ("host", "pid", "run_id", "since", "expires")})
        agent = data.get("agent") or {}
        holder.job = data.get("job") if isinstance(data.get("job"), str) else None
        holder.agent_pid = agent.get("pid") if isinstance(agent.get("pid"), int) else None
        holder.agent_pgid = agent.get("pgid") if isinstance(agent.get("pgid"), int) else None
        if not all(isinstance(getattr(holder, k), (int, float)) for k in ("pid", "since", "expires")):
            return None
        return holder
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def stale_reason(sftp, lock_dir: str, holder: Optional[Holder], now: float,
                 agent_state: Optional[AgentState] = None) -> Tuple[Optional[str], Optional[str]]:
    """(why the lock may be broken, or None; what keeps it, when its holder's agent still runs)."""
    if holder is None:
        try:
            made = sftp.stat(lock_dir).st_mtime
        except OSError:
            return None, None  # released meanwhile
        return ("it has no holder" if now - made > HOLDERLESS_GRACE_S else None), None
    expired = now > holder.expires
    ours = holder.host == socket.gethostname() and holder.pid == os.getpid()
    with _HELD_GUARD:
        abandoned = ours and (lock_dir, holder.run_id) not in _HELD
    if holder.host == socket.gethostname() and not _process_alive(holder.pid):
        reason = f"its holder (pid {holder.pid} on this machine) is gone"
    elif abandoned:
        reason = "an earlier run of this process left it when it lost the board"
    elif expired:
        reason = f"it expired {now - holder.expires:.0f} s ago"
    else:
        return None, None
    if holder.job and agent_state is not None:
        state = agent_state(holder.job, expired)
        if state.startswith("running"):
            return None, f"its agent ({state.split()[-1] if len(state.split()) > 1 else '?'}) still runs on the board"
        if state.startswith("killed"):
            reason += f"; killed its agent (pid {state.split()[-1]}), which still ran"
    return reason, None


class BoardLock:
    def __init__(self, sftp, workdir: str, board: str, run_id: str, hold_for: float, job_dir: Optional[str] = None,
                 agent_state: Optional[AgentState] = None, cancel: Optional[threading.Event] = None):
        self.sftp = sftp
        self.workdir = workdir
        self.lock_dir = posixpath.join(workdir, "lock")
        self.board = board
        self.run_id = run_id
        self.hold_for = hold_for
        self.job_dir = job_dir
        self.agent_state = agent_state
        self.cancel = cancel or threading.Event()
        self.held = False
        self.record: dict = {}

    def acquire(self, timeout: float, on_wait: Callable[[str], None] = lambda message: None) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.cancel.is_set():
                raise Interrupted(f"{self.board}: interrupted while waiting for the board's lock")
            if self._try_mkdir():
                now = time.time()
                self.record = {"host": socket.gethostname(), "pid": os.getpid(), "run_id": self.run_id,
                               "since": now, "expires": now + self.hold_for, "job": self.job_dir}
                self._write_record()
                self.held = True
                with _HELD_GUARD:
                    _HELD.add((self.lock_dir, self.run_id))
                return
            now = time.time()
            holder = read_holder(self.sftp, self.lock_dir)
            reason, keeps = stale_reason(self.sftp, self.lock_dir, holder, now, self.agent_state)
            if reason:
                aside = f"{self.lock_dir}.stale-{os.getpid()}-{int(now)}"
                try:
                    self.sftp.rename(self.lock_dir, aside)
                except OSError:
                    continue  # someone else moved it first
                on_wait(f"broke a stale lock ({reason})")
                self._remove(aside)
                continue
            if time.monotonic() >= deadline:
                who = holder.describe(now) if holder else "a run that is still starting"
                raise BoardError(f"{self.board}: the board is locked by {who}" + (f"; {keeps}" if keeps else "")
                                 + f"; waited {timeout:g} s (--lock-timeout). Wait for it, or, if that run is dead "
                                 + (f"and its agent must go, kill pid {holder.agent_pid or '(see agent.pid)'} and "
                                    if keeps and holder else "on another machine, ")
                                 + f"remove {self.lock_dir} on the board")
            on_wait(f"waiting for the lock held by {holder.describe(now) if holder else 'another run'}"
                    + (f" ({keeps})" if keeps else ""))
            self.cancel.wait(POLL_S)

    def _try_mkdir(self) -> bool:
        """True when this call made the lock dir; False when it exists. A missing workdir is made first."""
        for attempt in range(2):
            try:
                self.sftp.mkdir(self.lock_dir)
                return True
            except FileNotFoundError:
                if attempt:
                    raise BoardError(f"{self.board}: cannot make {self.lock_dir}: its parent does not exist") from None
                self._make_parents(self.workdir)
            except PermissionError as error:
                raise BoardError(f"{self.board}: may not create {self.lock_dir} ({error}); the workdir must be "
                                 "writable by the board's user: fix `workdir` in the inventory") from None
            except OSError:
                return False
        return False

    def _make_parents(self, path: str) -> None:
        """mkdir -p over SFTP: every board gets its workdir on first use (and after a reboot cleared /tmp)."""
        missing = []
        while path not in ("", "/", "."):
            try:
                self.sftp.stat(path)
                break
            except FileNotFoundError:
                missing.append(path)
                path = posixpath.dirname(path)
        for directory in reversed(missing):
            try:
                self.sftp.mkdir(directory)
            except OSError:
                pass  # made meanwhile by another run; the lock's own mkdir will tell

    def _write_record(self) -> None:
        tmp = posixpath.join(self.lock_dir, "holder.json.tmp")
        with self.sftp.open(tmp, "w") as f:
            f.write(json.dumps(self.record).encode())
        self.sftp.posix_rename(tmp, posixpath.join(self.lock_dir, "holder.json"))

    def record_agent(self, pid: int, pgid: int) -> None:
        """Write the agent's pid and process group into holder.json: the lock then lives as long as the agent."""
        if self.held:
            self.record["agent"] = {"pid": pid, "pgid": pgid}
            self._write_record()

    def record_job(self, job_dir: str) -> None:
        """The directory whose agent keeps the lock alive now (a session's one-shot job, or the session's own)."""
        if self.held and self.record.get("job") != job_dir:
            self.job_dir = job_dir
            self.record["job"] = job_dir
            self.record.pop("agent", None)
            self._write_record()

    def extend(self, hold_for: float) -> None:
        """Push the expiry forward: a session that runs job after job for hours still holds a fresh lock."""
        if self.held:
            self.record["expires"] = time.time() + hold_for
            self._write_record()

    def release(self) -> None:
        with _HELD_GUARD:
            _HELD.discard((self.lock_dir, self.run_id))
        if self.held:
            holder = read_holder(self.sftp, self.lock_dir)
            if holder is not None and holder.run_id == self.run_id:
                self._remove(self.lock_dir)
            self.held = False

    def _remove(self, path: str) -> None:
        try:
            for name in self.sftp.listdir(path):
                self.sftp.remove(posixpath.join(path, name))
            self.sftp.rmdir(path)
        except OSError:
            pass

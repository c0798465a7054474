"""A board lock: one run at a time per board, with a holder, an age, waiting and stale-lock detection.

The lock is a directory on the board (`mkdir` is atomic over SFTP as on any
POSIX file system) holding holder.json: who (host, pid, run id), since when,
and until when it may reasonably be held. A lock is stale when its holder is
a process of this machine that no longer exists, when it has outlived its
expiry, or when it has no holder file a minute after it was made (a crash
between mkdir and write). A stale lock is moved aside atomically, so two
runs that both find it stale cannot both take it.
"""

import json
import os
import posixpath
import socket
import time
from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import BoardError

POLL_S = 1.0
HOLDERLESS_GRACE_S = 60.0


@dataclass
class Holder:
    host: str
    pid: int
    run_id: str
    since: float
    expires: float

    def describe(self, now: Optional[float] = None) -> str:
        age = (now or time.time()) - self.since
        return f"run {self.run_id} of pid {self.pid} on {self.host}, for {age:.0f} s"


def read_holder(sftp, lock_dir: str) -> Optional[Holder]:
    try:
        with sftp.open(posixpath.join(lock_dir, "holder.json")) as f:
            data = json.loads(f.read().decode())
        return Holder(**{k: data[k] for k in ("host", "pid", "run_id", "since", "expires")})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_reason(sftp, lock_dir: str, holder: Optional[Holder], now: float) -> Optional[str]:
    if holder is None:
        try:
            made = sftp.stat(lock_dir).st_mtime
        except OSError:
            return None  # released meanwhile
        return "it has no holder" if now - made > HOLDERLESS_GRACE_S else None
    if holder.host == socket.gethostname() and not _process_alive(holder.pid):
        return f"its holder (pid {holder.pid} on this machine) is gone"
    if now > holder.expires:
        return f"it expired {now - holder.expires:.0f} s ago"
    return None


class BoardLock:
    def __init__(self, sftp, workdir: str, board: str, run_id: str, hold_for: float):
        self.sftp = sftp
        self.lock_dir = posixpath.join(workdir, "lock")
        self.board = board
        self.run_id = run_id
        self.hold_for = hold_for
        self.held = False

    def acquire(self, timeout: float, on_wait: Callable[[str], None] = lambda message: None) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sftp.mkdir(self.lock_dir)
            except OSError:
                pass
            else:
                now = time.time()
                holder = {"host": socket.gethostname(), "pid": os.getpid(), "run_id": self.run_id,
                          "since": now, "expires": now + self.hold_for}
                with self.sftp.open(posixpath.join(self.lock_dir, "holder.json"), "w") as f:
                    f.write(json.dumps(holder).encode())
                self.held = True
                return
            now = time.time()
            holder = read_holder(self.sftp, self.lock_dir)
            reason = stale_reason(self.sftp, self.lock_dir, holder, now)
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
                raise BoardError(f"{self.board}: the board is locked by {who}; waited {timeout:g} s "
                                 "(--lock-timeout). Wait for it, or, if that run is dead on another "
                                 f"machine, remove {self.lock_dir} on the board")
            on_wait(f"waiting for the lock held by {holder.describe(now) if holder else 'another run'}")
            time.sleep(POLL_S)

    def release(self) -> None:
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

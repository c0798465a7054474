"""One board's SSH connection and what travels over it: remote scripts, uploads, capped downloads.

How the board is reached (straight, through jump hosts, through a ProxyCommand), how every host key on the way
is checked and how a death on the way is noticed: route.py. This module is what a board session does over that
route: run one of remote.py's scripts with its output bounded and its wait interruptible, send a file to a
temporary name and rename it (a full disk said as such), fetch what the agent left within each file's cap (a
symbolic link or an oversized file refused unread; of the log only its end), and name what a dropped
connection means (a jump host lost on the way, a board that stopped answering, a stalled transfer).
"""

import logging
import posixpath
import socket
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import paramiko
from fabric import Connection

from ...core.board_files import LOG_KEEP_BYTES, clean_text, human_size
from ...core.endpoint import SshEndpoint
from ...core.errors import BoardError, BoardResultError, Interrupted, JumpHostError
from ...config.inventory import BoardSpec
from ...core.job import AGENT_LOG, RESULT_FILES, Job
from ...core.results import TargetResult
from . import remote
from .remote import BoardPaths
from .route import BoardSilent, HopLost, Route, RouteHeartbeat, plan_route

log = logging.getLogger(__name__)
"""The commands run on the board and how they ended, for `-v`/`--debug` (paramiko logs the SSH beneath)."""

OUTPUT_MAX = 1 << 20
"""Bytes kept of a helper command's stdout or stderr; the agent's own output goes to its log file."""
EOF_GRACE_S = 5.0
"""How long a helper script's output may trail its exit status (sshd sends the status first, at times)."""
CHUNK = 1 << 20


@dataclass
class BoardConnection:
    """An open connection to a board and where things live on it."""

    endpoint: SshEndpoint
    connection: Connection
    sftp: paramiko.SFTPClient
    route: Route
    """The legs to the board: its own connection last, the jump hosts (if any) before it."""
    paths: BoardPaths = field(init=False)

    def __post_init__(self) -> None:
        self.paths = BoardPaths(self.endpoint.workdir)

    @property
    def workdir(self) -> str:
        return self.paths.workdir

    @property
    def store(self) -> str:
        return self.paths.store

    @property
    def transport(self) -> paramiko.Transport:
        transport = self.connection.client.get_transport()
        if transport is None:
            raise EOFError("the SSH connection is closed")
        return transport

    @property
    def alive(self) -> bool:
        """The board's connection and every one on the way to it are up."""
        return self.route.alive


@dataclass
class RemoteRun:
    status: int
    stdout: str
    stderr: str


class SshTransport:
    """A board session's connection: opened once, used by every job, closed with the session.

    check() raises Interrupted when the run is being stopped (the session's own check, which names the stage):
    every wait here calls it.
    """

    def __init__(self, spec: BoardSpec, interrupted: threading.Event, check: Callable[[], None]):
        self.spec = spec
        self.interrupted = interrupted
        self.check = check
        self.route: Optional[Route] = None
        """The connections to the board (jump hosts first), open or opening; abort() closes them."""
        self.board: Optional[BoardConnection] = None

    @property
    def name(self) -> str:
        return self.spec.name

    # -- connecting ------------------------------------------------------------------------------------

    def open(self, endpoint: SshEndpoint, port: Optional[int], straight: bool, result: TargetResult) -> BoardConnection:
        """Open the route to the board (jump hosts and ProxyCommand as the inventory or ~/.ssh/config say;
        straight: ignore them, for a board on this machine), every host key checked, watched for death; then its
        SFTP session."""
        route = plan_route(self.name, endpoint, port, self.spec.connect_timeout, straight=straight)
        self.route = route  # abort() from another thread can close it while it connects
        result.via = route.via
        connection = route.open(self.spec.connect_timeout, self.interrupted, result.notes)
        route.watch_for_death(self.spec.dead_after)
        for line in route.accepted:
            result.notes.append(f"host key accepted on first use (trust_on_first_use): {line}")
        sftp = connection.sftp()
        # Without a timeout a stalled transfer hangs this board's thread forever.
        sftp.get_channel().settimeout(self.spec.transfer_timeout)
        self.board = BoardConnection(endpoint, connection, sftp, route)
        return self.board

    def close(self) -> None:
        self.board = None
        route, self.route = self.route, None
        if route is not None:
            route.close()

    def abort(self) -> None:
        """Close the connections under a board that did not stop in time, nothing more (it may be frozen)."""
        route = self.route
        if route is not None:
            route.close()

    def heartbeat(self) -> RouteHeartbeat:
        """Heartbeats of the board and of every jump host on the way, for a long wait (a job)."""
        return self.board.route.heartbeat(max(1.0, self.spec.dead_after / 3))

    def check_heartbeat(self, heartbeat: RouteHeartbeat) -> None:
        """HopLost or BoardSilent (EOFErrors) once something on the way has been silent for dead_after; the
        connections are closed first, which also ends the heartbeats' threads."""
        try:
            heartbeat.check(self.spec.dead_after)
        except EOFError:
            self.board.route.close()
            raise

    def error(self, error: BaseException, stage: str, elapsed: float) -> Exception:
        """What a connection error during a stage means, in words: interrupted, a jump host (or the ProxyCommand)
        on the way died, the board stopped answering, a stalled transfer."""
        board = self.board
        if self.interrupted.is_set():
            return Interrupted(f"{self.name}: interrupted during {stage}")
        # BoardSilent: every hop on the way still answered its heartbeat (the route was closed after that).
        lost = error if isinstance(error, HopLost) else None if isinstance(error, BoardSilent) or board is None \
            else board.route.lost_on_the_way()
        if lost is not None:
            return JumpHostError(f"{self.name}: {lost.who} was lost during {stage} after {elapsed:.0f} s "
                                 f"({lost.why}); the board behind it was cut off with it and may be fine: check "
                                 f"{lost.short}" + ("" if "dead_after" in lost.why
                                                    else f" (dead_after={self.spec.dead_after:g} s)"))
        dead = board is None or not board.alive
        if isinstance(error, socket.timeout) and not dead:
            return BoardError(f"{self.name}: no progress for {self.spec.transfer_timeout:g} s (transfer_timeout) "
                              f"during {stage}; the board or its network stalled")
        if dead or isinstance(error, EOFError) or "closed" in str(error).lower():
            why = str(error) if str(error).startswith("no answer") else "the connection dropped"
            return BoardError(f"{self.name}: the board stopped answering during {stage} after {elapsed:.0f} s "
                              f"({why}); it lost power or network, or hung"
                              + ("" if "dead_after" in why else f" (dead_after={self.spec.dead_after:g} s)")
                              + (board.route.still_there() if board else ""))
        return BoardError(f"{self.name}: {stage} failed: {type(error).__name__}: {error}")

    # -- remote commands -------------------------------------------------------------------------------

    def exec_script(self, script: str, args: List[str], what: str, timeout: Optional[float] = None,
                    check: bool = True, interruptible: bool = True, watched: bool = False) -> RemoteRun:
        """Run one of remote's scripts; its output bounded, its wait interruptible; BoardError on failure.

        interruptible=False for the clean-up that must run after an interruption; watched=True for a script
        with a watchdog on its stdin (remote.PROBE): stdin stays open until the channel closes.
        """
        board = self.board
        timeout = timeout or self.spec.connect_timeout * 4
        channel = board.transport.open_session(timeout=self.spec.connect_timeout)
        log.info("%s: %s", self.name, what)
        log.debug("%s: exec %s", self.name, remote.sh(script, args))
        try:
            channel.exec_command(remote.sh(script, args))
            if not watched:
                channel.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            drained_by = None
            while True:
                # sshd sends the exit status when the script's process is reaped, which can come before the last
                # of its output (a loaded board): the end is the exit status and the channel's EOF (or its close),
                # waited for briefly in case something the script left behind still holds its stdout. The end is
                # read before the buffers: paramiko buffers what came before an EOF first, so none of it is lost.
                exited = channel.exit_status_ready()
                ended = exited and (channel.eof_received or channel.closed)
                got = False
                while channel.recv_ready():
                    data = channel.recv(65536)
                    out += data[:max(0, OUTPUT_MAX - len(out))]
                    got = True
                while channel.recv_stderr_ready():
                    data = channel.recv_stderr(65536)
                    err += data[:max(0, OUTPUT_MAX - len(err))]
                    got = True
                if exited:
                    drained_by = drained_by or time.monotonic() + EOF_GRACE_S
                    if ended or (not got and time.monotonic() > drained_by):
                        break
                if time.monotonic() > deadline:
                    raise BoardError(f"{self.name}: {what} did not finish on the board within {timeout:g} s")
                if got:
                    continue
                if interruptible:
                    self.check()
                if (channel.closed and not channel.exit_status_ready()) or not board.alive:
                    raise EOFError("the SSH channel closed")
                if exited:
                    time.sleep(0.01)  # the status event stays set: waiting on it would spin until the EOF
                else:
                    channel.status_event.wait(0.01)
            status = channel.recv_exit_status()
        finally:
            channel.close()
        run = RemoteRun(status, clean_text(out.decode("utf-8", "replace")), clean_text(err.decode("utf-8", "replace")))
        log.info("%s: %s: exit %s", self.name, what, status)
        log.debug("%s: stdout %r stderr %r", self.name, run.stdout[-2000:], run.stderr[-2000:])
        if check and status != 0:
            raise BoardError(f"{self.name}: {what} failed on the board (exit {status}): "
                             f"{(run.stderr or run.stdout).strip()[-400:]}")
        return run

    def prepare_workdir(self, result: Optional[TargetResult]) -> bool:
        """Make the workdir with its parents (a new board, /tmp after a reboot); True if it was not there."""
        workdir = self.board.workdir
        run = self.exec_script(remote.PREPARE, [workdir], "making the workdir")
        created = "created" in run.stdout.split()
        if created and result is not None:
            result.notes.append(f"the workdir {workdir} did not exist (a new board, or /tmp cleared by a "
                                "reboot): made it")
        return created

    def agent_state(self, job_dir: str, kill: bool) -> str:
        """Whether the agent of a job dir still runs on the board (killing it when asked): for the lock."""
        try:
            job_dir = self.board.paths.under(job_dir)
        except BoardError:
            return "gone"  # a holder.json naming a path outside the workdir names no agent of ours
        run = self.exec_script(remote.AGENT_STATE, [job_dir, "kill" if kill else ""], "checking an agent",
                               check=False)
        return run.stdout.strip() or "gone"

    def free_kb(self, directory: str) -> Optional[int]:
        try:
            text = self.exec_script(remote.DISK_FREE, [directory], "df", check=False).stdout.strip()
        except (BoardError, OSError, EOFError, paramiko.SSHException):
            return None
        return int(text) if text.isdigit() else None

    def end_job(self, job_dir: str, what: str) -> None:
        """Remove a job's (or the session's) dir, its agent killed if it still runs; best effort, even after an
        interruption: the next run cleans what a dead connection leaves."""
        try:
            if self.board is not None and self.board.alive:
                self.exec_script(remote.END_JOB, [job_dir], what, timeout=15, check=False, interruptible=False)
        except (BoardError, Interrupted, OSError, EOFError, paramiko.SSHException):
            pass

    # -- files -----------------------------------------------------------------------------------------

    def put(self, local: Path, target: str) -> int:
        """Upload to target.partial and rename it over target; the bytes moved. A full disk says so."""
        board = self.board
        size = local.stat().st_size
        partial = f"{target}.partial"

        def progress(done: int, total: int) -> None:
            self.check()

        try:
            board.sftp.put(str(local), partial, callback=progress)
            board.sftp.posix_rename(partial, target)
        except Interrupted:
            self.remove_quietly(partial)
            raise
        except OSError as error:
            if not board.alive:
                raise
            self.remove_quietly(partial)
            directory = posixpath.dirname(target)
            free = self.free_kb(directory)
            if free is not None and free * 1024 < size + 64 * 1024:
                raise BoardError(f"{self.name}: the board's disk is full: {free / 1024:.1f} MB free in {directory}, "
                                 f"and {local.name} needs {size / 1e6:.1f} MB. Free space there (`harness boards "
                                 "--clean` removes leftovers and trims the store), or lower store_max_mb") from None
            raise BoardError(f"{self.name}: uploading {local.name} to {target} failed: {error}"
                             + (f" ({free / 1024:.1f} MB free there)" if free is not None else "")) from None
        return size

    def remove_quietly(self, path: str) -> None:
        try:
            self.board.sftp.remove(path)
        except (OSError, EOFError, paramiko.SSHException):
            pass

    def download(self, job: Job, job_dir: str, local_dir: Path, result: TargetResult) -> None:
        """Fetch what the agent left: lstat first (a symlink or an oversized file is refused unread), then
        at most the file's cap; of the log only its end."""
        board = self.board
        for name in (*RESULT_FILES, AGENT_LOG):
            (local_dir / name).unlink(missing_ok=True)
        entries = {entry.filename: entry for entry in board.sftp.listdir_attr(job_dir)}
        agent_log = entries.get(AGENT_LOG)
        if agent_log is not None and stat.S_ISREG(agent_log.st_mode or 0):
            result.bytes_downloaded += self.fetch_log_tail(f"{job_dir}/{AGENT_LOG}", agent_log.st_size or 0,
                                                           local_dir / AGENT_LOG)
        limits = job.limits()
        for name in RESULT_FILES:
            entry = entries.get(name)
            if entry is None:
                continue
            mode = entry.st_mode or 0
            if stat.S_ISLNK(mode):
                raise BoardResultError(f"{name} on the board is a symbolic link; a board must send a regular file")
            if not stat.S_ISREG(mode):
                raise BoardResultError(f"{name} on the board is not a regular file")
            if (entry.st_size or 0) > limits[name]:
                raise BoardResultError(f"{name} on the board is {human_size(entry.st_size or 0)}, more than the "
                                       f"{human_size(limits[name])} it can be for this job: refused unread")
            result.bytes_downloaded += self.fetch(job_dir + "/" + name, entry.st_size or 0, local_dir / name,
                                                  limits[name])

    def fetch(self, source: str, size: int, destination: Path, limit: int) -> int:
        """Copy a remote file, never more than limit bytes (it may still grow while we read)."""
        copied = 0
        with self.board.sftp.open(source, "rb") as remote_file, open(destination, "wb") as local_file:
            remote_file.prefetch(min(size, limit))
            while True:
                self.check()
                chunk = remote_file.read(min(CHUNK, limit + 1 - copied))
                if not chunk:
                    break
                copied += len(chunk)
                if copied > limit:
                    raise BoardResultError(f"{posixpath.basename(source)} grew beyond {human_size(limit)} while "
                                           "it was fetched: refused")
                local_file.write(chunk)
        return copied

    def fetch_log_tail(self, source: str, size: int, destination: Path) -> int:
        """The last LOG_KEEP_BYTES of the agent's log, cleaned of control characters; what was skipped is said."""
        skipped = max(0, size - LOG_KEEP_BYTES)
        data = bytearray()
        with self.board.sftp.open(source, "rb") as remote_file:
            remote_file.seek(skipped)
            remote_file.prefetch(min(size - skipped, LOG_KEEP_BYTES))
            while len(data) < LOG_KEEP_BYTES:
                chunk = remote_file.read(min(CHUNK, LOG_KEEP_BYTES - len(data)))
                if not chunk:
                    break
                data += chunk
        header = f"[{skipped} bytes of the agent's output before this were not kept]\n" if skipped else ""
        destination.write_text(header + clean_text(data.decode("utf-8", "replace")))
        return len(data)

    def fetch_log_quietly(self, job_dir: str, local_dir: Path, result: TargetResult) -> None:
        """The end of a dead agent's log, for the job's error; nothing if there is none."""
        try:
            entry = self.board.sftp.lstat(f"{job_dir}/{AGENT_LOG}")
            if stat.S_ISREG(entry.st_mode or 0):
                result.bytes_downloaded += self.fetch_log_tail(f"{job_dir}/{AGENT_LOG}", entry.st_size or 0,
                                                               local_dir / AGENT_LOG)
        except (OSError, EOFError, paramiko.SSHException):
            pass

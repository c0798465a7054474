"""A board over SSH (fabric): upload what is missing, run the agent, download the results.

How the board is reached (straight, through jump hosts, through a
ProxyCommand), how every host key on the way is checked and how a death on
the way is noticed and named: route.py.

A board session, once for all its jobs: connect; make the workdir (a new
board, or /tmp after a reboot); take the board's lock; in one remote call
clean what earlier runs left (job dirs whose agent is gone, partial uploads),
make the session's dir and hash the store files the first job needs; start
the resident agent (`--serve`) in the session's dir under a watchdog that
kills it when its channel closes.

Then each job: the store files this session has not checked yet are hashed in
one remote call (none once it knows them); least recently used store files
beyond `store_max_mb` are evicted and what is missing or differs is sent; one
request to the agent (it makes the job's dir, writes job.json, runs it, and
removes the previous job's dir); the results are fetched within their size
caps. The session ends by closing the agent's channel, removing the session's
dir and releasing the lock. An agent that cannot serve (no hello) and
`resident: false` run each job one-shot instead (its own dir, `AGENT
JOB_DIR` under AGENT_RUN's watchdog), on the same connection and lock. The
agent is one file in the store, the bundle of agent_bundle (mnn_agent-<sha16>.pyz). Unless the inventory
says `mnn: system`, the session also brings MNN there (provision.py): the board's Python is probed after
the lock, the sites of the job's MNN version made if missing, and the agent started with them on its path
(a resident agent per version).

Nothing blocks for long without checking `interrupted`: a Ctrl-C stops a
board within a fraction of a second, its agent killed, its job dir removed
and its lock released.
"""

import dataclasses
import json
import logging
import os
import posixpath
import secrets
import select
import socket
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import paramiko
from fabric import Connection

from ...core.agent_bundle import bundle
from ...core.board_files import LOG_KEEP_BYTES, PROBE_JSON_MAX, check_probe, clean_text, human_size
from ...core.cache import sha256_file
from ...core.endpoint import SshEndpoint
from ...core.errors import BoardError, BoardResultError, Interrupted, JumpHostError
from ...core.job import Job
from ...core.results import TargetResult
from ..agent_protocol import Hello, run_request
from . import remote
from .base import StageCallback, Target
from .provision import Provisioner, list_sites, remove_sites
from .lock import BoardLock, read_holder
from .remote import BoardPaths, Leftovers, StoreFile
from .resident import AgentCannotServe, AgentLink, ResidentAgent, run_on, session_agent
from .route import BoardSilent, HopLost, Route, RouteHeartbeat, plan_route

log = logging.getLogger(__name__)
"""The commands run on the board and how they ended, for `-v`/`--debug` (paramiko logs the SSH beneath)."""

RESULT_FILES = ("result.json", "outputs.npz", "preprocessed.npz", "dump.json", "dump.npz")
"""What the agent may leave in a job directory for the host to fetch."""
POLL_S = 0.2
EOF_GRACE_S = 5.0
"""How long a helper script's output may trail its exit status (sshd sends the status first, at times)."""
OUTPUT_MAX = 1 << 20
"""Bytes kept of a helper command's stdout or stderr; the agent's own output goes to its log file."""
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


class ChannelLink(AgentLink):
    """A resident agent's SSH channel (remote.SERVE); closing it is the kill switch on the board."""

    def __init__(self, channel: paramiko.Channel):
        self.channel = channel

    def send(self, data: bytes) -> None:
        self.channel.sendall(data)

    def receive(self, wait: float) -> bytes:
        while self.channel.recv_stderr_ready():  # the wrapper's own complaints; the agent's go to serve.log
            self.channel.recv_stderr(65536)
        if not self.channel.recv_ready():
            select.select([self.channel], [], [], wait)
        return self.channel.recv(65536) if self.channel.recv_ready() else b""

    def exit_status(self) -> Optional[int]:
        if self.channel.exit_status_ready():
            return self.channel.exit_status
        return 255 if self.channel.closed else None

    def replies_ended(self) -> bool:
        # sshd sends EOF once nothing on the board holds the channel's output: remote.SERVE leaves only the agent.
        return self.channel.eof_received and not self.channel.recv_ready()

    def close(self) -> None:
        self.channel.close()


class SshTarget(Target):
    """A board over SSH, as a session: one connection, its lock, its session dir and a resident agent for
    every job until close()."""

    def __init__(self, board, lock_timeout: float = 300.0):
        super().__init__(board, lock_timeout)
        self.route: Optional[Route] = None
        """The connections to the board (jump hosts first), open or opening; abort() closes them."""
        self.remote: Optional[BoardConnection] = None
        self.lock: Optional[BoardLock] = None
        self.locked_at: Optional[float] = None
        self.lock_written = 0.0
        self.session_dir: Optional[str] = None
        """<workdir>/jobs/<session id>: the resident agent runs there (its command line names it), its jobs'
        dirs are made inside, and it is removed with the session."""
        self.store_state: Dict[str, Optional[str]] = {}
        """Store file -> its SHA-256 on the board as this session last saw it (None: not there)."""
        self.agent: Optional[ResidentAgent] = None
        self.one_shot: Optional[str] = None if board.resident else "resident: false in the inventory"
        """Why this session runs an agent process per job, or None (a resident agent)."""
        self.died: Optional[str] = None
        """Why the last resident agent ended, told with the next job (which runs on a fresh one)."""
        self.done_dirs: List[str] = []
        """Job dirs of the session that the next request removes."""
        self.broken: Optional[str] = None
        """Why the session could not be opened: every later job fails with it, at once."""
        self.provisioner = Provisioner(self)
        """The MNN this session brings to the board (unless the inventory says `mnn: system`)."""
        self.agent_runtime: Optional[Tuple[str, ...]] = None
        """The command prefix the resident agent was started with (which MNN it imports)."""

    def endpoint(self) -> SshEndpoint:
        board = self.board
        if board.kind == "emulated":
            from ...emulation.board import emulated_spec, ensure_running

            # `python:` of the inventory holds for an emulated board too (its bin/python3 unless told otherwise).
            return dataclasses.replace(ensure_running(emulated_spec(board), log=lambda message: None),
                                       python=board.python)
        return SshEndpoint(host=board.host, port=board.port or 22, user=board.user,
                           key_filename=str(Path(board.key).expanduser()) if board.key else None,
                           known_hosts=board.known_hosts, trust_on_first_use=board.trust_on_first_use,
                           python=board.python, workdir=board.workdir, jump=board.jump)

    def expected_mnn_version(self, job: Job) -> Optional[str]:
        """A provisioned board runs the version its sites hold; a `mnn: system` one what the run asks, if anything."""
        return self.provisioner.expected_version() or job.mnn_version

    def ssh_port(self, endpoint: SshEndpoint) -> Optional[int]:
        """The port to connect to; None lets ~/.ssh/config (or 22) decide, for an inventory that names none."""
        return endpoint.port if self.board.kind == "emulated" or self.board.port else None

    # -- connecting ------------------------------------------------------------------------------------

    def connect(self, endpoint: SshEndpoint, result: TargetResult) -> Connection:
        """Open the route to the board (jump hosts and ProxyCommand as the inventory or ~/.ssh/config say; an
        emulated board straight), every host key checked, and watch it for death; the board's Connection."""
        route = plan_route(self.name, endpoint, self.ssh_port(endpoint), self.board.connect_timeout,
                           straight=self.board.kind == "emulated")
        self.route = route  # abort() from another thread can close it while it connects
        result.via = route.via
        connection = route.open(self.board.connect_timeout, self.interrupted, result.notes)
        route.watch_for_death(self.board.dead_after)
        for line in route.accepted:
            result.notes.append(f"host key accepted on first use (trust_on_first_use): {line}")
        return connection

    def open_board(self, result: TargetResult) -> BoardConnection:
        endpoint = self.endpoint()
        connection = self.connect(endpoint, result)
        sftp = connection.sftp()
        # Without a timeout a stalled transfer hangs this board's thread forever.
        sftp.get_channel().settimeout(self.board.transfer_timeout)
        self.remote = BoardConnection(endpoint, connection, sftp, self.route)
        return self.remote

    # -- remote commands -------------------------------------------------------------------------------

    def exec_script(self, board: BoardConnection, script: str, args: List[str], what: str,
                    timeout: Optional[float] = None, check: bool = True, interruptible: bool = True,
                    watched: bool = False) -> RemoteRun:
        """Run one of remote's scripts; its output bounded, its wait interruptible; BoardError on failure.

        interruptible=False for the clean-up that must run after an interruption; watched=True for a script
        with a watchdog on its stdin (remote.PROBE): stdin stays open until the channel closes.
        """
        timeout = timeout or self.board.connect_timeout * 4
        channel = board.transport.open_session(timeout=self.board.connect_timeout)
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
                got = False
                while channel.recv_ready():
                    data = channel.recv(65536)
                    out += data[:max(0, OUTPUT_MAX - len(out))]
                    got = True
                while channel.recv_stderr_ready():
                    data = channel.recv_stderr(65536)
                    err += data[:max(0, OUTPUT_MAX - len(err))]
                    got = True
                if got:
                    continue
                if channel.exit_status_ready():
                    # sshd sends the exit status when the script's process is reaped, which can come before the
                    # last of its output (a loaded board): read on to the channel's EOF (or its close), briefly,
                    # in case something the script left behind still holds its stdout.
                    drained_by = drained_by or time.monotonic() + EOF_GRACE_S
                    if channel.eof_received or channel.closed or time.monotonic() > drained_by:
                        if not (channel.recv_ready() or channel.recv_stderr_ready()):
                            break
                        continue
                    select.select([channel], [], [], 0.05)  # the status event is set already: wait on the data
                    continue
                if time.monotonic() > deadline:
                    raise BoardError(f"{self.name}: {what} did not finish on the board within {timeout:g} s")
                if interruptible:
                    self.check_interrupted()
                if channel.closed or not board.alive:
                    raise EOFError("the SSH channel closed")
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

    def prepare_workdir(self, board: BoardConnection, result: Optional[TargetResult]) -> bool:
        """Make the workdir with its parents (a new board, /tmp after a reboot); True if it was not there."""
        run = self.exec_script(board, remote.PREPARE, [board.workdir], "making the workdir")
        created = "created" in run.stdout.split()
        if created and result is not None:
            result.notes.append(f"the workdir {board.workdir} did not exist (a new board, or /tmp cleared by a "
                                "reboot): made it")
        return created

    def agent_state(self, board: BoardConnection, job_dir: str, kill: bool) -> str:
        """Whether the agent of a job dir still runs on the board (killing it when asked): for the lock."""
        try:
            job_dir = board.paths.under(job_dir)
        except BoardError:
            return "gone"  # a holder.json naming a path outside the workdir names no agent of ours
        run = self.exec_script(board, remote.AGENT_STATE, [job_dir, "kill" if kill else ""], "checking an agent",
                               check=False)
        return run.stdout.strip() or "gone"

    def free_kb(self, board: BoardConnection, directory: str) -> Optional[int]:
        try:
            text = self.exec_script(board, remote.DISK_FREE, [directory], "df", check=False).stdout.strip()
        except (BoardError, OSError, EOFError, paramiko.SSHException):
            return None
        return int(text) if text.isdigit() else None

    # -- the session -----------------------------------------------------------------------------------

    def run_impl(self, job: Job, local_dir: Path, on_stage: StageCallback, result: TargetResult) -> None:
        if self.broken is not None:
            raise BoardError(self.broken)
        try:
            board = self.remote
            if board is None or not board.alive:
                if board is not None:
                    self.close()
                    result.notes.append("the connection to the board was lost during an earlier job: reconnected")
                board = self.open_session(job, on_stage, result)
            result.via = board.route.via
            self.run_job(board, job, local_dir, on_stage, result)
        except (OSError, EOFError, paramiko.SSHException) as error:
            raise self.transport_error(error, self.remote) from error

    def open_session(self, job: Job, on_stage: StageCallback, result: TargetResult) -> "BoardConnection":
        """Connect, make the workdir, take the board's lock, clean what earlier runs left and check the store,
        once for all the session's jobs. A board that cannot be opened stays broken for the session: its
        later jobs fail at once with the same reason (a lock held by someone else is not waited for again)."""
        try:
            return self._open_session(job, on_stage, result)
        except Interrupted:
            self.close()
            raise
        except (BoardError, OSError, EOFError, paramiko.SSHException) as error:
            failure = error if isinstance(error, BoardError) else self.transport_error(error, self.remote)
            self.close()
            if not self.interrupted.is_set():
                self.broken = str(failure)
            raise failure from error
        except BaseException:
            self.close()
            raise

    def _open_session(self, job: Job, on_stage: StageCallback, result: TargetResult) -> "BoardConnection":
        self.enter("connect", on_stage)
        started = time.perf_counter()
        board = self.open_board(result)
        self.prepare_workdir(board, result)
        result.timings["connect"] = time.perf_counter() - started
        self.enter("lock", on_stage)
        started = time.perf_counter()
        session_id = f"s{os.getpid()}-{secrets.token_hex(4)}-{remote.safe_name(job.id, 100)}"
        session_dir = board.paths.job_dir(session_id)
        lock = BoardLock(board.sftp, board.workdir, self.name, session_id, hold_for=self.hold_for,
                         job_dir=session_dir, agent_state=lambda directory, kill: self.agent_state(board, directory,
                                                                                                   kill),
                         cancel=self.interrupted)
        lock.acquire(self.lock_timeout, on_wait=on_stage)
        self.lock, self.locked_at, self.lock_written = lock, time.time(), time.monotonic()
        result.timings["lock"] = time.perf_counter() - started
        if self.provisioner.enabled:
            self.provisioner.python(board)  # a board that cannot run MNN's wheels fails before anything is sent
        # One remote call: clean what earlier runs left (we hold the lock), make the session's dir, and hash
        # the agent and this first job's files in the store.
        self.enter("upload", on_stage)
        started = time.perf_counter()
        files = [self.agent_file(job.agent()), *self.job_files(job)]
        leftovers, hashes, links = self.begin_job(board, session_id, [item.name for item in files])
        if leftovers.describe():
            result.notes.append(f"cleaned up after earlier runs: {leftovers.describe()}")
        if links:
            result.notes.append(f"store entries that were symbolic links were removed: {', '.join(links)}")
        self.store_state = {item.name: hashes.get(item.name) for item in files}
        self.session_dir = session_dir
        result.timings["upload"] = time.perf_counter() - started
        return board

    def transport_error(self, error: BaseException, board: Optional[BoardConnection]) -> Exception:
        """What a connection error means, in words: interrupted, a jump host (or the ProxyCommand) on the way
        died, the board stopped answering, a stalled transfer."""
        if self.interrupted.is_set():
            return Interrupted(f"{self.name}: interrupted during {self.stage}")
        elapsed = time.monotonic() - self.stage_started
        # BoardSilent: every hop on the way still answered its heartbeat (the route was closed after that).
        lost = error if isinstance(error, HopLost) else None if isinstance(error, BoardSilent) or board is None \
            else board.route.lost_on_the_way()
        if lost is not None:
            return JumpHostError(f"{self.name}: {lost.who} was lost during {self.stage} after {elapsed:.0f} s "
                                 f"({lost.why}); the board behind it was cut off with it and may be fine: check "
                                 f"{lost.short}" + ("" if "dead_after" in lost.why
                                                    else f" (dead_after={self.board.dead_after:g} s)"))
        dead = board is None or not board.alive
        if isinstance(error, socket.timeout) and not dead:
            return BoardError(f"{self.name}: no progress for {self.board.transfer_timeout:g} s (transfer_timeout) "
                              f"during {self.stage}; the board or its network stalled")
        if dead or isinstance(error, EOFError) or "closed" in str(error).lower():
            why = str(error) if str(error).startswith("no answer") else "the connection dropped"
            return BoardError(f"{self.name}: the board stopped answering during {self.stage} after {elapsed:.0f} s "
                              f"({why}); it lost power or network, or hung"
                              + ("" if "dead_after" in why else f" (dead_after={self.board.dead_after:g} s)")
                              + (board.route.still_there() if board else ""))
        return BoardError(f"{self.name}: {self.stage} failed: {type(error).__name__}: {error}")

    @property
    def hold_for(self) -> float:
        """How long the lock may be taken as ours without news: renewed job after job."""
        return self.board.run_timeout * 2 + 600

    def renew_lock(self) -> None:
        """Push the lock's expiry forward once a quarter of it has passed: a long night keeps its board."""
        if self.lock is not None and time.monotonic() - self.lock_written > self.hold_for / 4:
            self.lock.extend(self.hold_for)
            self.lock_written = time.monotonic()

    def close(self) -> None:
        """End the session: the resident agent (its channel closed: the watchdog kills it), the session's dir
        (END_JOB: its agent killed if it still runs, then removed), the lock, the connection. Best effort:
        what a dead connection leaves, the next run breaks as stale and cleans."""
        agent, self.agent = self.agent, None
        if agent is not None:
            agent.close()
        self.provisioner = Provisioner(self)  # the next session looks at the board afresh
        board, lock, session_dir = self.remote, self.lock, self.session_dir
        self.remote, self.lock, self.session_dir = None, None, None
        self.store_state, self.done_dirs = {}, []
        if board is not None and session_dir is not None:
            try:
                if board.alive:
                    self.exec_script(board, remote.END_JOB, [session_dir], "removing the session's dir", timeout=15,
                                     check=False, interruptible=False)
            except (BoardError, Interrupted, OSError, EOFError, paramiko.SSHException):
                pass
        if lock is not None:
            try:
                lock.release()  # with the connection gone it only forgets it; the next run breaks it as stale
            except (OSError, EOFError, paramiko.SSHException):
                pass
        route, self.route = self.route, None
        if route is not None:
            route.close()

    def abort(self) -> None:
        """A board that did not stop in time: close the connections under it, nothing more (it may be frozen)."""
        route = self.route
        if route is not None:
            route.close()

    # -- one job ---------------------------------------------------------------------------------------

    @staticmethod
    def agent_file(agent: Path) -> "StoreFile":
        """The agent in the store, by its SHA-256: mnn_agent-<sha16>.pyz for the bundle."""
        agent_sha = sha256_file(agent)
        return StoreFile(f"mnn_agent-{agent_sha[:16]}{agent.suffix}", agent, agent_sha)

    def job_files(self, job: Job) -> List["StoreFile"]:
        """The files a job needs in the store, by content: model, inputs (and raw images)."""
        files = [StoreFile(f"{job.model_sha256}.mnn", job.model_path, job.model_sha256),
                 StoreFile(f"{job.inputs_sha256}.npz", job.inputs_path, job.inputs_sha256)]
        if job.images_path:
            files.append(StoreFile(f"{job.images_sha256}.npz", job.images_path, job.images_sha256))
        return files

    def run_job(self, board: "BoardConnection", job: Job, local_dir: Path, on_stage: StageCallback,
                result: TargetResult) -> None:
        agent_file, files = self.agent_file(job.agent()), self.job_files(job)
        agent_path = board.paths.store_file(agent_file.name)
        model, inputs = (board.paths.store_file(item.name) for item in files[:2])
        images = board.paths.store_file(files[2].name) if job.images_path else None
        manifest = job.manifest(model, inputs, images, deadline_s=self.board.run_timeout + 60)
        manifest_path = local_dir / "job.json"
        manifest_path.write_text(json.dumps(manifest, indent=1))
        try:
            for attempt in range(2):
                self.enter("upload", on_stage)
                started = time.perf_counter()
                self.renew_lock()
                self.sync_store(board, [agent_file, *files], result)
                if self.provisioner.enabled:
                    self.provisioner.runtime(board, job.mnn_version, [agent_file, *files], result)
                result.timings["upload"] = result.timings.get("upload", 0.0) + time.perf_counter() - started
                self.enter("run", on_stage)
                started = time.perf_counter()
                agent = self.resident_agent(board, agent_path, result)
                if agent is not None:
                    job_dir = f"{self.session_dir}/{remote.check_name(job.id, 'job id')}"
                    self.run_resident(board, agent, job.id, job_dir, manifest, local_dir, result)
                    result.timings["run"] = result.timings.get("run", 0.0) + time.perf_counter() - started
                    self.enter("download", on_stage)
                    started = time.perf_counter()
                    self.download(board, job, job_dir, local_dir, result)
                    result.timings["download"] = result.timings.get("download", 0.0) + time.perf_counter() - started
                else:
                    result.timings["run"] = result.timings.get("run", 0.0) + time.perf_counter() - started
                    self.run_one_shot(board, job, agent_path, manifest_path, local_dir, on_stage, result)
                if attempt == 0 and self.stale_store(local_dir):
                    # Changed between our hash check and the agent's own: check again, send what differs.
                    result.notes.append("a stored model or input changed on the board during the run: sent again")
                    for item in files:
                        self.store_state.pop(item.name, None)
                    continue
                break
        finally:
            result.locked_span = (self.locked_at, time.time())

    def sync_store(self, board: "BoardConnection", files: List["StoreFile"], result: TargetResult) -> None:
        """Have the job's files in the store: one remote call hashes those this session has not checked yet
        (none, once the session knows them), then what is missing or differs is sent."""
        unchecked = [item.name for item in files if item.name not in self.store_state]
        if unchecked:
            _, hashes, links = self.begin_job(board, "", unchecked, clean=False)
            if links:
                result.notes.append(f"store entries that were symbolic links were removed: {', '.join(links)}")
            self.store_state.update({name: hashes.get(name) for name in unchecked})
        wanted = [item for item in files if self.store_state.get(item.name) != item.sha256]
        if not wanted:
            return
        corrupt = [item.name for item in wanted if self.store_state.get(item.name) is not None]
        if corrupt:
            result.notes.append(f"stored {', '.join(corrupt)} did not match its SHA-256 on the board: sent again")
        _, evicted = self.evict(board, {item.name for item in files}, sum(item.local.stat().st_size
                                                                            for item in wanted), result)
        for name in evicted:
            self.store_state.pop(name, None)
        for item in wanted:
            result.bytes_uploaded += self.put(board, item.local, board.paths.store_file(item.name))
            self.store_state[item.name] = item.sha256

    # -- the resident agent ----------------------------------------------------------------------------

    def resident_agent(self, board: "BoardConnection", agent_path: str,
                       result: TargetResult) -> Optional[ResidentAgent]:
        """The session's resident agent, started now if it has none (or it died); None when jobs run one-shot
        (`resident: false`, or an agent that could not serve: no hello, another protocol)."""

        def start() -> ResidentAgent:
            channel = board.transport.open_session(timeout=self.board.connect_timeout)
            self.agent_runtime = command
            log.info("%s: starting the resident agent %s with %s", self.name, agent_path, " ".join(command))
            channel.exec_command(remote.sh(remote.SERVE, [
                self.session_dir, *command, agent_path, "--serve",
                "--cache-models", str(self.board.agent_cache_models), "--cache-mb",
                f"{self.board.agent_cache_mb:g}", self.session_dir]))
            return ResidentAgent(ChannelLink(channel), self.name)

        def handshake(agent: ResidentAgent) -> Hello:
            heartbeat = board.route.heartbeat(max(1.0, self.board.dead_after / 3))
            hello = agent.handshake(max(60.0, self.board.connect_timeout * 4), self.agent_check(board, heartbeat))
            if self.lock is not None:
                self.lock.record_agent(hello.pid, hello.pgid)  # the lock lives as long as this agent does
            return hello

        def cannot_serve(agent: ResidentAgent, error: AgentCannotServe) -> None:
            status = agent.link.exit_status()
            if status == 127:
                raise BoardError(f"{self.name}: the board has no {board.endpoint.python!r}; install Python >= 3.8 "
                                 "with numpy and MNN there, or set `python` for this board in the inventory") \
                    from None
            if status == 125:
                raise BoardError(f"{self.name}: the session's directory {self.session_dir} vanished") from None

        command = tuple(self.provisioner.command(board.endpoint.python))
        if self.agent is not None and self.agent_runtime != command:
            self.end_agent()  # the next job asks for another MNN: the resident agent is per version
        return session_agent(self, result, start, handshake, cannot_serve)

    def agent_check(self, board: "BoardConnection", heartbeat: Optional[RouteHeartbeat] = None):
        """What a wait on the agent checks: Ctrl-C, the connection, and (during a job) the heartbeats of the board
        and of every jump host on the way."""
        def check() -> None:
            if self.interrupted.is_set():
                raise Interrupted(f"{self.name}: interrupted during {self.stage}; its agent was stopped")
            if not board.alive:
                raise EOFError("the SSH session of the agent closed")
            if heartbeat is not None:
                self.check_heartbeat(board, heartbeat)
        return check

    def check_heartbeat(self, board: "BoardConnection", heartbeat: RouteHeartbeat) -> None:
        """HopLost or BoardSilent (EOFErrors) once something on the way has been silent for dead_after; the
        connections are closed first, which also ends the heartbeats' threads."""
        try:
            heartbeat.check(self.board.dead_after)
        except EOFError:
            board.route.close()
            raise

    def run_resident(self, board: "BoardConnection", agent: ResidentAgent, job_id: str, job_dir: str,
                     manifest: dict, local_dir: Path, result: TargetResult) -> None:
        """One request: the agent makes job_dir, writes job.json there, runs it and says when it is done.
        The job dirs of earlier requests go with this one."""
        request = run_request(0, job_dir, manifest, remove=self.done_dirs)
        result.bytes_uploaded += agent.sent_bytes(request)
        received = agent.received
        heartbeat = board.route.heartbeat(max(1.0, self.board.dead_after / 3))
        try:
            run_on(self, agent, request, self.board.run_timeout, self.agent_check(board, heartbeat),
                   after_death=lambda: self.fetch_log_quietly(board, job_dir, local_dir, result))
        finally:
            self.done_dirs = [job_id]
            result.bytes_downloaded += agent.received - received

    def end_agent(self) -> None:
        agent, self.agent = self.agent, None
        if agent is not None:
            agent.close()

    def fetch_log_quietly(self, board: "BoardConnection", job_dir: str, local_dir: Path,
                          result: TargetResult) -> None:
        """The end of a dead agent's log, for the job's error; nothing if there is none."""
        try:
            entry = board.sftp.lstat(job_dir + "/agent.log")
            if stat.S_ISREG(entry.st_mode or 0):
                result.bytes_downloaded += self.fetch_log_tail(board, job_dir + "/agent.log", entry.st_size or 0,
                                                               local_dir / "agent.log")
        except (OSError, EOFError, paramiko.SSHException):
            pass

    # -- one-shot: an agent process per job (the fallback) ---------------------------------------------

    def run_one_shot(self, board: "BoardConnection", job: Job, agent_path: str, manifest_path: Path,
                     local_dir: Path, on_stage: StageCallback, result: TargetResult) -> None:
        job_dir = board.paths.job_dir(job.id)
        self.enter("upload", on_stage)
        started = time.perf_counter()
        self.begin_job(board, job.id, [], clean=False)  # makes the job's own dir
        try:
            result.bytes_uploaded += self.put(board, manifest_path, job_dir + "/job.json")
            result.timings["upload"] = result.timings.get("upload", 0.0) + time.perf_counter() - started
            if self.lock is not None:
                self.lock.record_job(job_dir)  # a one-shot agent's command line names its job dir
            self.enter("run", on_stage)
            self.run_agent(board, agent_path, job_dir, local_dir, result)
            self.enter("download", on_stage)
            started = time.perf_counter()
            self.download(board, job, job_dir, local_dir, result)
            result.timings["download"] = result.timings.get("download", 0.0) + time.perf_counter() - started
        finally:
            self.end_job(board, job_dir)

    def end_job(self, board: "BoardConnection", job_dir: str) -> None:
        """Remove a one-shot job's dir (stopping its agent if it still runs); best effort: the next run cleans
        what a dead connection leaves."""
        try:
            if board.alive:
                self.exec_script(board, remote.END_JOB, [job_dir], "removing the job dir", timeout=15, check=False,
                                 interruptible=False)
                if self.lock is not None and self.session_dir is not None:
                    self.lock.record_job(self.session_dir)
        except (BoardError, Interrupted, OSError, EOFError, paramiko.SSHException):
            pass

    def begin_job(self, board: BoardConnection, job_id: str, names: List[str],
                  clean: bool = True) -> Tuple[Leftovers, dict, List[str]]:
        """One remote call: clean leftovers (only under the lock), make the job dir, hash what the store holds
        of `names`."""
        run = self.exec_script(board, remote.BEGIN_JOB, [board.workdir, "clean" if clean else "keep", job_id,
                                                          board.endpoint.python, *names],
                               "preparing the job", timeout=max(60.0, self.board.connect_timeout * 4))
        return remote.parse_begin(run.stdout)

    def store_cap_bytes(self) -> int:
        return int(self.board.store_max_mb * 1024 * 1024)

    def evict(self, board: BoardConnection, keep: set, incoming: int, result: Optional[TargetResult]) -> Tuple[int, List[str]]:
        """Remove least recently used store files and provisioned sites until they fit store_max_mb with
        `incoming` bytes more; never what `keep` names nor the sites of the MNN in use.

        A job's files (and a site's site.json) are touched when used, so modification times order them by last
        use. Returns (bytes freed, files and sites removed).
        """
        entries = [(entry.filename, entry.st_size or 0, entry.st_mtime or 0, "file")
                   for entry in board.sftp.listdir_attr(board.store)
                   if stat.S_ISREG(entry.st_mode or 0) or stat.S_ISLNK(entry.st_mode or 0)]
        entries += [(site.id, site.kb * 1024, site.last_used, "site") for site in list_sites(board)]
        total = sum(size for _, size, _, _ in entries)
        budget = self.store_cap_bytes() - incoming
        if total <= budget:
            return 0, []
        keep = set(keep) | set(self.provisioner.in_use)
        files, sites, freed = [], [], 0
        for name, size, _, what in sorted(entries, key=lambda e: (e[2], e[0])):
            if total - freed <= budget:
                break
            if name in keep:
                continue
            try:
                remote.check_name(name, "store file")
            except BoardError:
                continue
            (files if what == "file" else sites).append(name)
            freed += size
        if files:
            self.exec_script(board, remote.REMOVE_STORE_FILES, [board.store, *files], "evicting store files",
                             check=False)
        if sites:
            remove_sites(self, board, sites)
            self.provisioner.forget(sites)
        if result is not None:
            if files or sites:
                result.notes.append(f"store over store_max_mb={self.board.store_max_mb:g}: evicted {len(files)} "
                                    f"least recently used file(s)"
                                    + (f" and {len(sites)} provisioned site(s) ({', '.join(sites)})" if sites else "")
                                    + f", {freed / 1e6:.1f} MB")
            if total - freed > budget:
                result.notes.append(f"this job's own files exceed store_max_mb={self.board.store_max_mb:g}")
        return freed, files + sites

    def put(self, board: BoardConnection, local: Path, target: str) -> int:
        """Upload to target.partial and rename it over target; the bytes moved. A full disk says so."""
        size = local.stat().st_size
        partial = f"{target}.partial"

        def progress(done: int, total: int) -> None:
            self.check_interrupted()

        try:
            board.sftp.put(str(local), partial, callback=progress)
            board.sftp.posix_rename(partial, target)
        except Interrupted:
            self._remove_quietly(board, partial)
            raise
        except OSError as error:
            if not board.alive:
                raise
            self._remove_quietly(board, partial)
            directory = posixpath.dirname(target)
            free = self.free_kb(board, directory)
            if free is not None and free * 1024 < size + 64 * 1024:
                raise BoardError(f"{self.name}: the board's disk is full: {free / 1024:.1f} MB free in {directory}, "
                                 f"and {local.name} needs {size / 1e6:.1f} MB. Free space there (`harness boards "
                                 "--clean` removes leftovers and trims the store), or lower store_max_mb") from None
            raise BoardError(f"{self.name}: uploading {local.name} to {target} failed: {error}"
                             + (f" ({free / 1024:.1f} MB free there)" if free is not None else "")) from None
        return size

    @staticmethod
    def _remove_quietly(board: BoardConnection, path: str) -> None:
        try:
            board.sftp.remove(path)
        except (OSError, EOFError, paramiko.SSHException):
            pass

    def run_agent(self, board: BoardConnection, agent: str, job_dir: str, local_dir: Path, result: TargetResult) -> None:
        """Run the agent under remote.AGENT_RUN; closing the channel (Ctrl-C, run_timeout) kills it on the board."""
        started = time.perf_counter()
        channel = board.transport.open_session(timeout=self.board.connect_timeout)
        log.info("%s: one-shot agent %s on %s with %s", self.name, agent, job_dir, board.endpoint.python)
        try:
            channel.exec_command(remote.sh(remote.AGENT_RUN, [job_dir, *self.provisioner.command(board.endpoint.python),
                                                              agent]))
            deadline = time.monotonic() + self.board.run_timeout
            heartbeat = board.route.heartbeat(max(1.0, self.board.dead_after / 3))
            line = self._first_line(channel, board)
            words = line.split()
            if len(words) == 3 and words[0] == "agent-pid" and words[1].isdigit() and words[2].isdigit() \
                    and self.lock is not None:
                self.lock.record_agent(int(words[1]), int(words[2]))
            while not channel.exit_status_ready():
                if self.interrupted.is_set():
                    raise Interrupted(f"{self.name}: interrupted during run; its agent was stopped")
                if time.monotonic() > deadline:
                    raise BoardError(f"{self.name}: the agent ran longer than run_timeout="
                                     f"{self.board.run_timeout:g} s and was stopped")
                if channel.closed or not board.alive:
                    raise EOFError("the SSH session of the agent closed")
                self.check_heartbeat(board, heartbeat)
                channel.status_event.wait(POLL_S)
            status = channel.recv_exit_status()
            log.info("%s: the one-shot agent exited %s", self.name, status)
            if status == -1 and (channel.closed or not board.alive):
                # paramiko's "no exit status": the connection dropped under a running agent, in this stage.
                raise EOFError("the SSH session of the agent closed")
        finally:
            channel.close()  # the kill switch: the watchdog on the board sees the end of its stdin
        result.timings["run"] = result.timings.get("run", 0.0) + time.perf_counter() - started
        if status == 127:
            needs = "" if self.provisioner.enabled else " with numpy and MNN (or drop `mnn: system`: the harness brings them)"
            raise BoardError(f"{self.name}: the board has no {board.endpoint.python!r}; install Python >= 3.8 "
                             f"there{needs}, or set `python` for this board in the inventory")
        if status == 125:
            raise BoardError(f"{self.name}: the job directory {job_dir} vanished before the agent started")
        if status not in (0, 1):
            result.notes.append(f"the agent exited with status {status}"
                                + (" (killed by a signal)" if status >= 128 or status < 0 else ""))

    def _first_line(self, channel, board: BoardConnection) -> str:
        """The wrapper's first line (the agent's pid and process group), or "" if it ended without one."""
        data = bytearray()
        deadline = time.monotonic() + self.board.connect_timeout * 4
        while b"\n" not in data and len(data) < 4096:
            if channel.recv_ready():
                chunk = channel.recv(4096)
                if not chunk:
                    break
                data += chunk
                continue
            if channel.exit_status_ready() or channel.eof_received:
                break
            self.check_interrupted()
            if channel.closed or not board.alive:
                raise EOFError("the SSH session of the agent closed")
            if time.monotonic() > deadline:
                break
            channel.status_event.wait(0.02)
        return data.split(b"\n", 1)[0].decode("ascii", "replace")

    def download(self, board: BoardConnection, job: Job, job_dir: str, local_dir: Path, result: TargetResult) -> None:
        """Fetch what the agent left: lstat first (a symlink or an oversized file is refused unread), then
        at most the file's cap; of the log only its end."""
        for name in RESULT_FILES + ("agent.log",):
            (local_dir / name).unlink(missing_ok=True)
        entries = {entry.filename: entry for entry in board.sftp.listdir_attr(job_dir)}
        log = entries.get("agent.log")
        if log is not None and stat.S_ISREG(log.st_mode or 0):
            result.bytes_downloaded += self.fetch_log_tail(board, job_dir + "/agent.log", log.st_size or 0,
                                                           local_dir / "agent.log")
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
            result.bytes_downloaded += self.fetch(board, job_dir + "/" + name, entry.st_size or 0,
                                                  local_dir / name, limits[name])

    def fetch(self, board: BoardConnection, source: str, size: int, destination: Path, limit: int) -> int:
        """Copy a remote file, never more than limit bytes (it may still grow while we read)."""
        copied = 0
        with board.sftp.open(source, "rb") as remote_file, open(destination, "wb") as local_file:
            remote_file.prefetch(min(size, limit))
            while True:
                self.check_interrupted()
                chunk = remote_file.read(min(CHUNK, limit + 1 - copied))
                if not chunk:
                    break
                copied += len(chunk)
                if copied > limit:
                    raise BoardResultError(f"{posixpath.basename(source)} grew beyond {human_size(limit)} while "
                                           "it was fetched: refused")
                local_file.write(chunk)
        return copied

    def fetch_log_tail(self, board: BoardConnection, source: str, size: int, destination: Path) -> int:
        """The last LOG_KEEP_BYTES of the agent's log, cleaned of control characters; what was skipped is said."""
        skipped = max(0, size - LOG_KEEP_BYTES)
        data = bytearray()
        with board.sftp.open(source, "rb") as remote_file:
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

    @staticmethod
    def stale_store(local_dir: Path) -> bool:
        try:
            facts = json.loads((local_dir / "result.json").read_text())  # its size was checked when fetched
        except (OSError, ValueError):
            return False
        return isinstance(facts, dict) and facts.get("error_kind") in ("bad-model", "bad-inputs")

    # -- health and cleaning ---------------------------------------------------------------------------

    def probe_impl(self, health: dict) -> None:
        result = TargetResult(self.name, self.board.kind, "unusable")
        try:
            board = self.open_board(result)
        finally:
            health["via"] = result.via  # known once the route is planned: said for a board it could not reach too
        health["address"] = f"{board.connection.host}:{board.connection.port}"
        health["workdir"] = board.workdir
        health["workdir_created"] = self.prepare_workdir(board, result)
        health["mnn"] = self.board.mnn
        if self.board.mnn == "provision":
            # Its Python first: one MNN's wheels cannot serve (none, too old, armv7l, an old glibc) is named as
            # such, not by how the agent (Python >= 3.8) fails under it.
            try:
                health["python_facts"] = self.provisioner.python(board).as_dict()
            except BoardError as error:
                health["warning"] = health["provision_error"] = clean_text(str(error))
                found = self.provisioner.facts
                if found is not None:
                    health["python_facts"] = found.as_dict()
                    health["facts"] = {"machine": found.machine, "python": ".".join(map(str, found.version))}
        if not health.get("provision_error"):
            health["facts"] = self.agent_probe(board)
        holder = read_holder(board.sftp, board.paths.lock)
        health["lock"] = clean_text(holder.describe()) if holder else None
        health["notes"] = result.notes
        if self.board.mnn == "provision":
            versions = {site.mnn_version for site in list_sites(board) if site.mnn_version}
            health["provisioned"] = sorted(versions, key=lambda v: [int(p) for p in v.split(".")])

    def agent_probe(self, board: BoardConnection) -> dict:
        """The agent's --probe facts from the board's Python as it is (its own numpy and MNN, if any)."""
        files = {name: item for name, item in self.store_files_for_probe().items()}
        _, hashes, _ = self.begin_job(board, "", list(files), clean=False)  # no lock held: clean nothing
        (name, item), = files.items()
        agent = board.paths.store_file(name)
        if hashes.get(name) != item.sha256:
            if item.local.stat().st_size > self.store_cap_bytes():
                # The store never holds more than store_max_mb: an agent bigger than that runs from beside it.
                agent = board.workdir + "/probe-" + name
            self.put(board, item.local, agent)
        out = board.workdir + "/probe.json"
        self._remove_quietly(board, out)  # an earlier probe's file is never read as this one's
        try:
            run = self.exec_script(board, remote.PROBE, [board.endpoint.python, agent, "--probe", out], "the probe",
                                   check=False, watched=True)
        finally:
            if not agent.startswith(board.store + "/"):
                self._remove_quietly(board, agent)
        if run.status == 127:
            raise BoardError(f"{self.name}: the board has no {board.endpoint.python!r}")
        try:
            with board.sftp.open(out) as f:
                facts = json.loads(f.read(PROBE_JSON_MAX).decode("utf-8", "replace"))
        except (OSError, ValueError) as error:
            raise BoardError(f"{self.name}: the probe failed: {run.stdout.strip()[-300:]}") from error
        try:
            return check_probe(facts)
        except BoardResultError as error:
            raise BoardError(f"{self.name}: {error}") from None

    def store_files_for_probe(self) -> Dict[str, StoreFile]:
        agent = self.agent_file(bundle())
        return {agent.name: agent}

    def clean(self) -> dict:
        """`harness boards --clean`: under the board's lock, remove leftovers and evict the store to its cap."""
        report = {"board": self.name, "cleaned": False, "freed_mb": 0.0, "jobs": [], "partials": [],
                  "evicted": [], "busy": [], "note": None}
        result = TargetResult(self.name, self.board.kind, "unusable")
        try:
            board = self.open_board(result)
            self.prepare_workdir(board, None)
            lock = BoardLock(board.sftp, board.workdir, self.name, f"clean-{int(time.time())}", hold_for=600,
                             agent_state=lambda directory, kill: self.agent_state(board, directory, kill))
            lock.acquire(min(self.lock_timeout, 10.0))
            try:
                leftovers, _, _ = self.begin_job(board, "", [])
                freed, evicted = self.evict(board, set(), 0, None)
            finally:
                lock.release()
            report.update(cleaned=True, jobs=leftovers.jobs, partials=leftovers.partials, busy=leftovers.busy,
                          evicted=evicted, freed_mb=leftovers.freed_kb / 1024 + freed / 1024 / 1024)
        except BoardError as error:
            report["note"] = clean_text(str(error))
        except (OSError, EOFError, paramiko.SSHException) as error:
            report["note"] = clean_text(str(self.transport_error(error, None)))
        finally:
            self.close()
        return report



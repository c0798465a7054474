"""A board over SSH (fabric): upload what is missing, run the agent, download the results.

A session is three parts: its connection (transport.py: remote scripts, uploads, capped downloads, what a
dropped connection means; how the board is reached and its host keys checked: route.py), the board's store
(store.py: files by content, evicted least recently used) and its agent (resident.AgentSession, the life the
x86 host's session shares). This module holds them together: the lock, the session's dir, a job's steps.

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
import os
import secrets
import select
import time
from pathlib import Path
from typing import List, Optional, Tuple

import paramiko

from ...core.agent_bundle import bundle
from ...core.board_files import PROBE_JSON_MAX, check_probe, clean_text
from ...core.endpoint import SshEndpoint
from ...core.errors import BoardError, BoardResultError, Interrupted
from ...config.inventory import BoardSpec
from ...core.job import JOB_FILE, Job
from ...core.results import TargetResult
from ..agent_protocol import Hello, run_request
from . import remote
from .base import StageCallback, Target
from .lock import LOCK_TIMEOUT_S, BoardLock, read_holder
from .provision import Provisioner, list_sites
from .resident import AgentCannotServe, AgentLink, AgentSession, ResidentAgent
from .route import RouteHeartbeat
from .store import BoardStore, agent_file, job_files, stale_store
from .transport import BoardConnection, SshTransport, log

POLL_S = 0.2


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

    def __init__(self, board: BoardSpec, lock_timeout: float = LOCK_TIMEOUT_S):
        super().__init__(board, lock_timeout)
        self.transport = SshTransport(board, self.interrupted, self.check_interrupted)
        self.provisioner = self.new_provisioner()
        """The MNN this session brings to the board (unless the inventory says `mnn: system`)."""
        self.store = BoardStore(board, self.transport, in_use=lambda: self.provisioner.in_use,
                                sites_evicted=lambda sites: self.provisioner.forget(sites))
        self.agents = AgentSession(self.name, None if board.resident else "resident: false in the inventory")
        self.lock: Optional[BoardLock] = None
        self.locked_at: Optional[float] = None
        self.lock_written = 0.0
        self.session_dir: Optional[str] = None
        """<workdir>/jobs/<session id>: the resident agent runs there (its command line names it), its jobs'
        dirs are made inside, and it is removed with the session."""
        self.done_dirs: List[str] = []
        """Job dirs of the session that the next request removes."""
        self.broken: Optional[str] = None
        """Why the session could not be opened: every later job fails with it, at once."""
        self.agent_runtime: Optional[Tuple[str, ...]] = None
        """The command prefix the resident agent was started with (which MNN it imports)."""

    def new_provisioner(self) -> Provisioner:
        return Provisioner(self.board, self.transport, lambda files, result: self.store.sync(files, result))

    # -- what the kind decides (EmulatedTarget, LabgridTarget) -----------------------------------------

    def endpoint(self) -> SshEndpoint:
        board = self.board
        return SshEndpoint(host=board.host, port=board.port or 22, user=board.user,
                           key_filename=str(Path(board.key).expanduser()) if board.key else None,
                           known_hosts=board.known_hosts, trust_on_first_use=board.trust_on_first_use,
                           python=board.python, workdir=board.workdir, jump=board.jump)

    def ssh_port(self, endpoint: SshEndpoint) -> Optional[int]:
        """The port to connect to; None lets ~/.ssh/config (or 22) decide, for an inventory that names none."""
        return endpoint.port if self.board.port else None

    straight = False
    """Whether the board is reached straight, whatever ~/.ssh/config says of jump hosts (a board on this
    machine)."""

    def expected_mnn_version(self, job: Job) -> Optional[str]:
        """A provisioned board runs the version its sites hold; a `mnn: system` one what the run asks, if anything."""
        return self.provisioner.expected_version() or job.mnn_version

    # -- the session -----------------------------------------------------------------------------------

    def open_board(self, result: TargetResult) -> BoardConnection:
        endpoint = self.endpoint()
        return self.transport.open(endpoint, self.ssh_port(endpoint), self.straight, result)

    def transport_error(self, error: BaseException) -> Exception:
        return self.transport.error(error, self.stage, time.monotonic() - self.stage_started)

    def run_impl(self, job: Job, local_dir: Path, on_stage: StageCallback, result: TargetResult) -> None:
        if self.broken is not None:
            raise BoardError(self.broken)
        try:
            board = self.transport.board
            if board is None or not board.alive:
                if board is not None:
                    self.close()
                    result.notes.append("the connection to the board was lost during an earlier job: reconnected")
                board = self.open_session(job, on_stage, result)
            result.via = board.route.via
            self.run_job(board, job, local_dir, on_stage, result)
        except (OSError, EOFError, paramiko.SSHException) as error:
            raise self.transport_error(error) from error

    def open_session(self, job: Job, on_stage: StageCallback, result: TargetResult) -> BoardConnection:
        """Connect, make the workdir, take the board's lock, clean what earlier runs left and check the store,
        once for all the session's jobs. A board that cannot be opened stays broken for the session: its
        later jobs fail at once with the same reason (a lock held by someone else is not waited for again)."""
        try:
            return self._open_session(job, on_stage, result)
        except Interrupted:
            self.close()
            raise
        except (BoardError, OSError, EOFError, paramiko.SSHException) as error:
            failure = error if isinstance(error, BoardError) else self.transport_error(error)
            self.close()
            if not self.interrupted.is_set():
                self.broken = str(failure)
            raise failure from error
        except BaseException:
            self.close()
            raise

    def _open_session(self, job: Job, on_stage: StageCallback, result: TargetResult) -> BoardConnection:
        self.enter("connect", on_stage)
        started = time.perf_counter()
        board = self.open_board(result)
        self.transport.prepare_workdir(result)
        result.timings["connect"] = time.perf_counter() - started
        self.enter("lock", on_stage)
        started = time.perf_counter()
        session_id = f"s{os.getpid()}-{secrets.token_hex(4)}-{remote.safe_name(job.id, 100)}"
        session_dir = board.paths.job_dir(session_id)
        lock = BoardLock(board.sftp, board.workdir, self.name, session_id, hold_for=self.hold_for,
                         job_dir=session_dir, agent_state=self.transport.agent_state, cancel=self.interrupted)
        lock.acquire(self.lock_timeout, on_wait=on_stage)
        self.lock, self.locked_at, self.lock_written = lock, time.time(), time.monotonic()
        result.timings["lock"] = time.perf_counter() - started
        if self.provisioner.enabled:
            self.provisioner.python()  # a board that cannot run MNN's wheels fails before anything is sent
        # One remote call: clean what earlier runs left (we hold the lock), make the session's dir, and hash
        # the agent and this first job's files in the store.
        self.enter("upload", on_stage)
        started = time.perf_counter()
        files = [agent_file(job.agent()), *job_files(job)]
        leftovers, hashes, links = self.store.begin(session_id, [item.name for item in files])
        if leftovers.describe():
            result.notes.append(f"cleaned up after earlier runs: {leftovers.describe()}")
        if links:
            result.notes.append(f"store entries that were symbolic links were removed: {', '.join(links)}")
        self.store.checked(files, hashes)
        self.session_dir = session_dir
        result.timings["upload"] = time.perf_counter() - started
        return board

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
        self.agents.end()
        self.provisioner = self.new_provisioner()  # the next session looks at the board afresh
        lock, session_dir = self.lock, self.session_dir
        self.lock, self.session_dir = None, None
        self.store.reset()
        self.done_dirs = []
        if session_dir is not None:
            self.transport.end_job(session_dir, "removing the session's dir")
        if lock is not None:
            try:
                lock.release()  # with the connection gone it only forgets it; the next run breaks it as stale
            except (OSError, EOFError, paramiko.SSHException):
                pass
        self.transport.close()

    def abort(self) -> None:
        """A board that did not stop in time: close the connections under it, nothing more (it may be frozen)."""
        self.transport.abort()

    # -- one job ---------------------------------------------------------------------------------------

    def run_job(self, board: BoardConnection, job: Job, local_dir: Path, on_stage: StageCallback,
                result: TargetResult) -> None:
        agent, files = agent_file(job.agent()), job_files(job)
        agent_path = board.paths.store_file(agent.name)
        model, inputs = (board.paths.store_file(item.name) for item in files[:2])
        images = board.paths.store_file(files[2].name) if job.images_path else None
        manifest = job.manifest(model, inputs, images, deadline_s=self.board.run_timeout + 60)
        manifest_path = local_dir / JOB_FILE
        manifest_path.write_text(json.dumps(manifest, indent=1))
        try:
            for attempt in range(2):
                self.enter("upload", on_stage)
                started = time.perf_counter()
                self.renew_lock()
                self.store.sync([agent, *files], result)
                if self.provisioner.enabled:
                    self.provisioner.runtime(job.mnn_version, [agent, *files], result)
                result.timings["upload"] = result.timings.get("upload", 0.0) + time.perf_counter() - started
                self.enter("run", on_stage)
                started = time.perf_counter()
                resident = self.resident_agent(board, agent_path, result)
                if resident is not None:
                    job_dir = f"{self.session_dir}/{remote.check_name(job.id, 'job id')}"
                    self.run_resident(resident, job.id, job_dir, manifest, local_dir, result)
                    result.timings["run"] = result.timings.get("run", 0.0) + time.perf_counter() - started
                    self.enter("download", on_stage)
                    started = time.perf_counter()
                    self.transport.download(job, job_dir, local_dir, result)
                    result.timings["download"] = result.timings.get("download", 0.0) + time.perf_counter() - started
                else:
                    result.timings["run"] = result.timings.get("run", 0.0) + time.perf_counter() - started
                    self.run_one_shot(board, job, agent_path, manifest_path, local_dir, on_stage, result)
                if attempt == 0 and stale_store(local_dir):
                    # Changed between our hash check and the agent's own: check again, send what differs.
                    result.notes.append("a stored model or input changed on the board during the run: sent again")
                    self.store.forget([item.name for item in files])
                    continue
                break
        finally:
            result.locked_span = (self.locked_at, time.time())

    # -- the resident agent ----------------------------------------------------------------------------

    def resident_agent(self, board: BoardConnection, agent_path: str, result: TargetResult) -> Optional[ResidentAgent]:
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
            hello = agent.handshake(max(60.0, self.board.connect_timeout * 4),
                                    self.agent_check(board, self.transport.heartbeat()))
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
        if self.agents.agent is not None and self.agent_runtime != command:
            self.agents.end()  # the next job asks for another MNN: the resident agent is per version
        return self.agents.current(result, start, handshake, cannot_serve)

    def agent_check(self, board: BoardConnection, heartbeat: Optional[RouteHeartbeat] = None):
        """What a wait on the agent checks: Ctrl-C, the connection, and (during a job) the heartbeats of the board
        and of every jump host on the way."""
        def check() -> None:
            if self.interrupted.is_set():
                raise Interrupted(f"{self.name}: interrupted during {self.stage}; its agent was stopped")
            if not board.alive:
                raise EOFError("the SSH session of the agent closed")
            if heartbeat is not None:
                self.transport.check_heartbeat(heartbeat)
        return check

    def run_resident(self, agent: ResidentAgent, job_id: str, job_dir: str, manifest: dict, local_dir: Path,
                     result: TargetResult) -> None:
        """One request: the agent makes job_dir, writes job.json there, runs it and says when it is done.
        The job dirs of earlier requests go with this one."""
        request = run_request(0, job_dir, manifest, remove=self.done_dirs)
        result.bytes_uploaded += agent.sent_bytes(request)
        received = agent.received
        try:
            self.agents.run(request, self.board.run_timeout,
                            self.agent_check(self.transport.board, self.transport.heartbeat()),
                            after_death=lambda: self.transport.fetch_log_quietly(job_dir, local_dir, result))
        finally:
            self.done_dirs = [job_id]
            result.bytes_downloaded += agent.received - received

    # -- one-shot: an agent process per job (the fallback) ---------------------------------------------

    def run_one_shot(self, board: BoardConnection, job: Job, agent_path: str, manifest_path: Path,
                     local_dir: Path, on_stage: StageCallback, result: TargetResult) -> None:
        job_dir = board.paths.job_dir(job.id)
        self.enter("upload", on_stage)
        started = time.perf_counter()
        self.store.begin(job.id, [], clean=False)  # makes the job's own dir
        try:
            result.bytes_uploaded += self.transport.put(manifest_path, f"{job_dir}/{JOB_FILE}")
            result.timings["upload"] = result.timings.get("upload", 0.0) + time.perf_counter() - started
            if self.lock is not None:
                self.lock.record_job(job_dir)  # a one-shot agent's command line names its job dir
            self.enter("run", on_stage)
            self.run_agent(board, agent_path, job_dir, result)
            self.enter("download", on_stage)
            started = time.perf_counter()
            self.transport.download(job, job_dir, local_dir, result)
            result.timings["download"] = result.timings.get("download", 0.0) + time.perf_counter() - started
        finally:
            self.end_job(board, job_dir)

    def end_job(self, board: BoardConnection, job_dir: str) -> None:
        """Remove a one-shot job's dir (stopping its agent if it still runs) and point the lock at the session's
        dir again; best effort: the next run cleans what a dead connection leaves."""
        self.transport.end_job(job_dir, "removing the job dir")
        try:
            if self.lock is not None and self.session_dir is not None and board.alive:
                self.lock.record_job(self.session_dir)
        except (OSError, EOFError, paramiko.SSHException):
            pass

    def run_agent(self, board: BoardConnection, agent: str, job_dir: str, result: TargetResult) -> None:
        """Run the agent under remote.AGENT_RUN; closing the channel (Ctrl-C, run_timeout) kills it on the board."""
        started = time.perf_counter()
        channel = board.transport.open_session(timeout=self.board.connect_timeout)
        log.info("%s: one-shot agent %s on %s with %s", self.name, agent, job_dir, board.endpoint.python)
        try:
            channel.exec_command(remote.sh(remote.AGENT_RUN, [job_dir, *self.provisioner.command(board.endpoint.python),
                                                              agent]))
            deadline = time.monotonic() + self.board.run_timeout
            heartbeat = self.transport.heartbeat()
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
                self.transport.check_heartbeat(heartbeat)
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
            needs = ("" if self.provisioner.enabled
                     else " with numpy and MNN (or drop `mnn: system`: the harness brings them)")
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

    # -- health and cleaning ---------------------------------------------------------------------------

    def probe_impl(self, health: dict) -> None:
        result = TargetResult(self.name, self.board.kind, "unusable")
        try:
            board = self.open_board(result)
        finally:
            health["via"] = result.via  # known once the route is planned: said for a board it could not reach too
        health["address"] = f"{board.connection.host}:{board.connection.port}"
        health["workdir"] = board.workdir
        health["workdir_created"] = self.transport.prepare_workdir(result)
        health["mnn"] = self.board.mnn
        if self.board.mnn == "provision":
            # Its Python first: one MNN's wheels cannot serve (none, too old, armv7l, an old glibc) is named as
            # such, not by how the agent (Python >= 3.8) fails under it.
            try:
                health["python_facts"] = self.provisioner.python().as_dict()
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
        item = agent_file(bundle())
        _, hashes, _ = self.store.begin("", [item.name], clean=False)  # no lock held: clean nothing
        agent = board.paths.store_file(item.name)
        if hashes.get(item.name) != item.sha256:
            if item.local.stat().st_size > self.store.cap_bytes:
                # The store never holds more than store_max_mb: an agent bigger than that runs from beside it.
                agent = board.workdir + "/probe-" + item.name
            self.transport.put(item.local, agent)
        out = board.workdir + "/probe.json"
        self.transport.remove_quietly(out)  # an earlier probe's file is never read as this one's
        try:
            run = self.transport.exec_script(remote.PROBE, [board.endpoint.python, agent, "--probe", out],
                                             "the probe", check=False, watched=True)
        finally:
            if not agent.startswith(board.store + "/"):
                self.transport.remove_quietly(agent)
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

    def clean(self) -> dict:
        """`harness boards --clean`: under the board's lock, remove leftovers and evict the store to its cap."""
        report = {"board": self.name, "cleaned": False, "freed_mb": 0.0, "jobs": [], "partials": [],
                  "evicted": [], "busy": [], "note": None}
        result = TargetResult(self.name, self.board.kind, "unusable")
        try:
            board = self.open_board(result)
            self.transport.prepare_workdir(None)
            lock = BoardLock(board.sftp, board.workdir, self.name, f"clean-{int(time.time())}", hold_for=600,
                             agent_state=self.transport.agent_state)
            lock.acquire(min(self.lock_timeout, 10.0))
            try:
                leftovers, _, _ = self.store.begin("", [])
                freed, evicted = self.store.evict(set(), 0, None)
            finally:
                lock.release()
            report.update(cleaned=True, jobs=leftovers.jobs, partials=leftovers.partials, busy=leftovers.busy,
                          evicted=evicted, freed_mb=leftovers.freed_kb / 1024 + freed / 1024 / 1024)
        except BoardError as error:
            report["note"] = clean_text(str(error))
        except (OSError, EOFError, paramiko.SSHException) as error:
            report["note"] = clean_text(str(self.transport.error(error, "cleaning", 0.0)))
        finally:
            self.close()
        return report


class EmulatedTarget(SshTarget):
    """An emulated board (emulation/board.py): an SSH board on this machine that its session starts when it
    opens, reached straight on its own port."""

    straight = True

    def endpoint(self) -> SshEndpoint:
        from ...emulation.board import emulated_spec, ensure_running

        # `python:` of the inventory holds for an emulated board too (its bin/python3 unless told otherwise).
        return dataclasses.replace(ensure_running(emulated_spec(self.board), log=lambda message: None),
                                   python=self.board.python)

    def ssh_port(self, endpoint: SshEndpoint) -> Optional[int]:
        return endpoint.port

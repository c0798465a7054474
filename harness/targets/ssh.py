"""A board over SSH (fabric): upload what is missing, run the agent, download the results.

Host keys are always verified: against ~/.ssh/known_hosts, the board's own
known_hosts file, and nothing else. An unknown key is accepted only when the
inventory says `trust_on_first_use: true` for that board, and the report says
so. Fabric's own default (accept anything) is replaced on every connection.
"""

import json
import posixpath
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import paramiko
from fabric import Connection

from ..endpoint import SshEndpoint
from ..cache import sha256_file
from ..errors import BoardError
from ..job import AGENT_PATH, Job
from ..results import TargetResult
from .base import StageCallback, Target
from .lock import BoardLock, read_holder


RESULT_FILES = ("result.json", "outputs.npz", "preprocessed.npz", "dump.json", "dump.npz")
"""What the agent may leave in a job directory for the host to fetch."""
CONNECT_ATTEMPTS = 3
CONNECT_BACKOFF_S = 1.0


class _TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    """Accept an unknown host key, remember it in known_hosts and note that we did."""

    def __init__(self, known_hosts: Path, accepted: list):
        self.known_hosts = known_hosts
        self.accepted = accepted

    def missing_host_key(self, client, hostname, key):
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with open(self.known_hosts, "a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        self.accepted.append(f"{hostname} {key.get_name()} SHA256 fingerprint "
                             f"{key.fingerprint if hasattr(key, 'fingerprint') else key.get_fingerprint().hex()}")


@dataclass
class BoardSession:
    """An open connection to a board and where things live on it."""

    endpoint: SshEndpoint
    connection: Connection
    sftp: paramiko.SFTPClient

    @property
    def workdir(self) -> str:
        return self.endpoint.workdir

    @property
    def store(self) -> str:
        return posixpath.join(self.workdir, "store")

    @property
    def agent(self) -> str:
        return posixpath.join(self.workdir, "agent", "mnn_agent.py")


class SshTarget(Target):
    def __init__(self, board, lock_timeout: float = 300.0):
        super().__init__(board, lock_timeout)
        self.connection: Optional[Connection] = None

    def endpoint(self) -> SshEndpoint:
        board = self.board
        if board.kind == "emulated":
            from ..emulation.board import EmulatedBoardSpec, ensure_running

            return ensure_running(EmulatedBoardSpec(name=board.name, cpu=board.cpu,
                                                    mnn_version=board.mnn_version or "3.6.1"),
                                  log=lambda message: None)
        return SshEndpoint(host=board.host, port=board.port or 22, user=board.user,
                           key_filename=str(Path(board.key).expanduser()) if board.key else None,
                           known_hosts=board.known_hosts, trust_on_first_use=board.trust_on_first_use,
                           python=board.python, workdir=board.workdir)

    def ssh_port(self, endpoint: SshEndpoint) -> Optional[int]:
        """The port to connect to; None lets ~/.ssh/config (or 22) decide, for an inventory that names none."""
        return endpoint.port if self.board.kind == "emulated" or self.board.port else None

    def connect(self, endpoint: SshEndpoint, result: TargetResult) -> Connection:
        connect_kwargs = {"banner_timeout": self.board.connect_timeout,
                          "auth_timeout": self.board.connect_timeout}
        if endpoint.key_filename:
            # Only the named key: offering every key in ~/.ssh can exhaust
            # the server's MaxAuthTries before the right one is tried.
            connect_kwargs.update(key_filename=endpoint.key_filename, look_for_keys=False, allow_agent=False)
        connection = Connection(endpoint.host, user=endpoint.user, port=self.ssh_port(endpoint),
                                connect_timeout=self.board.connect_timeout, connect_kwargs=connect_kwargs)
        client = connection.client
        client.load_system_host_keys()
        if endpoint.known_hosts and Path(endpoint.known_hosts).expanduser().is_file():
            client.load_system_host_keys(str(Path(endpoint.known_hosts).expanduser()))
        accepted: list = []
        if endpoint.trust_on_first_use:
            known_hosts = Path(endpoint.known_hosts or "~/.ssh/known_hosts").expanduser()
            client.set_missing_host_key_policy(_TrustOnFirstUse(known_hosts, accepted))
        else:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        where = f"{connection.user}@{connection.host}:{connection.port}"
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                connection.open()
                break
            except paramiko.BadHostKeyException as error:
                raise BoardError(f"{self.name}: the host key of {where} CHANGED since it was recorded "
                                 f"(got {error.key.get_name()}): the board was reinstalled or someone is in "
                                 "the middle; check it, then update known_hosts") from error
            except paramiko.AuthenticationException as error:
                raise BoardError(f"{self.name}: {where} refused our key ({error}); check `user` and `key` "
                                 "for this board in the inventory") from error
            except paramiko.SSHException as error:
                if "not found in known_hosts" in str(error):
                    raise BoardError(
                        f"{self.name}: {where} has a host key that is not in known_hosts; check its fingerprint "
                        f"and add it (`ssh-keyscan -p {connection.port} {connection.host} >> ~/.ssh/known_hosts`), "
                        "or set `trust_on_first_use: true` for this board in the inventory") from error
                failure = f"SSH to {where} failed: {error}"
            except (socket.timeout, TimeoutError):
                failure = f"no answer from {where} within {self.board.connect_timeout:g} s (connect_timeout)"
            except OSError as error:
                failure = f"cannot connect to {where}: {error}"
            # A board that reboots or a sshd at its MaxStartups limit refuses for a
            # moment: retry with backoff before calling the board unusable.
            if attempt + 1 < CONNECT_ATTEMPTS:
                result.notes.append(f"connect attempt {attempt + 1} failed ({failure}); retrying")
                time.sleep(CONNECT_BACKOFF_S * 2 ** attempt)
        else:
            raise BoardError(f"{self.name}: {failure} (after {CONNECT_ATTEMPTS} attempts)")
        self.watch_for_death(connection)
        for line in accepted:
            result.notes.append(f"host key accepted on first use (trust_on_first_use): {line}")
        self.connection = connection
        return connection

    def probe_impl(self, health: dict) -> None:
        result = TargetResult(self.name, self.board.kind, "unusable")
        board = self.open_board(result)
        self.remote(board.connection, ["mkdir", "-p", posixpath.dirname(board.agent)], "mkdir")
        self.put(board.sftp, AGENT_PATH, board.agent, always=True)
        out = posixpath.join(board.workdir, "probe.json")
        command = " ".join(shlex.quote(part) for part in [board.endpoint.python, board.agent, "--probe", out])
        run = board.connection.run(command + " 2>&1", hide=True, warn=True, in_stream=False,
                                   timeout=self.board.connect_timeout * 4)
        if run.exited == 127:
            raise BoardError(f"{self.name}: the board has no {board.endpoint.python!r}")
        try:
            with board.sftp.open(out) as f:
                health["facts"] = json.loads(f.read().decode())
        except (OSError, ValueError) as error:
            raise BoardError(f"{self.name}: the probe failed: {run.stdout.strip()[-300:]}") from error
        holder = read_holder(board.sftp, posixpath.join(board.workdir, "lock"))
        health["lock"] = holder.describe() if holder else None
        health["notes"] = result.notes
        health["address"] = f"{board.endpoint.host}:{board.endpoint.port}"

    def open_board(self, result: TargetResult) -> "BoardSession":
        endpoint = self.endpoint()
        connection = self.connect(endpoint, result)
        sftp = connection.sftp()
        # Without a timeout a stalled transfer hangs this board's thread forever.
        sftp.get_channel().settimeout(self.board.transfer_timeout)
        return BoardSession(endpoint, connection, sftp)

    def watch_for_death(self, connection: Connection) -> None:
        """Notice a board that vanished (power cut, cable pulled) in seconds, not in TCP's 15 minutes.

        A dead board sends no reset: the connection just stops. SSH keepalives
        keep data in flight, and TCP_USER_TIMEOUT drops the connection when
        that data stays unacknowledged for dead_after seconds.
        """
        interval = max(1, int(self.board.dead_after / 6))
        connection.transport.set_keepalive(interval)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            connection.transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                                                 int(self.board.dead_after * 1000))

    def run_impl(self, job: Job, local_dir: Path, on_stage: StageCallback, result: TargetResult) -> None:
        on_stage("connect")
        started = time.perf_counter()
        board = self.open_board(result)
        result.timings["connect"] = time.perf_counter() - started
        on_stage("lock")
        started = time.perf_counter()
        lock = BoardLock(board.sftp, board.workdir, self.name, job.id, hold_for=self.board.run_timeout * 2 + 600)
        lock.acquire(self.lock_timeout, on_wait=on_stage)
        result.timings["lock"] = time.perf_counter() - started
        acquired = time.time()
        try:
            self.run_locked(board, job, local_dir, on_stage, result)
        finally:
            lock.release()
            result.locked_span = (acquired, time.time())

    def run_locked(self, board: "BoardSession", job: Job, local_dir: Path, on_stage: StageCallback,
                   result: TargetResult) -> None:
        job_dir = posixpath.join(board.workdir, "jobs", job.id)
        # The agent is stored by hash too: a warm run sends only job.json.
        agent = posixpath.join(board.store, f"mnn_agent-{sha256_file(job.agent_path)[:16]}.py")
        model_ref = posixpath.join(board.store, f"{job.model_sha256}.mnn")
        inputs_ref = posixpath.join(board.store, f"{job.inputs_sha256}.npz")
        images_ref = posixpath.join(board.store, f"{job.images_sha256}.npz") if job.images_path else None
        manifest_path = local_dir / "job.json"
        manifest_path.write_text(json.dumps(job.manifest(model_ref, inputs_ref, images_ref), indent=1))
        self.remote(board.connection, ["mkdir", "-p", job_dir, board.store, posixpath.dirname(board.agent)],
                    "mkdir")
        # The store keeps model and inputs by SHA-256; the agent checks both
        # hashes before it runs, so a cached file that went bad is caught there
        # and sent again once.
        for attempt in range(2):
            on_stage("upload")
            started = time.perf_counter()
            refresh = attempt > 0
            uploads = [(job.agent_path, agent, refresh), (job.model_path, model_ref, refresh),
                       (job.inputs_path, inputs_ref, refresh),
                       (manifest_path, posixpath.join(job_dir, "job.json"), True)]
            if images_ref:
                uploads.append((job.images_path, images_ref, refresh))
            for local, remote, always in uploads:
                result.bytes_uploaded += self.put(board.sftp, local, remote, always)
            result.timings["upload"] = result.timings.get("upload", 0.0) + time.perf_counter() - started
            self.run_agent(board, agent, job_dir, local_dir, on_stage, result)
            on_stage("download")
            started = time.perf_counter()
            for name in RESULT_FILES:
                (local_dir / name).unlink(missing_ok=True)
                remote = posixpath.join(job_dir, name)
                try:
                    board.sftp.stat(remote)
                except FileNotFoundError:
                    continue
                board.sftp.get(remote, str(local_dir / name))
                result.bytes_downloaded += (local_dir / name).stat().st_size
            result.timings["download"] = result.timings.get("download", 0.0) + time.perf_counter() - started
            if not refresh and self.stale_store(local_dir):
                result.notes.append("a cached model or input on the board did not match its hash: sent again")
                continue
            break
        self.remote(board.connection, ["rm", "-rf", job_dir], "clean up")

    def run_agent(self, board: "BoardSession", agent: str, job_dir: str, local_dir: Path,
                  on_stage: StageCallback, result: TargetResult) -> None:
        on_stage("run")
        started = time.perf_counter()
        command = " ".join(shlex.quote(part) for part in [board.endpoint.python, agent, job_dir])
        try:
            run = board.connection.run(command + " 2>&1", hide=True, warn=True, in_stream=False,
                                       timeout=self.board.run_timeout)
        except Exception as error:  # invoke's CommandTimedOut and transport errors
            raise BoardError(f"{self.name}: running the agent failed: {type(error).__name__}: {error}") from error
        result.timings["run"] = result.timings.get("run", 0.0) + time.perf_counter() - started
        (local_dir / "agent.log").write_text(run.stdout)
        if run.exited == 127:
            raise BoardError(f"{self.name}: the board has no {board.endpoint.python!r}; install Python >= 3.8 "
                             "with numpy and MNN there, or set `python` for this board in the inventory")
        if run.exited not in (0, 1):
            result.notes.append(f"the agent exited with status {run.exited}"
                                + (" (killed by a signal)" if run.exited >= 128 else ""))

    @staticmethod
    def stale_store(local_dir: Path) -> bool:
        try:
            facts = json.loads((local_dir / "result.json").read_text())
        except (OSError, ValueError):
            return False
        return facts.get("error_kind") in ("bad-model", "bad-inputs")

    def put(self, sftp, local: Path, remote: str, always: bool = False) -> int:
        """Upload to a temp name and rename, unless the same-sized file is already there; bytes moved."""
        size = local.stat().st_size
        if not always:
            try:
                if sftp.stat(remote).st_size == size:
                    return 0
            except FileNotFoundError:
                pass
        partial = f"{remote}.partial"
        sftp.put(str(local), partial)
        sftp.posix_rename(partial, remote)
        return size

    def remote(self, connection: Connection, argv, what: str):
        run = connection.run(" ".join(shlex.quote(part) for part in argv), hide=True, warn=True,
                             in_stream=False, timeout=self.board.connect_timeout * 4)
        if run.exited != 0:
            raise BoardError(f"{self.name}: {what} failed on the board (exit {run.exited}): "
                             f"{(run.stderr or run.stdout).strip()[-400:]}")
        return run

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

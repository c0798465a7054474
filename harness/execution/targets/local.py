"""The x86 host as a target: the same agent, in a subprocess on this machine, resident for the whole session.

A subprocess, not an import: MNN prints on stdout, may crash on a bad setting,
and must run exactly as it does on a board: the same file, the agent's
bundle (core/agent_bundle.py). The session starts `BUNDLE --serve` once and
sends it every job (the job dirs are the run folders' targets/<name>/); a job
that kills it or passes run_timeout fails, and the next job gets a fresh
agent. An agent that cannot serve (no hello) makes the session run its jobs
one-shot, `BUNDLE JOB_DIR`, as does `resident: false` in the inventory. A job that asks for another MNN
release than the installed one runs on an agent with that release's host site first on its path
(core/wheels.host_site).
"""

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from ...core.agent_bundle import bundle
from ...core.board_files import PROBE_JSON_MAX, cap_log_file, check_probe, read_json
from ...core.errors import BoardError, BoardResultError, Interrupted, SetupError
from ...core.job import Job
from ...core.results import TargetResult
from ...core.wheels import host_site, site_env
from .base import StageCallback, Target
from .resident import AgentLink, ResidentAgent, run_on, session_agent

POLL_S = 0.1
HELLO_TIMEOUT_S = 60.0
"""A local Python that has not said hello in a minute is not going to."""
FINISH_GRACE_S = 5.0
"""Interrupted while the agent writes its last file: how long its result may still take to be kept."""


class ProcessLink(AgentLink):
    """A local agent's pipes; closing the link kills its process group."""

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.ended = False
        """The agent's replies reached their end (a read at EOF)."""

    def send(self, data: bytes) -> None:
        try:
            self.process.stdin.write(data)
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass  # it ended: exit_status says so on the next look

    def receive(self, wait: float) -> bytes:
        stdout = self.process.stdout
        try:
            ready, _, _ = select.select([stdout], [], [], wait)
        except (ValueError, OSError):
            return b""
        if not ready:
            return b""
        try:
            data = os.read(stdout.fileno(), 65536)
        except OSError:
            return b""
        self.ended = self.ended or not data
        return data

    def exit_status(self) -> Optional[int]:
        return self.process.poll()

    def replies_ended(self) -> bool:
        return self.ended

    def close(self) -> None:
        kill_group(self.process)
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass


def kill_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


class LocalTarget(Target):
    def __init__(self, board, lock_timeout: float = 300.0):
        super().__init__(board, lock_timeout)
        self.agent: Optional[ResidentAgent] = None
        self.session_dir: Optional[Path] = None
        self.one_shot: Optional[str] = None if board.resident else "resident: false in the inventory"
        self.died: Optional[str] = None
        """Why the last agent ended, told with the next job (which runs on a fresh one)."""
        self.running: Optional[subprocess.Popen] = None
        self.agent_site: Optional[Path] = None
        """The site of the MNN the resident agent imports (None: the installed one)."""

    @property
    def python(self) -> str:
        return self.board.python or sys.executable

    def run_impl(self, job: Job, local_dir: Path, on_stage: StageCallback, result: TargetResult) -> None:
        manifest = job.manifest(str(job.model_path.resolve()), str(job.inputs_path.resolve()),
                                str(job.images_path.resolve()) if job.images_path else None,
                                deadline_s=self.board.run_timeout + 60)
        (local_dir / "job.json").write_text(json.dumps(manifest, indent=1))
        for stale in ("result.json", "outputs.npz", "preprocessed.npz", "dump.json", "dump.npz"):
            (local_dir / stale).unlink(missing_ok=True)
        try:
            site = host_site(job.mnn_version, log=lambda message: None) if job.mnn_version else None
        except SetupError as error:
            raise BoardError(f"{self.name}: {error}") from None
        self.enter("run", on_stage)
        started = time.perf_counter()
        if self.agent is not None and site != self.agent_site:
            self.end_agent()  # another MNN for this job: the resident agent is per version
        self.agent_site = site
        agent = self.resident_agent(job, result)
        try:
            if agent is not None:
                self.run_resident(agent, local_dir, result)
            else:
                self.run_one_shot(job, local_dir, result)
        finally:
            cap_log_file(local_dir / "agent.log")
            result.timings["run"] = time.perf_counter() - started

    # -- resident ---------------------------------------------------------------------------------------

    def resident_agent(self, job: Job, result: TargetResult) -> Optional[ResidentAgent]:
        """The session's agent, started now if it has none (or it died); None when jobs run one-shot."""
        return session_agent(self, result, lambda: self.start_agent(job),
                             lambda agent: agent.handshake(HELLO_TIMEOUT_S, self.check_interrupted))

    def start_agent(self, job: Job) -> ResidentAgent:
        if self.session_dir is None:
            self.session_dir = Path(tempfile.mkdtemp(prefix=f"mnn-harness-{self.name}-"))
        command = [self.python, str(job.agent()), "--serve", "--cache-models",
                   str(self.board.agent_cache_models), "--cache-mb", f"{self.board.agent_cache_mb:g}",
                   str(self.session_dir)]
        try:
            with open(self.session_dir / "start.log", "ab") as log:
                # Its own session: a Ctrl-C in the terminal reaches the harness, which stops the agent itself.
                process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                           start_new_session=True, env=site_env(self.agent_site))
        except FileNotFoundError as error:
            raise BoardError(f"{self.name}: python {self.python!r} not found; fix `python` for this board "
                             "in the inventory") from error
        return ResidentAgent(ProcessLink(process), self.name)

    def run_resident(self, agent: ResidentAgent, local_dir: Path, result: TargetResult) -> None:
        from ..agent_protocol import run_request

        result_file = local_dir / "result.json"
        grace_until = []

        def check() -> None:
            if not self.interrupted.is_set():
                return
            if result_file.exists():  # its work is done (result.json comes last): wait for the reply, keep it
                if not grace_until:
                    grace_until.append(time.monotonic() + FINISH_GRACE_S)
                if time.monotonic() < grace_until[0]:
                    return
            raise Interrupted(f"{self.name}: interrupted during run")

        run_on(self, agent, run_request(0, str(local_dir.resolve())), self.board.run_timeout, check)

    def end_agent(self) -> None:
        agent, self.agent = self.agent, None
        if agent is not None:
            agent.close()

    # -- one-shot ---------------------------------------------------------------------------------------

    def run_one_shot(self, job: Job, local_dir: Path, result: TargetResult) -> None:
        with open(local_dir / "agent.log", "wb") as log:
            try:
                agent = subprocess.Popen([self.python, str(job.agent()), str(local_dir)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         env=site_env(self.agent_site))
            except FileNotFoundError as error:
                raise BoardError(f"{self.name}: python {self.python!r} not found; fix `python` for this board "
                                 "in the inventory") from error
            self.running = agent
            try:
                self._wait(agent, time.monotonic() + self.board.run_timeout, local_dir / "result.json")
            finally:
                self.running = None
        if agent.returncode < 0:
            result.notes.append(f"the agent was killed by signal {-agent.returncode}")

    def _wait(self, agent: subprocess.Popen, deadline: float, result_file: Path) -> None:
        while agent.poll() is None:
            if self.interrupted.wait(POLL_S) and agent.poll() is None:
                if result_file.exists():  # its work is done (result.json comes last): let it exit, keep it
                    try:
                        agent.wait(timeout=FINISH_GRACE_S)
                        return
                    except subprocess.TimeoutExpired:
                        pass
                kill_group(agent)
                raise Interrupted(f"{self.name}: interrupted during run")
            if time.monotonic() > deadline:
                kill_group(agent)
                raise BoardError(f"{self.name}: the agent ran longer than run_timeout={self.board.run_timeout:g} s "
                                 "and was stopped")

    # -- the session ------------------------------------------------------------------------------------

    def close(self) -> None:
        self.end_agent()
        running = self.running
        if running is not None:
            kill_group(running)
        directory, self.session_dir = self.session_dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def probe_impl(self, health: dict) -> None:
        with tempfile.TemporaryDirectory(prefix="mnn-harness-probe-") as directory:
            out = Path(directory) / "probe.json"
            subprocess.run([self.python, str(bundle()), "--probe", str(out)], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=self.board.connect_timeout * 4)
            if not out.is_file():
                raise BoardError(f"{self.name}: the agent's probe wrote nothing with {self.python}")
            try:
                health["facts"] = check_probe(read_json(out, PROBE_JSON_MAX, "probe.json"))
            except BoardResultError as error:
                raise BoardError(f"{self.name}: {error}") from None

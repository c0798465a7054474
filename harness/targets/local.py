"""The x86 host as a target: the same agent, in a subprocess, on this machine."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..board_files import PROBE_JSON_MAX, cap_log_file, check_probe, read_json
from ..errors import BoardError, BoardResultError, Interrupted
from ..job import AGENT_PATH, Job
from ..results import TargetResult
from .base import StageCallback, Target

POLL_S = 0.1


class LocalTarget(Target):
    def run_impl(self, job: Job, local_dir: Path, on_stage: StageCallback, result: TargetResult) -> None:
        # A subprocess, not an import: MNN prints on stdout, may crash on a bad
        # setting, and must run exactly as it does on a board.
        python = self.board.python or sys.executable
        manifest = job.manifest(str(job.model_path.resolve()), str(job.inputs_path.resolve()),
                                str(job.images_path.resolve()) if job.images_path else None,
                                deadline_s=self.board.run_timeout + 60)
        (local_dir / "job.json").write_text(json.dumps(manifest, indent=1))
        for stale in ("result.json", "outputs.npz", "preprocessed.npz", "dump.json", "dump.npz"):
            (local_dir / stale).unlink(missing_ok=True)
        self.enter("run", on_stage)
        started = time.perf_counter()
        with open(local_dir / "agent.log", "wb") as log:
            try:
                # Its own session: a Ctrl-C in the terminal reaches the harness, which stops the agent itself.
                agent = subprocess.Popen([python, str(job.agent_path), str(local_dir)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            except FileNotFoundError as error:
                raise BoardError(f"{self.name}: python {python!r} not found; fix `python` for this board "
                                 "in the inventory") from error
            try:
                self._wait(agent, time.monotonic() + self.board.run_timeout, local_dir / "result.json")
            finally:
                cap_log_file(local_dir / "agent.log")
        result.timings["run"] = time.perf_counter() - started
        if agent.returncode < 0:
            result.notes.append(f"the agent was killed by signal {-agent.returncode}")

    def _wait(self, agent: subprocess.Popen, deadline: float, result_file: Path) -> None:
        while agent.poll() is None:
            if self.interrupted.wait(POLL_S) and agent.poll() is None:
                if result_file.exists():  # its work is done (result.json comes last): let it exit, keep it
                    try:
                        agent.wait(timeout=5)
                        return
                    except subprocess.TimeoutExpired:
                        pass
                self._kill(agent)
                raise Interrupted(f"{self.name}: interrupted during run")
            if time.monotonic() > deadline:
                self._kill(agent)
                raise BoardError(f"{self.name}: the agent ran longer than run_timeout={self.board.run_timeout:g} s "
                                 "and was stopped")

    @staticmethod
    def _kill(agent: subprocess.Popen) -> None:
        try:
            os.killpg(agent.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            agent.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def probe_impl(self, health: dict) -> None:
        python = self.board.python or sys.executable
        with tempfile.TemporaryDirectory(prefix="mnn-harness-probe-") as directory:
            out = Path(directory) / "probe.json"
            subprocess.run([python, str(AGENT_PATH), "--probe", str(out)], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=self.board.connect_timeout * 4)
            if not out.is_file():
                raise BoardError(f"{self.name}: the agent's probe wrote nothing with {python}")
            try:
                health["facts"] = check_probe(read_json(out, PROBE_JSON_MAX, "probe.json"))
            except BoardResultError as error:
                raise BoardError(f"{self.name}: {error}") from None

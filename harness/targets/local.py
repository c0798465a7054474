"""The x86 host as a target: the same agent, in a subprocess, on this machine."""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import BoardError
from ..job import AGENT_PATH, Job
from ..results import TargetResult
from .base import StageCallback, Target


class LocalTarget(Target):
    def run_impl(self, job: Job, local_dir: Path, on_stage: StageCallback, result: TargetResult) -> None:
        # A subprocess, not an import: MNN prints on stdout, may crash on a bad
        # setting, and must run exactly as it does on a board.
        python = self.board.python or sys.executable
        manifest = job.manifest(str(job.model_path.resolve()), str(job.inputs_path.resolve()),
                                str(job.images_path.resolve()) if job.images_path else None)
        (local_dir / "job.json").write_text(json.dumps(manifest, indent=1))
        for stale in ("result.json", "outputs.npz", "preprocessed.npz", "dump.json", "dump.npz"):
            (local_dir / stale).unlink(missing_ok=True)
        on_stage("run")
        started = time.perf_counter()
        with open(local_dir / "agent.log", "wb") as log:
            try:
                completed = subprocess.run([python, str(job.agent_path), str(local_dir)],
                                           stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                           timeout=self.board.run_timeout)
            except FileNotFoundError as error:
                raise BoardError(f"{self.name}: python {python!r} not found; fix `python` for this board "
                                 "in the inventory") from error
            except subprocess.TimeoutExpired as error:
                raise BoardError(f"{self.name}: the agent ran longer than run_timeout="
                                 f"{self.board.run_timeout:g} s") from error
        result.timings["run"] = time.perf_counter() - started
        if completed.returncode < 0:
            result.notes.append(f"the agent was killed by signal {-completed.returncode}")

    def probe_impl(self, health: dict) -> None:
        python = self.board.python or sys.executable
        with tempfile.TemporaryDirectory(prefix="mnn-harness-probe-") as directory:
            out = Path(directory) / "probe.json"
            subprocess.run([python, str(AGENT_PATH), "--probe", str(out)], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=self.board.connect_timeout * 4)
            if not out.is_file():
                raise BoardError(f"{self.name}: the agent's probe wrote nothing with {python}")
            health["facts"] = json.loads(out.read_text())

"""The one interface every target implements (Polygraphy's runner: public method, *_impl underneath)."""

import time
import traceback
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable

from ..errors import BoardError
from ..inventory import BoardSpec
from ..job import Job, ResultFileError, read_agent_result, read_preprocessed
from ..results import FAILED, OK, UNUSABLE, TargetResult

StageCallback = Callable[[str], None]
"""Told the stage a target enters: "connect", "upload", "run", "download"."""


class Target(ABC):
    def __init__(self, board: BoardSpec, lock_timeout: float = 300.0):
        self.board = board
        self.lock_timeout = lock_timeout
        """Seconds to wait for another run's lock on this board before giving up on it."""

    @property
    def name(self) -> str:
        return self.board.name

    def run(self, job: Job, local_dir: Path, on_stage: StageCallback = lambda stage: None) -> TargetResult:
        """Run the job and return a result; never raises for a board's failure.

        local_dir is this target's directory in the run's report folder: the
        agent's result.json and outputs.npz end up there, whatever the target.
        """
        local_dir.mkdir(parents=True, exist_ok=True)
        result = TargetResult(target=self.name, kind=self.board.kind, status=UNUSABLE)
        try:
            self.run_impl(job, local_dir, on_stage, result)
        except BoardError as error:
            result.status, result.error = UNUSABLE, str(error)
            return result
        except Exception as error:  # noqa: BLE001  one board's surprise must not end the others' run
            result.status = UNUSABLE
            result.error = f"{type(error).__name__}: {error}"
            (local_dir / "harness-error.txt").write_text(traceback.format_exc())
            return result
        return self.collect(local_dir, result)

    def collect(self, local_dir: Path, result: TargetResult) -> TargetResult:
        """Read what the agent wrote into local_dir into result."""
        started = time.perf_counter()
        try:
            facts, outputs = read_agent_result(local_dir)
        except ResultFileError as error:
            result.status = FAILED
            result.error = str(error) + self.agent_log_tail(local_dir)
            return result
        result.facts = facts
        result.preprocessed = read_preprocessed(local_dir, facts)
        if outputs is None:
            result.status, result.error = FAILED, facts.get("error") or "the agent reported a failure"
        else:
            result.status, result.outputs = OK, outputs
        result.timings["read"] = time.perf_counter() - started
        return result

    @staticmethod
    def agent_log_tail(local_dir: Path, lines: int = 12) -> str:
        log = local_dir / "agent.log"
        if not log.is_file():
            return ""
        tail = log.read_text(errors="replace").strip().splitlines()[-lines:]
        return ("\n  agent said: " + "\n  ".join(tail)) if tail else ""

    def probe(self) -> dict:
        """The board's health: reachable, the agent's --probe facts, who holds its lock. Never raises."""
        health = {"board": self.name, "kind": self.board.kind, "tags": list(self.board.tags),
                  "reachable": False, "error": None, "facts": {}, "lock": None}
        started = time.perf_counter()
        try:
            self.probe_impl(health)
            health["reachable"] = True
        except BoardError as error:
            health["error"] = str(error)
        except Exception as error:  # noqa: BLE001  a health check reports, it does not crash
            health["error"] = f"{type(error).__name__}: {error}"
        finally:
            self.close()
        health["seconds"] = time.perf_counter() - started
        expected = self.board.mnn_version
        found = health["facts"].get("mnn_version")
        if expected and found and found != expected:
            health["warning"] = f"MNN {found} on the board, the inventory expects {expected}"
        return health

    @abstractmethod
    def probe_impl(self, health: dict) -> None:
        """Fill health["facts"] (and health["lock"]); raise BoardError when the board cannot be used."""

    @abstractmethod
    def run_impl(self, job: Job, local_dir: Path, on_stage: StageCallback, result: TargetResult) -> None:
        """Run the job so that result.json (and outputs.npz) end up in local_dir.

        Raise BoardError when the board cannot be used; record timings and
        notes on result as you go.
        """

    def close(self) -> None:
        """Release connections; called once after the run."""

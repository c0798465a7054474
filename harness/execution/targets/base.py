"""The one interface every target implements (Polygraphy's runner: public method, *_impl underneath).

A target is a board session: the first job opens it (a connection, the
board's lock, a labgrid place, a resident agent: whatever the kind needs),
the following jobs run on what it holds, and close() ends it. The executor
keeps one per board for a whole run, matrix, night or layer search.
"""

import threading
import time
import traceback
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, List, Optional

from ...core.board_files import clean_text, read_log_tail
from ...core.errors import BoardError, BoardResultError, Interrupted
from ...config.inventory import BoardSpec
from ...core.job import AGENT_LOG, Job, read_agent_result, read_preprocessed
from ...core.results import FAILED, INTERRUPTED, OK, UNUSABLE, TargetResult
from .lock import LOCK_TIMEOUT_S

StageCallback = Callable[[str], None]
"""Told the stage a target enters: "reserve", "connect", "lock", "upload", "run", "download"."""


class Target(ABC):
    def __init__(self, board: BoardSpec, lock_timeout: float = LOCK_TIMEOUT_S):
        self.board = board
        self.lock_timeout = lock_timeout
        """Seconds to wait for another run's lock on this board before giving up on it."""
        self.interrupted = threading.Event()
        """Set (from another thread) when the run must stop: the target stops at its next check, cleans up, returns."""
        self.stage = "start"
        self.stage_started = time.monotonic()
        self.closing_notes: List[str] = []
        """What closing the session had to say (a labgrid place that would not go back): the executor adds
        it to the session's last result."""

    @property
    def name(self) -> str:
        return self.board.name

    def interrupt(self) -> None:
        """Ask the target to stop: it kills its agent, removes its job, releases its lock and returns, promptly."""
        self.interrupted.set()

    def abort(self) -> None:
        """Force a target that did not stop in time: close its connections (no orderly clean-up), so a thread
        blocked on a frozen board returns. Safe to call from another thread."""
        self.close()

    def enter(self, stage: str, on_stage: StageCallback) -> None:
        """Start a stage: tell the display, remember when (for messages), stop here if the run was interrupted."""
        self.stage, self.stage_started = stage, time.monotonic()
        on_stage(stage)
        self.check_interrupted()

    def check_interrupted(self) -> None:
        if self.interrupted.is_set():
            raise Interrupted(f"{self.name}: interrupted during {self.stage}")

    def run(self, job: Job, local_dir: Path, on_stage: StageCallback = lambda stage: None) -> TargetResult:
        """Run the job and return a result; never raises for a board's failure.

        local_dir is this target's directory in the run's report folder: the
        agent's result.json and outputs.npz end up there, whatever the target.
        """
        local_dir.mkdir(parents=True, exist_ok=True)
        result = TargetResult(target=self.name, kind=self.board.kind, status=UNUSABLE)
        try:
            try:
                self.run_impl(job, local_dir, on_stage, result)
            except Interrupted as error:
                result.status, result.error = INTERRUPTED, str(error)
                return result
            except BoardResultError as error:
                result.status, result.error = FAILED, f"{error}" + self.agent_log_tail(local_dir)
                return result
            except BoardError as error:
                result.status, result.error = self._unless_interrupted(UNUSABLE, str(error))
                return result
            except Exception as error:  # noqa: BLE001  one board's surprise must not end the others' run
                result.status, result.error = self._unless_interrupted(UNUSABLE, f"{type(error).__name__}: {error}")
                if result.status == UNUSABLE:
                    (local_dir / "harness-error.txt").write_text(traceback.format_exc())
                return result
            return self.check_version(self.collect(local_dir, result, job), job)
        finally:
            # Whatever a board said reaches a terminal: no control sequences from it.
            result.error = clean_text(result.error) if result.error else result.error
            result.notes = [clean_text(note) for note in result.notes]

    def expected_mnn_version(self, job: Job) -> Optional[str]:
        """The MNN version this job must run with here (None: whatever the board has): what the run asks for."""
        return getattr(job, "mnn_version", None)

    def check_version(self, result: TargetResult, job: Job) -> TargetResult:
        """A job that ran with another MNN than it asked for is not that version's result: the board is unusable
        for it, whatever its numbers (MNN's own word on its version is the judge)."""
        expected, ran = self.expected_mnn_version(job), result.facts.get("mnn_version")
        if result.status != OK or not expected or ran == expected:
            return result
        result.status, result.outputs = UNUSABLE, {}
        if self.board.mnn == "system" and self.board.kind != "local":
            result.error = (f"{self.name}: the run asks for MNN {expected}, and this board runs its own MNN {ran} "
                            "(`mnn: system`): its numbers would be another version's; remove `mnn: system` for "
                            "this board to let the harness bring MNN there")
        else:
            result.error = (f"{self.name}: asked for MNN {expected}, and MNN says {ran} ran; another MNN on the "
                            "board's path comes first (PYTHONPATH, a .pth file): remove it")
        return result

    def _unless_interrupted(self, status: str, error: str):
        """An error caused by our own stopping (a closed connection) is the interruption, not the board's fault."""
        if self.interrupted.is_set():
            return INTERRUPTED, f"{self.name}: interrupted during {self.stage}"
        return status, error

    def collect(self, local_dir: Path, result: TargetResult, job: Optional[Job] = None) -> TargetResult:
        """Read what the agent wrote into local_dir into result, validated and bounded (see board_files)."""
        started = time.perf_counter()
        try:
            facts, outputs = read_agent_result(local_dir, job)
            result.facts = facts
            result.preprocessed = read_preprocessed(local_dir, facts, job)
        except BoardResultError as error:
            result.status = FAILED
            result.error = f"{error}" + self.agent_log_tail(local_dir)
            return result
        if outputs is None:
            result.status, result.error = FAILED, facts.get("error") or "the agent reported a failure"
        else:
            result.status, result.outputs = OK, outputs
        result.timings["read"] = time.perf_counter() - started
        return result

    @staticmethod
    def agent_log_tail(local_dir: Path, lines: int = 12) -> str:
        tail = read_log_tail(local_dir / AGENT_LOG, keep=64 << 10)
        if tail is None:
            return ""
        shown = [line[:300] for line in tail.text.strip().splitlines()[-lines:]]
        return ("\n  agent said: " + "\n  ".join(shown)) if shown else ""

    def probe(self) -> dict:
        """The board's health: reachable, the agent's --probe facts, who holds its lock. Never raises."""
        health = {"board": self.name, "kind": self.board.kind, "tags": list(self.board.tags),
                  "reachable": False, "error": None, "facts": {}, "lock": None}
        started = time.perf_counter()
        try:
            self.probe_impl(health)
            health["reachable"] = True
        except BoardError as error:
            health["error"] = clean_text(str(error))
        except Exception as error:  # noqa: BLE001  a health check reports, it does not crash
            health["error"] = clean_text(f"{type(error).__name__}: {error}")
        finally:
            self.close()
        health["seconds"] = time.perf_counter() - started
        expected = self.board.mnn_version
        found = health["facts"].get("mnn_version")
        if expected and found and found != expected and self.board.mnn == "system":
            health["warning"] = f"MNN {found} on the board, the inventory expects {expected}"
        return health

    def clean(self) -> dict:
        """Remove what failed or interrupted runs left on the board and trim its store (`harness boards --clean`).

        Returns what was freed; a board without a store (the x86 host) has nothing to clean.
        """
        return {"board": self.name, "cleaned": False, "note": "nothing to clean on this kind of board"}

    @abstractmethod
    def probe_impl(self, health: dict) -> None:
        """Fill health["facts"] (and health["lock"]); raise BoardError when the board cannot be used."""

    @abstractmethod
    def run_impl(self, job: Job, local_dir: Path, on_stage: StageCallback, result: TargetResult) -> None:
        """Run the job so that result.json (and outputs.npz) end up in local_dir.

        Raise BoardError when the board cannot be used, BoardResultError when
        what it sent breaks the contract, Interrupted when self.interrupted
        stopped it; record timings and notes on result as you go.
        """

    def close(self) -> None:
        """End the session: stop its agent, remove what it left on the board, release the lock and the
        connection. Called once its jobs are done (and after an interruption); idempotent."""

"""The executor: a plan of jobs run over board sessions, one session per board, the boards in parallel.

A plan is a list of PlannedJob: a job on one board (a scenario variant: a
run, a matrix setting, a night's scenario, a round of the layer search), the
folder its files go to, a label for the display and, for the references, a
reuse key. `harness run`, the matrix, `nightly` and `layers` build plans and
hand them here; nothing else talks to boards.

Each board of a plan gets a thread that runs the board's jobs back to back, in
plan order, on the board's session (targets.base.Target: one connection, its
lock and labgrid place, one resident agent), while the boards run in
parallel. Sessions outlive a plan: an Executor keeps them for every plan it
runs (the rounds of a layer search, a run and its --find-layer), and close()
ends them all. A failure is the job's result; it never stops another board.

Reuse: the jobs of one board that carry the same reuse key compute the same
thing (the planner keys the x86 reference and the source model on what goes
into them: model bytes, inputs, and the settings that reach that runtime).
The first runs; the others get its result and its files, marked reused_from.

Interruption (Ctrl-C, SIGTERM): the main thread only waits, so a signal is
seen at once. Every session is asked to stop, idle ones too: it kills its
agent, removes its job dirs, releases its lock and labgrid place, and only
then its results are told. A session that has not done so after STOP_GRACE_S
(a frozen board) has its connection closed under it and its jobs are
reported interrupted. Threads are daemons: one stuck in a frozen board's
socket never keeps the process from exiting.

warm=False runs every job on a session of its own (a connection and an agent
process per job, the references recomputed): the harness as it was before
sessions, kept to measure what sessions save (`make bench`).
"""

import copy
import dataclasses
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..config.inventory import BoardSpec
from ..core.job import AGENT_LOG, JOB_FILE, RESULT_FILES, Job
from ..core.results import INTERRUPTED, OK, TargetResult
from .interrupt import Interruption
from .targets import make_target
from .targets.base import Target
from .targets.lock import LOCK_TIMEOUT_S

STOP_GRACE_S = 5.0
"""After an interruption, how long boards get to kill their agents, remove their jobs and release their locks
before their connections are closed under them (a frozen board)."""
CLOSE_TIMEOUT_S = 30.0
"""How long the end of the sessions may take before the ones still closing are cut off."""
ABORT_WAIT_S = 2.0

JOB_FOLDER_FILES = (JOB_FILE, *RESULT_FILES, AGENT_LOG)
"""What a job leaves in its folder: what a reused job's folder gets too."""


class Progress:
    """What the executor and the run tell a display; the terminal report implements it with rich."""

    def step(self, message: str) -> None: ...

    def add_target(self, name: str) -> None: ...

    def job(self, name: str, label: str, number: int, count: int) -> None:
        """The board starts the number-th of its count jobs in this plan (label: its setting or scenario)."""

    def stage(self, name: str, stage: str) -> None: ...

    def target_done(self, name: str, result: TargetResult) -> None: ...


@dataclass(frozen=True)
class PlannedJob:
    board: BoardSpec
    job: Job
    folder: Path
    """Where the job's files go: reports/<run-id>/targets/<board>/ for a run."""
    label: str = ""
    """What the job belongs to, for the display: a matrix setting, a nightly scenario, a layer round."""
    reuse: Optional[str] = None
    """Jobs of one board with the same key compute the same thing: the first runs, the others take its result."""


class Executor:
    """Board sessions for one harness invocation, and the plans run over them."""

    def __init__(self, progress: Optional[Progress] = None, interruption: Optional[Interruption] = None,
                 lock_timeout: float = LOCK_TIMEOUT_S, warm: bool = True):
        self.progress = progress or Progress()
        self.interruption = interruption or Interruption()
        self.lock_timeout = lock_timeout
        self.warm = warm
        self.sessions: Dict[BoardSpec, Target] = {}
        self.last_result: Dict[BoardSpec, TargetResult] = {}
        self.reused: Dict[Tuple[BoardSpec, str], Tuple[TargetResult, Path]] = {}
        self.shown: set = set()
        self.stopped = False
        self.ended_at: Dict[int, float] = {}
        """Plan index -> when its job's result came (time.perf_counter()), for the last plan run."""
        self.not_started: set = set()
        """Plan indices of the last plan run whose job never started (the run was interrupted first)."""
        self._guard = threading.Lock()

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- one plan ----------------------------------------------------------------------------------------

    def run(self, plan: List[PlannedJob]) -> List[TargetResult]:
        """Every job of the plan, each board's back to back, the boards at once; results in plan order."""
        self.ended_at, self.not_started = {}, set()
        if self.stopped or self.interruption.is_set():
            self.not_started = set(range(len(plan)))
            return [not_started(item) for item in plan]
        by_board: Dict[BoardSpec, List[int]] = {}
        for index, item in enumerate(plan):
            by_board.setdefault(item.board, []).append(index)
        for board in by_board:
            if board.name not in self.shown:
                self.shown.add(board.name)
                self.progress.add_target(board.name)
        results: Dict[int, TargetResult] = {}
        done: "queue.Queue[int]" = queue.Queue()
        current: Dict[BoardSpec, int] = {}
        told: set = set()

        def deliver(index: int, result: TargetResult) -> bool:
            with self._guard:
                if index in results:
                    return False
                results[index] = result
                self.ended_at[index] = time.perf_counter()
                self.last_result[plan[index].board] = result
            done.put(index)
            return True

        def finish_board(board: BoardSpec) -> None:
            with self._guard:
                if board in told:
                    return
                told.add(board)
                mine = [results[index] for index in by_board[board] if index in results]
            failed = [result for result in mine if result.status != OK]
            if mine:
                self.progress.target_done(board.name, failed[0] if failed else mine[-1])

        def work(board: BoardSpec, indices: List[int]) -> None:
            try:
                for number, index in enumerate(indices, 1):
                    if self.interruption.is_set():
                        break
                    current[board] = index
                    result = self._run_one(plan[index], number, len(indices))
                    if result.status == INTERRUPTED or self.interruption.is_set():
                        self.close_session(board)  # agents killed, job dirs removed, lock released: then told
                    deliver(index, result)
            finally:
                left = [index for index in indices if index not in results]
                if left:
                    self.close_session(board)
                    for index in left:
                        if deliver(index, not_started(plan[index])):
                            self.not_started.add(index)
                finish_board(board)

        threads = {board: threading.Thread(target=work, args=(board, indices), name=f"board-{board.name}",
                                           daemon=True) for board, indices in by_board.items()}
        for thread in threads.values():
            thread.start()
        with self.interruption.boards_running():
            self._wait_for(results, len(plan), done, None)
            if self.interruption.is_set():
                self._stop(plan, results, done, by_board, current, threads, deliver, finish_board)
        return [results[index] for index in range(len(plan))]

    def _run_one(self, item: PlannedJob, number: int, count: int) -> TargetResult:
        board = item.board
        key = (board, item.reuse) if item.reuse and self.warm else None
        if key in self.reused:
            original, folder = self.reused[key]
            return reused_result(original, folder, item.folder)
        target = self.target_for(board)
        self.progress.job(board.name, item.label, number, count)
        result = target.run(item.job, item.folder, lambda stage: self.progress.stage(board.name, stage))
        if not self.warm:
            self.close_session(board, result)
        if key is not None and result.ok:
            self.reused[key] = (result, item.folder)
        return result

    def target_for(self, board: BoardSpec) -> Target:
        """The board's session (warm), or a session for this job alone with a one-shot agent (warm=False)."""
        with self._guard:
            target = self.sessions.get(board)
            if target is None or not self.warm:
                spec = board if self.warm else dataclasses.replace(board, resident=False)
                target = self.sessions[board] = make_target(spec, self.lock_timeout)
            return target

    def _wait_for(self, results: dict, count: int, done: "queue.Queue[int]", deadline: Optional[float]) -> None:
        while len(results) < count and (deadline is None or time.monotonic() < deadline):
            if deadline is None and self.interruption.is_set():
                return
            try:
                done.get(timeout=0.1)
            except queue.Empty:
                pass

    def _stop(self, plan, results, done, by_board, current, threads, deliver, finish_board) -> None:
        """Ctrl-C or SIGTERM: every session stops and cleans up; a frozen one is cut off after STOP_GRACE_S."""
        self.stopped = True
        if len(results) < len(plan):
            self.progress.step(f"interrupted ({self.interruption.signal_name}): stopping the agents, removing "
                               "their jobs, releasing the boards' locks (again to quit at once)")
        with self._guard:
            sessions = dict(self.sessions)
        for target in sessions.values():
            target.interrupt()
        # Sessions no thread works on (their jobs done, or none in this plan) still hold a lock and an agent.
        closers = {board: threading.Thread(target=self.close_session, args=(board,), name=f"close-{board.name}",
                                           daemon=True)
                   for board in sessions if board not in threads or not threads[board].is_alive()}
        for closer in closers.values():
            closer.start()
        deadline = time.monotonic() + STOP_GRACE_S
        self._wait_for(results, len(plan), done, deadline)
        for closer in closers.values():
            closer.join(timeout=max(0.0, deadline - time.monotonic()))
        stuck = {board for board, indices in by_board.items() if any(index not in results for index in indices)}
        stuck |= {board for board, closer in closers.items() if closer.is_alive()}
        for board in stuck:
            target = sessions.get(board)
            if target is not None:
                aborter = threading.Thread(target=target.abort, name=f"abort-{board.name}", daemon=True)
                aborter.start()
                aborter.join(timeout=ABORT_WAIT_S)
        self._wait_for(results, len(plan), done, time.monotonic() + 1.0)
        for board in stuck:
            target = sessions.get(board)
            stage = target.stage if target is not None else "start"
            for index in by_board.get(board, []):
                if index in results:
                    continue
                if index == current.get(board):
                    result = TargetResult(
                        target=board.name, kind=board.kind, status=INTERRUPTED,
                        error=f"{board.name}: interrupted during {stage}; it did not stop within {STOP_GRACE_S:g} s, "
                              "so its connection was closed (its agent dies with the session; the next run breaks "
                              "its lock)")
                else:
                    result = not_started(plan[index])
                    self.not_started.add(index)
                deliver(index, result)
            if board in by_board:
                finish_board(board)

    # -- sessions ----------------------------------------------------------------------------------------

    def close_session(self, board: BoardSpec, last: Optional[TargetResult] = None) -> None:
        """End one board's session; what closing it had to say goes to its last result."""
        with self._guard:
            target = self.sessions.get(board)
        if target is None:
            return
        target.close()
        notes, target.closing_notes = target.closing_notes, []
        last = last or self.last_result.get(board)
        if notes and last is not None:
            last.notes.extend(notes)

    def close(self) -> None:
        """End every session at once (agents stopped, session dirs removed, locks and places released)."""
        with self._guard:
            boards = list(self.sessions)
        closers = [threading.Thread(target=self.close_session, args=(board,), name=f"close-{board.name}",
                                    daemon=True) for board in boards]
        for closer in closers:
            closer.start()
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        for board, closer in zip(boards, closers):
            closer.join(timeout=max(0.0, deadline - time.monotonic()))
            if closer.is_alive():
                self.sessions[board].abort()
        with self._guard:
            self.sessions.clear()


def not_started(item: PlannedJob) -> TargetResult:
    return TargetResult(target=item.board.name, kind=item.board.kind, status=INTERRUPTED,
                        error=f"{item.board.name}: interrupted before this job started")


def reused_result(original: TargetResult, source: Path, folder: Path) -> TargetResult:
    """The result of a job that already ran on this board, for another job that computes the same thing:
    its files linked (or copied) into this job's folder, its values shared, marked reused_from."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in JOB_FOLDER_FILES:
        origin, copied = source / name, folder / name
        if not origin.is_file() or origin.is_symlink():
            continue
        copied.unlink(missing_ok=True)
        try:
            os.link(origin, copied)
        except OSError:
            shutil.copy2(origin, copied)
    return dataclasses.replace(original, facts=copy.deepcopy(original.facts), outputs=dict(original.outputs),
                               timings={}, notes=[], locked_span=None, bytes_uploaded=0, bytes_downloaded=0,
                               reused_from=str(source))

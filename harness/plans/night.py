"""`harness nightly NIGHTLY.yaml`: many scenarios on their boards, stored in the history, compared with last night.

The nightly file (config/nightly.py) lists the scenarios and the regression
policy. Every scenario and inventory is read and checked before anything runs
(exit 2 with the file, the key and the fix). Exit codes: 0 all good; 1 a
comparison failed, a model did not run, or (fail_on_regression) a metric
regressed; 2 a configuration error; 3 a board could not be used; 4 the night
ran but could not be written to the history (another writer held it past
--history-timeout): its runs are in their folders, which it names.
"""

import sqlite3
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Optional, Tuple

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from ..config.inventory import Inventory, find_inventory, load_inventory
from ..config.nightly import NightlyConfig, NightlyRun, load_nightly  # noqa: F401  (load_nightly re-exported)
from ..config.scenario import Scenario, load_scenario
from ..core.errors import HarnessError
from ..execution.executor import Executor
from ..execution.interrupt import Interruption
from ..execution.targets.lock import LOCK_TIMEOUT_S
from ..record.history import (DASHBOARD_FILE, EXIT_HISTORY, HISTORY_FILE, HISTORY_TIMEOUT_S, History,
                              HistoryUnreadable, NightDiff, NightResult, NightRun, RegressionPolicy, is_busy,
                              unreadable)
from ..record.run import EXIT_BOARD, EXIT_COMPARISON_FAILED, EXIT_CONFIG, EXIT_PASS
from ..record.run_folder import write_file
from ..views.dashboard import render_dashboard
from ..views.progress import TerminalProgress
from ..views.terminal import summary_line
from .run import prepare_run, run_scenario, run_together, select_targets, write_run_files

HISTORY_WAIT_STEP_S = 2.0
"""One attempt's wait for the lock: short, so the wait is said at once and the deadline is kept."""


@dataclass
class PlannedRun:
    entry: NightlyRun
    scenario: Scenario
    inventory: Inventory
    targets_from: str = ""
    """Where its `targets` are written in the nightly file."""


def plan(config: NightlyConfig, inventory_arg: Optional[str]) -> List[PlannedRun]:
    """Every scenario and inventory read and checked before anything runs."""

    planned = []
    for index, entry in enumerate(config.runs):
        scenario = load_scenario(entry.scenario)
        inventory = load_inventory(entry.inventory or find_inventory(inventory_arg))
        select_targets(scenario, inventory, entry.targets, entry_targets(config, index))
        planned.append(PlannedRun(entry, scenario, inventory, entry_targets(config, index)))
    return planned


def entry_targets(config: "NightlyConfig", index: int) -> str:
    """Where a nightly entry's `targets` are written, for their errors and the run's report."""
    return f"{config.path}: runs[{index}].targets"


def night_exit_code(runs: List[NightRun], diff: NightDiff, policy: RegressionPolicy) -> int:
    codes = {run.exit_code for run in runs}
    interrupted = codes & {130, 143}
    if interrupted:
        return min(interrupted)
    if EXIT_COMPARISON_FAILED in codes or (policy.fail_on_regression and diff.regressions):
        return EXIT_COMPARISON_FAILED
    if EXIT_CONFIG in codes:
        return EXIT_CONFIG
    if EXIT_BOARD in codes:
        return EXIT_BOARD
    return EXIT_PASS


class HistoryUnwritable(Exception):
    """The night could not be written to history.sqlite (locked past the timeout, or the file is broken)."""

    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.fix = fix


def store_night(history_path: Path, config: NightlyConfig, started_at: str, finished_at: str,
                records: List[NightRun], timeout: float = HISTORY_TIMEOUT_S,
                on_wait=lambda message: None) -> Tuple[int, NightDiff, int]:
    """Write the night, compare it with the previous one and set its exit code, in one transaction.

    Another writer's lock is waited for, attempt after attempt, up to
    timeout seconds; each attempt is whole or nothing, so a retry never
    writes the night twice. Returns (night id, diff, exit code).
    """
    deadline = time.monotonic() + timeout
    told = False
    while True:
        step = max(0.05, min(HISTORY_WAIT_STEP_S, deadline - time.monotonic()))
        try:
            with History(history_path, busy_timeout=step) as history:
                history.check()
                with history.transaction():
                    night = history.record_night(started_at, finished_at, str(config.path), -1, records)
                    diff = history.compare(night, config.regression)
                    code = night_exit_code(records, diff, config.regression)
                    history.set_exit_code(night, code)
            return night, diff, code
        except HistoryUnreadable as error:
            raise HistoryUnwritable(error.problem, error.fix) from error
        except (sqlite3.Error, OSError) as error:
            busy = isinstance(error, sqlite3.Error) and is_busy(error)
            broken = unreadable(history_path, error)
            if broken is not None:
                raise HistoryUnwritable(broken.problem, broken.fix) from error
            if not busy:
                raise HistoryUnwritable(f"{type(error).__name__}: {error}", f"check that {history_path} is a "
                                        "file this user may write") from error
            if time.monotonic() >= deadline:
                raise HistoryUnwritable(f"another writer held it for more than {timeout:g} s ({error})",
                                        f"find the process holding the history (`fuser -v {history_path}`) and "
                                        "end it; the next night compares with the last one recorded") from error
            if not told:
                on_wait(f"{history_path} is locked by another writer; waiting up to {timeout:g} s "
                        "(the night's runs are safe in their folders)")
                told = True


def run_nightly(config: NightlyConfig, reports_dir: Path, console: Console,
                inventory_arg: Optional[str] = None, lock_timeout: float = LOCK_TIMEOUT_S,
                history_timeout: float = HISTORY_TIMEOUT_S, interruption=None, warm: bool = True) -> NightResult:
    """Every scenario of the night; one that fails (even its model not building) does not stop the others.

    warm (the default): every scenario is made ready first (models, inputs), then all their jobs run as one
    plan, each board's back to back on its session (one connection, one resident agent) while the boards
    run at once, a reference whose inputs two scenarios share computed once. warm=False: one run after the
    other, a connection and an agent process per job (as before sessions; the bench's baseline).
    """
    interruption = interruption or Interruption()
    planned = plan(config, inventory_arg)
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    outcomes: List[Tuple[NightRun, Optional[Path]]] = []

    def failed(item: PlannedRun, error: Exception) -> Tuple[NightRun, None]:
        if isinstance(error, HarnessError):
            console.print(f"[bold red]{escape(item.scenario.name)}: error:[/] {escape(str(error))}", highlight=False)
            return NightRun(item.scenario.name, str(item.entry.scenario), error.exit_code, error=str(error)), None
        # one broken run must not cost the night the others
        console.print(f"[bold red]{escape(item.scenario.name)} crashed:[/] {type(error).__name__}: "
                      f"{escape(str(error))}", highlight=False)
        console.print(Text(traceback.format_exc(), "dim"), highlight=False)
        return NightRun(item.scenario.name, str(item.entry.scenario), EXIT_COMPARISON_FAILED,
                        error=f"{type(error).__name__}: {error}"), None

    def record(index: int, item: PlannedRun, judged) -> Tuple[NightRun, Optional[Path]]:
        console.rule(f"[bold]{index}/{len(planned)}  {item.scenario.name}[/]  [dim]{item.entry.scenario}[/]")
        try:
            stored = write_run_files(judged, console)
        except Exception as error:  # noqa: BLE001  a run whose files cannot be written is that run's failure
            return failed(item, error)
        console.print(f"[dim]results: {stored.folder}[/]")
        console.print(summary_line(stored))
        return NightRun(item.scenario.name, str(item.entry.scenario), stored.exit_code, stored), stored.folder

    if warm:
        ready: List[Tuple[int, PlannedRun, object]] = []
        errors = {}
        with TerminalProgress(console) as progress:
            for index, item in enumerate(planned, 1):
                try:
                    ready.append((index, item, prepare_run(item.scenario, item.inventory, reports_dir, progress,
                                                           item.entry.targets, label=item.scenario.name,
                                                           only_from=item.targets_from)))
                except Exception as error:  # noqa: BLE001  said per scenario below, in its place
                    errors[index] = failed(item, error)
            with Executor(progress, interruption, lock_timeout) as executor:
                reports = dict(zip([index for index, _, _ in ready],
                                   run_together([prepared for _, _, prepared in ready], executor)))
        for index, item in enumerate(planned, 1):
            if index in errors:
                outcomes.append(errors[index])
            elif reports.get(index) is not None:
                outcomes.append(record(index, item, reports[index]))
            # else: interrupted before any of its boards started: the night stops there
    else:
        for index, item in enumerate(planned, 1):
            try:
                with TerminalProgress(console) as progress:
                    report = run_scenario(item.scenario, item.inventory, reports_dir, progress, item.entry.targets,
                                          lock_timeout=lock_timeout, interruption=interruption, warm=False)
            except Exception as error:  # noqa: BLE001  as above
                outcomes.append(failed(item, error))
                continue
            outcomes.append(record(index, item, report))
            if report.interrupted:
                break  # Ctrl-C / SIGTERM: the night stops here; what ran is kept
    records = [outcome for outcome, _ in outcomes]
    run_dirs = [run_dir for _, run_dir in outcomes]
    history_path = Path(reports_dir) / HISTORY_FILE
    finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    history_error, history_fix, dashboard = None, None, None
    try:
        night, diff, code = store_night(history_path, config, started_at, finished_at, records, history_timeout,
                                        lambda message: console.print(f"[yellow]{escape(message)}[/]"))
    except HistoryUnwritable as error:
        night, diff, history_error, history_fix = None, NightDiff(previous=None), str(error), error.fix
        code = night_exit_code(records, diff, config.regression) or EXIT_HISTORY
    if night is not None:
        try:
            with History(history_path) as history:
                dashboard = write_file(Path(reports_dir), DASHBOARD_FILE,
                                       render_dashboard(history, Path(reports_dir), diff))
        except Exception as error:  # a view failing must not hide the night's verdict
            console.print(f"[yellow]could not write the dashboard: {type(error).__name__}: {escape(str(error))}[/]")
    return NightResult(night=night, history_path=history_path, runs=records, run_dirs=run_dirs, diff=diff,
                       exit_code=code, policy=config.regression, started_at=started_at,
                       wall_s=time.perf_counter() - started, history_error=history_error, history_fix=history_fix,
                       dashboard=dashboard)

"""The nightly history: every night's runs in SQLite (reports/history.sqlite), and what changed.

Tables (created on first use):
- nights:   one row per `harness nightly` (when, which file, its exit code);
- runs:     one row per scenario run in a night (run id, exit code, the error
            if it never produced a summary, its settings and its whole summary.json);
- verdicts: one row per scenario x board x output (the conversion check as
            the board "x86 vs onnxruntime"): pass, fail, error (the
            model did not run) or unusable (the board could not be used), with the reason;
- results:  one row per scenario x board x output x metric with its value.

Several writers may meet (two nightlies, a `sqlite3` shell left open): the
file is in WAL mode (readers never block a writer), every connection waits
on a busy lock, and a night is written in one transaction that is retried
whole; a night that cannot be written is never half written.

A key is (scenario, board, output). Settings are not part of the key: a
night that changed the precision is the same scenario, and a difference it
makes is what the comparison is for (it is reported as a settings change).
"""

import json
import math
import sqlite3
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from ..config.nightly import RegressionPolicy  # noqa: F401  (the nightly file's `regression:`; re-exported)
from ..core.errors import ConfigError
from .numbers import format_metric
from .outcome import ERROR, PASS, WHOLE_RUN, label_metric, parity_verdicts, verdicts
from .run import RunRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS nights (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    config TEXT,
    exit_code INTEGER
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    night_id INTEGER NOT NULL REFERENCES nights(id),
    scenario TEXT NOT NULL,
    scenario_path TEXT,
    run_id TEXT,
    exit_code INTEGER,
    error TEXT,
    settings TEXT,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS verdicts (
    run INTEGER NOT NULL REFERENCES runs(id),
    scenario TEXT NOT NULL,
    board TEXT NOT NULL,
    output TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS results (
    run INTEGER NOT NULL REFERENCES runs(id),
    scenario TEXT NOT NULL,
    board TEXT NOT NULL,
    output TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL
);
CREATE INDEX IF NOT EXISTS runs_by_night ON runs(night_id);
CREATE INDEX IF NOT EXISTS verdicts_by_run ON verdicts(run);
CREATE INDEX IF NOT EXISTS results_by_run ON results(run);
"""


ERROR_METRICS = ("max_abs", "mean_abs", "max_rel", "median_abs", "p99_abs", "mean_rel", "median_rel", "p99_rel",
                 "hard_flips")
"""Smaller is better; a regression is growth by more than the policy's factor."""
AGREEMENT_METRICS = {"cosine": "cosine_drop", "argmax_agreement": "agreement_drop", "miou": "agreement_drop",
                     "decoded_agreement": "agreement_drop"}
"""Larger is better; a regression is a drop by more than the policy's absolute margin (the named field)."""
ERROR_FLOOR = 1e-9
"""Error metrics below this are taken as this, so that 0 -> 1e-12 is not an infinite regression."""

Key = Tuple[str, str, str]


@dataclass
class NightRun:
    """One scenario run of a night, as the history stores it."""

    scenario: str
    scenario_path: str
    exit_code: int
    record: Optional[RunRecord] = None
    """The run's record (its summary.json); None when the run stopped before it had one."""
    error: Optional[str] = None


@dataclass
class Outcome:
    status: str
    reason: Optional[str]
    metrics: Dict[str, float] = field(default_factory=dict)


@dataclass
class Regression:
    key: Key
    metric: str
    before: float
    after: float

    @property
    def change(self) -> str:
        if self.metric in ERROR_METRICS:
            return f"x{self.after / max(self.before, ERROR_FLOOR):.3g}"
        if self.metric in ("argmax_agreement", "miou", "decoded_agreement"):
            return f"{(self.after - self.before) * 100:+.3g} points"
        return f"{self.after - self.before:+.3g}"


@dataclass
class NightDiff:
    """This night against the previous one."""

    previous: Optional[int]
    new_failures: List[Tuple[Key, str]] = field(default_factory=list)
    fixed: List[Key] = field(default_factory=list)
    still_failing: List[Tuple[Key, str]] = field(default_factory=list)
    regressions: List[Regression] = field(default_factory=list)
    settings_changed: List[Tuple[str, dict, dict]] = field(default_factory=list)
    new_keys: List[Key] = field(default_factory=list)
    gone_keys: List[Key] = field(default_factory=list)

    def as_dict(self) -> dict:
        def key(k):
            return {"scenario": k[0], "board": k[1], "output": k[2]}
        return {
            "previous_night": self.previous,
            "new_failures": [dict(key(k), reason=r) for k, r in self.new_failures],
            "fixed": [key(k) for k in self.fixed],
            "still_failing": [dict(key(k), reason=r) for k, r in self.still_failing],
            "regressions": [dict(key(r.key), metric=r.metric, before=r.before, after=r.after, change=r.change)
                            for r in self.regressions],
            "settings_changed": [{"scenario": s, "before": b, "after": a} for s, b, a in self.settings_changed],
            "new": [key(k) for k in self.new_keys],
            "gone": [key(k) for k in self.gone_keys],
        }


def verdict_rows(record: RunRecord) -> List[Tuple[str, str, str, Optional[str]]]:
    """(board, output, status, reason) for every compared board and output of a record."""
    return [(v.board, v.output, v.status, None if v.passed else "; ".join(v.reasons))
            for v in verdicts(record, failing_first=False) + parity_verdicts(record)]


def is_regression(metric: str, before: Optional[float], after: Optional[float], policy: RegressionPolicy) -> bool:
    if before is None or after is None:
        return False
    if metric in ERROR_METRICS:
        return max(after, ERROR_FLOOR) > max(before, ERROR_FLOOR) * policy.margin
    if metric in AGREEMENT_METRICS:
        return before - after > getattr(policy, AGREEMENT_METRICS[metric])
    return False


HISTORY_TIMEOUT_S = 300.0
"""How long a night waits for another writer to release the history before it gives up on writing it."""
BUSY_TIMEOUT_S = 10.0
"""How long one statement waits for another writer's lock before SQLite says "database is locked"."""


def is_busy(error: sqlite3.Error) -> bool:
    """Another connection holds the lock (worth waiting for), as opposed to a broken or unwritable file."""
    return isinstance(error, sqlite3.OperationalError) and any(
        words in str(error) for words in ("database is locked", "database is busy", "database table is locked"))


def read_trend(path: Path, scenario: Optional[str], nights: int, metrics) -> Tuple[List[sqlite3.Row], List[dict]]:
    """`harness history`: the last nights and the trend per scenario x board x output, read in one go; a broken
    file is HistoryUnreadable wherever SQLite finds the damage (its header, or a page the query reads)."""
    with History(path) as history:
        try:
            return history.nights(nights), history.trend(scenario, nights, metrics)
        except sqlite3.DatabaseError as error:
            broken = unreadable(Path(path), error)
            if broken is not None:
                raise broken from error
            raise


class HistoryUnreadable(ConfigError):
    """history.sqlite is not a SQLite database SQLite can read (truncated, overwritten, another file)."""

    def __init__(self, path: Path, error: sqlite3.Error):
        super().__init__(path, None, f"is not a history SQLite can read ({type(error).__name__}: {error})",
                         UNREADABLE_FIX.format(path=path))


UNREADABLE_FIX = ("move it aside (`mv {path} {path}.broken`): the next `harness nightly` starts a new history, "
                  "and every night's runs stay in their own folders (reports/<run-id>/summary.json)")


def unreadable(path: Path, error: BaseException) -> Optional[HistoryUnreadable]:
    """The error as a broken history file, or None when it is not one (a lock is worth waiting for)."""
    if isinstance(error, sqlite3.DatabaseError) and not is_busy(error) and any(
            words in str(error) for words in ("not a database", "malformed", "file is encrypted", "disk image")):
        return HistoryUnreadable(path, error)
    return None


class History:
    """The SQLite history database; use as a context manager or call close().

    A file that is not a database SQLite can read is HistoryUnreadable (a ConfigError naming the file and
    what to do), never a traceback.
    """

    def __init__(self, path, busy_timeout: float = BUSY_TIMEOUT_S):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: transactions are begun by hand (BEGIN IMMEDIATE), so a writer takes the write lock
        # at the start, where SQLite's busy wait applies, and not half-way through.
        self.db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
        try:
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")  # persistent; readers no longer block the writer
            self.db.executescript(SCHEMA)
        except BaseException as error:
            self.db.close()
            broken = unreadable(self.path, error)
            if broken is not None:
                raise broken from error
            raise

    def check(self) -> None:
        """SQLite's quick_check of every page (seconds at most, once a night): a night is not written into a
        damaged file, where the damage would spread; HistoryUnreadable if it is damaged."""
        try:
            problems = [row[0] for row in self.db.execute("PRAGMA quick_check(5)").fetchall()]
        except sqlite3.DatabaseError as error:
            broken = unreadable(self.path, error)
            if broken is not None:
                raise broken from error
            raise
        if problems != ["ok"]:
            raise HistoryUnreadable(self.path, sqlite3.DatabaseError(
                f"database disk image is malformed: {'; '.join(problems)}"))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction holding the write lock from its start; nested uses join the outer one."""
        if self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.db.close()

    def record_night(self, started_at: str, finished_at: str, config: str, exit_code: int,
                     runs: List[NightRun]) -> int:
        """Store one night with all its runs in one transaction; returns the night's id."""
        with self.transaction():
            night = self.db.execute("INSERT INTO nights (started_at, finished_at, config, exit_code) "
                                    "VALUES (?, ?, ?, ?)", (started_at, finished_at, config, exit_code)).lastrowid
            for run in runs:
                record = run.record
                run_row = self.db.execute(
                    "INSERT INTO runs (night_id, scenario, scenario_path, run_id, exit_code, error, settings, summary)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (night, run.scenario, run.scenario_path, record.run_id if record else None,
                     run.exit_code, run.error, json.dumps(record.settings if record else None),
                     json.dumps(record.to_dict()) if record else None)).lastrowid
                if record is None:
                    self.db.execute("INSERT INTO verdicts VALUES (?, ?, ?, ?, ?, ?)",
                                    (run_row, run.scenario, WHOLE_RUN, WHOLE_RUN, ERROR, run.error))
                    continue
                for board, output, status, reason in verdict_rows(record):
                    self.db.execute("INSERT INTO verdicts VALUES (?, ?, ?, ?, ?, ?)",
                                    (run_row, run.scenario, board, output, status, reason))
                for board, comparison, _ in record.sides():
                    for output, result in comparison.outputs.items():
                        for metric, value in result.metrics.items():
                            # A regression needs a number to grow from: an infinite SNR is not one.
                            if isinstance(value, (int, float)) and not isinstance(value, bool) \
                                    and math.isfinite(value):
                                self.db.execute("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?)",
                                                (run_row, run.scenario, board, output, metric, float(value)))
        return night

    def set_exit_code(self, night: int, exit_code: int) -> None:
        with self.transaction():
            self.db.execute("UPDATE nights SET exit_code = ? WHERE id = ?", (exit_code, night))

    def nights(self, limit: Optional[int] = None) -> List[sqlite3.Row]:
        """The latest nights, oldest first."""
        rows = self.db.execute("SELECT * FROM nights ORDER BY id DESC" + (" LIMIT ?" if limit else ""),
                               (limit,) if limit else ()).fetchall()
        return list(reversed(rows))

    def previous_night(self, night: int) -> Optional[int]:
        row = self.db.execute("SELECT id FROM nights WHERE id < ? ORDER BY id DESC LIMIT 1", (night,)).fetchone()
        return row["id"] if row else None

    def outcomes(self, night: int) -> Dict[Key, Outcome]:
        found: Dict[Key, Outcome] = {}
        for row in self.db.execute("SELECT v.* FROM verdicts v JOIN runs r ON v.run = r.id WHERE r.night_id = ?",
                                   (night,)):
            found[(row["scenario"], row["board"], row["output"])] = Outcome(row["status"], row["reason"])
        for row in self.db.execute("SELECT s.* FROM results s JOIN runs r ON s.run = r.id WHERE r.night_id = ?",
                                   (night,)):
            key = (row["scenario"], row["board"], row["output"])
            if key in found:
                found[key].metrics[row["metric"]] = row["value"]
        return found

    def run_ids(self, nights: List[int]) -> Dict[Tuple[int, str], Optional[str]]:
        """(night, scenario) -> the run id of that scenario's run that night (its folder under reports/)."""
        found: Dict[Tuple[int, str], Optional[str]] = {}
        for night in nights:
            for row in self.db.execute("SELECT scenario, run_id FROM runs WHERE night_id = ?", (night,)):
                found[(night, row["scenario"])] = row["run_id"]
        return found

    def settings(self, night: int) -> Dict[str, dict]:
        return {row["scenario"]: json.loads(row["settings"] or "null") or {}
                for row in self.db.execute("SELECT scenario, settings FROM runs WHERE night_id = ?", (night,))}

    def compare(self, night: int, policy: RegressionPolicy, previous: Optional[int] = None) -> NightDiff:
        """What changed since the previous night (or `previous`): failures, fixes, regressions."""
        previous = self.previous_night(night) if previous is None else previous
        diff = NightDiff(previous=previous)
        now = self.outcomes(night)
        before = self.outcomes(previous) if previous is not None else {}
        for key, outcome in sorted(now.items()):
            old = before.get(key)
            if outcome.status != PASS:
                if old is None or old.status == PASS:
                    diff.new_failures.append((key, outcome.reason or outcome.status))
                else:
                    diff.still_failing.append((key, outcome.reason or outcome.status))
            elif old is not None and old.status != PASS:
                diff.fixed.append(key)
            if old is None:
                if previous is not None:
                    diff.new_keys.append(key)
                continue
            for metric, value in sorted(outcome.metrics.items()):
                if is_regression(metric, old.metrics.get(metric), value, policy):
                    diff.regressions.append(Regression(key, metric, old.metrics[metric], value))
        diff.gone_keys = sorted(key for key in before if key not in now)
        if previous is not None:
            old_settings = self.settings(previous)
            for scenario, settings in sorted(self.settings(night).items()):
                if scenario in old_settings and old_settings[scenario] != settings:
                    diff.settings_changed.append((scenario, old_settings[scenario], settings))
        return diff

    def trend(self, scenario: Optional[str] = None, nights: int = 14,
              metrics=("max_abs", "argmax_agreement")) -> List[dict]:
        """Per scenario x board x output over the last nights: the metrics and the verdict per night."""
        window = self.nights(nights)
        ids = [row["id"] for row in window]
        rows: Dict[Key, dict] = {}
        for index, night in enumerate(ids):
            for key, outcome in self.outcomes(night).items():
                if scenario is not None and key[0] != scenario:
                    continue
                row = rows.setdefault(key, {"scenario": key[0], "board": key[1], "output": key[2],
                                            "nights": ids, "status": [None] * len(ids),
                                            **{m: [None] * len(ids) for m in metrics}})
                row["status"][index] = outcome.status
                row.setdefault("reasons", [None] * len(ids))[index] = outcome.reason
                for metric in metrics:
                    row[metric][index] = outcome.metrics.get(metric)
        return [rows[key] for key in sorted(rows)]


KEY_METRICS = ("decoded_agreement", "max_abs", "argmax_agreement", "cosine", "mean_abs", "miou", "max_rel")
"""The order in which a key's regressions are named: the ones a user reads first."""


def regressions_text(found: List[Regression], at_most: int = 3) -> str:
    """"max_abs 7.6e-06 -> 0.105 (x1.37e+04), ... and 8 more (...)": one key's regressions, the telling ones first."""
    found = sorted(found, key=lambda r: (KEY_METRICS.index(r.metric) if r.metric in KEY_METRICS
                                         else len(KEY_METRICS), r.metric))
    shown = ", ".join(f"{r.metric} {format_metric(r.before, r.metric, 'text')} -> "
                      f"{format_metric(r.after, r.metric, 'text')} ({r.change})" for r in found[:at_most])
    more = found[at_most:]
    return shown + (f" and {len(more)} more ({', '.join(r.metric for r in more)})" if more else "")


TREND_METRICS = ("max_abs", "argmax_agreement", "miou", "decision_agreement", "decoded_agreement", "cosine")
"""What the trend views draw: the error a board shows, and the labels (or masks) users act on."""


def last_value(values: List[Optional[float]]):
    """The latest night's value that is there (None when no night has one)."""
    return next((value for value in reversed(values) if value is not None), None)


def row_label_metric(row: dict) -> Optional[str]:
    """A trend row's label metric: argmax agreement (class logits), else mask IoU; None for a plain tensor."""
    return label_metric({name: last_value(row.get(name) or [])
                         for name in ("argmax_agreement", "miou", "decision_agreement", "decoded_agreement")})


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: List[Optional[float]], log: bool = False) -> str:
    """One block per value (a space where there is none, or no finite number), scaled between the window's min
    and max."""

    def scaled(v):
        return math.log10(max(v, ERROR_FLOOR)) if log else v

    values = [v if v is not None and math.isfinite(v) else None for v in values]
    present = [scaled(v) for v in values if v is not None]
    if not present:
        return " " * len(values)
    low, high = min(present), max(present)
    out = []
    for value in values:
        if value is None:
            out.append(" ")
        elif high == low:
            out.append(SPARK[3])
        else:
            out.append(SPARK[round((scaled(value) - low) / (high - low) * (len(SPARK) - 1))])
    return "".join(out)


HISTORY_FILE = "history.sqlite"
"""reports/history.sqlite: the memory between nights."""
DASHBOARD_FILE = "index.html"
"""reports/index.html: the history as a page, written after each night."""
EXIT_HISTORY = 4
"""The night ran but is not in the history; a failed comparison (1) still outranks it."""


@dataclass
class NightResult:
    night: Optional[int]
    """Its id in the history; None when the history could not be written."""
    history_path: Path
    runs: List[NightRun]
    run_dirs: List[Optional[Path]]
    diff: NightDiff
    exit_code: int
    policy: RegressionPolicy
    started_at: str = ""
    wall_s: float = 0.0
    history_error: Optional[str] = None
    """Why the night is not in the history (its runs are still in their folders)."""
    history_fix: Optional[str] = None
    """What to do about it (end the writer that holds the lock, move a broken file aside)."""
    dashboard: Optional[Path] = None
    """reports/index.html, the history as a page; None if it could not be written."""

    def as_dict(self) -> dict:
        return {"night": self.night, "history": str(self.history_path), "exit_code": self.exit_code,
                "history_error": self.history_error, "history_fix": self.history_fix,
                "dashboard": str(self.dashboard) if self.dashboard else None,
                "started_at": self.started_at, "wall_s": self.wall_s,
                "regression_policy": asdict(self.policy),
                "runs": [{"scenario": run.scenario, "scenario_path": run.scenario_path,
                          "run_id": run.record.run_id if run.record else None,
                          "run_dir": str(run_dir) if run_dir else None, "exit_code": run.exit_code,
                          "error": run.error} for run, run_dir in zip(self.runs, self.run_dirs)],
                "changes": self.diff.as_dict()}

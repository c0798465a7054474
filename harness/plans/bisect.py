"""`harness bisect`: from which MNN release does the model go wrong on a board, and is it the runtime or the converter.

The scenario runs on one board (and the x86 reference, and the source model) once per MNN release of a range,
each an ordinary run in reports/<bisect-id>/<version>/. By default the runtime moves: the board and the x86
reference run that release (provisioned on the board, a host site on x86) while the model keeps its converter;
with `converter=True` the converter moves (each release's in a host site of its own) and the runtime stays.
A version's verdict is its run's: PASS when the board matches x86 and x86 matches the source model, FAIL
otherwise, ERROR when it could not be judged (the board unusable there).

Binary search when the two ends differ (the verdict flips once), every version with `every=True`. Once the
first failing release B after a passing one G is known, one more run swaps the other half to G (runtime B with
G's converter, or converter B on G's runtime): whether that half changes the verdict ends the one-line answer.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from ..core.errors import ConfigError
from ..config.inventory import Inventory
from ..config.scenario import Scenario
from ..core.clients.wheels import RELEASES, VERSION, host_mnn_version, version_key
from ..execution.executor import Executor, Progress
from ..execution.interrupt import Interruption
from ..execution.targets.lock import LOCK_TIMEOUT_S
from ..record.bisect import FAILED, NO_VERDICT, PASSED, BisectRecord, Step
from ..record.outcome import ERROR, UNUSABLE, verdicts, worst
from ..record.run import EXIT_BOARD, EXIT_COMPARISON_FAILED, EXIT_PASS, RunRecord
from ..record.run_folder import new_run_folder, new_run_id, run_folder, write_file
from ..views.bisect import bisect_html
from .run import run_scenario, select_targets

BISECT_FILE = "bisect.json"


@dataclass
class BisectReport:
    scenario: Scenario
    board: str
    mode: str
    """"runtime" or "converter": which half of MNN moves."""
    versions: List[str]
    run_dir: Path
    fixed: str
    """The version of the half that stays (the converter's for a runtime bisect, the runtime's for a converter one)."""
    steps: Dict[str, Step] = field(default_factory=dict)
    cross: Optional[Step] = None
    """The first failing release with the other half at the last passing one's version."""
    interrupted: Optional[str] = None
    interrupted_exit_code: int = 130
    """130 for SIGINT, 143 for SIGTERM (what CI sends on a cancel)."""

    @property
    def ordered(self) -> List[Step]:
        return [self.steps[version] for version in self.versions if version in self.steps]

    @property
    def flip(self) -> Optional[Tuple[str, str]]:
        """(last passing, first failing) neighbours among the versions judged, or None."""
        judged = [step for step in self.ordered if step.verdict != NO_VERDICT]
        for before, after in zip(judged, judged[1:]):
            if before.verdict != after.verdict:
                return (before.version, after.version) if before.verdict == PASSED else (after.version,
                                                                                         before.version)
        return None

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return self.interrupted_exit_code
        verdicts_seen = {step.verdict for step in self.ordered}
        if FAILED in verdicts_seen:
            return EXIT_COMPARISON_FAILED
        return EXIT_BOARD if NO_VERDICT in verdicts_seen or not verdicts_seen else EXIT_PASS

    def line(self) -> str:
        """The answer in one line."""
        board, ordered = self.board, self.ordered
        what = "the runtime" if self.mode == "runtime" else "the converter"
        if not ordered:
            return f"nothing ran on {board}"
        judged = [step for step in ordered if step.verdict != NO_VERDICT]
        if not judged:
            return f"no release could be judged on {board}: {ordered[0].why}"
        flip = self.flip
        if flip is None:
            state = "passes" if judged[0].verdict == PASSED else "fails"
            span = judged[0].version if len(judged) == 1 else f"{judged[0].version} to {judged[-1].version}"
            tried = "every release" if len(judged) == len(self.versions) else "both ends"
            return f"{state} with {what} of {span} on {board} ({tried} tried)"
        good, bad = flip
        first_bad = version_key(bad) > version_key(good)
        head = (f"fails from {bad} ({good} passes)" if first_bad else f"passes from {good} ({bad} fails)")
        other = "the converter" if self.mode == "runtime" else "the runtime"
        if self.cross is None:
            tail = ""
        elif self.cross.verdict == FAILED:
            tail = f"; {other} does not change it (it fails with {other} of {good} too)"
        elif self.cross.verdict == PASSED:
            tail = f"; {other} matters too: with {other} of {good} it passes"
        else:
            tail = f"; {other} of {good} could not be tried ({self.cross.why})"
        return f"{head} on {board}: {self.mode}{tail}"

    def record(self) -> BisectRecord:
        return BisectRecord(self.scenario.name, self.board, self.mode, self.fixed, list(self.versions),
                            [dataclasses.replace(step) for step in self.ordered],
                            dataclasses.replace(self.cross) if self.cross else None,
                            list(self.flip or []) or None, self.line(), self.exit_code, self.interrupted)


def releases_between(text: str) -> List[str]:
    """`3.0.0..3.6.1` (the releases from one to the other, both included) or `3.4.1,3.6.1` (exactly these)."""
    def check(version: str) -> str:
        if not VERSION.fullmatch(version):
            raise ConfigError("--mnn", None, f"{version!r} is not an MNN version",
                              f"write a range as FIRST..LAST or list versions: 3.0.0..3.6.1, 3.4.1,3.6.1 "
                              f"(releases: {', '.join(RELEASES)})")
        return version

    if ".." in text:
        first, _, last = text.partition("..")
        low, high = sorted((check(first.strip()), check(last.strip())), key=version_key)
        versions = [v for v in RELEASES if version_key(low) <= version_key(v) <= version_key(high)]
        if len(versions) < 2:
            raise ConfigError("--mnn", None, f"{text} holds {len(versions)} release(s) with wheels",
                              f"give a range holding two or more of {', '.join(RELEASES)}")
        return versions
    versions = [check(part.strip()) for part in text.split(",") if part.strip()]
    if len(set(versions)) != len(versions):
        raise ConfigError("--mnn", None, f"{text} names a version twice", "list each version once")
    if len(versions) < 2:
        raise ConfigError("--mnn", None, f"{text} names {len(versions)} version(s)",
                          "give two or more, or a range FIRST..LAST")
    return sorted(versions, key=version_key)


def search_order(versions: List[str], verdict: Callable[[str], str], every: bool) -> None:
    """Ask verdict() for the versions a search needs: all of them (every), else both ends and then a binary
    search for the first version whose verdict differs from the first one's. A version with no verdict is
    left out of the search and its neighbours asked instead."""
    known: Dict[str, str] = {}

    def ask(version: str) -> str:
        if version not in known:
            known[version] = verdict(version)
        return known[version]

    if every:
        for version in versions:
            ask(version)
        return
    candidates = list(versions)
    while len(candidates) >= 2 and ask(candidates[0]) == NO_VERDICT:
        candidates.pop(0)
    while len(candidates) >= 2 and ask(candidates[-1]) == NO_VERDICT:
        candidates.pop()
    if len(candidates) < 2:
        return
    start, end = ask(candidates[0]), ask(candidates[-1])
    if start == end:
        return
    low, high = 0, len(candidates) - 1  # ask(low) == start, ask(high) != start
    while high - low > 1:
        middle = (low + high) // 2
        found = ask(candidates[middle])
        if found == NO_VERDICT:
            del candidates[middle]
            high -= 1
            continue
        if found == start:
            low = middle
        else:
            high = middle


def step_of(record: RunRecord, board: str, version: str, runtime: str, converter: str) -> Step:
    """A release's verdict on the board from its run's record."""
    rows = [v for v in verdicts(record) if v.board == board and not v.is_conversion]
    conversion = [v for v in verdicts(record) if v.is_conversion]
    state = record.boards.get(board)
    step = Step(version, runtime, converter, PASSED, run_id=record.run_id,
                mnn_ran=state.mnn_version if state is not None else None)
    if rows and all(v.status not in (ERROR, UNUSABLE) for v in rows):
        step.metric, step.value = worst(record, rows)
    if conversion and all(v.status not in (ERROR, UNUSABLE) for v in conversion):
        step.conversion_metric, step.conversion_value = worst(record, conversion)
    unusable = [v for v in rows + conversion if v.status in (ERROR, UNUSABLE)]
    failing = [v for v in rows + conversion if not v.passed and v.status not in (ERROR, UNUSABLE)]
    if not rows:
        step.verdict, step.why = NO_VERDICT, (state.error if state is not None else None) or "the board did not run"
    elif unusable:
        step.verdict, step.why = NO_VERDICT, unusable[0].first_reason
    elif failing:
        where = "x86 vs source" if failing[0].is_conversion else board
        step.verdict, step.why = FAILED, f"{where}: {failing[0].first_reason}"
    return step


def run_bisect(scenario: Scenario, inventory: Inventory, board: str, versions: List[str], reports_dir: Path,
               converter: bool = False, every: bool = False, progress: Progress = Progress(),
               lock_timeout: float = LOCK_TIMEOUT_S, interruption: Optional[Interruption] = None,
               after_run: Callable[[str, RunRecord], Optional[RunRecord]] = lambda label, record: None,
               log: Callable[[str], None] = lambda message: None) -> BisectReport:
    """Run the scenario on `board` across `versions` (see the module's docstring); its folder holds each run,
    bisect.json and report.html."""
    interruption = interruption or Interruption()
    spec = inventory.board(board, "--board", "board")
    if spec.kind == "local":
        raise ConfigError(inventory.path, f"boards.{board}", f"{board} is the x86 host, the reference",
                          "bisect a board: --board NAME of an ssh, emulated or labgrid board")
    if not converter and spec.mnn == "system":
        raise ConfigError(inventory.path, f"boards.{board}.mnn", f"{board} runs its own MNN (`mnn: system`), "
                          "so its runtime cannot move", "leave `mnn` out for this board (the harness then brings "
                          "each release there), or bisect the converter with --converter")
    select_targets(dataclasses.replace(scenario, targets=[board], tags=[]), inventory, [board])
    if converter and scenario.model.mnn is not None:
        raise ConfigError(scenario.path, "model.mnn", "a deployed .mnn is run as it is: there is no conversion "
                          "to bisect", "give the ONNX/TFLite source as `onnx:`/`tflite:`, or bisect the runtime")
    fixed = (scenario.mnn_version or spec.mnn_version or host_mnn_version()) if converter else \
        (scenario.model.converter_version or host_mnn_version())
    run_dir = run_folder(reports_dir, new_run_id(scenario) + "-bisect")
    report = BisectReport(scenario, board, "converter" if converter else "runtime", versions, run_dir, fixed)
    base = dataclasses.replace(scenario, targets=[board], tags=[], matrix={}, find_layer=False)

    def variant(runtime: str, converter_version: str) -> Scenario:
        return dataclasses.replace(base, mnn_version=runtime,
                                   model=dataclasses.replace(base.model, converter_version=converter_version))

    with new_run_folder(run_dir, keep=lambda: bool(report.steps)), \
            Executor(progress, interruption, lock_timeout) as executor:
        def run(label: str, runtime: str, converter_version: str) -> Step:
            log(f"{label}: runtime {runtime}, converter {converter_version}")
            single = run_scenario(variant(runtime, converter_version), inventory, run_dir, progress, [board],
                                  run_id=label, interruption=interruption, executor=executor)
            single = after_run(label, single) or single
            if single.interrupted:
                report.interrupted = single.interrupted
                raise KeyboardInterrupt
            return step_of(single, board, label, runtime, converter_version)

        def verdict(version: str) -> str:
            if version not in report.steps:
                runtime, converter_version = (fixed, version) if converter else (version, fixed)
                report.steps[version] = run(version, runtime, converter_version)
            return report.steps[version].verdict

        try:
            search_order(versions, verdict, every)
            flip = report.flip
            if flip is not None:
                good, bad = flip
                if good == fixed:  # the failing release already ran with the other half at `good`
                    report.cross = dataclasses.replace(report.steps[bad])
                else:
                    runtime, converter_version = (good, bad) if converter else (bad, good)
                    report.cross = run(f"{bad}-with-{'runtime' if converter else 'converter'}-{good}", runtime,
                                       converter_version)
                    report.cross.version = bad
        except KeyboardInterrupt:
            report.interrupted = report.interrupted or interruption.signal_name or "SIGINT"
            report.interrupted_exit_code = interruption.exit_code
        finally:
            if report.steps:
                record = report.record()
                write_file(run_dir, BISECT_FILE, json.dumps(record.to_dict(), indent=1))
                write_file(run_dir, "report.html", bisect_html(record))
    return report

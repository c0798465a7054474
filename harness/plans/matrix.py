"""The run matrix: precision x threads x api x io x backend x converter variant, on every board, as one table.

A scenario's `matrix:` section lists the values to try; every combination is
a setting, and every setting is an ordinary run of its own (its own
reports/<matrix-id>/<setting>/ with summary.json, and its own x86 reference
and source-model comparison), so a setting reads exactly like a single run.
The settings run as one plan: each board runs them back to back on its
session (one connection, one resident agent), the boards at once; a
reference whose inputs are the same for two settings runs once (the source
model, which no MNN setting reaches, once for the whole matrix). The matrix report is the
table of which settings diverge on which boards.
"""

import itertools
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

from rich.console import Console
from rich.text import Text

from ..analysis.compare import format_metric
from ..analysis.outcome import (ERROR, UNUSABLE, Verdict, conversion_label, headline, label_metric, output_kind, verdicts,
                      what_failed)
from ..core.inventory import Inventory
from ..core.scenario import Scenario
from ..execution.executor import Executor, Progress
from ..execution.interrupt import Interruption
from ..views.fold import Column, FoldingTable
from ..views.terminal import summary
from .run import (EXIT_BOARD, EXIT_COMPARISON_FAILED, EXIT_PASS, RunReport, new_run_folder, new_run_id,
                     prepare_run, run_folder, run_scenario, run_together, select_targets)

SETTING_KEYS = ("precision", "threads", "api", "io", "backend")


@dataclass(frozen=True)
class Setting:
    label: str
    """e.g. "low-t1-session-copy-fp16" ("...-copy-opencl-fp16" when backends vary): names the setting in tables,
    folders and JUnit."""
    values: Dict[str, object]
    converter: str
    scenario: Scenario


def expand(scenario: Scenario) -> List[Setting]:
    """Every combination of the matrix's values, as a scenario of its own."""
    matrix = scenario.matrix
    axes = [(key, list(matrix.get(key) or [getattr(scenario.run, key)])) for key in SETTING_KEYS]
    converters = list((matrix.get("converter") or {"default": list(scenario.model.converter_args)}).items())
    settings = []
    for combination in itertools.product(*[values for _, values in axes], converters):
        values = {key: value for (key, _), value in zip(axes, combination[:-1])}
        converter_label, converter_args = combination[-1]
        parts = [str(values["precision"]), f"t{values['threads']}", str(values["api"]), str(values["io"])]
        if matrix.get("backend") or scenario.run.backend != "cpu":  # labels stay short where no backend varies
            parts.append(str(values["backend"]))
        label = "-".join(parts + [converter_label])
        variant = replace(scenario, run=replace(scenario.run, **values),
                          model=replace(scenario.model, converter_args=tuple(str(a) for a in converter_args)),
                          matrix={})
        settings.append(Setting(label, values, converter_label, variant))
    return settings


@dataclass
class MatrixReport:
    matrix_id: str
    run_dir: Path
    scenario: Scenario
    runs: List[Tuple[Setting, RunReport]] = field(default_factory=list)
    interrupted: Optional[str] = None
    """The signal that stopped the matrix, or None."""
    interrupted_exit_code: int = 130

    @property
    def exit_code(self) -> int:
        interrupted = [report for _, report in self.runs if getattr(report, "interrupted", None)]
        if interrupted:
            return interrupted[0].exit_code
        if self.interrupted:
            return self.interrupted_exit_code
        codes = [report.exit_code for _, report in self.runs]
        if EXIT_COMPARISON_FAILED in codes:
            return EXIT_COMPARISON_FAILED
        return EXIT_BOARD if EXIT_BOARD in codes else EXIT_PASS


Display = Union[Progress, Callable[[Optional[Setting]], Progress]]
"""A matrix's display: one Progress, or a function giving one (for a setting; None: for all of them)."""


def run_matrix(scenario: Scenario, inventory: Inventory, reports_dir: Path,
               progress: Display = Progress(), only: Optional[List[str]] = None,
               lock_timeout: float = 300.0,
               after_run: Callable[[Setting, RunReport], None] = lambda setting, report: None,
               interruption: Optional[Interruption] = None, warm: bool = True) -> MatrixReport:
    """Every setting on every board.

    warm (the default): one plan of every setting's jobs over board sessions, each board running its
    settings back to back on one connection and one resident agent while the boards run at once, the x86
    reference and the source model computed once per distinct input to them. warm=False: one run after the
    other, each with its own connections and an agent process per job (as before sessions; the bench's
    baseline).
    """
    from ..core.model import check_converter_args

    interruption = interruption or Interruption()
    settings = expand(scenario)
    # What can be checked before the first setting runs is: a bad variant found after an hour of runs
    # would cost that hour.
    select_targets(scenario, inventory, only)
    for setting in settings:
        check_converter_args(setting.scenario.model.converter_args)
    run_dir = run_folder(reports_dir, new_run_id(scenario))
    report = MatrixReport(run_dir.name, run_dir, scenario)
    # The settings that ran before one failed are results: their folder stays, with a matrix.json.
    with new_run_folder(run_dir, keep=lambda: bool(report.runs)):
        try:
            if warm:
                display = progress(None) if callable(progress) else progress
                prepared = [prepare_run(setting.scenario, inventory, run_dir, display, only, run_id=setting.label,
                                        label=setting.label) for setting in settings]
                with Executor(display, interruption, lock_timeout) as executor:
                    singles = run_together(prepared, executor)
                for setting, single in zip(settings, singles):
                    if single is not None:
                        after_run(setting, single)
                        report.runs.append((setting, single))
            else:
                for setting in settings:
                    display = progress(setting) if callable(progress) else progress
                    single = run_scenario(setting.scenario, inventory, run_dir, display, only,
                                          lock_timeout=lock_timeout, run_id=setting.label, interruption=interruption,
                                          warm=False)
                    after_run(setting, single)
                    report.runs.append((setting, single))
                    if single.interrupted:
                        break  # Ctrl-C / SIGTERM: the settings not yet run are not in matrix.json
        finally:
            if interruption.is_set():
                report.interrupted = interruption.signal_name or "SIGINT"
                report.interrupted_exit_code = interruption.exit_code
            if report.runs:
                write_matrix_json(report)
    return report


def cell(record: dict, board: str) -> Text:
    """One setting on one board, from its record: ok and the headline number, or FAIL, the cause and the limit.

    The reference's column is the conversion check (MNN on x86 against the
    source model), for that setting's converter variant.
    """
    if board not in (record.get("boards") or {}) and board != conversion_label(record):
        return Text("–", "dim")
    rows = [v for v in verdicts(record) if v.board == board]
    if not rows:
        return Text("ref", "dim")
    failing = [v for v in rows if not v.passed]
    if not failing:
        metric, value = worst(record, rows)
        return Text(f"ok {format_metric(value, metric)}", "green")
    first = failing[0]
    if first.status in (ERROR, UNUSABLE):
        return Text(f"ERROR\n{'unusable' if first.status == UNUSABLE else 'did not run'}", "bold red")
    cause = first.cause or ("conversion" if first.is_conversion else "")
    limit = {"tolerance": short_limit(first.reasons[0]), "requirement": "require_same_mnn",
             # asked a backend the board lacks: its numbers are the CPU's
             "backend": first.reasons[0].split(" (")[0].split(":")[0]}.get(first.failure_type, first.reasons[0])
    return Text(f"FAIL {cause}\n{limit}".replace("FAIL \n", "FAIL\n"), "bold red")


ABBREVIATIONS = {"argmax_agreement": "agree", "miou": "IoU", "decision_agreement": "decide", "hard_flips": "hard",
                 "max_abs": "max|d|", "mean_abs": "mean|d|", "p99_abs": "p99|d|", "cosine": "cos"}
"""Short names of the limits in matrix cells; the legend under the table spells them out."""
ABBREVIATION_LEGEND = ("agree: argmax agreement, IoU: mIoU or mask IoU, decide: decision agreement, hard: hard flips, "
                       "max|d|/mean|d|/p99|d|: max/mean/p99 of |board - x86|, cos: cosine")


def short_limit(reason: str) -> str:
    """"argmax_agreement 99.219% < 99.900%" as "agree 99.219%<99.900%": a broken limit that fits a cell."""
    parts = reason.split(" ")
    if len(parts) == 4 and parts[2] in ("<", ">"):
        return f"{ABBREVIATIONS.get(parts[0], parts[0])} {parts[1]}{parts[2]}{parts[3]}"
    return reason


def worst(record: dict, rows: List[Verdict]) -> Tuple[str, Optional[float]]:
    """The number a user reads first over a board's outputs: the worst label metric, else the largest max abs."""
    labelled = [headline(record, v) for v in rows if label_metric(v.metrics, output_kind(record, v.output))]
    labelled = [(metric, value) for metric, value in labelled if value is not None]
    if labelled:
        return min(labelled, key=lambda item: item[1])
    return "max_abs", max((v.metrics.get("max_abs") or 0.0 for v in rows), default=None)


LEGEND = ("cell: ok and the worst labels of the board's outputs (argmax agreement, mask IoU or decisions; max abs "
          "for tensors), or FAIL, where the difference comes from (conversion, platform, both, app I/O, MNN version, "
          "backend) and the first limit it broke")


def records_of(report: MatrixReport) -> List[Tuple[str, dict]]:
    """Each setting's label with its run's record (summary.json as a dict): what the matrix views read."""
    return [(setting.label, summary(single)) for setting, single in report.runs]


def stored_records(matrix_dir: Path) -> Tuple[str, List[Tuple[str, dict]], int]:
    """A stored matrix (matrix.json and each setting's summary.json): its scenario, records and exit code."""
    data = json.loads((matrix_dir / "matrix.json").read_text())
    records = [(item["label"], json.loads((matrix_dir / item["label"] / "summary.json").read_text()))
               for item in data["settings"] if (matrix_dir / item["label"] / "summary.json").is_file()]
    return data["scenario"], records, int(data.get("exit_code", 0))


def matrix_view(scenario_name: str, records: List[Tuple[str, dict]]) -> FoldingTable:
    """Settings by boards; with more boards than settings, boards by settings (S1, S2, ... and a legend).

    Either way failures come first. Every cell reads its setting's record (summary.json), as every view does.
    """
    boards: List[str] = []
    for _, record in records:
        labels = ([conversion_label(record)] if record.get("conversion") else [record["reference"]]) + \
            [name for name in record["boards"] if name != record["reference"]]
        boards += [name for name in labels if name not in boards]
    ordered = sorted(records, key=lambda item: (item[1]["exit_code"] == 0, item[0]))
    title = f"Which settings diverge on which boards ({scenario_name})"
    if len(boards) <= len(ordered):
        table = FoldingTable([Column("Setting", key=True)] + [Column(board, wrap=True) for board in boards],
                             title=title, legend=[LEGEND, ABBREVIATION_LEGEND])
        for label, record in ordered:
            table.add_row(label, *[cell(record, board) for board in boards])
        return table
    failing_first = sorted(boards, key=lambda b: (b != boards[0], all(not cell(r, b).plain.startswith(("FAIL", "ERROR"))
                                                                      for _, r in ordered), b))
    table = FoldingTable([Column("Board", key=True)] + [Column(f"S{index}", wrap=True)
                                                        for index in range(1, len(ordered) + 1)],
                         title=title, legend=[f"S{index} = {label}"
                                              for index, (label, _) in enumerate(ordered, 1)]
                         + [LEGEND, ABBREVIATION_LEGEND])
    for board in failing_first:
        table.add_row(board, *[cell(record, board) for _, record in ordered])
    return table


def matrix_table(report: MatrixReport) -> FoldingTable:
    return matrix_view(report.scenario.name, records_of(report))


def render_matrix(report: MatrixReport, console: Console) -> None:
    render_records(report.scenario.name, records_of(report), report.exit_code, report.run_dir, console)


def render_records(scenario_name: str, records: List[Tuple[str, dict]], exit_code: int, run_dir: Path,
                   console: Console) -> None:
    """The matrix report of the settings' records, live or stored (`harness report MATRIX-ID`)."""
    console.print(matrix_view(scenario_name, records))
    seen = set()
    for label, record in records:
        for finding in record.get("findings") or []:
            key = (finding["cause"], finding.get("board"), finding["message"])
            if key in seen:
                continue
            seen.add(key)
            where = f"{finding['board']}: " if finding.get("board") else ""
            console.print(Text.assemble(("● ", "yellow"), (finding["title"], "bold yellow"),
                                        f" — {where}{finding['message']} [first in {label}]"))
    console.print(f"[dim]results: {run_dir}/<setting>/[/]")
    console.print(matrix_summary_line(records, exit_code))


def matrix_summary_line(records: List[Tuple[str, dict]], exit_code: int) -> Text:
    """The last line: which settings diverge, each with what failed first in it."""
    failing = sorted((label, record) for label, record in records if record.get("exit_code"))
    if not failing:
        return Text(f"PASS  all {len(records)} setting(s) match on every board", "bold green")
    named = "; ".join(f"{label} ({(what_failed(record) or ['see above'])[0]})" for label, record in failing)
    return Text(f"FAIL  {len(failing)} of {len(records)} setting(s) diverge: {named}  [exit {exit_code}]",
                "bold red")


def write_matrix_json(report: MatrixReport) -> Path:
    data = {"schema": 1, "matrix_id": report.matrix_id, "scenario": report.scenario.name,
            "exit_code": report.exit_code,
            "settings": [{"label": s.label, **s.values, "converter": s.converter,
                          "converter_args": list(s.scenario.model.converter_args), "run_id": r.run_id,
                          "exit_code": r.exit_code} for s, r in report.runs]}
    path = report.run_dir / "matrix.json"
    tmp = path.with_name(".matrix.json.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
    return path

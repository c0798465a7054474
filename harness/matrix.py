"""The run matrix: precision x threads x api x io x backend x converter variant, on every board, as one table.

A scenario's `matrix:` section lists the values to try; every combination is
a setting, and every setting is an ordinary run of its own (its own
reports/<matrix-id>/<setting>/ with summary.json, and its own x86 reference
and source-model comparison), so a setting reads exactly like a single run.
The matrix report is the table of which settings diverge on which boards.
"""

import itertools
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .interrupt import Interruption
from .inventory import Inventory
from .runner import (EXIT_BOARD, EXIT_COMPARISON_FAILED, EXIT_PASS, Progress, RunReport, new_run_folder,
                     new_run_id, run_folder, run_scenario, select_targets)
from .scenario import Scenario

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

    @property
    def exit_code(self) -> int:
        interrupted = [report for _, report in self.runs if getattr(report, "interrupted", None)]
        if interrupted:
            return interrupted[0].exit_code
        codes = [report.exit_code for _, report in self.runs]
        if EXIT_COMPARISON_FAILED in codes:
            return EXIT_COMPARISON_FAILED
        return EXIT_BOARD if EXIT_BOARD in codes else EXIT_PASS


def run_matrix(scenario: Scenario, inventory: Inventory, reports_dir: Path,
               progress_for: Callable[[Setting], Progress], only: Optional[List[str]] = None,
               lock_timeout: float = 300.0,
               after_run: Callable[[Setting, RunReport], None] = lambda setting, report: None,
               interruption: Optional[Interruption] = None) -> MatrixReport:
    from .model import check_converter_args

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
            for setting in settings:
                single = run_scenario(setting.scenario, inventory, run_dir, progress_for(setting), only,
                                      lock_timeout=lock_timeout, run_id=setting.label, interruption=interruption)
                after_run(setting, single)
                report.runs.append((setting, single))
                if single.interrupted:
                    break  # Ctrl-C / SIGTERM: the settings not yet run are not in matrix.json
        finally:
            if report.runs:
                write_matrix_json(report)
    return report


def _cell(report: RunReport, board: str) -> Text:
    result = report.results.get(board)
    if result is None:
        return Text("–", "dim")
    if board == report.reference:
        conversion = report.conversion
        if conversion is None:
            return Text("ref", "dim")
        worst = _worst(conversion)
        return Text(f"src {worst}" + (" backend" if conversion.problems else ""),
                    "green" if conversion.passed else "bold red")
    comparison = report.comparisons[board]
    if comparison.error:
        return Text("ERROR", "bold red")
    cause = report.attribution.get(board, "none")
    if comparison.problems:  # asked a backend the board lacks: its numbers are the CPU's
        cause = "backend"
    return Text(("ok " if comparison.passed else "FAIL ") + _worst(comparison)
                + ("" if comparison.passed or cause in ("none", "platform") else f" {cause}"),
                "green" if comparison.passed else "bold red")


def _worst(comparison) -> str:
    """The number a user reads first: label agreement where there are labels, else max abs."""
    worst_agreement, worst_abs = None, 0.0
    for output in comparison.outputs:
        agreement = output.metrics.get("argmax_agreement", output.metrics.get("miou"))
        if agreement is not None:
            worst_agreement = agreement if worst_agreement is None else min(worst_agreement, agreement)
        worst_abs = max(worst_abs, output.metrics.get("max_abs") or 0.0)
    return f"{worst_agreement:.2%}" if worst_agreement is not None else f"{worst_abs:.1e}"


def matrix_table(report: MatrixReport) -> Table:
    return matrix_view(report)[0]


def matrix_view(report: MatrixReport) -> Tuple[Table, List[str]]:
    """Settings by boards; with more boards than settings, boards by settings (S1, S2, ... and a legend).

    Either way failures come first, and 20 boards x 6 settings fit in 100 columns.
    """
    boards: List[str] = []
    for _, single in report.runs:
        boards += [name for name in single.results if name not in boards]
    runs = sorted(report.runs, key=lambda item: (item[1].exit_code == 0, item[0].label))
    title = f"Which settings diverge on which boards ({report.scenario.name})"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, header_style="bold")
    if len(boards) <= len(runs):
        table.add_column("Setting", no_wrap=True)
        for board in boards:
            table.add_column(board, no_wrap=True)
        for setting, single in runs:
            table.add_row(setting.label, *[_cell(single, board) for board in boards])
        return table, []
    table.add_column("Board", no_wrap=True)
    for index, (setting, _) in enumerate(runs, 1):
        table.add_column(f"S{index}", no_wrap=True)
    failing_first = sorted(boards, key=lambda b: (b != report.runs[0][1].reference,
                                                  all(_passed(single, b) for _, single in runs), b))
    for board in failing_first:
        table.add_row(board, *[_cell(single, board) for _, single in runs])
    return table, [f"S{index} = {setting.label}" for index, (setting, _) in enumerate(runs, 1)]


def _passed(single: RunReport, board: str) -> bool:
    comparison = single.comparisons.get(board)
    return comparison is None or comparison.passed


def render_matrix(report: MatrixReport, console: Console) -> None:
    table, legend = matrix_view(report)
    console.print(table)
    for line in legend:
        console.print(f"[dim]{line}[/]")
    seen = set()
    for setting, single in report.runs:
        for finding in single.findings:
            key = (finding.cause, finding.board)
            if key in seen:
                continue
            seen.add(key)
            where = f"{finding.board}: " if finding.board else ""
            console.print(Text.assemble(("● ", "yellow"), (finding.title, "bold yellow"),
                                        f" — {where}{finding.message} [first in {setting.label}]"))
    failing = [setting.label for setting, single in report.runs if single.exit_code]
    console.print(f"[dim]results: {report.run_dir}/<setting>/[/]")
    if failing:
        console.print(Text(f"FAIL  {len(failing)} of {len(report.runs)} setting(s) diverge: {', '.join(failing)}"
                           f"  [exit {report.exit_code}]", "bold red"))
    else:
        console.print(Text(f"PASS  all {len(report.runs)} setting(s) match on every board", "bold green"))


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

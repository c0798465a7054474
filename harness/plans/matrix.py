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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

from ..config.inventory import Inventory
from ..config.scenario import Scenario
from ..execution.executor import Executor, Progress
from ..execution.interrupt import Interruption
from ..execution.targets.lock import LOCK_TIMEOUT_S
from ..record.matrix import MatrixRecord, MatrixSetting, matrix_exit_code
from ..record.run import RunRecord
from ..record.run_folder import new_run_folder, new_run_id, run_folder, write_matrix
from .run import prepare_run, run_scenario, run_together, select_targets

SETTING_KEYS = ("precision", "threads", "api", "io", "backend")


@dataclass(frozen=True)
class Setting:
    label: str
    """e.g. "low-t1-session-copy-fp16" ("...-copy-opencl-fp16" when backends vary, "mnn3.4.1-low-..." when MNN
    versions do): names the setting in tables, folders and JUnit."""
    values: Dict[str, object]
    converter: str
    scenario: Scenario


def expand(scenario: Scenario) -> List[Setting]:
    """Every combination of the matrix's values, as a scenario of its own.

    MNN versions are the outermost axis: a board runs one version's settings back to back, on one resident
    agent per version.
    """
    matrix = scenario.matrix
    versions = list(matrix.get("mnn_version") or [scenario.mnn_version])
    axes = [(key, list(matrix.get(key) or [getattr(scenario.run, key)])) for key in SETTING_KEYS]
    converters = list((matrix.get("converter") or {"default": list(scenario.model.converter_args)}).items())
    settings = []
    for combination in itertools.product(versions, *[values for _, values in axes], converters):
        version = combination[0]
        values = {key: value for (key, _), value in zip(axes, combination[1:-1])}
        converter_label, converter_args = combination[-1]
        parts = [str(values["precision"]), f"t{values['threads']}", str(values["api"]), str(values["io"])]
        if matrix.get("backend") or scenario.run.backend != "cpu":  # labels stay short where no backend varies
            parts.append(str(values["backend"]))
        label = "-".join(([f"mnn{version}"] if matrix.get("mnn_version") else []) + parts + [converter_label])
        variant = replace(scenario, run=replace(scenario.run, **values),
                          model=replace(scenario.model, converter_args=tuple(str(a) for a in converter_args)),
                          matrix={}, mnn_version=version)
        if matrix.get("mnn_version"):
            values = {"mnn_version": version, **values}
        settings.append(Setting(label, values, converter_label, variant))
    return settings


@dataclass
class MatrixReport:
    matrix_id: str
    run_dir: Path
    scenario: Scenario
    runs: List[Tuple[Setting, RunRecord]] = field(default_factory=list)
    interrupted: Optional[str] = None
    """The signal that stopped the matrix, or None."""
    interrupted_exit_code: int = 130
    planned: int = 0
    """How many settings the matrix has: an interrupted matrix ran fewer."""

    @property
    def exit_code(self) -> int:
        return matrix_exit_code([record for _, record in self.runs],
                                self.interrupted_exit_code if self.interrupted else None)

    def record(self) -> MatrixRecord:
        """matrix.json, with each setting's run record for the views."""
        return MatrixRecord(self.matrix_id, self.scenario.name, self.exit_code, self.planned, self.interrupted,
                            [MatrixSetting(label=s.label, converter=s.converter,
                                           converter_args=list(s.scenario.model.converter_args), run_id=r.run_id,
                                           exit_code=r.exit_code, **s.values) for s, r in self.runs],
                            records=[(setting.label, record) for setting, record in self.runs])


Display = Union[Progress, Callable[[Optional[Setting]], Progress]]
"""A matrix's display: one Progress, or a function giving one (for a setting; None: for all of them)."""


def run_matrix(scenario: Scenario, inventory: Inventory, reports_dir: Path,
               progress: Display = Progress(), only: Optional[List[str]] = None,
               lock_timeout: float = LOCK_TIMEOUT_S,
               after_run: Callable[[Setting, RunRecord], Optional[RunRecord]] = lambda setting, record: None,
               interruption: Optional[Interruption] = None, warm: bool = True) -> MatrixReport:
    """Every setting on every board.

    warm (the default): one plan of every setting's jobs over board sessions, each board running its
    settings back to back on one connection and one resident agent while the boards run at once, the x86
    reference and the source model computed once per distinct input to them. warm=False: one run after the
    other, each with its own connections and an agent process per job (as before sessions; the bench's
    baseline). after_run: what to do with each setting's record once it is judged (keep its files); the record it
    returns (as stored) is the one the matrix keeps.
    """
    from ..core.build.model import check_converter_args

    interruption = interruption or Interruption()
    settings = expand(scenario)
    # What can be checked before the first setting runs is: a bad variant found after an hour of runs
    # would cost that hour.
    select_targets(scenario, inventory, only)
    for setting in settings:
        check_converter_args(setting.scenario.model.converter_args, setting.scenario.model.converter_version)
    run_dir = run_folder(reports_dir, new_run_id(scenario))
    report = MatrixReport(run_dir.name, run_dir, scenario, planned=len(settings))
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
                        report.runs.append((setting, after_run(setting, single) or single))
            else:
                for setting in settings:
                    display = progress(setting) if callable(progress) else progress
                    single = run_scenario(setting.scenario, inventory, run_dir, display, only,
                                          lock_timeout=lock_timeout, run_id=setting.label, interruption=interruption,
                                          warm=False)
                    report.runs.append((setting, after_run(setting, single) or single))
                    if single.interrupted:
                        break  # Ctrl-C / SIGTERM: the settings not yet run are not in matrix.json
        finally:
            if interruption.is_set():
                report.interrupted = interruption.signal_name or "SIGINT"
                report.interrupted_exit_code = interruption.exit_code
            if report.runs:
                write_matrix(report.run_dir, report.record())
    return report

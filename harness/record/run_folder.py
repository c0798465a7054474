"""A run folder, reports/<run-id>/: the one module that writes it and reads it back.

    summary.json     the record (RunRecord.to_dict()), which every view reads (a stored run reads
                     back into exactly the record a live one renders)
    junit.xml, report.html    views of the record, kept beside it
    inputs.npz, targets/<board>/     the run's own files (written while it runs)
    outputs.npz      the boards' raw tensors, kept only up to --keep-outputs MB
    matrix.json      a matrix's folder: its settings, each a run folder of its own

Every file is written to a temporary name and renamed when complete, so a
half-written file is never read as a result; summary.json is written before
the views, and a view that cannot be written does not change the verdict.
"""

import json
import secrets
import shutil
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Union

from ..config.scenario import Scenario
from ..core.errors import ConfigError
from ..core.fields import name_problem, slug
from ..core.files import write_atomic
from .matrix import MatrixRecord
from .run import RunRecord
from .serde import SchemaError

SUMMARY_FILE = "summary.json"
JUNIT_FILE = "junit.xml"
HTML_FILE = "report.html"
MATRIX_FILE = "matrix.json"
View = Callable[[RunRecord], Union[str, bytes]]
"""A view kept in the run folder: the run's record (a live one carries its arrays) -> the file's text."""


# -- the folder --------------------------------------------------------------------------------------------


def new_run_id(scenario: Scenario) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{scenario.name}-{secrets.token_hex(2)}"


MAX_RUN_ID = 200
"""A run id is one folder name (a file system takes 255 bytes): a time stamp, the scenario's name, a setting."""


def run_folder(reports_dir: Path, run_id: str) -> Path:
    """reports_dir/run_id, refused unless run_id is one safe path component whose folder stays under reports_dir.

    Scenario, board and converter-variant names are checked where they
    enter; this is the last check before anything is written, for every
    caller (a matrix setting, the layer search, a nightly run).
    """
    reports_dir = Path(reports_dir)
    folder = reports_dir / run_id
    problem = name_problem(run_id, MAX_RUN_ID)
    if problem is None and not folder.resolve().is_relative_to(reports_dir.resolve()):
        problem = f"{folder} resolves to {folder.resolve()}, outside {reports_dir.resolve()}"
    if problem:
        raise ConfigError(reports_dir, "run id", problem, "name scenarios, boards and converter variants with "
                          "letters, digits, '.', '_' and '-' only")
    return folder


@contextmanager
def new_run_folder(folder: Path, keep: Callable[[], bool] = lambda: False) -> Iterator[Path]:
    """Make folder; if what runs inside fails (a configuration error, a model that does not build, Ctrl-C),
    remove it again unless keep() says it holds results, so that no empty or half-made run folder is left
    under --reports. A folder that existed before is never removed."""
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        if made and not keep():
            shutil.rmtree(folder, ignore_errors=True)
        raise


def write_file(run_dir: Path, name: str, content: Union[str, bytes]) -> Path:
    """run_dir/name (a relative path), written to a temporary name and renamed when complete."""
    return write_atomic(Path(run_dir) / name, content)


# -- the record --------------------------------------------------------------------------------------------


def decode_error_file(side: str, output: str) -> str:
    """Where a user decoder's traceback is kept: beside the files of the side it was compared for."""
    return f"targets/{slug(side, 'board')}/decode-{slug(output, 'output')}.txt"


def prune_raw_outputs(run_dir: Path, keep_mb: float) -> list:
    """Delete the boards' raw tensors beyond keep_mb (all of them at 0); return the files kept.

    A nightly farm of tens of boards would otherwise keep gigabytes of logits
    a night. The reference's are kept first: any board can be compared with it.
    """
    files = sorted(run_dir.glob("targets/*/outputs.npz"), key=lambda p: (p.parent.name != "x86", p.stat().st_size))
    files += sorted(run_dir.glob("targets/*/preprocessed.npz"))
    kept, budget = [], keep_mb * 1e6
    for path in files:
        size = path.stat().st_size
        if size <= budget:
            budget -= size
            kept.append(str(path.relative_to(run_dir)))
        else:
            path.unlink()
    return kept


def write_run(record: RunRecord, views: Dict[str, View], keep_outputs_mb: float = 0.0,
              on_error: Callable[[str, Exception], None] = lambda name, error: None) -> RunRecord:
    """The run's folder made whole: raw outputs pruned, decoders' tracebacks, summary.json, then each view's file.

    Raw outputs are pruned to keep_outputs_mb first (the views use the arrays the record carries in memory);
    summary.json is the record and is written next; a view that breaks is told to on_error (file name, error)
    and does not change the exit code. The record returned, which the views get, is summary.json read back as
    `harness report` reads it (with the live run's arrays): a live run and a stored one are rendered from the
    same record by construction, and every run puts the serializer to the test.
    """
    folder = record.folder
    record.raw_outputs = prune_raw_outputs(folder, keep_outputs_mb)
    for comparison in ([record.conversion] if record.conversion is not None else []) + \
            list(record.comparisons.values()):
        for output in comparison.outputs.values():
            if output.traceback and output.decoded is not None and output.decoded.traceback:
                write_file(folder, output.decoded.traceback, output.traceback)
    text = json.dumps(record.to_dict(), indent=1, sort_keys=True)
    write_file(folder, SUMMARY_FILE, text)
    stored = RunRecord.from_dict(json.loads(text), str(folder / SUMMARY_FILE))
    stored.folder, stored.tensors = folder, record.tensors
    for name, view in views.items():
        try:
            write_file(folder, name, view(stored))
        except Exception as error:  # a view failing must not hide the run's verdict
            on_error(name, error)
    return stored


# -- reading it back ---------------------------------------------------------------------------------------


def find_run(reports: Path, run_id: str) -> Path:
    """The run folder an id names: a path, a folder under reports (a matrix setting too), or a unique part of one."""
    for candidate in (Path(run_id), reports / run_id):
        if (candidate / SUMMARY_FILE).is_file() or (candidate / MATRIX_FILE).is_file():
            return candidate
    stored = sorted({path.parent for name in (SUMMARY_FILE, MATRIX_FILE)
                     for path in reports.glob(f"**/{name}")}) if reports.is_dir() else []
    matches = [path for path in stored if run_id in str(path.relative_to(reports))]
    # A matrix's settings match its id too: the matrix itself is meant.
    matrices = [path for path in matches if (path / MATRIX_FILE).is_file()]
    if len(matrices) == 1 and all(path == matrices[0] or matrices[0] in path.parents for path in matches):
        return matrices[0]
    if len(matches) == 1:
        return matches[0]
    if matches:
        listed = "\n".join(f"    {path.relative_to(reports)}" for path in matches)
        raise ConfigError(reports, None, f"{run_id!r} names {len(matches)} runs:\n{listed}\n",
                          "give more of the run id (any unique part of one of those)")
    raise ConfigError(reports / run_id, None, "no stored run with this id (no summary.json)",
                      f"pick one of `ls {reports}`, or pass --reports DIR")


def read_record(run_dir: Path) -> RunRecord:
    """A stored run's record, as the type a live run renders: an older schema upgraded, a newer one or one that
    is not what its type says refused with the field and the reason."""
    path = run_dir / SUMMARY_FILE
    try:
        record = RunRecord.from_dict(json.loads(path.read_text()), str(path))
    except (OSError, ValueError) as error:
        raise ConfigError(path, None, f"cannot read it: {error}",
                          "is it a summary.json of mnn-harness? a half-copied file?") from error
    except SchemaError as error:
        raise ConfigError(path, error.field or None, error.problem, "read it with the harness that wrote it, or "
                          "run the scenario again") from error
    record.folder = run_dir
    return record


def kept_views(run_dir: Path) -> List[Path]:
    """The views kept in the folder (junit.xml, report.html), those that were written."""
    return [run_dir / name for name in (JUNIT_FILE, HTML_FILE) if (run_dir / name).exists()]


# -- a matrix's folder -------------------------------------------------------------------------------------


def is_matrix(run_dir: Path) -> bool:
    return (run_dir / MATRIX_FILE).is_file()


def write_matrix(run_dir: Path, record: MatrixRecord) -> Path:
    """matrix.json: the settings of a matrix, each with its run id and exit code (a run folder of its own)."""
    return write_file(run_dir, MATRIX_FILE, json.dumps(record.to_dict(), indent=1))


def read_matrix(matrix_dir: Path) -> MatrixRecord:
    """A stored matrix: matrix.json, with the record of each of its settings that has one."""
    path = matrix_dir / MATRIX_FILE
    try:
        matrix = MatrixRecord.from_dict(json.loads(path.read_text()), str(path))
    except (OSError, ValueError) as error:
        raise ConfigError(path, None, f"cannot read it: {error}") from error
    except SchemaError as error:
        raise ConfigError(path, error.field or None, error.problem, "read it with the harness that wrote it") \
            from error
    matrix.records = [(setting.label, read_record(matrix_dir / setting.label)) for setting in matrix.settings
                      if (matrix_dir / setting.label / SUMMARY_FILE).is_file()]
    return matrix

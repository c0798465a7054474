"""A run folder, reports/<run-id>/: the one module that writes it and reads it back.

    summary.json     the record: the whole RunReport as data, which every view reads (a stored
                     run reads back into exactly what a live one renders)
    junit.xml, report.html    views of the record, kept beside it
    inputs.npz, targets/<board>/     the run's own files (written while it runs)
    outputs.npz      the boards' raw tensors, kept only up to --keep-outputs MB
    matrix.json      a matrix's folder: its settings, each a run folder of its own

Every file is written to a temporary name and renamed when complete, so a
half-written file is never read as a result; summary.json is written before
the views, and a view that cannot be written does not change the verdict.
"""

import dataclasses
import json
import math
import os
import secrets
import shutil
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

from ..analysis.run_report import RunReport
from ..core.errors import ConfigError
from ..config.scenario import Scenario
from ..core.fields import name_problem, slug

SUMMARY_FILE = "summary.json"
JUNIT_FILE = "junit.xml"
HTML_FILE = "report.html"
MATRIX_FILE = "matrix.json"
SUMMARY_SCHEMA = 2
"""2: inputs by name (summary["inputs"]["tensors"]), streams, backends, per-step series."""

View = Callable[[RunReport, dict], Union[str, bytes]]
"""A view kept in the run folder: the run (its arrays in memory) and its record -> the file's text."""


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
    path = Path(run_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if isinstance(content, bytes):
        tmp.write_bytes(content)
    else:
        tmp.write_text(content, encoding="utf-8")
    os.replace(tmp, path)
    return path


# -- the record --------------------------------------------------------------------------------------------


def _json_metrics(metrics: dict) -> dict:
    """JSON has no infinity (an SNR of identical outputs): null stands for it."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


def decode_error_file(comparison, output) -> str:
    """Where a user decoder's traceback is kept: beside the files of the side it was compared for."""
    return f"targets/{slug(comparison.target, 'board')}/decode-{slug(output.output, 'output')}.txt"


def _decoded_json(comparison, output) -> dict:
    """The decoded sub-dict as summary.json keeps it: JSON's numbers (no NaN), the traceback's file."""
    record = _finite_tree(output.decoded)
    if output.traceback:
        record["traceback"] = decode_error_file(comparison, output)
    return {"decoded": record}


def _comparison_json(comparison) -> dict:
    return {"passed": comparison.passed, "error": comparison.error, "reference": comparison.reference,
            "problems": list(comparison.problems),
            "failed_requirements": list(comparison.failed_requirements),
            "outputs": {o.output: {"passed": o.passed, "metrics": _json_metrics(o.metrics), "reasons": o.reasons,
                                   **({"notes": list(o.notes)} if o.notes else {}),
                                   **(_decoded_json(comparison, o) if o.decoded is not None else {}),
                                   **({"per_class_iou": {str(c): v for c, v in o.per_class_iou.items()}}
                                      if o.per_class_iou else {}),
                                   **({"series": {k: [_finite(v) for v in values] for k, values in o.series.items()}}
                                      if o.series else {}),
                                   **({"nonfinite": o.nonfinite.as_dict()} if o.nonfinite is not None else {})}
                        for o in comparison.outputs}}


def _finite_tree(value):
    """A decoded record as JSON holds it: non-finite numbers as null, tuples as lists, numpy scalars as numbers."""
    if isinstance(value, dict):
        return {str(key): _finite_tree(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_tree(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    return _finite(value)


def _finite(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _built_by(source) -> Optional[str]:
    """The build script's name when a script made the model ("segformer.py"), else None."""
    script = getattr(source, "build_script", None)
    return Path(script).name if script else None


def _facts(facts: dict) -> dict:
    """The agent's facts as the record keeps them: no traceback; output shapes as the model's.

    Agents stack the samples on a first axis; the record says the model's
    shape of one sample and how many samples there were.
    """
    kept = {k: v for k, v in facts.items() if k != "traceback"}
    if isinstance(kept.get("outputs"), dict):
        kept["outputs"] = {name: ({**info, "shape": list(info["shape"][1:]), "samples": info["shape"][0]}
                                  if isinstance(info, dict) and info.get("shape") and "samples" not in info
                                  else info)
                           for name, info in kept["outputs"].items()}
    return kept


def _expected_mnn(report: RunReport, name: str) -> Optional[str]:
    """The MNN version a board was to run: the run's (scenario, matrix, bisect), else the inventory's."""
    board = report.boards.get(name)
    if board is None or board.kind == "local" and not report.scenario.mnn_version:
        return None
    return report.scenario.mnn_version or getattr(board, "mnn_version", None)


def summary(report: RunReport) -> dict:
    """summary.json: everything the terminal showed, as data for scripts and later runs."""
    return {
        "schema": SUMMARY_SCHEMA,
        "run_id": report.run_id,
        "started_at": report.started_at,
        "wall_s": report.wall_s,
        "exit_code": report.exit_code,
        "interrupted": report.interrupted,
        "scenario": {"name": report.scenario.name, "path": str(report.scenario.path)},
        "model": {"source": str(report.model.source_path) if report.model.source_path else None,
                  "mnn_path": str(report.model.mnn_path), "mnn_sha256": report.model.mnn_sha256,
                  "converted": report.model.converted, "source_format": report.model.source_format,
                  "built_by": _built_by(report.scenario.model),
                  "converter_args": list(report.model.converter_args), "outputs": list(report.model.outputs),
                  "converter_version": report.model.converter_version,
                  "compared": report.scenario.compared_outputs(list(report.model.outputs))},
        "inputs": {"sha256": report.inputs.sha256, "samples": report.inputs.sample_names,
                   "shape": list(report.inputs.shape), "count": report.inputs.count,
                   "image_input": report.inputs.image_input,
                   "tensors": [tensor.as_dict() for tensor in report.inputs.tensors]},
        "stream": None if report.scenario.stream is None else {
            "steps": report.inputs.count, "carry": dict(report.scenario.stream.carry)},
        "settings": report.scenario.run.as_dict(),
        "mnn_version": report.scenario.mnn_version,
        "allow_fallback": report.scenario.run.allow_fallback,
        "backend_failures": dict(report.backend_failures),
        # What the numbers were judged by, so a stored run can be read (and redrawn) without its YAML.
        "preprocess": None if report.scenario.preprocess is None else {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(report.scenario.preprocess).items()},
        "output_specs": {**{name: dataclasses.asdict(report.scenario.output_spec(name))
                            for name in report.model.outputs},
                         **{name: spec.as_dict() for name, spec in report.scenario.decoded.items()}},
        "reference": report.reference,
        "targets_from": report.targets_from,
        "host": report.host,
        "boards": {
            name: {"kind": result.kind, "status": result.status, "error": result.error,
                   "expected_mnn_version": _expected_mnn(report, name),
                   "mnn": getattr(report.boards.get(name), "mnn", None),
                   "facts": _facts(result.facts),
                   "timings": result.timings, "notes": result.notes, "locked_span": result.locked_span,
                   "bytes_uploaded": result.bytes_uploaded, "bytes_downloaded": result.bytes_downloaded,
                   **({"reused_from": result.reused_from} if result.reused_from else {}),
                   **({"via": result.via} if result.via else {})}
            for name, result in report.results.items()
        },
        "source": None if report.source is None else {
            "status": report.source.status, "error": report.source.error,
            "runtime": report.source.facts.get("runtime"), "notes": list(report.source.notes),
            "path": str(report.model.source_path) if report.model.source_path else None},
        "conversion": None if report.conversion is None else _comparison_json(report.conversion),
        "attribution": report.attribution,
        "raw_outputs": report.raw_outputs,
        "preprocess_parity": {name: {"passed": p.passed, "backend": p.backend, "metrics": _json_metrics(p.metrics),
                                     "hint": p.hint, "error": p.error} for name, p in report.parity.items()},
        "findings": [{"cause": f.cause, "title": f.title, "board": f.board, "message": f.message}
                     for f in report.findings],
        "mnn_versions": {name: check.as_dict() for name, check in report.mnn_versions.items()},
        "comparisons": {name: _comparison_json(comparison) for name, comparison in report.comparisons.items()},
    }


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


def write_run(report: RunReport, views: Dict[str, View], keep_outputs_mb: float = 0.0,
              on_error: Callable[[str, Exception], None] = lambda name, error: None) -> dict:
    """The run's folder made whole: raw outputs pruned, summary.json, then each view's file; returns the record.

    Raw outputs are pruned to keep_outputs_mb first (the views use the arrays
    in memory); summary.json is the record and is written next; a view that
    breaks is told to on_error (file name, error) and does not change the exit code.
    The record returned, which the views get, is summary.json as read_summary reads it back: a live run and
    a stored one are rendered from the same data by construction.
    """
    report.raw_outputs = prune_raw_outputs(report.run_dir, keep_outputs_mb)
    judged = ([report.conversion] if report.conversion is not None else []) + list(report.comparisons.values())
    for comparison in judged:
        for output in comparison.outputs:
            if output.traceback:
                write_file(report.run_dir, decode_error_file(comparison, output), output.traceback)
    text = json.dumps(summary(report), indent=1, sort_keys=True)
    write_file(report.run_dir, SUMMARY_FILE, text)
    data = json.loads(text)
    for name, view in views.items():
        try:
            write_file(report.run_dir, name, view(report, data))
        except Exception as error:  # a view failing must not hide the run's verdict
            on_error(name, error)
    return data


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


def read_summary(run_dir: Path) -> dict:
    """A stored run's record, exactly as the views render it."""
    try:
        return json.loads((run_dir / SUMMARY_FILE).read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(run_dir / SUMMARY_FILE, None, f"cannot read it: {error}") from error


def kept_views(run_dir: Path) -> List[Path]:
    """The views kept in the folder (junit.xml, report.html), those that were written."""
    return [run_dir / name for name in (JUNIT_FILE, HTML_FILE) if (run_dir / name).exists()]


# -- a matrix's folder -------------------------------------------------------------------------------------


def is_matrix(run_dir: Path) -> bool:
    return (run_dir / MATRIX_FILE).is_file()


def write_matrix(run_dir: Path, data: dict) -> Path:
    """matrix.json: the settings of a matrix, each with its run id and exit code (a run folder of its own)."""
    return write_file(run_dir, MATRIX_FILE, json.dumps(data, indent=1))


def matrix_text(matrix_dir: Path) -> str:
    """matrix.json as stored (what --json prints)."""
    return (matrix_dir / MATRIX_FILE).read_text()


def read_matrix(matrix_dir: Path) -> dict:
    """matrix.json as stored: its settings, exit code, how many settings were planned, the signal if any."""
    return json.loads((matrix_dir / MATRIX_FILE).read_text())


def stored_records(matrix_dir: Path) -> Tuple[str, List[Tuple[str, dict]], int]:
    """A stored matrix (matrix.json and each setting's summary.json): its scenario, records and exit code."""
    data = read_matrix(matrix_dir)
    records = [(item["label"], json.loads((matrix_dir / item["label"] / SUMMARY_FILE).read_text()))
               for item in data["settings"] if (matrix_dir / item["label"] / SUMMARY_FILE).is_file()]
    return data["scenario"], records, int(data.get("exit_code", 0))

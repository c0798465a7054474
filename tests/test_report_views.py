"""The report says what happened, whole, at any terminal width.

Every shipped scenario's report at 80, 100 and 160 columns: a real quick run,
and the stored records (summary.json) of real runs of every shipped scenario
on an emulated farm with long board names (tests/data/summaries/; SegFormer
at its real 512x512 on the Cortex-A76 with MNN 3.4.1, Silero VAD as a stream
at FP16, failures of every kind among them: conversion, parity, version
requirement, backend fallback, an unreachable board; records of both summary
schemas). Then the last line of each kind of failure, as golden text with the
numbers masked.
"""

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from harness.cli import main
from harness.config.scenario import load_scenario
from harness.record.numbers import format_metric
from harness.record.outcome import ERROR, UNUSABLE, verdicts
from harness.record.run import RunRecord
from harness.record.run_folder import read_record
from harness.views.terminal import METRIC_HEADERS, render, summary_line

from .conftest import REPO, scenario_text
from .golden import assert_golden, masked

SUMMARIES = Path(__file__).resolve().parent / "data" / "summaries"
WIDTHS = (80, 100, 160)
GOLDEN_WIDTH = 400
"""Goldens are rendered unwrapped: where a sentence wraps depends on its numbers, which are masked."""


def rendered(record: RunRecord, width: int) -> str:
    console = Console(width=width, record=True)
    render(record, console, Path("reports") / record.run_id)
    return console.export_text()


def one_run(reports: Path) -> Path:
    (run_dir,) = [path for path in reports.iterdir() if path.is_dir()]
    return run_dir


@dataclass
class QuickRun:
    folder: Path
    printed: str
    """What `harness run` printed, live, at 100 columns."""


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """A real run of the shipped quick scenario (x86 and its source model: seconds, no emulation)."""
    reports = tmp_path_factory.mktemp("quick")
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setenv("COLUMNS", "100")
        assert main(["run", str(REPO / "scenarios" / "quick.yaml"), "--targets", "x86",
                     "--reports", str(reports)]) == 0
    return QuickRun(one_run(reports), printed.getvalue())


def stored_records():
    return [RunRecord.from_dict(json.loads(path.read_text()), str(path)) for path in sorted(SUMMARIES.glob("*.json"))]


def test_the_stored_summaries_cover_every_shipped_scenario():
    shipped = {load_scenario(path).name for path in (REPO / "scenarios").glob("*.yaml") if path.name != "nightly.yaml"}
    stored = {record.name for record in stored_records()}
    assert shipped <= stored, f"add a summary of a real run of {sorted(shipped - stored)} to {SUMMARIES}"
    kinds = {record.exit_code for record in stored_records()}
    assert kinds == {0, 1, 3}  # passes, failures and a board that could not be used


@pytest.mark.parametrize("width", WIDTHS)
def test_every_report_is_whole_at_any_width(width, quick_run):
    for record in stored_records() + [read_record(quick_run.folder)]:
        text = rendered(record, width)
        where = f"{record.name} at {width} columns:\n{text}"
        assert "…" not in text, where
        assert max(len(line) for line in text.splitlines()) <= width, where
        flat = " ".join(text.split())
        for board in record.boards:
            assert board in text, where  # every board name whole, on one line
        for verdict in verdicts(record):
            assert verdict.board in text, where
            if verdict.status in (ERROR, UNUSABLE):
                continue
            for metric in METRIC_HEADERS.values():
                assert format_metric(verdict.metrics.get(metric), metric) in text, (metric, where)
            shown = "PASS" if verdict.passed else f"FAIL {verdict.cause}".strip()
            assert shown in flat, (shown, where)
        assert " ".join(summary_line(record).plain.split()) in flat, where


def test_columns_is_honoured_when_piped(quick_run, monkeypatch, capsys):
    for width in WIDTHS:
        monkeypatch.setenv("COLUMNS", str(width))
        assert main(["report", str(quick_run.folder)]) == 0
        out = capsys.readouterr().out
        assert max(len(line) for line in out.splitlines()) <= width and "…" not in out
    monkeypatch.delenv("COLUMNS")
    assert main(["report", str(quick_run.folder)]) == 0
    out = capsys.readouterr().out
    assert 80 < max(len(line) for line in out.splitlines()) <= 100  # a CI log without COLUMNS: 100


def test_the_report_of_a_run_and_of_its_record_are_the_same(quick_run, monkeypatch, capsys):
    """`harness run` and `harness report RUN-ID` print the same report, line for line: one record, one view.
    The live run prints its progress first; everything from the report's first line on is the same."""
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["report", str(quick_run.folder)]) == 0
    stored = capsys.readouterr().out
    first = stored.splitlines()[0]
    assert first in quick_run.printed.splitlines(), f"the live run never printed {first!r}:\n{quick_run.printed}"
    live = quick_run.printed[quick_run.printed.index(first + "\n"):]
    assert live == stored
    assert "built by tiny_segnet.py -> .mnn" in stored  # a built model says so, not "model.onnx"
    last = [line for line in stored.splitlines() if line.startswith("PASS")][0]
    assert last.startswith("PASS  only the reference x86 and the source model (onnxruntime) ran")
    assert f"junit.xml: {quick_run.folder / 'junit.xml'}" in stored.replace("\n", "")
    # The model's own output shape, and how many samples were stacked for the run.
    record = read_record(quick_run.folder)
    assert record.boards["x86"].facts["outputs"]["logits"] == {"shape": [1, 8, 16, 16], "samples": 1,
                                                                "dtype": "float32"}


def run_text(tmp_path, name, text, *extra):
    scenario = tmp_path / f"{name}.yaml"
    scenario.write_text(text)
    reports = tmp_path / name
    code = main(["run", str(scenario), "--reports", str(reports), *extra])
    return code, reports


def test_golden_conversion_failure(tmp_path, capsys):
    text = scenario_text(["x86"]).replace("  build_args:", '  converter_args: [--weightQuantBits, "4"]\n  build_args:')
    code, reports = run_text(tmp_path, "w4", text)
    out = capsys.readouterr().out
    assert code == 1
    last = [line for line in out.splitlines() if line.startswith("FAIL")][0]
    assert last.startswith("FAIL  conversion: x86 vs onnxruntime logits ")
    record = read_record(one_run(reports))
    assert_golden("conversion_failure", masked(rendered(record, GOLDEN_WIDTH), {str(tmp_path): "TMP"}))


def test_golden_preprocessing_parity_failure(tmp_path, capsys):
    text = scenario_text(["x86"]).replace("interpolation: area", "interpolation: linear")
    code, reports = run_text(tmp_path, "parity", text + "preprocess_parity: {board: {color: bgr}}\n")
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  preprocessing parity on x86: the channel order is swapped (BGR against RGB)" in out
    record = read_record(one_run(reports))
    # CI sees it too: the exit code is 1, so junit.xml holds the failure that made it so.
    from junitparser import Failure, JUnitXml
    cases = {case.name: case for suite in JUnitXml.fromfile(str(one_run(reports) / "junit.xml")) for case in suite}
    (failure,) = [r for r in cases["(preprocessing)[normal,1,session]"].result if isinstance(r, Failure)]
    assert failure.type == "preprocessing" and "swapped" in failure.message
    assert_golden("parity_failure", masked(rendered(record, GOLDEN_WIDTH), {str(tmp_path): "TMP"}))


def test_golden_matrix_with_a_failed_converter_variant(tmp_path, capsys):
    from harness.record.run_folder import read_matrix
    from harness.views.matrix import render_matrix

    matrix = 'matrix:\n  converter:\n    fp32: [--useGeluApproximation, "0"]\n    fp16: [--fp16]\n'
    code, reports = run_text(tmp_path, "matrix", scenario_text(["x86"]) + matrix)
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL 1 of 2 setting(s) diverge: normal-t1-session-copy-fp16 (conversion: x86 vs onnxruntime" in \
        " ".join(out.split())
    matrix_dir = one_run(reports)
    console = Console(width=GOLDEN_WIDTH, record=True)
    render_matrix(read_matrix(matrix_dir), Path("reports/MATRIX"), console)
    text = console.export_text()
    assert "FAIL conversion" in text and "…" not in text  # the src cell fails, with its limit
    assert_golden("matrix_converter_variant", masked(text, {str(tmp_path): "TMP"}))


def test_the_stream_line_gives_the_range_and_the_worst_step():
    """The stored Silero stream: the probability's error peaks mid-clip (3.1e-02 at step 26) while its first and
    last steps are 2.9e-05 and 3.1e-04; the line must not read first..last as a range."""
    path = SUMMARIES / "silero-vad.json"
    record = RunRecord.from_dict(json.loads(path.read_text()), str(path))
    (board,) = list(record.comparisons)
    errors = record.comparisons[board].outputs["output"].series.max_abs
    worst = max(range(len(errors)), key=errors.__getitem__)
    assert 0 < worst < len(errors) - 1  # the peak is neither end: first..last would hide it
    for width in WIDTHS:
        text = " ".join(rendered(record, width).split())
        assert f"{board} output: max |err| per step {min(errors):.1e} .. {errors[worst]:.1e}, worst at step " \
               f"{worst}" in text
    from harness.views.html import stream_section
    page = stream_section(record)
    assert f"{errors[worst]:.1e}, worst at step {worst}" in page

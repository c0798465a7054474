"""junit.xml, read back by a real JUnit parser: a pass, a tolerance failure and an unusable board."""

import json

import pytest
from junitparser import Error, Failure, JUnitXml

from harness.cli import main
from harness.record.run import InputsRecord, ModelRecord, RunRecord
from harness.views.junit import case_name, junit_tree

from .conftest import scenario_text

INVENTORY = """
boards:
  x86: {kind: local}
  rep-a76: {kind: emulated, cpu: cortex-a76}
  rep-down: {kind: ssh, host: 127.0.0.1, port: 9, connect_timeout: 3}
"""


def summary_of(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def test_case_names_leave_room_for_a_settings_matrix():
    assert case_name("logits", {"precision": "low", "threads": 4, "api": "module", "io": "copy"}) == \
        "logits[low,4,module]"


def test_a_summary_without_comparisons_is_an_empty_but_valid_report(tmp_path):
    record = RunRecord(run_id="r", scenario={"name": "s", "path": "s.yaml"}, reference="x86", wall_s=1.0,
                       model=ModelRecord(source=None, mnn_path="m.mnn", mnn_sha256="0", outputs=["y"]),
                       inputs=InputsRecord(sha256="0"))
    tree = junit_tree(record)
    path = tmp_path / "junit.xml"
    tree.write(path, encoding="utf-8", xml_declaration=True)
    assert JUnitXml.fromfile(str(path)).tests == 0


@pytest.mark.emulated
def test_junit_of_a_real_run_reads_back(tmp_path, write_file, emulated_boards):
    emulated_boards.add("rep-a76")
    inventory = write_file("inventory.yaml", INVENTORY)
    # precision low: FP16 on the A76 breaks max_abs 1e-3 (the conversion passes); rep-down cannot be reached.
    scenario = write_file("s.yaml", scenario_text(["x86", "rep-a76", "rep-down"], precision="low"))
    reports = tmp_path / "reports"
    code = main(["--inventory", str(inventory), "run", str(scenario), "--reports", str(reports)])
    (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
    summary = summary_of(run_dir)
    assert code == 1
    xml = JUnitXml.fromfile(str(run_dir / "junit.xml"))
    suites = {suite.name: suite for suite in xml}
    # The conversion check (MNN on x86 against ONNX Runtime) first, then every board.
    assert list(suites) == ["tiny.x86 vs onnxruntime", "tiny.rep-a76", "tiny.rep-down"]
    assert (xml.tests, xml.failures, xml.errors) == (3, 1, 1)
    (conversion,) = list(suites["tiny.x86 vs onnxruntime"])
    assert conversion.is_passed and suites["tiny.x86 vs onnxruntime"].hostname == "x86"

    (failed,) = list(suites["tiny.rep-a76"])
    assert failed.classname == "tiny.rep-a76" and failed.name == "logits[low,1,session]"
    (failure,) = [r for r in failed.result if isinstance(r, Failure)]
    assert failure.message == "; ".join(summary["comparisons"]["rep-a76"]["outputs"]["logits"]["reasons"])
    assert "max_abs" in failure.message and "> 0.001" in failure.message
    assert suites["tiny.rep-a76"].failures == 1 and suites["tiny.rep-a76"].time > 0

    (down,) = list(suites["tiny.rep-down"])
    (error,) = [r for r in down.result if isinstance(r, Error)]
    assert down.name == "logits[low,1,session]"
    assert error.message == summary["comparisons"]["rep-down"]["error"] and error.type == "board unusable"

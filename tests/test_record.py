"""The records a run leaves, saved and loaded as themselves (record/serde.py, record/run.py).

The stored records the views are tested on (tests/data/summaries/) are what the writer writes today: reading
one and writing it again gives the same bytes, so the day a field is added, renamed or retyped this test fails
until they are regenerated (tests/record_corpus.py runs the scenarios that made them). Records of older schemas
(tests/data/legacy/, as the harness of their day wrote them) are upgraded on load and render as that harness
rendered them (the .report-*.txt beside each). JSON has no infinity: every record writes it "inf".
"""

import json
import math
from pathlib import Path

import pytest
from rich.console import Console

from harness.cli import main
from harness.record.layers import BoardLayers, LayersReport, OpRow, Side
from harness.record.matrix import MatrixRecord, MatrixSetting
from harness.record.run import SCHEMA, LimitFailure, OutputComparison, RunRecord, SettingFailure
from harness.record.serde import SchemaError, to_data
from harness.views.terminal import render

DATA = Path(__file__).resolve().parent / "data"
SUMMARIES = sorted((DATA / "summaries").glob("*.json"))
LEGACY = sorted((DATA / "legacy").glob("*.json"))


def written(record: RunRecord) -> str:
    """summary.json's text, as record/run_folder.py writes it."""
    return json.dumps(record.to_dict(), indent=1, sort_keys=True)


@pytest.mark.parametrize("path", SUMMARIES, ids=lambda path: path.stem)
def test_every_stored_record_is_what_the_writer_writes_today(path):
    text = path.read_text()
    record = RunRecord.from_dict(json.loads(text), str(path))
    assert record.schema == SCHEMA, f"{path.name} is of schema {record.schema}: regenerate it (tests/record_corpus.py)"
    assert written(record) == text.rstrip("\n"), (
        f"{path.name} is not what the writer writes for the same record: regenerate the stored records "
        "(tests/record_corpus.py) and review the diff")
    assert RunRecord.from_dict(record.to_dict()) == record


@pytest.mark.parametrize("path", LEGACY, ids=lambda path: path.stem)
def test_an_older_record_is_upgraded_and_renders_as_the_harness_of_its_day_rendered_it(path):
    data = json.loads(path.read_text())
    assert data.get("schema", 1) < SCHEMA
    record = RunRecord.from_dict(data, str(path))
    assert record.schema == SCHEMA
    assert RunRecord.from_dict(record.to_dict()) == record  # upgraded once, then stable
    for width in (80, 100):
        console = Console(width=width, record=True, file=open("/dev/null", "w"))
        render(record, console, Path("reports") / record.run_id)
        assert console.export_text() == (path.parent / f"{path.stem}.report-{width}.txt").read_text(), \
            f"{path.name} at {width} columns"


def test_an_older_records_sentences_become_typed_failures_only_when_they_read_back_the_same():
    """Schema 2 kept a failure as its sentence. The upgrade parses a limit ("max_abs 0.0309 > 0.0001") into
    metric, value, limit and direction only when those render the same sentence again; anything else stays
    a check with its text, as it read."""
    (silero,) = [path for path in LEGACY if path.stem == "silero-vad"]
    data = json.loads(silero.read_text())
    record = RunRecord.from_dict(data)
    for board, comparison in record.comparisons.items():
        for name, output in comparison.outputs.items():
            assert output.reasons == data["comparisons"][board]["outputs"][name]["reasons"]
    output = record.comparisons["farm-lab7-a76-old"].outputs["output"]
    failure = output.failures[0]  # "max_abs 0.0309 > 0.0001": the value is the metric itself, unrounded
    assert (failure.metric, failure.value, failure.limit, failure.direction) == \
        ("max_abs", output.metrics["max_abs"], 0.0001, ">") and round(failure.value, 4) == 0.0309
    (backend,) = [path for path in LEGACY if path.stem == "quick-backend-falls-back"]
    problem = RunRecord.from_dict(json.loads(backend.read_text())).backend_failures["x86"]
    assert isinstance(problem, SettingFailure) and (problem.setting, problem.asked, problem.ran) == \
        ("backend", "opencl", "cpu")


def test_infinity_and_nan_are_one_string_each_and_read_back_as_numbers():
    (path,) = [path for path in SUMMARIES if path.stem == "quick-fp16"]
    record = RunRecord.from_dict(json.loads(path.read_text()))
    output = next(iter(record.conversion.outputs.values()))
    output.metrics.update(snr_db=math.inf, psnr_db=-math.inf, error_growth=math.nan, max_abs=None)
    output.failures.append(LimitFailure("snr_db", -math.inf, 60.0, "<"))
    text = json.dumps(record.to_dict(), allow_nan=False)  # strict JSON: jq and any parser read it
    data = json.loads(text)
    metrics = data["conversion"]["outputs"][output.output]["metrics"]
    assert (metrics["snr_db"], metrics["psnr_db"], metrics["error_growth"], metrics["max_abs"]) == \
        ("inf", "-inf", "nan", None)
    back = RunRecord.from_dict(data).conversion.outputs[output.output]
    assert back.metrics["snr_db"] == math.inf and back.metrics["psnr_db"] == -math.inf
    assert math.isnan(back.metrics["error_growth"]) and back.metrics["max_abs"] is None
    assert back.failures[-1].value == -math.inf and back.failures[-1].sentence == "snr_db -inf dB < 60.0 dB"


def test_the_layer_search_writes_infinity_the_same_way():
    row = OpRow(index=0, name="conv1", type="Convolution", shape=[1, 8, 4, 4], reduction=27.0, tolerance=1e-3,
                entry=0.0, exit=math.inf, nonfinite=3)
    report = LayersReport(scenario="s", run_dir="reports/r", model={}, reference="x86",
                          boards=[BoardLayers(Side("arm", {}), Side("x86", {}), rows=[row], first_nonfinite=0)])
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["boards"][0]["rows"][0]["exit"] == "inf"
    assert data["exit_code"] == 1
    assert LayersReport.from_dict(data) == report


def test_a_record_written_by_a_newer_harness_is_refused_with_the_reason():
    (path,) = [path for path in SUMMARIES if path.stem == "quick-fp16"]
    data = dict(json.loads(path.read_text()), schema=SCHEMA + 1)
    with pytest.raises(SchemaError, match=f"x/summary.json: schema: is {SCHEMA + 1}, written by a newer harness; "
                                          f"this one reads up to {SCHEMA}: update the harness"):
        RunRecord.from_dict(data, "x/summary.json")
    with pytest.raises(SchemaError, match="matrix.json: schema: is 2"):
        MatrixRecord.from_dict({"schema": 2, "matrix_id": "m", "scenario": "s"}, "matrix.json")


@pytest.mark.parametrize("damage, words", [
    (lambda d: d["conversion"]["outputs"]["logits"]["metrics"].update(max_abs="big"),
     "conversion.outputs.logits.metrics.max_abs: expected a number or null, found 'big'"),
    (lambda d: d["boards"]["x86"].update(status=3), "boards.x86.status: expected a string, found 3"),
    (lambda d: d["conversion"]["outputs"]["logits"].update(reason="?"),
     "conversion.outputs.logits: reason is not a field of OutputComparison (a record written by another version "
     "of the harness?)"),
    (lambda d: d.pop("model"), "model is missing"),
    (lambda d: d["comparisons"].update(arm=[]), "comparisons.arm: expected an object, found []"),
])
def test_a_record_that_is_not_what_its_type_says_names_the_field(tmp_path, capsys, damage, words):
    (path,) = [path for path in SUMMARIES if path.stem == "quick-fp16"]
    data = json.loads(path.read_text())
    damage(data)
    with pytest.raises(SchemaError) as caught:
        RunRecord.from_dict(data, "summary.json")
    assert str(caught.value) == f"summary.json: {words}"
    # `harness report` says it as a configuration error: the file, the field, what to do; no traceback.
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text(json.dumps(data))
    assert main(["report", str(tmp_path / "run")]) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert f"{tmp_path / 'run' / 'summary.json'}: {words}" in said and "fix: read it with the harness that " \
        "wrote it" in said and "Traceback" not in said


def test_a_matrix_record_reads_back_as_itself():
    matrix = MatrixRecord("m", "quick", 1, 2, None, [
        MatrixSetting("normal-t1-session-copy-default", "normal", 1, "session", "copy", "cpu", "default",
                      run_id="m/normal", exit_code=0),
        MatrixSetting("low-t1-session-copy-default", "low", 1, "session", "copy", "cpu", "default",
                      run_id="m/low", exit_code=1, mnn_version="3.4.1")])
    data = json.loads(json.dumps(matrix.to_dict()))
    assert "mnn_version" not in data["settings"][0] and data["settings"][1]["mnn_version"] == "3.4.1"
    assert MatrixRecord.from_dict(data) == matrix


def test_a_failed_limit_is_one_type_every_view_reads():
    failure = LimitFailure("argmax_agreement", 0.99219, 0.999, "<")
    assert failure.sentence == "argmax_agreement 99.219% < 99.900%" and failure.is_limit
    check = LimitFailure.check("shape", "shape [1, 8] differs from the reference's [1, 9]")
    assert check.sentence == check.text and not check.is_limit
    output = OutputComparison("logits", False, failures=[failure, check])
    assert output.reasons == [failure.sentence, check.text]
    # summary.json keeps the sentences too, for a reader of the JSON (jq, a CI script); read back, the failures
    # are the typed ones.
    data = to_data(output)
    assert data["reasons"] == output.reasons and data["failures"][0] == {
        "metric": "argmax_agreement", "value": 0.99219, "limit": 0.999, "direction": "<"}

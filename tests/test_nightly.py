"""harness nightly, history and report: two real nights, the second one worse, and the regression reported."""

import json
import textwrap

import pytest

from harness.cli import main
from harness.record.history import RegressionPolicy, is_regression, sparkline

from .conftest import TINY_SEGNET

INVENTORY = """
boards:
  x86: {kind: local}
  rep-a76: {kind: emulated, cpu: cortex-a76}
"""


def tiny(precision):
    """The tiny segnet on the A76, with limits loose enough that FP16 passes: only the history sees it."""
    return textwrap.dedent(f"""\
        name: tiny
        model:
          build: {TINY_SEGNET}
          build_args: {{height: 64, width: 64, num_classes: 8, seed: 0}}
        inputs: {{images: [skimage:astronaut]}}
        preprocess:
          resize: {{height: 64, width: 64, interpolation: area}}
          mean: [0.485, 0.456, 0.406]
          std: [0.229, 0.224, 0.225]
        run: {{precision: {precision}}}
        targets: [x86, rep-a76]
        tolerance: {{max_abs: 1.0}}
        outputs:
          logits: {{kind: class_logits, tolerance: {{min_argmax_agreement: 0.9}}}}
        """)


def nightly(runs, fail_on_regression=True):
    entries = "\n".join(f"  - scenario: {run}" for run in runs)
    return (f"runs:\n{entries}\nregression: {{margin: 2.0, agreement_drop: 0.001, "
            f"fail_on_regression: {str(fail_on_regression).lower()}}}\n")


@pytest.mark.parametrize("text, where, fix", [
    ("runs: [{scenario: s.yaml}]\nregresion: {margin: 2}\n", "regresion: is not a known key", "`regression`"),
    ("runs: [{scenario: missing.yaml}]\n", "runs[0].scenario: file 'missing.yaml' does not exist", "fix the path"),
    ("runs: [{scenario: s.yaml}]\nregression: {margin: 0.5}\n", "regression.margin: must be at least 1", "2.0"),
    ("runs: []\n", "runs: is empty", "- scenario:"),
    ("runs: [{scenario: s.yaml, targets: x86}]\n", "runs[0].targets: must be a list", "[a, b]"),
])
def test_config_errors_name_the_key_and_the_fix(write_file, capsys, tmp_path, text, where, fix):
    write_file("s.yaml", tiny("normal"))
    path = write_file("nightly.yaml", text)
    assert main(["nightly", str(path), "--reports", str(tmp_path / "r")]) == 2
    err = " ".join(capsys.readouterr().err.split())  # the console wraps at 100 columns
    assert where in err and fix in err
    assert not (tmp_path / "r").exists()  # nothing ran


def test_regression_rules():
    policy = RegressionPolicy(margin=2.0, cosine_drop=1e-5, agreement_drop=0.001)
    assert is_regression("max_abs", 1e-5, 3e-5, policy) and not is_regression("max_abs", 1e-5, 1.9e-5, policy)
    assert not is_regression("max_abs", 0.0, 1e-12, policy)          # below the floor: noise
    assert is_regression("argmax_agreement", 1.0, 0.998, policy)
    assert not is_regression("argmax_agreement", 1.0, 0.9995, policy)
    assert not is_regression("cosine", 0.9999, 1.0, policy)          # better is never a regression
    assert sparkline([1e-6, None, 1e-4, 1e-2], log=True) == "▁ ▅█"
    assert sparkline([1.0, 1.0]) == "▄▄"


@pytest.mark.emulated
def test_two_nights_the_second_regresses(tmp_path, write_file, emulated_boards, capsys):
    emulated_boards.add("rep-a76")
    inventory = str(write_file("inventory.yaml", INVENTORY))
    reports = tmp_path / "reports"
    broken_script = write_file("broken.py", "raise SystemExit('this model does not build, on purpose')\n")
    write_file("broken.yaml", tiny("normal").replace("name: tiny", "name: broken").replace(
        str(TINY_SEGNET), str(broken_script)))

    # Night 1: a scenario whose model does not build, then the tiny one: the first does not stop the second.
    write_file("tiny.yaml", tiny("normal"))
    night1 = write_file("night1.yaml", nightly(["broken.yaml", "tiny.yaml"]))
    code = main(["--inventory", inventory, "nightly", str(night1), "--reports", str(reports), "--json"])
    out, err = capsys.readouterr()
    first = json.loads(out)
    assert code == 2, err                                # the model that does not build: a configuration error
    assert [run["exit_code"] for run in first["runs"]] == [2, 0]
    assert "does not build" in first["runs"][0]["error"] and first["runs"][1]["run_id"]
    assert first["changes"]["previous_night"] is None

    # Night 2: the same scenario at precision low: FP16 on the A76. Still within its loose limits.
    write_file("tiny.yaml", tiny("low"))
    night2 = write_file("night2.yaml", nightly(["tiny.yaml"]))
    code = main(["--inventory", inventory, "nightly", str(night2), "--reports", str(reports), "--json"])
    out, err = capsys.readouterr()
    second = json.loads(out)
    assert second["runs"][0]["exit_code"] == 0, err      # every board passed its tolerance ...
    assert code == 1                                     # ... but it regressed, and fail_on_regression is on
    changes = second["changes"]
    assert changes["previous_night"] == first["night"]
    regressed = {(r["board"], r["metric"]) for r in changes["regressions"]}
    assert ("rep-a76", "max_abs") in regressed and ("rep-a76", "mean_abs") in regressed
    max_abs = next(r for r in changes["regressions"] if r["metric"] == "max_abs")
    assert max_abs["after"] > 2.0 * max_abs["before"]
    assert changes["settings_changed"][0]["after"]["precision"] == "low"
    assert {"scenario": "broken", "board": "*", "output": "*"} in changes["gone"]
    assert "regression   tiny / rep-a76 / logits: max_abs" in err
    assert "NIGHT FAILED" in err

    # The history shows the trend; the stored run shows again, without re-running.
    assert main(["history", "--reports", str(reports), "--json"]) == 0
    trend = json.loads(capsys.readouterr().out)["trend"]
    row = next(r for r in trend if (r["scenario"], r["board"]) == ("tiny", "rep-a76"))
    assert row["max_abs"][1] == max_abs["after"] and row["status"] == ["pass", "pass"]
    assert main(["history", "--reports", str(reports), "--scenario", "tiny"]) == 0
    table = capsys.readouterr().out
    assert "▁█" in table and "broken" not in table

    run_id = second["runs"][0]["run_id"]
    assert main(["report", run_id, "--reports", str(reports), "--json"]) == 0
    out, err = capsys.readouterr()
    stored = json.loads((reports / run_id / "summary.json").read_text())
    assert json.loads(out) == stored
    assert main(["report", run_id, "--reports", str(reports)]) == 0
    shown = capsys.readouterr().out
    assert "rep-a76" in shown and "PASS" in shown and run_id in shown

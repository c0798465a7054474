"""Attribution and named causes, on cases made for them."""

import json

import numpy as np
import pytest

from harness.analysis.compare import judge
from harness.analysis.diagnose import attribute, attributions, diagnose
from harness.cli import main
from harness.config.scenario import OutputSpec, Tolerance
from harness.record.run import Comparison, SourceRecord

from .conftest import REPO
from .records import against_x86, board_run


def test_attribution_table():
    assert attribute(True, True) == "none"
    assert attribute(False, True) == "conversion"
    assert attribute(True, False) == "platform"
    assert attribute(False, False) == "both"
    assert attribute(None, False) == "platform"


def failing_logits():
    """Scores that agree to 1e-3 but tip one near-tie: a flip and nothing else."""
    reference = np.zeros((1, 1, 2, 4))
    reference[0, 0, 0] = [1.0, 1.0, 1.0, 1.0005]
    reference[0, 0, 1] = [0.0, 0.0, 0.0, 1.0]
    target = reference.copy()
    target[0, 0, 1, 3] = 1.001
    spec = OutputSpec(kind="class_logits", tolerance=Tolerance(max_abs=0.01, min_argmax_agreement=0.99))
    comparison = against_x86(judge("logits", target, reference, spec))
    assert not comparison.passed
    return comparison


def test_argmax_flips_of_near_ties_are_named():
    (finding,) = diagnose(board_run(comparison=failing_logits()))
    assert finding.cause == "argmax-flips" and finding.board == "arm"
    assert "25.000% of positions change label, 100% of them near-ties" in finding.message


def test_a_probability_map_is_never_given_argmax_flips_but_its_mask_changes():
    """A probability map has no argmax: its failing mask says how many pixels changed side and where."""
    reference = np.zeros((1, 1, 1, 8, 8))
    reference[..., 2:5, 2:5] = 0.9
    target = reference.copy()
    target[..., 5, 2:5] = 0.31  # a row tipped over the threshold along the mask's edge
    spec = OutputSpec(kind="probability_map", threshold=0.3, tolerance=Tolerance(min_miou=0.999))
    comparison = against_x86(judge("sigmoid_0.tmp_0", target, reference, spec))
    (finding,) = diagnose(board_run(comparison=comparison, specs={"sigmoid_0.tmp_0": spec}))
    assert finding.cause == "mask-changes" and finding.title == "mask changes at the threshold"
    assert finding.message.startswith("sigmoid_0.tmp_0: 3 of 64 pixels (4.688%) are on the other side of the "
                                      "threshold 0.3: 3 joined x86's mask of 9 pixels and 0 left it; 100% of them "
                                      "next to its edges")
    assert "along the mask's outline" in finding.message and "ArgMax" not in finding.message
    garbage = reference.copy()
    garbage[..., 7, 0:4] = 4.3e37  # a region far from the mask: the values themselves are wrong
    comparison = against_x86(judge("sigmoid_0.tmp_0", garbage, reference, spec))
    (finding,) = diagnose(board_run(comparison=comparison, specs={"sigmoid_0.tmp_0": spec}))
    assert "0% of them next to its edges, the rest away from them: whole regions appear or vanish" in finding.message
    assert "(by up to 4.3e+37)" in finding.message


def test_fp16_board_with_precision_low_and_host_io_are_named():
    report = board_run(io="host", precision="low", board_facts={"cpu_features": ["asimd", "asimdhp", "fphp"]},
                         comparison=failing_logits())
    causes = {finding.cause for finding in diagnose(report)}
    assert {"tensor-access", "precision"} <= causes


def test_version_mismatch_is_named():
    report = board_run(board_facts={"mnn_version": "3.4.1"}, comparison=failing_logits())
    assert "mnn-version" in {finding.cause for finding in diagnose(report)}


def test_unexplained_difference_is_the_platform():
    comparison = against_x86(judge("y", np.ones(4) * 2, np.ones(4), OutputSpec(tolerance=Tolerance(max_abs=0.1))))
    (finding,) = diagnose(board_run(comparison=comparison))
    assert finding.cause == "platform"


@pytest.mark.emulated
def test_gelu_approximation_is_caught_as_a_conversion_difference(tmp_path, write_file, capsys):
    """SegFormer converted with the converter's defaults: MNN on x86 already differs from ONNX Runtime."""
    scenario = write_file("gelu.yaml", f"""
name: gelu
model:
  build: {REPO / 'scenarios' / 'models' / 'segformer.py'}
  build_args: {{height: 64, width: 64, num_classes: 150, seed: 0}}
  converter_args: []
inputs: {{images: [skimage:astronaut]}}
preprocess:
  resize: {{height: 64, width: 64}}
  mean: [0.485, 0.456, 0.406]
  std: [0.229, 0.224, 0.225]
targets: [x86]
tolerance: {{max_abs: 1e-3}}
outputs:
  logits: {{kind: class_logits}}
""")
    code = main(["run", str(scenario), "--reports", str(tmp_path / "r")])
    out = capsys.readouterr().out
    (run_dir,) = list((tmp_path / "r").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert code == 1
    assert summary["source"]["status"] == "ok" and summary["source"]["runtime"].startswith("onnxruntime")
    assert not summary["conversion"]["passed"]
    (finding,) = summary["findings"]
    assert finding["cause"] == "converter" and "--useGeluApproximation 0" in finding["message"]
    assert "converter options" in out and "x86 vs onnxruntime" in out


def test_wrong_tensor_access_is_the_apps_io_and_comes_before_fp16():
    assert attribute(True, False, io_host=True) == "io"
    assert attribute(False, False, io_host=True) == "conversion+io"
    assert attribute(True, True, requirement_failed=True) == "version"
    report = board_run(io="host", precision="low", board_facts={"cpu_features": ["asimd", "asimdhp", "fphp"]},
                         comparison=failing_logits())
    causes = [finding.cause for finding in diagnose(report)]
    assert causes.index("tensor-access") < causes.index("precision")
    report.attribution = attributions(report)
    assert report.attribution == {"arm": "io"}
    from harness.record.outcome import attribution_label
    assert attribution_label("io") == "app I/O" and attribution_label("conversion+io") == "conversion + app I/O"


def test_a_board_that_only_breaks_require_same_mnn_is_named_a_version_mismatch():
    comparison = against_x86(judge("y", np.ones(4), np.ones(4), OutputSpec(tolerance=Tolerance(max_abs=0.1))),
                             failed_requirements=["MNN 3.4.1 on the board, 3.6.1 on the host"])
    assert not comparison.passed and comparison.outputs_passed
    report = board_run(board_facts={"mnn_version": "3.4.1"}, comparison=comparison)
    (finding,) = diagnose(report)
    assert finding.cause == "mnn-version" and "outputs match" in finding.message
    assert attributions(report) == {"arm": "version"}


def test_a_comparison_that_did_not_happen_infers_no_cause():
    """The source model did not run: the conversion check has no numbers. A failing board is the platform's
    (it was compared with x86), never "both" or "conversion", and the converter is not blamed."""
    report = board_run(comparison=failing_logits())
    report.conversion = Comparison("onnxruntime", error="the reference onnxruntime failed: boom")
    report.source = SourceRecord("failed", error="ONNX Runtime could not load m.onnx: boom\n  fix: check it")
    assert attributions(report) == {"arm": "platform"}
    causes = [finding.cause for finding in diagnose(report)]
    assert causes[0] == "reference" and "converter" not in causes
    assert "Fix: check it" in diagnose(report)[0].message

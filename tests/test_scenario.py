"""Scenario validation: good files load into typed settings; bad ones fail with file, key and fix."""

import textwrap
from pathlib import Path

import pytest

from harness.cli import main
from harness.core.errors import ConfigError
from harness.config.scenario import load_scenario

REPO = Path(__file__).resolve().parent.parent

GOOD = """
name: t
model:
  build: build.py
  build_args: {height: 64, width: 64}
inputs:
  images: [skimage:astronaut, photos/*.png]
preprocess:
  color: bgr
  resize: {height: 64, width: 48, interpolation: cubic}
  scale: 1/255
  mean: [0.5, 0.5, 0.5]
  std: [0.25, 0.25, 0.25]
  layout: NHWC
run: {precision: low, threads: 2, api: module}
targets: [x86, arm-a76]
tolerance: {max_abs: 1e-3}
outputs:
  logits: {kind: class_logits, class_axis: 3, tolerance: {min_argmax_agreement: 0.99}}
"""


def write(tmp_path, text, name="s.yaml"):
    (tmp_path / "build.py").write_text("")
    (tmp_path / "photos").mkdir(exist_ok=True)
    (tmp_path / "photos" / "a.png").write_bytes(b"")
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_good_scenario_loads_every_field(tmp_path):
    scenario = load_scenario(write(tmp_path, GOOD))
    assert scenario.model.build_script == tmp_path / "build.py"
    assert scenario.model.converter_args == ("--useGeluApproximation", "0")
    assert [i.name for i in scenario.images] == ["astronaut", "a"]
    assert scenario.preprocess.interpolation == "cubic" and scenario.preprocess.layout == "NHWC"
    assert scenario.preprocess.scale == pytest.approx(1 / 255)
    assert (scenario.preprocess.height, scenario.preprocess.width) == (64, 48)
    assert scenario.run.precision == "low" and scenario.run.threads == 2 and scenario.run.api == "module"
    logits = scenario.output_spec("logits")
    assert logits.kind == "class_logits" and logits.class_axis == 3
    assert logits.tolerance.min_argmax_agreement == 0.99
    assert logits.tolerance.max_abs == 1e-3  # inherited from the default
    assert scenario.output_spec("other").tolerance.max_abs == 1e-3


def test_shipped_scenarios_load():
    for path in (REPO / "scenarios").glob("*.yaml"):
        if path.name.startswith("nightly"):
            continue  # a nightly file lists scenarios; it is not one
        scenario = load_scenario(path)
        assert scenario.targets or scenario.tags


@pytest.mark.parametrize("change, key, words", [
    (("interpolation: cubic", "interpolation: bicubic"), "preprocess.resize.interpolation", "did you mean `cubic`"),
    (("threads: 2", "threads: two"), "run.threads", "must be an integer"),
    (("precision: low", "precison: low"), "run.precison", "did you mean `precision`"),
    (("photos/*.png", "photos/*.jpg"), "inputs.images[1]", "matches no file"),
    (("skimage:astronaut", "skimage:astronot"), "inputs.images[0]", "has no image"),
    (("build: build.py", "build: missing.py"), "model.build", "does not exist"),
    (("std: [0.25, 0.25, 0.25]", "std: [0.25, 0.25]"), "preprocess.std", "3 numbers"),
    (("min_argmax_agreement: 0.99", "min_argmax_agreement: 99"), "min_argmax_agreement", "between 0 and 1"),
    (("targets: [x86, arm-a76]", "targets: x86"), "targets", "must be a list"),
])
def test_bad_field_names_file_key_and_fix(tmp_path, change, key, words):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert str(path) in message and key in message and words in message


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_scenario(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_scenario(write(tmp_path, "name: [unclosed"))


def test_cli_exits_2_and_runs_nothing_on_a_bad_scenario(tmp_path, capsys):
    path = write(tmp_path, GOOD.replace("api: module", "api: modul"))
    reports = tmp_path / "reports"
    assert main(["run", str(path), "--reports", str(reports)]) == 2
    assert "run.api" in capsys.readouterr().err
    assert not reports.exists()


def test_cli_exits_2_on_an_unknown_board(tmp_path, capsys):
    path = write(tmp_path, GOOD.replace("[x86, arm-a76]", "[x86, arm-nope]"))
    assert main(["run", str(path), "--reports", str(tmp_path / "r")]) == 2
    out = capsys.readouterr().err
    assert "arm-nope" in out and "targets[1]" in out


def test_each_kind_of_output_has_its_own_default_limits(tmp_path):
    """Labels for class logits, the mask for a probability map, a scale-free SNR for a tensor (docs/tolerances.md)."""
    text = GOOD.replace("tolerance: {max_abs: 1e-3}\n", "").replace(
        "  logits: {kind: class_logits, class_axis: 3, tolerance: {min_argmax_agreement: 0.99}}",
        "  logits: {kind: class_logits, class_axis: 3}\n  mask: {kind: probability_map, threshold: 0.3}")
    scenario = load_scenario(write(tmp_path, text))
    logits, mask, other = (scenario.output_spec(name) for name in ("logits", "mask", "other"))
    assert (logits.tolerance.min_argmax_agreement, logits.tolerance.max_hard_flips) == (0.999, 0.0)
    assert logits.tolerance.max_abs is None and logits.tolerance.min_snr_db is None
    assert mask.tolerance.min_miou == 0.999 and mask.tolerance.max_abs is None
    assert other.kind == "tensor" and other.tolerance.min_snr_db == 60.0


def test_a_scenario_adds_to_the_kind_defaults_and_null_switches_one_off(tmp_path):
    text = GOOD.replace("tolerance: {max_abs: 1e-3}\n", "tolerance: {max_abs: 1e-3, min_snr_db: null}\n").replace(
        "tolerance: {min_argmax_agreement: 0.99}}", "tolerance: {min_argmax_agreement: 0.99, max_hard_flips: null}}")
    scenario = load_scenario(write(tmp_path, text))
    logits, other = scenario.output_spec("logits"), scenario.output_spec("other")
    assert logits.tolerance.max_abs == 1e-3 and logits.tolerance.min_argmax_agreement == 0.99
    assert logits.tolerance.max_hard_flips is None
    assert other.tolerance.max_abs == 1e-3 and other.tolerance.min_snr_db is None

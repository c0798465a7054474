"""Any Linux ARM board as it comes: the harness brings the MNN under test, and bisects MNN releases.

Real parts: an emulated *bare* board (a real sshd, Debian's aarch64 Python 3.11 under qemu, no numpy, no MNN),
real MNN and numpy wheels from the host's cache (fetched with pip once), unpacked on the board by its own
Python; x86 sites of other releases for the reference; real `harness bisect` over three releases. The
pure parts (the search, the wheel tags, the probe's words, the inventory's keys) are tested alone below.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.core.errors import ConfigError, SetupError
from harness.config.inventory import load_inventory
from harness.config.scenario import load_scenario
from harness.core.clients.wheels import Platform, fetch_wheel, unsupported, wheel_fits
from harness.emulation import board as emulated
from harness.execution.targets.provision import PYTHON_FACTS, parse_python_facts
from harness.plans.bisect import FAILED, NO_VERDICT, PASSED, releases_between, search_order
from harness.plans.matrix import run_matrix
from harness.plans.run import run_scenario

from .conftest import REPO, scenario_text
from .faults.conftest import run_harness

BOARD = f"bare{os.getpid()}"


def inventory_text(**board) -> str:
    entry = {"kind": "emulated", "bare": True, "cpu": "cortex-a76", **board}
    return yaml.safe_dump({"boards": {"x86": {"kind": "local"}, BOARD: entry}})


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """One bare emulated board for the module, and its inventory."""
    directory = tmp_path_factory.mktemp("bare")
    inventory = directory / "inventory.yaml"
    inventory.write_text(inventory_text())
    yield directory, inventory
    emulated.remove(BOARD)


def quick(directory: Path, matrix: str = "", name: str = "quick") -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(scenario_text(["x86", BOARD], name=name) + matrix)
    return path


@pytest.mark.emulated
def test_a_bare_board_runs_the_quick_scenario_at_two_mnn_versions_in_one_matrix(bare, tmp_path):
    directory, inventory = bare
    scenario = load_scenario(quick(directory, 'matrix: {mnn_version: ["3.6.1", "3.4.1"]}\n'))
    report = run_matrix(scenario, load_inventory(inventory), tmp_path)
    assert report.exit_code == 0, [(s.label, r.boards[BOARD].error) for s, r in report.runs]
    ran = {}
    for setting, single in report.runs:
        board, x86 = single.boards[BOARD], single.boards["x86"]
        asked = setting.values["mnn_version"]
        # MNN's own word on what ran, on the board and on the reference alike.
        assert board.facts["mnn_version"] == asked and x86.facts["mnn_version"] == asked
        assert board.facts["machine"] == "aarch64"
        ran[asked] = board
    assert sorted(ran) == ["3.4.1", "3.6.1"]
    assert setting.label.startswith("mnn3.") and len({s.label for s, _ in report.runs}) == 2


@pytest.mark.emulated
def test_the_provisioned_store_survives_a_rerun_without_re_upload(bare, tmp_path):
    directory, inventory = bare
    scenario = load_scenario(quick(directory, name="again"))
    first = run_scenario(scenario, load_inventory(inventory), tmp_path)  # provisions 3.6.1 if no test did yet
    second = run_scenario(scenario, load_inventory(inventory), tmp_path)
    assert first.exit_code == 0 and second.exit_code == 0, second.boards[BOARD].error
    result = second.boards[BOARD]
    # Only the job's request travels: no wheel, no agent, no model, no inputs.
    assert result.bytes_uploaded < 20_000, result.bytes_uploaded
    assert not any("provisioned" in note for note in result.notes), result.notes
    assert result.facts["mnn_version"] == "3.6.1"


@pytest.mark.emulated
def test_offline_after_the_first_fetch(bare, tmp_path):
    """With the package index unreachable, a board whose sites and stored wheels are gone is provisioned again
    from the host's cache; a wheel the cache lacks cannot be had, which proves the index really is cut off."""
    directory, inventory = bare
    endpoint = emulated.endpoint_of(BOARD)
    assert endpoint is not None
    workdir = Path(endpoint.workdir)  # the same path on this machine as on the board
    shutil.rmtree(workdir / "sites", ignore_errors=True)
    for wheel in (workdir / "store").glob("*.whl"):
        wheel.unlink()
    offline = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_EXTRA_INDEX_URL": "", "PIP_RETRIES": "0",
               "PIP_TIMEOUT": "2", "PIP_FIND_LINKS": ""}
    scenario = quick(directory, name="offline")
    log = tmp_path / "offline.log"
    env_before = dict(os.environ)
    os.environ.update(offline)
    try:
        with pytest.raises(SetupError, match="no MNN 3.1.0 wheel"):
            fetch_wheel("MNN", "3.1.0", Platform("aarch64", (3, 9), (2, 31)), log=lambda message: None)
        code = run_harness(["run", str(scenario), "--inventory", str(inventory), "--reports", str(tmp_path)], log)
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    text = log.read_text()
    assert code == 0, text
    summary = json.loads(next(tmp_path.glob("*-offline-*/summary.json")).read_text())
    board = summary["boards"][BOARD]
    assert board["facts"]["mnn_version"] == "3.6.1"
    assert any(note.startswith("provisioned MNN 3.6.1") for note in board["notes"]), board["notes"]
    assert board["bytes_uploaded"] > 10_000_000  # the wheels went again, from the host's cache


@pytest.mark.emulated
def test_a_board_without_its_python_fails_up_front_naming_it(bare, tmp_path):
    directory, _ = bare
    inventory = directory / "no-python.yaml"
    inventory.write_text(inventory_text(python="/opt/python3.7/bin/python3.7"))
    report = run_scenario(load_scenario(quick(directory, name="nopython")), load_inventory(inventory), tmp_path)
    result = report.boards[BOARD]
    assert report.exit_code == 3 and result.status == "unusable"
    assert "'/opt/python3.7/bin/python3.7'" in result.error and "Python >= 3.8" in result.error
    assert result.bytes_uploaded == 0  # nothing was sent before it failed


@pytest.mark.emulated
def test_bisect_over_three_releases_gives_a_table_each_metric_and_one_line(bare, tmp_path):
    directory, inventory = bare
    scenario = quick(directory, name="bisect")
    log = tmp_path / "bisect.log"
    code = run_harness(["bisect", str(scenario), "--inventory", str(inventory), "--reports", str(tmp_path),
                        "--board", BOARD, "--mnn", "3.4.1,3.5.0,3.6.1", "--all"], log, timeout=900)
    text = log.read_text()
    assert code == 0, text
    folder = next(tmp_path.glob("*-bisect"))
    record = json.loads((folder / "bisect.json").read_text())
    assert [step["version"] for step in record["steps"]] == ["3.4.1", "3.5.0", "3.6.1"]
    for step in record["steps"]:
        assert step["verdict"] == PASSED and step["mnn_ran"] == step["version"] == step["runtime"]
        assert step["metric"] == "argmax_agreement" and step["value"] == 1.0
        assert step["converter"] == record["fixed"]
    assert record["line"] == f"passes with the runtime of 3.4.1 to 3.6.1 on {BOARD} (every release tried)"
    assert record["line"] in " ".join(text.split())
    for version in ("3.4.1", "3.5.0", "3.6.1"):
        assert f"{version}  " in text
    page = (folder / "report.html").read_text()
    assert "<svg" in page and page.count("<circle") == 3 and record["line"] in page


# -- the pure parts ---------------------------------------------------------------------------------------


def test_search_order_finds_the_first_failing_release_in_few_runs():
    versions = [f"3.{i}.0" for i in range(8)]
    for first_bad in range(1, 8):
        asked = set()

        def verdict(version, first_bad=first_bad):
            asked.add(version)
            return PASSED if versions.index(version) < first_bad else FAILED

        search_order(versions, verdict, every=False)
        assert {versions[first_bad], versions[first_bad - 1]} <= asked
        assert len(asked) <= 5  # both ends and log2(8)


def test_search_order_steps_over_releases_without_a_verdict_and_stops_without_a_flip():
    versions = ["3.0.0", "3.1.0", "3.2.0", "3.4.0", "3.4.1"]
    seen = {}

    def verdict(version):
        seen[version] = {"3.2.0": NO_VERDICT}.get(version, PASSED if version < "3.4.0" else FAILED)
        return seen[version]

    search_order(versions, verdict, every=False)
    assert seen["3.1.0"] == PASSED and seen["3.4.0"] == FAILED
    asked = []
    search_order(versions, lambda v: asked.append(v) or PASSED, every=False)
    assert asked == ["3.0.0", "3.4.1"]
    asked.clear()
    search_order(versions, lambda v: asked.append(v) or PASSED, every=True)
    assert asked == versions


def test_release_ranges_and_lists():
    assert releases_between("3.0.0..3.6.1") == ["3.0.0", "3.1.0", "3.2.0", "3.4.0", "3.4.1", "3.5.0", "3.6.0",
                                                "3.6.1"]
    assert releases_between("3.6.1..3.4.1") == ["3.4.1", "3.5.0", "3.6.0", "3.6.1"]
    assert releases_between("3.6.1, 3.4.1") == ["3.4.1", "3.6.1"]
    for bad, words in (("3.4.1", "names 1 version"), ("3.4.1,3.4.1", "twice"), ("nan..3.6.1", "not an MNN"),
                       ("3.6.1..3.6.1", "holds 1 release"), ("-1,3.6.1", "not an MNN")):
        with pytest.raises(ConfigError, match=words):
            releases_between(bad)


def test_the_python_probe_runs_on_the_host_and_says_what_a_board_lacks():
    said = subprocess.run([sys.executable, "-c", PYTHON_FACTS], capture_output=True, text=True).stdout
    facts = parse_python_facts(said)
    assert facts is not None and facts.implementation == "CPython" and facts.version[:2] == sys.version_info[:2]
    assert facts.glibc >= (2, 17) and unsupported(facts.platform) is None
    cases = {"MNN-HARNESS-PYTHON CPython 3.7.3 aarch64 64 glibc-2.28": "Python is 3.7, older than 3.8",
             "MNN-HARNESS-PYTHON CPython 3.11.2 armv7l 32 glibc-2.36": "armv7l",
             "MNN-HARNESS-PYTHON CPython 3.11.2 aarch64 32 glibc-2.36": "32-bit",
             "MNN-HARNESS-PYTHON CPython 3.11.2 aarch64 64 unknown": "not glibc",
             "MNN-HARNESS-PYTHON CPython 3.9.2 aarch64 64 glibc-2.12": "glibc 2.12"}
    for line, words in cases.items():
        problem = unsupported(parse_python_facts(line).platform)
        assert problem is not None and words in problem, (line, problem)
    assert parse_python_facts("Python 2.7.18") is None


def test_wheel_tags_follow_the_board_s_python_and_c_library():
    board = Platform("aarch64", (3, 8), (2, 31))
    assert "manylinux_2_31_aarch64" in board.platform_tags and "manylinux2014_aarch64" in board.platform_tags
    assert wheel_fits(Path("numpy-1.24.4-cp38-cp38-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"), "numpy",
                      "1.24.4", board)
    assert not wheel_fits(Path("numpy-2.4.6-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl"),
                          "numpy", "2.4.6", board)
    old = Platform("aarch64", (3, 11), (2, 24))
    assert not wheel_fits(Path("numpy-2.4.6-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl"),
                          "numpy", "2.4.6", old)
    assert wheel_fits(Path("MNN-3.0.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"), "mnn",
                      "3.0.0", old)
    assert not wheel_fits(Path("MNN-3.0.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"), "mnn",
                          "3.0.0", old)


@pytest.mark.parametrize("entry, words", [
    ({"kind": "ssh", "host": "b", "mnn": "banana"}, "not one of provision, system"),
    ({"kind": "emulated", "bare": True, "mnn": "system"}, "a bare board has no MNN of its own"),
    ({"kind": "ssh", "host": "b", "mnn_version": 3.6}, "not an MNN version in quotes"),
    ({"kind": "ssh", "host": "b", "mnn_version": ".nan"}, "not an MNN version"),
    ({"kind": "ssh", "host": "b", "mnn_version": "-3.6.1"}, "not an MNN version"),
    ({"kind": "ssh", "host": "b", "mnn_version": "3" + ".1" * 400}, "not an MNN version"),
    ({"kind": "emulated", "bare": "yes please"}, "bare"),
])
def test_hostile_provisioning_keys_in_the_inventory(tmp_path, entry, words):
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"boards": {"x86": {"kind": "local"}, "b": entry}}))
    with pytest.raises(ConfigError, match=words) as caught:
        load_inventory(path)
    assert str(path) in str(caught.value) and "fix:" in str(caught.value)


def test_the_inventory_s_mnn_defaults(tmp_path):
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"boards": {
        "x86": {"kind": "local"}, "real": {"kind": "ssh", "host": "b", "mnn_version": "3.4.1"},
        "own": {"kind": "ssh", "host": "c", "mnn": "system"}, "emu": {"kind": "emulated"},
        "bare": {"kind": "emulated", "bare": True}}}))
    boards = load_inventory(path).boards
    assert (boards["real"].mnn, boards["real"].mnn_version) == ("provision", "3.4.1")
    assert boards["own"].mnn == "system" and boards["emu"].mnn == "system" and boards["emu"].mnn_version == "3.6.1"
    assert (boards["bare"].mnn, boards["bare"].bare, boards["bare"].mnn_version) == ("provision", True, None)


@pytest.mark.parametrize("text, key, words", [
    ('mnn_version: 3.6\n', "mnn_version", "in quotes"),
    ('mnn_version: "nan"\n', "mnn_version", "not an MNN version"),
    ('matrix: {mnn_version: ["3.4.1", "3.4.1"]}\n', "matrix.mnn_version[1]", "twice"),
    ('matrix: {mnn_version: [3.4]}\n', "matrix.mnn_version[0]", "not an MNN version"),
])
def test_hostile_mnn_versions_in_a_scenario(tmp_path, text, key, words):
    path = tmp_path / "s.yaml"
    path.write_text(scenario_text(["x86"]) + text)
    with pytest.raises(ConfigError, match=words) as caught:
        load_scenario(path)
    assert caught.value.key_path == key


def test_bisect_refuses_a_board_that_runs_its_own_mnn(tmp_path):
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump({"boards": {"x86": {"kind": "local"},
                                                    "own": {"kind": "ssh", "host": "b", "mnn": "system"}}}))
    scenario = tmp_path / "s.yaml"
    scenario.write_text(scenario_text(["x86", "own"]))
    log = tmp_path / "log"
    code = run_harness(["bisect", str(scenario), "--inventory", str(inventory), "--board", "own",
                        "--mnn", "3.4.1..3.6.1", "--reports", str(tmp_path / "r")], log)
    assert code == 2, log.read_text()
    assert "mnn: system" in log.read_text() and not (tmp_path / "r").exists()
    assert REPO.is_dir()

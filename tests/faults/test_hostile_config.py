"""Hostile configuration: every bad value is exit 2 before anything runs, naming the file, the key and the fix.

One case per hostile value per key (NaN, infinity, negative, zero, huge, wrong type, a name that
would reach outside --reports), for the scenario, the inventory and the nightly file; then what the
loader itself refuses (duplicate keys, non-UTF-8, alias bombs, files that are not files), the paths
that would write outside --reports, run folders a configuration error would leave empty, and a
history that another writer holds locked.
"""

import copy
import io
import json
import os
import sqlite3
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from harness.cli import main
from harness.core.errors import ConfigError
from harness.record.history import History
from harness.config.inventory import load_inventory
from harness.plans.night import EXIT_HISTORY, HISTORY_FILE, load_nightly, run_nightly
from harness.record.run_folder import run_folder
from harness.config.scenario import load_scenario
from harness.config.yamlfile import MAX_EXPANDED_VALUES, load_yaml

from ..conftest import TINY_SEGNET, scenario_text

pytestmark = pytest.mark.faults

NAN, INF = float("nan"), float("inf")

SCENARIO = {
    "name": "hostile",
    "description": "a scenario every case spoils in one place",
    "model": {"build": "build.py", "build_args": {"height": 64}, "converter_args": ["--useGeluApproximation", "0"]},
    "inputs": {"images": ["skimage:astronaut"]},
    "preprocess": {"resize": {"height": 64, "width": 64}, "scale": 0.5, "mean": [0.1, 0.2, 0.3],
                   "std": [0.5, 0.5, 0.5]},
    "run": {"threads": 1, "iterations": 1, "warmup": 0},
    "targets": ["x86"],
    "tolerance": {"max_abs": 1e-3},
    "outputs": {"logits": {"kind": "class_logits", "class_axis": 1, "benign_margin": 0.1, "threshold": 0.5,
                           "tolerance": {"min_argmax_agreement": 0.99}}},
    "preprocess_parity": {"board": {"scale": 0.5, "mean": [0.1, 0.2, 0.3], "std": [0.5, 0.5, 0.5]},
                          "max_abs": 0.05},
    "matrix": {"threads": [1], "converter": {"fp32": ["--useGeluApproximation", "0"]}},
}

UPPER = ["atol", "rtol", "max_abs", "mean_abs", "median_abs", "p99_abs", "max_rel", "mean_rel", "p99_rel"]
FRACTIONS = ["min_cosine", "min_argmax_agreement", "min_miou", "max_hard_flips"]
DECIBELS = ["min_snr_db", "min_psnr_db"]


def _cases():
    """(key path, hostile value, words the message must hold) for every key of the scenario."""
    cases = []
    for name in UPPER + FRACTIONS + DECIBELS:
        for where in ("tolerance", "outputs.logits.tolerance"):
            key = f"{where}.{name}"
            cases += [(key, NAN, "finite number"), (key, INF, "finite number"), (key, -INF, "finite number"),
                      (key, "ten", "must be a number"), (key, [1], "must be a number")]
            if name not in DECIBELS:
                cases.append((key, -0.001, "at least 0"))
            if name in FRACTIONS:
                cases.append((key, 1.5, "between 0 and 1"))
    for key in ("preprocess.scale", "preprocess_parity.board.scale"):
        cases += [(key, NAN, "finite number"), (key, INF, "finite number"), (key, 0, "every input would be zeros"),
                  (key, "x", "must be a number")]
    for triple in ("preprocess.mean", "preprocess.std", "preprocess_parity.board.mean",
                   "preprocess_parity.board.std"):
        cases += [(f"{triple}[1]", NAN, "finite number"), (f"{triple}[2]", -INF, "finite number"),
                  (triple, [1, 2], "3 numbers"), (triple, "0.5", "must be a list")]
    cases += [("preprocess.std", [0.5, 0, 0.5], "has a zero")]
    for side in ("height", "width"):
        key = f"preprocess.resize.{side}"
        cases += [(key, 100000, "at most 8192"), (key, 0, "at least 1"), (key, -64, "at least 1"),
                  (key, NAN, "must be an integer"), (key, 64.5, "must be an integer"), (key, "64", "must be an integer"),
                  (key, 10 ** 400, "at most 8192")]
    for key, limit in (("run.threads", 256), ("run.iterations", 100000), ("run.warmup", 100000)):
        cases += [(key, limit + 1, f"at most {limit}"), (key, NAN, "must be an integer"),
                  (key, -1, "at least"), (key, True, "must be an integer")]
    cases += [("run.threads", 0, "at least 1"), ("run.iterations", 0, "at least 1")]
    cases += [("outputs.logits.class_axis", 10 ** 6, "at most 31"), ("outputs.logits.class_axis", -10 ** 6, "at least -32"),
              ("outputs.logits.class_axis", "1", "must be an integer"), ("outputs.logits.class_axis", NAN, "must be an integer"),
              ("outputs.logits.benign_margin", NAN, "finite number"), ("outputs.logits.benign_margin", -0.1, "at least 0"),
              ("outputs.logits.threshold", NAN, "finite number"), ("outputs.logits.threshold", INF, "finite number"),
              ("preprocess_parity.max_abs", NAN, "finite number"), ("preprocess_parity.max_abs", -1, "at least 0"),
              ("preprocess_parity.max_abs", INF, "finite number")]
    cases += [("matrix.threads[0]", 0, "from 1 to 256"), ("matrix.threads[0]", 10 ** 9, "from 1 to 256"),
              ("matrix.threads[0]", NAN, "from 1 to 256"),
              ("model.build_args.height", NAN, "finite number"), ("model.build_args.height", INF, "finite number"),
              ("model.build_args.height", {"a": 1}, "strings and numbers"),
              ("model.converter_args[1]", NAN, "finite number"), ("model.converter_args[1]", [0], "converter option"),
              ("model.converter_args[0]", "--modelFile", "set by the harness")]
    for name in ("../../escaped", "/tmp/escaped", "a/b", "..", ".hidden", "x" * 65, "a\x1b[31mb", "a\x00b", ""):
        cases.append(("name", name, "cannot be a file name" if "\x1b" not in name and "\x00" not in name
                      else "control character"))
    cases += [("name", ["a"], "must be a string"), ("name", 7, "must be a string"),
              ("description", "\x1b]0;pwned\x07", "control character"),
              ("inputs.images[0]", "skimage:\x1b[2J", "control character"),
              ("targets[0]", 3, "must be a string")]
    return cases


def set_key(data, key, value):
    """data with the value at a dotted key path (`a.b[1].c`) replaced."""
    parts = []
    for part in key.split("."):
        name, _, index = part.partition("[")
        parts.append(name)
        if index:
            parts.append(int(index.rstrip("]")))
    node = data
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    return data


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=False, sort_keys=False))
    return path


def assert_names_file_key_and_fix(error: ConfigError, path: Path, key: str, words: str):
    message = str(error)
    assert error.file == str(path), message
    assert error.key_path == key or (error.key_path or "").startswith(key), message
    assert words in message, message
    assert error.fix, f"no fix in: {message}"


@pytest.fixture
def scenario_dir(tmp_path):
    (tmp_path / "build.py").write_text("")
    return tmp_path


def test_the_base_scenario_is_good(scenario_dir):
    scenario = load_scenario(write_yaml(scenario_dir / "s.yaml", SCENARIO))
    assert scenario.name == "hostile" and scenario.preprocess.scale == 0.5


@pytest.mark.parametrize("key, value, words", _cases(), ids=lambda v: repr(v)[:40])
def test_hostile_scenario_value(scenario_dir, key, value, words):
    path = write_yaml(scenario_dir / "s.yaml", set_key(copy.deepcopy(SCENARIO), key, value))
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert_names_file_key_and_fix(caught.value, path, key, words)


def test_all_inputs_together_are_bounded(scenario_dir):
    data = set_key(copy.deepcopy(SCENARIO), "preprocess.resize", {"height": 8192, "width": 8192})
    data["inputs"]["images"] = ["skimage:astronaut", "skimage:coffee"]  # 768 MB each
    path = write_yaml(scenario_dir / "s.yaml", data)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert_names_file_key_and_fix(caught.value, path, "preprocess.resize", "1536 MB")


@pytest.mark.parametrize("bad", ["../../escaped", "a/b", ".x", "x" * 65])
def test_a_converter_variant_name_is_a_folder_name(scenario_dir, bad):
    data = copy.deepcopy(SCENARIO)
    data["matrix"]["converter"] = {bad: []}
    path = write_yaml(scenario_dir / "s.yaml", data)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert_names_file_key_and_fix(caught.value, path, "matrix.converter", "cannot be a file name")


def test_a_scenario_without_a_name_takes_a_safe_one_from_its_file(scenario_dir):
    data = copy.deepcopy(SCENARIO)
    del data["name"]
    scenario = load_scenario(write_yaml(scenario_dir / "my scenario (v2).yaml", data))
    assert scenario.name == "my-scenario-v2"


# -- the inventory ---------------------------------------------------------------------------------


INVENTORY = {"boards": {
    "x86": {"kind": "local"},
    "lab": {"kind": "ssh", "host": "127.0.0.1", "port": 22, "connect_timeout": 15, "run_timeout": 1800,
            "transfer_timeout": 120, "dead_after": 30, "tags": ["fp16"]},
    "emu": {"kind": "emulated", "cpu": "cortex-a76", "mnn_version": "3.6.1", "dead_after": 30},
}}


def _inventory_cases():
    cases = [("boards.lab.port", 70000, "at most 65535"), ("boards.lab.port", 0, "at least 1"),
             ("boards.lab.port", -22, "at least 1"), ("boards.lab.port", NAN, "must be an integer"),
             ("boards.lab.port", "22", "must be an integer"), ("boards.lab.port", 10 ** 30, "at most 65535")]
    for key, largest in (("connect_timeout", "3600"), ("run_timeout", "604800"), ("transfer_timeout", "86400"),
                         ("dead_after", "86400")):
        for board in ("lab", "emu"):
            where = f"boards.{board}.{key}"
            cases += [(where, NAN, "finite number"), (where, INF, "finite number"), (where, -5, "more than 0"),
                      (where, 0, "more than 0"), (where, 1e12, f"at most {largest}"), (where, "soon", "must be a number")]
    for key, largest in (("store_max_mb", "1073741824"), ("agent_cache_mb", "1048576")):
        where = f"boards.lab.{key}"
        cases += [(where, NAN, "finite number"), (where, INF, "finite number"), (where, -1, "more than 0"),
                  (where, 0, "more than 0"), (where, 1e30, f"at most {largest}"), (where, "lots", "must be a number")]
    where = "boards.lab.agent_cache_models"
    cases += [(where, NAN, "must be an integer"), (where, -1, "at least 0"), (where, 10 ** 30, "at most 1000"),
              (where, 2.5, "must be an integer"), (where, "four", "must be an integer"),
              ("boards.lab.resident", "yes please", "true or false"), ("boards.lab.resident", 1, "true or false")]
    cases += [("boards.emu.mnn_version", "../../../tmp/x", "not an MNN version"),
              ("boards.emu.mnn_version", NAN, "not an MNN version"),
              ("boards.emu.mnn_version", "3.6.1/../../x", "not an MNN version"),
              ("boards.lab.host", "a\x00b", "control character"), ("boards.lab.tags[0]", "\x1b[2J", "control character"),
              ("boards.lab.host", ["h"], "must be a string")]
    where = "boards.lab.jump"  # a jump host, written as ProxyJump writes it or as a mapping, or a list of them
    cases += [(where, "bastion:70000", "port is not 1 to 65535"), (where, "bastion:0", "port is not 1 to 65535"),
              (where, "bastion:-1", "not a jump host"), (where, "a b", "not a jump host"),
              (where, "", "not a jump host"),
              (where, "b\x1b[2J", "control character"), (where, "b,b", "twice"), (where, [], "empty list"),
              (where, NAN, "must be a jump host"), (where, ["b", "none"], "`none` among"),
              (where, [f"h{n}" for n in range(9)], "lists 9 jump hosts"),
              (where, {"host": "b", "port": NAN}, "must be an integer"),
              (where, {"host": "b", "port": 0}, "at least 1"),
              (where, {"host": "b", "port": 10 ** 30}, "at most 65535"), (where, {"host": "u@b"}, "not a host name"),
              (where, {"host": "b", "keys": "k"}, "not a known key"), (where, {"port": 22}, "is missing"),
              (where, {"host": "b", "key": "/no/such/key"}, "does not exist")]
    return cases


@pytest.mark.parametrize("key, value, words", _inventory_cases(), ids=lambda v: repr(v)[:40])
def test_hostile_inventory_value(tmp_path, key, value, words):
    path = write_yaml(tmp_path / "inventory.yaml", set_key(copy.deepcopy(INVENTORY), key, value))
    with pytest.raises(ConfigError) as caught:
        load_inventory(path)
    assert_names_file_key_and_fix(caught.value, path, key, words)


@pytest.mark.parametrize("name", ["../../escaped", "/etc", "a/b", "..", ".hidden", "x" * 65, "a b"])
def test_a_board_name_is_a_folder_name(tmp_path, name):
    data = copy.deepcopy(INVENTORY)
    data["boards"][name] = {"kind": "local"}
    path = write_yaml(tmp_path / "inventory.yaml", data)
    with pytest.raises(ConfigError) as caught:
        load_inventory(path)
    assert_names_file_key_and_fix(caught.value, path, "boards.", "cannot be a file name")


def test_a_key_that_is_a_directory_says_so(tmp_path):
    data = copy.deepcopy(INVENTORY)
    data["boards"]["lab"]["key"] = str(tmp_path)
    path = write_yaml(tmp_path / "inventory.yaml", data)
    with pytest.raises(ConfigError) as caught:
        load_inventory(path)
    assert_names_file_key_and_fix(caught.value, path, "boards.lab.key", "is a directory")


# -- the nightly file -----------------------------------------------------------------------------


def _nightly_cases():
    cases = []
    for key in ("margin", "cosine_drop", "agreement_drop"):
        where = f"regression.{key}"
        cases += [(where, NAN, "finite number"), (where, INF, "finite number"), (where, -1, "at least"),
                  (where, "big", "must be a number")]
    cases += [("regression.margin", 0.5, "at least 1"), ("regression.cosine_drop", 2, "at most 1"),
              ("regression.agreement_drop", 1.5, "at most 1"), ("regression.fail_on_regression", "yes please", "true or false"),
              ("runs[0].targets", "x86", "must be a list"), ("runs[0].targets", [NAN], "must be a string"),
              ("runs[0].scenario", "/dev/zero", "is a character device"), ("runs[0].scenario", ".", "is a directory"),
              ("runs[0].scenario", 5, "must be a string")]
    return cases


@pytest.mark.parametrize("key, value, words", _nightly_cases(), ids=lambda v: repr(v)[:40])
def test_hostile_nightly_value(scenario_dir, key, value, words):
    write_yaml(scenario_dir / "s.yaml", SCENARIO)
    data = {"runs": [{"scenario": "s.yaml"}], "regression": {"margin": 2.0, "cosine_drop": 1e-5,
                                                             "agreement_drop": 0.001, "fail_on_regression": False}}
    path = write_yaml(scenario_dir / "nightly.yaml", set_key(data, key, value))
    with pytest.raises(ConfigError) as caught:
        load_nightly(path)
    assert_names_file_key_and_fix(caught.value, path, key, words)


# -- what the loader refuses, in every kind of file --------------------------------------------------


LOADERS = {"scenario": load_scenario, "inventory": load_inventory, "nightly": load_nightly}

BILLION_LAUGHS = textwrap.dedent("""\
    a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
    h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
    i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
    """)


@pytest.mark.parametrize("kind", LOADERS)
def test_an_alias_bomb_fails_fast_and_small(tmp_path, kind):
    """10^9 values from 1 KB: refused from the node graph, in milliseconds and kilobytes (bounds generous)."""
    path = tmp_path / f"{kind}.yaml"
    indented = textwrap.indent(BILLION_LAUGHS, "  ")
    path.write_text(f"tolerance:\n  max_abs: 1e-3\nbomb:\n{indented}")  # inside a value, not only on top
    tracemalloc.start()
    cpu = time.process_time()
    try:
        with pytest.raises(ConfigError) as caught:
            LOADERS[kind](path)
        cpu = time.process_time() - cpu
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "alias" in str(caught.value) and caught.value.key_path.startswith("bomb")
    assert cpu < 1.0, f"{cpu:.2f} s of CPU"
    assert peak < 8 * 1024 * 1024, f"{peak / 1e6:.1f} MB"


def test_aliases_within_the_bound_are_fine(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("base: &base {max_abs: 0.001}\nuse: [*base, *base]\nmerged: {<<: *base, min_cosine: 0.9}\n")
    data = load_yaml(path)
    assert data["use"][1] == {"max_abs": 0.001} and data["merged"] == {"max_abs": 0.001, "min_cosine": 0.9}
    wide = "k: &k [" + ", ".join(["1"] * 1000) + "]\nm: [" + ", ".join(["*k"] * (MAX_EXPANDED_VALUES // 1000 + 1)) + "]\n"
    path.write_text(wide)
    with pytest.raises(ConfigError, match="expands to more than"):
        load_yaml(path)


@pytest.mark.parametrize("kind", LOADERS)
@pytest.mark.parametrize("text, key, words", [
    ("x: 1\ny: 2\nx: 3\n", "x", "lines 1 and 3"),
    ("top:\n  inner: 1\n  inner: 1\n", "top.inner", "lines 2 and 3"),
    ("1: a\n01: b\n", "1", "lines 1 and 2"),  # the same integer key, written twice
    ("a: &r [*r]\n", "a", "recursive"),
    ("a: " + "[" * 80 + "]" * 80 + "\n", "a[0]", "levels deep"),
])
def test_the_loader_refuses(tmp_path, kind, text, key, words):
    path = tmp_path / f"{kind}.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        LOADERS[kind](path)
    assert_names_file_key_and_fix(caught.value, path, key, words)


@pytest.mark.parametrize("kind, text, key, words", [
    ("scenario", "tolerance:\n  max_abs: 1e-3\n  min_cosine: 0.999\n  max_abs: 1.0\n", "tolerance.max_abs",
     "lines 2 and 4"),
    ("inventory", "boards:\n  lab: {kind: ssh, host: a}\n  x86: {kind: local}\n  lab: {kind: ssh, host: b}\n",
     "boards.lab", "lines 2 and 4"),
    ("nightly", "runs: [{scenario: s.yaml}]\nregression:\n  margin: 2.0\n  margin: 100\n", "regression.margin",
     "lines 3 and 4"),
])
def test_a_duplicate_key_names_both_lines(tmp_path, kind, text, key, words):
    """The mistakes people make: a limit set twice, a board block pasted twice, a margin tried and kept."""
    path = tmp_path / f"{kind}.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        LOADERS[kind](path)
    assert_names_file_key_and_fix(caught.value, path, key, words)


@pytest.mark.parametrize("kind", LOADERS)
def test_a_non_utf8_file_is_a_clear_error(tmp_path, kind):
    path = tmp_path / f"{kind}.yaml"
    path.write_bytes(b"name: ok\ndescription: caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        LOADERS[kind](path)
    assert "not UTF-8" in str(caught.value) and "line 2, column 17" in str(caught.value) and caught.value.fix


@pytest.mark.parametrize("kind", LOADERS)
@pytest.mark.parametrize("what", ["fifo", "directory", "dev-zero", "huge", "deep"])
def test_a_file_that_is_not_a_configuration(tmp_path, kind, what):
    path = {"fifo": tmp_path / "fifo.yaml", "directory": tmp_path, "dev-zero": Path("/dev/zero"),
            "huge": tmp_path / "huge.yaml", "deep": tmp_path / "deep.yaml"}[what]
    if what == "fifo":
        os.mkfifo(path)  # opening it for reading would wait for a writer forever
    elif what == "huge":
        path.write_text("# padding\n" * 200_000)
    elif what == "deep":
        path.write_text("a: " + "[" * 100_000 + "]" * 100_000)  # deeper than Python's own recursion
    words = {"fifo": "FIFO", "directory": "directory", "dev-zero": "character device", "huge": "larger than",
             "deep": "levels deep"}[what]
    with pytest.raises(ConfigError, match=words) as caught:
        LOADERS[kind](path)
    assert caught.value.file == str(path) and caught.value.fix


@pytest.mark.parametrize("what, words", [("dev-zero", "is a character device"), ("fifo", "is a FIFO"),
                                         ("directory", "is a directory")])
@pytest.mark.parametrize("key", ["onnx", "tflite", "build"])
def test_a_model_that_is_not_a_file_says_what_it_is(scenario_dir, key, what, words):
    target = {"dev-zero": "/dev/zero", "fifo": str(scenario_dir / "model.fifo"), "directory": str(scenario_dir)}[what]
    if what == "fifo":
        os.mkfifo(target)
    data = copy.deepcopy(SCENARIO)
    data["model"] = {key: target}
    path = write_yaml(scenario_dir / "s.yaml", data)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert_names_file_key_and_fix(caught.value, path, f"model.{key}", words)


def test_the_model_layer_says_what_a_non_file_is(tmp_path):
    """A ModelSource made in code (the bench, a test) meets the same words as a scenario."""
    from harness.core.build.model import ModelError, ModelSource, prepare_model

    for source, words in ((ModelSource(onnx=Path("/dev/zero")), "is a character device"),
                          (ModelSource(tflite=tmp_path), "is a directory"),
                          (ModelSource(build_script=tmp_path), "is a directory"),
                          (ModelSource(onnx=tmp_path / "missing.onnx"), "does not exist")):
        with pytest.raises(ModelError, match=words):
            prepare_model(source, log=lambda message: None)


@pytest.mark.parametrize("argv, words", [
    (["run", "s.yaml", "--keep-outputs", "nan"], "not a finite number"),
    (["run", "s.yaml", "--keep-outputs", "-1"], "at least 0"),
    (["run", "s.yaml", "--lock-timeout", "nan"], "not a finite number"),
    (["run", "s.yaml", "--lock-timeout", "-5"], "at least 0"),
    (["run", "s.yaml", "--lock-timeout", "1e300"], "at most"),
    (["nightly", "n.yaml", "--lock-timeout", "inf"], "not a finite number"),
    (["nightly", "n.yaml", "--history-timeout", "-1"], "at least 0"),
    (["history", "--nights", "nan"], "not an integer"),
    (["history", "--nights", "0"], "at least 1"),
    (["history", "--nights", "-3"], "at least 1"),
    (["layers", "s.yaml", "--board", "b", "--tolerance", "nan"], "not a finite number"),
    (["layers", "s.yaml", "--board", "b", "--tolerance", "0"], "more than 0"),
    (["farm", "up", "--size", "100000"], "at most 249"),
    (["farm", "up", "--size", "-1"], "at least 0"),
])
def test_cli_numbers_refuse_nan_and_out_of_range(capsys, argv, words):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert words in capsys.readouterr().err


# -- nothing written outside --reports, no empty run folder ------------------------------------------


def files_under(root: Path) -> set:
    return {path for path in root.rglob("*")}


def scenario_file(tmp_path: Path, name: str = "tiny", targets=("x86",), **edits) -> Path:
    data = yaml.safe_load(scenario_text(list(targets), name=name))
    for key, value in edits.items():
        set_key(data, key.replace("__", "."), value)
    return write_yaml(tmp_path / "scenario.yaml", data)


@pytest.mark.parametrize("case", ["scenario name", "board name", "converter variant", "mnn_version"])
def test_no_name_writes_outside_reports(tmp_path, capsys, case):
    """Every value that becomes a host path is refused before anything is written anywhere."""
    inventory = {"boards": {"x86": {"kind": "local"}}}
    scenario = yaml.safe_load(scenario_text(["x86"]))
    if case == "scenario name":
        scenario["name"] = "../../escaped"
    elif case == "board name":
        inventory["boards"]["../../escaped"] = {"kind": "local"}
    elif case == "converter variant":
        scenario["matrix"] = {"converter": {"../../escaped": []}}
    else:
        inventory["boards"]["emu"] = {"kind": "emulated", "mnn_version": "../../../escaped"}
        scenario["targets"] = ["x86", "emu"]
    work = tmp_path / "work"
    work.mkdir()
    write_yaml(work / "inventory.yaml", inventory)
    write_yaml(work / "scenario.yaml", scenario)
    before = files_under(tmp_path)
    code = main(["--inventory", str(work / "inventory.yaml"), "run", str(work / "scenario.yaml"),
                 "--reports", str(work / "reports")])
    out = " ".join(capsys.readouterr().err.split())
    assert code == 2, out
    assert "escaped" in out and "fix:" in out
    assert files_under(tmp_path) == before  # not even the reports folder


def test_run_folder_stays_under_reports(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    assert run_folder(reports, "20250101-000000-tiny-ab12") == reports / "20250101-000000-tiny-ab12"
    for bad in ("../x", "/abs", "a/../../x", "..", ".", "", "x" * 201):
        with pytest.raises(ConfigError, match="cannot be a file name"):
            run_folder(reports, bad)
    (reports / "linked").symlink_to(tmp_path)  # a folder that exists and points outside
    with pytest.raises(ConfigError, match="outside"):
        run_folder(reports, "linked")


def test_run_scenario_refuses_a_run_id_that_leaves_reports(tmp_path):
    from harness.config.inventory import load_inventory as inventory_of
    from harness.plans.run import run_scenario

    (tmp_path / "inventory.yaml").write_text("boards:\n  x86: {kind: local}\n")
    scenario = load_scenario(scenario_file(tmp_path))
    with pytest.raises(ConfigError, match="cannot be a file name"):
        run_scenario(scenario, inventory_of(tmp_path / "inventory.yaml"), tmp_path / "reports",
                     run_id="../escaped")
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "reports").exists()


@pytest.mark.parametrize("case", ["image that does not decode", "class_axis beyond the output",
                                  "class_axis of size 1", "bad converter variant"])
def test_a_configuration_error_leaves_no_run_folder(tmp_path, capsys, case):
    """Errors found after the model is built (real conversion, real ONNX signature) still leave nothing."""
    (tmp_path / "inventory.yaml").write_text("boards:\n  x86: {kind: local}\n")
    data = yaml.safe_load(scenario_text(["x86"]))
    if case == "image that does not decode":
        (tmp_path / "broken.png").write_bytes(b"not a png")
        data["inputs"]["images"] = ["broken.png"]
        where = "broken.png"
    elif case == "class_axis beyond the output":
        data["outputs"]["logits"]["class_axis"] = 4
        where = "outputs.logits.class_axis"
    elif case == "class_axis of size 1":
        data["outputs"]["logits"]["class_axis"] = 0
        where = "outputs.logits.class_axis"
    else:
        data["matrix"] = {"converter": {"fp32": [], "typo": ["--fp61"]}}
        where = "--fp61"
    path = write_yaml(tmp_path / "scenario.yaml", data)
    reports = tmp_path / "reports"
    code = main(["--inventory", str(tmp_path / "inventory.yaml"), "run", str(path), "--reports", str(reports)])
    out = " ".join(capsys.readouterr().err.split())
    assert code == 2, out
    assert where in out and "fix:" in out
    assert not reports.exists() or not any(reports.iterdir()), list(reports.iterdir())


# -- the history locked by another writer -----------------------------------------------------------


@pytest.fixture
def night(tmp_path):
    """A nightly file with one real run on the x86 host (real build, conversion, agent, ONNX Runtime)."""
    (tmp_path / "inventory.yaml").write_text("boards:\n  x86: {kind: local}\n")
    scenario_file(tmp_path)
    (tmp_path / "nightly.yaml").write_text("runs:\n  - scenario: scenario.yaml\n    inventory: inventory.yaml\n")
    reports = tmp_path / "reports"
    History(reports / HISTORY_FILE).close()  # the file exists, in WAL mode, before another writer locks it
    return tmp_path / "nightly.yaml", reports


def hold_write_lock(path: Path) -> sqlite3.Connection:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a writer's lock, as another nightly or a sqlite3 shell would hold
    other.execute("INSERT INTO nights (started_at, config, exit_code) VALUES ('other', 'other', 0)")
    return other


def test_a_locked_history_is_written_once_the_lock_is_released(night):
    config_path, reports = night
    other = hold_write_lock(reports / HISTORY_FILE)
    output = io.StringIO()
    console = Console(file=output, width=200)
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.setdefault(
        "result", run_nightly(load_nightly(config_path), reports, console, history_timeout=300)))
    worker.start()
    try:
        deadline = time.monotonic() + 240
        while "is locked by another writer" not in output.getvalue() and worker.is_alive():
            assert time.monotonic() < deadline, output.getvalue()
            time.sleep(0.1)
        assert worker.is_alive(), output.getvalue()  # it waits, it did not give up
        other.execute("ROLLBACK")
    finally:
        other.close()
        worker.join(timeout=120)
    assert not worker.is_alive()
    result = outcome["result"]
    assert result.history_error is None and result.night is not None and result.exit_code == 0
    with History(reports / HISTORY_FILE) as history:
        runs = history.db.execute("SELECT run_id FROM runs WHERE night_id = ?", (result.night,)).fetchall()
        assert [row["run_id"] for row in runs] == [result.runs[0].record.run_id]
        assert len(history.nights()) == 1  # the other writer's row was rolled back; this night once


def test_a_history_locked_for_good_names_the_run_folders_and_exits_4(night, capsys):
    config_path, reports = night
    other = hold_write_lock(reports / HISTORY_FILE)
    try:
        code = main(["nightly", str(config_path), "--reports", str(reports), "--history-timeout", "3", "--json"])
    finally:
        other.execute("ROLLBACK")
        other.close()
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert code == EXIT_HISTORY == data["exit_code"] == 4
    assert data["night"] is None and "more than 3 s" in data["history_error"]
    run_dir = Path(data["runs"][0]["run_dir"])
    assert (run_dir / "summary.json").is_file()  # the night's run is not lost
    said = "".join(captured.err.split())
    assert str(run_dir).replace(" ", "") in said and "fuser" in said
    with History(reports / HISTORY_FILE) as history:
        assert history.nights() == []  # nothing half written


# -- a history that is not a database -----------------------------------------------------------------------


def corrupt_pages(path: Path) -> None:
    """A real history whose nights table has become garbage (a disk error, a copy cut short): the header is
    fine, the damage shows only when a query reads that page ("database disk image is malformed")."""
    with History(path) as history:
        for night in range(20):
            history.db.execute("INSERT INTO nights (started_at, config, exit_code) VALUES (?, 'n', 0)", (str(night),))
        history.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        root = history.db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'nights'").fetchone()[0]
    data = bytearray(path.read_bytes())
    page = (root - 1) * 4096
    data[page + 8:page + 4096] = os.urandom(4088)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["not a database", "malformed"])
def test_a_corrupt_history_is_named_with_what_to_do_and_the_night_keeps_its_runs(night, capsys, damage):
    config_path, reports = night
    path = reports / HISTORY_FILE
    for leftover in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    if damage == "not a database":
        path.write_bytes(os.urandom(8192))  # what `harness history` met as "file is not a database"
    else:
        path.unlink()
        corrupt_pages(path)
    broken = path.read_bytes()

    code = main(["history", "--reports", str(reports)])
    captured = capsys.readouterr()
    said = " ".join(captured.err.split())
    assert code == 2 and captured.out == "", said
    assert f"{path}: is not a history SQLite can read" in said and damage in said
    assert f"mv {path} {path}.broken" in said and "Traceback" not in said

    code = main(["nightly", str(config_path), "--reports", str(reports), "--json"])
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert code == EXIT_HISTORY == data["exit_code"]
    assert data["night"] is None and damage in data["history_error"] and "mv " in data["history_fix"]
    run_dir = Path(data["runs"][0]["run_dir"])
    assert (run_dir / "summary.json").is_file()  # the night's run folder is written all the same
    said = "".join(captured.err.split())
    assert "thenightcouldnotbewrittento" in said and str(run_dir).replace(" ", "") in said and "fuser" not in said
    assert path.read_bytes() == broken  # the broken file is left as it was, for whoever looks into it

"""One schema per file: the loader's checks, the published JSON Schemas and the reference page come from it.

The JSON Schemas (schemas/*.schema.json) and docs/reference.md are written by harness.config.schema and held
here to what it writes; every shipped file passes its JSON Schema (draft-07, what editors read) and the loader;
what the loader refuses for a type, a bound or a key, the JSON Schema refuses too; every key is described.
"""

import copy
import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator

from harness.cli import main
from harness.config import schema as schemas
from harness.config.inventory import BOARD_TYPES, InventoryFile, load_inventory
from harness.config.nightly import load_nightly
from harness.config.scenario import load_scenario
from harness.core.errors import ConfigError
from harness.core.fields import Section
from harness.core.shipped import default_inventory, schema_path

from .conftest import REPO

EXAMPLES = sorted((REPO / "scenarios").glob("*.yaml"))


def kind_of(path: Path) -> str:
    return "nightly" if path.name.startswith("nightly") else "scenario"


@pytest.fixture(scope="module")
def validators():
    return {kind: Draft7Validator(json.loads((REPO / "schemas" / f"{kind}.schema.json").read_text()))
            for kind in schemas.FILES}


def test_the_published_schemas_and_the_reference_are_what_the_schema_writes():
    stale = [str(path.relative_to(REPO)) for path, text in schemas.published(REPO).items()
             if not path.is_file() or path.read_text() != text]
    assert not stale, f"{stale} differ from the schema: run `python -m harness.config.schema` and commit them"


@pytest.mark.parametrize("kind", schemas.FILES)
def test_each_json_schema_is_draft_07(kind):
    schema = json.loads((REPO / "schemas" / f"{kind}.schema.json").read_text())
    Draft7Validator.check_schema(schema)
    text = json.dumps(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    for newer in ("$defs", "prefixItems", "unevaluatedProperties", "dependentRequired", "$dynamicRef"):
        assert newer not in text, f"{newer} is not draft-07: editors would ignore it"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_every_shipped_example_passes_its_json_schema_and_names_it_for_editors(path, validators):
    errors = sorted(validators[kind_of(path)].iter_errors(yaml.safe_load(path.read_text())), key=str)
    assert not errors, [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in errors]
    first = path.read_text().splitlines()[0]
    assert first == schemas.MODELINE.format(f"../schemas/{kind_of(path)}.schema.json")
    assert (path.parent / first.split("=", 1)[1]).resolve() == schema_path(kind_of(path)).resolve()


def test_the_built_in_inventory_passes_its_json_schema(validators):
    data = yaml.safe_load(default_inventory().read_text())
    assert not list(validators["inventory"].iter_errors(data))
    load_inventory(default_inventory())


SCENARIO = {"model": {"onnx": "m.onnx"}, "inputs": {"images": ["skimage:astronaut"]},
            "preprocess": {"resize": {"height": 64, "width": 64}, "scale": "1/255"}, "targets": ["x86"],
            "outputs": {"logits": {"kind": "class_logits", "tolerance": {"min_argmax_agreement": 0.99}}},
            "tolerance": {"max_abs": "1e-3"}, "run": {"precision": "low", "threads": 2}}
INVENTORY = {"boards": {"x86": {"kind": "local"}, "lab": {"kind": "ssh", "host": "10.0.0.2", "port": 22},
                        "emu": {"kind": "emulated", "cpu": "cortex-a53", "mnn_version": "3.4.1"},
                        "rk": {"kind": "labgrid", "match": {"soc": "rk3588"}, "coordinator": "lab:20408",
                               "jump": ["bastion", {"host": "inner", "port": 2222}]}}}


def spoiled(data, key: str, value):
    data = copy.deepcopy(data)
    *path, last = key.split(".")
    node = data
    for part in path:
        node = node[part]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return data


@pytest.mark.parametrize("kind, key, value, words", [
    ("scenario", "run.precison", "low", "did you mean `precision`"),
    ("scenario", "run.threads", 0, "at least 1"),
    ("scenario", "run.threads", 2.5, "must be an integer"),
    ("scenario", "run.api", "modul", "did you mean `module`"),
    ("scenario", "preprocess.resize.height", 100000, "at most 8192"),
    ("scenario", "preprocess.mean", [0.5, 0.5], "3 numbers"),
    ("scenario", "outputs.logits.kind", "class_logit", "not one of"),
    ("scenario", "outputs.logits.tolerance.min_argmax_agreement", 1.5, "between 0 and 1"),
    ("scenario", "tolerance.max_abs", -1, "at least 0"),
    ("scenario", "targets", "x86", "must be a list"),
    ("scenario", "model", KeyError, "is missing"),
    ("scenario", "mnn_version", 3.6, "in quotes"),
    ("inventory", "boards.lab.cpu", "cortex-a76", "applies to emulated boards"),
    ("inventory", "boards.lab.port", 70000, "at most 65535"),
    ("inventory", "boards.lab.host", KeyError, "is missing"),
    ("inventory", "boards.emu.cpu", "cortex-a99", "not one of"),
    ("inventory", "boards.emu.kind", "emulted", "did you mean `emulated`"),
    ("inventory", "boards.rk.host", "10.0.0.3", "applies to ssh boards"),
    ("inventory", "boards.lab.connect_timeout", 0, "more than 0"),
    ("inventory", "boards.x86.resident", "yes please", "true or false"),
])
def test_what_the_loader_refuses_for_a_key_the_json_schema_refuses_too(tmp_path, validators, kind, key, value, words):
    """Editors and CI (the JSON Schema) and the run (the loader) agree on types, bounds, choices and keys."""
    (tmp_path / "m.onnx").write_bytes(b"")
    base = SCENARIO if kind == "scenario" else INVENTORY
    assert not list(validators[kind].iter_errors(base))
    data = spoiled(base, key, value)
    assert list(validators[kind].iter_errors(data)), f"the JSON Schema takes {key}: {value!r}"
    path = tmp_path / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as caught:
        (load_scenario if kind == "scenario" else load_inventory)(path)
    assert caught.value.key_path == key and words in str(caught.value) and caught.value.fix, str(caught.value)


def test_every_problem_of_a_file_is_named_after_the_first(tmp_path):
    path = tmp_path / "inventory.yaml"
    path.write_text("boards:\n  a: {kind: ssh, host: h, cpu: cortex-a76}\n  b: {kind: emulted}\n"
                    "  c: {kind: labgrid, host: x, place: p, coordinator: 'h:1'}\n  d: {kind: local, port: 1}\n"
                    "  e: {kind: local, tags: 5}\n")
    with pytest.raises(ConfigError) as caught:
        load_inventory(path)
    message = str(caught.value)
    assert caught.value.key_path == "boards.a.cpu" and "`cpu` applies to emulated boards" in caught.value.fix
    assert caught.value.also == ["boards.b.kind: is 'emulted', not one of local, ssh, emulated, labgrid",
                                 "boards.c.host: is not a known key", "boards.d.port: is not a known key"]
    assert message.endswith("\n  and 1 more")


def test_each_board_kind_is_its_own_type_with_the_others_attributes_neutral(tmp_path):
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(INVENTORY))
    boards = load_inventory(path).boards
    assert {name: type(board).__name__ for name, board in boards.items()} == {
        "x86": "LocalBoard", "lab": "SshBoard", "emu": "EmulatedBoard", "rk": "LabgridBoard"}
    assert set(BOARD_TYPES) == {"local", "ssh", "emulated", "labgrid"}
    # What code that reads any board finds where the kind has no such key (BoardSpec's old defaults).
    assert (boards["emu"].host, boards["x86"].place, boards["lab"].cpu, boards["x86"].match) == (None, None,
                                                                                                 "cortex-a76", ())
    assert [str(hop) for hop in boards["rk"].jump] == ["bastion", "inner:2222"]
    assert boards["rk"].match == (("soc", "rk3588"),) and boards["rk"].coordinator == "lab:20408"
    assert "cpu" not in InventoryFile.__pydantic_fields__ and "host" not in BOARD_TYPES["emulated"].keys()


def test_every_key_of_every_file_is_described():
    """The reference and the editors' hover text come from the fields' docstrings: none may be missing."""
    sections, stack = [], list(Section.__subclasses__())
    while stack:
        klass = stack.pop()
        stack += klass.__subclasses__()
        sections.append(klass)
    assert {"ScenarioFile", "InventoryFile", "NightlyFile", "SshBoard", "AudioInput", "JumpHop"} <= \
        {klass.__name__ for klass in sections}
    missing = [f"{klass.__name__}.{name}" for klass in sections for name in klass.keys()
               if not klass.description_of(name)]
    assert not missing, f"keys without a docstring (the reference would leave them blank): {missing}"


def test_harness_schema_prints_the_published_schema_and_its_installed_path(capsys):
    assert main(["schema", "scenario"]) == 0
    assert capsys.readouterr().out == (REPO / "schemas" / "scenario.schema.json").read_text()
    assert main(["schema", "inventory", "--path"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.is_file() and json.loads(path.read_text())["title"] == "mnn-harness inventory"


def test_the_nightly_example_loads_and_names_its_scenarios():
    config = load_nightly(REPO / "scenarios" / "nightly.yaml")
    assert config.runs[0].scenario == REPO / "scenarios" / "quick.yaml"
